"""sd_notify over a real unix datagram socket, as systemd would listen."""

import os
import pathlib
import shutil
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
               tmp_path / 'state'),
        env={'NOTIFY_SOCKET': notify_socket.path, 'WATCHDOG_USEC': '2000000'})
    notify_socket.receive_until(lambda m: m.startswith('READY=1'), 20)
    ready = next(m for _, m in notify_socket.messages if m.startswith('READY=1'))
    assert 'STATUS=' in ready
    # Healthy: WATCHDOG=1 at least every half the watchdog interval.
    for _ in range(3):
        notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', 2)
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
                   tmp_path / 'state'),
            module='tests.integration.faulty_agent',
            env={'NOTIFY_SOCKET': notify_socket.path, 'WATCHDOG_USEC': '2000000',
                 'INSTANCEMONITOR_FAULT':
                     'instancemonitor.sender:Sender.deliver:hang'})
        notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', 20)
        destroy_test_domain(test_libvirtd.uri)
        log = agent.wait_log('not petting the systemd watchdog', timeout=10)
        (line,) = [x for x in log.splitlines() if 'not petting' in x]
        assert line.count('sender-masakari-') == 1, line  # the stuck one only
        notify_socket.drain()
        started = time.monotonic()
        with pytest.raises(AssertionError):
            notify_socket.receive_until(lambda m: m == 'WATCHDOG=1', 1.5)
        assert time.monotonic() - started >= 1.4
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
               tmp_path / 'state'),
        module='tests.integration.faulty_agent',
        env={'NOTIFY_SOCKET': notify_socket.path, 'WATCHDOG_USEC': '2000000',
             'INSTANCEMONITOR_FAULT': f'{target}:hang'})
    log = agent.wait_log('not petting the systemd watchdog', timeout=20)
    (line,) = [x for x in log.splitlines() if 'not petting' in x]
    assert f'No progress from {thread} for over 2 s' in line
    agent.stop()
