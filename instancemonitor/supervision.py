"""Telling systemd how the agent is: READY, STATUS and the watchdog.

``WATCHDOG=1`` is sent only while every thread the agent depends on has
shown progress recently, so that a wedged daemon is restarted by systemd
rather than left to miss failures. Each such thread marks its progress at
least every ``PROGRESS_TICK`` seconds, busy or idle; the libvirt event loop
through a libvirt timer whose callback only records the time.
"""

import logging
import os
import threading
from collections.abc import Callable

from systemd import daemon

from instancemonitor import clock

LOG = logging.getLogger(__name__)



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
                 notify: Callable[[str], bool] = daemon.notify) -> None:
        self._liveness = liveness
        self._status = status
        self._notify = notify
        self._watchdog = watchdog_interval()
        self._last_status = ''
        self._reported_stale: list[str] = []

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
        stale = self._liveness.stale(self._watchdog)
        if not stale:
            self._notify('WATCHDOG=1')
        elif stale != self._reported_stale:
            LOG.error('No progress from %s for over %.0f s: not petting the '
                      'systemd watchdog, so that the agent is restarted',
                      ', '.join(stale), self._watchdog)
        self._reported_stale = stale
