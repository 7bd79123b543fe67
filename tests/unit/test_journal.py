import datetime

import libvirt

from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.filter import EventFilter
from instancemonitor.journal import DomainState
from instancemonitor.journal import Journal
from instancemonitor.journal import MemoryJournalStore

UUID = '3c9a7e36-0a77-4b25-9f1d-9d8c0e0f4b11'
T0 = datetime.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=datetime.UTC)


def event(kind, code=-1, detail=-1, seconds=0):
    return DomainEvent(kind, UUID, 'instance-0001', code, detail,
                       detected_at=T0 + datetime.timedelta(seconds=seconds))


STOPPED_FAILED = (EventKind.LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED,
                  libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
STARTED = (EventKind.LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STARTED,
           libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)
IO_REPORT = (EventKind.IO_ERROR, libvirt.VIR_DOMAIN_EVENT_IO_ERROR_REPORT)
REBOOT = (EventKind.REBOOT,)


class Harness:
    def __init__(self, forward_all=False):
        self.filter = EventFilter(forward_all=forward_all, reboot_window=0.0)
        self.journal = Journal(MemoryJournalStore(), 'compute-1')

    def feed(self, spec, seconds=0):
        e = event(*spec, seconds=seconds)
        queued = []
        returned = self.journal.record(e, self.filter.classify(e), queued.append)
        assert queued == ([returned] if returned else [])
        return returned

    def state(self):
        (record,) = self.journal.records()
        return record


def test_one_failure_yields_one_notification_frozen_at_detection():
    h = Harness()
    n = h.feed(STOPPED_FAILED, seconds=1)
    assert (n.hostname, n.instance_uuid, n.event, n.vir_domain_event) == (
        'compute-1', UUID, 'LIFECYCLE', 'STOPPED_FAILED')
    assert n.generated_time == T0 + datetime.timedelta(seconds=1)
    assert h.state().state is DomainState.FAILED
    assert h.state().failure == 'LIFECYCLE/STOPPED_FAILED'


def test_further_failures_of_the_same_episode_are_not_notified():
    h = Harness()
    assert h.feed(IO_REPORT) is not None
    assert h.feed(IO_REPORT, seconds=1) is None
    assert h.feed(STOPPED_FAILED, seconds=2) is None
    assert h.state().notified == 1
    assert h.state().last_event.startswith('LIFECYCLE 5/')


def test_a_recovered_domain_is_watched_afresh():
    h = Harness()
    assert h.feed(STOPPED_FAILED) is not None
    assert h.feed(STARTED, seconds=5) is None
    assert h.state().state is DomainState.RUNNING
    second = h.feed(STOPPED_FAILED, seconds=10)
    assert second is not None
    assert second.generated_time == T0 + datetime.timedelta(seconds=10)
    assert h.state().notified == 2


def test_informational_events_are_each_forwarded_and_open_no_episode():
    h = Harness(forward_all=True)
    assert h.feed(REBOOT).event == 'REBOOT'
    assert h.feed(REBOOT, seconds=1) is not None
    assert h.state().state is DomainState.RUNNING
    assert h.feed(STOPPED_FAILED, seconds=2) is not None


def test_events_not_forwarded_are_still_recorded_as_seen():
    h = Harness()
    assert h.feed(REBOOT, seconds=3) is None
    record = h.state()
    assert record.last_seen == T0 + datetime.timedelta(seconds=3)
    assert record.last_event == 'REBOOT -1/-1'


def test_an_undefined_domain_is_forgotten():
    h = Harness()
    h.feed(STOPPED_FAILED)
    h.feed((EventKind.LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_UNDEFINED, 0))
    assert h.journal.records() == []
