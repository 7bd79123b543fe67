"""sd_notify over a real unix datagram socket, as systemd would listen."""

import itertools
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.fakes.recovery_api import RecoveryAPI
from tests.integration.test_daemon import config
from tests.integration.test_daemon import destroy_test_domain
from tests.processes import skip_or_fail

ROOT = pathlib.Path(__file__).parents[2]
UNIT = ROOT / 'systemd' / 'instancemonitor.service'

# A watchdog of 5 s, and keepalive that tells a libvirtd that does not
# answer within half of it (1 s x (1 + 1)), as the agent requires.
WATCHDOG = 5.0
KEEPALIVE = '\n[libvirt]\nkeepalive_count = 1\n'


class NotifySocket:
    """What systemd listens on: NOTIFY_SOCKET, a unix datagram socket."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.path = str(directory / 'notify')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, str]] = []

    def receive_until(self, predicate, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append((time.monotonic(), data))
            if predicate(data):
                return [m for _, m in self.messages]
        raise AssertionError(f'not received; got {[m for _, m in self.messages]}')

    def drain(self) -> None:
        """Forget what was sent so far, read or not."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        self.messages.clear()

    def close(self) -> None:
        self.sock.close()


def watchdog_env(notify: NotifySocket, **more: str) -> dict[str, str]:
    """The environment systemd gives a unit with ``WatchdogSec=5``."""
    return {'NOTIFY_SOCKET': notify.path,
            'WATCHDOG_USEC': str(int(WATCHDOG * 1_000_000)), **more}


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


def test_ready_status_and_watchdog_over_sd_notify(test_libvirtd, recovery_api,
                                                  notify_socket, agent_process,
                                                  tmp_path):
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 0.5',
               tmp_path / 'state') + KEEPALIVE,
        env=watchdog_env(notify_socket))
    notify_socket.receive_until(lambda m: m.startswith('READY=1'), 20)
    ready = next(m for _, m in notify_socket.messages if m.startswith('READY=1'))
    assert 'STATUS=' in ready
    # Healthy: WATCHDOG=1 at least every half the watchdog interval.
    for _ in range(3):
        notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', WATCHDOG / 2)
    test_libvirtd.kill()
    notify_socket.receive_until(
        lambda m: m.startswith('STATUS=libvirt disconnected'), 10)
    test_libvirtd.start()
    notify_socket.receive_until(lambda m: m.startswith('STATUS=watching'), 10)
    assert agent.stop() == 0
    notify_socket.receive_until(lambda m: m.startswith('STOPPING=1'), 5)


def test_a_timeout_that_cannot_fit_the_watchdog_stops_the_agent_at_start(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 1',
               tmp_path / 'state'),
        env={'WATCHDOG_USEC': '2000000'})
    assert agent.process.wait(20) == 78
    assert ('configuration error: [api] timeout: 1.0 s does not fit the systemd '
            'watchdog (2 s, WatchdogSec)') in agent.output()
    assert not (tmp_path / 'state').exists()


def test_a_wedged_sender_stops_the_watchdog(test_libvirtd, notify_socket,
                                            agent_process, tmp_path):
    api = RecoveryAPI().start()
    try:
        # A send that hangs where no timeout reaches (say, a DNS lookup).
        agent = agent_process(
            config(test_libvirtd.uri, f'endpoint = {api.url}\ntimeout = 0.5',
                   tmp_path / 'state') + KEEPALIVE,
            module='tests.integration.faulty_agent',
            env=watchdog_env(notify_socket, INSTANCEMONITOR_FAULT=(
                'instancemonitor.sender:Sender.deliver:hang')))
        notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', 20)
        destroy_test_domain(test_libvirtd.uri)
        log = agent.wait_log('not petting the systemd watchdog', timeout=10)
        (line,) = [x for x in log.splitlines() if 'not petting' in x]
        assert line.count('sender-masakari-') == 1, line  # the stuck one only
        notify_socket.drain()
        started = time.monotonic()
        with pytest.raises(AssertionError):
            notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', WATCHDOG)
        assert time.monotonic() - started >= WATCHDOG - 0.1
        agent.stop()
    finally:
        api.stop()


def test_the_unit_file_verifies(tmp_path):
    if not shutil.which('systemd-analyze'):
        skip_or_fail('systemd-analyze is not installed (apt-get install systemd)')
    binary = shutil.which('instancemonitor')
    assert binary, 'the package is not installed'
    unit = tmp_path / 'instancemonitor.service'
    unit.write_text(UNIT.read_text().replace(
        '/opt/instancemonitor/bin/instancemonitor', binary))
    result = subprocess.run(['systemd-analyze', 'verify', str(unit)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, 'SYSTEMD_LOG_LEVEL': 'warning'})
    assert result.returncode == 0, result.stderr
    assert 'instancemonitor.service' not in result.stderr, result.stderr


@pytest.mark.parametrize('thread, target', [
    ('libvirt-connection', 'instancemonitor.virt.connection:LibvirtConnection._wait_closed'),
    ('reconcile', 'instancemonitor.sources.reconcile:Reconciler._sleep'),
])
def test_a_wedged_connection_or_reconcile_thread_stops_the_watchdog(
        test_libvirtd, recovery_api, notify_socket, agent_process, tmp_path,
        thread, target):
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 0.5',
               tmp_path / 'state') + KEEPALIVE,
        module='tests.integration.faulty_agent',
        env=watchdog_env(notify_socket, INSTANCEMONITOR_FAULT=f'{target}:hang'))
    log = agent.wait_log('not petting the systemd watchdog', timeout=20)
    (line,) = [x for x in log.splitlines() if 'not petting' in x]
    assert f'No progress from {thread} for over {WATCHDOG:.0f} s' in line
    agent.stop()


