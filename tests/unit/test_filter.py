import libvirt
import pytest

from instancemonitor import filter as event_filter
from instancemonitor.events import NO_CODE
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind

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
    f = event_filter.EventFilter(forward_all=False, reboot_window=0.0)
    assert f.classify(FAILED).pair == ('LIFECYCLE', 'STOPPED_FAILED')
    assert f.classify(FAILED).recovery
    assert f.classify(IO_REPORT).pair == ('IO_ERROR', 'IO_ERROR_REPORT')
    assert f.classify(DESTROYED) == event_filter.IGNORED
    assert f.classify(IO_PAUSE) == event_filter.IGNORED
    assert f.classify(DomainEvent(EventKind.REBOOT, UUID, 'vm')) == event_filter.IGNORED


def test_forward_all_sends_the_masakari_monitors_set():
    f = event_filter.EventFilter(forward_all=True, reboot_window=0.0)
    assert f.classify(DESTROYED).pair == ('LIFECYCLE', 'STOPPED_DESTROYED')
    assert not f.classify(DESTROYED).recovery
    assert f.classify(IO_PAUSE).pair == ('IO_ERROR', 'IO_ERROR_PAUSE')
    assert f.classify(DomainEvent(EventKind.REBOOT, UUID, 'vm')).pair == (
        'REBOOT', 'UNKNOWN')
    assert f.classify(DomainEvent(
        EventKind.WATCHDOG, UUID, 'vm',
        libvirt.VIR_DOMAIN_EVENT_WATCHDOG_POWEROFF)).pair == (
        'WATCHDOG', 'WATCHDOG_POWEROFF')
    assert f.classify(DomainEvent(
        EventKind.IO_ERROR_REASON, UUID, 'vm',
        libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, reason='enospc')).pair == (
        'IO_ERROR_REASON', 'UNKNOWN')
    assert f.classify(lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                                libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED)
                      ).pair == ('LIFECYCLE', 'STOPPED_CRASHED')


@pytest.mark.parametrize('event', [
    lifecycle(libvirt.VIR_DOMAIN_EVENT_STARTED,
              libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED),
    lifecycle(libvirt.VIR_DOMAIN_EVENT_RESUMED,
              libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED),
])
def test_start_and_resume_mean_running_again(event):
    f = event_filter.EventFilter(forward_all=True, reboot_window=1.0)
    assert f.classify(event) == event_filter.Verdict(running_again=True)


def test_uninteresting_events_are_ignored():
    f = event_filter.EventFilter(forward_all=True, reboot_window=1.0)
    assert f.classify(lifecycle(libvirt.VIR_DOMAIN_EVENT_DEFINED, 0)) == (
        event_filter.IGNORED)
    assert f.classify(DomainEvent(EventKind.AGENT_LIFECYCLE, UUID, 'vm', 1, 1)) == (
        event_filter.IGNORED)
    # An event code this libvirt does not know yet.
    assert f.classify(lifecycle(libvirt.VIR_DOMAIN_EVENT_STOPPED, 99)) == (
        event_filter.IGNORED)


def test_only_stops_and_shutdowns_are_held_for_the_reboot_window():
    f = event_filter.EventFilter(forward_all=True, reboot_window=2.5)
    assert f.classify(FAILED).hold == 2.5
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
