"""virtqemud, libvirt's modular QEMU daemon, built from Debian's own source of
the libvirt installed here.

Debian 12 ships only the monolithic libvirtd (its rules build the modular
daemons and leave them out of the packages). Fedora, RHEL 9 and upstream's
default are the modular daemons, reached through the same ``qemu:///system``.
So the tests build Debian's libvirt source (with Debian's patches), only the
daemon and the QEMU driver, once, into the test cache (about two and a half
minutes on two cores), and run it as they run libvirtd.
"""

import fcntl
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

from tests.processes import run_checked
from tests.processes import skip_or_fail
from tests.processes import test_cache

BUILD_TOOLS = ('dpkg-source', 'meson', 'ninja', 'gcc', 'pkg-config')


def _source_lists(directory: pathlib.Path) -> None:
    """The host's apt sources, as deb-src, in ``directory``."""
    directory.mkdir()
    parts = pathlib.Path('/etc/apt/sources.list.d')
    for path in [pathlib.Path('/etc/apt/sources.list'), *sorted(parts.glob('*'))]:
        if path.suffix == '.sources':
            text = re.sub(r'^Types:.*$', 'Types: deb-src', path.read_text(),
                          flags=re.MULTILINE)
            (directory / path.name).write_text(text)
        elif path.suffix == '.list' or path.name == 'sources.list':
            if path.exists():
                lines = [re.sub(r'^deb\s', 'deb-src ', line)
                         for line in path.read_text().splitlines()
                         if line.startswith('deb ')]
                (directory / f'{path.stem}.list').write_text('\n'.join(lines) + '\n')


def virtqemud_build() -> pathlib.Path:
    """A directory with ``virtqemud``, ``lib/`` (its libvirt libraries) and
    ``drivers/`` (the QEMU driver module), made on first use."""
    version = subprocess.run(['dpkg-query', '-W', '-f=${Version}', 'libvirt0'],
                             capture_output=True, text=True).stdout.strip()
    if not version:
        skip_or_fail('libvirt0 is not installed (apt-get install libvirt-daemon)')
    missing = [tool for tool in BUILD_TOOLS if not shutil.which(tool)]
    if missing:
        skip_or_fail(f'building virtqemud needs {", ".join(missing)} '
                     '(./quickstart.sh installs them)')
    built = test_cache() / f'virtqemud-{version}'
    with open(test_cache() / 'virtqemud.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (built / 'virtqemud').exists():
            return built
        work = pathlib.Path(tempfile.mkdtemp(prefix='virtqemud-', dir=test_cache()))
        try:
            _build(version, work)
            out = work / 'out'
            for name in ('lib', 'drivers'):
                (out / name).mkdir(parents=True)
            src = work / 'build' / 'src'
            shutil.copy2(src / 'virtqemud', out / 'virtqemud')
            shutil.copy2(src / 'libvirt_driver_qemu.so', out / 'drivers')
            for library in src.glob('libvirt*.so.0*'):
                if library.is_file() and not library.name.endswith('.p'):
                    shutil.copy2(library, out / 'lib', follow_symlinks=False)
            shutil.rmtree(built, ignore_errors=True)
            out.rename(built)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return built


def _build(version: str, work: pathlib.Path) -> None:
    _source_lists(work / 'sources')
    (work / 'lists' / 'partial').mkdir(parents=True)
    (work / 'none.list').write_text('')
    apt = ['-o', f'Dir::Etc::sourcelist={work / "none.list"}',
           '-o', f'Dir::Etc::sourceparts={work / "sources"}',
           '-o', f'Dir::State::Lists={work / "lists"}']
    run_checked(['apt-get', *apt, 'update'], 'apt-get update (deb-src)', cwd=work)
    run_checked(['apt-get', *apt, 'source', '--download-only', f'libvirt={version}'],
                f'apt-get source libvirt={version}', cwd=work)
    (dsc,) = work.glob('libvirt_*.dsc')
    run_checked(['dpkg-source', '-x', dsc.name, 'src'], 'dpkg-source -x', cwd=work)
    # Debian's paths and user; only what virtqemud and its QEMU driver need.
    multiarch = run_checked(['dpkg-architecture', '-qDEB_HOST_MULTIARCH'],
                            'dpkg-architecture', cwd=work).strip()
    run_checked(['meson', 'setup', str(work / 'build'), '--prefix=/usr',
                 '--sysconfdir=/etc', '--localstatedir=/var', '-Drunstatedir=/run',
                 f'--libdir=lib/{multiarch}', '-Dauto_features=disabled',
                 '-Ddriver_qemu=enabled', '-Ddriver_remote=enabled',
                 '-Ddriver_libvirtd=enabled', '-Dyajl=enabled', '-Ddocs=disabled',
                 '-Dtests=disabled', '-Drpath=disabled', '-Dinit_script=none'],
                'meson setup', cwd=work / 'src')
    run_checked(['ninja', '-C', str(work / 'build'), f'-j{os.cpu_count() or 2}',
                 'src/virtqemud', 'src/libvirt_driver_qemu.so'], 'ninja', cwd=work)
