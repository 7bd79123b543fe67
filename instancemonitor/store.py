"""The durable state: journal and outbox in one SQLite database.

WAL mode: a call returns once its change is on disk, so a notification is
kept before the event that caused it counts as handled. SQLite runs with
``synchronous=NORMAL`` (a commit writes the WAL, no fsync) and the store
syncs the WAL itself after each commit: the same as ``synchronous=FULL``,
except that a batch can let go of what it committed between the two
(:meth:`SqliteStateStore.batch`). Once committed, a change survives a crash
of the agent (it is in the kernel's page cache); once synced, the host's
loss of power too. The database file (and SQLite's -wal/-shm files, which
take its mode) are readable by the owner only.
"""

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable
from collections.abc import Iterator

from instancemonitor.domainstate import Agent
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Phase
from instancemonitor.domainstate import Probe
from instancemonitor.domainstate import ProbeStatus
from instancemonitor.events import Notification
from instancemonitor.outbox import DeadLetter

LOG = logging.getLogger(__name__)

FILENAME = 'instancemonitor.sqlite'
# The event subscribers' outboxes: a database of their own, so the recovery
# API's writes never queue behind theirs (each change is an fsync).
SUBSCRIBERS_FILENAME = 'subscribers.sqlite'
SCHEMA_VERSION = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    uuid TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL,
    last_event TEXT NOT NULL, last_seen TEXT, failure TEXT NOT NULL,
    failed_at TEXT, notified INTEGER NOT NULL, reported TEXT NOT NULL,
    heartbeat TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT UNIQUE NOT NULL, hostname TEXT NOT NULL,
    instance_uuid TEXT NOT NULL, event TEXT NOT NULL,
    vir_domain_event TEXT NOT NULL, generated_time TEXT NOT NULL,
    due_at REAL NOT NULL, dead_reason TEXT);
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (dead_reason);
CREATE TABLE IF NOT EXISTS agent (
    key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, verb TEXT NOT NULL, arg TEXT NOT NULL);
"""


# Columns added after version 1, with the value rows of version 1 get.
_OUTBOX_COLUMNS_V2 = (
    ('sink', "TEXT NOT NULL DEFAULT 'masakari'"),
    ('instance_name', "TEXT NOT NULL DEFAULT ''"),
    ('source', "TEXT NOT NULL DEFAULT ''"),
    ('reason', "TEXT NOT NULL DEFAULT ''"),
    # Version 5: the application probe of a PROBE event.
    ('probe', "TEXT NOT NULL DEFAULT ''"),
)


# Columns of the domains table added since version 3 (the state machine's run
# and the heartbeat's state); ``state`` holds the phase since then.
_DOMAINS_COLUMNS_V3 = (
    ('run', 'INTEGER NOT NULL DEFAULT -1'),
    ('agent', "TEXT NOT NULL DEFAULT ''"),
    ('agent_failures', 'INTEGER NOT NULL DEFAULT 0'),
    ('agent_since', 'TEXT'),
    ('agent_answered', 'INTEGER NOT NULL DEFAULT 0'),
    # Version 4: when each recovery pair was last notified ('PAIR=TIME,...').
    ('recovery_times', "TEXT NOT NULL DEFAULT ''"),
    # Version 5: who opened the episode, and the application probes' states
    # (JSON: name → [state, failures, successes]).
    ('episode_by', "TEXT NOT NULL DEFAULT ''"),
    ('probes', "TEXT NOT NULL DEFAULT ''"),
    # Version 6: whether the domain is persistent (1, 0; NULL: not known).
    ('persistent', 'INTEGER'),
    # Version 7: the host's boot id the record was last written in.
    ('boot', "TEXT NOT NULL DEFAULT ''"),
)
_DOMAIN_COLUMNS = ('uuid, name, state, last_event, last_seen, failure, failed_at, '
                   'notified, reported, heartbeat, run, agent, agent_failures, '
                   'agent_since, agent_answered, recovery_times, episode_by, probes, '
                   'persistent, boot')
_PUT_DOMAIN = (f'INSERT OR REPLACE INTO domains ({_DOMAIN_COLUMNS}) VALUES '
               f'({", ".join("?" * (_DOMAIN_COLUMNS.count(",") + 1))})')


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a database of an earlier version to this one, in one transaction."""
    (version,) = db.execute('PRAGMA user_version').fetchone()
    db.execute('BEGIN IMMEDIATE')
    try:
        for table, columns in (('outbox', _OUTBOX_COLUMNS_V2),
                               ('domains', _DOMAINS_COLUMNS_V3)):
            present = {row[1] for row in db.execute(f'PRAGMA table_info({table})')}
            for column, declaration in columns:
                if column not in present:
                    db.execute(
                        f'ALTER TABLE {table} ADD COLUMN {column} {declaration}')
        if 0 < version < 3:
            # Versions 1 and 2 stored 'failed' for any open episode; only a
            # crash's is a stopped domain (an I/O error's runs on).
            db.execute("UPDATE domains SET state = 'running' WHERE state = 'failed' "
                       "AND failure != 'LIFECYCLE/STOPPED_FAILED'")
        db.execute(f'PRAGMA user_version={SCHEMA_VERSION}')
        db.execute('COMMIT')
    except sqlite3.Error:
        db.execute('ROLLBACK')
        raise


