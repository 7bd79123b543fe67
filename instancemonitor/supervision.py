"""Telling systemd how the agent is: READY, STATUS and the watchdog.

``WATCHDOG=1`` is sent only while every thread the agent depends on has
shown progress recently, so that a wedged daemon is restarted by systemd
rather than left to miss failures. Each such thread marks its progress at
least every ``PROGRESS_TICK`` seconds, busy or idle; the libvirt event loop
through a libvirt timer whose callback only records the time. A thread
that waits on a libvirtd that does not answer is not wedged: a restart
would not make libvirtd answer, and would lose the events it still owes
the connection kept for them.
"""

import logging
import os
import threading
from collections.abc import Callable

from systemd import daemon

from instancemonitor import clock

LOG = logging.getLogger(__name__)


class ThreadDeaths:
    """Unexpected ends of the agent's threads.

    An exception nobody caught is logged at CRITICAL with its traceback, and
    the thread's name kept; the main loop then stops the agent and exits
    non-zero, so that systemd restarts it. Nothing is lost by that: the
    state is on disk, and the scan at start finds what happened meanwhile.
    A thread that ended without an exception is found by :meth:`ended`.
    """

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._died: list[str] = []

    def install(self) -> None:
        threading.excepthook = self._hook

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else 'unknown'
        LOG.critical('Thread %s died of an unexpected %s; the agent stops so '
                     'that it is restarted', name, args.exc_type.__name__,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        with self._lock:
            self._died.append(name)
        self._wake()

    def ended(self, threads: list[threading.Thread]) -> list[str]:
        """Names of the threads that died or ended, of those that should run
        for as long as the agent does."""
        with self._lock:
            died = list(self._died)
        return died + [t.name for t in threads
                       if not t.is_alive() and t.name not in died]


class Liveness:
    """Progress marks by name (a thread or a component)."""

    def __init__(self, monotonic: Callable[[], float] = clock.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        with self._lock:
            self._marks[name] = self._monotonic()

    def stale(self, max_age: float) -> list[str]:
        """Names that showed no progress for more than ``max_age`` seconds."""
        now = self._monotonic()
        with self._lock:
            return sorted(name for name, at in self._marks.items()
                          if now - at > max_age)


def watchdog_interval() -> float | None:
    """Seconds systemd allows between WATCHDOG=1, if it watches us."""
    usec = os.environ.get('WATCHDOG_USEC')
    pid = os.environ.get('WATCHDOG_PID')
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def _progress_tick() -> float:
    watchdog = watchdog_interval()
    return 5.0 if watchdog is None else min(5.0, watchdog / 4)


# How often every watched thread marks progress, busy or idle: four times
# per watchdog interval, and at least every 5 s.
PROGRESS_TICK = _progress_tick()


class Supervisor:
    """Speaks sd_notify for the agent (a no-op outside systemd)."""

    def __init__(self, liveness: Liveness, status: Callable[[], str],
                 notify: Callable[[str], bool] = daemon.notify,
                 waiting: Callable[[], list[str]] = list) -> None:
        """``waiting``: the names of the threads that may be waiting on
        libvirtd now that it does not answer (none while it does)."""
        self._liveness = liveness
        self._status = status
        self._send = notify
        self._waiting = waiting
        self._watchdog = watchdog_interval()
        self._last_status = ''
        self._reported_stale: list[str] = []
        self._reported_waiting: list[str] = []

    def _notify(self, message: str) -> None:
        # sd_notify is C: a signal during its sendmsg() is EINTR, not retried.
        for _ in range(3):
            try:
                self._send(message)
                return
            except InterruptedError:
                continue
            except OSError as error:
                LOG.warning('Cannot notify systemd (%s): %s', message, error)
                return

    @property
    def tick(self) -> float:
        """How often :meth:`check` should run."""
        return PROGRESS_TICK

    def ready(self) -> None:
        self._last_status = self._status()
        self._notify(f'READY=1\nSTATUS={self._last_status}')

    def stopping(self) -> None:
        self._notify('STOPPING=1\nSTATUS=stopping')

    def check(self) -> None:
        """Send STATUS when it changed and WATCHDOG=1 while all is well."""
        status = self._status()
        if status != self._last_status:
            self._notify(f'STATUS={status}')
            self._last_status = status
        if self._watchdog is None:
            return
        self._excuse_waiting()
        stale = self._liveness.stale(self._watchdog)
        if not stale:
            self._notify('WATCHDOG=1')
        elif stale != self._reported_stale:
            LOG.error('No progress from %s for over %.0f s: not petting the '
                      'systemd watchdog, so that the agent is restarted',
                      ', '.join(stale), self._watchdog)
        self._reported_stale = stale

    def _excuse_waiting(self) -> None:
        """Waiting on a libvirtd that does not answer counts as progress,
        so each such thread has ``WatchdogSec`` from its answer on."""
        waiting = self._waiting()
        for name in waiting:
            self._liveness.mark(name)
        if waiting and waiting != self._reported_waiting:
            LOG.warning('libvirtd does not answer: the watchdog excuses %s, '
                        'which may be waiting on it, until it answers',
                        ', '.join(waiting))
        elif self._reported_waiting and not waiting:
            LOG.info('libvirtd answers again: %s must show progress within '
                     '%.0f s', ', '.join(self._reported_waiting), self._watchdog)
        self._reported_waiting = waiting
