"""A small threaded HTTP/1.1 server on 127.0.0.1 for test doubles.

Every response is written in ONE send: Python's BaseHTTPRequestHandler
otherwise writes headers and body separately, and Nagle plus delayed ACK then
add ~40 ms to every keep-alive request.
"""

import http.server
import json
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable

Handler = Callable[['Request'], tuple[int, dict, dict[str, str]]]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str],
                 body: bytes, connection_id: int, received_at: float) -> None:
        # When the request had arrived (time.monotonic()): see
        # _RequestHandler.parse_request.
        self.received_at = received_at
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.connection_id = connection_id

    def json(self) -> object:
        return json.loads(self.body)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: '_Server'

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.new_connection()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def parse_request(self) -> bool:
        # Stamped as soon as the request line is read, before this server
        # parses the headers (about 0.1 ms of its own): the clients measured
        # here send a request in one piece, so all of it had arrived then.
        self.arrived_at = time.monotonic()
        return super().parse_request()

    def _handle(self) -> None:
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        request = Request(self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()},
                          body, self.connection_id, self.arrived_at)
        status, document, headers = self.server.handler(request)
        payload = b'' if document is None else json.dumps(document).encode()
        head = [f'HTTP/1.1 {status} {http.HTTPStatus(status).phrase}',
                'Content-Type: application/json',
                f'Content-Length: {len(payload)}']
        head += [f'{name}: {value}' for name, value in headers.items()]
        self.wfile.write(('\r\n'.join(head) + '\r\n\r\n').encode() + payload)
        if headers.get('Connection', '').lower() == 'close':
            self.close_connection = True  # as it said

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog (5) resets connections in a burst;
    # 128 still dropped the SYNs of 512 senders connecting at once (each
    # sent again 1 s later, the kernel's first retransmission).
    request_queue_size = 1024

    def __init__(self, handler: Handler, port: int) -> None:
        self.handler = handler
        self._lock = threading.Lock()
        self.connections = 0
        super().__init__(('127.0.0.1', port), _RequestHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that dies mid-request (a SIGKILLed agent) is a test's
        # intent, not an error of the server.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def new_connection(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections


class HTTPServer:
    """Serve ``handler`` on 127.0.0.1 (a free port by default), on its own
    thread; over TLS with ``tls`` (a server-side context)."""

    def __init__(self, handler: Handler, port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(handler, port)
        if tls is not None:
            # A client that refuses the certificate fails the handshake in
            # accept(): socketserver ignores that connection.
            self._server.socket = tls.wrap_socket(self._server.socket,
                                                  server_side=True)
        self.scheme = 'https' if tls is not None else 'http'
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f'http-{self.port}', daemon=True)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        return self._server.connections

    def start(self) -> 'HTTPServer':
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
