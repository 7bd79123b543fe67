"""A libvirt connection that is kept open for ever.

A supervisor thread opens the connection, lets each registered party add
its callbacks, then waits for the connection to close (close callback:
libvirtd exited or the socket failed). It then reconnects with capped
exponential backoff, for ever, and registers everything again. Each
transition is logged once, not every retry.

Keepalive runs on a second connection, the sentinel, on which no call is
ever made: libvirt 9.0's client, when keepalive closes a connection with
two or more calls in flight, fails one and leaves the others waiting, then
crashes in them once libvirtd answers again. So a libvirtd that stops
answering (hung, or stopped) is reported, and the connection kept: the
calls waiting on it, and the events, go on once it answers again, and
nothing is missed meanwhile. :attr:`LibvirtConnection.answering` says
whether libvirtd answers, so that threads waiting on it are not taken for
wedged.

Other threads query the connection only inside ``borrowed()``: a lost
connection is closed once no thread is inside a call on it (closing it
under a call in flight frees it under that call: a crash).

The close callbacks run on libvirt's event-loop thread, so they only
record the reason and set an event.
"""

import contextlib
import logging
import threading
from collections.abc import Callable
from collections.abc import Iterator

import libvirt

from instancemonitor import clock
from instancemonitor.supervision import PROGRESS_TICK

LOG = logging.getLogger(__name__)

THREAD_NAME = 'libvirt-connection'

# Registers a party's callbacks on a fresh connection; returns the callback
# ids to deregister when the connection is closed on purpose.
Registrar = Callable[[libvirt.virConnect], list[int]]

# Lends the open connection (or None) for the duration of a with block.
Borrow = Callable[[], contextlib.AbstractContextManager[libvirt.virConnect | None]]

# Seconds a lost connection waits for the threads inside calls on it to
# return before it is closed (calls on a lost connection fail at once);
# past that, the connection thread ends and the agent is restarted.
RELEASE_WAIT = 10.0

_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: 'I/O error',
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: 'libvirtd closed the connection',
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: 'keepalive timed out',
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: 'closed by the client',
}


