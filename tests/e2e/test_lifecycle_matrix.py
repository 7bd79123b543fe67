"""What the agent sends for each thing that happens to a real QEMU guest.

One test per operation, each with the real agent process and a recording
recovery API that counts every POST: the assertion is the exact list of
notifications received, usually none. (The real masakari-api path is
tested in test_masakari.py; here every request must be counted, and
Masakari's own duplicate check would hide a second one.)
"""

import os
import signal
import time

import libvirt
import libvirt_qemu
import pytest

from instancemonitor.service import RECOVERED_CONFIRM_WAIT
from tests.e2e.conftest import AGENT_CHANNEL
from tests.e2e.test_agent_guest import guest_exec
from tests.e2e.test_failures import kill_qemu
from tests.e2e.test_guest_errors import arm_ib700
from tests.e2e.test_heartbeat import heartbeat_config
from tests.processes import wait_for

QUIET = 3.0  # seconds in which anything extra would have arrived
# A pvpanic-style ISA device: writing 1 to its port is a guest kernel panic.
PANIC_DEVICE = "<panic model='isa'><address type='isa' iobase='0x505'/></panic>"
CRASH = ('LIFECYCLE', 'STOPPED_FAILED')
HANG = ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')
# The heartbeat as the issue tried it: a reboot took longer than this.
FAST_BEAT = """
[introspectiveinstancemonitor]
guest_monitoring_interval = 2
guest_monitoring_timeout = 1
guest_monitoring_failure_threshold = 2
startup_grace = 120
"""


def sent(api) -> list[tuple[str, str, str]]:
    """Every POST's (instance, event, detail), in order, repeats included."""
    return [(n['notification']['payload']['instance_uuid'],
             n['notification']['payload']['event'],
             n['notification']['payload']['vir_domain_event'])
            for n in (r.json() for r in api.requests)]


def quiet_then(api, expected: list) -> None:
    time.sleep(QUIET)
    assert sent(api) == expected


def wait_state(dom, state: int, timeout: float = 30) -> None:
    def reached() -> bool:
        try:
            return dom.state()[0] == state
        except libvirt.libvirtError:  # a transient guest is gone once off
            return state == libvirt.VIR_DOMAIN_SHUTOFF
    wait_for(reached, timeout, f'state {state}', 0.2)


def healthy_beats(agent, name: str, count: int) -> None:
    agent.wait_log(f'Domain {name} (', timeout=60)
    wait_for(lambda: agent.output().count('heartbeat healthy') >= count, 90,
             'the heartbeat to see the agent answer', 0.5)


# --- stops the engine must not act on ----------------------------------------

def test_virsh_destroy(start_guest, start_agent, recovery_api):
    start_agent(recovery_api.url)
    dom = start_guest('mx-destroy')
    dom.destroy()
    quiet_then(recovery_api, [])


def test_virsh_shutdown(start_agent_guest, start_agent, recovery_api):
    dom = start_agent_guest('mx-shutdown', acpi=True)
    start_agent(recovery_api.url, extra=FAST_BEAT)
    try:  # virsh shutdown --mode agent
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
    except libvirt.libvirtError as exc:
        # guest-shutdown has no reply: libvirt waits for QEMU's SHUTDOWN
        # event, and if the guest closes the agent's port first it reports
        # this although the request was carried out. The wait below still
        # fails if the guest did not shut down.
        if 'End of file from agent socket' not in str(exc):
            raise
    wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    quiet_then(recovery_api, [])


def test_shutdown_from_inside_the_guest(start_agent_guest, start_agent,
                                        recovery_api):
    dom = start_agent_guest('mx-poweroff', acpi=True)
    start_agent(recovery_api.url, extra=FAST_BEAT)
    guest_exec(dom, 'sleep 1; poweroff -f')
    wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    quiet_then(recovery_api, [])


