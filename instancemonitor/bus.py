"""A small in-process publish/subscribe bus for domain events.

Publishing only enqueues (it never blocks and never calls a subscriber), so
it is safe from libvirt's event-loop thread. One dispatch thread hands each
event, in order, to the subscribers of its kind and to the wildcard ones.
Events that wait together (a burst, a scan) are dispatched as one group,
inside ``group()``: the agent makes that one transaction of the state
database, one fsync for all of them instead of two each.
"""

import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from instancemonitor.events import DomainEvent

LOG = logging.getLogger(__name__)

WILDCARD = '*'

# Events dispatched in one group at most.
GROUP_MAX = 256

Subscriber = Callable[[DomainEvent], None]


class EventBus:
    def __init__(self) -> None:
        # Events, calls (after_pending), and None: a wake.
        self._queue: queue.SimpleQueue[DomainEvent | Callable[[], None] | None] = (
            queue.SimpleQueue())
        self._subscribers: dict[str, list[Subscriber]] = (
            collections.defaultdict(list))

    def subscribe(self, kind: str, subscriber: Subscriber) -> None:
        """Call ``subscriber`` for every event of ``kind`` (or ``WILDCARD``)."""
        self._subscribers[kind].append(subscriber)

    def publish(self, event: DomainEvent) -> None:
        self._queue.put(event)

    def after_pending(self, call: Callable[[], None]) -> None:
        """Have the dispatch thread call ``call`` once every event published
        before it is dispatched."""
        self._queue.put(call)

    def pending(self) -> int:
        return self._queue.qsize()

    def run(self, stop: threading.Event,
            progress: Callable[[], None] = lambda: None,
            tick: float | None = None,
            group: Callable[[], contextlib.AbstractContextManager] = (
                contextlib.nullcontext)) -> None:
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
            if self._queue.empty():
                self._dispatch(event)
                continue
            events = [event]
            while len(events) < GROUP_MAX:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with group():
                for each in events:
                    if each is not None:
                        self._dispatch(each)
            if None in events:
                self._queue.put(None)  # the wake, seen on the next turn

    def _dispatch(self, event: DomainEvent | Callable[[], None]) -> None:
        if not isinstance(event, DomainEvent):
            try:
                event()
            except Exception:
                LOG.exception('Call %r after the pending events failed', event)
            return
        for subscriber in (self._subscribers.get(event.kind, []) +
                           self._subscribers.get(WILDCARD, [])):
            try:
                subscriber(event)
            except Exception:
                LOG.exception('Subscriber %r failed on %s', subscriber, event)

    def wake(self) -> None:
        """Let :meth:`run` see its stop event once the queue before it is done."""
        self._queue.put(None)
