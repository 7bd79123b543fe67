"""The kept-open libvirt connection against a private libvirtd: a lost
connection is closed only once no thread is inside a call on it.

libvirtd is stopped (SIGSTOP) while a thread is inside a call, so that
keepalive declares the connection lost under that call, as on a host whose
libvirtd hangs. Closing a connection under a call in flight frees it under
that call: the agent died of a segmentation fault that way."""

import logging
import signal
import threading

import libvirt
import pytest

from instancemonitor.virt import connection as connection_module
from instancemonitor.virt import eventloop
from instancemonitor.virt.connection import LibvirtConnection
from tests.processes import wait_for


@pytest.fixture
def lost_under_a_call(test_libvirtd, monkeypatch):
    """A started connection to ``test_libvirtd``, the connections it closed,
    and a function that loses it while a thread is inside a call; that
    thread keeps the connection borrowed until the event it returns is set.
    """
    eventloop.start()  # keepalive runs on libvirt's event loop
    closed: list[libvirt.virConnect] = []
    close = LibvirtConnection._close
    monkeypatch.setattr(LibvirtConnection, '_close', staticmethod(
        lambda conn, ids: (closed.append(conn), close(conn, ids))))
    connection = LibvirtConnection(test_libvirtd.uri, keepalive_interval=1,
                                   keepalive_count=1, reconnect_interval=0.05)
    borrowers: list[threading.Thread] = []
    released = threading.Event()

    def lose() -> tuple[libvirt.virConnect, list[str]]:
        lent, told = [], []

        def borrower() -> None:
            with connection.borrowed() as conn:
                lent.append(conn)
                try:
                    conn.listAllDomains()
                    told.append('answered')
                except libvirt.libvirtError as error:
                    told.append(error.get_error_message())
                released.wait(30)
        test_libvirtd.signal(signal.SIGSTOP)
        thread = threading.Thread(target=borrower, name='borrower', daemon=True)
        borrowers.append(thread)
        thread.start()
        wait_for(lambda: not connection.connected, 10, 'keepalive to lose it')
        wait_for(lambda: told, 10, 'the call in flight to fail')
        return lent[0], told

    connection.start()
    try:
        assert connection.wait_connected(10)
        yield connection, closed, lose, released
    finally:
        test_libvirtd.signal(signal.SIGCONT)
        released.set()
        for thread in borrowers:
            thread.join(10)
        connection.stop()
        assert not connection.thread.is_alive()


def test_a_lost_connection_closes_once_the_call_in_flight_is_over(
        test_libvirtd, lost_under_a_call):
    connection, closed, lose, released = lost_under_a_call
    conn, told = lose()
    assert told != ['answered']
    # Lost and lent no more, but not closed while a thread uses it.
    wait_for(lambda: not _lends(connection), 5, 'the connection to be withdrawn')
    assert not released.wait(0.3)
    assert closed == []
    released.set()
    wait_for(lambda: closed == [conn], 5, 'the lost connection to be closed')
    # libvirtd answers again: a new connection, lent to every caller.
    test_libvirtd.signal(signal.SIGCONT)
    wait_for(lambda: connection.connected, 10, 'the reconnection')
    assert connection.connects == 2
    with connection.borrowed() as new:
        assert new is not None and new is not conn
        assert new.listAllDomains() is not None


def test_a_call_that_never_returns_ends_the_connection_thread_to_restart_the_agent(
        test_libvirtd, lost_under_a_call, monkeypatch, caplog):
    # libvirt's client can leave a call waiting for ever on a connection that
    # keepalive closed, and crash in it once libvirtd answers: the thread
    # ends (the agent then stops with status 70, for systemd to restart it),
    # and never closes the connection under that call.
    monkeypatch.setattr(connection_module, 'RELEASE_WAIT', 0.5)
    caplog.set_level(logging.WARNING, logger=connection_module.__name__)
    connection, closed, lose, _released = lost_under_a_call
    conn, _ = lose()
    connection.thread.join(5)
    assert not connection.thread.is_alive()
    assert 'has not returned 0.5 s after the connection' in caplog.text
    assert conn not in closed
    assert connection.connects == 1


def _lends(connection: LibvirtConnection) -> bool:
    with connection.borrowed() as conn:
        return conn is not None
