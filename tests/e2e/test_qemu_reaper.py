"""The fixtures' QEMU reaper (``tests.processes.reap_qemus``): an orphaned
emulator is reaped at once, and our own children keep their exit status.

In the e2e tier because it makes the test process a child subreaper for the
rest of the session, as every private QEMU libvirtd does."""

import os
import pathlib
import shutil
import signal
import subprocess

import pytest

from tests.processes import proc_stat
from tests.processes import reap_qemus
from tests.processes import wait_for


@pytest.fixture
def emulator(tmp_path: pathlib.Path) -> pathlib.Path:
    """``sleep`` under an emulator's process name."""
    path = tmp_path / 'qemu-system-t'
    shutil.copy(shutil.which('sleep'), path)
    return path


def _orphan(emulator: pathlib.Path) -> int:
    """Start ``emulator`` in the background of a shell that exits at once:
    the process is orphaned to the nearest subreaper, this one."""
    pid = int(subprocess.run(['sh', '-c', f'{emulator} 60 >/dev/null 2>&1 & echo $!'],
                             capture_output=True, text=True, check=True).stdout)
    wait_for(lambda: proc_stat(pid)[0] == emulator.name, 5, 'the emulator started')
    return pid


def test_an_orphaned_emulator_is_reaped_as_soon_as_it_dies(emulator):
    reap_qemus()
    pid = _orphan(emulator)
    try:
        assert proc_stat(pid)[2] == os.getpid()
    finally:
        os.kill(pid, signal.SIGKILL)
    # Gone, zombie included: what libvirt waits for before it reports.
    wait_for(lambda: not pathlib.Path(f'/proc/{pid}').exists(), 2,
             'the killed emulator reaped')


def test_a_child_of_ours_keeps_its_exit_status(emulator):
    reap_qemus()
    child = subprocess.Popen(['sh', '-c', 'exit 3'])
    # While our child waits unreaped, an emulator dying meanwhile is still
    # reaped (found by its parent).
    wait_for(lambda: proc_stat(child.pid)[1] == 'Z', 5, 'our child exited')
    pid = _orphan(emulator)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pathlib.Path(f'/proc/{pid}').exists(), 2,
             'the emulator reaped behind our unreaped child')
    assert child.wait(5) == 3
