"""The journal: the state machine's records kept, notifications queued first."""

import dataclasses
import datetime

import libvirt

from instancemonitor.domainstate import DomainMachine
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Phase
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.events import MigrationSource
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.journal import MemoryJournalStore

UUID = '3c9a7e36-0a77-4b25-9f1d-9d8c0e0f4b11'
T0 = datetime.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=datetime.UTC)


def lifecycle(event, detail, seconds=0, domain_id=1):
    return DomainEvent(EventKind.LIFECYCLE, UUID, 'instance-0001', event, detail,
                       detected_at=T0 + datetime.timedelta(seconds=seconds),
                       domain_id=domain_id)


STARTED = (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)
STOPPED_FAILED = (libvirt.VIR_DOMAIN_EVENT_STOPPED,
                  libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)


class Harness:
    def __init__(self):
        self.filter = EventFilter(forward_all=False, reboot_window=0.0)
        self.store = MemoryJournalStore()
        self.journal = Journal(self.store, 'compute-1')
        self.queued, self.withdrawn = [], []

    def feed(self, event):
        def queue(notification, hold):
            # The record that says it was sent is not stored yet.
            assert self.store.get(UUID) is None or self.store.get(UUID).notified == (
                len(self.queued))
            self.queued.append(notification)
        return self.journal.record(event, self.filter.classify(event), queue,
                                   lambda uuid, pairs: self.withdrawn.append(uuid))


def test_a_crash_is_one_notification_frozen_at_detection():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    h.feed(lifecycle(*STOPPED_FAILED, seconds=5))
    (n,) = h.queued
    assert n.body() == {'notification': {
        'type': 'VM', 'hostname': 'compute-1',
        'generated_time': '2026-11-22T10:00:05.123456Z',
        'payload': {'event': 'LIFECYCLE', 'instance_uuid': UUID,
                    'vir_domain_event': 'STOPPED_FAILED'}}}
    (record,) = h.journal.records()
    assert (record.phase, record.run, record.episode, record.notified) == (
        Phase.FAILED, 1, 'LIFECYCLE/STOPPED_FAILED', 1)
    assert record.last_event == f'LIFECYCLE {STOPPED_FAILED[0]}/{STOPPED_FAILED[1]}'


def test_a_start_or_a_scan_that_finds_a_new_run_withdraws_what_waits():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    assert h.withdrawn == [UUID]
    scan = DomainEvent(EventKind.LIFECYCLE, UUID, 'instance-0001', *STARTED,
                       source='reconciliation', domain_id=1)
    h.feed(scan)
    assert h.withdrawn == [UUID]  # the same run: nothing over
    h.feed(dataclasses.replace(scan, domain_id=2))
    assert h.withdrawn == [UUID, UUID]
    assert h.journal.records()[0].run == 2  # a run it had not seen


