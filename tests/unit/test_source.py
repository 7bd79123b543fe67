"""The libvirt callbacks, called as libvirt calls them."""

import libvirt

from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.sources.lifecycle import LibvirtEventSource


class Domain:
    """What a callback may touch of a virDomain: its name, UUID and id (all
    kept in the client, no call to libvirtd)."""

    def UUIDString(self):
        return '6695eb01-f6a4-8304-79aa-97f2502e193f'

    def ID(self):
        return 4

    def name(self):
        return 'instance-0001'


class Conn:
    def __init__(self):
        self.registered = {}

    def domainEventRegisterAny(self, dom, event_id, callback, opaque):
        self.registered[event_id] = callback
        return len(self.registered)


def test_registers_every_event_id_and_callbacks_only_enqueue():
    published: list[DomainEvent] = []
    conn = Conn()
    ids = LibvirtEventSource(published.append).register(conn)
    assert ids == list(range(1, 9))
    assert set(conn.registered) == {
        libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
        libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG, libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR,
        libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON,
        libvirt.VIR_DOMAIN_EVENT_ID_CONTROL_ERROR,
        libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
        libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE}
    cb, dom = conn.registered, Domain()
    cb[libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE](conn, dom, 5, 5, None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_REBOOT](conn, dom, None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG](conn, dom, 1, None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR](conn, dom, '/d', 'vda', 2, None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON](conn, dom, '/d', 'vda', 1,
                                                     'enospc', None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_CONTROL_ERROR](conn, dom, None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE](conn, dom, 2, 1, None)
    cb[libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE](
        conn, dom, libvirt.VIR_DOMAIN_METADATA_ELEMENT, 'urn:instancemonitor:probes:1',
        None)
    assert [(e.kind, e.event, e.detail, e.reason) for e in published] == [
        (EventKind.LIFECYCLE, 5, 5, ''), (EventKind.REBOOT, -1, -1, ''),
        (EventKind.WATCHDOG, 1, -1, ''), (EventKind.IO_ERROR, 2, -1, ''),
        (EventKind.IO_ERROR_REASON, 1, -1, 'enospc'),
        (EventKind.CONTROL_ERROR, -1, -1, ''),
        (EventKind.AGENT_LIFECYCLE, 2, 1, ''),
        (EventKind.METADATA_CHANGE, libvirt.VIR_DOMAIN_METADATA_ELEMENT, -1,
         'urn:instancemonitor:probes:1')]
    assert {e.domain_uuid for e in published} == {dom.UUIDString()}
    assert all(e.detected_at.tzinfo is not None for e in published)
