"""The agent in-process, on libvirt's test driver, through libvirt's real event
loop, to a real HTTP receiver on 127.0.0.1."""

import datetime
import os
import threading
import time
import uuid

import libvirt
import pytest

from instancemonitor.sinks import httpclient
from instancemonitor.sources import reconcile
from tests.processes import wait_for

DOMAIN_XML = """<domain type='test'>
  <name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory>
  <os><type>hvm</type></os>
</domain>"""


@pytest.fixture
def new_domain(client):
    """A fresh transient running domain on test:///default, the agent's too."""
    conn = client('test:///default')
    created = []

    def create(name: str | None = None, domain_uuid: str | None = None):
        domain_uuid = domain_uuid or str(uuid.uuid4())
        dom = conn.createXML(DOMAIN_XML.format(
            name=name or f'vm-{domain_uuid[:8]}', uuid=domain_uuid))
        created.append(dom)
        return dom

    yield create
    for dom in created:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass


def seen_by_journal(agent, domain_uuid: str, event: str) -> bool:
    return any(r.uuid == domain_uuid and r.last_event.startswith(event)
               for r in agent.journal.records())


def test_destroy_is_forwarded_when_all_events_are(start_agent, new_domain,
                                                  recovery_api):
    agent = start_agent(events={'forward': 'all', 'reboot_window': 0})
    dom = new_domain()
    before = datetime.datetime.now(datetime.UTC)
    dom.destroy()
    (stored,) = recovery_api.wait_stored(1)
    assert stored['hostname'] == 'compute-1'
    assert stored['payload'] == {'event': 'LIFECYCLE',
                                 'instance_uuid': dom.UUIDString(),
                                 'vir_domain_event': 'STOPPED_DESTROYED'}
    # generated_time is the moment of detection, as the journal recorded it.
    generated = datetime.datetime.fromisoformat(stored['generated_time'])
    wait_for(lambda: [r.last_seen for r in agent.journal.records()
                      if r.uuid == dom.UUIDString()] == [generated], 5,
             'the journal record of the stop')
    assert before <= generated <= datetime.datetime.now(datetime.UTC)
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'an empty outbox')


def test_destroy_is_not_forwarded_by_default(start_agent, new_domain, recovery_api):
    agent = start_agent(events={'reboot_window': 0})
    dom = new_domain()
    dom.destroy()
    wait_for(lambda: seen_by_journal(agent, dom.UUIDString(), 'LIFECYCLE 5/'), 5,
             'the journal to see the stop')
    assert agent.outbox.pending() == 0
    assert [r.json() for r in recovery_api.requests] == []


def test_crash_dump_is_forwarded_as_stopped_crashed(start_agent, new_domain,
                                                   recovery_api, tmp_path):
    start_agent(events={'forward': 'all', 'reboot_window': 0})
    dom = new_domain()
    dom.coreDump(str(tmp_path / 'core'), libvirt.VIR_DUMP_CRASH)
    (stored,) = recovery_api.wait_stored(1)
    assert stored['payload']['vir_domain_event'] == 'STOPPED_CRASHED'
    assert stored['payload']['instance_uuid'] == dom.UUIDString()


def test_a_stop_followed_by_a_start_within_the_window_is_a_reboot(
        start_agent, new_domain, recovery_api, client):
    agent = start_agent(events={'forward': 'all', 'reboot_window': 1.0})
    rebooted, stopped = new_domain(), new_domain()
    rebooted_uuid = rebooted.UUIDString()
    rebooted.destroy()
    stopped.destroy()
    new_domain(name=rebooted.name(), domain_uuid=rebooted_uuid)  # started again
    (stored,) = recovery_api.wait_stored(1, timeout=5)
    assert stored['payload']['instance_uuid'] == stopped.UUIDString()
    # Past the window: still nothing for the rebooted one.
    time.sleep(1.2)
    assert [p[0] for p in recovery_api.payloads()] == [stopped.UUIDString()]
    assert agent.outbox.pending() == 0


def test_notification_keeps_its_generated_time_across_retries(
        start_agent, new_domain, recovery_api):
    recovery_api.answer((503, 'busy'), (502, 'bad gateway'))
    start_agent(events={'forward': 'all', 'reboot_window': 0},
                callback={'retry_interval': 0.05})
    new_domain().destroy()
    recovery_api.wait_stored(1)
    bodies = [r.json()['notification'] for r in recovery_api.wait_requests(3)]
    assert len(bodies) == 3
    assert len({b['generated_time'] for b in bodies}) == 1


