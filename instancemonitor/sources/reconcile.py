"""State scans: what no event told, found after all.

Events that happen while the agent is not connected (libvirtd restarting,
the agent down) are never delivered later. A scan of every domain's state,
on each connection and every ``reconcile_interval``, publishes each domain's
state as the lifecycle event it stands for, with the domain's id, marked as
coming from reconciliation. The state machine (``domainstate``) decides what
is news: a failure nobody reported, or a run it has not seen. A scan takes
its sequence number before it reads, so the machine can tell a state read
before an event it already applied, and publishes what it read only once
libvirt's event loop has run the callbacks of every event received before
libvirtd's answer: those are applied first. Each state found says whether the
domain is persistent, and each domain the journal knows that a complete
scan does not list is published as NOT_LISTED: a persistent domain missing
was undefined while nobody watched. A scan that fails reports nothing.
"""

import logging
import threading
from collections.abc import Callable
from collections.abc import Iterable

import libvirt

from instancemonitor import clock
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import next_seq
from instancemonitor.filter import RECONCILIATION
from instancemonitor.supervision import PROGRESS_TICK
from instancemonitor.virt import eventloop
from instancemonitor.virt.connection import Borrow
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

THREAD_NAME = 'reconcile'

_STARTED = libvirt.VIR_DOMAIN_EVENT_STARTED
_SUSPENDED = libvirt.VIR_DOMAIN_EVENT_SUSPENDED
_STOPPED = libvirt.VIR_DOMAIN_EVENT_STOPPED
_RUNNING = (_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)
# (state, reason) → the lifecycle (event, detail) it stands for; a reason
# not listed takes the state's entry under None.
STATE_TABLE: dict[tuple[int, int | None], tuple[int, int]] = {
    (libvirt.VIR_DOMAIN_RUNNING, None): _RUNNING,
    (libvirt.VIR_DOMAIN_BLOCKED, None): _RUNNING,
    # Paused for (either side of) a migration.
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
    # The source of a post-copy migration (its destination runs).
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_WATCHDOG):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG),
    (libvirt.VIR_DOMAIN_PAUSED, None):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),
    # A SIGKILLed QEMU: the event says FAILED, the state says CRASHED.
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_FAILED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED),
    (libvirt.VIR_DOMAIN_SHUTOFF, None):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN),
}
_FAILED = (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
# States a scan says nothing of. A domain being started (a boot, or the
# incoming side of a migration before libvirt calls it one) is paused with
# reason STARTING_UP; the STARTED event that follows tells what it is, and
# the callbacks are registered before the first scan, so it cannot be missed.
SILENT_STATES = frozenset({
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP)})


def lifecycle_of(state: int, reason: int) -> tuple[int, int] | None:
    """The lifecycle (event, detail) a domain state stands for, if any."""
    if (state, reason) in SILENT_STATES:
        return None
    return STATE_TABLE.get((state, reason)) or STATE_TABLE.get((state, None))


def _states(conn: libvirt.virConnect) -> list[tuple[libvirt.virDomain, int, int]]:
    try:
        stats = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
        return [(dom, s['state.state'], s['state.reason']) for dom, s in stats]
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
    return [(dom, *dom.state()) for dom in conn.listAllDomains()]