class LibvirtConnection:
    def __init__(self, uri: str, keepalive_interval: int = 5,
                 keepalive_count: int = 3, reconnect_interval: float = 0.5,
                 reconnect_interval_max: float = 10.0,
                 progress: Callable[[], None] = lambda: None) -> None:
        """``progress`` is called at least every ``PROGRESS_TICK`` seconds
        while the thread is not stuck in a libvirt call."""
        self.uri = uri
        self._progress = progress
        self._keepalive = (keepalive_interval, keepalive_count)
        self._backoff = (reconnect_interval, reconnect_interval_max)
        self._registrars: list[Registrar] = []
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._close_reason: int | None = None
        # The sentinel: keepalive only (None where the driver has none).
        self._sentinel: libvirt.virConnect | None = None
        self._sentinel_closed = threading.Event()
        self._sentinel_reason: int | None = None
        self._conn: libvirt.virConnect | None = None
        # Threads inside borrowed(); notified when one leaves.
        self._users = 0
        self._users_changed = threading.Condition()
        self._connected = threading.Event()
        # While waiting for libvirtd to answer again once keepalive timed
        # out; and since when a connection is being opened (monotonic).
        self._silent = False
        self._opening_since: float | None = None
        self.connects = 0
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME,
                                        daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def on_connect(self, registrar: Registrar) -> None:
        """Call ``registrar`` on every new connection (before ``start``).

        Registrars run on the connection thread before the connection is
        taken for open: they register callbacks and hand anything slow to
        a thread of their own."""
        self._registrars.append(registrar)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def answering(self) -> bool:
        """False while libvirtd is known not to answer: its keepalive timed
        out and it has not answered since (told at once, whatever this
        connection's thread is doing), or a connection has been opening for
        longer than keepalive would wait (an open has no timeout). A
        libvirtd that is down (refusing connections) answers, in this sense:
        nothing waits on it."""
        if self._silent or (
                self._sentinel_closed.is_set() and
                self._sentinel_reason == libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE):
            return False
        opening = self._opening_since
        interval, count = self._keepalive
        return opening is None or (
            clock.monotonic() - opening <= interval * (count + 1))

    @contextlib.contextmanager
    def borrowed(self) -> Iterator[libvirt.virConnect | None]:
        """The open connection, if any, kept from being closed until the
        with block ends (keep it short: a lost connection waits for it)."""
        with self._users_changed:
            conn = self._conn
            if conn is not None:
                self._users += 1
        try:
            yield conn
        finally:
            if conn is not None:
                with self._users_changed:
                    self._users -= 1
                    self._users_changed.notify_all()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._closed.set()
        self._thread.join(timeout)

    def _on_close(self, _conn: libvirt.virConnect, reason: int,
                  _opaque: object) -> None:
        # NOTE: runs on libvirt's event-loop thread: record and signal only.
        self._close_reason = reason
        self._closed.set()

    def _on_sentinel_close(self, _conn: libvirt.virConnect, reason: int,
                           _opaque: object) -> None:
        # NOTE: runs on libvirt's event-loop thread: record and signal only.
        self._sentinel_reason = reason
        self._sentinel_closed.set()
        self._closed.set()

    def _run(self) -> None:
        failures = 0
        lost_at: float | None = None
        delay = self._backoff[0]
        while not self._stop.is_set():
            self._progress()
            try:
                conn, callback_ids = self._open()
            except libvirt.libvirtError as error:
                if failures == 0:
                    LOG.error('Cannot connect to libvirt at %s (%s); '
                              'retrying until it answers', self.uri,
                              error.get_error_message())
                failures += 1
                self._wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            if lost_at is None:
                LOG.info('Connected to libvirt at %s', self.uri)
            else:
                LOG.info('Reconnected to libvirt at %s after %.1f s '
                         '(%d failed attempts)', self.uri,
                         clock.monotonic() - lost_at, failures)
            failures, delay = 0, self._backoff[0]
            self._wait_closed(conn)
            self._connected.clear()
            self._drop_sentinel()
            if self._stop.is_set():
                self._release(conn, callback_ids)
                return
            lost_at = clock.monotonic()
            LOG.warning('Lost the libvirt connection to %s (%s); reconnecting',
                        self.uri, _CLOSE_REASONS.get(self._close_reason,
                                                     'connection not alive'))
            if not self._release(conn, []):
                LOG.critical('A libvirt call has not returned %g s after the '
                             'connection to %s was lost; the connection thread '
                             'ends, so that the agent is restarted',
                             RELEASE_WAIT, self.uri)
                return

    def _open(self) -> tuple[libvirt.virConnect, list[int]]:
        self._closed.clear()
        self._close_reason = None
        # NOTE: read-write, because guest-agent commands (the in-guest
        # heartbeat) are refused on a read-only connection.
        conn = self._connect()
        try:
            # Off where calls are made (libvirt's default, said so that a
            # driver without keepalive is known): it runs on the sentinel.
            conn.setKeepAlive(0, 0)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                conn.close()
                raise
            LOG.debug('Keepalive is not supported by %s', self.uri)
        else:
            try:
                self._open_sentinel()
            except libvirt.libvirtError:
                conn.close()
                raise
        # Lent from here on: a registrar may hand the work of a new
        # connection (its scan) to a thread that borrows it.
        self._conn = conn
        try:
            conn.registerCloseCallback(self._on_close, None)
            callback_ids = [cid for registrar in self._registrars
                            for cid in registrar(conn)]
        except libvirt.libvirtError:
            self._drop_sentinel()
            self._release(conn, [])
            raise
        self.connects += 1
        self._connected.set()
        return conn, callback_ids

    def _connect(self) -> libvirt.virConnect:
        """``libvirt.open``, which waits for as long as libvirtd does not
        answer (the time it began is kept for :attr:`answering`)."""
        self._opening_since = clock.monotonic()
        try:
            return libvirt.open(self.uri)
        finally:
            self._opening_since = None

    def _open_sentinel(self) -> None:
        """Open the connection that only runs keepalive."""
        self._sentinel_closed.clear()
        self._sentinel_reason = None
        sentinel = self._connect()
        try:
            sentinel.setKeepAlive(*self._keepalive)
            sentinel.registerCloseCallback(self._on_sentinel_close, None)
        except libvirt.libvirtError:
            sentinel.close()
            raise
        self._sentinel = sentinel

    def _drop_sentinel(self) -> None:
        # No call is ever in flight on the sentinel: safe to close.
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            self._close(sentinel, [])

    def _wait_closed(self, conn: libvirt.virConnect) -> None:
        """Return once ``conn`` is lost (or on stop); a libvirtd that stops
        answering keepalive meanwhile is waited for, ``conn`` kept."""
        # The close callbacks are the signal; isAlive() (a local check)
        # covers a driver without one.
        poll = min(float(self._keepalive[0]), PROGRESS_TICK)
        while not self._stop.is_set():
            if self._closed.wait(poll):
                if self._stop.is_set() or not self._sentinel_closed.is_set():
                    return  # conn itself is closed
                if self._sentinel_reason != libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE:
                    self._close_reason = self._sentinel_reason
                    return  # libvirtd exited: conn's own close follows
                if not self._wait_answering(conn):
                    return
            self._progress()
            if not conn.isAlive():
                return

    def _wait_answering(self, conn: libvirt.virConnect) -> bool:
        """libvirtd does not answer keepalive: keep ``conn`` (the calls on
        it wait) until the sentinel connects again; False if ``conn`` is
        lost meanwhile (or on stop)."""
        LOG.warning('libvirtd at %s does not answer (keepalive timed out); '
                    'waiting for it, on the same connection', self.uri)
        self._connected.clear()
        since, self._silent = clock.monotonic(), True
        self._drop_sentinel()
        self._closed.clear()
        delay = self._backoff[0]
        try:
            while not self._stop.is_set() and conn.isAlive():
                self._progress()
                try:
                    # Blocks while libvirtd is stopped, as any call would.
                    self._open_sentinel()
                except libvirt.libvirtError:
                    self._wait(delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
                if self._closed.is_set() and not self._sentinel_closed.is_set():
                    return False  # conn closed while the sentinel connected
                LOG.info('libvirtd at %s answers again after %.1f s', self.uri,
                         clock.monotonic() - since)
                self._connected.set()
                return True
            return False
        finally:
            self._silent = False

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` (or until stopped), showing progress."""
        deadline = clock.monotonic() + seconds
        while (left := deadline - clock.monotonic()) > 0:
            self._progress()
            if self._stop.wait(min(left, PROGRESS_TICK)):
                return

    def _release(self, conn: libvirt.virConnect, callback_ids: list[int]) -> bool:
        """Lend ``conn`` no more, and close it once no thread uses it; False
        if a thread still does after ``RELEASE_WAIT`` (left open)."""
        deadline = clock.monotonic() + RELEASE_WAIT
        with self._users_changed:
            self._conn = None
            while self._users:
                self._progress()
                left = deadline - clock.monotonic()
                if left <= 0:
                    return False
                self._users_changed.wait(min(left, PROGRESS_TICK))
        self._close(conn, callback_ids)
        return True

    @staticmethod
    def _close(conn: libvirt.virConnect, callback_ids: list[int]) -> None:
        for cid in callback_ids:
            try:
                conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass  # the connection is going away anyway
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        try:
            conn.close()
        except libvirt.libvirtError:
            pass
