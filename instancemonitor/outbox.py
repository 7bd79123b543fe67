"""Pending notifications and their delivery state.

A notification enters with an optional hold (the reboot window), is taken by
one sender at a time in order of when it falls due, and leaves only with a
final answer: delivered, or rejected (kept as a dead letter for the operator).
A notification that could not be delivered yet goes back in, later.
"""

import dataclasses
import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Protocol

from instancemonitor import clock
from instancemonitor.events import Notification


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    notification: Notification
    reason: str


class Outbox(Protocol):
    def add(self, notification: Notification, delay: float = 0.0) -> None: ...

    def withdraw_held(self, instance_uuid: str) -> list[Notification]: ...

    def take(self, stop: threading.Event) -> Notification | None: ...

    def delivered(self, notification: Notification) -> None: ...

    def rejected(self, notification: Notification, reason: str) -> None: ...

    def retry_later(self, notification: Notification, delay: float) -> None: ...

    def pending(self) -> int: ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def wake(self) -> None: ...


@dataclasses.dataclass(slots=True)
class _Entry:
    notification: Notification
    due: float
    in_flight: bool = False


class MemoryOutbox:
    """An outbox in memory: correct for one process lifetime, no longer."""

    def __init__(self, monotonic: Callable[[], float] = clock.monotonic) -> None:
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        # (due, sequence, notification_id); withdrawn ids are skipped lazily.
        self._due: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._dead: list[DeadLetter] = []

    def add(self, notification: Notification, delay: float = 0.0) -> None:
        with self._cond:
            self._schedule(_Entry(notification, self._monotonic() + delay))

    def _schedule(self, entry: _Entry) -> None:
        nid = entry.notification.notification_id
        self._entries[nid] = entry
        heapq.heappush(self._due, (entry.due, next(self._sequence), nid))
        self._cond.notify()

    def withdraw_held(self, instance_uuid: str) -> list[Notification]:
        """Remove this instance's notifications that are still held back."""
        now = self._monotonic()
        with self._cond:
            held = [nid for nid, e in self._entries.items()
                    if e.notification.instance_uuid == instance_uuid
                    and not e.in_flight and e.due > now]
            return [self._entries.pop(nid).notification for nid in held]

    def take(self, stop: threading.Event) -> Notification | None:
        """The next due notification, waiting for one; None once stopped."""
        with self._cond:
            while not stop.is_set():
                timeout = None
                while self._due:
                    due, _, nid = self._due[0]
                    entry = self._entries.get(nid)
                    if entry is None or entry.due != due:
                        heapq.heappop(self._due)  # withdrawn or rescheduled
                        continue
                    timeout = due - self._monotonic()
                    if timeout <= 0:
                        heapq.heappop(self._due)
                        entry.in_flight = True
                        return entry.notification
                    break
                self._cond.wait(timeout)
            return None

    def delivered(self, notification: Notification) -> None:
        with self._cond:
            self._entries.pop(notification.notification_id, None)

    def rejected(self, notification: Notification, reason: str) -> None:
        with self._cond:
            self._entries.pop(notification.notification_id, None)
            self._dead.append(DeadLetter(notification, reason))

    def retry_later(self, notification: Notification, delay: float) -> None:
        with self._cond:
            self._schedule(_Entry(notification, self._monotonic() + delay))

    def pending(self) -> int:
        with self._cond:
            return len(self._entries)

    def dead_letters(self) -> list[DeadLetter]:
        with self._cond:
            return list(self._dead)

    def wake(self) -> None:
        """Wake every waiting :meth:`take` so it sees its stop event."""
        with self._cond:
            self._cond.notify_all()
