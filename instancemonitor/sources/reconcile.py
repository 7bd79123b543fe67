"""State scans: failures no event reported become events after all.

Events that happen while the agent is not connected (libvirtd restarting,
the agent down) are never delivered later. A scan of every domain's state,
on each connection and every ``reconcile_interval``, finds them: a domain
shut off because it crashed or failed, or paused on an I/O error or a
watchdog, is published as the lifecycle event that would have reported it.
The journal drops what it has notified already, so scans repeat safely.
A domain that is gone is not listed, and a scan that fails reports nothing.
"""

import logging
from collections.abc import Callable

import libvirt

from instancemonitor import clock
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.journal import RECONCILIATION
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

THREAD_NAME = 'reconcile'

# (state, reason) → the lifecycle (event, detail) it stands for.
_STOPPED = libvirt.VIR_DOMAIN_EVENT_STOPPED
_SUSPENDED = libvirt.VIR_DOMAIN_EVENT_SUSPENDED
STATE_TABLE: dict[tuple[int, int], tuple[int, int]] = {
    # SIGKILLed QEMU: the event says FAILED, the state says CRASHED.
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_FAILED):
        (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_WATCHDOG):
        (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG),
}
# A running domain: the end of any failure episode the journal has open.
_RUNNING = (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)


def _states(conn: libvirt.virConnect) -> list[tuple[libvirt.virDomain, int, int]]:
    try:
        stats = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
        return [(dom, s['state.state'], s['state.reason']) for dom, s in stats]
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
    return [(dom, *dom.state()) for dom in conn.listAllDomains()]


class Reconciler(Worker):
    def __init__(self, publish: Callable[[DomainEvent], None],
                 current: Callable[[], libvirt.virConnect | None],
                 interval: float) -> None:
        """``current`` gives the open connection, if any, for periodic scans."""
        self._publish = publish
        self._current = current
        self.interval = interval
        super().__init__(THREAD_NAME)

    def register(self, conn: libvirt.virConnect) -> list[int]:
        """Scan a new connection (after the event callbacks are registered)."""
        self.scan(conn)
        return []

    def scan(self, conn: libvirt.virConnect) -> int:
        """Publish the failures and the running domains found; return the count
        of failures found."""
        try:
            states = _states(conn)
        except libvirt.libvirtError as error:
            LOG.warning('Domain state scan failed (%s); nothing is taken for a '
                        'failure', error.get_error_message())
            return 0
        now, failures = clock.utcnow(), 0
        for dom, state, reason in states:
            if state == libvirt.VIR_DOMAIN_RUNNING:
                event, detail = _RUNNING
            elif (state, reason) in STATE_TABLE:
                event, detail = STATE_TABLE[(state, reason)]
                failures += 1
            else:
                continue
            self._publish(DomainEvent(
                kind=EventKind.LIFECYCLE, domain_uuid=dom.UUIDString(),
                domain_name=dom.name(), event=event, detail=detail,
                detected_at=now, source=RECONCILIATION))
        LOG.debug('Domain state scan: %d domains, %d failed', len(states), failures)
        return failures

    def set_interval(self, interval: float) -> None:
        self.interval = interval
        self.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            # 0: scans only on connection; sleep until the interval changes.
            if self._wakeup.wait(self.interval or None):
                self._wakeup.clear()
                continue
            conn = self._current()
            if conn is not None:
                self.scan(conn)