SHUT_DOWN = (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
UNDEFINED = (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)


def test_an_undefined_domain_is_forgotten():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    h.feed(lifecycle(*SHUT_DOWN, seconds=1))
    h.feed(lifecycle(*UNDEFINED, seconds=2))
    assert h.journal.records() == []


def test_a_running_domain_undefined_runs_on_as_a_transient_one():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    h.feed(lifecycle(*UNDEFINED, seconds=1))
    (record,) = h.journal.records()
    assert (record.phase, record.run) == (Phase.RUNNING, 1)


def not_listed(seconds, seq=None):
    event = DomainEvent(EventKind.NOT_LISTED, UUID, 'instance-0001',
                        detected_at=T0 + datetime.timedelta(seconds=seconds),
                        source='reconciliation')
    return event if seq is None else dataclasses.replace(event, seq=seq)


def test_a_persistent_domain_a_scan_does_not_list_is_forgotten_with_what_waits():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    scan = DomainEvent(EventKind.LIFECYCLE, UUID, 'instance-0001', *STARTED,
                       source='reconciliation', domain_id=1, persistent=True)
    h.feed(scan)
    h.feed(lifecycle(*STOPPED_FAILED, seconds=5))
    assert h.journal.records()[0].persistent is True
    h.withdrawn.clear()
    h.feed(not_listed(10))
    assert h.journal.records() == [] and h.withdrawn == [UUID]


def test_a_transient_domain_a_scan_does_not_list_keeps_its_record_as_it_was():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    h.feed(DomainEvent(EventKind.LIFECYCLE, UUID, 'instance-0001', *STARTED,
                       source='reconciliation', domain_id=1, persistent=False))
    h.feed(lifecycle(*STOPPED_FAILED, seconds=5))
    (before,) = h.journal.records()
    h.withdrawn.clear()
    h.feed(not_listed(3600))
    # Not even seen: the record is dropped after forget_gone_after.
    assert h.journal.records() == [before] and h.withdrawn == []


def test_defined_and_undefined_say_whether_a_domain_is_persistent():
    h = Harness()
    h.feed(lifecycle(libvirt.VIR_DOMAIN_EVENT_DEFINED,
                     libvirt.VIR_DOMAIN_EVENT_DEFINED_ADDED, domain_id=-1))
    assert h.journal.records()[0].persistent is True
    h.feed(lifecycle(*STARTED, seconds=1))
    h.feed(lifecycle(*UNDEFINED, seconds=2))
    assert h.journal.records()[0].persistent is False
    h.withdrawn.clear()
    h.feed(not_listed(3))  # a transient domain that stopped: how, nobody knows
    assert len(h.journal.records()) == 1 and h.withdrawn == []


def test_a_scan_read_before_a_define_does_not_forget_the_domain():
    h = Harness()
    read = not_listed(0)  # the scan's sequence number, taken before it read
    h.feed(lifecycle(libvirt.VIR_DOMAIN_EVENT_DEFINED,
                     libvirt.VIR_DOMAIN_EVENT_DEFINED_ADDED, domain_id=-1))
    h.feed(lifecycle(*STARTED, seconds=1))
    h.feed(read)
    assert h.journal.records()[0].phase is Phase.RUNNING


def test_heartbeat_changes_come_back_as_events_for_subscribers():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    ping = DomainEvent(EventKind.PING, UUID, 'instance-0001', 1, detected_at=T0,
                       source='heartbeat', domain_id=1)
    (derived,) = h.feed(ping)
    assert (derived.kind, derived.event, derived.source) == (
        EventKind.HEARTBEAT, Health.HEALTHY, 'heartbeat')
    assert h.feed(ping) == []  # no change, no event (and no write)
    assert h.journal.heartbeat_counts()['healthy'] == 1


def test_records_of_domains_a_scan_no_longer_lists_are_dropped_after_a_while():
    store = MemoryJournalStore()
    now = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.UTC)
    day = datetime.timedelta(days=1)
    store.put(DomainRecord('listed', 'a', last_seen=now - 2 * day))
    store.put(DomainRecord('gone', 'b', last_seen=now - 2 * day))
    store.put(DomainRecord('gone-lately', 'c', last_seen=now - day / 2))
    store.put(DomainRecord('seen-since-the-scan', 'd', last_seen=now - 2 * day,
                           last_seq=50))
    journal = Journal(store, 'compute-1')
    assert journal.prune_gone({'listed'}, 40, now, after=86400) == 1
    assert sorted(r.uuid for r in journal.records()) == [
        'gone-lately', 'listed', 'seen-since-the-scan']


def test_the_log_says_once_what_was_queued_and_how_long_it_is_held():
    h = Harness()
    h.journal.machine = DomainMachine(duplicate_window=180.0)
    said = []

    def feed(event):
        return h.journal.record(event, h.filter.classify(event),
                                lambda n, hold: h.queued.append(n),
                                lambda uuid, pairs: h.withdrawn.append(uuid),
                                lambda *line: said.append(
                                    line[0] % line[1:]))
    feed(lifecycle(*STARTED))
    feed(lifecycle(*STOPPED_FAILED, seconds=5))
    feed(lifecycle(*STARTED, seconds=30, domain_id=2))
    said.clear()
    # Crashed again within Masakari's duplicate window of the first.
    feed(lifecycle(*STOPPED_FAILED, seconds=40, domain_id=2))
    first, second = h.queued
    queued = [line for line in said if 'queued' in line]
    held = (second.generated_time - first.generated_time).total_seconds() - 35
    assert held > 140  # 180 s after the first, not at once
    assert queued == [(
        f'Domain instance-0001 ({UUID}): LIFECYCLE/STOPPED_FAILED detected at '
        f'{(T0 + datetime.timedelta(seconds=40)).isoformat()}; notification '
        f'{second.notification_id} queued, held {held:g} s')]
    assert not [line for line in said if 'notify' in line]


def test_a_record_copy_has_every_field_and_changes_apart():
    record = DomainRecord(
        uuid='u', name='vm', phase=Phase.FAILED, run=7, episode='LIFECYCLE/STOPPED_FAILED',
        failed_at=datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC),
        reported=frozenset({'LIFECYCLE/STOPPED_FAILED'}), notified=1,
        recovery_times={'LIFECYCLE/STOPPED_FAILED': datetime.datetime(2026, 12, 3)},
        last_seq=42)
    copy = record.copy()
    assert copy == record == dataclasses.replace(record) and copy is not record
    assert dataclasses.asdict(copy) == dataclasses.asdict(record)
    copy.phase, copy.last_seq = Phase.RUNNING, 43
    assert (record.phase, record.last_seq) == (Phase.FAILED, 42)


