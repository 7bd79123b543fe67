"""Event names, subscriber patterns and the fan-out into per-sink outboxes."""

import datetime
import threading

import libvirt
import pytest

from instancemonitor.eventnames import EventPatterns
from instancemonitor.eventnames import all_names
from instancemonitor.eventnames import event_name
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.events import next_seq
from instancemonitor.fanout import EventFanout
from instancemonitor.fanout import Subscription
from instancemonitor.filter import RECONCILIATION
from instancemonitor.outbox import Outbox

UUID = '6695eb01-f6a4-8304-79aa-97f2502e193f'
T0 = datetime.datetime(2026, 11, 22, 10, 0, 0, 5000, tzinfo=datetime.UTC)


def lifecycle(event, detail, source='libvirt'):
    return DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', event, detail,
                       detected_at=T0, source=source)


STARTED = lifecycle(libvirt.VIR_DOMAIN_EVENT_STARTED,
                    libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)
FAILED = lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                   libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)


@pytest.mark.parametrize('event, name', [
    (FAILED, ('LIFECYCLE', 'STOPPED_FAILED')),
    (STARTED, ('LIFECYCLE', 'STARTED_BOOTED')),
    (lifecycle(libvirt.VIR_DOMAIN_EVENT_RESUMED,
               libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED),
     ('LIFECYCLE', 'RESUMED_UNPAUSED')),
    (lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED, 99), ('LIFECYCLE', 'STOPPED_99')),
    (DomainEvent(EventKind.WATCHDOG, UUID, 'vm', libvirt.VIR_DOMAIN_EVENT_WATCHDOG_PAUSE),
     ('WATCHDOG', 'WATCHDOG_PAUSE')),
    (DomainEvent(EventKind.IO_ERROR_REASON, UUID, 'vm',
                 libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, reason='enospc'),
     ('IO_ERROR_REASON', 'IO_ERROR_PAUSE')),
    (DomainEvent(EventKind.AGENT_LIFECYCLE, UUID, 'vm',
                 libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED, 1),
     ('AGENT_LIFECYCLE', 'CONNECTED')),
    (DomainEvent(EventKind.REBOOT, UUID, 'vm'), ('REBOOT', 'UNKNOWN')),
    (DomainEvent(EventKind.HEARTBEAT, UUID, 'vm', Health.FAILING, 2),
     ('HEARTBEAT', 'FAILING')),
])
def test_every_event_has_a_name(event, name):
    assert event_name(event) == name
    assert '/'.join(name) in all_names() or name[1] == 'STOPPED_99'


def test_patterns_match_shell_style_and_find_typos():
    patterns = EventPatterns(['LIFECYCLE/STOPPED_*', '*/IO_ERROR_REPORT'])
    assert patterns.match('LIFECYCLE/STOPPED_FAILED')
    assert patterns.match('IO_ERROR/IO_ERROR_REPORT')
    assert not patterns.match('LIFECYCLE/STARTED_BOOTED')
    assert not patterns.match('lifecycle/STOPPED_FAILED')
    assert EventPatterns(['*', 'LIFECYCLE/STOPED_*', 'HEARTBEAT/*']).unmatched() == [
        'LIFECYCLE/STOPED_*']


def fanout(**patterns):
    boxes = {name: Outbox(sink=name) for name in patterns}
    return EventFanout('compute-1', [
        Subscription(EventPatterns(p), boxes[name]) for name, p in patterns.items()
    ]), boxes


def taken(box):
    stop = threading.Event()
    out = []
    while (n := box.take(stop, timeout=0)) is not None:
        out.append(n)
    return out


def test_each_subscriber_gets_the_events_it_asked_for_as_documents():
    fan, boxes = fanout(**{'webhook:all': ['*'],
                           'webhook:failures': ['LIFECYCLE/STOPPED_FAILED']})
    fan(STARTED)
    fan(FAILED)
    everything, failures = taken(boxes['webhook:all']), taken(boxes['webhook:failures'])
    assert [n.vir_domain_event for n in everything] == ['STARTED_BOOTED',
                                                        'STOPPED_FAILED']
    (failure,) = failures
    assert failure.sink == 'webhook:failures'
    assert failure.document() == {
        'id': failure.notification_id, 'host': 'compute-1',
        'instance': {'uuid': UUID, 'name': 'vm-1'},
        'event': 'LIFECYCLE', 'detail': 'STOPPED_FAILED',
        'time': '2026-11-22T10:00:00.005000Z', 'source': 'libvirt'}
    assert failure.notification_id != everything[1].notification_id


