"""The migration watch on libvirt's test driver: what it finds of a domain
whose QEMU died in an outgoing migration, published as events.

The test driver keeps no migration jobs (virDomainGetJobStats is not
supported): the end of a failed migration's job is shown on real QEMU
(tests/e2e/test_migration.py) and with a domain that reports one here."""

import contextlib
import queue
import uuid

import libvirt
import pytest

from instancemonitor.events import EventKind
from instancemonitor.events import MigrationSource
from instancemonitor.sources import migration
from instancemonitor.sources.migration import MigrationWatch
from tests.processes import wait_for

DOMAIN_XML = """<domain type='test'>
  <name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory>
  <os><type>hvm</type></os>
</domain>"""


@pytest.fixture
def conn():
    conn = libvirt.open('test:///default')
    yield conn
    conn.close()


@pytest.fixture
def watch(conn):
    """A started watch on ``conn``, what it publishes, and how to stop it."""
    found: queue.Queue = queue.Queue()
    watches = []

    def start(wait: float = 30.0, lent=None) -> MigrationWatch:
        """``lent``: what the watch borrows each time (``conn`` if None)."""
        borrow = lent or (lambda: contextlib.nullcontext(conn))
        watcher = MigrationWatch(found.put, borrow, wait)
        watcher.start()
        watches.append(watcher)
        return watcher
    yield start, found
    for watcher in watches:
        watcher.stop()
        assert not watcher.thread.is_alive()


def domain(conn, persistent: bool) -> libvirt.virDomain:
    domain_uuid = str(uuid.uuid4())
    xml = DOMAIN_XML.format(name=f'vm-{domain_uuid[:8]}', uuid=domain_uuid)
    if not persistent:
        return conn.createXML(xml)
    dom = conn.defineXML(xml)
    dom.create()
    return dom


def told(found: queue.Queue, timeout: float = 5.0) -> list[MigrationSource]:
    """What the watch published, until it has been quiet for 0.5 s."""
    events = []
    try:
        events.append(found.get(timeout=timeout))
        while True:
            events.append(found.get(timeout=0.5))
    except queue.Empty:
        pass
    assert all(e.kind is EventKind.MIGRATION_SOURCE for e in events)
    return [MigrationSource(e.event) for e in events]


def test_a_persistent_domain_told_defined_then_gone_when_undefined(conn, watch):
    start, found = watch
    dom = domain(conn, persistent=True)
    dom.destroy()
    watcher = start()
    watcher.follow(dom.UUIDString(), dom.name())
    assert told(found) == [MigrationSource.DEFINED]
    dom.undefine()
    (gone,) = [found.get(timeout=5)]
    assert (gone.event, gone.domain_uuid, gone.source) == (
        MigrationSource.GONE, dom.UUIDString(), 'migration-watch')
    assert watcher.following() == []


def test_a_transient_domain_is_only_told_gone(conn, watch):
    start, found = watch
    dom = domain(conn, persistent=False)
    name, domain_uuid = dom.name(), dom.UUIDString()
    dom.destroy()  # a transient domain is gone once stopped
    start().follow(domain_uuid, name)
    assert told(found) == [MigrationSource.GONE]


def test_nothing_is_told_after_the_wait(conn, watch):
    start, found = watch
    dom = domain(conn, persistent=True)
    dom.destroy()
    watcher = start(wait=0.5)
    watcher.follow(dom.UUIDString(), dom.name())
    assert told(found) == [MigrationSource.DEFINED]
    wait_for(lambda: watcher.following() == [], 5, 'the watch giving up', 0.05)
    dom.undefine()
    assert told(found, timeout=1.0) == []


def test_a_domain_started_again_is_no_longer_followed(conn, watch):
    start, found = watch
    dom = domain(conn, persistent=False)
    watcher = start()
    watcher.follow(dom.UUIDString(), dom.name())  # running: no migration outcome
    assert told(found, timeout=1.0) == []
    assert watcher.following() == []
    dom.destroy()


@pytest.mark.parametrize('persistent', [True, False])
def test_a_domain_paused_for_the_last_phase_is_told_defined_if_it_is(
        conn, watch, persistent):
    """Asked as the last phase begins, while the domain is surely there: one
    look, which tells DEFINED of a persistent domain only, and no more."""
    start, found = watch
    dom = domain(conn, persistent=persistent)
    dom.suspend()
    watcher = start()
    watcher.follow(dom.UUIDString(), dom.name(), held=False)
    assert told(found, timeout=1.0) == ([MigrationSource.DEFINED] if persistent
                                        else [])
    assert watcher.following() == []
    dom.destroy()
    if persistent:
        dom.undefine()
    assert told(found, timeout=1.0) == []


def test_it_waits_for_a_connection(conn, watch):
    start, found = watch
    dom = domain(conn, persistent=False)
    name, domain_uuid = dom.name(), dom.UUIDString()
    dom.destroy()
    lent: list = [None]
    watcher = start(lent=lambda: contextlib.nullcontext(lent[0]))
    watcher.follow(domain_uuid, name)
    assert told(found, timeout=0.5) == []
    lent[0] = conn
    assert told(found) == [MigrationSource.GONE]
    assert watcher.following() == []


class _EndedJobDomain:
    """A stopped persistent domain whose migration job has ended (as the
    completed job statistics of a real QEMU domain say)."""

    def __init__(self) -> None:
        self.flags: list[int] = []

    def state(self) -> list[int]:
        return [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED]

    def isPersistent(self) -> int:
        return 1

    def jobStats(self, flags: int = 0) -> dict:
        self.flags.append(flags)
        return {'type': libvirt.VIR_DOMAIN_JOB_COMPLETED,
                'operation': libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}


def test_an_ended_job_is_told_and_read_without_clearing_it(watch, monkeypatch):
    start, found = watch
    dom = _EndedJobDomain()

    class Conn:
        def lookupByUUIDString(self, _uuid: str) -> _EndedJobDomain:
            return dom
    monkeypatch.setattr(migration, 'POLL_INTERVAL', 0.01)
    start(lent=lambda: contextlib.nullcontext(Conn())).follow('8c4b5f0e-0000-4000-8000-000000000001', 'vm-ended')
    assert told(found) == [MigrationSource.DEFINED, MigrationSource.JOB_ENDED]
    # Observe, never reconfigure: the statistics stay for Nova.
    assert dom.flags and all(f & libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
                             for f in dom.flags)