class Reconciler(Worker):
    # Seconds a scan holds what it found shut off on a failure, for
    # libvirt's events of that stop to arrive first.
    FAILURE_SETTLE = 0.5
    # Seconds a scan waits for the callbacks of the events libvirt received
    # before its answer (they run at once unless the loop is stuck).
    EVENTS_CATCH_UP = 5.0

    def __init__(self, publish: Callable[[DomainEvent], None],
                 borrow: Borrow,
                 interval: float,
                 scanned: Callable[[set[str], int], None] = lambda uuids, seq: None,
                 progress: Callable[[], None] = lambda: None,
                 known: Callable[[], Iterable[tuple[str, str]]] = lambda: ()
                 ) -> None:
        """``borrow`` lends the open connection, if any, for each scan;
        ``scanned`` is told the uuids of every domain a complete scan listed,
        and the sequence number it took before reading; ``known`` gives the
        (uuid, name) of each domain the journal holds."""
        self._publish = publish
        self._borrow = borrow
        self._scanned = scanned
        self._known = known
        self._progress = progress
        self.interval = interval
        # A new connection, for the worker to scan before anything else.
        self._connected = threading.Event()
        super().__init__(THREAD_NAME)

    def register(self, _conn: libvirt.virConnect) -> list[int]:
        """Have a new connection scanned (its event callbacks are registered
        by then) on the worker's thread, so that the connection is taken
        for open at once, even while a scan waits ``FAILURE_SETTLE``."""
        self._connected.set()
        self.wake()
        return []

    def scan(self, conn: libvirt.virConnect) -> int:
        """Publish every domain's state; return how many are shut off on a
        failure."""
        seq = next_seq()
        try:
            states = _states(conn)
            persistent = {dom.UUIDString() for dom in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)}
        except libvirt.libvirtError as error:
            LOG.warning('Domain state scan failed (%s); nothing is taken for a '
                        'failure', error.get_error_message())
            return 0
        # libvirtd sent the events of what changed before it answered: they
        # go on the bus first (a scan found read before them is then stale).
        if not eventloop.caught_up(self.EVENTS_CATCH_UP):
            LOG.warning('Domain state scan: libvirt\'s event loop did not run '
                        'the events received before its answer within %g s; '
                        'nothing is taken from it', self.EVENTS_CATCH_UP)
            return 0
        now, failed = clock.utcnow(), []
        for dom, state, reason in states:
            found = lifecycle_of(state, reason)
            if found is None:
                continue  # starting up, pmsuspended, crashed and preserved
            uuid = dom.UUIDString()
            event = DomainEvent(
                kind=EventKind.LIFECYCLE, domain_uuid=uuid,
                domain_name=dom.name(), event=found[0], detail=found[1],
                detected_at=now, source=RECONCILIATION, domain_id=dom.ID(),
                seq=seq, persistent=uuid in persistent)
            if found == _FAILED:
                failed.append(event)
            else:
                self._publish(event)
        if failed:
            # libvirt's events of the same stop may be on their way (a
            # guest panic's CRASHED and STOPPED_CRASHED come a few ms after
            # the state): the findings go after them, and are stale for a
            # domain whose events came, which tell what the stop was.
            self._stop.wait(self.FAILURE_SETTLE)
            for event in failed:
                self._publish(event)
        listed = {dom.UUIDString() for dom, _, _ in states}
        for uuid, name in self._known():
            if uuid not in listed:
                self._publish(DomainEvent(
                    kind=EventKind.NOT_LISTED, domain_uuid=uuid, domain_name=name,
                    detected_at=now, source=RECONCILIATION, seq=seq))
        LOG.debug('Domain state scan: %d domains, %d failed', len(states),
                  len(failed))
        self._scanned(listed, seq)
        return len(failed)

    def set_interval(self, interval: float) -> None:
        self.interval = interval
        self.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._sleep()
            if self._stop.is_set():
                return
            if self._connected.is_set():
                # Cleared before the scan: a connection registered meanwhile
                # is scanned (again) on the next turn, never skipped.
                self._connected.clear()
            elif woken:
                continue  # the interval changed
            with self._borrow() as conn:
                if conn is not None:
                    self.scan(conn)

    def _sleep(self) -> bool:
        """Wait one interval (0: until woken), showing progress; True if
        woken before it passed (or a new connection waits)."""
        started = clock.monotonic()
        while not self._connected.is_set():
            self._progress()
            left = (self.interval - (clock.monotonic() - started)
                    if self.interval else PROGRESS_TICK)
            if left <= 0:
                return False
            if self._wakeup.wait(min(left, PROGRESS_TICK)):
                self._wakeup.clear()
                return True
        return True
