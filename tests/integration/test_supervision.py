"""No silent thread death: each of the agent's long-lived threads made to
fail in the real daemon process; the agent must say which, with the
traceback, and exit non-zero so that systemd restarts it."""

import pytest

from tests.integration.test_daemon import config

FAULTY = 'tests.integration.faulty_agent'
THREAD_DIED = 70  # EX_SOFTWARE

# (thread, what fails in it)
FAULTS = [
    ('libvirt-event-loop', 'instancemonitor.virt.eventloop:_run'),
    ('libvirt-connection', 'instancemonitor.virt.connection:LibvirtConnection._wait_closed'),
    ('event-dispatch', 'instancemonitor.bus:EventBus.run'),
    ('reconcile', 'instancemonitor.sources.reconcile:Reconciler._sleep'),
    ('heartbeat', 'instancemonitor.sources.heartbeat:Heartbeat.round'),
    ('sender-masakari-0', 'instancemonitor.sender:Sender._mark'),
    ('sender-webhook:audit-0', 'instancemonitor.sender:Sender._mark'),
]
WEBHOOK = """
[webhooks]
enabled = audit

[webhook:audit]
url = http://127.0.0.1:9/hooks
"""


@pytest.mark.parametrize('thread, target', FAULTS, ids=[t for t, _ in FAULTS])
def test_an_exception_in_a_thread_stops_the_agent_with_the_traceback(
        test_libvirtd, recovery_api, agent_process, tmp_path, thread, target):
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
               tmp_path / 'state') + WEBHOOK,
        module=FAULTY, env={'INSTANCEMONITOR_FAULT': f'{target}:raise'})
    assert agent.process.wait(30) == THREAD_DIED
    log = agent.output()
    assert (f'Thread {thread} died of an unexpected KeyError; the agent stops '
            'so that it is restarted') in log
    assert "KeyError: 'injected by the test'" in log and 'Traceback' in log
    assert 'stopping with exit status 70, so that systemd restarts the agent' in log


def test_a_thread_that_just_ends_stops_the_agent(test_libvirtd, recovery_api,
                                                 agent_process, tmp_path):
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}',
               tmp_path / 'state') + WEBHOOK,
        module=FAULTY,
        env={'INSTANCEMONITOR_FAULT': 'instancemonitor.sender:Sender._run:return'})
    assert agent.process.wait(30) == THREAD_DIED
    (line,) = [x for x in agent.output().splitlines() if 'is not running any more' in x]
    for name in ('sender-masakari-0', 'sender-webhook:audit-0'):
        assert name in line
