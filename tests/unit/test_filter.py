import libvirt
import pytest

from instancemonitor import filter as event_filter
from instancemonitor.domainstate import Input
from instancemonitor.events import NO_CODE
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.filter import EventFilter

UUID = '6695eb01-f6a4-8304-79aa-97f2502e193f'


def lifecycle(event: int, detail: int) -> DomainEvent:
    return DomainEvent(EventKind.LIFECYCLE, UUID, 'vm', event, detail)


FAILED = lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                   libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
DESTROYED = lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                      libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
IO_REPORT = DomainEvent(EventKind.IO_ERROR, UUID, 'vm',
                        libvirt.VIR_DOMAIN_EVENT_IO_ERROR_REPORT)
IO_PAUSE = DomainEvent(EventKind.IO_ERROR, UUID, 'vm',
                       libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE)


def test_default_forwards_only_what_the_engine_acts_on():
    f = EventFilter(forward_all=False, reboot_window=1.0)
    assert f.classify(FAILED).pair == ('LIFECYCLE', 'STOPPED_FAILED')
    assert f.classify(FAILED).input is Input.STOP_FAILED
    assert f.classify(IO_REPORT).pair == ('IO_ERROR', 'IO_ERROR_REPORT')
    assert f.classify(IO_REPORT).input is Input.IO_ERROR_REPORT
    assert f.classify(DESTROYED).pair is None
    assert f.classify(IO_PAUSE).pair is None
    assert f.classify(DomainEvent(EventKind.REBOOT, UUID, 'vm')).pair is None


def test_forward_all_sends_the_masakari_monitors_set():
    f = EventFilter(forward_all=True, reboot_window=1.0)
    assert f.classify(DESTROYED).pair == ('LIFECYCLE', 'STOPPED_DESTROYED')
    assert f.classify(IO_PAUSE).pair == ('IO_ERROR', 'IO_ERROR_PAUSE')
    assert f.classify(DomainEvent(EventKind.REBOOT, UUID, 'vm')).pair == (
        'REBOOT', 'UNKNOWN')
    assert f.classify(lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                                libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED)).pair == (
        'LIFECYCLE', 'STOPPED_CRASHED')


@pytest.mark.parametrize('event, detail, expected', [
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED,
     Input.START),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_RESTORED,
     Input.START),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED,
     Input.START_MIGRATION_IN),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED,
     Input.RESUME_MIGRATED),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED,
     Input.RESUME),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED,
     Input.PAUSE_MIGRATION),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
     Input.PAUSE_ERROR),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
     Input.PAUSE),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
     Input.STOP_MIGRATED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED,
     Input.STOP),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, 0, Input.DEFINED),
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
     Input.UNDEFINED),
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_RENAMED,
     Input.EVENT),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED_UPDATED,
     Input.DEFINED),
    (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, 0, Input.EVENT),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, 99, Input.STOP),  # a detail libvirt adds later
])
def test_lifecycle_events_are_the_machines_inputs(event, detail, expected):
    f = EventFilter(forward_all=False, reboot_window=1.0)
    assert f.classify(lifecycle(event, detail)).input is expected


def test_an_unknown_pair_is_no_recovery():
    f = EventFilter(forward_all=True, reboot_window=1.0)
    observation = f.classify(lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED, 99))
    assert observation.pair is None and observation.input is Input.STOP
    agent = f.classify(DomainEvent(EventKind.AGENT_LIFECYCLE, UUID, 'vm', 7, 1))
    assert agent.input is Input.EVENT and agent.pair is None


def test_only_forwarded_stops_the_engine_ignores_are_held():
    f = EventFilter(forward_all=True, reboot_window=2.5)
    assert f.classify(FAILED).hold == 0.0  # a recovery pair goes at once
    assert f.classify(DESTROYED).hold == 2.5
    assert f.classify(lifecycle(libvirt.VIR_DOMAIN_EVENT_SHUTDOWN,
                                libvirt.VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED)).hold == 2.5
    assert f.classify(IO_REPORT).hold == 0.0


def test_table_is_keyed_by_libvirt_constants_and_names_are_unique():
    # A libvirt code that moved would break the table silently; the keys must
    # be the very constants libvirt exports.
    key = (EventKind.LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED,
           libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
    assert event_filter.NOTIFICATION_TABLE[key] == ('LIFECYCLE', 'STOPPED_FAILED')
    pairs = list(event_filter.NOTIFICATION_TABLE.values())
    assert len(pairs) == len(set(pairs))
    for kind, _event, detail in event_filter.NOTIFICATION_TABLE:
        assert isinstance(kind, EventKind)
        if kind is not EventKind.LIFECYCLE:
            assert detail == NO_CODE
    # Every pair Masakari recovers from that libvirt can produce is forwardable.
    assert event_filter.RECOVERY_PAIRS - set(pairs) == {
        ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')}
