"""Pending notifications and their delivery state.

A notification enters with an optional hold (the reboot window), is taken by
one sender at a time in order of when it falls due, and leaves only with a
final answer: delivered, or rejected (kept as a dead letter for the operator).
A notification that could not be delivered yet goes back in, later, unless it
is older than ``max_age``: then it becomes a dead letter too.

Scheduling happens in memory; every change is written through to an
``OutboxStore`` first, so a durable store survives a crash of the agent.
"""

import collections
import contextlib
import dataclasses
import datetime
import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Protocol

from instancemonitor import clock
from instancemonitor.events import RECOVERY_SINK
from instancemonitor.events import Notification

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    notification: Notification
    reason: str


class OutboxStore(Protocol):
    """Where pending notifications and dead letters are kept, for every sink.

    ``due_at`` is a wall-clock instant (epoch seconds), so it means the same
    after a restart.
    """

    def insert(self, notification: Notification, due_at: float) -> None: ...

    def reschedule(self, notification_id: str, due_at: float) -> None: ...

    def remove(self, notification_id: str, delivered: bool = False) -> None: ...

    def bury(self, notification_id: str, reason: str,
             notification: Notification | None = None) -> None: ...

    def pending(self, sink: str) -> list[tuple[Notification, float]]: ...

    def dead_letters(self, sink: str) -> list[DeadLetter]: ...

    def unbury(self, notification_id: str, due_at: float,
               sink: str) -> Notification | None: ...


class MemoryOutboxStore:
    """Keeps only dead letters, for the life of the process."""

    def __init__(self) -> None:
        self._dead: list[DeadLetter] = []

    def insert(self, notification: Notification, due_at: float) -> None:
        pass  # the Outbox's own schedule is the only copy

    def reschedule(self, notification_id: str, due_at: float) -> None:
        pass

    def remove(self, notification_id: str, delivered: bool = False) -> None:
        pass

    def bury(self, notification_id: str, reason: str,
             notification: Notification | None = None) -> None:
        if notification is not None:
            self._dead.append(DeadLetter(notification, reason))

    def pending(self, sink: str) -> list[tuple[Notification, float]]:
        return []

    def dead_letters(self, sink: str) -> list[DeadLetter]:
        return [d for d in self._dead if d.notification.sink == sink]

    def unbury(self, notification_id: str, due_at: float,
               sink: str) -> Notification | None:
        for dead in self._dead:
            if (dead.notification.notification_id == notification_id
                    and dead.notification.sink == sink):
                self._dead.remove(dead)
                return dead.notification
        return None


@dataclasses.dataclass(slots=True)
class _Entry:
    notification: Notification
    due: float
    # Order of detection: kept through retries and restarts.
    order: int
    # When it was detected, on this process's monotonic clock: its age for
    # max_age is elapsed time, whatever the wall clock does.
    born: float
    in_flight: bool = False
    # Its request is on the wire (this round).
    sent: bool = False
    # Withdrawn while in flight: not retried (see withdraw_waiting).
    withdrawn: bool = False
    # Recovered from the store, not yet confirmed by a scan (see release_recovered).
    unconfirmed: bool = False
    # Its first request, written by the committing thread (see release_held).
    started: object | None = None


def _reports(entry: _Entry, instance_uuid: str, pairs: tuple[str, ...]) -> bool:
    """Whether ``entry`` is this instance's, of one of ``pairs`` ('*': any)."""
    n = entry.notification
    return n.instance_uuid == instance_uuid and ('*' in pairs or n.pair in pairs)


