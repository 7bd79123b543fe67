"""A tiny guest that runs the QEMU guest agent, built from Debian packages.

``apt-get download`` fetches the kernel, busybox-static and
qemu-guest-agent into the test cache; nothing is installed on the host.
The initramfs holds busybox, the virtio modules the agent's channel needs,
and qemu-ga with its shared libraries (copied from the host, where QEMU's
own dependencies put them). It boots under TCG in 128 MiB and answers
``guest-ping`` through libvirt about 10 s after start.
"""

import gzip
import os
import pathlib
import re
import shutil
import stat
import subprocess
import tempfile

from tests.processes import skip_or_fail
from tests.processes import test_cache

# What the agent's virtio-serial channel needs; their dependencies are added.
MODULES = ('virtio_pci', 'virtio_console')

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
port=
while [ -z "$port" ]; do
  # A port can appear between the glob and the read: skip the unexpanded
  # pattern, and quote "$f" so that it is not expanded a second time.
  for f in /sys/class/virtio-ports/*/name; do
    [ -e "$f" ] || continue
    d=${{f%/name}}
    [ "$(cat "$f" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${{d##*/}}
  done
  [ -z "$port" ] && sleep 0.2
done
# qemu-ga runs "/sbin/shutdown -h -P|-H|-r +0 MESSAGE" for guest-shutdown
# (virsh shutdown, virsh reboot --mode agent).
printf '#!/bin/sh\\ncase " $* " in *" -r "*) exec reboot -f;; *) exec poweroff -f;; esac\\n' >/sbin/shutdown
chmod +x /sbin/shutdown
echo "instancemonitor test guest: agent on $port"
qemu-ga -m virtio-serial -p "$port" -t /run &
while true; do sleep 3600; done
"""


def _run(*command: str, cwd: pathlib.Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        skip_or_fail(f'{" ".join(command)} failed: {result.stderr[-1500:]}')
    return result.stdout


def _newc(root: pathlib.Path, out: pathlib.Path) -> None:
    """Write ``root`` as a gzip'd cpio archive in the kernel's newc format."""
    def entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        header = b'070701' + b''.join(b'%08X' % f for f in fields)
        blob = header + name.encode() + b'\0'
        blob += b'\0' * (-len(blob) % 4)
        return blob + data + b'\0' * (-len(data) % 4)

    with gzip.open(out, 'wb', compresslevel=1) as archive:
        paths = sorted(root.rglob('*'))
        for ino, path in enumerate(paths, start=1):
            info = path.lstat()
            data = b'' if stat.S_ISDIR(info.st_mode) else path.read_bytes()
            archive.write(entry(str(path.relative_to(root)), info.st_mode, data, ino))
        archive.write(entry('TRAILER!!!', 0, b'', 0))


def _modules_in_load_order(kernel_dir: pathlib.Path) -> list[pathlib.Path]:
    """MODULES and what they depend on (``depends=`` in each .modinfo), deps first."""
    files = {path.stem.replace('-', '_'): path for path in kernel_dir.rglob('*.ko')}
    ordered: list[pathlib.Path] = []

    def add(name: str) -> None:
        path = files[name]
        if path in ordered:
            return
        found = re.search(rb'depends=([^\0]*)', path.read_bytes())
        for dependency in filter(None, (found.group(1) if found else b'').split(b',')):
            add(dependency.decode().replace('-', '_'))
        ordered.append(path)

    for name in MODULES:
        add(name)
    return ordered


def _host_libraries(binary: pathlib.Path) -> list[str]:
    libraries = []
    for line in _run('ldd', str(binary)).splitlines():
        parts = line.split()
        if '=>' in parts and parts[-1].startswith('('):
            if parts[2] == 'not':
                skip_or_fail(f'{binary.name} needs {parts[0]}, missing on this host')
            libraries.append(parts[2])
        elif parts and parts[0].startswith('/'):
            libraries.append(parts[0])
    return libraries


def agent_guest_image() -> tuple[pathlib.Path, pathlib.Path]:
    """(kernel, initramfs) of the guest, built once and kept in the cache."""
    # The name changes with INIT, so a cached image is never a stale one.
    cache = test_cache() / 'agent-guest-4'
    kernel, initrd = cache / 'vmlinuz', cache / 'initrd.img'
    if (cache / '.complete').exists():
        return kernel, initrd
    for tool in ('apt-get', 'apt-cache', 'dpkg-deb', 'ldd'):
        if not shutil.which(tool):
            skip_or_fail(f'{tool} is needed to build the test guest')
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix='im-guest-') as work:
        work = pathlib.Path(work)
        depends = _run('apt-cache', 'depends', 'linux-image-amd64')
        image = next(line.split()[-1] for line in depends.splitlines()
                     if 'Depends: linux-image-' in line)
        _run('apt-get', 'download', '-q', image, 'busybox-static',
             'qemu-guest-agent', cwd=work)
        extracted = work / 'root'
        for deb in work.glob('*.deb'):
            _run('dpkg-deb', '-x', str(deb), str(extracted))
        tree = work / 'initrd'
        for directory in ('bin', 'sbin', 'proc', 'sys', 'dev', 'tmp', 'run',
                          'lib/modules'):
            (tree / directory).mkdir(parents=True)
        shutil.copy(extracted / 'bin' / 'busybox', tree / 'bin' / 'busybox')
        qemu_ga = extracted / 'usr' / 'sbin' / 'qemu-ga'
        shutil.copy(qemu_ga, tree / 'sbin' / 'qemu-ga')
        for library in _host_libraries(qemu_ga):
            target = tree / library.lstrip('/')
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(library, target)  # follows symlinks: the real file
        (modules_root,) = (extracted / 'lib' / 'modules').iterdir()
        modules = _modules_in_load_order(modules_root / 'kernel')
        for module in modules:
            shutil.copy(module, tree / 'lib' / 'modules' / module.name)
        init = tree / 'init'
        init.write_text(INIT.format(modules=' '.join(m.stem for m in modules)))
        os.chmod(init, 0o755)
        _newc(tree, initrd)
        (vmlinuz,) = (extracted / 'boot').glob('vmlinuz-*')
        shutil.copy(vmlinuz, kernel)
    (cache / '.complete').touch()
    return kernel, initrd
