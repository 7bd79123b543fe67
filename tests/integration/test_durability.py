"""Nothing lost: the real agent process killed, stopped, starved of its API
and of disk, against a private libvirtd serving the test driver."""

import collections
import os
import shutil
import time
import uuid

import libvirt
import pytest

from tests.fakes.recovery_api import RecoveryAPI
from tests.processes import free_port

DOMAIN_XML = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory>65536</memory><os><type>hvm</type></os></domain>"""


def config(uri: str, endpoint: str, state_path, **callback) -> str:
    callback = {'retry_max': 2, 'retry_interval': 0.2, 'sender_threads': 1,
                **callback}
    return f"""
[DEFAULT]
hostname = compute-1
state_path = {state_path}

[libvirt]
connection_uri = {uri}
reconnect_interval = 0.1

[events]
forward = all
reboot_window = 0

[callback]
{''.join(f'{k} = {v}{chr(10)}' for k, v in callback.items())}
[metrics]
port = 0

[api]
endpoint = {endpoint}
timeout = 2
"""


@pytest.fixture
def domains(test_libvirtd):
    """Start N transient domains on the private libvirtd; destroy them all."""
    conn = libvirt.open(test_libvirtd.uri)

    def start(count: int) -> list[libvirt.virDomain]:
        return [conn.createXML(DOMAIN_XML.format(name=f'd-{i:04d}', uuid=uuid.uuid4()))
                for i in range(count)]

    def destroy(doms: list[libvirt.virDomain]) -> list[str]:
        uuids = []
        for dom in doms:
            uuids.append(dom.UUIDString())
            dom.destroy()
        return uuids
    yield start, destroy
    conn.close()


def requests_by_instance(api: RecoveryAPI) -> dict[str, list[dict]]:
    sent = collections.defaultdict(list)
    for request in api.requests:
        body = request.json()['notification']
        sent[body['payload']['instance_uuid']].append(body)
    return sent


def test_agent_killed_mid_burst_delivers_everything_after_restart(
        test_libvirtd, domains, agent_process, tmp_path):
    start, destroy = domains
    api = RecoveryAPI().start()
    api.delay = 0.02  # a slow API, so that a backlog builds up
    try:
        agent_config = config(test_libvirtd.uri, api.url, tmp_path / 'state')
        agent = agent_process(agent_config)
        agent.wait_log('Connected to libvirt')
        uuids = destroy(start(200))
        api.wait_stored(30, timeout=30)
        agent.kill()  # SIGKILL with ~170 detected and not yet delivered
        killed_with = len(api.stored)
        assert killed_with < 200
        agent_process(agent_config)
        api.wait_stored(200, timeout=60)
        sent = requests_by_instance(api)
        assert set(sent) == set(uuids)
        # Every resend kept its original generated_time: at most one was in
        # flight at the kill, and Masakari's rule made its resend a 409.
        assert all(len({b['generated_time'] for b in bodies}) == 1
                   for bodies in sent.values())
        assert len(api.requests) - len(api.stored) <= 1
        print(f'killed after {killed_with} of 200 delivered')
    finally:
        api.stop()


def test_api_down_far_longer_than_retries_loses_nothing(test_libvirtd, domains,
                                                        agent_process, tmp_path):
    start, destroy = domains
    port = free_port()  # refused: nothing listens yet
    agent = agent_process(config(test_libvirtd.uri, f'http://127.0.0.1:{port}/v1',
                                 tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    uuids = destroy(start(10))
    # retry_max 2 x retry_interval 0.2 s: a round is 0.4 s; stay down for ten.
    agent.wait_log('still not delivered', count=10, timeout=30)
    api = RecoveryAPI(port=port).start()
    try:
        returned = time.monotonic()
        api.wait_stored(10, timeout=20)
        assert time.monotonic() - returned < 10
        order = [n['payload']['instance_uuid'] for n in api.stored]
        assert sorted(order) == sorted(uuids)
        # In order of detection, but for those in flight when it returned:
        # one per sender thread (4 by default).
        assert [u for u in uuids if u in order[4:]] == order[4:]
    finally:
        api.stop()
    assert agent.process.poll() is None


def test_sigterm_is_prompt_and_keeps_what_is_pending(test_libvirtd, domains,
                                                     agent_process, tmp_path):
    start, destroy = domains
    port = free_port()
    agent_config = config(test_libvirtd.uri, f'http://127.0.0.1:{port}/v1',
                          tmp_path / 'state', retry_interval=30)
    agent = agent_process(agent_config)
    agent.wait_log('Connected to libvirt')
    uuids = destroy(start(5))
    agent.wait_log('not delivered')
    stopping = time.monotonic()
    assert agent.stop(timeout=20) == 0
    assert time.monotonic() - stopping < 5
    assert '5 notifications pending' in agent.output()
    api = RecoveryAPI(port=port).start()
    try:
        agent_process(agent_config)
        api.wait_stored(5, timeout=20)
        assert sorted(p[0] for p in api.payloads()) == sorted(uuids)
    finally:
        api.stop()


def test_a_full_disk_degrades_to_memory_and_loses_nothing(test_libvirtd, domains,
                                                          recovery_api, agent_process,
                                                          tmp_path):
    start, destroy = domains
    if os.geteuid() != 0 or not shutil.which('unshare'):
        pytest.skip('mounting a small filesystem needs root and unshare')
    state = tmp_path / 'state'
    state.mkdir()
    agent_config = config(test_libvirtd.uri, recovery_api.url, state)
    # A 256 KiB filesystem of the agent's own, in its own mount namespace: the
    # database opens, and its write-ahead log fills it within a few dozen
    # notifications.
    agent = agent_process(agent_config, prefix=('unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                        'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"',
                        str(state)))
    agent.wait_log('Connected to libvirt')
    uuids = destroy(start(300))
    recovery_api.wait_stored(300, timeout=60)
    log = agent.wait_log('Cannot write the state database')
    assert log.count('Cannot write the state database') == 1
    assert 'Cannot keep state in' not in log  # it opened; the disk filled later
    assert sorted(p[0] for p in recovery_api.payloads()) == sorted(uuids)
    assert agent.process.poll() is None


def test_a_disk_that_fills_and_is_freed_again_gets_everything_written_back(
        test_libvirtd, domains, recovery_api, agent_process, tmp_path):
    import subprocess

    start, destroy = domains
    if os.geteuid() != 0:
        pytest.skip('mounting a small filesystem needs root')
    state = tmp_path / 'state'
    state.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(state)],
                   check=True)
    try:
        agent_config = config(test_libvirtd.uri, recovery_api.url, state)
        agent = agent_process(agent_config)
        agent.wait_log('Connected to libvirt')
        delivered_before = destroy(start(10))
        recovery_api.wait_stored(10, timeout=30)
        # Fill what is left of the filesystem.
        filler = state / 'filler'
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b'\0' * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        delivered_while_full = destroy(start(10))
        recovery_api.wait_stored(20, timeout=30)
        agent.wait_log('Cannot write the state database')
        # The API refuses: these wait in the outbox, which is in memory only.
        recovery_api.answer(*[(503, 'busy')] * 10_000)
        pending_while_full = destroy(start(10))
        agent.wait_log('not delivered', count=10)
        filler.unlink()
        log = agent.wait_log('takes writes again', timeout=20)
        assert log.count('Cannot write the state database') == 1
        agent.kill()  # whatever was only in memory is lost now, if anything
        recovery_api.script.clear()
        again = agent_process(agent_config)
        recovery_api.wait_stored(30, timeout=30)
        time.sleep(1.0)
        sent = requests_by_instance(recovery_api)
        stored = sorted(p[0] for p in recovery_api.payloads())
        assert stored == sorted(delivered_before + delivered_while_full +
                                pending_while_full)  # each once: nothing lost
        # Deliveries made while the disk was full were written back: the
        # restarted agent sends none of them again.
        assert all(len(sent[u]) == 1 for u in delivered_before + delivered_while_full)
        again.wait_log('notifications for masakari recovered from the outbox')
    finally:
        subprocess.run(['umount', '-l', str(state)], check=False)
