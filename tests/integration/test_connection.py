"""The kept-open libvirt connection against a private libvirtd.

A libvirtd that stops answering (SIGSTOP, past keepalive) leaves the
connection open: the calls in flight on it go on once it answers. libvirt
9.0's client, when keepalive closes a connection with two or more calls in
flight, leaves one waiting and crashes in it once libvirtd answers again;
with keepalive on a connection of its own, this test's process would die.

A libvirtd that exits closes the connection: it is closed on our side only
once no thread is inside a call on it (closing it under a call in flight
frees it under that call: a crash too)."""

import logging
import signal
import threading

import libvirt
import pytest

from instancemonitor.virt import connection as connection_module
from instancemonitor.virt import eventloop
from instancemonitor.virt.connection import LibvirtConnection
from tests.processes import wait_for


class Borrower(threading.Thread):
    """Borrows the connection, makes one call, then keeps it borrowed until
    ``release`` is set (or at once, if ``hold`` is False)."""

    def __init__(self, connection: LibvirtConnection, release: threading.Event,
                 hold: bool = True) -> None:
        super().__init__(name='borrower', daemon=True)
        self.connection, self.release, self.hold = connection, release, hold
        self.lent: libvirt.virConnect | None = None
        self.told: list[str] = []

    def run(self) -> None:
        with self.connection.borrowed() as conn:
            self.lent = conn
            try:
                conn.listAllDomains()
                self.told.append('answered')
            except libvirt.libvirtError as error:
                self.told.append(error.get_error_message())
            if self.hold:
                self.release.wait(30)


@pytest.fixture
def kept(test_libvirtd, monkeypatch):
    """A started connection to ``test_libvirtd`` (keepalive 1 s x 1), the
    connections it closed, and the event that ends every borrower."""
    eventloop.start()  # keepalive runs on libvirt's event loop
    closed: list[libvirt.virConnect] = []
    close = LibvirtConnection._close
    monkeypatch.setattr(LibvirtConnection, '_close', staticmethod(
        lambda conn, ids: (closed.append(conn), close(conn, ids))))
    connection = LibvirtConnection(test_libvirtd.uri, keepalive_interval=1,
                                   keepalive_count=1, reconnect_interval=0.05)
    release = threading.Event()
    connection.start()
    try:
        assert connection.wait_connected(10)
        yield connection, closed, release
    finally:
        test_libvirtd.signal(signal.SIGCONT)
        release.set()
        connection.stop()
        assert not connection.thread.is_alive()


def test_a_hung_libvirtd_keeps_the_connection_and_its_calls_go_on(
        test_libvirtd, kept, caplog):
    caplog.set_level(logging.INFO, logger=connection_module.__name__)
    connection, closed, release = kept
    test_libvirtd.signal(signal.SIGSTOP)
    borrowers = [Borrower(connection, release, hold=False) for _ in range(3)]
    for borrower in borrowers:
        borrower.start()
    wait_for(lambda: not connection.connected, 10, 'keepalive to time out')
    assert 'does not answer (keepalive timed out)' in caplog.text
    # Past keepalive, every call still waits for libvirtd's answer...
    assert not any(borrower.told for borrower in borrowers)
    test_libvirtd.signal(signal.SIGCONT)
    # ...and gets it once libvirtd answers again, on the same connection.
    for borrower in borrowers:
        borrower.join(10)
    assert [borrower.told for borrower in borrowers] == [['answered']] * 3
    wait_for(lambda: connection.connected, 10, 'libvirtd to answer again')
    assert 'answers again after' in caplog.text
    assert connection.connects == 1
    assert borrowers[0].lent not in closed
    with connection.borrowed() as conn:
        assert conn is borrowers[0].lent


def test_a_lost_connection_closes_once_the_call_in_flight_is_over(
        test_libvirtd, kept):
    connection, closed, release = kept
    borrower = Borrower(connection, release)
    borrower.start()
    wait_for(lambda: borrower.told, 10, 'the call')
    test_libvirtd.kill()
    wait_for(lambda: not connection.connected, 10, 'the connection to be lost')
    # Lost and lent no more, but not closed while a thread uses it.
    wait_for(lambda: not _lends(connection), 5, 'the connection to be withdrawn')
    assert not release.wait(0.3)
    assert borrower.lent not in closed
    release.set()
    wait_for(lambda: borrower.lent in closed, 5, 'the lost connection to be closed')
    test_libvirtd.start()
    wait_for(lambda: connection.connected, 10, 'the reconnection')
    assert connection.connects == 2
    with connection.borrowed() as new:
        assert new is not None and new is not borrower.lent
        assert new.listAllDomains() is not None


def test_a_call_that_never_returns_ends_the_connection_thread_to_restart_the_agent(
        test_libvirtd, kept, monkeypatch, caplog):
    # The thread ends (the agent then stops with status 70, for systemd to
    # restart it), and never closes the connection under that call.
    monkeypatch.setattr(connection_module, 'RELEASE_WAIT', 0.5)
    caplog.set_level(logging.WARNING, logger=connection_module.__name__)
    connection, closed, release = kept
    borrower = Borrower(connection, release)
    borrower.start()
    wait_for(lambda: borrower.told, 10, 'the call')
    test_libvirtd.kill()
    connection.thread.join(10)
    assert not connection.thread.is_alive()
    assert 'has not returned 0.5 s after the connection' in caplog.text
    assert borrower.lent not in closed
    assert connection.connects == 1


def _lends(connection: LibvirtConnection) -> bool:
    with connection.borrowed() as conn:
        return conn is not None
