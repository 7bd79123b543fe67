"""Real failures of real QEMU guests, seen by the real agent process."""

import os
import signal
import time

import libvirt

from tests.e2e.conftest import BOTH_DAEMONS
from tests.processes import wait_for

QUIET = 2.0  # seconds in which anything extra would have arrived


def kill_qemu(hypervisor, name: str) -> None:
    os.kill(hypervisor.qemu_pid(name), signal.SIGKILL)


@BOTH_DAEMONS
def test_sigkilled_qemu_is_one_stopped_failed(hypervisor, start_guest, start_agent,
                                               recovery_api):
    agent = start_agent(recovery_api.url)
    dom = start_guest('e2e-kill')
    kill_qemu(hypervisor, 'e2e-kill')
    (stored,) = recovery_api.wait_stored(1, timeout=10)  # within a few seconds
    assert stored['payload'] == {'event': 'LIFECYCLE',
                                 'instance_uuid': dom.UUIDString(),
                                 'vir_domain_event': 'STOPPED_FAILED'}
    time.sleep(QUIET)
    assert len(recovery_api.requests) == 1
    assert agent.process.poll() is None


def test_twenty_guests_killed_at_once_are_twenty_notifications(
        hypervisor, start_guest, start_agent, recovery_api):
    start_agent(recovery_api.url)
    names = [f'e2e-many-{i:02d}' for i in range(20)]
    uuids = {start_guest(name).UUIDString() for name in names}
    pids = [hypervisor.qemu_pid(name) for name in names]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    recovery_api.wait_stored(20, timeout=30)
    time.sleep(QUIET)
    payloads = recovery_api.payloads()
    assert len(recovery_api.requests) == 20
    assert sorted(p[0] for p in payloads) == sorted(uuids)
    assert {p[1:] for p in payloads} == {('LIFECYCLE', 'STOPPED_FAILED')}


def test_reset_is_no_failure(hypervisor, start_guest, start_agent, recovery_api):
    agent = start_agent(recovery_api.url, forward='all')
    dom = start_guest('e2e-reset')
    dom.reset()
    stored = recovery_api.wait_stored(1)
    assert stored[0]['payload']['event'] == 'REBOOT'
    time.sleep(QUIET)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert all(p[2] != 'STOPPED_FAILED' for p in recovery_api.payloads())
    assert agent.process.poll() is None


@BOTH_DAEMONS
def test_agent_rides_out_a_libvirtd_restart(hypervisor, start_guest, start_agent,
                                            recovery_api):
    agent = start_agent(recovery_api.url)
    before = start_guest('e2e-before')
    after = start_guest('e2e-after')
    hypervisor.kill()
    agent.wait_log('Lost the libvirt connection')
    time.sleep(1.5)
    hypervisor.start()
    agent.wait_log('Reconnected to libvirt')
    # The guests ran on through the restart; a failure after it is reported.
    conn = libvirt.open(hypervisor.uri)
    try:
        assert conn.lookupByName('e2e-after').state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()
    kill_qemu(hypervisor, 'e2e-after')
    (stored,) = recovery_api.wait_stored(1, timeout=10)
    assert stored['payload']['instance_uuid'] == after.UUIDString()
    assert agent.process.poll() is None
    assert before.UUIDString() not in [p[0] for p in recovery_api.payloads()]
    wait_for(lambda: 'delivered' in agent.output(), 5, 'delivery')


@BOTH_DAEMONS
def test_a_failure_while_libvirtd_is_down_is_reported_after_it_returns(
        hypervisor, start_guest, start_agent, recovery_api):
    agent = start_agent(recovery_api.url)
    # Persistent, as Nova's are: a transient guest whose QEMU dies while
    # libvirtd is down is gone without a trace when libvirtd returns.
    lost = start_guest('e2e-gap-lost', persistent=True)
    kept = start_guest('e2e-gap-kept', persistent=True)
    pid = hypervisor.qemu_pid('e2e-gap-lost')
    hypervisor.kill()
    agent.wait_log('Lost the libvirt connection')
    os.kill(pid, signal.SIGKILL)  # no libvirtd to see it: no event, ever
    time.sleep(1)
    hypervisor.start()
    agent.wait_log('Reconnected to libvirt')
    (stored,) = recovery_api.wait_stored(1, timeout=10)
    assert stored['payload'] == {'event': 'LIFECYCLE',
                                 'instance_uuid': lost.UUIDString(),
                                 'vir_domain_event': 'STOPPED_FAILED'}
    time.sleep(QUIET)
    assert kept.UUIDString() not in [p[0] for p in recovery_api.payloads()]
