"""The SQLite state store, and what the agent does when the disk fails it."""

import dataclasses
import datetime
import errno
import logging
import os
import pathlib
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest

from instancemonitor import store
from instancemonitor.domainstate import Agent
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Phase
from instancemonitor.events import Notification
from instancemonitor.outbox import Outbox

ROOT = pathlib.Path(__file__).resolve().parents[2]
T0 = datetime.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=datetime.UTC)


def notification(uuid='3c9a7e36-0a77-4b25-9f1d-9d8c0e0f4b11', seconds=0):
    return Notification('compute-1', uuid, 'LIFECYCLE', 'STOPPED_FAILED',
                        T0 + datetime.timedelta(seconds=seconds))


def test_files_are_for_the_owner_only(tmp_path):
    state = tmp_path / 'state'
    s = store.SqliteStateStore(str(state))
    s.put(DomainRecord('u', 'vm'))
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    s.close()


def test_journal_and_outbox_survive_a_reopen(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    record = DomainRecord(
        'u1', 'vm-1', Phase.FAILED, run=7, episode='LIFECYCLE/STOPPED_FAILED',
        failed_at=T0, reported=frozenset({'LIFECYCLE/STOPPED_FAILED'}),
        agent=Agent.FAILING, agent_failures=2, agent_since=T0,
        agent_answered=True, last_event='LIFECYCLE 5/5', last_seen=T0, notified=1)
    s.put(record)
    first, second, dead = notification('a'), notification('b', 1), notification('c')
    for n in (first, second, dead):
        s.insert(n, 1234.5)
    s.bury(dead.notification_id, 'HTTP 400: unknown host')
    s.close()
    again = store.SqliteStateStore(str(tmp_path))
    assert again.get('u1') == record
    assert again.pending('masakari') == [(first, 1234.5), (second, 1234.5)]
    assert [(d.notification, d.reason) for d in again.dead_letters('masakari')] == [
        (dead, 'HTTP 400: unknown host')]
    again.close()


def test_each_sink_sees_only_its_own_notifications(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    recovery = notification('a')
    hook = dataclasses.replace(notification('a'), sink='webhook:billing',
                               instance_name='vm-a', source='libvirt',
                               reason='enospc')
    s.insert(recovery, 1.0)
    s.insert(hook, 2.0)
    s.bury(hook.notification_id, 'HTTP 410')
    assert s.pending('masakari') == [(recovery, 1.0)]
    assert s.pending('webhook:billing') == []
    assert [d.notification for d in s.dead_letters('webhook:billing')] == [hook]
    assert s.unbury(hook.notification_id, 3.0, 'masakari') is None
    assert s.unbury(hook.notification_id, 3.0, 'webhook:billing') == hook
    s.close()
    assert store.SqliteStateStore(str(tmp_path)).pending('webhook:billing') == [
        (hook, 3.0)]


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / store.FILENAME)
    # Version 1's tables are _SCHEMA; the later columns are added on open.
    db.executescript(store._SCHEMA + 'PRAGMA user_version=1;')
    old = notification('a')
    db.execute("INSERT INTO outbox (notification_id, hostname, instance_uuid, "
               "event, vir_domain_event, generated_time, due_at) VALUES "
               "(?, 'compute-1', 'a', 'LIFECYCLE', 'STOPPED_FAILED', ?, 5.0)",
               (old.notification_id, T0.isoformat()))
    db.commit()
    db.close()
    s = store.SqliteStateStore(str(tmp_path))
    assert s.pending('masakari') == [(old, 5.0)]
    s.close()


def test_a_version_2_journal_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / store.FILENAME)
    db.executescript(store._SCHEMA + 'PRAGMA user_version=2;')
    for uuid, state, failure in (('a', 'failed', 'LIFECYCLE/STOPPED_FAILED'),
                                 ('b', 'failed', 'IO_ERROR/IO_ERROR_REPORT'),
                                 ('c', 'running', '')):
        db.execute('INSERT INTO domains VALUES (?, ?, ?, ?, NULL, ?, NULL, 1, ?, ?)',
                   (uuid, 'vm', state, 'LIFECYCLE 5/5', failure, failure,
                    'healthy'))
    db.commit()
    db.close()
    s = store.SqliteStateStore(str(tmp_path))
    # A crash is a stopped domain; an I/O error episode is a running one.
    assert [(r.uuid, r.phase, r.episode, r.run) for r in
            sorted(s.records(), key=lambda r: r.uuid)] == [
        ('a', Phase.FAILED, 'LIFECYCLE/STOPPED_FAILED', -1),
        ('b', Phase.RUNNING, 'IO_ERROR/IO_ERROR_REPORT', -1),
        ('c', Phase.RUNNING, '', -1)]
    # Whether each is persistent, nobody told yet.
    assert {r.persistent for r in s.records()} == {None}
    s.close()


