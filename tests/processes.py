"""Processes the tests start: a private libvirtd and the agent daemon.

Every process is started here and stopped here, by its pid, even when a test
fails. Paths are short temporary directories: a unix socket path must fit in
108 bytes.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import libvirt
import pytest

REQUIRED_IN_CI = os.environ.get('CI') == 'true'


def skip_or_fail(reason: str) -> None:
    """Skip where a part is missing; in CI a missing part is a failure."""
    if REQUIRED_IN_CI:
        pytest.fail(f'{reason} (required in CI)')
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def stop_pid(process: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; return the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


class PrivateLibvirtd:
    """A libvirtd of our own whose sockets, state and logs live in a temp dir.

    With ``hypervisor_drivers=False`` it loads no driver module and serves
    only libvirt's built-in test driver: ``uri`` is then
    ``test+unix:///default?socket=...``, shared by every client.
    """

    def __init__(self, hypervisor_drivers: bool = False) -> None:
        binary = shutil.which('libvirtd') or '/usr/sbin/libvirtd'
        if not os.path.exists(binary):
            skip_or_fail('libvirtd is not installed (apt-get install libvirt-daemon)')
        self.binary = binary
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='im-lv-'))
        self.socket = self.dir / 'run' / 'libvirt-sock'
        self.log = self.dir / 'libvirtd.log'
        (self.dir / 'run').mkdir()
        (self.dir / 'drivers').mkdir()
        self.conf = self.dir / 'libvirtd.conf'
        self.conf.write_text(
            f'unix_sock_dir = "{self.dir / "run"}"\n'
            'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            'unix_sock_rw_perms = "0700"\nlisten_tcp = 0\nlisten_tls = 0\n'
            f'log_outputs = "3:file:{self.log}"\n')
        self.env = dict(os.environ)
        if not hypervisor_drivers:
            self.env['LIBVIRT_DRIVER_DIR'] = str(self.dir / 'drivers')
        self.uri = f'test+unix:///default?socket={self.socket}'
        self.process: subprocess.Popen | None = None

    def start(self) -> 'PrivateLibvirtd':
        self.process = subprocess.Popen(
            [self.binary, '-f', str(self.conf), '-p', str(self.dir / 'libvirtd.pid')],
            env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / 'stderr', 'ab'))
        wait_for(self._answers, 20, f'libvirtd at {self.socket}')
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f'libvirtd exited with {self.process.returncode}: '
                f'{(self.dir / "stderr").read_text()[-2000:]}')
        if not self.socket.exists():
            return False
        try:
            libvirt.open(self.uri).close()
            return True
        except libvirt.libvirtError:
            return False

    def kill(self) -> None:
        """SIGKILL: libvirtd dies without closing anything."""
        self.process.kill()
        self.process.wait(10)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGCONT)  # in case a test stopped it
            stop_pid(self.process)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class AgentProcess:
    """``instancemonitor --config-file FILE`` as a real process."""

    def __init__(self, config: str, directory: pathlib.Path) -> None:
        self.config_path = directory / 'instancemonitor.conf'
        self.config_path.write_text(config)
        self.log = directory / 'agent.log'
        self.process: subprocess.Popen | None = None

    def start(self) -> 'AgentProcess':
        with open(self.log, 'ab') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'instancemonitor.cmd.agent',
                 '--config-file', str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT)
        return self

    def output(self) -> str:
        return self.log.read_text(errors='replace')

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        def seen():
            if self.process.poll() is not None:
                raise AssertionError(
                    f'agent exited with {self.process.returncode}:\n{self.output()}')
            return self.output().count(text) >= count
        try:
            wait_for(seen, timeout, f'{text!r} in the agent log')
        except AssertionError as error:
            raise AssertionError(
                f'{error}\n--- agent log ---\n{self.output()}') from None
        return self.output()

    def stop(self, timeout: float = 10.0) -> int | None:
        return stop_pid(self.process, timeout) if self.process else None