@pytest.fixture
def node_xml(tmp_path):
    def make(count: int) -> str:
        domains = ''.join(
            DOMAIN_XML.format(name=f'burst-{i:04d}', uuid=uuid.uuid4())
            for i in range(count))
        path = tmp_path / 'node.xml'
        path.write_text(f'<node>{domains}</node>')
        return f'test://{path}'
    return make


def test_a_burst_of_hundreds_arrives_exactly_once(start_agent, node_xml, recovery_api):
    count = 300
    agent = start_agent(node_xml(count), events={'forward': 'all', 'reboot_window': 0})
    # A node.xml gives each connection its own copy: act through the agent's.
    with agent.connection.borrowed() as conn:
        domains = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    assert len(domains) == count
    for dom in domains:
        dom.destroy()
    stored = recovery_api.wait_stored(count, timeout=60)
    wait_for(lambda: agent.outbox.pending() == 0, 10, 'an empty outbox')
    time.sleep(0.3)  # anything extra would arrive now
    uuids = [n['payload']['instance_uuid'] for n in recovery_api.stored]
    assert len(uuids) == count and set(uuids) == {d.UUIDString() for d in domains}
    assert len(recovery_api.requests) == count  # no resend, no duplicate
    assert {n['payload']['vir_domain_event'] for n in stored} == {'STOPPED_DESTROYED'}


def test_a_domain_started_again_is_watched_afresh(start_agent, node_xml,
                                                  recovery_api):
    agent = start_agent(node_xml(1), events={'forward': 'all', 'reboot_window': 0})
    with agent.connection.borrowed() as conn:
        (dom,) = conn.listAllDomains()
    dom.destroy()
    dom.create()
    dom.destroy()
    requests = recovery_api.wait_requests(2)
    bodies = [r.json()['notification'] for r in requests]
    assert [b['payload']['vir_domain_event'] for b in bodies] == [
        'STOPPED_DESTROYED', 'STOPPED_DESTROYED']
    assert len({b['generated_time'] for b in bodies}) == 2
    # Masakari's duplicate rule answers the second 409 (same payload within
    # 180 s): counted as delivered, not a dead letter.
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'an empty outbox')
    assert agent.outbox.dead_letters() == []


def test_a_failure_and_its_notification_are_one_transaction_sent_after_it(
        start_agent, new_domain, recovery_api):
    agent = start_agent(events={'forward': 'all', 'reboot_window': 0})
    dom = new_domain()
    statements = []
    agent.store._db.set_trace_callback(statements.append)
    dom.destroy()
    recovery_api.wait_stored(1)
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'an empty outbox')
    agent.store._db.set_trace_callback(None)
    written = [s for s in statements
               if s.split()[0] in ('BEGIN', 'COMMIT', 'INSERT', 'DELETE')]
    kinds = [s.split(' (')[0].split(' VALUES')[0].split(' WHERE')[0].strip()
             for s in written]
    # The stop's record and its notification commit together (one fsync),
    # and the sender saw it only then: its removal comes after the COMMIT.
    insert = kinds.index('INSERT INTO outbox')
    begin = max(i for i in range(insert) if kinds[i] == 'BEGIN')
    commit = kinds.index('COMMIT', insert)
    # (with the start's record too, when both events waited together)
    assert 'COMMIT' not in kinds[begin:insert], kinds
    # (and the records of what waited behind it: the startup scan's finding
    # of another domain, on a busy machine)
    assert set(kinds[insert + 1:commit]) == {'INSERT OR REPLACE INTO domains'}, kinds
    ours = [s for s in written[insert + 1:commit] if dom.UUIDString() in s]
    assert len(ours) == 1 and "'shutoff'" in ours[0], written
    assert kinds.index('DELETE FROM outbox') > commit, kinds