def test_save_and_restore(start_guest, start_agent, recovery_api, conn, tmp_path):
    start_agent(recovery_api.url)
    dom = start_guest('mx-save')
    image = str(tmp_path / 'mx-save.img')
    dom.save(image)
    conn.restore(image)
    wait_state(conn.lookupByName('mx-save'), libvirt.VIR_DOMAIN_RUNNING)
    quiet_then(recovery_api, [])


def test_managedsave_and_start(start_guest, start_agent, recovery_api):
    start_agent(recovery_api.url)
    dom = start_guest('mx-managedsave', persistent=True)
    dom.managedSave()
    dom.create()
    wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    quiet_then(recovery_api, [])


def test_suspend_and_resume(start_guest, start_agent, recovery_api):
    agent = start_agent(recovery_api.url, reconcile_interval=0.5)
    dom = start_guest('mx-suspend')
    dom.suspend()
    agent.wait_log('pause: running => paused')
    time.sleep(1.5)  # scans find it paused
    dom.resume()
    quiet_then(recovery_api, [])


# --- reboots -------------------------------------------------------------------

def test_virsh_reset(start_guest, start_agent, recovery_api):
    start_agent(recovery_api.url)
    dom = start_guest('mx-reset')
    dom.reset()
    dom.reset()
    quiet_then(recovery_api, [])


def test_reboot_from_inside_with_the_heartbeat_on(start_agent_guest, start_agent,
                                                  recovery_api):
    dom = start_agent_guest('mx-reboot-inside')
    agent = start_agent(recovery_api.url, extra=FAST_BEAT)
    healthy_beats(agent, 'mx-reboot-inside', 1)
    guest_exec(dom, 'sleep 1; reboot -f')
    agent.wait_log('heartbeat discovery', timeout=20)
    # The agent is silent for ~7 s while the guest boots: 3 and more rounds.
    healthy_beats(agent, 'mx-reboot-inside', 2)
    quiet_then(recovery_api, [])


def test_virsh_reboot_with_the_heartbeat_on(start_agent_guest, start_agent,
                                           recovery_api):
    dom = start_agent_guest('mx-virsh-reboot')
    agent = start_agent(recovery_api.url, extra=FAST_BEAT)
    healthy_beats(agent, 'mx-virsh-reboot', 1)
    dom.reboot(libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT)  # virsh reboot --mode agent
    agent.wait_log('heartbeat discovery', timeout=20)
    healthy_beats(agent, 'mx-virsh-reboot', 2)
    quiet_then(recovery_api, [])


# --- guest errors the engine does not act on ----------------------------------