class Outbox:
    """The notifications of one sink: each sink has its own, over a shared
    store, so a slow sink never holds up another."""

    # Requests release_held has the committing thread write at most: the
    # one or few failures of a quiet host; a burst's go to the senders.
    START_MAX = 4

    def __init__(self, store: OutboxStore | None = None,
                 max_age: float = 0.0,
                 monotonic: Callable[[], float] = clock.monotonic,
                 utcnow: Callable[[], datetime.datetime] = clock.utcnow,
                 sink: str = RECOVERY_SINK, max_delay: float = 300.0,
                 confirm_recovered_within: float = 0.0) -> None:
        """``max_age``: seconds after detection when an undelivered
        notification becomes a dead letter; 0 keeps it for ever.
        ``max_delay``: the longest a notification is ever scheduled ahead (a
        hold or a retry round); what a restart finds due later than that,
        because the wall clock went back, is due after it instead.
        ``confirm_recovered_within``: if set, what the store held at start
        waits for :meth:`release_recovered` (the agent's first scan, which
        withdraws what is over): until libvirtd answers, and from then
        (:meth:`start_confirmation_wait`) at most that many seconds."""
        self.sink = sink
        self._store = store or MemoryOutboxStore()
        self.max_age = max_age
        self.max_delay = max_delay
        self._confirm_within = confirm_recovered_within
        self._monotonic = monotonic
        self._utcnow = utcnow
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        # Signalled when a notification's request is sent (same lock).
        self._sent = threading.Condition(lock)
        self._entries: dict[str, _Entry] = {}
        # Not yet due: (due, push sequence, id). Due: (order, id), so the
        # earliest detected goes first. Stale items are skipped lazily.
        self._waiting: list[tuple[float, int, str]] = []
        self._ready: list[tuple[int, str]] = []
        # Taken by the committing thread, which may have written their
        # first requests: for the next senders, before anything else.
        self._handed: collections.deque[str] = collections.deque()
        self._pushes = itertools.count()
        self._orders = itertools.count()
        self.dead_lettered = 0
        # Called after a notification is scheduled (by the sender, to start
        # another thread if every one is busy).
        self.on_schedule: Callable[[], None] = lambda: None
        # Called when a notification due now is added in a holding block,
        # before it is stored: the sink may get ready for it meanwhile.
        self.on_held_due: Callable[[], None] = lambda: None
        # While a thread holds its additions (see holding): which, and them.
        self._holder: int | None = None
        self._held: list[_Entry] = []
        # Called once the holding block ends (after_held).
        self._after_held: list[Callable[[], None]] = []
        now_wall, now = self._utcnow().timestamp(), self._monotonic()
        recovered = self._store.pending(sink)
        # While recovered notifications wait for confirmation: until when
        # (infinity: until libvirtd answers, see start_confirmation_wait).
        self._unconfirmed_until: float | None = (
            math.inf if recovered and confirm_recovered_within else None)
        with self._cond:
            for notification, due_at in recovered:
                # Across a restart only the wall clock can tell: its steps
                # are clamped, never a reason to wait longer or to die young.
                delay = min(max(0.0, due_at - now_wall), max_delay)
                age = max(0.0, now_wall - notification.generated_time.timestamp())
                entry = _Entry(notification, now + delay, next(self._orders),
                               born=now - age)
                if self._unconfirmed_until is None:
                    self._schedule(entry)
                else:
                    entry.unconfirmed = True
                    self._entries[notification.notification_id] = entry
        if recovered:
            LOG.info('%d pending notifications for %s recovered from the outbox%s',
                     len(recovered), sink,
                     '; sent once a scan of the domains confirms them'
                     if self._unconfirmed_until is not None else '')

    def _due_at(self, delay: float) -> float:
        return self._utcnow().timestamp() + delay

    def add(self, notification: Notification, delay: float = 0.0) -> None:
        """Keep ``notification`` (durably, if the store is) and schedule it."""
        if notification.sink != self.sink:
            raise ValueError(f'{notification.sink} notification in the outbox '
                             f'of {self.sink}')
        if not delay and self._holder == threading.get_ident():
            try:
                self.on_held_due()
            except Exception:  # only ever a head start: it is kept all the same
                LOG.exception('Getting ready to send notification %s failed',
                              notification.notification_id)
        self._store.insert(notification, self._due_at(delay))
        now = self._monotonic()
        with self._cond:
            entry = _Entry(notification, now + delay, next(self._orders), born=now)
            if self._holder == threading.get_ident():
                self._held.append(entry)
                return
            self._schedule(entry)
        self.on_schedule()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """What this thread adds inside is scheduled only at the end, after
        the store's transaction that wrote it, or by :meth:`release_held`
        once that has committed: no sender sends what is not kept yet.
        Nested, the outermost counts."""
        with self._cond:
            if self._holder == threading.get_ident():
                outer = True  # the outer block schedules them
            else:
                outer, self._holder = False, threading.get_ident()
        if outer:
            yield
            return
        try:
            yield
        finally:
            with self._cond:
                self._holder = None
                held, self._held = self._held, []
                for entry in held:
                    self._schedule(entry)
                after, self._after_held = self._after_held, []
            if held:
                self.on_schedule()
            for call in after:
                try:
                    call()
                except Exception:
                    LOG.exception('Call %r after a holding block failed', call)

    def after_held(self, call: Callable[[], None]) -> None:
        """Call ``call`` on this thread once the :meth:`holding` block it is
        in has scheduled what it held (so after its transaction committed);
        at once outside of one."""
        with self._cond:
            if self._holder == threading.get_ident():
                self._after_held.append(call)
                return
        call()

    def release_held(self, start: Callable[[Notification], object | None]
                     | None = None) -> None:
        """Schedule what the holder has added so far: its transaction has
        committed (it survives a crash of the agent; the store syncs it to
        disk next, while the requests go).

        ``start``: if nothing else is due, the first ``START_MAX`` due now
        are taken here and ``start`` is called for each on this thread (it
        writes the request if that is quick, and returns what the sender
        then needs to read the answer, or None to send it all): the
        senders, woken meanwhile, go on from there."""
        with self._cond:
            if self._holder != threading.get_ident() or not self._held:
                return
            held, self._held = self._held, []
            now, taken = self._monotonic(), []
            quiet = start is not None and not self._handed and not self._ready \
                and not (self._waiting and self._waiting[0][0] <= now)
            for entry in held:
                if quiet and entry.due <= now and len(taken) < self.START_MAX:
                    entry.in_flight = True
                    self._entries[entry.notification.notification_id] = entry
                    taken.append(entry)
                else:
                    self._schedule(entry)
        for entry in taken:
            try:
                entry.started = start(entry.notification)
            except Exception:  # the sender sends it all
                LOG.exception('Writing the request of notification %s failed; '
                              'a sender sends it', entry.notification.notification_id)
        with self._cond:
            for entry in taken:
                if entry.started is not None:
                    entry.sent = True
                self._handed.append(entry.notification.notification_id)
            if taken:
                self._cond.notify(len(taken))
                self._sent.notify_all()
        self.on_schedule()  # a thread for them, if every one is busy

    def started(self, notification: Notification) -> object | None:
        """What ``start`` returned for a notification taken from
        :meth:`release_held` (once; None for any other)."""
        with self._cond:
            entry = self._entries.get(notification.notification_id)
            if entry is None:
                return None
            started, entry.started = entry.started, None
            return started

    def _schedule(self, entry: _Entry) -> None:
        nid = entry.notification.notification_id
        self._entries[nid] = entry
        heapq.heappush(self._waiting, (entry.due, next(self._pushes), nid))
        self._cond.notify()

    def _current(self, nid: str, due: float | None = None) -> _Entry | None:
        entry = self._entries.get(nid)
        if entry is None or entry.in_flight or (due is not None and entry.due != due):
            return None  # withdrawn, settled, taken or rescheduled
        return entry

    def withdraw_waiting(self, instance_uuid: str, pairs: tuple[str, ...] = ('*',),
                         even_due: frozenset[str] = frozenset()
                         ) -> list[Notification]:
        """Remove this instance's notifications of ``pairs`` ('EVENT/DETAIL';
        '*' is any) that wait: held back, or between retry rounds; return
        them. Those of ``even_due`` go too when due, if no sender has taken
        them yet (a recovery that would stop a VM running again); any other
        due now is sent. One in flight goes on with its attempt, but is not
        retried (:meth:`wanted`)."""
        now = self._monotonic()

        def waits(entry: _Entry) -> bool:
            return entry.due > now or entry.notification.pair in even_due
        with self._cond:
            mine = [(nid, e) for nid, e in self._entries.items()
                    if _reports(e, instance_uuid, pairs)]
            for _, entry in mine:
                if entry.in_flight:
                    entry.withdrawn = True
            # Added in this group of events, not scheduled yet.
            held = [e for e in self._held
                    if _reports(e, instance_uuid, pairs) and waits(e)]
            self._held = [e for e in self._held if e not in held]
            gone = [self._entries.pop(nid).notification for nid, e in mine
                    if not e.in_flight and (waits(e) or e.unconfirmed)] + [
                e.notification for e in held]
        for notification in gone:
            self._store.remove(notification.notification_id)
        return gone

    def release_waiting(self, instance_uuid: str,
                        pairs: tuple[str, ...]) -> list[Notification]:
        """Make this instance's notifications of ``pairs`` that wait (held,
        or between retry rounds) due now; return them. What a restart
        recovered still waits for the first scan (:meth:`release_recovered`)."""
        def waiting(entry: _Entry) -> bool:
            return (_reports(entry, instance_uuid, pairs) and
                    not entry.in_flight and entry.due > self._monotonic())
        with self._cond:
            candidates = [e for e in [*self._held, *self._entries.values()]
                          if waiting(e)]
        for entry in candidates:  # kept due now before any sender takes it
            self._store.reschedule(entry.notification.notification_id,
                                   self._due_at(0.0))
        released = []
        with self._cond:
            now = self._monotonic()
            for entry in candidates:
                nid = entry.notification.notification_id
                held = entry in self._held
                if not (held or self._entries.get(nid) is entry) or not waiting(entry):
                    continue  # withdrawn or taken meanwhile
                entry.due = now
                if not held and not entry.unconfirmed:
                    self._schedule(entry)
                released.append(entry.notification)
        if released:
            self.on_schedule()
        return released

    def start_confirmation_wait(self) -> None:
        """libvirtd answers: what the store held at start waits for a scan
        at most ``confirm_recovered_within`` seconds from now (if it still
        does, and this is the first call). Until then it waits however long:
        sent while libvirtd cannot be reached, its recovery could not be
        carried out on this host, and it could name a VM started again, or
        undefined, while the agent was stopped."""
        with self._cond:
            if self._unconfirmed_until == math.inf:
                self._unconfirmed_until = self._monotonic() + self._confirm_within
                self._cond.notify_all()

    def release_recovered(self, why: str = 'a scan of the domains confirmed them'
                          ) -> None:
        """Schedule what the store held at start and was not withdrawn."""
        if self._unconfirmed_until is None:  # released, or nothing held
            return
        with self._cond:
            self._release_recovered(why)
        self.on_schedule()

    def _release_recovered(self, why: str) -> None:
        if self._unconfirmed_until is None:
            return
        self._unconfirmed_until = None
        released = [e for e in self._entries.values() if e.unconfirmed]
        for entry in released:
            entry.unconfirmed = False
            self._schedule(entry)
        if released:
            LOG.info('%d recovered notifications for %s released: %s',
                     len(released), self.sink, why)

    def wanted(self, notification: Notification) -> bool:
        """Whether a notification in flight is still to be sent: not
        withdrawn since it was taken (nor settled)."""
        with self._cond:
            entry = self._entries.get(notification.notification_id)
            return entry is not None and not entry.withdrawn

    def take(self, stop: threading.Event,
             timeout: float | None = None) -> Notification | None:
        """The next due notification, waiting for one; None once stopped or
        after ``timeout`` seconds without one."""
        deadline = None if timeout is None else self._monotonic() + timeout
        with self._cond:
            while not stop.is_set():
                now, timeout = self._monotonic(), None
                if self._unconfirmed_until is not None:
                    if now >= self._unconfirmed_until:
                        self._release_recovered('no scan of the domains could '
                                                'confirm them in time')
                    elif self._unconfirmed_until != math.inf:
                        timeout = self._unconfirmed_until - now
                while self._waiting:
                    due, _, nid = self._waiting[0]
                    if due > now:
                        timeout = due - now if timeout is None else min(timeout,
                                                                        due - now)
                        break
                    heapq.heappop(self._waiting)
                    entry = self._current(nid, due)
                    if entry is not None:
                        heapq.heappush(self._ready, (entry.order, nid))
                while self._handed:
                    entry = self._entries.get(self._handed.popleft())
                    if entry is not None:  # not settled meanwhile
                        return entry.notification
                while self._ready:
                    _, nid = heapq.heappop(self._ready)
                    entry = self._current(nid)
                    if entry is not None and entry.due <= now:
                        entry.in_flight = True
                        return entry.notification
                if deadline is not None:
                    if now >= deadline:
                        return None
                    left = deadline - now
                    timeout = left if timeout is None else min(timeout, left)
                self._cond.wait(timeout)
            return None

    def sent(self, notification: Notification) -> None:
        """A sender's request for ``notification`` is on the wire."""
        with self._cond:
            entry = self._entries.get(notification.notification_id)
            if entry is not None:
                entry.sent = True
            self._sent.notify_all()

    def wait_sent(self, notification: Notification, timeout: float) -> bool:
        """Wait until ``notification`` is sent (or settled), at most
        ``timeout`` seconds."""
        nid = notification.notification_id
        with self._cond:
            return self._sent.wait_for(
                lambda: (entry := self._entries.get(nid)) is None or entry.sent,
                timeout)

    def due(self) -> bool:
        """Whether a notification is due and not yet taken (a hint: it may
        have been withdrawn or taken meanwhile)."""
        now = self._monotonic()
        with self._cond:
            return bool(self._handed) or bool(self._ready) or bool(
                self._waiting and self._waiting[0][0] <= now)

    def delivered(self, notification: Notification) -> None:
        self._store.remove(notification.notification_id, delivered=True)
        with self._cond:
            self._entries.pop(notification.notification_id, None)
            self._sent.notify_all()

    def rejected(self, notification: Notification, reason: str) -> None:
        self._store.bury(notification.notification_id, reason, notification)
        with self._cond:
            self._entries.pop(notification.notification_id, None)
            self.dead_lettered += 1

    def retry_later(self, notification: Notification, delay: float) -> bool:
        """Schedule another round; False if it became a dead letter instead,
        or was withdrawn while in flight (then it is gone)."""
        with self._cond:
            entry = self._entries[notification.notification_id]
            if entry.withdrawn:
                del self._entries[notification.notification_id]
            age = self._monotonic() - entry.born
        if entry.withdrawn:
            self._store.remove(notification.notification_id)
            return False
        if self.max_age and age > self.max_age:
            LOG.error('Notification %s (%s/%s of %s) undelivered %.0f s after '
                      'detection, past max_pending_age: kept as a dead letter',
                      notification.notification_id, notification.event,
                      notification.vir_domain_event, notification.instance_uuid,
                      age)
            self.rejected(notification, f'undelivered after {age:.0f} s')
            return False
        self._store.reschedule(notification.notification_id, self._due_at(delay))
        with self._cond:
            entry = self._entries[notification.notification_id]
            entry.due, entry.in_flight = self._monotonic() + delay, False
            entry.sent = False
            self._schedule(entry)
        return True

    def requeue(self, notification_id: str) -> bool:
        """Send a dead letter again (an operator's decision)."""
        notification = self._store.unbury(notification_id, self._due_at(0.0),
                                          self.sink)
        if notification is None:
            return False
        now = self._monotonic()
        with self._cond:
            # A full max_age again: the operator wants it tried.
            self._schedule(_Entry(notification, now, next(self._orders), born=now))
        self.on_schedule()
        LOG.info('Dead letter %s (%s/%s of %s) queued again by the operator',
                 notification_id, notification.event, notification.vir_domain_event,
                 notification.instance_uuid)
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._entries)

    def oldest_age(self) -> float:
        """Seconds since the oldest pending notification was detected; 0 if
        none is pending."""
        now = self._monotonic()
        with self._cond:
            born = min((e.born for e in self._entries.values()), default=now)
        return max(0.0, now - born)

    def dead_letters(self) -> list[DeadLetter]:
        return self._store.dead_letters(self.sink)

    def wake(self) -> None:
        """Wake every waiting :meth:`take` so it sees its stop event."""
        with self._cond:
            self._cond.notify_all()
