"""Reconciliation with the durable journal, and a storm of 5,000 stops, on
libvirt's test driver in this process."""

import datetime
import os
import threading
import time
import uuid

import libvirt
import pytest

from tests.processes import wait_for

PERSISTENT_XML = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory>65536</memory><os><type>hvm</type></os></domain>"""


@pytest.fixture
def crashed_domain(client, tmp_path):
    """A persistent domain of test:///default, crashed before any agent ran."""
    conn = client('test:///default')
    dom = conn.defineXML(PERSISTENT_XML.format(name=f'gone-{uuid.uuid4().hex[:6]}',
                                               uuid=uuid.uuid4()))
    dom.create()
    dom.coreDump(str(tmp_path / 'core'), libvirt.VIR_DUMP_CRASH)
    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
    yield dom
    for action in (dom.destroy, dom.undefine):
        try:
            action()
        except libvirt.libvirtError:
            pass


def test_a_crash_nobody_saw_is_notified_once_across_agent_restarts(
        start_agent, crashed_domain, recovery_api, tmp_path):
    state = {'state_path': str(tmp_path / 'state')}
    agent = start_agent(DEFAULT=state)
    (stored,) = recovery_api.wait_stored(1)
    assert stored['payload'] == {'event': 'LIFECYCLE',
                                 'instance_uuid': crashed_domain.UUIDString(),
                                 'vir_domain_event': 'STOPPED_FAILED'}
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'delivery')
    agent.stop()
    # A new agent on the same state: the journal knows it was notified.
    again = start_agent(DEFAULT=state, libvirt={'reconcile_interval': 0.2})
    time.sleep(1.0)  # several scans
    assert len(recovery_api.requests) == 1
    # Recovered, then crashed again while no agent ran: a new episode,
    # found by the next agent's scan and notified again. (A crash the agent
    # sees happen is the test driver's STOPPED_CRASHED, a guest crash, which
    # the recovery engine does not act on.)
    crashed_domain.create()
    wait_for(lambda: any(r.uuid == crashed_domain.UUIDString() and r.phase == 'running'
                         for r in again.journal.records()), 5, 'running again')
    again.stop()
    crashed_domain.destroy()
    crashed_domain.create()
    crashed_domain.coreDump(str(tmp_path / 'core2'), libvirt.VIR_DUMP_CRASH)
    third = start_agent(DEFAULT=state, libvirt={'reconcile_interval': 0.2})
    # A new episode: notified again, but with the same payload within
    # Masakari's 180 s duplicate window of the first, so held until it passed.
    wait_for(lambda: third.outbox.pending() == 1, 5, 'the second crash queued')
    ((held, due_at),) = third.store.pending('masakari')
    first = recovery_api.requests[0].json()['notification']
    assert (held.instance_uuid, held.event, held.vir_domain_event) == (
        crashed_domain.UUIDString(), 'LIFECYCLE', 'STOPPED_FAILED')
    assert held.generated_time - datetime.datetime.fromisoformat(
        first['generated_time']) == datetime.timedelta(seconds=181)
    assert abs(due_at - held.generated_time.timestamp()) < 1
    assert len(recovery_api.requests) == 1


AGENT_THREADS = ('libvirt-', 'event-dispatch', 'sender-', 'reconcile', 'heartbeat')


def agent_threads() -> int:
    return sum(t.name.startswith(AGENT_THREADS) for t in threading.enumerate())


def _rss_kib() -> int:
    with open(f'/proc/{os.getpid()}/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith('VmRSS'))


def test_a_storm_of_5000_stops_is_5000_notifications_each_once(
        start_agent, recovery_api, tmp_path):
    count = 5000
    domains = ''.join(PERSISTENT_XML.format(name=f'storm-{i:05d}', uuid=uuid.uuid4())
                      for i in range(count))
    node = tmp_path / 'node.xml'
    node.write_text(f'<node>{domains}</node>')
    agent = start_agent(f'test://{node}', events={'forward': 'all', 'reboot_window': 0},
                        DEFAULT={'state_path': str(tmp_path / 'state')})
    with agent.connection.borrowed() as conn:
        doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    assert len(doms) == count
    threads_before, rss_before = agent_threads(), _rss_kib()
    peak_threads, peak_queue, done = [threads_before], [0], threading.Event()

    def sample():
        while not done.wait(0.05):
            peak_threads.append(agent_threads())
            peak_queue.append(agent.bus.pending())
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        for dom in doms:
            dom.destroy()
        destroyed = time.monotonic() - started
        recovery_api.wait_stored(count, timeout=240)
        wait_for(lambda: agent.outbox.pending() == 0, 30, 'an empty outbox')
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    uuids = [n['payload']['instance_uuid'] for n in recovery_api.stored]
    assert len(uuids) == count and set(uuids) == {d.UUIDString() for d in doms}
    assert len(recovery_api.requests) == count
    # Bounded: the agent's threads are the same few, whatever the storm, but
    # for the extra senders of the backlog, never more than max_in_flight.
    assert max(peak_threads) <= threads_before + agent.sender.max_in_flight - 1
    assert agent.sender.peak_threads <= agent.sender.max_in_flight
    print(f'\nstorm: {count} stops issued in {destroyed:.2f} s, all delivered after '
          f'{elapsed:.1f} s; peak event queue {max(peak_queue)}; agent threads '
          f'{threads_before}, peak {max(peak_threads)}; process RSS '
          f'{rss_before // 1024} -> {_rss_kib() // 1024} MiB')
