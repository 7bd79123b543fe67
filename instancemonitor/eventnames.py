"""Names for every domain event, as event subscribers see them.

An event is named ``EVENT/DETAIL``. Where the recovery API's notification
table names it (``LIFECYCLE/STOPPED_FAILED``, ``WATCHDOG/WATCHDOG_PAUSE``,
``IO_ERROR/IO_ERROR_REPORT``...) the name is the same; the other events are
named the same way from libvirt's constants (``LIFECYCLE/STARTED_BOOTED``,
``AGENT_LIFECYCLE/CONNECTED``), the heartbeat's by its health
(``HEARTBEAT/FAILING``) and the application probes' by theirs
(``PROBE/REPORTED``).
"""

import fnmatch

import libvirt

from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.events import ProbeHealth
from instancemonitor.filter import NOTIFICATION_TABLE
from instancemonitor.filter import table_key

_LIFECYCLE_EVENTS = ('DEFINED', 'UNDEFINED', 'STARTED', 'SUSPENDED', 'RESUMED',
                     'STOPPED', 'SHUTDOWN', 'PMSUSPENDED', 'CRASHED')


def _constants(prefix: str, strip: str) -> dict[int, str]:
    """libvirt's constants under ``prefix``, by value, named without ``strip``."""
    return {getattr(libvirt, name): name.removeprefix(strip)
            for name in dir(libvirt)
            if name.startswith(prefix) and not name.endswith('_LAST')}


# Lifecycle event code → (its name, {detail code → detail name}).
_LIFECYCLE: dict[int, tuple[str, dict[int, str]]] = {
    getattr(libvirt, f'VIR_DOMAIN_EVENT_{event}'): (
        event, _constants(f'VIR_DOMAIN_EVENT_{event}_', 'VIR_DOMAIN_EVENT_'))
    for event in _LIFECYCLE_EVENTS}
_WATCHDOG = _constants('VIR_DOMAIN_EVENT_WATCHDOG_', 'VIR_DOMAIN_EVENT_')
_IO_ERROR = _constants('VIR_DOMAIN_EVENT_IO_ERROR_', 'VIR_DOMAIN_EVENT_')
_AGENT = _constants('VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_',
                    'VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_')


def event_name(event: DomainEvent) -> tuple[str, str]:
    """(EVENT, DETAIL) of ``event``; an unknown code is named by its number."""
    known = NOTIFICATION_TABLE.get(table_key(event))
    if known is not None and event.kind != EventKind.IO_ERROR_REASON:
        return known
    kind = event.kind.value
    match event.kind:
        case EventKind.LIFECYCLE:
            name, details = _LIFECYCLE.get(event.event, (str(event.event), {}))
            return kind, details.get(event.detail, f'{name}_{event.detail}')
        case EventKind.WATCHDOG:
            return kind, _WATCHDOG.get(event.event, f'WATCHDOG_{event.event}')
        case EventKind.IO_ERROR | EventKind.IO_ERROR_REASON:
            return kind, _IO_ERROR.get(event.event, f'IO_ERROR_{event.event}')
        case EventKind.AGENT_LIFECYCLE:
            return kind, _AGENT.get(event.event, str(event.event))
        case EventKind.HEARTBEAT:
            return kind, Health(event.event).name
        case EventKind.PROBE:
            return kind, ProbeHealth(event.event).name
    return kind, 'UNKNOWN'


def all_names() -> frozenset[str]:
    """Every ``EVENT/DETAIL`` this agent can publish."""
    names = {'/'.join(pair) for pair in NOTIFICATION_TABLE.values()}
    for _event, details in _LIFECYCLE.values():
        names.update(f'LIFECYCLE/{detail}' for detail in details.values())
    names.update(f'WATCHDOG/{d}' for d in _WATCHDOG.values())
    names.update(f'{kind}/{d}' for d in _IO_ERROR.values()
                 for kind in ('IO_ERROR', 'IO_ERROR_REASON'))
    names.update(f'AGENT_LIFECYCLE/{d}' for d in _AGENT.values())
    names.update(f'HEARTBEAT/{h.name}' for h in Health)
    names.update(f'PROBE/{h.name}' for h in ProbeHealth)
    return frozenset(names)


class EventPatterns:
    """Which events a subscriber wants: shell-style patterns over
    ``EVENT/DETAIL`` (``*``, ``LIFECYCLE/*``, ``*/STOPPED_FAILED``)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = tuple(patterns)

    def unmatched(self) -> list[str]:
        """The patterns that match no event name: typos, most likely."""
        names = all_names()
        return [p for p in self.patterns
                if not any(fnmatch.fnmatchcase(n, p) for n in names)]

    def match(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