def test_a_scan_read_before_a_destroy_and_applied_after_it_leaves_the_record(
        start_agent, new_domain, recovery_api, monkeypatch):
    # The startup scan lists the domain running; the destroy is journaled
    # (and notified) before the scan's finding is applied: the finding is
    # older than the record, which keeps saying what the destroy was.
    created, listed, applied, scanned = (threading.Event() for _ in range(4))
    real_states, real_scan = reconcile._states, reconcile.Reconciler.scan

    def states_listed_then_held(conn):
        created.wait(10)
        found = real_states(conn)
        listed.set()
        applied.wait(10)
        return found

    def scan(self, conn):
        try:
            return real_scan(self, conn)
        finally:
            scanned.set()
    monkeypatch.setattr(reconcile, '_states', states_listed_then_held)
    monkeypatch.setattr(reconcile.Reconciler, 'scan', scan)
    agent = start_agent(events={'forward': 'all', 'reboot_window': 0})
    try:
        dom = new_domain()
        created.set()
        assert listed.wait(10)
        dom.destroy()
        recovery_api.wait_stored(1)
        wait_for(lambda: seen_by_journal(agent, dom.UUIDString(), 'LIFECYCLE 5/'),
                 5, 'the destroy journaled')
        (stopped,) = [r for r in agent.journal.records()
                      if r.uuid == dom.UUIDString()]
    finally:
        created.set()
        applied.set()  # the scan goes on, failed or not
    assert scanned.wait(10)
    done = threading.Event()
    agent.bus.after_pending(done.set)
    assert done.wait(10)
    (record,) = [r for r in agent.journal.records() if r.uuid == dom.UUIDString()]
    assert record == stopped
    assert record.last_event == (f'LIFECYCLE {libvirt.VIR_DOMAIN_EVENT_STOPPED}/'
                                 f'{libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED}')
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'an empty outbox')
    assert recovery_api.payloads() == [
        (dom.UUIDString(), 'LIFECYCLE', 'STOPPED_DESTROYED')]


def test_the_request_goes_while_the_commit_syncs_and_its_removal_after(
        start_agent, new_domain, recovery_api, monkeypatch):
    agent = start_agent(events={'forward': 'all', 'reboot_window': 0})
    dom = new_domain()
    syncs, removals = [], []
    real = os.fdatasync

    def slow_sync(fd):
        # The dispatcher's sync of the failure's transaction: committed, so
        # a crash of the agent would keep it; on disk only once this returns.
        if threading.current_thread().name == 'event-dispatch':
            began = time.monotonic()
            time.sleep(0.3)
            real(fd)
            syncs.append((began, time.monotonic()))
            return
        real(fd)
    monkeypatch.setattr(os, 'fdatasync', slow_sync)
    inserts = []

    def trace(sql):
        if sql.startswith('DELETE FROM outbox'):
            removals.append(time.monotonic())
        elif sql.startswith('INSERT INTO outbox'):
            inserts.append(time.monotonic())
    agent.store._db.set_trace_callback(trace)
    dom.destroy()
    (request,) = recovery_api.wait_requests(1)
    wait_for(lambda: removals, 5, "the delivered notification's removal")
    # Its transaction's sync is the dispatcher's first after its row was
    # written: the request did not wait for it, and was settled after it.
    ended = min(e for b, e in syncs if b >= inserts[0])
    assert request.received_at < ended
    assert removals[0] > ended
    assert request.json()['notification']['payload']['vir_domain_event'] == \
        'STOPPED_DESTROYED'


def test_once_a_connection_is_kept_the_dispatcher_writes_the_request_itself(
        start_agent, new_domain, recovery_api, monkeypatch):
    agent = start_agent(events={'forward': 'all', 'reboot_window': 0})
    writers = []
    send = httpclient._HTTPConnection.send

    def recording(connection, data):
        writers.append(threading.current_thread().name)
        send(connection, data)
    monkeypatch.setattr(httpclient._HTTPConnection, 'send', recording)
    first, second = new_domain(), new_domain()
    first.destroy()
    recovery_api.wait_stored(1)
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'an empty outbox')
    second.destroy()
    requests = recovery_api.wait_stored(2)
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'an empty outbox')
    # The first needed a connection: opened ahead while it was stored, it is
    # written by the committing thread too, unless a sender got to it first
    # (tests/unit/test_notifier.py shows the connection opened ahead). The
    # second went out on the kept one from the thread that committed it,
    # and a sender read the answer.
    assert writers[0] == 'event-dispatch' or writers[0].startswith('sender-')
    assert writers[1:] == ['event-dispatch']
    assert [n['payload']['instance_uuid'] for n in requests] == [
        first.UUIDString(), second.UUIDString()]
    assert len(recovery_api.requests) == 2 and agent.outbox.dead_letters() == []
