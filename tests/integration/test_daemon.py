"""The real daemon process (``instancemonitor --config-file``) against a
private libvirtd serving the test driver, a Keystone stand-in and the
recovery API stand-in, all on this machine."""

import signal
import time

import libvirt
import pytest

from tests.fakes import keystone as fake_keystone
from tests.fakes.recovery_api import RecoveryAPI
from tests.processes import free_port
from tests.processes import wait_for


@pytest.fixture
def keystone_and_api():
    holder = {}
    api = RecoveryAPI(token_check=lambda t: holder['ks'].is_valid(t)).start()
    ks = fake_keystone.Keystone(
        {'instance-ha': {'public': api.url, 'internal': api.url}}).start()
    holder['ks'] = ks
    yield ks, api
    ks.stop()
    api.stop()


def config(uri: str, api_section: str, state_path, forward: str = 'all') -> str:
    return f"""
[DEFAULT]
hostname = compute-1
debug = true
state_path = {state_path}

[libvirt]
connection_uri = {uri}
keepalive_interval = 1
keepalive_count = 2
reconnect_interval = 0.1
reconnect_interval_max = 0.5

[events]
forward = {forward}
reboot_window = 0

[callback]
retry_interval = 0.2

[metrics]
port = 0

[api]
{api_section}
"""


def destroy_test_domain(uri: str) -> str:
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName('test')
        dom.destroy()
        return dom.UUIDString()
    finally:
        conn.close()


def test_daemon_notifies_through_keystone_and_never_logs_secrets(
        test_libvirtd, keystone_and_api, agent_process, tmp_path):
    ks, api = keystone_and_api
    agent = agent_process(config(
        test_libvirtd.uri, ks.password_options() + 'api_interface = internal\n',
        tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    (stored,) = api.wait_stored(1)
    assert stored['payload'] == {'event': 'LIFECYCLE', 'instance_uuid': domain_uuid,
                                 'vir_domain_event': 'STOPPED_DESTROYED'}
    assert ks.logins == 1
    agent.wait_log('delivered to masakari')
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 5
    log = agent.output()
    assert 'password' in log  # the option is logged (debug), its value is not
    assert fake_keystone.PASSWORD not in log


def test_daemon_survives_libvirtd_restart_and_reports_failures_after_it(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    agent = agent_process(config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                                 tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    test_libvirtd.kill()
    agent.wait_log('Lost the libvirt connection')
    agent.wait_log('Cannot connect to libvirt')
    time.sleep(2)  # down long enough for many reconnection attempts
    test_libvirtd.start()
    log = agent.wait_log('Reconnected to libvirt')
    # Each transition is logged once, not every retry.
    assert log.count('Lost the libvirt connection') == 1
    assert log.count('Cannot connect to libvirt') == 1
    assert log.count('Reconnected to libvirt') == 1
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    (stored,) = recovery_api.wait_stored(1)
    assert stored['payload']['instance_uuid'] == domain_uuid
    assert agent.process.poll() is None


def test_daemon_detects_a_hung_libvirtd_by_keepalive(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    agent = agent_process(config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                                 tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    test_libvirtd.signal(signal.SIGSTOP)
    try:
        # keepalive_interval 1 s x keepalive_count 2.
        agent.wait_log('does not answer (keepalive timed out)', timeout=15)
    finally:
        test_libvirtd.signal(signal.SIGCONT)
    agent.wait_log('answers again after', timeout=15)
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    (stored,) = recovery_api.wait_stored(1)
    assert stored['payload']['instance_uuid'] == domain_uuid
    # The same connection all along: the calls and events on it went on.
    log = agent.output()
    assert 'Lost the libvirt connection' not in log
    assert 'Reconnected to libvirt' not in log


def test_daemon_starts_while_libvirtd_is_down(test_libvirtd, recovery_api,
                                              agent_process, tmp_path):
    test_libvirtd.kill()
    agent = agent_process(config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                                 tmp_path / 'state'))
    agent.wait_log('Cannot connect to libvirt')
    time.sleep(1)
    assert agent.process.poll() is None
    test_libvirtd.start()
    agent.wait_log('Connected to libvirt')
    destroy_test_domain(test_libvirtd.uri)
    recovery_api.wait_stored(1)


def test_daemon_keeps_notifications_while_the_api_is_down(
        test_libvirtd, agent_process, tmp_path):
    port = free_port()  # nothing listens: connections are refused
    agent = agent_process(config(
        test_libvirtd.uri, f'endpoint = http://127.0.0.1:{port}/v1',
        tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    agent.wait_log('not delivered', count=3)
    api = RecoveryAPI(port=port).start()
    try:
        (stored,) = api.wait_stored(1)
        assert stored['payload']['instance_uuid'] == domain_uuid
    finally:
        api.stop()
    wait_for(lambda: 'delivered to masakari' in agent.output(), 10, 'delivery logged')


def test_sighup_reloads_log_level_and_intervals(test_libvirtd, recovery_api,
                                                agent_process, tmp_path):
    quiet = config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                   tmp_path / 'state').replace('debug = true', 'debug = false')
    agent = agent_process(quiet)
    agent.wait_log('Connected to libvirt')
    time.sleep(1)
    assert 'Domain state scan' not in agent.output()  # DEBUG, and every 60 s
    agent.config_path.write_text(quiet.replace('debug = false', 'debug = true')
                                 .replace('[libvirt]', '[libvirt]\nreconcile_interval = 0.3'))
    agent.process.send_signal(signal.SIGHUP)
    agent.wait_log('reloading the configuration')
    agent.wait_log('Domain state scan', count=3, timeout=10)
    assert agent.process.poll() is None
    assert agent.stop() == 0


def test_a_second_agent_on_the_same_state_exits_at_once_naming_the_lock(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    import json
    import subprocess
    import sys

    from tests.processes import AgentProcess

    state = tmp_path / 'state'
    first = agent_process(config(test_libvirtd.uri,
                                 f'endpoint = {recovery_api.url}', state))
    first.wait_log('Connected to libvirt')
    other = tmp_path / 'second'
    other.mkdir()
    second = AgentProcess(config(test_libvirtd.uri,
                                 f'endpoint = {recovery_api.url}', state), other)
    try:
        second.start()
        assert second.process.wait(10) == 75  # EX_TEMPFAIL: systemd tries later
    finally:
        second.stop()
    assert (f'another instancemonitor (pid {first.process.pid}) holds '
            f'{state}/instancemonitor.lock') in second.output()
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    recovery_api.wait_stored(1)
    time.sleep(1)
    assert [r.json()['notification']['payload']['instance_uuid']
            for r in recovery_api.requests] == [domain_uuid]  # sent once
    # The status command reads the state without the lock.
    shown = subprocess.run(
        [sys.executable, '-m', 'instancemonitor.cmd.status', '--config-file',
         str(first.config_path), '--json'], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert domain_uuid in {d['uuid'] for d in json.loads(shown.stdout)['domains']}
    # Once the first stops, the lock is free again.
    assert first.stop() == 0
    third = agent_process(config(test_libvirtd.uri,
                                 f'endpoint = {recovery_api.url}', state))
    third.wait_log('Connected to libvirt')