def test_a_scan_passes_on_only_what_is_new():
    fan, boxes = fanout(bus=['*'])

    def scan_running():  # each scan takes its own sequence number
        return lifecycle(libvirt.VIR_DOMAIN_EVENT_STARTED,
                         libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED, RECONCILIATION)

    def scan_failed():
        return lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                         libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED, RECONCILIATION)
    fan(scan_running())  # first sight: the state at start
    fan(scan_running())
    fan(lifecycle(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                  libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED))
    fan(lifecycle(libvirt.VIR_DOMAIN_EVENT_RESUMED,
                  libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED))
    fan(scan_running())  # resumed is running: nothing new
    fan(scan_failed())  # missed while disconnected
    fan(scan_failed())
    assert [(n.vir_domain_event, n.source) for n in taken(boxes['bus'])] == [
        ('STARTED_BOOTED', RECONCILIATION), ('SUSPENDED_PAUSED', 'libvirt'),
        ('RESUMED_UNPAUSED', 'libvirt'), ('STOPPED_FAILED', RECONCILIATION)]


def test_a_start_a_scan_read_first_is_told_once():
    # The scan reads the domain running before libvirt's event of its start
    # is dispatched; the event then tells the same run (its domain id).
    fan, boxes = fanout(bus=['*'])
    scan_seq = next_seq()
    booted = dict(event=libvirt.VIR_DOMAIN_EVENT_STARTED,
                  detail=libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', **booted,
                    source=RECONCILIATION, domain_id=7, seq=scan_seq))
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', **booted, domain_id=7))
    fan(lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                  libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED))
    # A start of another run is news, though a scan told it running before.
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', **booted,
                    source=RECONCILIATION, domain_id=8, seq=next_seq()))
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', **booted, domain_id=9))
    assert [(n.vir_domain_event, n.source) for n in taken(boxes['bus'])] == [
        ('STARTED_BOOTED', RECONCILIATION), ('STOPPED_DESTROYED', 'libvirt'),
        ('STARTED_BOOTED', RECONCILIATION), ('STARTED_BOOTED', 'libvirt')]


def test_a_scan_read_before_an_event_passed_on_is_stale():
    fan, boxes = fanout(bus=['*'])
    scan_seq = next_seq()  # the scan reads the domain shut off...
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', libvirt.VIR_DOMAIN_EVENT_STARTED,
                    libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED, domain_id=3))
    # ...and publishes after libvirt's event of the start that followed.
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', libvirt.VIR_DOMAIN_EVENT_STOPPED,
                    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, source=RECONCILIATION,
                    seq=scan_seq))
    fan(DomainEvent(EventKind.LIFECYCLE, UUID, 'vm-1', libvirt.VIR_DOMAIN_EVENT_STOPPED,
                    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED))
    assert [(n.vir_domain_event, n.source) for n in taken(boxes['bus'])] == [
        ('STARTED_BOOTED', 'libvirt'), ('STOPPED_DESTROYED', 'libvirt')]


def test_an_io_error_reason_is_in_the_document():
    fan, boxes = fanout(bus=['IO_ERROR_REASON/*'])
    fan(DomainEvent(EventKind.IO_ERROR_REASON, UUID, 'vm-1',
                    libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, reason='enospc'))
    (n,) = taken(boxes['bus'])
    assert n.document()['reason'] == 'enospc'


def test_the_least_recently_seen_domains_are_forgotten(monkeypatch):
    monkeypatch.setattr('instancemonitor.fanout.REMEMBERED_DOMAINS', 2)
    fan, boxes = fanout(bus=['*'])

    def scan(domain_uuid):
        fan(DomainEvent(EventKind.LIFECYCLE, domain_uuid, 'vm',
                        libvirt.VIR_DOMAIN_EVENT_STARTED,
                        libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED, source=RECONCILIATION))
    for domain_uuid in ('a', 'b', 'a', 'c', 'a', 'b'):
        scan(domain_uuid)
    # 'a' stays remembered (seen again), 'b' is forgotten when 'c' comes.
    assert [n.instance_uuid for n in taken(boxes['bus'])] == ['a', 'b', 'c', 'b']
