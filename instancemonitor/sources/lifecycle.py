"""libvirt domain event callbacks → :class:`DomainEvent` on the bus.

CONTRACT: every ``_on_*`` method runs on libvirt's event-loop thread. It may
only read its arguments (and the domain's name, UUID and id, which libvirt
keeps locally), build one immutable :class:`DomainEvent` and publish it, which only
enqueues. No logging, no I/O, no call that goes to libvirtd, no lock that
another thread may hold for long: a callback that waits stalls every event,
keepalive and close callback of the process.
"""

from collections.abc import Callable

import libvirt

from instancemonitor import clock
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind

Publish = Callable[[DomainEvent], None]


class LibvirtEventSource:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    def register(self, conn: libvirt.virConnect) -> list[int]:
        """Register every callback on ``conn``; return their ids."""
        callbacks = {
            libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE: self._on_lifecycle,
            libvirt.VIR_DOMAIN_EVENT_ID_REBOOT: self._on_reboot,
            libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG: self._on_watchdog,
            libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR: self._on_io_error,
            libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON:
                self._on_io_error_reason,
            libvirt.VIR_DOMAIN_EVENT_ID_CONTROL_ERROR: self._on_control_error,
            libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE:
                self._on_agent_lifecycle,
            libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE:
                self._on_metadata_change,
        }
        return [conn.domainEventRegisterAny(None, event_id, callback, None)
                for event_id, callback in callbacks.items()]

    def _emit(self, kind: EventKind, dom: libvirt.virDomain, event: int = -1,
              detail: int = -1, reason: str = '') -> None:
        self._publish(DomainEvent(
            kind=kind, domain_uuid=dom.UUIDString(), domain_name=dom.name(),
            event=event, detail=detail, reason=reason,
            detected_at=clock.utcnow(), domain_id=dom.ID()))

    def _on_lifecycle(self, _conn, dom, event, detail, _opaque) -> None:
        self._emit(EventKind.LIFECYCLE, dom, event, detail)

    def _on_reboot(self, _conn, dom, _opaque) -> None:
        self._emit(EventKind.REBOOT, dom)

    def _on_watchdog(self, _conn, dom, action, _opaque) -> None:
        self._emit(EventKind.WATCHDOG, dom, action)

    def _on_io_error(self, _conn, dom, _src_path, _dev_alias, action,
                     _opaque) -> None:
        self._emit(EventKind.IO_ERROR, dom, action)

    def _on_io_error_reason(self, _conn, dom, _src_path, _dev_alias, action,
                            reason, _opaque) -> None:
        self._emit(EventKind.IO_ERROR_REASON, dom, action, reason=reason)

    def _on_control_error(self, _conn, dom, _opaque) -> None:
        self._emit(EventKind.CONTROL_ERROR, dom)

    def _on_agent_lifecycle(self, _conn, dom, state, reason, _opaque) -> None:
        self._emit(EventKind.AGENT_LIFECYCLE, dom, state, reason)

    def _on_metadata_change(self, _conn, dom, kind, nsuri, _opaque) -> None:
        self._emit(EventKind.METADATA_CHANGE, dom, kind, reason=nsuri or '')
