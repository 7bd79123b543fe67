"""One agent per ``state_path``: an exclusive lock on a file in it.

Two agents on one state would both send every notification. The lock is
``fcntl.flock`` on ``instancemonitor.lock``, which also holds the pid of its
holder for the message a second agent prints; the kernel drops it when the
holder exits, however it exits. ``instancemonitor-status`` reads the
database without it.
"""

import errno
import fcntl
import logging
import os
import pathlib

LOG = logging.getLogger(__name__)

FILENAME = 'instancemonitor.lock'


class StateLocked(Exception):
    """Another agent holds the state directory."""

    def __init__(self, path: pathlib.Path, holder: str) -> None:
        self.path, self.holder = path, holder
        super().__init__(
            f'another instancemonitor (pid {holder or "unknown"}) holds {path}: '
            'one agent per [DEFAULT] state_path')


class StateLock:
    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = None


def acquire(state_path: str) -> StateLock:
    """Lock ``state_path`` for this process, or raise :class:`StateLocked`.

    A directory that cannot hold the lock file cannot hold the database
    either: the agent then runs with its state in memory (the store says
    so), and there is nothing for a second agent to double.
    """
    path = pathlib.Path(state_path) / FILENAME
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        LOG.warning('Cannot create the lock file %s (%s); not guarding '
                    'against a second agent', path, error)
        return StateLock(None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(fd, 32, 0).decode(errors='replace').strip()
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise StateLocked(path, holder) from None
        LOG.warning('Cannot lock %s (%s); not guarding against a second agent',
                    path, error)
        return StateLock(None)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    return StateLock(fd)