def test_guest_panic_then_the_agent_restarts(start_guest, start_agent, recovery_api):
    # on_crash destroy: CRASHED_PANICKED, STOPPED_CRASHED, and the domain is
    # shut off "crashed", the state a killed QEMU leaves too. The restarted
    # agent's scans must know it from the journal, not take it for a crash
    # nobody reported.
    agent = start_agent(recovery_api.url, reconcile_interval=0.5)
    dom = start_guest('mx-panic', PANIC_DEVICE, persistent=True)
    agent.wait_log('Domain mx-panic (')
    libvirt_qemu.qemuMonitorCommand(dom, 'o /b 0x505 1',
                                    libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    agent.wait_log('stop-crashed: paused => failed')  # QEMU pauses it first
    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
    assert agent.stop() == 0
    again = start_agent(recovery_api.url, reconcile_interval=0.5)
    again.wait_log('Domain state scan:', count=4, own=True)
    quiet_then(recovery_api, [])
    assert again.process.poll() is None


def test_watchdog_pause(start_guest, start_agent, recovery_api):
    agent = start_agent(recovery_api.url, reconcile_interval=0.5)
    dom = start_guest('mx-wd-pause', "<watchdog model='ib700' action='pause'/>")
    arm_ib700(dom)
    wait_state(dom, libvirt.VIR_DOMAIN_PAUSED)
    agent.wait_log('pause-error: running => error-paused')
    time.sleep(1.5)  # scans find it paused on the watchdog
    quiet_then(recovery_api, [])


# --- failures: exactly one ----------------------------------------------------

def test_watchdog_poweroff(start_guest, start_agent, recovery_api):
    start_agent(recovery_api.url)
    dom = start_guest('mx-wd-off', "<watchdog model='ib700' action='poweroff'/>")
    arm_ib700(dom)
    recovery_api.wait_stored(1, timeout=20)
    quiet_then(recovery_api, [(dom.UUIDString(), *CRASH)])


def test_failing_disk_report_with_scans_and_resets_is_exactly_one(
        start_guest, start_agent, recovery_api, failing_disk):
    disk, flag = failing_disk
    start_agent(recovery_api.url, reconcile_interval=2)
    flag.touch()
    dom = start_guest('mx-io-report', disk('report'))
    recovery_api.wait_stored(1, timeout=20)
    for _ in range(3):
        time.sleep(2.5)  # a scan in between
        dom.reset()      # SeaBIOS reads the failing disk again
    time.sleep(2.5)
    quiet_then(recovery_api, [(dom.UUIDString(), 'IO_ERROR', 'IO_ERROR_REPORT')])


def test_failing_disk_stop_then_resumed_after_the_fault_is_removed(
        start_guest, start_agent, recovery_api, failing_disk):
    disk, flag = failing_disk
    start_agent(recovery_api.url, reconcile_interval=1)
    flag.touch()
    dom = start_guest('mx-io-stop', disk('stop'))
    wait_state(dom, libvirt.VIR_DOMAIN_PAUSED)
    time.sleep(2)  # scans find it paused on the error
    flag.unlink()
    dom.resume()
    wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    quiet_then(recovery_api, [])  # an I/O-error pause is not a recovery pair


def test_a_scan_racing_a_crash_loses_nothing(hypervisor, start_guest, start_agent,
                                             recovery_api):
    start_agent(recovery_api.url, reconcile_interval=0.05)
    dom = start_guest('mx-race')
    time.sleep(0.5)
    kill_qemu(hypervisor, 'mx-race')
    recovery_api.wait_stored(1, timeout=10)
    quiet_then(recovery_api, [(dom.UUIDString(), *CRASH)])


def _hung_guest(start_agent_guest, start_agent, recovery_api, name):
    dom = start_agent_guest(name)
    agent = start_agent(recovery_api.url, extra=heartbeat_config())
    healthy_beats(agent, name, 1)
    guest_exec(dom, 'kill -STOP $(pidof qemu-ga); sleep 90; kill -CONT $(pidof qemu-ga)')
    agent.wait_log('heartbeat failing(1)', timeout=20)
    return dom, agent


def test_libvirtd_restarted_during_a_hang(hypervisor, start_agent_guest, start_agent,
                                          recovery_api):
    dom, agent = _hung_guest(start_agent_guest, start_agent, recovery_api,
                             'mx-hang-libvirtd')
    uuid = dom.UUIDString()
    hypervisor.kill()
    agent.wait_log('Lost the libvirt connection')
    hypervisor.start()
    agent.wait_log('Reconnected to libvirt')
    recovery_api.wait_stored(1, timeout=40)
    quiet_then(recovery_api, [(uuid, *HANG)])


def test_agent_restarted_during_a_hang(start_agent_guest, start_agent, recovery_api):
    dom, agent = _hung_guest(start_agent_guest, start_agent, recovery_api,
                             'mx-hang-restart')
    assert agent.stop() == 0
    again = start_agent(recovery_api.url, extra=heartbeat_config())
    recovery_api.wait_stored(1, timeout=40)
    # Went on counting: a fresh start would wait out the 120 s grace and then
    # only log a guest that never answered.
    quiet_then(recovery_api, [(dom.UUIDString(), *HANG)])
    assert again.process.poll() is None


def _refused_crash(hypervisor, start_guest, start_agent, recovery_api, name,
                   persistent=True):
    """A guest's QEMU killed while the API answers 503 (a persistent guest,
    as Nova's are, unless told otherwise), once a scan has seen it."""
    recovery_api.answer(*[(503, 'Service Unavailable')] * 10_000)
    agent = start_agent(recovery_api.url, reconcile_interval=0.5)
    dom = start_guest(name, persistent=persistent)
    agent.wait_log(f'Domain {name} (')
    scans = agent.output().count('Domain state scan:')
    agent.wait_log('Domain state scan:', count=scans + 1)
    os.kill(hypervisor.qemu_pid(name), signal.SIGKILL)
    recovery_api.wait_requests(2, timeout=20)  # refused, and retried
    return agent, dom


def _api_back(recovery_api) -> int:
    """The API answers again; return how many requests it had before."""
    with recovery_api._changed:
        recovery_api.script.clear()
        return len(recovery_api.requests)


def _nothing_since(recovery_api, tried: int) -> None:
    """Not one request more than ``tried`` (retries are 0.5 s apart in
    these agents), and nothing stored."""
    time.sleep(QUIET)
    assert len(recovery_api.requests) == tried and recovery_api.stored == []


def _api_back_and_quiet(recovery_api) -> None:
    """The API answers again; nothing more may reach it."""
    _nothing_since(recovery_api, _api_back(recovery_api))


def _api_back_then_only_the_crash(recovery_api, dom) -> None:
    """The API answers again: the guest's crash reaches it, once, and
    nothing else."""
    _api_back(recovery_api)
    recovery_api.wait_stored(1, timeout=20)
    tried = len(recovery_api.requests)
    time.sleep(QUIET)
    assert [(n['payload']['instance_uuid'], n['payload']['event'],
             n['payload']['vir_domain_event']) for n in recovery_api.stored] == [
        (dom.UUIDString(), *CRASH)]
    assert len(recovery_api.requests) == tried


@pytest.mark.parametrize('name, over', [
    # Started again: recovering it now would have Masakari stop a running VM.
    ('mx-refused-start', libvirt.virDomain.create),
    # Undefined: deleted, moved to another host or shelved meanwhile, the VM
    # lives here no more, and Masakari would stop and start it wherever it is.
    ('mx-refused-undefine', libvirt.virDomain.undefine),
], ids=['started again', 'undefined'])
def test_a_crash_the_api_refused_is_withdrawn_once_it_is_over(
        hypervisor, start_guest, start_agent, recovery_api, name, over):
    agent, dom = _refused_crash(hypervisor, start_guest, start_agent, recovery_api,
                                name)
    over(dom)
    agent.wait_log('withdrawn')
    _api_back_and_quiet(recovery_api)


def test_a_crash_the_api_refused_stands_when_the_stopped_domain_is_renamed(
        hypervisor, start_guest, start_agent, recovery_api):
    # libvirt undefines the old name and defines the new: the same domain,
    # its crash neither over nor forgotten (and not found again by a scan).
    agent, dom = _refused_crash(hypervisor, start_guest, start_agent, recovery_api,
                                'mx-refused-rename')
    wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    dom.rename('mx-refused-renamed')
    agent.wait_log('of mx-refused-renamed (')
    _api_back_then_only_the_crash(recovery_api, dom)
    log = agent.output()
    assert 'withdrawn' not in log and 'found by reconciliation' not in log


@pytest.mark.parametrize('name, over, why', [
    ('mx-refused-restart', libvirt.virDomain.create, 'scan-running-new-run'),
    # The restarted agent's scan no longer lists a domain it saw persistent.
    ('mx-refused-gone', libvirt.virDomain.undefine, 'not listed by a scan'),
], ids=['started again', 'undefined'])
def test_the_same_seen_only_by_a_restarted_agents_scan(
        hypervisor, start_guest, start_agent, recovery_api, name, over, why):
    agent, dom = _refused_crash(hypervisor, start_guest, start_agent, recovery_api,
                                name)
    assert agent.stop() == 0
    over(dom)  # no agent sees the event
    again = start_agent(recovery_api.url, reconcile_interval=0.5)
    again.wait_log('withdrawn')
    # The journal's line comes once the group has committed, after this one.
    again.wait_log(why, own=True)
    _api_back_and_quiet(recovery_api)
    assert again.process.poll() is None


def test_what_a_restart_found_waits_for_libvirtd_to_answer_however_long(
        hypervisor, start_guest, start_agent, recovery_api):
    # A crash the API refused; the agent stopped; the domain undefined
    # meanwhile; the agent restarted while libvirtd is down, for longer than
    # a scan is awaited once libvirtd answers, the API answering again. Not
    # one POST (its recovery could not be carried out here meanwhile either),
    # and once libvirtd is back its scan withdraws the crash.
    agent, dom = _refused_crash(hypervisor, start_guest, start_agent, recovery_api,
                                'mx-refused-away')
    assert agent.stop() == 0
    dom.undefine()
    hypervisor.stop()
    try:
        tried = _api_back(recovery_api)
        again = start_agent(recovery_api.url, reconcile_interval=0.5,
                            connected=False)
        again.wait_log('recovered from the outbox', own=True)
        time.sleep(RECOVERED_CONFIRM_WAIT + 5)
        assert len(recovery_api.requests) == tried
    finally:
        hypervisor.start()
    again.wait_log('withdrawn', timeout=30)
    _nothing_since(recovery_api, tried)


def test_a_transient_guests_crash_the_api_refused_stands_across_a_restart(
        hypervisor, start_guest, start_agent, recovery_api):
    # Gone as soon as QEMU died, however it died: the restarted agent's scan
    # does not list it either, and the crash is sent once the API is back.
    agent, dom = _refused_crash(hypervisor, start_guest, start_agent, recovery_api,
                                'mx-refused-transient', persistent=False)
    assert agent.stop() == 0
    again = start_agent(recovery_api.url, reconcile_interval=0.5)
    again.wait_log('Domain state scan:', count=2, own=True)
    _api_back_then_only_the_crash(recovery_api, dom)
    assert 'withdrawn' not in again.output(own=True)


def test_the_same_with_the_api_back_before_the_agent(
        hypervisor, start_guest, start_agent, recovery_api):
    # What the restarted agent finds in its outbox waits for its first scan,
    # which finds the VM in a new run: not one POST.
    agent, dom = _refused_crash(hypervisor, start_guest, start_agent, recovery_api,
                                'mx-refused-back')
    assert agent.stop() == 0
    dom.create()
    tried = _api_back(recovery_api)
    again = start_agent(recovery_api.url, reconcile_interval=0.5)
    again.wait_log('withdrawn')
    _nothing_since(recovery_api, tried)


def test_a_running_vm_made_transient_and_defined_again_is_the_same_run(
        start_guest, start_agent, recovery_api, failing_disk):
    # As Nova's volume swap does to a running VM. Its failing disk's I/O
    # errors, before the undefine and after the define, are one
    # notification: the one the API refused meanwhile, sent once it is back.
    disk, flag = failing_disk
    recovery_api.answer(*[(503, 'Service Unavailable')] * 10_000)
    agent = start_agent(recovery_api.url, reconcile_interval=0.5)
    flag.touch()
    dom = start_guest('mx-swap', disk('report'), persistent=True)
    agent.wait_log('IO_ERROR/IO_ERROR_REPORT detected', timeout=30)
    recovery_api.wait_requests(2, timeout=20)  # refused, and retried
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.undefine()
    assert dom.isActive() and not dom.isPersistent()
    time.sleep(1)  # the event, and a scan
    dom.connect().defineXML(xml)
    assert dom.isPersistent()
    dom.reset()  # SeaBIOS reads the failing disk again: more I/O errors
    time.sleep(QUIET)
    with recovery_api._changed:
        recovery_api.script.clear()
    recovery_api.wait_stored(1, timeout=20)
    time.sleep(QUIET)
    assert [(n['payload']['instance_uuid'], n['payload']['event'],
             n['payload']['vir_domain_event']) for n in recovery_api.stored] == [
        (dom.UUIDString(), 'IO_ERROR', 'IO_ERROR_REPORT')]
    log = agent.output()
    # Not a second one held for Masakari's duplicate window either.
    assert log.count('IO_ERROR/IO_ERROR_REPORT detected') == 1
    assert 'undefined: runs on as a transient domain' in log
    assert 'withdrawn' not in log


def test_sigkill_of_qemu(hypervisor, start_guest, start_agent, recovery_api):
    start_agent(recovery_api.url)
    dom = start_guest('mx-kill')
    os.kill(hypervisor.qemu_pid('mx-kill'), signal.SIGKILL)
    recovery_api.wait_stored(1, timeout=10)
    quiet_then(recovery_api, [(dom.UUIDString(), *CRASH)])


# --- while the agent is stopped -------------------------------------------------

def stopped_agent_then(start_agent, recovery_api, start_guest, name: str):
    """A persistent guest the agent recorded running; the agent stopped.
    Returns the guest; ``again()`` starts the agent on the same state."""
    agent = start_agent(recovery_api.url, reconcile_interval=0.5)
    dom = start_guest(name, persistent=True)
    agent.wait_log(f'Domain {name} (')
    assert agent.stop() == 0

    def again():
        restarted = start_agent(recovery_api.url, reconcile_interval=0.5)
        restarted.wait_log('Domain state scan:', count=4, own=True)
        return restarted
    return dom, again


def test_qemu_killed_while_the_agent_is_stopped(hypervisor, start_guest,
                                                start_agent, recovery_api):
    dom, again = stopped_agent_then(start_agent, recovery_api, start_guest,
                                    'mx-down-kill')
    os.kill(hypervisor.qemu_pid('mx-down-kill'), signal.SIGKILL)
    wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    again()
    recovery_api.wait_stored(1, timeout=10)
    quiet_then(recovery_api, [(dom.UUIDString(), *CRASH)])


def test_qemu_killed_while_the_agent_is_stopped_then_libvirtd_restarted(
        hypervisor, start_guest, start_agent, recovery_api):
    """libvirt keeps why a domain stopped only while it runs: restarted, it
    says 'shut off, reason unknown', as after a destroy. Nothing is sent
    (naming a VM stopped on purpose would be a false recovery)."""
    dom, again = stopped_agent_then(start_agent, recovery_api, start_guest,
                                    'mx-down-kill-restart')
    os.kill(hypervisor.qemu_pid('mx-down-kill-restart'), signal.SIGKILL)
    wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    hypervisor.stop()
    hypervisor.start()
    conn = libvirt.open(hypervisor.uri)
    try:
        assert conn.lookupByName('mx-down-kill-restart').state() == [
            libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN]
    finally:
        conn.close()
    again().wait_log('scan-shutoff: running => shutoff', own=True)
    quiet_then(recovery_api, [])


def test_destroyed_while_the_agent_is_stopped(start_guest, start_agent,
                                              recovery_api):
    dom, again = stopped_agent_then(start_agent, recovery_api, start_guest,
                                    'mx-down-destroy')
    dom.destroy()
    again()
    quiet_then(recovery_api, [])


def test_killed_and_started_again_while_the_agent_is_stopped(
        hypervisor, start_guest, start_agent, recovery_api):
    # Nothing to recover when the agent returns: the VM runs (a new run).
    dom, again = stopped_agent_then(start_agent, recovery_api, start_guest,
                                    'mx-down-again')
    os.kill(hypervisor.qemu_pid('mx-down-again'), signal.SIGKILL)
    wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    dom.create()
    again()
    quiet_then(recovery_api, [])


def test_an_agent_channel_with_nothing_behind_it_is_never_a_failure(
        start_guest, start_agent, recovery_api):
    start_guest('mx-no-agent', AGENT_CHANNEL)
    start_agent(recovery_api.url, extra=FAST_BEAT)
    quiet_then(recovery_api, [])
