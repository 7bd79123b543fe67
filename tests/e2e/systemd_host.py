"""A Debian 12 root booted by systemd-nspawn: a real systemd as PID 1, with
the project installed where the unit in ``systemd/`` expects it.

The root (debootstrap, plus a virtualenv in /opt/instancemonitor with the
dependencies this checkout was tested with) is made once and kept in the test
cache; every boot is ``--volatile=overlay``, so what a test writes (the unit,
the configuration, the agent's state) is gone when the container stops.
"""

import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from tests.processes import run_checked
from tests.processes import skip_or_fail
from tests.processes import test_cache
from tests.processes import wait_for

PROJECT = pathlib.Path(__file__).parents[2]
PACKAGES = ('systemd', 'systemd-sysv', 'dbus', 'python3', 'python3-venv',
            'procps', 'libvirt0')
SUITE = 'bookworm'
VENV = '/opt/instancemonitor'


def debian_mirror() -> str:
    """The Debian mirror this machine's apt sources name."""
    sources = [*pathlib.Path('/etc/apt').glob('sources.list'),
               *pathlib.Path('/etc/apt/sources.list.d').glob('*.sources'),
               *pathlib.Path('/etc/apt/sources.list.d').glob('*.list')]
    for path in sources:
        for url in re.findall(r'(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)',
                              path.read_text(), re.MULTILINE):
            if url.rstrip('/').endswith('/debian'):
                return url
    return 'http://deb.debian.org/debian'


def _constraints() -> str:
    """The versions this checkout's virtualenv has: the container gets those."""
    frozen = run_checked([sys.executable, '-m', 'pip', 'freeze', '--exclude-editable'],
                         'pip freeze')
    return ''.join(line + '\n' for line in frozen.splitlines()
                   if line and not line.startswith('-e') and ' @ ' not in line)


def build_wheels(directory: pathlib.Path, with_dependencies: bool) -> None:
    """This checkout as a wheel, and with ``with_dependencies`` the wheels of
    everything it needs at the versions installed here."""
    constraints = directory / 'constraints.txt'
    constraints.write_text(_constraints())
    run_checked([sys.executable, '-m', 'pip', 'wheel', '-q', '-w', str(directory),
                 '-c', str(constraints), *(() if with_dependencies else ('--no-deps',)),
                 str(PROJECT)], 'pip wheel')


def _nspawn() -> list[str]:
    # Both are needed where the host has no systemd (no system bus to
    # register with); see ../shared/reference/systemd-container.md.
    return ['systemd-nspawn', '--quiet', '--register=no', '--keep-unit']


def container_root() -> pathlib.Path:
    """The cached root, made on first use (about two minutes)."""
    for tool, package in (('systemd-nspawn', 'systemd-container'),
                          ('debootstrap', 'debootstrap')):
        if not shutil.which(tool):
            skip_or_fail(f'{tool} is not installed (apt-get install {package})')
    if os.geteuid() != 0:
        skip_or_fail('a systemd container needs root')
    constraints = _constraints()
    key = hashlib.sha256(json.dumps([SUITE, PACKAGES, constraints]).encode())
    root = test_cache() / f'systemd-root-{key.hexdigest()[:12]}'
    with open(test_cache() / 'systemd-root.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time
        if root.exists():
            return root
        for stale in test_cache().glob('systemd-root-*'):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)  # older dependencies
        work = pathlib.Path(tempfile.mkdtemp(prefix='systemd-root-',
                                             dir=test_cache()))
        try:
            tree = work / 'root'
            run_checked(['debootstrap', '--variant=minbase',
                         f'--include={",".join(PACKAGES)}', SUITE, str(tree),
                         debian_mirror()], 'debootstrap')
            wheels = work / 'wheels'
            wheels.mkdir()
            build_wheels(wheels, with_dependencies=True)
            install = (f'python3 -m venv {VENV} && {VENV}/bin/pip install -q '
                       '--no-index --find-links /wheels -c /wheels/constraints.txt '
                       'instancemonitor')
            run_checked([*_nspawn(), '-D', str(tree), f'--bind-ro={wheels}:/wheels',
                         '--', '/bin/sh', '-c', install],
                        'the virtualenv in the container')
            for deb in (tree / 'var/cache/apt/archives').glob('*.deb'):
                deb.unlink()
            tree.rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root


