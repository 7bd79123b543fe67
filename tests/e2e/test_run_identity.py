"""A domain id used again: libvirtd restarted with nothing running, and the
host restarted. libvirtd then numbers domains from 1 again, so a guest
started before the agent could see it may have the id of its run before;
it is a new run all the same (a crash is news, a guest agent is given its
startup grace)."""

import contextlib
import os
import pathlib
import re
import signal
import time

import libvirt
import pytest

from tests.e2e.conftest import AGENT_CHANNEL
from tests.e2e.conftest import BOTH_DAEMONS
from tests.e2e.conftest import guest_xml
from tests.e2e.test_failures import kill_qemu
from tests.e2e.test_heartbeat import heartbeat_config
from tests.processes import wait_for

QUIET = 3.0


def restart_libvirtd(hypervisor) -> libvirt.virConnect:
    """SIGKILL and start again (no guest left running): ids count from 1."""
    hypervisor.kill()
    hypervisor.start()
    return libvirt.open(hypervisor.uri)


@pytest.fixture
def ids_from_one(hypervisor):
    """The session's libvirtd started again before the test's connection is
    opened: its guests' ids count from 1."""
    restart_libvirtd(hypervisor).close()
    return hypervisor


@BOTH_DAEMONS
def test_a_guest_started_with_its_old_id_after_a_libvirtd_restart_is_a_new_run(
        ids_from_one, start_guest, start_agent, recovery_api, failing_disk):
    hypervisor = ids_from_one
    disk, flag = failing_disk
    agent = start_agent(recovery_api.url)
    # Its disk fails (report policy): one I/O error, the guest runs on, and
    # its episode stays open while the domain is shut off.
    flag.touch()
    dom = start_guest('e2e-id-again', disk('report'), persistent=True)
    first_run = dom.ID()
    (stored,) = recovery_api.wait_stored(1, timeout=20)
    assert stored['payload']['event'] == 'IO_ERROR'
    flag.unlink()
    dom.destroy()
    agent.wait_log('stop: running => shutoff')
    # The agent away, libvirtd restarted, the guest started again.
    agent.stop()
    conn = restart_libvirtd(hypervisor)
    try:
        dom = conn.lookupByName('e2e-id-again')
        dom.create()
        assert dom.ID() == first_run  # the run before's id, given again
    finally:
        conn.close()
    agent = start_agent(recovery_api.url)
    agent.wait_log('Domain state scan:', own=True)
    kill_qemu(hypervisor, 'e2e-id-again')
    with contextlib.suppress(AssertionError):  # the assertion below says what came
        recovery_api.wait_stored(2, timeout=10)
    time.sleep(QUIET)
    assert [(event, detail) for _, event, detail in recovery_api.payloads()] == [
        ('IO_ERROR', 'IO_ERROR_REPORT'), ('LIFECYCLE', 'STOPPED_FAILED')]
    assert 'scan-running-new-run: shutoff => running' in agent.output(own=True)


def _same_uuid(xml: str, uuid: str) -> str:
    return re.sub(r'<uuid>[^<]*</uuid>', f'<uuid>{uuid}</uuid>', xml)


def test_after_a_host_restart_a_guest_autostarted_with_its_old_id_is_given_its_grace(
        ids_from_one, start_agent_guest, start_agent, recovery_api, conn, tmp_path):
    hypervisor = ids_from_one
    config = heartbeat_config(grace=4)
    agent = start_agent(recovery_api.url, extra=config)
    dom = start_agent_guest('e2e-host-restart')
    conn.defineXML(dom.XMLDesc(0))  # persistent, as Nova's guests are
    first_run, uuid = dom.ID(), dom.UUIDString()
    agent.wait_log('heartbeat healthy')
    # The host loses power: the agent, libvirtd and QEMU die unseen, and
    # what /run held is gone (libvirtd finds the domain shut off, reason
    # unknown).
    agent.kill()
    qemu = hypervisor.qemu_pid('e2e-host-restart')
    hypervisor.kill()
    os.kill(qemu, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f'/proc/{qemu}/cmdline') or
             pathlib.Path(f'/proc/{qemu}/cmdline').read_bytes() == b'', 10,
             'the guest QEMU gone')
    for leftover in (hypervisor.dir / 'run' / 'qemu').iterdir():
        if leftover.is_file():
            leftover.unlink()
    hypervisor.start()
    conn = libvirt.open(hypervisor.uri)
    try:
        dom = conn.lookupByUUIDString(uuid)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        # Started again before the agent runs (autostart, libvirt-guests),
        # its guest agent not up yet: a guest whose agent does not answer.
        conn.defineXML(_same_uuid(guest_xml('e2e-host-restart', AGENT_CHANNEL), uuid))
        dom.create()
        assert dom.ID() == first_run
    finally:
        conn.close()
    # The agent of the new boot: the kernel's boot id is another.
    boot_id = tmp_path / 'boot_id'
    boot_id.write_text('5b0d3c1e-7f2a-4c9b-8e6d-1a2b3c4d5e6f\n')
    agent = start_agent(recovery_api.url, extra=config, prefix=(
        'unshare', '--mount', '--propagation', 'private', 'sh', '-c',
        f'mount --bind {boot_id} /proc/sys/kernel/random/boot_id && exec "$@"',
        'sh'))
    agent.wait_log('Domain state scan:', own=True)
    with contextlib.suppress(AssertionError):  # the assertions below say why
        agent.wait_log('has not answered in this run within the startup grace',
                       own=True, timeout=30)
    time.sleep(QUIET)
    assert recovery_api.payloads() == []
    log = agent.output(own=True)
    assert 'the host restarted since run' in log
    assert 'has not answered in this run within the startup grace' in log