@dataclasses.dataclass(slots=True)
class _Change:
    """One write (sql, params), and whether a group commit has applied it."""
    statement: tuple[str, tuple]
    done: bool = False
    written: bool = False


def _stamp(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


def _times(value: str) -> dict[str, datetime.datetime]:
    """'PAIR=TIME,...' as a dict."""
    pairs = (item.split('=', 1) for item in value.split(',') if item)
    return {pair: datetime.datetime.fromisoformat(at) for pair, at in pairs}


def probe_states(value: str) -> dict[str, ProbeStatus]:
    """The ``probes`` column of a domain's row."""
    return {name: ProbeStatus(Probe(state), failures, successes)
            for name, (state, failures, successes) in
            (json.loads(value) if value else {}).items()}


def _probes_text(probes: dict[str, ProbeStatus]) -> str:
    return json.dumps({name: [s.state.value, s.failures, s.successes]
                       for name, s in sorted(probes.items())}) if probes else ''


def _in_memory(state_path: str, error: Exception) -> None:
    LOG.error('Cannot keep state in %s (%s): the journal and the outbox are in '
              'memory only and a restart loses them', state_path, error)


def open_state(state_path: str, filename: str = FILENAME,
               defer_removals: bool = False) -> 'SqliteStateStore | None':
    """The durable store under ``state_path``, or None (logged) if unusable
    (``defer_removals``: see :class:`SqliteStateStore`).

    A database that is not one, or fails its check, is moved aside and a new
    one started: the old file stays for the operator to look at.
    """
    try:
        return SqliteStateStore(state_path, filename,
                                defer_removals=defer_removals)
    except sqlite3.DatabaseError as error:
        path = pathlib.Path(state_path) / filename
        if isinstance(error, sqlite3.OperationalError) or not path.exists():
            _in_memory(state_path, error)
            return None
        stamp = datetime.datetime.now(datetime.UTC).strftime('%Y%m%dT%H%M%SZ')
        aside = path.with_name(f'{filename}.corrupt-{stamp}')
        path.rename(aside)
        for suffix in ('-wal', '-shm'):
            extra = path.with_name(filename + suffix)
            if extra.exists():
                extra.rename(aside.with_name(aside.name + suffix))
        LOG.error('State database %s is corrupt (%s); moved aside to %s and '
                  'started afresh', path, error, aside)
        return open_state(state_path, filename, defer_removals)
    except OSError as error:
        _in_memory(state_path, error)
        return None


class SqliteStateStore:
    """Implements both ``JournalStore`` and ``OutboxStore``.

    Domain records are mirrored in memory and written through. If a write
    fails (the disk full, the database locked past the busy timeout, an I/O
    error) the store says so once at ERROR and keeps that change and every
    later one in memory, in order: detection and delivery never stop for
    the disk. :meth:`retry` (the agent calls it every few seconds) writes
    them back in one transaction once the database takes writes again.
    """

    # Changes kept in memory at most while the database cannot be written;
    # past this the state is in memory only until the agent restarts.
    BACKLOG_MAX = 100_000

    # Deferred removals written at most this many at a time on their own.
    DEFERRED_MAX = 256

    def __init__(self, state_path: str, filename: str = FILENAME,
                 busy_timeout: float = 5.0, defer_removals: bool = False) -> None:
        """``defer_removals``: a delivered notification's removal is
        written with the next transaction (or by :meth:`retry`) instead of
        committing on its own: no fsync of its own, and a crash before then
        sends it again, with the same id (for event subscribers, who drop
        repeats by it)."""
        directory = pathlib.Path(state_path)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / filename
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)
        # One connection, shared by the dispatch and sender threads.
        self._db = sqlite3.connect(self.path, check_same_thread=False,
                                   isolation_level=None, timeout=busy_timeout)
        # Re-entrant: a batch holds it around the writes it groups.
        self._lock = threading.RLock()
        # Writes fail: changes wait in _backlog (or, once it overflowed,
        # are in memory only: ``lost``).
        self.degraded = False
        self.degraded_since: datetime.datetime | None = None
        self.lost = False
        self._backlog: list[tuple[str, tuple]] = []
        # The statements of the open batch, if any: kept until it commits.
        self._batch: list[tuple[str, tuple]] | None = None
        # Its thread (read without the lock: no other thread sees its own).
        self._batch_thread: int | None = None
        # Changes waiting for the next group commit (see _write).
        self._queue: list[_Change] = []
        self._queue_lock = threading.Lock()
        self._defer_removals = defer_removals
        # Removals waiting for the next transaction (same lock as _queue).
        self._deferred: list[tuple[str, tuple]] = []
        self._closed = False
        self._dead_in_memory: list[DeadLetter] = []
        # The WAL file, synced after each commit (see _sync).
        self._wal_path = self.path.with_name(filename + '-wal')
        self._wal: int | None = None
        self._sync_failing = False
        try:
            self._db.execute('PRAGMA journal_mode=WAL')
            self._db.execute('PRAGMA synchronous=NORMAL')
            self._db.executescript(_SCHEMA)
            _upgrade(self._db)
            # Checks the whole file now rather than failing on a later write.
            (check,) = self._db.execute('PRAGMA quick_check').fetchone()
            if check != 'ok':
                raise sqlite3.DatabaseError(check)
            rows = self._db.execute(
                f'SELECT {_DOMAIN_COLUMNS} FROM domains').fetchall()
        except sqlite3.Error:
            self._db.close()
            raise
        self._records = {row[0]: self._record(row) for row in rows}
        self._sync()  # the schema and its upgrade

    def _degrade(self, error: sqlite3.Error,
                 statements: list[tuple[str, tuple]]) -> None:
        """Writes fail: keep ``statements`` (not on disk) for :meth:`retry`."""
        if not self.degraded:
            self.degraded, self.degraded_since = True, datetime.datetime.now(
                datetime.UTC)
            LOG.error('Cannot write the state database %s (%s): changes are '
                      'kept in memory and written back once it can be written '
                      'again; a restart before then loses them', self.path, error)
        self._defer(statements)

    def _defer(self, statements: list[tuple[str, tuple]]) -> None:
        if self.lost:
            return
        self._backlog.extend(statements)
        if len(self._backlog) > self.BACKLOG_MAX:
            self.lost = True
            self._backlog.clear()
            LOG.error('The state database %s has not taken writes for %d changes: '
                      'from now on the journal and the outbox are kept in memory '
                      'only, until the agent restarts', self.path, self.BACKLOG_MAX)

    def _write(self, sql: str, params: tuple) -> bool:
        """Apply one change; False if it is only in memory for now.

        Group commit: changes that other threads make while one commits
        wait, and the next of them commits them all in one transaction (one
        fsync), so a burst of deliveries does not queue up fsyncs. Each call
        returns once its own change is on disk."""
        change = _Change((sql, params))
        if self._batch_thread == threading.get_ident():
            with self._lock:  # this thread's batch: its changes commit with it
                return self._write_in_batch(change)
        with self._queue_lock:
            self._queue.append(change)
        with self._lock:
            if change.done:
                return change.written
            with self._queue_lock:
                group, self._queue = self._queue, []
                deferred, self._deferred = self._deferred, []
            written = self._commit_group(group, deferred)
            for each in group:
                each.done, each.written = True, written
            return written

    def _write_in_batch(self, change: '_Change') -> bool:
        if self._closed:
            return False
        if self.degraded:
            self._defer([change.statement])
            return False
        try:
            self._db.execute(*change.statement)
        except sqlite3.Error as error:
            self._rollback()
            failed, self._batch = self._batch + [change.statement], None
            self._batch_thread = None
            self._degrade(error, failed)
            return False
        self._batch.append(change.statement)
        return True

    def _commit_group(self, group: list['_Change'],
                      deferred: list[tuple[str, tuple]] = ()) -> bool:
        statements = [*deferred, *(change.statement for change in group)]
        if self._closed:
            return False
        if self.degraded:
            self._defer(statements)
            return False
        try:
            if len(statements) == 1:
                self._db.execute(*statements[0])
            else:
                self._transaction(statements)
        except sqlite3.Error as error:
            self._degrade(error, statements)
            return False
        self._sync()
        return True

    def _sync(self) -> None:
        """Put what is committed on disk: fdatasync the WAL, as SQLite does
        after each commit with ``synchronous=FULL`` (the lock held).

        A failure is logged: the change is committed, and stays so unless
        the host loses power before the disk takes writes again."""
        try:
            if self._wal is None:
                self._wal = os.open(self._wal_path, os.O_RDWR | os.O_CLOEXEC)
            os.fdatasync(self._wal)
        except OSError as error:
            if not self._sync_failing:
                self._sync_failing = True
                LOG.error('Cannot sync the state database %s (%s): its latest '
                          'changes are lost if the host loses power',
                          self._wal_path, error)
            return
        if self._sync_failing:
            self._sync_failing = False
            LOG.info('The state database %s syncs again', self._wal_path)

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        """Apply ``statements`` in one transaction, or none of them (raises)."""
        try:
            self._db.execute('BEGIN')
            for statement in statements:
                self._db.execute(*statement)
            self._db.execute('COMMIT')
        except sqlite3.Error:
            self._rollback()
            raise

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute('ROLLBACK')

    @contextlib.contextmanager
    def batch(self, committed: Callable[[], None] = lambda: None
              ) -> Iterator[None]:
        """The writes inside are one transaction: one fsync for them all.
        ``committed`` is called once it has committed, just before the
        fsync (the block ends after it)."""
        with self._lock:
            began = False
            if not (self.degraded or self._closed or self._batch is not None):
                deferred = self._take_deferred()
                try:
                    self._db.execute('BEGIN')
                    for statement in deferred:
                        self._db.execute(*statement)
                    self._batch_thread = threading.get_ident()
                    began, self._batch = True, deferred
                except sqlite3.Error as error:
                    self._rollback()
                    self._degrade(error, deferred)
            try:
                yield
            finally:
                if began:
                    self._batch_thread = None
                if began and self._batch is not None:
                    statements, self._batch = self._batch, None
                    try:
                        self._db.execute('COMMIT')
                    except sqlite3.Error as error:
                        self._rollback()
                        self._degrade(error, statements)
                    else:
                        committed()
                        self._sync()

    def retry(self) -> bool:
        """Write back what waits in memory, in one transaction, and the
        deferred removals; True once the database is up to date again."""
        with self._lock:
            if not self.degraded:
                self._flush_deferred()
                return True
            if self.lost or self._closed:
                return False
            try:
                self._transaction(self._backlog)
            except sqlite3.Error as error:
                LOG.debug('The state database %s still cannot be written: %s',
                          self.path, error)
                return False
            self._sync()
            count, self._backlog = len(self._backlog), []
            self.degraded, self.degraded_since = False, None
            self._dead_in_memory = []  # their changes were in the backlog
        LOG.info('The state database %s takes writes again: %d changes kept '
                 'in memory written back', self.path, count)
        return True

    def _take_deferred(self) -> list[tuple[str, tuple]]:
        with self._queue_lock:
            deferred, self._deferred = self._deferred, []
        return deferred

    def _flush_deferred(self) -> None:
        """Write the deferred removals now (the lock held)."""
        if deferred := self._take_deferred():
            self._commit_group([], deferred)

    def close(self) -> None:
        """Close the database. A sender thread still stuck in a request
        after the stop changes nothing any more: what it was sending stays
        pending on disk, for the next start."""
        with self._lock:
            self._flush_deferred()
            self._closed = True
            self._db.close()
            if self._wal is not None:
                os.close(self._wal)
                self._wal = None

    def set_agent_status(self, status: dict[str, str]) -> None:
        """What ``instancemonitor-status`` shows of the running agent."""
        for key, value in status.items():
            self._write('INSERT OR REPLACE INTO agent VALUES (?, ?)', (key, value))

    def take_commands(self) -> list[tuple[str, str]]:
        """Operator commands queued by ``instancemonitor-status``, oldest first;
        they are removed as they are returned."""
        with self._lock:
            if self.degraded or self._closed:
                return []
            try:
                rows = self._db.execute(
                    'SELECT id, verb, arg FROM commands ORDER BY id').fetchall()
                if rows:
                    self._db.execute('DELETE FROM commands WHERE id <= ?',
                                     (rows[-1][0],))
                    self._sync()
            except sqlite3.Error as error:
                LOG.warning('Cannot read operator commands: %s', error)
                return []
        return [(verb, arg) for _, verb, arg in rows]

    def unbury(self, notification_id: str, due_at: float,
               sink: str) -> Notification | None:
        """Make one of ``sink``'s dead letters pending again; return it, or
        None if it has no such dead letter."""
        dead = {d.notification.notification_id: d.notification
                for d in self.dead_letters(sink)}
        notification = dead.get(notification_id)
        if notification is not None:
            self._write('UPDATE outbox SET dead_reason = NULL, due_at = ? '
                        'WHERE notification_id = ?', (due_at, notification_id))
            with self._lock:
                self._dead_in_memory = [d for d in self._dead_in_memory
                                        if d.notification is not notification]
        return notification

    # JournalStore

    def get(self, uuid: str) -> DomainRecord | None:
        with self._lock:
            record = self._records.get(uuid)
            return record.copy() if record else None

    @staticmethod
    def _record(row: tuple) -> DomainRecord:
        uuid, name, state, last_event, last_seen, failure, failed_at, notified, \
            reported, _heartbeat, run, agent, agent_failures, agent_since, \
            agent_answered, recovery_times, episode_by, probes, persistent, \
            boot = row
        return DomainRecord(uuid=uuid, name=name, phase=Phase(state),
                            run=run, episode=failure, failed_at=_time(failed_at),
                            reported=frozenset(filter(None, reported.split(','))),
                            agent=Agent(agent), agent_failures=agent_failures,
                            agent_since=_time(agent_since),
                            agent_answered=bool(agent_answered),
                            last_event=last_event, last_seen=_time(last_seen),
                            notified=notified,
                            recovery_times=_times(recovery_times),
                            episode_by=episode_by, probes=probe_states(probes),
                            persistent=None if persistent is None else bool(persistent),
                            boot=boot)

    def put(self, record: DomainRecord) -> None:
        with self._lock:
            self._records[record.uuid] = record.copy()
        r = record
        self._write(
            _PUT_DOMAIN,
            (r.uuid, r.name, r.phase.value, r.last_event, _stamp(r.last_seen),
             r.episode, _stamp(r.failed_at), r.notified,
             ','.join(sorted(r.reported)), r.heartbeat, r.run, r.agent.value,
             r.agent_failures, _stamp(r.agent_since), int(r.agent_answered),
             ','.join(f'{pair}={at.isoformat()}'
                      for pair, at in sorted(r.recovery_times.items())),
             r.episode_by, _probes_text(r.probes),
             None if r.persistent is None else int(r.persistent), r.boot))

    def forget(self, uuid: str) -> None:
        with self._lock:
            self._records.pop(uuid, None)
        self._write('DELETE FROM domains WHERE uuid = ?', (uuid,))

    def records(self) -> list[DomainRecord]:
        with self._lock:
            return [r.copy() for r in
                    sorted(self._records.values(), key=lambda r: r.name)]

    # OutboxStore

    def insert(self, notification: Notification, due_at: float) -> None:
        n = notification
        self._write(
            'INSERT INTO outbox (notification_id, hostname, instance_uuid, event, '
            'vir_domain_event, generated_time, due_at, sink, instance_name, '
            'source, reason, probe) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            (n.notification_id, n.hostname, n.instance_uuid, n.event,
             n.vir_domain_event, _stamp(n.generated_time), due_at, n.sink,
             n.instance_name, n.source, n.reason, n.probe))

    def reschedule(self, notification_id: str, due_at: float) -> None:
        self._write('UPDATE outbox SET due_at = ? WHERE notification_id = ?',
                    (due_at, notification_id))

    def remove(self, notification_id: str, delivered: bool = False) -> None:
        """``delivered``: removed because its sink has it (deferred, if
        this store defers removals)."""
        statement = ('DELETE FROM outbox WHERE notification_id = ?',
                     (notification_id,))
        if delivered and self._defer_removals:
            with self._queue_lock:
                self._deferred.append(statement)
                if len(self._deferred) < self.DEFERRED_MAX:
                    return
            with self._lock:
                self._flush_deferred()
            return
        self._write(*statement)

    def bury(self, notification_id: str, reason: str,
             notification: Notification | None = None) -> None:
        if not self._write('UPDATE outbox SET dead_reason = ? '
                           'WHERE notification_id = ?', (reason, notification_id)):
            if notification is not None:
                with self._lock:
                    self._dead_in_memory.append(DeadLetter(notification, reason))

    def _notifications(self, where: str, sink: str
                       ) -> list[tuple[Notification, float, str]]:
        with self._lock:
            if self.degraded or self._closed:
                return []
            self._flush_deferred()
            rows = self._db.execute(
                'SELECT notification_id, hostname, instance_uuid, event, '
                'vir_domain_event, generated_time, due_at, dead_reason, '
                'instance_name, source, reason, probe FROM outbox '
                f'WHERE sink = ? AND {where} ORDER BY seq', (sink,)).fetchall()
        return [(Notification(notification_id=nid, hostname=host,
                              instance_uuid=uuid, event=event,
                              vir_domain_event=detail,
                              generated_time=_time(generated), sink=sink,
                              instance_name=name, source=source,
                              reason=io_reason, probe=probe), due_at, dead_reason)
                for nid, host, uuid, event, detail, generated, due_at, dead_reason,
                name, source, io_reason, probe in rows]

    def prune_dead_letters(self, sink: str, max_age: float, max_count: int,
                           now: datetime.datetime) -> int:
        """Delete ``sink``'s dead letters detected more than ``max_age``
        seconds before ``now``, and the oldest past ``max_count`` (0: no
        bound); return how many."""
        with self._lock:
            if self.degraded or self._closed:
                return 0
            rows = self._db.execute(
                'SELECT notification_id, generated_time FROM outbox WHERE sink = ? '
                'AND dead_reason IS NOT NULL ORDER BY seq DESC', (sink,)).fetchall()
        oldest = now - datetime.timedelta(seconds=max_age)
        doomed = [nid for index, (nid, generated) in enumerate(rows)
                  if (max_count and index >= max_count) or
                  (max_age and _time(generated) < oldest)]
        with self.batch():
            for nid in doomed:
                self.remove(nid)
        return len(doomed)

    def pending(self, sink: str) -> list[tuple[Notification, float]]:
        return [(n, due_at) for n, due_at, _ in
                self._notifications('dead_reason IS NULL', sink)]

    def dead_letters(self, sink: str) -> list[DeadLetter]:
        with self._lock:
            in_memory = [d for d in self._dead_in_memory
                         if d.notification.sink == sink]
        return [DeadLetter(n, reason) for n, _, reason in
                self._notifications('dead_reason IS NOT NULL', sink)] + in_memory
