"""When the supervisor pets systemd's watchdog: threads that wait on a
libvirtd that does not answer are not wedged; every other one still is.
And when the connection says libvirtd does not answer."""

import logging

import libvirt
import pytest

from instancemonitor.supervision import Liveness
from instancemonitor.supervision import Supervisor
from instancemonitor.virt.connection import LibvirtConnection


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watched(monkeypatch):
    """A supervisor under a 60 s watchdog, its clock, what it sent, and the
    names it is told wait on libvirtd."""
    monkeypatch.setenv('WATCHDOG_USEC', '60000000')
    monkeypatch.delenv('WATCHDOG_PID', raising=False)
    clock = Clock()
    liveness = Liveness(clock)
    sent: list[str] = []
    waiting: list[str] = []
    supervisor = Supervisor(liveness, lambda: 'ok', notify=sent.append,
                            waiting=lambda: list(waiting))
    for name in ('reconcile', 'event-dispatch'):
        liveness.mark(name)
    return supervisor, clock, sent, waiting


def _petted(supervisor: Supervisor, sent: list[str]) -> bool:
    sent.clear()
    supervisor.check()
    return 'WATCHDOG=1' in sent


def test_a_thread_waiting_on_a_silent_libvirtd_is_not_wedged(watched, caplog):
    supervisor, clock, sent, waiting = watched
    waiting.append('reconcile')
    clock.now += 600  # reconcile in a call for ten minutes, event-dispatch idle
    assert not _petted(supervisor, sent)
    assert 'No progress from event-dispatch for over 60 s' in caplog.text
    assert 'No progress from event-dispatch, reconcile' not in caplog.text
    assert 'the watchdog excuses reconcile, which may be waiting' in caplog.text


def test_once_libvirtd_answers_the_thread_has_a_whole_interval_then_is_wedged(
        watched, caplog):
    caplog.set_level(logging.INFO, logger='instancemonitor.supervision')
    supervisor, clock, sent, waiting = watched
    liveness = supervisor._liveness
    waiting.append('reconcile')
    for _ in range(40):  # ten minutes of silence, checked every 15 s
        clock.now += 15
        liveness.mark('event-dispatch')
        assert _petted(supervisor, sent)
    waiting.clear()
    clock.now += 15
    liveness.mark('event-dispatch')
    assert _petted(supervisor, sent)
    assert 'libvirtd answers again: reconcile must show progress within 60 s' \
        in caplog.text
    clock.now += 46  # 61 s after the last check that found libvirtd silent
    liveness.mark('event-dispatch')
    assert not _petted(supervisor, sent)
    assert 'No progress from reconcile for over 60 s' in caplog.text


@pytest.mark.parametrize('reason, answering', [
    (libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE, False),
    (libvirt.VIR_CONNECT_CLOSE_REASON_EOF, True),  # down, not silent
])
def test_the_sentinel_closing_on_keepalive_is_told_at_once(reason, answering):
    # Whatever the connection's thread is doing (say, still registering
    # callbacks on the connection it just opened), not only once it notices.
    connection = LibvirtConnection('test:///default')
    assert connection.answering
    connection._on_sentinel_close(None, reason, None)  # libvirt's event loop
    assert connection.answering is answering
