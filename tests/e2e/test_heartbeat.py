"""The in-guest heartbeat against the real tiny guest and its qemu-ga."""

import time

from tests.e2e.conftest import AGENT_CHANNEL
from tests.e2e.conftest import BOTH_DAEMONS
from tests.e2e.test_agent_guest import guest_exec

HEARTBEAT = """
[introspectiveinstancemonitor]
guest_monitoring_interval = 1
guest_monitoring_timeout = 1
guest_monitoring_failure_threshold = 3
startup_grace = {grace}
report_never_answered = {report}
"""


def heartbeat_config(grace: float = 120, report: bool = False) -> str:
    return HEARTBEAT.format(grace=grace, report=str(report).lower())


@BOTH_DAEMONS
def test_a_hung_guest_agent_is_one_notification_and_healthy_again_after(
        start_agent_guest, start_agent, recovery_api):
    dom = start_agent_guest('e2e-beat')
    agent = start_agent(recovery_api.url, extra=heartbeat_config())
    agent.wait_log('heartbeat healthy')
    time.sleep(3)  # healthy rounds: nothing to send
    assert recovery_api.requests == []
    # The agent inside the guest stops answering for 25 s, then resumes (after
    # the first miss, libvirt makes each ping wait its own 5 s).
    guest_exec(dom, 'kill -STOP $(pidof qemu-ga); sleep 25; kill -CONT $(pidof qemu-ga)')
    (stored,) = recovery_api.wait_stored(1, timeout=30)
    assert stored['payload'] == {'event': 'QEMU_GUEST_AGENT_ERROR',
                                 'instance_uuid': dom.UUIDString(),
                                 'vir_domain_event': 'STOPPED_FAILED'}
    agent.wait_log('missed 3 pings in a row')
    agent.wait_log('the guest agent answers again; the episode of '
                   'QEMU_GUEST_AGENT_ERROR/STOPPED_FAILED is over', timeout=40)
    time.sleep(3)
    assert len(recovery_api.requests) == 1


def test_an_agent_that_never_answers_is_reported_when_so_configured(
        start_guest, start_agent, recovery_api):
    # The channel is there, but no guest OS runs an agent behind it.
    dom = start_guest('e2e-no-agent', AGENT_CHANNEL)
    start_agent(recovery_api.url, extra=heartbeat_config(grace=2, report=True))
    (stored,) = recovery_api.wait_stored(1, timeout=20)
    assert stored['payload']['instance_uuid'] == dom.UUIDString()
    assert stored['payload']['event'] == 'QEMU_GUEST_AGENT_ERROR'


def test_an_agent_that_never_answers_is_only_logged_by_default(
        start_guest, start_agent, recovery_api):
    dom = start_guest('e2e-no-agent-quiet', AGENT_CHANNEL)
    agent = start_agent(recovery_api.url, extra=heartbeat_config(grace=2))
    log = agent.wait_log('has not answered in this run within the startup grace',
                         timeout=20)
    assert 'not reported (report_never_answered is off)' in log
    time.sleep(2)
    assert recovery_api.requests == []
    assert dom.UUIDString() in log
    assert agent.process.poll() is None
