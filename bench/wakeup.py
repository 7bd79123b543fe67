"""What a CPU just woken from idle costs: the same work, back to back and
after a pause.

A failure arrives after the agent has idled, so every step of the detection
path runs on a CPU that was idle (on a VM: a vCPU the host had descheduled,
with cold caches). Timed here, each 60 times, back to back and after pauses
of 1, 10, 50 and 300 ms (medians, microseconds):

- fixed Python work (20 ``json.dumps`` of a small document);
- the journal deciding one STOPPED_FAILED, in the state database's
  transaction (the agent's own ``Journal``, ``Outbox`` and SQLite store);
- that transaction's commit and its sync (one fsync);
- for the floor under those two, with no code of the agent's: one 4 KiB
  write and its fsync, on a file in the same directory; and a one-row
  SQLite transaction and its fsync (WAL, ``synchronous=FULL``: the
  agent's store's commit and sync in one call).

    python -m bench.wakeup [ROUNDS]
"""

import datetime
import json
import os
import pathlib
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

import libvirt

from bench.common import machine
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.outbox import Outbox
from instancemonitor.store import SqliteStateStore

PAUSES = (0.0, 0.001, 0.01, 0.05, 0.3)
ROUNDS = 60
DOCUMENT = {'numbers': list(range(50)), 'text': 'x' * 100}


def python_work() -> None:
    for _ in range(20):
        json.dumps(DOCUMENT)


class Detection:
    """A domain starts (untimed), then fails: the journal's work and commit."""

    def __init__(self) -> None:
        self.store = SqliteStateStore(tempfile.mkdtemp(prefix='im-wakeup-'))
        self.journal = Journal(self.store, 'compute-1')
        self.outbox = Outbox(self.store)
        self.filter = EventFilter(forward_all=False, reboot_window=0.0)
        self.domains = 0

    def _apply(self, event: DomainEvent) -> tuple[float, float]:
        observation = self.filter.classify(event)
        with self.store.batch():
            began = time.perf_counter()
            self.journal.record(event, observation, self.outbox.add,
                                lambda _uuid, _pairs: None, lambda *_line: None)
            decided = time.perf_counter()
        committed = time.perf_counter()
        return (decided - began) * 1e6, (committed - decided) * 1e6

    def event(self, event: int, detail: int, name: str,
              domain_uuid: str) -> DomainEvent:
        return DomainEvent(kind=EventKind.LIFECYCLE, domain_uuid=domain_uuid,
                           domain_name=name, event=event, detail=detail,
                           detected_at=datetime.datetime.now(datetime.UTC),
                           domain_id=self.domains)

    def prepare(self) -> DomainEvent:
        self.domains += 1
        name, domain_uuid = f'wakeup-{self.domains}', str(uuid.uuid4())
        self._apply(self.event(libvirt.VIR_DOMAIN_EVENT_STARTED, 0, name,
                               domain_uuid))
        return self.event(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                          libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED, name, domain_uuid)

    def fail(self, event: DomainEvent) -> tuple[float, float]:
        return self._apply(event)


class Floor:
    """The same disk's fsync, and SQLite's transaction, with nothing else."""

    def __init__(self, directory: pathlib.Path) -> None:
        self._fd = os.open(directory / 'fsync', os.O_CREAT | os.O_WRONLY, 0o600)
        self._db = sqlite3.connect(directory / 'bare.sqlite', isolation_level=None)
        self._db.execute('PRAGMA journal_mode=WAL')
        self._db.execute('PRAGMA synchronous=FULL')
        self._db.execute('CREATE TABLE t (a TEXT)')

    def fsync(self) -> float:
        began = time.perf_counter()
        os.pwrite(self._fd, b'x' * 4096, 0)
        os.fsync(self._fd)
        return (time.perf_counter() - began) * 1e6

    def transaction(self) -> float:
        began = time.perf_counter()
        self._db.execute('BEGIN')
        self._db.execute('INSERT INTO t VALUES (?)', ('x' * 300,))
        self._db.execute('COMMIT')
        return (time.perf_counter() - began) * 1e6


def main() -> None:
    detection = Detection()
    directory = detection.store.path.parent
    try:
        measure(detection, Floor(directory))
    finally:
        detection.store.close()
        shutil.rmtree(directory, ignore_errors=True)


def measure(detection: Detection, floor: Floor) -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    print(f'# {machine()}; medians of {rounds}, microseconds')
    print(f'{"pause ms":>9} {"python work":>12} {"journal":>8} {"commit":>8} '
          f'{"fsync":>8} {"bare txn":>9}')
    for pause in PAUSES:
        work, decide, commit, fsync, bare = [], [], [], [], []
        for _ in range(rounds):
            failure = detection.prepare()
            time.sleep(pause)
            began = time.perf_counter()
            python_work()
            work.append((time.perf_counter() - began) * 1e6)
            time.sleep(pause)
            decided, committed = detection.fail(failure)
            decide.append(decided)
            commit.append(committed)
            time.sleep(pause)
            fsync.append(floor.fsync())
            time.sleep(pause)
            bare.append(floor.transaction())
        print(f'{pause * 1000:9.0f} {statistics.median(work):12.0f} '
              f'{statistics.median(decide):8.0f} {statistics.median(commit):8.0f} '
              f'{statistics.median(fsync):8.0f} {statistics.median(bare):9.0f}')


if __name__ == '__main__':
    main()
