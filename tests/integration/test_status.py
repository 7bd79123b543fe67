"""instancemonitor-status against the state of a running agent."""

import json
import subprocess
import sys

from tests.fakes.webhook import WebhookReceiver
from tests.integration.test_daemon import config
from tests.integration.test_daemon import destroy_test_domain
from tests.processes import wait_for


def status(config_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'instancemonitor.cmd.status',
         '--config-file', str(config_path), *args],
        capture_output=True, text=True, timeout=30)


def test_status_shows_the_journal_and_outbox_and_takes_operator_commands(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    recovery_api.answer((400, 'Invalid input for field/attribute payload.'))
    agent = agent_process(config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                                 tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    agent.wait_log('kept as a dead letter')

    def watching():
        shown = status(agent.config_path)
        assert shown.returncode == 0, shown.stderr
        return shown if 'Agent: watching test+unix' in shown.stdout else None
    # The agent writes its status line every few seconds.
    shown = wait_for(watching, 15, 'the status line')
    assert domain_uuid in shown.stdout and 'Dead letters (1)' in shown.stdout
    assert 'HTTP 400: Invalid input for field/attribute payload.' in shown.stdout

    state = json.loads(status(agent.config_path, '--json').stdout)
    (domain,) = state['domains']
    assert (domain['uuid'], domain['name']) == (domain_uuid, 'test')
    (dead,) = state['dead_letters']
    assert dead['instance_uuid'] == domain_uuid and state['pending'] == []

    # Re-queue: the agent sends it again (the API now accepts it).
    requeued = status(agent.config_path, 'requeue', dead['notification_id'])
    assert requeued.returncode == 0 and 'queued' in requeued.stdout
    (stored,) = recovery_api.wait_stored(1, timeout=15)
    assert stored['payload']['instance_uuid'] == domain_uuid
    wait_for(lambda: json.loads(status(agent.config_path, '--json').stdout)
             ['dead_letters'] == [], 10, 'the dead letter gone')

    assert status(agent.config_path, 'forget', domain_uuid).returncode == 0
    wait_for(lambda: json.loads(status(agent.config_path, '--json').stdout)
             ['domains'] == [], 10, 'the domain forgotten')
    agent.wait_log('forgotten by the operator')  # logged after the store's write

    unknown = status(agent.config_path, 'requeue', 'no-such-id')
    assert unknown.returncode == 1 and 'no dead letter' in unknown.stderr
    assert agent.stop() == 0


def test_a_host_the_api_does_not_know_is_retried_and_shown_until_it_is_registered(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    recovery_api.unknown_hosts.add('compute-1')
    agent = agent_process(config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                                 tmp_path / 'state'))
    agent.wait_log('Connected to libvirt')
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    agent.wait_log('The recovery API does not know host compute-1 ([DEFAULT] hostname)')

    def shown(text: str):
        return lambda: text in status(agent.config_path).stdout
    wait_for(shown('the recovery API does not know host compute-1'), 15,
             'the status line to say so')
    assert json.loads(status(agent.config_path, '--json').stdout)['dead_letters'] == []
    recovery_api.unknown_hosts.clear()  # the operator registers the host
    (stored,) = recovery_api.wait_stored(1, timeout=15)
    assert stored['payload']['instance_uuid'] == domain_uuid
    wait_for(shown('0 notifications pending, 0 dead-lettered ('), 15,
             'the status line to clear')
    assert agent.output().count('does not know host compute-1') == 1  # one ERROR
    assert agent.stop() == 0


def test_status_shows_and_requeues_a_webhooks_dead_letter(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    receiver = WebhookReceiver()
    try:
        receiver.answer(410)  # gone: final
        agent = agent_process(
            config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
                   tmp_path / 'state')
            + f'\n[webhooks]\nenabled = audit\n[webhook:audit]\nurl = {receiver.url}\n'
              'events = LIFECYCLE/STOPPED_DESTROYED\n')
        agent.wait_log('Connected to libvirt')
        domain_uuid = destroy_test_domain(test_libvirtd.uri)
        agent.wait_log('kept as a dead letter')
        state = json.loads(status(agent.config_path, '--json').stdout)
        (dead,) = state['dead_letters']
        assert (dead['sink'], dead['instance_uuid']) == ('webhook:audit', domain_uuid)
        assert dead['dead_reason'].startswith('HTTP 410')
        assert 'webhook:audit' in status(agent.config_path).stdout
        assert status(agent.config_path, 'requeue',
                      dead['notification_id']).returncode == 0
        (document,) = receiver.wait_unique(1, timeout=15)
        assert document['id'] == dead['notification_id']
        (stored,) = recovery_api.wait_stored(1)  # the recovery API had its own
        assert stored['payload']['instance_uuid'] == domain_uuid
    finally:
        receiver.stop()


def test_records_of_gone_domains_and_old_dead_letters_are_pruned_and_shown(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    import uuid

    import libvirt

    state = tmp_path / 'state'
    base = config(test_libvirtd.uri, f'endpoint = {recovery_api.url}', state)
    recovery_api.answer(*[(400, 'Invalid input for field/attribute payload.')] * 3)
    first = agent_process(base)
    first.wait_log('Connected to libvirt')
    conn = libvirt.open(test_libvirtd.uri)
    try:
        for index in range(3):  # transient: gone from libvirt once destroyed
            conn.createXML(f"""<domain type='test'><name>gone-{index}</name>
                <uuid>{uuid.uuid4()}</uuid><memory>65536</memory>
                <os><type>hvm</type></os></domain>""").destroy()
    finally:
        conn.close()
    first.wait_log('kept as a dead letter', count=3)
    assert first.stop() == 0
    state_now = json.loads(status(first.config_path, '--json').stdout)
    assert len(state_now['dead_letters']) == 3
    assert {d['name'] for d in state_now['domains']} >= {'gone-0', 'gone-1', 'gone-2'}

    again = agent_process(base + """
[libvirt]
reconcile_interval = 0.2
forget_gone_after = 0.5

[callback]
dead_letter_max_count = 1
""")
    again.wait_log('is gone (last seen', count=3)

    def pruned():
        shown = status(again.config_path)
        return shown if ('Pruned since then: 3 journal records of domains gone '
                         'for over 0.5 s, 2 old dead letters') in shown.stdout else None
    wait_for(pruned, 15, 'the status to say what was pruned')
    state_now = json.loads(status(again.config_path, '--json').stdout)
    assert [d['name'] for d in state_now['domains']] == ['test']  # still there
    assert len(state_now['dead_letters']) == 1
    assert again.stop() == 0
