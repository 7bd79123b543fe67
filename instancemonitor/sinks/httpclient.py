"""One POST at a time per caller, on kept-alive connections: http.client.

The recovery API's notifications and the webhooks' deliveries are small JSON
bodies on the detection path. Per POST to a loopback receiver on a kept-alive
connection, CPU of the caller: requests through keystoneauth about 1.5 ms,
urllib3's PoolManager 0.42 ms, its connection pool 0.33, the standard
library's ``http.client`` 0.13 (and 0.24 ms from call to answer, against
0.6 through urllib3). So the POST goes through ``http.client``, on
connections kept per origin; keystoneauth still provides the endpoint, the
token and the TLS settings of the ``[api]`` group, and requests' helpers the
CA bundle and the environment's proxy (``https_proxy``, ``no_proxy``; an
``http://`` proxy, HTTPS through its CONNECT), as keystoneauth's own session
would choose them.

Each request is the bytes http.client renders for it, written at once;
http.client reads every answer. Rendering a request's line and headers,
with their checks, is Python that a CPU just woken from idle takes 0.25 ms
for, against 0.11 to write the bytes: a client whose POSTs repeat their
headers (the recovery API's, with a kept token) renders them once per URL
and header set (:class:`_Template`), and each POST writes that rendering
with its own Content-Length and body.
"""

import base64
import collections
import contextlib
import dataclasses
import http.client
import logging
import os
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterator

import requests.certs
import requests.utils

from instancemonitor import __name__ as _project

LOG = logging.getLogger(__name__)

USER_AGENT = _project

_local = threading.local()


@contextlib.contextmanager
def on_request(sent: Callable[[], None]) -> Iterator[None]:
    """For the first request this thread makes in the block: call ``sent``
    as soon as the request is on the wire (before its answer)."""
    _local.sent = sent
    try:
        yield
    finally:
        _local.sent = None


def _request_sent() -> None:
    callback = getattr(_local, 'sent', None)
    if callback is not None:
        _local.sent = None
        callback()


def redacted(url: str) -> str:
    """``url`` as logs may show it: scheme, host, port and path; no user
    info, query or fragment (where tokens travel)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ''
    if ':' in host:
        host = f'[{host}]'
    port = f':{parts.port}' if parts.port else ''
    return f'{parts.scheme}://{host}{port}{parts.path}'


class TransportError(Exception):
    """No answer: refused, reset, timed out, or TLS failed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    text: str
    # Case-insensitive.
    headers: http.client.HTTPMessage


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """A POST written by :meth:`HTTPClient.start`, its answer still to read."""
    url: str
    body: bytes
    headers: dict[str, str]
    route: '_Route'
    connection: http.client.HTTPConnection


class _Connection:
    """What both of our connection classes add to http.client's."""

    # Kept-alive connections to a control plane that may sit behind load
    # balancers: probe an idle connection like keystoneauth's session does.
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class _HTTPConnection(_Connection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Connection, http.client.HTTPSConnection):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class _Route:
    """How to reach one URL: the connection to open and the request target."""

    scheme: str
    host: str
    port: int
    # The request line's target: the path, or the whole URL to an HTTP proxy.
    target: str
    # (host, port) of an HTTPS URL reached through a proxy's CONNECT.
    tunnel: tuple[str, int] | None = None
    proxy_headers: tuple[tuple[str, str], ...] = ()


def _route(url: str) -> _Route:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise TransportError(f'not an http or https URL: {redacted(url)}')
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    path = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
    proxy = requests.utils.select_proxy(
        url, requests.utils.get_environ_proxies(url))
    if not proxy:
        return _Route(parts.scheme, parts.hostname, port, path)
    proxied = urllib.parse.urlsplit(proxy if '://' in proxy else f'http://{proxy}')
    if proxied.scheme != 'http' or not proxied.hostname:
        raise TransportError(f'proxy {redacted(proxy)} for {redacted(url)}: only '
                             'http:// proxies are supported')
    headers = ()
    if proxied.username is not None:
        credentials = (f'{urllib.parse.unquote(proxied.username)}:'
                       f'{urllib.parse.unquote(proxied.password or "")}')
        headers = (('Proxy-Authorization',
                    'Basic ' + base64.b64encode(credentials.encode()).decode()),)
    proxy_port = proxied.port or 80
    if parts.scheme == 'https':
        return _Route('https', proxied.hostname, proxy_port, path,
                      (parts.hostname, port), headers)
    target = urllib.parse.urlunsplit(parts._replace(fragment=''))
    return _Route('http', proxied.hostname, proxy_port, target,
                  proxy_headers=headers)


