"""The unit in systemd/, unchanged, under a real systemd as PID 1.

A Debian 12 container booted by systemd-nspawn runs the agent as
``instancemonitor.service``, on the private libvirtd's (or virtqemud's) socket
bound at /run/libvirt, with the default configuration but the recovery API's
address: ``qemu:///system`` finds whichever daemon's socket is there.
"""

import os
import re
import signal
import time

import libvirt
import pytest

from tests.e2e.conftest import BOTH_DAEMONS
from tests.e2e.systemd_host import SystemdHost
from tests.e2e.systemd_host import container_root
from tests.processes import free_port
from tests.processes import wait_for

UNIT = 'instancemonitor.service'
CONFIG = '/etc/instancemonitor/instancemonitor.conf'
QUIET = 2.0


@pytest.fixture(scope='module')
def systemd_hosts():
    """One container per QEMU daemon, booted when first asked for, with that
    daemon's socket directory at /run/libvirt."""
    hosts: dict[str, SystemdHost] = {}

    def host_for(daemon) -> SystemdHost:
        if daemon.daemon not in hosts:
            hosts[daemon.daemon] = SystemdHost(
                container_root(), {str(daemon.socket.parent): '/run/libvirt'})
            hosts[daemon.daemon].boot()
        return hosts[daemon.daemon]
    yield host_for
    for host in hosts.values():
        host.shutdown()


@pytest.fixture
def systemd_host(systemd_hosts, hypervisor):
    return systemd_hosts(hypervisor)


@pytest.fixture
def unit(systemd_host, hypervisor, recovery_api):
    """The service, configured for this test's recovery API; stopped after
    it, its state wiped, before the guests are destroyed."""
    metrics_port = free_port()  # the container shares the host's network
    def configure(extra: str = '') -> None:
        systemd_host.write(CONFIG, f'[DEFAULT]\nhostname = compute-1\n{extra}\n'
                                   f'[api]\nendpoint = {recovery_api.url}\n'
                                   f'[metrics]\nport = {metrics_port}\n')
    configure()
    yield configure
    systemd_host.run('systemctl', 'stop', UNIT)
    systemd_host.run('systemctl', 'reset-failed', UNIT, check=False)
    systemd_host.run('sh', '-c', 'rm -rf /var/lib/instancemonitor/*')


def state(host: SystemdHost) -> dict[str, str]:
    return host.show(UNIT, 'ActiveState', 'SubState', 'MainPID', 'StatusText',
                     'NRestarts', 'Result', 'ExecMainStatus')


def wait_active(host: SystemdHost, timeout: float = 30) -> dict[str, str]:
    def active():
        now = state(host)
        return now if (now['ActiveState'], now['SubState']) == ('active', 'running') else None
    return wait_for(active, timeout, f'{UNIT} active (running)', interval=0.2)


def wait_journal(host: SystemdHost, text: str, timeout: float = 20,
                 since: int = 0) -> str:
    """The unit's journal once ``text`` is in it; ``since``: from that offset
    on (the length of the journal read before), in both."""
    wait_for(lambda: text in host.journal(UNIT)[since:], timeout,
             f'{text!r} in the journal', interval=0.2)
    return host.journal(UNIT)[since:]


def writable(host: SystemdHost, pid: str, path: str) -> bool:
    """Whether the service (in its own mount namespace) can write ``path``."""
    probe = f'{path.rstrip("/")}/.instancemonitor-probe'
    result = host.run('nsenter', '-t', pid, '-m', '--', 'sh', '-c',
                      f'touch {probe} && rm {probe}', check=False)
    return result.returncode == 0


def kill_qemu(hypervisor, name: str) -> None:
    os.kill(hypervisor.qemu_pid(name), signal.SIGKILL)


