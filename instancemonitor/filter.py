"""Which domain events become notifications, under which names, and which
input of the per-domain state machine (``domainstate``) each one is.

``NOTIFICATION_TABLE`` is the one place that maps libvirt's (kind, event,
detail) to the notification's ``event`` / ``vir_domain_event`` names. Its
names are the ones masakari-monitors sends, so a recovery engine sees the same
payloads from either agent.
"""

import libvirt

from instancemonitor.domainstate import Input
from instancemonitor.domainstate import Observation
from instancemonitor.events import NO_CODE
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import MigrationSource

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

# DomainEvent.source of events made from a state scan, not a libvirt event.
RECONCILIATION = 'reconciliation'

# The pairs the recovery engine acts on (Masakari's own list); forwarded by
# default, and a domain's failure episode is one of these.
RECOVERY_PAIRS = frozenset({
    ('LIFECYCLE', 'STOPPED_FAILED'),
    ('IO_ERROR', 'IO_ERROR_REPORT'),
    ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED'),
})

_STARTED = libvirt.VIR_DOMAIN_EVENT_STARTED
_SUSPENDED = libvirt.VIR_DOMAIN_EVENT_SUSPENDED
_RESUMED = libvirt.VIR_DOMAIN_EVENT_RESUMED
_STOPPED = libvirt.VIR_DOMAIN_EVENT_STOPPED

# Lifecycle (event, detail) → the state machine's input. A detail not
# listed takes its event's entry under NO_CODE.
_LIFECYCLE_INPUTS: dict[tuple[int, int], Input] = {
    (_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED): Input.START_MIGRATION_IN,
    (_STARTED, NO_CODE): Input.START,
    (_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED): Input.RESUME_MIGRATED,
    (_RESUMED, NO_CODE): Input.RESUME,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED): Input.PAUSE_MIGRATION,
    # Post-copy: the source paused for good, the VM running at the
    # destination on pages it still fetches from the source.
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY): Input.PAUSE_MIGRATION,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR): Input.PAUSE_ERROR,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG): Input.PAUSE_ERROR,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR): Input.PAUSE_ERROR,
    (_SUSPENDED, NO_CODE): Input.PAUSE,
    (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED): Input.STOP_FAILED,
    (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED): Input.STOP_CRASHED,
    (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED): Input.STOP_MIGRATED,
    (_STOPPED, NO_CODE): Input.STOP,
    # A rename (of a stopped domain) undefines the old name and defines the
    # new one, the same domain: nothing is over, nothing to forget.
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_RENAMED):
        Input.EVENT,
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, NO_CODE): Input.UNDEFINED,
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, NO_CODE): Input.DEFINED,
}
# A state scan publishes the lifecycle event each state stands for
# (sources/reconcile.py); as a scan it means this.
_SCAN_INPUTS: dict[tuple[int, int], Input] = {
    (_STARTED, NO_CODE): Input.SCAN_RUNNING,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED): Input.SCAN_MIGRATING,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY): Input.SCAN_POSTCOPY,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR): Input.SCAN_ERROR_PAUSED,
    (_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG):
        Input.SCAN_ERROR_PAUSED,
    (_SUSPENDED, NO_CODE): Input.SCAN_PAUSED,
    (_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED): Input.SCAN_FAILED,
    (_STOPPED, NO_CODE): Input.SCAN_SHUTOFF,
}
_MIGRATION_SOURCE_INPUTS = {
    MigrationSource.DEFINED: Input.SOURCE_DEFINED,
    MigrationSource.GONE: Input.SOURCE_GONE,
    MigrationSource.JOB_ENDED: Input.MIGRATION_ENDED,
}
_AGENT_INPUTS = {
    libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
        Input.AGENT_CONNECTED,
    libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED:
        Input.AGENT_DISCONNECTED,
}
# Forwarded stops (not recovery pairs) held for the reboot window.
_HELD_FOR_REBOOT = frozenset({_STOPPED, libvirt.VIR_DOMAIN_EVENT_SHUTDOWN})
# Kinds whose event code alone is matched: the detail is not a code.
_MATCH_EVENT_ONLY = frozenset({_WATCHDOG, _IO_ERROR})
_MATCH_KIND_ONLY = frozenset({EventKind.REBOOT, EventKind.CONTROL_ERROR,
                              EventKind.IO_ERROR_REASON})


def table_key(event: DomainEvent) -> tuple[EventKind, int, int]:
    if event.kind in _MATCH_KIND_ONLY:
        return (event.kind, NO_CODE, NO_CODE)
    if event.kind in _MATCH_EVENT_ONLY:
        return (event.kind, event.event, NO_CODE)
    return (event.kind, event.event, event.detail)


def _by_code(table: dict[tuple[int, int], Input], event: DomainEvent) -> Input | None:
    return (table.get((event.event, event.detail)) or
            table.get((event.event, NO_CODE)))


def _input(event: DomainEvent) -> Input | None:
    """The state machine's input for ``event``; None for a derived event."""
    match event.kind:
        case EventKind.LIFECYCLE if event.source == RECONCILIATION:
            return _by_code(_SCAN_INPUTS, event)
        case EventKind.LIFECYCLE:
            return _by_code(_LIFECYCLE_INPUTS, event) or Input.EVENT
        case EventKind.IO_ERROR if (
                event.event == libvirt.VIR_DOMAIN_EVENT_IO_ERROR_REPORT):
            return Input.IO_ERROR_REPORT
        case EventKind.REBOOT:
            return Input.REBOOT
        case EventKind.AGENT_LIFECYCLE:
            return _AGENT_INPUTS.get(event.event, Input.EVENT)
        case EventKind.PING:
            return Input.PING_OK if event.event else Input.PING_MISS
        case EventKind.PROBE_RESULT:
            return Input.PROBE
        case EventKind.HEARTBEAT | EventKind.PROBE:
            return None  # made by the journal from pings and probe runs
        case EventKind.METADATA_CHANGE:
            return None  # the probes' business, not the journal's
        case EventKind.MIGRATION_SOURCE:
            return _MIGRATION_SOURCE_INPUTS[MigrationSource(event.event)]
        case EventKind.NOT_LISTED:
            return Input.SCAN_NOT_LISTED
    return Input.EVENT


class EventFilter:
    """Turns domain events into the state machine's observations, naming
    the notification each would be and saying whether it is forwarded."""

    def __init__(self, forward_all: bool, reboot_window: float,
                 boot: str = '') -> None:
        """``boot``: the host's boot id, given to every observation."""
        self._forward_all = forward_all
        self.reboot_window = reboot_window
        self._boot = boot

    def classify(self, event: DomainEvent) -> Observation | None:
        given = _input(event)
        if given is None:
            return None
        pair = NOTIFICATION_TABLE.get(table_key(event))
        if pair is not None and not (pair in RECOVERY_PAIRS or self._forward_all):
            pair = None
        # Only a stop the engine does not act on is held: a recovery pair
        # goes out at once (libvirt never restarts a domain whose QEMU died).
        held = (pair is not None and pair not in RECOVERY_PAIRS and
                event.kind == EventKind.LIFECYCLE and
                event.source != RECONCILIATION and event.event in _HELD_FOR_REBOOT)
        return Observation(
            input=given, at=event.detected_at, domain_id=event.domain_id,
            seq=event.seq, from_scan=event.source == RECONCILIATION, pair=pair,
            hold=self.reboot_window if held else 0.0, probe=event.check,
            persistent=event.persistent, boot=self._boot)