_LENGTH = b'\r\nContent-Length: 0\r\n'


def _render(route: _Route, headers: dict[str, str], body: bytes) -> bytes:
    """A POST of ``body`` as a connection of ``route`` writes it (rendered on
    one never connected: nothing is sent), as one piece: http.client writes
    the headers and the body apart, and the request goes out in one write,
    one segment and one wake-up of the receiver, its body never waiting for
    the ACK of the headers' segment (Nagle)."""
    connection = _HTTPConnection(route.host, route.port)
    if route.scheme == 'https':  # the Host header leaves out 443
        connection.default_port = http.client.HTTPS_PORT
    if route.tunnel:
        connection.set_tunnel(*route.tunnel, headers=dict(route.proxy_headers))
    written: list[bytes] = []
    connection.send = written.append  # its writes, kept instead
    connection.request('POST', route.target, body, {
        'User-Agent': USER_AGENT, 'Content-Type': 'application/json',
        **(dict(route.proxy_headers) if not route.tunnel else {}), **headers})
    return b''.join(written)


@dataclasses.dataclass(frozen=True, slots=True)
class _Template:
    """A POST as http.client renders it, but for its Content-Length and
    body: ``head`` (the request line and the headers before the length, but
    the last line's end) and ``tail`` (the headers after it and the empty
    line)."""

    head: bytes
    tail: bytes

    @classmethod
    def render(cls, route: _Route, headers: dict[str, str]) -> '_Template':
        return cls(*_render(route, headers, b'').split(_LENGTH, 1))

    def request(self, body: bytes) -> bytes:
        return b'%s\r\nContent-Length: %d\r\n%s%s' % (self.head, len(body),
                                                        self.tail, body)


# Seconds a POST waits for the connection being opened ahead, without a
# timeout of its own.
CONNECT_WAIT_MAX = 60.0

# Templates kept per client: a new token is a new header set.
_TEMPLATES_KEPT = 16