def test_every_phase_reads_back_as_stored_whatever_the_episode(tmp_path):
    # A guest that panicked (STOPPED_CRASHED) is FAILED with no episode: read
    # back as running, a scan after a restart took its state for a new crash.
    s = store.SqliteStateStore(str(tmp_path))
    for phase in Phase:
        for episode in ('', 'LIFECYCLE/STOPPED_FAILED', 'IO_ERROR/IO_ERROR_REPORT'):
            s.put(DomainRecord(uuid=f'{phase}-{episode}', name='vm', phase=phase,
                               episode=episode))
    s.close()
    s = store.SqliteStateStore(str(tmp_path))
    assert {(r.uuid, r.phase) for r in s.records()} == {
        (f'{phase}-{episode}', phase) for phase in Phase
        for episode in ('', 'LIFECYCLE/STOPPED_FAILED', 'IO_ERROR/IO_ERROR_REPORT')}
    s.close()


def test_whether_a_domain_is_persistent_reads_back_as_stored(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    for uuid, persistent in (('a', True), ('b', False), ('c', None)):
        s.put(DomainRecord(uuid=uuid, name='vm', persistent=persistent))
    s.close()
    s = store.SqliteStateStore(str(tmp_path))
    assert sorted((r.uuid, r.persistent) for r in s.records()) == [
        ('a', True), ('b', False), ('c', None)]
    s.close()


def test_outbox_recovers_pending_notifications_in_order_of_detection(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    box = Outbox(s)
    ns = [notification(f'u{i}', i) for i in range(5)]
    for n in ns:
        box.add(n, delay=3600.0)  # held: not yet due
    s.close()
    recovered = Outbox(store.SqliteStateStore(str(tmp_path)))
    assert recovered.pending() == 5
    stop = threading.Event()

    def stop_taking():
        stop.set()
        recovered.wake()
    threading.Timer(1.0, stop_taking).start()
    # Held for an hour, still held after the restart.
    assert recovered.take(stop) is None


def test_due_notifications_go_in_order_of_detection_after_retries():
    clock = [100.0]
    box = Outbox(monotonic=lambda: clock[0])
    a, b, c = notification('a'), notification('b', 1), notification('c', 2)
    for n in (a, b, c):
        box.add(n)
    stop = threading.Event()
    assert box.take(stop) is a
    box.retry_later(a, 5.0)
    assert box.take(stop) is b
    box.retry_later(b, 5.0)
    clock[0] += 10  # a, b and c are all due: the earliest detected first
    assert [box.take(stop) for _ in range(3)] == [a, b, c]


def test_a_notification_past_max_age_becomes_a_dead_letter(caplog):
    elapsed = [0.0]
    box = Outbox(max_age=3600, utcnow=lambda: T0, monotonic=lambda: elapsed[0])
    n = notification()
    box.add(n)
    assert box.take(threading.Event()) is n
    elapsed[0] = 3599.0
    assert box.retry_later(n, 0.0) is True
    assert box.take(threading.Event()) is n
    elapsed[0] = 3601.0
    with caplog.at_level(logging.ERROR):
        assert box.retry_later(n, 1.0) is False
    assert box.pending() == 0 and box.dead_lettered == 1
    assert [d.notification for d in box.dead_letters()] == [n]
    assert 'past max_pending_age' in caplog.text


def test_a_corrupt_database_is_moved_aside_not_deleted(tmp_path, caplog):
    garbage = os.urandom(64 * 1024)
    (tmp_path / store.FILENAME).write_bytes(b'SQLite format 3\0' + garbage)
    with caplog.at_level(logging.ERROR):
        s = store.open_state(str(tmp_path))
    assert s is not None
    (aside,) = tmp_path.glob(f'{store.FILENAME}.corrupt-*')
    assert aside.read_bytes().endswith(garbage)
    assert 'corrupt' in caplog.text
    s.put(DomainRecord('u', 'vm'))
    s.close()


def test_an_unwritable_state_directory_means_memory_and_one_error(tmp_path, caplog):
    if os.geteuid() == 0:
        # root writes anywhere: make the path a file instead of a directory.
        blocked = tmp_path / 'not-a-directory'
        blocked.write_text('')
        state = blocked / 'state'
    else:
        tmp_path.chmod(0o500)
        state = tmp_path / 'state'
    with caplog.at_level(logging.ERROR):
        assert store.open_state(str(state)) is None
    assert caplog.text.count('in memory only') == 1


def test_a_failing_write_degrades_to_memory_and_says_so_once(tmp_path, caplog):
    s = store.SqliteStateStore(str(tmp_path))
    box = Outbox(s)
    s._db.execute('PRAGMA query_only = ON')  # every write now fails, for real
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            box.add(notification(f'u{i}'))
            s.put(DomainRecord(f'u{i}', 'vm'))
    assert s.degraded
    assert caplog.text.count('Cannot write the state database') == 1
    # Detection and delivery go on from memory.
    assert box.pending() == 3 and s.get('u2') == DomainRecord('u2', 'vm')
    n = box.take(threading.Event())
    box.rejected(n, 'HTTP 400')
    assert [d.notification for d in box.dead_letters()] == [n]
    s.close()


def test_a_database_locked_past_the_busy_timeout_is_written_back_later(
        tmp_path, caplog):
    s = store.SqliteStateStore(str(tmp_path), busy_timeout=0.2)
    box = Outbox(s)
    first, second, third = notification('u1'), notification('u2'), notification('u3')
    box.add(first)
    # Another connection (an operator's sqlite3 shell, a backup) holds the
    # write lock for longer than the busy timeout.
    other = sqlite3.connect(tmp_path / store.FILENAME, isolation_level=None)
    other.execute('BEGIN IMMEDIATE')
    with caplog.at_level(logging.INFO):
        with s.batch():  # as the fan-out writes: a batch fails whole
            box.add(second)
            s.put(DomainRecord('u2', 'vm', run=3))
        box.add(third)
        assert box.take(threading.Event()) is first
        box.delivered(first)
        assert s.degraded and not s.retry()  # still locked
        other.execute('ROLLBACK')
        assert s.retry() and not s.degraded
    assert caplog.text.count('Cannot write the state database') == 1
    assert 'takes writes again: 4 changes kept in memory written back' in caplog.text
    s.close()
    again = store.SqliteStateStore(str(tmp_path))
    assert [n.notification_id for n, _ in again.pending('masakari')] == [
        second.notification_id, third.notification_id]
    assert again.get('u2') == DomainRecord('u2', 'vm', run=3)
    other.close()


def test_a_backlog_past_its_bound_is_memory_only_until_restart(tmp_path, caplog,
                                                                monkeypatch):
    monkeypatch.setattr(store.SqliteStateStore, 'BACKLOG_MAX', 2)
    s = store.SqliteStateStore(str(tmp_path))
    s._db.execute('PRAGMA query_only = ON')
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            s.put(DomainRecord(f'u{i}', 'vm'))
    s._db.execute('PRAGMA query_only = OFF')
    assert s.lost and not s.retry()
    assert 'kept in memory only, until the agent restarts' in caplog.text
    assert s.get('u2') == DomainRecord('u2', 'vm')  # detection goes on
    s.close()


def test_the_database_path_may_not_be_a_directory(tmp_path):
    (tmp_path / store.FILENAME).mkdir()
    with pytest.raises(OSError):
        store.SqliteStateStore(str(tmp_path))
    assert store.open_state(str(tmp_path)) is None


def test_a_batch_is_one_transaction(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    ns = [dataclasses.replace(notification(f'u{i}'), sink=f'webhook:h{i}')
          for i in range(3)]
    reader = sqlite3.connect(tmp_path / store.FILENAME)
    with s.batch():
        for n in ns:
            s.insert(n, 1.0)
        # Not committed yet: another connection sees none of them.
        assert reader.execute('SELECT COUNT(*) FROM outbox').fetchone() == (0,)
    assert reader.execute('SELECT COUNT(*) FROM outbox').fetchone() == (3,)
    reader.close()
    s.close()


def _record_syncs(monkeypatch, also=lambda: None) -> list[str]:
    """The files fdatasync'ed from now on (``also`` runs before each)."""
    synced, real = [], os.fdatasync

    def fdatasync(fd):
        also()
        synced.append(os.readlink(f'/proc/self/fd/{fd}'))
        real(fd)
    monkeypatch.setattr(os, 'fdatasync', fdatasync)
    return synced


def test_every_change_is_committed_then_synced_before_its_call_returns(
        tmp_path, monkeypatch):
    s = store.SqliteStateStore(str(tmp_path), busy_timeout=0.2)
    wal = str(tmp_path / (store.FILENAME + '-wal'))
    seen = []  # what another connection reads as each sync starts
    synced = _record_syncs(monkeypatch, lambda: seen.append(
        (len(_on_disk(s.path)), _domains(s.path))))
    s.put(DomainRecord('u1', 'vm'))
    s.insert(notification('a'), 1.0)
    with s.batch():
        s.insert(notification('b'), 1.0)
        s.put(DomainRecord('u2', 'vm'))
    assert synced == [wal] * 3  # one for the batch
    assert seen == [(0, 1), (1, 1), (2, 2)]  # each committed before its sync
    other = sqlite3.connect(s.path, isolation_level=None)
    other.execute("INSERT INTO commands (verb, arg) VALUES ('resend', 'x')")
    other.close()
    assert s.take_commands() == [('resend', 'x')]
    assert synced == [wal] * 4
    # Written back after the disk failed it: synced too.
    other = sqlite3.connect(s.path, isolation_level=None)
    other.execute('BEGIN IMMEDIATE')
    s.remove(notification('a').notification_id)
    assert s.degraded and synced == [wal] * 4
    other.execute('ROLLBACK')
    other.close()
    assert s.retry() and synced == [wal] * 5
    s.close()


def _domains(path) -> int:
    other = sqlite3.connect(path)
    try:
        return other.execute('SELECT COUNT(*) FROM domains').fetchone()[0]
    finally:
        other.close()


def test_a_batch_lets_go_of_its_commit_before_the_sync(tmp_path, monkeypatch):
    s = store.SqliteStateStore(str(tmp_path))
    steps, n = [], notification('a')
    _record_syncs(monkeypatch, lambda: steps.append('sync'))
    with s.batch(committed=lambda: steps.append(('committed', _on_disk(s.path)))):
        s.insert(n, 1.0)
        steps.append('in the batch')
    assert steps == ['in the batch', ('committed', [n.notification_id]), 'sync']
    s.close()


CRASH_AFTER_COMMIT = """
import os, sys
from instancemonitor import store
from tests.unit.test_store import notification
s = store.SqliteStateStore(sys.argv[1])
with s.batch(committed=lambda: os._exit(3)):  # dies before the sync
    s.insert(notification('a'), 1.0)
    s.put(store.DomainRecord('a', 'vm-a', run=4))
"""


def test_what_a_batch_committed_survives_a_crash_before_its_sync(tmp_path):
    crashed = subprocess.run([sys.executable, '-c', CRASH_AFTER_COMMIT,
                              str(tmp_path)], cwd=ROOT, timeout=60)
    assert crashed.returncode == 3
    again = store.SqliteStateStore(str(tmp_path))
    ((kept, due_at),) = again.pending('masakari')
    assert (kept.instance_uuid, kept.generated_time, due_at) == ('a', T0, 1.0)
    assert again.get('a') == DomainRecord('a', 'vm-a', run=4)
    again.close()


def test_a_failing_sync_is_said_once_and_the_store_goes_on(tmp_path, caplog,
                                                         monkeypatch):
    s = store.SqliteStateStore(str(tmp_path))
    real = os.fdatasync

    def failing(fd):
        raise OSError(errno.EIO, 'Input/output error')
    monkeypatch.setattr(os, 'fdatasync', failing)
    with caplog.at_level(logging.INFO):
        s.insert(notification('a'), 1.0)
        s.insert(notification('b'), 1.0)
        assert caplog.text.count('Cannot sync the state database') == 1
        assert 'Input/output error' in caplog.text
        monkeypatch.setattr(os, 'fdatasync', real)
        s.insert(notification('c'), 1.0)
    assert 'syncs again' in caplog.text
    assert not s.degraded  # committed all along
    assert len(_on_disk(s.path)) == 3
    s.close()


def test_writes_after_close_change_nothing_and_log_nothing(tmp_path, caplog):
    s = store.SqliteStateStore(str(tmp_path))
    n = notification()
    s.insert(n, 1.0)
    s.close()
    s.remove(n.notification_id)  # a sender that came back after the stop
    assert not s.degraded and 'Cannot write' not in caplog.text
    assert store.SqliteStateStore(str(tmp_path)).pending('masakari') == [(n, 1.0)]


class SteppingClock:
    """A wall clock an NTP step can move, and a monotonic one it cannot."""

    def __init__(self) -> None:
        self.wall, self.elapsed = T0, 1000.0

    def utcnow(self) -> datetime.datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.wall += datetime.timedelta(seconds=seconds)
        self.elapsed += seconds


def test_a_wall_clock_step_forward_does_not_age_a_pending_notification():
    clock = SteppingClock()
    box = Outbox(max_age=3600, utcnow=clock.utcnow, monotonic=clock.monotonic)
    n = notification()
    box.add(n)
    assert box.take(threading.Event()) is n
    clock.wall += datetime.timedelta(days=1)  # NTP steps a day forward
    clock.advance(10)
    assert box.retry_later(n, 1.0) is True
    assert box.pending() == 1 and box.dead_lettered == 0


def test_a_wall_clock_step_back_across_a_restart_delays_nothing(tmp_path):
    clock = SteppingClock()
    state = store.SqliteStateStore(str(tmp_path))
    box = Outbox(state, max_age=3600, utcnow=clock.utcnow,
                 monotonic=clock.monotonic, max_delay=30)
    n = notification()
    box.add(n)
    assert box.take(threading.Event()) is n
    assert box.retry_later(n, 20.0)  # the next round in 20 s, on disk
    state.close()
    clock.wall -= datetime.timedelta(days=1)  # stepped back while it was down
    clock.elapsed = 5.0                        # a new process, a new clock
    again = Outbox(store.SqliteStateStore(str(tmp_path)), max_age=3600,
                   utcnow=clock.utcnow, monotonic=clock.monotonic, max_delay=30)
    stop = threading.Event()
    assert again.take(stop, timeout=0) is None
    clock.advance(30)  # at most max_delay, not a day
    taken = again.take(stop, timeout=0)
    assert taken is not None and taken.notification_id == n.notification_id
    # Its age after the restart is clamped at 0, not minus a day: it still
    # dies after max_age of elapsed time, not a day and an hour.
    clock.advance(3601)
    assert again.retry_later(taken, 1.0) is False


def test_time_the_agent_was_down_counts_toward_max_age(tmp_path):
    clock = SteppingClock()
    state = store.SqliteStateStore(str(tmp_path))
    box = Outbox(state, max_age=3600, utcnow=clock.utcnow, monotonic=clock.monotonic)
    n = notification()
    box.add(n)
    state.close()
    clock.advance(3000)  # down for 50 minutes
    again = Outbox(store.SqliteStateStore(str(tmp_path)), max_age=3600,
                   utcnow=clock.utcnow, monotonic=clock.monotonic)
    taken = again.take(threading.Event(), timeout=0)
    clock.advance(300)
    assert again.retry_later(taken, 1.0) is True   # 55 minutes old
    clock.advance(1)
    taken = again.take(threading.Event(), timeout=0)
    clock.advance(400)
    assert again.retry_later(taken, 1.0) is False  # 61 minutes old


def test_dead_letters_past_their_age_or_count_are_deleted(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    box = Outbox(s)
    old, middle, new = (dataclasses.replace(notification(f'u{i}'),
                                            generated_time=T0 + datetime.timedelta(days=d))
                        for i, d in enumerate((0, 20, 29)))
    for n in (old, middle, new):
        box.add(n)
        box.rejected(box.take(threading.Event()), 'HTTP 400')
    now = T0 + datetime.timedelta(days=31)
    assert s.prune_dead_letters('masakari', 30 * 86400, 0, now) == 1  # by age
    assert [d.notification.notification_id for d in s.dead_letters('masakari')] == [
        middle.notification_id, new.notification_id]
    assert s.prune_dead_letters('masakari', 0, 1, now) == 1  # the oldest first
    assert [d.notification.notification_id for d in s.dead_letters('masakari')] == [
        new.notification_id]
    assert s.prune_dead_letters('webhook:x', 1, 1, now) == 0  # per sink
    s.close()


def test_concurrent_writes_share_commits_and_each_is_on_disk_when_it_returns(
        tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    commits = []
    s._db.set_trace_callback(
        lambda sql: commits.append(sql) if sql in ('COMMIT',) else None)
    start, written = threading.Barrier(16), []

    def write(i):
        start.wait()
        for j in range(20):
            n = Notification('compute-1', f'{i:08d}-0000-0000-0000-{j:012d}',
                             'LIFECYCLE', 'STOPPED_FAILED',
                             datetime.datetime.now(datetime.UTC))
            s.insert(n, 0.0)
            # On disk now: another connection sees it.
            reader = sqlite3.connect(s.path)
            (count,) = reader.execute(
                'SELECT COUNT(*) FROM outbox WHERE notification_id = ?',
                (n.notification_id,)).fetchone()
            reader.close()
            written.append(count)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert written == [1] * 320
    assert len(store.SqliteStateStore(str(tmp_path)).pending('masakari')) == 320
    # Some waited for another's commit and went with the next one: fewer
    # transactions than writes (each alone would be an implicit one).
    assert 0 < len(commits) < 320


def _on_disk(path) -> list[str]:
    """The pending notification ids another connection reads."""
    other = sqlite3.connect(path)
    try:
        return [row[0] for row in other.execute(
            'SELECT notification_id FROM outbox ORDER BY seq')]
    finally:
        other.close()


def _subscribers_store(tmp_path, *pending, **options) -> store.SqliteStateStore:
    """A store that defers removals, holding ``pending``."""
    s = store.SqliteStateStore(str(tmp_path), store.SUBSCRIBERS_FILENAME,
                               defer_removals=True, **options)
    for n in pending:
        s.insert(n, 0.0)
    return s


def test_a_deferred_removal_goes_with_the_next_transaction(tmp_path):
    path = tmp_path / store.SUBSCRIBERS_FILENAME
    first, second, third = notification('u1'), notification('u2'), notification('u3')
    s = _subscribers_store(tmp_path, first, second)
    s.remove(first.notification_id, delivered=True)
    assert _on_disk(path) == [first.notification_id, second.notification_id]
    with s.batch():  # the next event's notifications: the removal commits with them
        s.insert(third, 0.0)
    assert _on_disk(path) == [second.notification_id, third.notification_id]
    s.remove(second.notification_id, delivered=True)
    s.set_agent_status({'status': 'ok'})  # any write takes them along
    assert _on_disk(path) == [third.notification_id]
    s.remove(third.notification_id, delivered=True)
    assert s.retry()  # the agent's tick, with nothing else to write
    assert _on_disk(path) == []
    s.close()


def test_reads_and_close_see_deferred_removals(tmp_path):
    path = tmp_path / store.SUBSCRIBERS_FILENAME
    first, second = notification('u1'), notification('u2')
    s = _subscribers_store(tmp_path, first, second)
    s.remove(first.notification_id, delivered=True)
    assert s.pending('masakari') == [(second, 0.0)]
    s.remove(second.notification_id, delivered=True)
    s.close()
    assert _on_disk(path) == []


def test_a_crash_before_a_deferred_removal_sends_it_again(tmp_path):
    delivered, waiting = notification('u1'), notification('u2')
    s = _subscribers_store(tmp_path, delivered, waiting)
    s.remove(delivered.notification_id, delivered=True)
    # The process dies here (no close): the next start has both, and the
    # delivered one goes again under its own id.
    again = store.SqliteStateStore(str(tmp_path), store.SUBSCRIBERS_FILENAME)
    assert [n for n, _ in again.pending('masakari')] == [delivered, waiting]
    again.close()


def test_deferred_removals_are_written_once_there_are_enough(tmp_path):
    path = tmp_path / store.SUBSCRIBERS_FILENAME
    many = [notification(f'u{i}')
            for i in range(store.SqliteStateStore.DEFERRED_MAX)]
    s = _subscribers_store(tmp_path, *many)
    for n in many[:-1]:
        s.remove(n.notification_id, delivered=True)
    assert _on_disk(path) == [n.notification_id for n in many]
    s.remove(many[-1].notification_id, delivered=True)
    assert _on_disk(path) == []
    s.close()


def test_the_recovery_store_removes_a_delivered_notification_at_once(tmp_path):
    s = store.SqliteStateStore(str(tmp_path))
    box = Outbox(s)
    n = notification('u1')
    box.add(n)
    assert box.take(threading.Event()) is n
    box.delivered(n)
    assert _on_disk(tmp_path / store.FILENAME) == []
    s.close()


def test_deferred_removals_wait_out_a_locked_database(tmp_path):
    path = tmp_path / store.SUBSCRIBERS_FILENAME
    first, second = notification('u1'), notification('u2')
    s = _subscribers_store(tmp_path, first, busy_timeout=0.2)
    s.remove(first.notification_id, delivered=True)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute('BEGIN IMMEDIATE')
    with s.batch():
        s.insert(second, 0.0)
    assert s.degraded and not s.retry()
    other.execute('ROLLBACK')
    other.close()
    assert s.retry() and not s.degraded
    assert _on_disk(path) == [second.notification_id]
    s.close()


def test_a_version_6_journal_gets_the_boot_column_and_keeps_it(tmp_path):
    db = sqlite3.connect(tmp_path / store.FILENAME)
    db.executescript(store._SCHEMA + 'PRAGMA user_version=6;')
    db.execute('INSERT INTO domains VALUES (?, ?, ?, ?, NULL, ?, NULL, 1, ?, ?)',
               ('a', 'vm', 'running', 'LIFECYCLE 5/5', '', '', 'healthy'))
    db.commit()
    db.close()
    s = store.SqliteStateStore(str(tmp_path))
    (record,) = s.records()
    assert record.boot == ''  # of a boot nobody noted: adopted by the next event
    record.boot = 'b0a7'
    s.put(record)
    s.close()
    s = store.SqliteStateStore(str(tmp_path))
    assert [r.boot for r in s.records()] == ['b0a7']
    s.close()