def test_keepalive_that_cannot_tell_a_silent_libvirtd_in_time_stops_the_agent_at_start(
        test_libvirtd, recovery_api, agent_process, tmp_path):
    # 1 s x (2 + 1) is not below half of a 5 s watchdog.
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 0.5',
               tmp_path / 'state'),
        env={'WATCHDOG_USEC': str(int(WATCHDOG * 1_000_000))})
    assert agent.process.wait(20) == 78
    assert ('configuration error: [libvirt] keepalive_interval: 1 s x '
            '(keepalive_count 2 + 1) does not fit the systemd watchdog (5 s, '
            'WatchdogSec)') in agent.output()


def _watchdog_gaps(notify: NotifySocket, seconds: float) -> list[float]:
    """Receive for ``seconds``; the gaps between WATCHDOG=1 messages, from
    the start of the period to its end."""
    notify.drain()
    started = time.monotonic()
    with pytest.raises(AssertionError):
        notify.receive_until(lambda m: False, seconds)
    stamps = [at for at, m in notify.messages if m == 'WATCHDOG=1']
    edges = [started, *stamps, time.monotonic()]
    return [later - earlier for earlier, later in itertools.pairwise(edges)]


def _excused(log: str) -> list[list[str]]:
    """The threads the watchdog excused, each time libvirtd stopped answering."""
    return [sorted(line.split('the watchdog excuses ')[1].split(', which')[0].split(', '))
            for line in log.splitlines() if 'the watchdog excuses ' in line]


def test_a_libvirtd_silent_for_longer_than_the_watchdog_is_waited_for(
        test_libvirtd, recovery_api, notify_socket, agent_process, tmp_path):
    # Scans every second, so that the reconcile thread too is inside a call
    # when libvirtd stops; the heartbeat and the connection's thread are.
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 0.5',
               tmp_path / 'state') + KEEPALIVE + 'reconcile_interval = 1\n',
        env=watchdog_env(notify_socket))
    notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', 20)
    agent.wait_log('Connected to libvirt')
    test_libvirtd.signal(signal.SIGSTOP)
    try:
        gaps = _watchdog_gaps(notify_socket, 3 * WATCHDOG)
        statuses = [m for _, m in notify_socket.messages if m.startswith('STATUS=')]
    finally:
        test_libvirtd.signal(signal.SIGCONT)
    agent.wait_log('answers again after')
    log = agent.output()
    assert 'not petting' not in log
    # Never a gap the watchdog would have ended the agent for.
    assert max(gaps) < WATCHDOG, gaps
    assert any(s.startswith('STATUS=libvirtd does not answer') for s in statuses)
    assert _excused(log) == [['heartbeat', 'libvirt-connection', 'reconcile']]
    notify_socket.receive_until(lambda m: m.startswith('STATUS=watching'), 10)
    # The same connection, with the same events, all along; and watched
    # again: WATCHDOG=1 goes on.
    destroy_test_domain(test_libvirtd.uri)
    (stored,) = recovery_api.wait_stored(1)
    assert (stored['payload']['event'], stored['payload']['vir_domain_event']) == (
        'LIFECYCLE', 'STOPPED_DESTROYED')
    assert max(_watchdog_gaps(notify_socket, WATCHDOG)) < WATCHDOG
    log = agent.output()
    assert 'Lost the libvirt connection' not in log
    assert 'not petting' not in log
    assert len(recovery_api.stored) == 1
    assert agent.stop() == 0


def test_an_agent_started_while_libvirtd_is_silent_waits_for_it(
        test_libvirtd, recovery_api, notify_socket, agent_process, tmp_path):
    test_libvirtd.signal(signal.SIGSTOP)
    try:
        # Its connection's open waits for libvirtd's answer, with no timeout.
        agent = agent_process(
            config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 0.5',
                   tmp_path / 'state') + KEEPALIVE,
            env=watchdog_env(notify_socket))
        notify_socket.receive_until(lambda m: m.startswith('READY=1'), 20)
        gaps = _watchdog_gaps(notify_socket, 3 * WATCHDOG)
    finally:
        test_libvirtd.signal(signal.SIGCONT)
    assert max(gaps) < WATCHDOG, gaps
    agent.wait_log('Connected to libvirt')
    destroy_test_domain(test_libvirtd.uri)
    recovery_api.wait_stored(1)
    log = agent.output()
    assert _excused(log) == [['heartbeat', 'libvirt-connection', 'reconcile']]
    assert 'not petting' not in log
    assert agent.stop() == 0


def test_a_wedged_dispatcher_is_still_caught_while_libvirtd_is_silent(
        test_libvirtd, recovery_api, notify_socket, agent_process, tmp_path):
    # The threads that wait on libvirtd are excused; no other one is.
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}\ntimeout = 0.5',
               tmp_path / 'state') + KEEPALIVE + 'reconcile_interval = 1\n',
        module='tests.integration.faulty_agent',
        env=watchdog_env(notify_socket,
                         INSTANCEMONITOR_FAULT='instancemonitor.bus:EventBus.run:hang'))
    agent.wait_log('Connected to libvirt')
    test_libvirtd.signal(signal.SIGSTOP)
    try:
        agent.wait_log('libvirtd does not answer:', timeout=15)
        time.sleep(WATCHDOG + 1)
        gaps = _watchdog_gaps(notify_socket, WATCHDOG + 1)
    finally:
        test_libvirtd.signal(signal.SIGCONT)
    assert gaps == [pytest.approx(WATCHDOG + 1, abs=0.2)]  # not one WATCHDOG=1
    lines = [x for x in agent.output().splitlines() if 'not petting' in x]
    assert lines and all('No progress from event-dispatch for over' in x
                         for x in lines), lines
    assert agent.stop() == 0