@BOTH_DAEMONS
def test_active_only_after_ready_then_a_crash_is_one_notification(
        systemd_host, unit, hypervisor, start_guest, recovery_api):
    # Only this daemon's socket is there: qemu:///system must find it.
    sockets = set(systemd_host.run('ls', '/run/libvirt').stdout.split())
    assert sockets & {'libvirt-sock', 'virtqemud-sock'} == {hypervisor.socket.name}
    # Type=notify: start returns once the agent sent READY=1 (the first
    # STATUS= comes with it), not when the process was forked.
    systemd_host.run('systemctl', 'start', UNIT)
    running = state(systemd_host)
    assert (running['ActiveState'], running['SubState']) == ('active', 'running')
    assert running['StatusText'].startswith(('watching', 'libvirt disconnected'))
    times = systemd_host.show(UNIT, 'ExecMainStartTimestampMonotonic',
                              'ActiveEnterTimestampMonotonic')
    starting = (int(times['ActiveEnterTimestampMonotonic']) -
                int(times['ExecMainStartTimestampMonotonic'])) / 1e6
    print(f'{UNIT}: activating for {starting:.3f} s, until READY=1')
    assert starting > 0.05  # Python's start-up at least; Type=simple: ~0
    journal = systemd_host.journal(UNIT)
    assert journal.index('instancemonitor starting') < journal.index('Started ')
    # The hardening leaves the kernel's boot id readable (runs across host
    # restarts are told apart by it).
    assert 'Cannot read the host boot id' not in journal
    wait_for(lambda: state(systemd_host)['StatusText'].startswith('watching'), 10,
             'STATUS=watching', interval=0.2)

    dom = start_guest('sd-crash')
    kept = start_guest('sd-kept')
    wait_journal(systemd_host, 'Domain sd-kept')
    kill_qemu(hypervisor, 'sd-crash')
    (stored,) = recovery_api.wait_stored(1, timeout=15)
    time.sleep(QUIET)
    assert recovery_api.payloads() == [(dom.UUIDString(), 'LIFECYCLE', 'STOPPED_FAILED')]
    assert kept.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    # The hardening holds for the running agent, not only on paper.
    pid = running['MainPID']
    status = systemd_host.run('cat', f'/proc/{pid}/status').stdout
    for field, value in (('CapEff', '0000000000000000'),
                         ('CapBnd', '0000000000000000'),
                         ('NoNewPrivs', '1'), ('Seccomp', '2')):
        assert re.search(rf'^{field}:\s+{value}$', status, re.MULTILINE), field
    for path in ('/var/lib/instancemonitor', '/var/log/instancemonitor', '/tmp'):
        assert writable(systemd_host, pid, path), path
    for path in ('/', '/etc', '/usr', '/opt/instancemonitor', '/var/lib', '/run',
                 '/run/libvirt', '/root'):
        assert not writable(systemd_host, pid, path), path


def test_reload_applies_mutable_options_in_the_same_process(
        systemd_host, unit, start_guest, recovery_api):
    start_guest('sd-reload')
    systemd_host.run('systemctl', 'start', UNIT)
    before = wait_active(systemd_host)
    wait_journal(systemd_host, 'Domain sd-reload')
    assert 'Domain state scan' not in systemd_host.journal(UNIT)  # a DEBUG line
    unit('debug = true\n[libvirt]\nreconcile_interval = 1')
    systemd_host.run('systemctl', 'reload', UNIT)
    wait_journal(systemd_host, 'reloading the configuration')
    journal = wait_journal(systemd_host, 'Domain state scan:', timeout=10)
    assert 'Reloading the configuration failed' not in journal
    after = state(systemd_host)
    assert after['MainPID'] == before['MainPID']
    assert (after['ActiveState'], after['NRestarts']) == ('active', '0')
    assert recovery_api.requests == []  # a reload and its scans name no one


