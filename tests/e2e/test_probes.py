"""Application probes on the tiny qemu-ga guest, through the real guest agent."""

import json
import subprocess
import time

import libvirt_qemu

from tests.e2e.test_agent_guest import guest_exec
from tests.e2e.test_masakari import stored_for
from tests.processes import wait_for

QUIET = 3.0


def probe_config(name: str = 'app', args: tuple[str, ...] = ('-f', '/run/app-ok'),
                 command: str = '/bin/test', extra: str = '') -> str:
    lines = [f'[probes]\nenabled = {name}\n[probe:{name}]', f'command = {command}',
             *(f'args = {arg}' for arg in args),
             'period = 1\ntimeout = 1\ninitial_delay = 0\nfailure_threshold = 3',
             'match_name = e2e-probe*', extra]
    return '\n'.join(lines) + '\n'


def in_guest(dom, script: str, timeout: float = 10) -> None:
    """Run ``script`` in the guest and wait for it to end."""
    pid = guest_exec(dom, script)

    def exited():
        answer = json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps({
            'execute': 'guest-exec-status', 'arguments': {'pid': pid}}), 5, 0))
        return answer['return']['exited']
    wait_for(exited, timeout, f'{script!r} in the guest', interval=0.1)


def test_an_application_that_dies_is_one_recovery_in_masakari(
        start_agent_guest, start_agent, masakari):
    dom = start_agent_guest('e2e-probe-app')
    uuid = dom.UUIDString()
    in_guest(dom, 'touch /run/app-ok')
    agent = start_agent(masakari.url, extra=probe_config())
    agent.wait_log('probe app healthy')
    time.sleep(QUIET)
    assert stored_for(masakari, uuid) == []
    in_guest(dom, 'rm /run/app-ok')  # the application dies; the guest runs on
    (stored,) = wait_for(lambda: stored_for(masakari, uuid), 20,
                         'Masakari to store the recovery')
    assert stored['payload'] == {'event': 'QEMU_GUEST_AGENT_ERROR',
                                 'instance_uuid': uuid,
                                 'vir_domain_event': 'STOPPED_FAILED'}
    log = agent.wait_log('probe app reported(3)')
    assert "failed 3 times in a row: 'exit status 1'" in log
    in_guest(dom, 'touch /run/app-ok')
    agent.wait_log('probe app succeeds again; the episode of '
                   'QEMU_GUEST_AGENT_ERROR/STOPPED_FAILED is over')
    time.sleep(QUIET)
    assert len(stored_for(masakari, uuid)) == 1


def test_a_probe_that_never_exits_fails_after_its_timeout(
        start_agent_guest, start_agent, recovery_api):
    dom = start_agent_guest('e2e-probe-hang')
    agent = start_agent(recovery_api.url, extra=probe_config(
        command='/bin/sh', args=('-c', 'test ! -f /run/hang || sleep 600')))
    agent.wait_log('probe app healthy')
    in_guest(dom, 'touch /run/hang')
    (stored,) = recovery_api.wait_stored(1, timeout=30)
    assert stored['payload']['instance_uuid'] == dom.UUIDString()
    # Logged once the notification is on its way, so maybe after the POST.
    agent.wait_log("failed 3 times in a row: 'no exit within 1 s'")
    time.sleep(QUIET)  # it hangs on: still reported, never sent again
    assert len(recovery_api.requests) == 1


def test_guest_exec_blocked_makes_the_probe_unavailable_and_nothing_is_sent(
        start_agent_guest, start_agent, recovery_api):
    dom = start_agent_guest('e2e-probe-blocked')
    # qemu-ga started again, with guest-exec blocked (its --block-rpcs).
    guest_exec(dom, 'setsid sh -c "sleep 1; kill $(pidof qemu-ga); sleep 1; '
                    'exec qemu-ga -m virtio-serial -p $(ls /dev/vport*p1) -t /run '
                    '-b guest-exec,guest-exec-status" >/dev/null 2>&1 &')
    time.sleep(4)
    agent = start_agent(recovery_api.url, extra=probe_config(args=('-e', '/')))
    log = agent.wait_log('probe app cannot run')
    assert 'guest-exec' in log.split('probe app cannot run')[1].splitlines()[0]
    agent.wait_log('probe app unavailable')
    time.sleep(QUIET)
    assert recovery_api.requests == []
    assert agent.output().count('probe app cannot run') == 1  # logged once


def test_a_probe_set_in_the_domains_metadata_is_picked_up_without_a_restart(
        hypervisor, start_agent_guest, start_agent, recovery_api):
    dom = start_agent_guest('e2e-meta')  # matched by no rule
    agent = start_agent(recovery_api.url, extra=probe_config())
    agent.wait_log('Domain e2e-meta: probes none')
    probes = ('<probes><probe name="web" command="/bin/test" period="1" '
              'timeout="1" initial_delay="0"><arg>-f</arg><arg>/run/web-ok</arg>'
              '</probe></probes>')
    in_guest(dom, 'touch /run/web-ok')
    subprocess.run(['virsh', '-c', hypervisor.uri, 'metadata', 'e2e-meta',
                    '--uri', 'urn:instancemonitor:probes:1', '--key',
                    'instancemonitor', '--set', probes, '--live'],
                   check=True, capture_output=True)
    agent.wait_log('Domain e2e-meta: probes web')
    agent.wait_log('probe web healthy')
    in_guest(dom, 'rm /run/web-ok')
    (stored,) = recovery_api.wait_stored(1, timeout=20)
    assert stored['payload']['instance_uuid'] == dom.UUIDString()
    time.sleep(QUIET)
    assert len(recovery_api.requests) == 1


def test_action_notify_is_events_for_a_webhook_and_nothing_for_masakari(
        start_agent_guest, start_agent, masakari):
    from tests.fakes.webhook import WebhookReceiver

    receiver = WebhookReceiver()
    try:
        dom = start_agent_guest('e2e-probe-notify')
        uuid = dom.UUIDString()
        in_guest(dom, 'touch /run/app-ok')
        agent = start_agent(masakari.url, extra=probe_config(extra='action = notify') +
                            f'[webhooks]\nenabled = ops\n[webhook:ops]\n'
                            f'url = {receiver.url}\nevents = PROBE/*\n')
        agent.wait_log('probe app healthy')
        in_guest(dom, 'rm /run/app-ok')
        agent.wait_log('probe app reported(3)')
        in_guest(dom, 'touch /run/app-ok')
        events = receiver.wait_unique(5)
        assert [(e['event'], e['detail'], e['probe']) for e in events] == [
            ('PROBE', 'HEALTHY', 'app'), ('PROBE', 'FAILING', 'app'),
            ('PROBE', 'FAILING', 'app'), ('PROBE', 'REPORTED', 'app'),
            ('PROBE', 'HEALTHY', 'app')]
        assert events[3]['reason'] == 'exit status 1'
        assert {e['instance']['uuid'] for e in events} == {uuid}
        time.sleep(QUIET)
        assert len(receiver.unique()) == 5
        assert stored_for(masakari, uuid) == []
    finally:
        receiver.stop()


def test_a_guest_without_an_agent_makes_the_probe_unavailable(
        start_guest, start_agent, recovery_api):
    start_guest('e2e-probe-no-agent')  # no guest agent channel at all
    agent = start_agent(recovery_api.url, extra=probe_config())
    log = agent.wait_log('probe app unavailable')
    assert 'probe app cannot run' in log
    time.sleep(QUIET)
    assert recovery_api.requests == []
