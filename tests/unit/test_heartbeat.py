"""The in-guest heartbeat: its state machine, its rounds, its notifications."""

import datetime
import threading
import time

import libvirt

from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.filter import EventFilter
from instancemonitor.journal import DomainState
from instancemonitor.journal import Journal
from instancemonitor.journal import MemoryJournalStore
from instancemonitor.sources.heartbeat import HealthTracker
from instancemonitor.sources.heartbeat import Heartbeat
from instancemonitor.sources.heartbeat import Target
from instancemonitor.sources.heartbeat import has_agent_channel


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def tracker(clock, threshold=3, grace=60.0, report=False):
    t = HealthTracker(threshold, grace, report, monotonic=clock)
    t.track({'u'})
    return t


def run(t, outcomes):
    return [t.observe('u', answered) for answered in outcomes]


def test_a_healthy_guest_is_reported_once_after_threshold_misses():
    t = tracker(Clock())
    changes = run(t, [True, True, False, False, False, False, False])
    assert changes == [(Health.HEALTHY, 0), None, (Health.FAILING, 1),
                       (Health.FAILING, 2), (Health.REPORTED, 3), None, None]


def test_a_miss_short_of_the_threshold_heals_silently():
    t = tracker(Clock())
    assert run(t, [True, False, False, True]) == [
        (Health.HEALTHY, 0), (Health.FAILING, 1), (Health.FAILING, 2),
        (Health.HEALTHY, 0)]


def test_a_reported_guest_that_answers_again_is_reported_again_next_time():
    t = tracker(Clock(), threshold=2)
    assert run(t, [True, False, False, True, False, False]) == [
        (Health.HEALTHY, 0), (Health.FAILING, 1), (Health.REPORTED, 2),
        (Health.HEALTHY, 0), (Health.FAILING, 1), (Health.REPORTED, 2)]


def test_an_agent_that_never_answers_is_flagged_after_the_grace_period():
    clock = Clock()
    t = tracker(clock, grace=60.0)
    assert run(t, [False] * 5) == [None] * 5  # discovery: no failure yet
    clock.now = 60.0
    assert run(t, [False, False]) == [(Health.NEVER_ANSWERED, 0), None]
    assert run(t, [True]) == [(Health.HEALTHY, 0)]


def test_a_domain_no_longer_running_is_forgotten_and_starts_over():
    clock = Clock()
    t = tracker(clock, grace=10.0)
    run(t, [True, False])
    t.track(set())
    assert t.health('u') is None and t.observe('u', False) is None
    clock.now = 100.0
    t.track({'u'})
    assert t.health('u') is Health.DISCOVERY
    assert t.observe('u', False) is None  # a new grace period


def test_the_channel_is_read_from_the_domain_xml():
    assert has_agent_channel("""<domain><devices>
        <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>
        </channel></devices></domain>""")
    assert not has_agent_channel("""<domain><devices>
        <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/>
        </channel></devices></domain>""")
    assert not has_agent_channel('<domain><devices/></domain>')


def test_a_round_pings_in_parallel_so_hung_agents_do_not_add_up():
    targets = [Target(f'u{i}', f'vm{i}', i) for i in range(500)]
    hung = set(range(0, 500, 10))  # 50 hung agents
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def ping(target):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            if target.domain in hung:
                time.sleep(0.3)  # the per-call timeout
                return False
            return True
        finally:
            with lock:
                in_flight[0] -= 1

    published = []
    beat = Heartbeat(published.append, lambda: targets, ping,
                     HealthTracker(1, 60.0, False), interval=60, workers=64)
    beat.round()  # discovery → healthy for the 450
    beat.round()  # healthy → reported for none; the hung never answered
    assert peak[0] >= 50  # every hung ping waited at the same time
    healthy = {e.domain_uuid for e in published if e.event == Health.HEALTHY}
    assert len(healthy) == 450 and not any(f'u{i}' in healthy for i in hung)
    discovered = [e.domain_uuid for e in published if e.event == Health.DISCOVERY]
    assert sorted(discovered) == sorted(t.uuid for t in targets)  # once each
    beat.stop()


T0 = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.UTC)


