"""One POST at a time per caller, on kept-alive connections: urllib3's pool.

The recovery API's notifications and the webhooks' deliveries are small JSON
bodies on the detection path. keystoneauth and requests cost about 1.2 ms of
CPU per POST on top of urllib3's 0.3 (merging proxy and environment settings,
hooks, logging; measured in the closing note of issue 14), so the POST goes
through urllib3 directly, with keystoneauth still providing the endpoint, the
token and the TLS settings of the ``[api]`` group.
"""

import contextlib
import dataclasses
import socket
import threading
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping

import requests.certs
import requests.utils
import urllib3
from urllib3 import exceptions as u3_exceptions
from urllib3.connection import HTTPConnection
from urllib3.connection import HTTPSConnection

from instancemonitor import __name__ as _project

USER_AGENT = _project

# Kept-alive connections to a control plane that may sit behind load
# balancers: probe an idle connection like keystoneauth's session does.
_SOCKET_OPTIONS = [*HTTPConnection.default_socket_options,
                   (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]


_local = threading.local()


@contextlib.contextmanager
def on_sent(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` as soon as the first request this thread makes in
    the block is on the wire (before its answer)."""
    _local.sent = callback
    try:
        yield
    finally:
        _local.sent = None


def _request_sent() -> None:
    callback = getattr(_local, 'sent', None)
    if callback is not None:
        _local.sent = None
        callback()


class _SignallingHTTPConnection(HTTPConnection):
    def request(self, *args, **kwargs) -> None:
        super().request(*args, **kwargs)
        _request_sent()


class _SignallingHTTPSConnection(HTTPSConnection):
    def request(self, *args, **kwargs) -> None:
        super().request(*args, **kwargs)
        _request_sent()


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _SignallingHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _SignallingHTTPSConnection


_POOLS = {'http': _HTTPPool, 'https': _HTTPSPool}


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
    headers: Mapping[str, str]


class HTTPClient:
    def __init__(self, timeout: float | None, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None,
                 connections: int = 10) -> None:
        """``verify``: False, True (requests' CA bundle, as keystoneauth
        uses) or a CA file; ``cert``: a client certificate file, or (certificate,
        key); ``connections``: kept alive per host, one per concurrent caller."""
        if isinstance(cert, (tuple, list)):
            cert_file, key_file = cert
        else:
            cert_file, key_file = cert, None
        self._pool_args = dict(
            maxsize=connections, block=False, retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            socket_options=_SOCKET_OPTIONS,
            cert_reqs='CERT_REQUIRED' if verify else 'CERT_NONE',
            ca_certs=(verify if isinstance(verify, str)
                      else requests.certs.where() if verify else None),
            cert_file=cert_file, key_file=key_file)
        self._direct = self._signalling(urllib3.PoolManager(**self._pool_args))
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        # The manager of each URL posted to (a few: the endpoint, a webhook).
        self._managers: dict[str, urllib3.PoolManager] = {}

    @staticmethod
    def _signalling(manager: urllib3.PoolManager) -> urllib3.PoolManager:
        """Connections that say when a request is sent (``on_sent``)."""
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The environment's proxy for ``url`` (https_proxy, no_proxy), as
        requests would choose it; looked up once per URL."""
        manager = self._managers.get(url)
        if manager is None:
            proxy = requests.utils.select_proxy(
                url, requests.utils.get_environ_proxies(url))
            if not proxy:
                manager = self._direct
            else:
                if proxy not in self._proxied:
                    self._proxied[proxy] = self._signalling(
                        urllib3.ProxyManager(proxy, **self._pool_args))
                manager = self._proxied[proxy]
            self._managers[url] = manager
        return manager

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body``; no retries, no redirects followed."""
        headers = {'User-Agent': USER_AGENT, 'Content-Type': 'application/json',
                   **headers}
        try:
            response = self._manager(url).request(
                'POST', url, body=body, headers=headers, redirect=False)
        except u3_exceptions.HTTPError as error:
            raise TransportError(_describe(error)) from None
        return Response(response.status,
                        response.data.decode('utf-8', 'replace'),
                        response.headers)

    def close(self) -> None:
        self._direct.clear()
        for manager in self._proxied.values():
            manager.clear()


def _describe(error: u3_exceptions.HTTPError) -> str:
    """The innermost reason, e.g. 'NewConnectionError: ... Connection refused'."""
    reason = getattr(error, 'reason', None) or error
    return f'{type(reason).__name__}: {reason}'
