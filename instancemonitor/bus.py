"""A small in-process publish/subscribe bus for domain events.

Publishing only enqueues (it never blocks and never calls a subscriber), so
it is safe from libvirt's event-loop thread. One dispatch thread hands each
event, in order, to the subscribers of its kind and to the wildcard ones.
"""

import collections
import logging
import queue
import threading
from collections.abc import Callable

from instancemonitor.events import DomainEvent

LOG = logging.getLogger(__name__)

WILDCARD = '*'

Subscriber = Callable[[DomainEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[DomainEvent | None] = queue.SimpleQueue()
        self._subscribers: dict[str, list[Subscriber]] = (
            collections.defaultdict(list))

    def subscribe(self, kind: str, subscriber: Subscriber) -> None:
        """Call ``subscriber`` for every event of ``kind`` (or ``WILDCARD``)."""
        self._subscribers[kind].append(subscriber)

    def publish(self, event: DomainEvent) -> None:
        self._queue.put(event)

    def pending(self) -> int:
        return self._queue.qsize()

    def run(self, stop: threading.Event,
            progress: Callable[[], None] = lambda: None,
            tick: float | None = None) -> None:
        """Dispatch until ``stop`` is set and :meth:`wake` is called; what was
        published before the wake is dispatched first (call on the dispatch
        thread). ``progress`` is called at least every ``tick`` seconds."""
        while True:
            progress()
            try:
                event = self._queue.get(timeout=tick)
            except queue.Empty:
                continue
            if event is None:
                if stop.is_set():
                    return
                continue
            for subscriber in (self._subscribers.get(event.kind, []) +
                               self._subscribers.get(WILDCARD, [])):
                try:
                    subscriber(event)
                except Exception:
                    LOG.exception('Subscriber %r failed on %s', subscriber,
                                  event)

    def wake(self) -> None:
        """Let :meth:`run` see its stop event once the queue before it is done."""
        self._queue.put(None)