class SystemdHost:
    """The root booted with systemd as PID 1; ``run`` executes in it."""

    def __init__(self, root: pathlib.Path, binds: dict[str, str]) -> None:
        self.root = root
        self.binds = binds  # host path -> path in the container
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='im-systemd-'))
        self.process: subprocess.Popen | None = None
        self.pid1: int | None = None

    def boot(self) -> 'SystemdHost':
        wheels = self.dir / 'wheels'
        wheels.mkdir()
        build_wheels(wheels, with_dependencies=False)
        binds = {**self.binds, str(wheels): '/wheels',
                 str(PROJECT / 'systemd'): '/unit'}
        with open(self.dir / 'console', 'wb') as console:
            self.process = subprocess.Popen(
                [*_nspawn(), '-D', str(self.root), '-M', 'im-systemd', '-b',
                 '--volatile=overlay', '--console=read-only',
                 *(f'--bind={host}:{inside}' for host, inside in binds.items())],
                stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
        # The first child of nspawn is short-lived; PID 1 is named systemd.
        self.pid1 = wait_for(self._find_pid1, 30, 'the container\'s systemd')
        wait_for(lambda: self.run('systemctl', 'is-system-running',
                                  check=False).stdout.strip()
                 in ('running', 'degraded'), 60, 'the container to boot')
        self.run('/bin/sh', '-c', f'{VENV}/bin/pip install -q --no-deps '
                 '--no-index --force-reinstall /wheels/instancemonitor-*.whl')
        self.run('cp', '/unit/instancemonitor.service', '/etc/systemd/system/')
        self.run('systemctl', 'daemon-reload')
        return self

    def _find_pid1(self) -> int | None:
        if self.process.poll() is not None:
            raise AssertionError('systemd-nspawn exited: ' +
                                 (self.dir / 'console').read_text()[-2000:])
        out = subprocess.run(['ps', '--ppid', str(self.process.pid),
                              '-o', 'pid=,comm='], capture_output=True,
                             text=True).stdout
        return next((int(pid) for pid, comm in
                     (line.split(None, 1) for line in out.splitlines())
                     if comm.strip() == 'systemd'), None)

    def run(self, *command: str, check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """A command inside the container, as its root."""
        result = subprocess.run(
            ['nsenter', '-t', str(self.pid1), '-a', '--', *command],
            capture_output=True, text=True, input=input, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f'{" ".join(command)} exited with '
                                 f'{result.returncode}: {result.stderr[-2000:]}')
        return result

    def write(self, path: str, text: str) -> None:
        self.run('/bin/sh', '-c', f'mkdir -p "$(dirname {path})" && cat > {path}',
                 input=text)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run('systemctl', 'show', unit,
                       '-p', ','.join(properties)).stdout
        return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)

    def journal(self, unit: str) -> str:
        return self.run('journalctl', '-u', unit, '-o', 'cat', '--no-pager').stdout

    def shutdown(self) -> None:
        """Power off through PID 1, else kill nspawn; by pid, always."""
        if self.process is not None and self.process.poll() is None:
            if self.pid1:
                os.kill(self.pid1, signal.SIGRTMIN + 4)  # systemd: poweroff
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # nspawn leaves empty cgroups behind where the host has no systemd.
        for group in ('payload/init.scope', 'payload', 'supervisor'):
            for hierarchy in ('systemd', 'unified'):
                try:
                    os.rmdir(f'/sys/fs/cgroup/{hierarchy}/{group}')
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