class CountingStore(MemoryJournalStore):
    def __init__(self):
        super().__init__()
        self.puts = 0

    def put(self, record):
        self.puts += 1
        super().put(record)


def scan_found(event, detail, seconds, domain_id=1):
    return dataclasses.replace(lifecycle(event, detail, seconds, domain_id),
                               source='reconciliation')


def test_scans_that_find_nothing_new_rewrite_a_record_only_every_ten_minutes():
    h = Harness()
    h.store = CountingStore()
    h.journal = Journal(h.store, 'compute-1')
    h.feed(lifecycle(*STARTED))
    assert h.store.puts == 1
    for minute in range(1, 10):  # the default interval is a minute
        h.feed(scan_found(*STARTED, seconds=60 * minute))
    # Nothing new but when the domain was seen: not written...
    assert h.store.puts == 1
    (record,) = h.journal.records()
    assert record.last_seen == T0
    # ...until that is ten minutes old.
    h.feed(scan_found(*STARTED, seconds=600))
    assert h.store.puts == 2
    assert h.journal.records()[0].last_seen == T0 + datetime.timedelta(seconds=600)
    # What a scan finds that is news is written at once, and notified.
    h.feed(scan_found(*STOPPED_FAILED, seconds=630, domain_id=-1))
    assert h.store.puts == 3 and len(h.queued) == 1
    assert h.journal.records()[0].phase is Phase.FAILED


def test_a_scan_read_before_an_event_already_applied_changes_nothing():
    # A scan lists a running domain; its stop is applied before the scan's
    # finding is: the finding is older than the record and leaves it as is.
    h = Harness()
    h.store = CountingStore()
    h.journal = Journal(h.store, 'compute-1')
    h.feed(lifecycle(*STARTED))
    stale = scan_found(*STARTED, seconds=1)
    destroyed = (libvirt.VIR_DOMAIN_EVENT_STOPPED,
                 libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    h.feed(lifecycle(*destroyed, seconds=2))
    (before,) = h.journal.records()
    puts = h.store.puts
    assert h.feed(stale) == []
    assert h.journal.records() == [before] and h.store.puts == puts
    assert before.last_event == f'LIFECYCLE {destroyed[0]}/{destroyed[1]}'
    assert h.queued == []


def test_a_scan_read_before_an_undefine_brings_no_record_back():
    h = Harness()
    h.feed(lifecycle(*STARTED))
    stale = scan_found(*STARTED, seconds=1)
    h.feed(lifecycle(*SHUT_DOWN, seconds=2))
    h.feed(lifecycle(*UNDEFINED, seconds=3))
    assert h.feed(stale) == []
    assert h.journal.records() == [] and h.queued == []


def test_the_migration_watch_is_asked_as_the_last_phase_begins_and_after_a_death():
    """On the last phase, whether the domain is persistent (nothing held);
    after QEMU died in it, the outcome its held recovery waits for."""
    h = Harness()
    followed = []
    h.journal = Journal(h.store, 'compute-1', DomainMachine(migration_wait=30.0),
                        lambda uuid, name, held: followed.append((uuid, held)))
    h.feed(lifecycle(*STARTED))
    h.feed(lifecycle(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, seconds=5))
    assert followed == [(UUID, False)]
    h.feed(lifecycle(*STOPPED_FAILED, seconds=6))
    assert followed == [(UUID, False), (UUID, True)]
    assert h.journal.records()[0].phase is Phase.STOPPED_MIGRATING


def test_what_the_watch_finds_of_a_domain_already_migrated_away_brings_no_record_back():
    """The watch was asked twice (the last phase, then the death): its first
    finding, gone, tells the death migrated away; its second is moot."""
    h = Harness()
    h.journal = Journal(h.store, 'compute-1', DomainMachine(migration_wait=30.0))
    h.feed(lifecycle(libvirt.VIR_DOMAIN_EVENT_DEFINED,
                     libvirt.VIR_DOMAIN_EVENT_DEFINED_ADDED, domain_id=-1))
    h.feed(lifecycle(*STARTED))
    h.feed(lifecycle(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, seconds=5))
    h.feed(lifecycle(*STOPPED_FAILED, seconds=6))
    gone = DomainEvent(EventKind.MIGRATION_SOURCE, UUID, 'instance-0001',
                       MigrationSource.GONE, detected_at=T0, source='migration-watch')
    h.feed(gone)
    assert h.journal.records() == [] and h.withdrawn[-1] == UUID
    assert h.feed(dataclasses.replace(gone, seq=gone.seq + 1)) == []
    h.feed(not_listed(7))
    assert h.journal.records() == []