def test_a_wedged_agent_is_restarted_by_the_watchdog_and_loses_nothing(
        systemd_host, unit, hypervisor, start_guest, recovery_api):
    """WatchdogSec=60 as shipped: this test waits a minute."""
    lost = start_guest('sd-wedged-lost', persistent=True)
    kept = start_guest('sd-wedged-kept', persistent=True)
    systemd_host.run('systemctl', 'start', UNIT)
    wedged = wait_active(systemd_host)
    wait_journal(systemd_host, 'Domain sd-wedged-kept')
    systemd_host.run('kill', '-STOP', wedged['MainPID'])
    kill_qemu(hypervisor, 'sd-wedged-lost')  # the agent cannot see it now
    restarted = wait_for(
        lambda: (s := state(systemd_host))['NRestarts'] == '1' and
        s['ActiveState'] == 'active' and s, 120, 'a restart by the watchdog',
        interval=0.5)
    assert restarted['MainPID'] != wedged['MainPID']
    assert 'Watchdog timeout' in systemd_host.journal(UNIT)
    recovery_api.wait_stored(1, timeout=20)
    time.sleep(QUIET)
    assert recovery_api.payloads() == [(lost.UUIDString(), 'LIFECYCLE', 'STOPPED_FAILED')]
    assert kept.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_a_libvirtd_silent_for_longer_than_the_watchdog_is_waited_for(
        systemd_host, unit, hypervisor, start_guest, recovery_api):
    """WatchdogSec=60 as shipped: libvirtd stopped (SIGSTOP) for 75 s, with
    a guest's QEMU killed meanwhile. The agent is not restarted, and gets
    the crash on the connection it kept, once libvirtd answers."""
    crashed = start_guest('sd-silent-crashed', persistent=True)
    kept = start_guest('sd-silent-kept', persistent=True)
    earlier = len(systemd_host.journal(UNIT))  # of the tests before this one
    systemd_host.run('systemctl', 'start', UNIT)
    before = wait_active(systemd_host)
    wait_journal(systemd_host, 'Domain sd-silent-kept', since=earlier)
    stopped_at = time.monotonic()
    hypervisor.signal(signal.SIGSTOP)
    try:
        wait_journal(systemd_host, 'does not answer (keepalive timed out)', 40,
                     since=earlier)
        kill_qemu(hypervisor, 'sd-silent-crashed')
        time.sleep(max(0.0, 75 - (time.monotonic() - stopped_at)))
        silent = state(systemd_host)
    finally:
        hypervisor.signal(signal.SIGCONT)
    assert silent['StatusText'].startswith('libvirtd does not answer')
    wait_journal(systemd_host, 'answers again after', 30, since=earlier)
    recovery_api.wait_stored(1, timeout=20)
    time.sleep(QUIET)
    assert recovery_api.payloads() == [
        (crashed.UUIDString(), 'LIFECYCLE', 'STOPPED_FAILED')]
    after = state(systemd_host)
    assert (after['MainPID'], after['NRestarts']) == (before['MainPID'], '0')
    journal = systemd_host.journal(UNIT)[earlier:]
    assert 'the watchdog excuses' in journal
    assert 'not petting' not in journal and 'Watchdog timeout' not in journal
    assert 'Lost the libvirt connection' not in journal
    assert kept.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_a_bad_configuration_exits_78_and_is_not_restarted(systemd_host, unit):
    unit('[events]\nforward = everything')
    result = systemd_host.run('systemctl', 'start', UNIT, check=False)
    assert result.returncode != 0
    time.sleep(5)  # more than twice RestartSec
    failed = state(systemd_host)
    assert (failed['ActiveState'], failed['Result'], failed['ExecMainStatus'],
            failed['NRestarts']) == ('failed', 'exit-code', '78', '0')
    assert 'configuration error' in systemd_host.journal(UNIT)
    assert 'forward' in systemd_host.journal(UNIT)


def test_security_exposure_is_in_the_ok_band(systemd_host):
    out = systemd_host.run('systemd-analyze', 'security', '--no-pager', UNIT).stdout
    print(out)
    (exposure,) = re.findall(r'Overall exposure level for \S+: ([\d.]+) (\w+)', out)
    print(f'systemd-analyze security {UNIT}: {exposure[0]} {exposure[1]}')
    assert float(exposure[0]) <= 2.0, out
