"""Which domain events become notifications, under which names.

``NOTIFICATION_TABLE`` is the one place that maps libvirt's (kind, event,
detail) to the notification's ``event`` / ``vir_domain_event`` names. Its
names are the ones masakari-monitors sends, so a recovery engine sees the same
payloads from either agent.
"""

import dataclasses

import libvirt

from instancemonitor.events import NO_CODE
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health

_LIFECYCLE = EventKind.LIFECYCLE
_WATCHDOG = EventKind.WATCHDOG
_IO_ERROR = EventKind.IO_ERROR

NOTIFICATION_TABLE: dict[tuple[EventKind, int, int], tuple[str, str]] = {
    # Lifecycle: failures, stops and suspends on error.
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED): ('LIFECYCLE', 'STOPPED_FAILED'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED): ('LIFECYCLE', 'STOPPED_CRASHED'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN): ('LIFECYCLE', 'STOPPED_SHUTDOWN'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED):
        ('LIFECYCLE', 'STOPPED_DESTROYED'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_SHUTDOWN,
     libvirt.VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED):
        ('LIFECYCLE', 'SHUTDOWN_FINISHED'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR):
        ('LIFECYCLE', 'SUSPENDED_IOERROR'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG):
        ('LIFECYCLE', 'SUSPENDED_WATCHDOG'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR):
        ('LIFECYCLE', 'SUSPENDED_API_ERROR'),
    (_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_CRASHED,
     libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED):
        ('LIFECYCLE', 'CRASHED_PANICKED'),
    # Reboot and control errors carry no code.
    (EventKind.REBOOT, NO_CODE, NO_CODE): ('REBOOT', 'UNKNOWN'),
    (EventKind.CONTROL_ERROR, NO_CODE, NO_CODE): ('CONTROL_ERROR', 'UNKNOWN'),
    # Watchdog: the action taken.
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_NONE, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_NONE'),
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_PAUSE, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_PAUSE'),
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_RESET, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_RESET'),
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_POWEROFF, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_POWEROFF'),
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_SHUTDOWN, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_SHUTDOWN'),
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_DEBUG, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_DEBUG'),
    (_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_INJECTNMI, NO_CODE):
        ('WATCHDOG', 'WATCHDOG_INJECTNMI'),
    # I/O errors: the action taken on the error.
    (_IO_ERROR, libvirt.VIR_DOMAIN_EVENT_IO_ERROR_NONE, NO_CODE):
        ('IO_ERROR', 'IO_ERROR_NONE'),
    (_IO_ERROR, libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, NO_CODE):
        ('IO_ERROR', 'IO_ERROR_PAUSE'),
    (_IO_ERROR, libvirt.VIR_DOMAIN_EVENT_IO_ERROR_REPORT, NO_CODE):
        ('IO_ERROR', 'IO_ERROR_REPORT'),
    # The same error again, with a reason string (matched on kind alone).
    (EventKind.IO_ERROR_REASON, NO_CODE, NO_CODE):
        ('IO_ERROR_REASON', 'UNKNOWN'),
}

# The pairs the recovery engine acts on (Masakari's own list); forwarded by
# default, and a domain's failure episode is one of these.
RECOVERY_PAIRS = frozenset({
    ('LIFECYCLE', 'STOPPED_FAILED'),
    ('IO_ERROR', 'IO_ERROR_REPORT'),
    ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED'),
})

# Lifecycle events after which a domain is running again.
_RUNNING_AGAIN = frozenset({libvirt.VIR_DOMAIN_EVENT_STARTED,
                            libvirt.VIR_DOMAIN_EVENT_RESUMED})
# Lifecycle events a reboot produces before the domain starts again.
_HELD_FOR_REBOOT = frozenset({libvirt.VIR_DOMAIN_EVENT_STOPPED,
                              libvirt.VIR_DOMAIN_EVENT_SHUTDOWN})
# Kinds whose event code alone is matched: the detail is not a code.
_MATCH_EVENT_ONLY = frozenset({_WATCHDOG, _IO_ERROR})
_MATCH_KIND_ONLY = frozenset({EventKind.REBOOT, EventKind.CONTROL_ERROR,
                              EventKind.IO_ERROR_REASON})


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What the filter says of one event."""

    # (event, vir_domain_event) to notify, or None.
    pair: tuple[str, str] | None = None
    # The recovery engine acts on ``pair``: it opens a failure episode.
    recovery: bool = False
    # Seconds to hold the notification in case the domain starts again.
    hold: float = 0.0
    # The domain is running again: a failure episode ends.
    running_again: bool = False
    # The episode opened by this pair ('EVENT/DETAIL') is over, if it is open.
    recovered: str = ''


IGNORED = Verdict()


def table_key(event: DomainEvent) -> tuple[EventKind, int, int]:
    if event.kind in _MATCH_KIND_ONLY:
        return (event.kind, NO_CODE, NO_CODE)
    if event.kind in _MATCH_EVENT_ONLY:
        return (event.kind, event.event, NO_CODE)
    return (event.kind, event.event, event.detail)


class EventFilter:
    """Classifies domain events for the notification chain."""

    def __init__(self, forward_all: bool, reboot_window: float,
                 heartbeat_event: str = 'QEMU_GUEST_AGENT_ERROR') -> None:
        self._forward_all = forward_all
        self.reboot_window = reboot_window
        # A heartbeat failure is notified as (heartbeat_event, STOPPED_FAILED).
        self._heartbeat_pair = (heartbeat_event, 'STOPPED_FAILED')

    def classify(self, event: DomainEvent) -> Verdict:
        if event.kind == EventKind.LIFECYCLE and event.event in _RUNNING_AGAIN:
            return Verdict(running_again=True)
        if event.kind == EventKind.HEARTBEAT:
            return self._classify_heartbeat(event)
        pair = NOTIFICATION_TABLE.get(table_key(event))
        if pair is None:
            return IGNORED
        recovery = pair in RECOVERY_PAIRS
        if not (recovery or self._forward_all):
            return IGNORED
        held = (event.kind == EventKind.LIFECYCLE and
                event.event in _HELD_FOR_REBOOT)
        return Verdict(pair=pair, recovery=recovery,
                       hold=self.reboot_window if held else 0.0)

    def _classify_heartbeat(self, event: DomainEvent) -> Verdict:
        if event.event in (Health.REPORTED, Health.NEVER_ANSWERED):
            return Verdict(pair=self._heartbeat_pair, recovery=True)
        if event.event == Health.HEALTHY:
            return Verdict(recovered='/'.join(self._heartbeat_pair))
        return IGNORED
