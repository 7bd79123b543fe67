"""Processes the tests start: a private libvirtd and the agent daemon.

Every process is started here and stopped here, by its pid, even when a test
fails. Paths are short temporary directories: a unix socket path must fit in
108 bytes.
"""

import contextlib
import ctypes
import glob
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import libvirt
import pytest

REQUIRED_IN_CI = os.environ.get('CI') == 'true'


def skip_or_fail(reason: str) -> None:
    """Skip where a part is missing; in CI a missing part is a failure."""
    if REQUIRED_IN_CI:
        pytest.fail(f'{reason} (required in CI)')
    pytest.skip(reason)


def run_checked(command: list[str], what: str, **kwargs) -> str:
    """Run ``command`` to its end; its output, or AssertionError with the
    output's tail naming ``what`` failed."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise AssertionError(f'{what} failed ({result.returncode}): '
                             f'{(result.stdout + result.stderr)[-3000:]}')
    return result.stdout


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def first_of_each(items: list, key) -> list:
    """The first item of each ``key(item)``, in order: what a receiver keeps
    of an at-least-once stream once it drops repeats."""
    seen: dict = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())


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


QEMU_CONF = """
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
"""

_PR_SET_CHILD_SUBREAPER = 36
# The emulators' process names ('qemu-system-x86'); qemu-img and the like
# stay their own subprocess objects' to reap.
_QEMU = 'qemu-system'
_reaper_lock = threading.Lock()
_reaper: threading.Thread | None = None


def reap_qemus() -> None:
    """Become the reaper of the QEMUs a private libvirtd starts, and reap
    each as soon as it dies (once per process; later calls do nothing).

    libvirtd daemonizes QEMU, so a dead QEMU waits for PID 1 to reap it, and
    libvirt reports the guest's death (a destroy() returns) only once its
    process is gone, zombie included. Where PID 1 reaps orphans once a
    second or so (this machine's VM init does: the event came 1.2 to 2 s
    after a SIGKILL), every kill waits for it; systemd on a real host reaps
    at once. Our own children stay our subprocess objects' to reap, unless
    one is an emulator itself: its Popen would then read status 0 (CPython's
    rule for ECHILD), so the fixtures leave starting QEMUs to libvirtd.
    """
    global _reaper
    with _reaper_lock:
        if _reaper is not None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER)')
        _reaper = threading.Thread(target=_reap_qemus, daemon=True,
                                   name='qemu-reaper')
        _reaper.start()


def _reap_qemus() -> None:
    while True:
        try:
            dead = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            time.sleep(0.05)  # no children at all
            continue
        if _is_qemu(dead.si_pid):
            _reap(dead.si_pid)
            continue
        # A child of ours, waiting for its Popen to reap it: the QEMUs that
        # died meanwhile are found by their parent.
        for pid in _dead_qemus():
            _reap(pid)
        time.sleep(0.05)


def _is_qemu(pid: int) -> bool:
    try:
        return proc_stat(pid)[0].startswith(_QEMU)
    except OSError:
        return False  # reaped meanwhile


def proc_stat(pid: int) -> tuple[str, str, int]:
    """(name, state, parent pid) of ``pid`` from ``/proc/PID/stat``; OSError
    once it is gone."""
    stat = pathlib.Path(f'/proc/{pid}/stat').read_text()
    name, fields = stat[stat.index('(') + 1:stat.rindex(')')], stat[
        stat.rindex(')') + 2:].split()
    return name, fields[0], int(fields[1])


def _dead_qemus() -> list[int]:
    me, dead = os.getpid(), []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            name, state, parent = proc_stat(int(entry))
        except OSError:
            continue
        if name.startswith(_QEMU) and state == 'Z' and parent == me:
            dead.append(int(entry))
    return dead


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# libvirtd's fixed paths, each bound to a directory of our own in a private
# mount namespace, so that its state, logs and QEMU pid files live in the
# temporary directory and nothing of the host's libvirt is touched.
BOUND_PATHS = {'etc': '/etc/libvirt', 'run': '/run/libvirt',
               'lib': '/var/lib/libvirt', 'log': '/var/log/libvirt',
               'cache': '/var/cache/libvirt'}


def test_cache() -> pathlib.Path:
    """Where slow-to-make test inputs are kept between runs."""
    root = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    path = pathlib.Path(root) / 'instancemonitor-tests'
    path.mkdir(parents=True, exist_ok=True)
    return path


class PrivateLibvirtd:
    """A libvirtd of our own whose sockets, state and logs live in a temp dir.

    ``driver='test'``: no driver module is loaded; it serves libvirt's
    built-in test driver at ``test+unix:///default?socket=...``, one state
    shared by every client.

    ``driver='qemu'`` (root only): the QEMU driver alone, in a private mount
    namespace with libvirt's paths bound to the temp dir (and a passwd/group
    that have the ``libvirt-qemu`` user the driver insists on). QEMU guests it
    starts are destroyed, and any left are killed by pid, on cleanup; this
    process reaps their QEMUs (``reap_qemus``).

    ``daemon='virtqemud'`` (with ``driver='qemu'``): the modular QEMU daemon
    instead of libvirtd, built from Debian's source (tests/modular_libvirt.py),
    on its own socket ``virtqemud-sock``.
    """

    def __init__(self, driver: str = 'test', daemon: str = 'libvirtd') -> None:
        self.daemon = daemon
        self.driver = driver
        self.env = dict(os.environ)
        if daemon == 'virtqemud':
            from tests.modular_libvirt import virtqemud_build
            assert driver == 'qemu', 'virtqemud serves the QEMU driver only'
            build = virtqemud_build()
            self.binary = str(build / 'virtqemud')
            self.env['LD_LIBRARY_PATH'] = str(build / 'lib')
            self.module = build / 'drivers' / 'libvirt_driver_qemu.so'
        else:
            self.binary = shutil.which('libvirtd') or '/usr/sbin/libvirtd'
            if not os.path.exists(self.binary):
                skip_or_fail('libvirtd is not installed (apt-get install libvirt-daemon)')
            self.module = next(iter(map(pathlib.Path, glob.glob(
                '/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so'))), None)
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f'im-{daemon}-{driver}-'))
        socket_name = 'libvirt-sock' if daemon == 'libvirtd' else f'{daemon}-sock'
        self.socket = self.dir / 'sock' / socket_name
        self.log = self.dir / f'{daemon}.log'
        for name in ('sock', 'drivers', *BOUND_PATHS):
            (self.dir / name).mkdir()
        self.env['LIBVIRT_DRIVER_DIR'] = str(self.dir / 'drivers')
        self.process: subprocess.Popen | None = None
        settings = (f'unix_sock_dir = "{self.dir / "sock"}"\n'
                    'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    'unix_sock_rw_perms = "0700"\n'
                    f'log_outputs = "3:file:{self.log}"\n'
                    # Each daemon is a host of its own: libvirt refuses a
                    # migration between two with the same host UUID.
                    f'host_uuid = "{uuid.uuid4()}"\n')
        if daemon == 'libvirtd':
            settings += 'listen_tcp = 0\nlisten_tls = 0\n'  # virtqemud has no such
        if driver == 'test':
            self.conf = self.dir / 'libvirtd.conf'
            self.conf.write_text(settings)
            self.uri = f'test+unix:///default?socket={self.socket}'
            self.command = [self.binary, '-f', str(self.conf),
                            '-p', str(self.dir / 'libvirtd.pid')]
        else:
            self._prepare_qemu(settings)
            self.uri = f'qemu:///system?socket={self.socket}'

    def _prepare_qemu(self, settings: str) -> None:
        if os.geteuid() != 0:
            skip_or_fail('a private QEMU libvirtd needs root')
        for need, what in ((self.module, 'libvirt-daemon-driver-qemu'),
                           (shutil.which('qemu-system-x86_64'), 'qemu-system-x86'),
                           (shutil.which('unshare'), 'util-linux')):
            if not need:
                skip_or_fail(f'{what} is not installed')
        (self.dir / 'drivers' / 'libvirt_driver_qemu.so').symlink_to(self.module)
        (self.dir / 'etc' / f'{self.daemon}.conf').write_text(settings)
        (self.dir / 'etc' / 'qemu.conf').write_text(QEMU_CONF)
        # QEMU's capabilities take seconds to probe: keep them between runs
        # (one cache per daemon: each would find the other's out of date).
        cache = test_cache() / ('libvirt-cache' if self.daemon == 'libvirtd'
                                else f'libvirt-cache-{self.daemon}')
        cache.mkdir(exist_ok=True)
        (self.dir / 'cache').rmdir()
        (self.dir / 'cache').symlink_to(cache)
        passwd = pathlib.Path('/etc/passwd').read_text()
        group = pathlib.Path('/etc/group').read_text()
        if not any(line.startswith('libvirt-qemu:') for line in passwd.splitlines()):
            passwd += 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n'
        if not any(line.startswith('libvirt-qemu:') for line in group.splitlines()):
            group += 'libvirt-qemu:x:64055:\n'
        (self.dir / 'passwd').write_text(passwd)
        (self.dir / 'group').write_text(group)
        binds = [(self.dir / 'passwd', '/etc/passwd'),
                 (self.dir / 'group', '/etc/group')]
        binds += [((self.dir / name).resolve(), path)
                  for name, path in BOUND_PATHS.items()]
        script = ['set -e']
        script += [f'mkdir -p {path}' for _, path in binds[2:]]
        script += [f'mount --bind {source} {target}' for source, target in binds]
        script.append(f'exec {self.binary} -f /etc/libvirt/{self.daemon}.conf '
                      f'-p {self.dir / (self.daemon + ".pid")}')
        (self.dir / 'start.sh').write_text('\n'.join(script) + '\n')
        # unshare and sh both exec: the pid we hold is the daemon's.
        self.command = ['unshare', '--mount', '--propagation', 'private',
                        'sh', str(self.dir / 'start.sh')]

    def start(self) -> 'PrivateLibvirtd':
        if self.driver == 'qemu':
            reap_qemus()
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / 'stderr', 'ab'))
        wait_for(self._answers, 30, f'{self.daemon} at {self.socket}')
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f'{self.daemon} exited with {self.process.returncode}: '
                f'{(self.dir / "stderr").read_text()[-2000:]}')
        if not self.socket.exists():
            return False
        try:
            libvirt.open(self.uri).close()
            return True
        except libvirt.libvirtError:
            return False

    def qemu_pid(self, name: str) -> int:
        return int((self.dir / 'run' / 'qemu' / f'{name}.pid').read_text())

    def kill(self) -> None:
        """SIGKILL: libvirtd dies without closing anything."""
        self.process.kill()
        self.process.wait(10)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # in case a test stopped it
            stop_pid(self.process)

    def destroy_guests(self) -> None:
        """Destroy and undefine every guest; kill by pid what libvirt cannot."""
        if self.driver != 'qemu':
            return
        if self.process is not None and self.process.poll() is None:
            try:
                conn = libvirt.open(self.uri)
                for dom in conn.listAllDomains():
                    for action in (dom.destroy, dom.undefine):
                        try:
                            action()
                        except libvirt.libvirtError:
                            pass  # not running, or transient
                conn.close()
            except libvirt.libvirtError:
                pass
        # libvirtd does not kill its QEMUs when it exits.
        for pidfile in (self.dir / 'run' / 'qemu').glob('*.pid'):
            try:
                pid = int(pidfile.read_text())
                cmdline = pathlib.Path(f'/proc/{pid}/cmdline').read_bytes()
            except (OSError, ValueError):
                continue
            if b'qemu-system' in cmdline:
                os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        self.destroy_guests()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class AgentProcess:
    """``instancemonitor --config-file FILE`` as a real process."""

    def __init__(self, config: str, directory: pathlib.Path) -> None:
        self.config_path = directory / 'instancemonitor.conf'
        self.config_path.write_text(config)
        self.log = directory / 'agent.log'
        # Where this process's lines begin: an agent started again in the
        # same directory appends to the log of the one before.
        self.log_start = 0
        self.process: subprocess.Popen | None = None

    def start(self, prefix: tuple[str, ...] = (),
              env: dict[str, str] | None = None,
              module: str = 'instancemonitor.cmd.agent') -> 'AgentProcess':
        """Start it, behind ``prefix`` (a command that execs the rest) if
        given, with ``env`` added to the environment; ``module``: a stand-in
        for the daemon's main module."""
        with open(self.log, 'ab') as log:
            self.log_start = log.tell()
            self.process = subprocess.Popen(
                [*prefix, sys.executable, '-m', module,
                 '--config-file', str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})})
        return self

    def kill(self) -> None:
        """SIGKILL: the agent dies with whatever it had in hand."""
        self.process.kill()
        self.process.wait(10)

    def output(self, own: bool = False) -> str:
        """The log; ``own``: this process's lines only."""
        with open(self.log, 'rb') as log:
            log.seek(self.log_start if own else 0)
            return log.read().decode(errors='replace')

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1,
                 own: bool = False) -> str:
        """``own``: count only this process's lines, not those of an agent
        before it in the same directory."""
        def seen():
            if self.process.poll() is not None:
                raise AssertionError(
                    f'agent exited with {self.process.returncode}:\n{self.output()}')
            return self.output(own).count(text) >= count
        try:
            wait_for(seen, timeout, f'{text!r} in the agent log')
        except AssertionError as error:
            raise AssertionError(
                f'{error}\n--- agent log ---\n{self.output()}') from None
        return self.output()

    def stop(self, timeout: float = 10.0) -> int | None:
        return stop_pid(self.process, timeout) if self.process else None