def beat_event(health, failures=0, seconds=0):
    return DomainEvent(EventKind.HEARTBEAT, 'u', 'vm', health, failures,
                       detected_at=T0 + datetime.timedelta(seconds=seconds),
                       source='heartbeat')


def feed(journal, event_filter, event):
    sent = []
    journal.record(event, event_filter.classify(event), sent.append)
    return sent


def test_a_heartbeat_report_is_one_recovery_notification_per_episode():
    f, j = EventFilter(False, 0.0), Journal(MemoryJournalStore(), 'compute-1')
    assert feed(j, f, beat_event(Health.DISCOVERY)) == []
    assert j.records()[0].heartbeat == 'discovery'
    assert feed(j, f, beat_event(Health.HEALTHY)) == []
    assert feed(j, f, beat_event(Health.FAILING, 1)) == []
    assert j.records()[0].heartbeat == 'failing(1)'
    (n,) = feed(j, f, beat_event(Health.REPORTED, 3, seconds=30))
    assert (n.event, n.vir_domain_event) == ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')
    assert n.generated_time == T0 + datetime.timedelta(seconds=30)
    (record,) = j.records()
    assert record.state is DomainState.FAILED and record.heartbeat == 'reported'
    # Answers again: the episode is over; a later hang is a new one.
    assert feed(j, f, beat_event(Health.HEALTHY, seconds=40)) == []
    assert j.records()[0].state is DomainState.RUNNING
    assert len(feed(j, f, beat_event(Health.REPORTED, 3, seconds=90))) == 1


def test_heartbeat_and_lifecycle_failures_of_one_episode_trigger_one_recovery():
    f, j = EventFilter(False, 0.0), Journal(MemoryJournalStore(), 'compute-1')
    crash = DomainEvent(EventKind.LIFECYCLE, 'u', 'vm', libvirt.VIR_DOMAIN_EVENT_STOPPED,
                        libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED, detected_at=T0)
    assert len(feed(j, f, beat_event(Health.REPORTED, 3))) == 1
    assert feed(j, f, crash) == []
    # A healthy heartbeat does not end an episode it did not open.
    j2 = Journal(MemoryJournalStore(), 'compute-1')
    assert len(feed(j2, f, crash)) == 1
    feed(j2, f, beat_event(Health.HEALTHY))
    assert j2.records()[0].state is DomainState.FAILED
    assert feed(j2, f, beat_event(Health.REPORTED, 3)) == []


def test_the_heartbeat_event_name_is_configurable():
    f = EventFilter(False, 0.0, heartbeat_event='LIFECYCLE')
    assert f.classify(beat_event(Health.REPORTED, 3)).pair == (
        'LIFECYCLE', 'STOPPED_FAILED')
    assert f.classify(beat_event(Health.NEVER_ANSWERED)).recovery


class _Dom:
    def __init__(self, uuid, dom_id, xml):
        self.uuid, self.dom_id, self.xml, self.xml_reads = uuid, dom_id, xml, 0

    def UUIDString(self):
        return self.uuid

    def ID(self):
        return self.dom_id

    def name(self):
        return self.uuid

    def XMLDesc(self, flags):
        self.xml_reads += 1
        return self.xml

    def agentSetResponseTimeout(self, timeout):
        pass


def test_targets_read_each_domain_run_once_and_forget_ended_runs():
    from instancemonitor.sources.heartbeat import LibvirtAgents
    channel = ("<domain><devices><channel type='unix'><target type='virtio' "
               "name='org.qemu.guest_agent.0'/></channel></devices></domain>")
    running = {'a': _Dom('a', 1, channel), 'b': _Dom('b', 2, '<domain/>')}

    class Conn:
        def listAllDomains(self, flags):
            return list(running.values())
    agents = LibvirtAgents(lambda: Conn(), 1)
    for _ in range(3):
        assert [t.uuid for t in agents.targets()] == ['a']
    assert running['a'].xml_reads == running['b'].xml_reads == 1
    # Runs that ended, with or without a channel, are not kept.
    for i in range(100):
        running = {'a': _Dom('a', 1, channel), 'c': _Dom('c', 10 + i, '<domain/>')}
        agents.targets()
    assert len(agents._channel) == 2