# A kept connection the server had closed: reset, or closed before an answer.
_CLOSED_BY_SERVER = (ConnectionResetError, BrokenPipeError,
                     http.client.RemoteDisconnected)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the other end (it is
    readable while no request is out: an EOF, or bytes nobody asked for)."""
    if connection.sock is None:
        return True
    poll = select.poll()
    poll.register(connection.sock, select.POLLIN)
    return bool(poll.poll(0))


class HTTPClient:
    def __init__(self, timeout: float | None, verify: bool | str | None = True,
                 cert: str | tuple[str, str] | None = None,
                 connections: int = 10, repeated_headers: bool = False) -> None:
        """``verify``: False, True (the CA bundle keystoneauth's requests
        would use: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or its own),
        None (the system's CAs, OpenSSL's default paths) or a CA file;
        ``cert``: a client certificate file, or (certificate, key);
        ``connections``: kept alive per host, one per concurrent caller;
        ``repeated_headers``: POSTs repeat their headers, so their rendering
        is kept (headers that differ on every POST would only churn it)."""
        self._timeout = timeout
        self._verify = verify
        self._cert = tuple(cert) if isinstance(cert, (tuple, list)) else (cert, None)
        self._connections = connections
        # Guards the rare changes only (a new route, the TLS context,
        # closing): hundreds of senders take and return connections, and a
        # lock they all passed twice per POST was a convoy (its holder
        # waiting for the GIL while every other sender waited for it).
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        # The route of each URL posted to (a few: the endpoint, a webhook).
        self._routes: dict[str, _Route] = {}
        # Idle connections by route, the most recently used last: a deque's
        # append and pop are atomic.
        self._idle: dict[_Route, collections.deque[http.client.HTTPConnection]] = {}
        # (route, the caller's headers) → the rendering of their POST.
        self._templates: dict[tuple, _Template] | None = (
            {} if repeated_headers else None)
        # Routes a connection is being opened ahead to (open_ahead), and
        # their end, for the POSTs that wait for it.
        self._opening: set[_Route] = set()
        self._opened = threading.Condition(self._lock)
        self._closed = False

    def _tls_context(self) -> ssl.SSLContext:
        """Made at the first HTTPS request: a bad CA or certificate file is
        that request's error, as it would be with keystoneauth's session."""
        with self._lock:
            if self._tls is None:
                verify = self._verify
                if verify is True:  # requests' rule: the environment's bundle
                    verify = (os.environ.get('REQUESTS_CA_BUNDLE') or
                              os.environ.get('CURL_CA_BUNDLE') or
                              requests.certs.where())
                context = ssl.create_default_context(
                    cafile=verify if isinstance(verify, str) else None)
                if verify is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                cert_file, key_file = self._cert
                if cert_file:
                    context.load_cert_chain(cert_file, key_file)
                self._tls = context
            return self._tls

    def _route_of(self, url: str) -> _Route:
        route = self._routes.get(url)
        if route is None:
            with self._lock:
                route = _route(url)
                self._idle.setdefault(route, collections.deque())
                self._routes[url] = route
        return route

    def _kept(self, route: _Route) -> http.client.HTTPConnection | None:
        idle = self._idle[route]  # made with the route, never removed
        while True:
            try:
                connection = idle.pop()
            except IndexError:
                return None
            if not _dropped(connection):
                return connection
            connection.close()

    def _new(self, route: _Route) -> http.client.HTTPConnection:
        if route.scheme == 'https':
            connection = _HTTPSConnection(route.host, route.port,
                                          timeout=self._timeout,
                                          context=self._tls_context())
        else:
            connection = _HTTPConnection(route.host, route.port,
                                         timeout=self._timeout)
        if route.tunnel:
            connection.set_tunnel(*route.tunnel, headers=dict(route.proxy_headers))
        return connection

    def _keep(self, route: _Route, connection: http.client.HTTPConnection) -> None:
        idle = self._idle[route]
        if self._closed or len(idle) >= self._connections:
            connection.close()
            return
        idle.append(connection)
        if self._closed:  # close() may have emptied the pool meanwhile
            self._close_idle(idle)

    def _request(self, route: _Route, headers: dict[str, str], body: bytes) -> bytes:
        """The bytes of a POST of ``body``, as http.client renders it."""
        if self._templates is None:
            return _render(route, headers, body)
        key = (route, tuple(headers.items()))
        template = self._templates.get(key)
        if template is None:
            template = _Template.render(route, headers)
            if len(self._templates) >= _TEMPLATES_KEPT:
                self._templates.clear()
            self._templates[key] = template
        return template.request(body)

    @staticmethod
    def _response(connection: http.client.HTTPConnection
                  ) -> tuple[http.client.HTTPResponse, bytes]:
        """Read the answer to the request just written, as
        ``getresponse()`` does (whose request state the write bypassed)."""
        response = connection.response_class(connection.sock, method='POST')
        try:
            response.begin()
            return response, response.read()
        except BaseException:
            response.close()
            raise

    def start(self, url: str, body: bytes, headers: dict[str, str],
              wait: float = 0.0) -> 'Started | None':
        """Write the POST on a kept-alive connection, if one is idle (or
        one being opened ahead is open within ``wait`` seconds), and return
        at once: :meth:`finish` reads its answer (from any thread). None if
        no connection is idle or writing failed: nothing is sent, and
        :meth:`post` sends it on its own."""
        route = self._route_of(url)
        request = self._request(route, headers, body)
        connection = self._kept(route) or self._opened_ahead(route, wait)
        if connection is None:
            return None
        try:
            connection.send(request)
        except OSError:
            connection.close()  # a request cut short is not one the server takes
            return None
        return Started(url, body, headers, route, connection)

    def finish(self, started: 'Started') -> Response:
        """The answer to a request :meth:`start` wrote; sent again once on a
        new connection if the server had closed the kept one, as
        :meth:`post` does."""
        connection = started.connection
        try:
            response, data = self._response(connection)
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            if isinstance(error, _CLOSED_BY_SERVER):
                return self.post(started.url, started.body, started.headers,
                                 kept=False)
            raise TransportError(_describe(error, started.route)) from None
        return self._answered(started.route, connection, response, data)

    def _answered(self, route: _Route, connection: http.client.HTTPConnection,
                  response: http.client.HTTPResponse, data: bytes) -> Response:
        if response.will_close:
            connection.close()
        else:
            self._keep(route, connection)
        return Response(response.status, data.decode('utf-8', 'replace'),
                        response.headers)

    def post(self, url: str, body: bytes, headers: dict[str, str],
             kept: bool = True) -> Response:
        """POST ``body``; no redirects followed. Retried at once on a new
        connection only when a kept one turns out closed by the server (it
        closed it as the request went out): a receiver drops the rare repeat
        as a duplicate. ``kept``: whether a kept connection may be used."""
        route = self._route_of(url)
        request = self._request(route, headers, body)
        connection = None
        if kept:  # or the one being opened ahead, rather than another
            connection = self._kept(route) or self._opened_ahead(
                route, self._timeout or CONNECT_WAIT_MAX)
        kept = connection is not None
        while True:
            try:
                if connection is None:
                    connection = self._new(route)
            except (OSError, ValueError) as error:  # the TLS files
                raise TransportError(_describe(error, route)) from None
            try:
                connection.send(request)  # connects a new connection first
                _request_sent()
                response, data = self._response(connection)
                break
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                if kept and isinstance(error, _CLOSED_BY_SERVER):
                    connection, kept = None, False
                    continue
                raise TransportError(_describe(error, route)) from None
        return self._answered(route, connection, response, data)

    def prepare(self, url: str, headers: dict[str, str]) -> None:
        """Work out now how ``url`` is reached (the environment's proxies)
        and, if POSTs repeat their headers, the rendering of ``headers``:
        the first POST to it then does neither. Raises TransportError for a
        URL or proxy it cannot use."""
        self._request(self._route_of(url), headers, b'')

    def ready(self, url: str) -> bool:
        """Whether a kept-alive connection to ``url``'s server is idle and
        still open (a POST now would not connect first)."""
        route = self._routes.get(url)
        if route is None:
            return False
        try:
            connection = self._idle[route][-1]  # the one a POST takes next
            return not _dropped(connection)
        except (IndexError, ValueError, OSError):  # none, or closed meanwhile
            return False

    def open_ahead(self, url: str) -> None:
        """Open a connection to ``url``'s server and keep it idle, unless one
        is idle or being opened already; returns once it is open (or could
        not be: the next POST's own attempt says why). Meant for a thread of
        its own, while what the POST will carry is still being stored."""
        route = self._route_of(url)
        with self._lock:
            if self._closed or route in self._opening:
                return
            self._opening.add(route)
        connection = None
        try:
            connection = self._kept(route)
            if connection is None:
                connection = self._new(route)
                connection.connect()
        except (OSError, ValueError, http.client.HTTPException) as error:
            if connection is not None:
                connection.close()
            connection = None
            LOG.debug('Opening a connection ahead to %s failed: %s',
                      redacted(url), _describe(error, route))
        finally:
            if connection is not None:
                self._keep(route, connection)
            with self._opened:
                self._opening.discard(route)
                self._opened.notify_all()

    def _opened_ahead(self, route: _Route, wait: float
                      ) -> http.client.HTTPConnection | None:
        """The connection being opened ahead to ``route``, once open, if
        that takes at most ``wait`` seconds; None if none is being opened.
        Without the lock when none is: the senders of a burst find no idle
        connection at once, and must not queue on it (see ``_lock``)."""
        if wait <= 0 or route not in self._opening:
            return None
        deadline = time.monotonic() + wait
        with self._opened:
            while route in self._opening:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._opened.wait(left)
        return self._kept(route)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools = list(self._idle.values())
        for idle in pools:
            self._close_idle(idle)

    @staticmethod
    def _close_idle(idle: collections.deque[http.client.HTTPConnection]) -> None:
        while True:
            try:
                idle.pop().close()
            except IndexError:
                return


def _describe(error: Exception, route: _Route) -> str:
    """Where and why, e.g. '10.0.0.5:15868 (proxy): ConnectionRefusedError:
    [Errno 111] Connection refused'."""
    host = f'[{route.host}]' if ':' in route.host else route.host
    through = ' (proxy)' if route.tunnel or route.target[:1] != '/' else ''
    return f'{host}:{route.port}{through}: {type(error).__name__}: {error}'
