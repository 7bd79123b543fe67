"""The POST client on real loopback servers: kept-alive connections, ones the
server closed, the environment's proxy, and errors as TransportError."""

import base64
import contextlib
import http.client
import socket
import threading
import time

import pytest

from instancemonitor.sinks import httpclient
from tests.fakes.http import HTTPServer
from tests.processes import free_port
from tests.tls import make_ca

BODY = b'{"x": 1}'


@pytest.fixture
def server():
    made = []

    def start(handler=lambda request: (202, {'ok': True}, {}), tls=None):
        made.append(HTTPServer(handler, tls=tls).start())
        return made[-1]
    yield start
    for each in made:
        each.stop()


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch):
    for name in ('http_proxy', 'https_proxy', 'all_proxy', 'no_proxy',
                 'requests_ca_bundle', 'curl_ca_bundle'):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_posts_reuse_one_connection_and_signal_when_sent(server):
    requests = []

    def slow(request):
        requests.append(request)
        time.sleep(0.1)
        return 202, {'ok': True}, {}
    api = server(slow)
    client = httpclient.HTTPClient(5)
    for _ in range(3):
        sent = []
        with httpclient.on_request(sent=lambda sent=sent: sent.append(time.monotonic())):
            response = client.post(f'http://127.0.0.1:{api.port}/v1/n?a=1', BODY,
                                   {'X-Auth-Token': 't'})
        answered = time.monotonic()
        assert response.status == 202 and response.text == '{"ok": true}'
        (sent_at,) = sent
        assert answered - sent_at >= 0.09  # told before the answer came
    assert api.connections == 1
    (first, *_) = requests
    assert (first.method, first.path, first.body) == ('POST', '/v1/n?a=1', BODY)
    assert first.headers['x-auth-token'] == 't'
    assert first.headers['content-type'] == 'application/json'
    assert first.headers['user-agent'] == 'instancemonitor'


def test_the_headers_and_the_body_go_out_in_one_write(server, monkeypatch):
    received = []
    api = server(lambda r: (received.append(r), (202, None, {}))[1])
    writes = []
    send = http.client.HTTPConnection.send
    monkeypatch.setattr(http.client.HTTPConnection, 'send',
                        lambda self, data: (writes.append(bytes(data)),
                                            send(self, data))[1])
    client = httpclient.HTTPClient(5)
    assert client.post(f'http://127.0.0.1:{api.port}/v1/n', BODY,
                       {'X-Auth-Token': 't'}).status == 202
    (write,) = writes
    assert write.startswith(b'POST /v1/n HTTP/1.1\r\n')
    assert write.endswith(b'\r\n\r\n' + BODY)
    (request,) = received
    assert request.body == BODY and request.headers['x-auth-token'] == 't'
    assert request.headers['content-length'] == str(len(BODY))


@pytest.mark.parametrize('url, proxy', [
    ('http://127.0.0.1:8080/v1/notifications?a=1', None),
    ('http://api.example/v1', None),
    ('https://api.example/v1/notifications', None),
    ('https://api.example:15868/', None),
    ('http://api.example:15868/v1', 'http://user:p%40ss@proxy.example:3128'),
    ('https://api.example/v1', 'http://proxy.example:3128'),
])
def test_each_request_is_the_bytes_http_client_writes(url, proxy, monkeypatch):
    if proxy:
        monkeypatch.setenv('http_proxy', proxy)
        monkeypatch.setenv('https_proxy', proxy)
    client = httpclient.HTTPClient(5, verify=False, repeated_headers=True)
    headers = {'X-Auth-Token': 'gAAAAAB' + 'x' * 180,
               'OpenStack-API-Version': 'instance-ha 1.0'}
    for body in (b'', BODY, 'é'.encode() * 3000):
        route = client._route_of(url)
        connection = client._new(route)  # never connected
        written = []
        connection.send = written.append
        connection.request('POST', route.target, body, {
            'User-Agent': 'instancemonitor', 'Content-Type': 'application/json',
            **(dict(route.proxy_headers) if not route.tunnel else {}), **headers})
        assert client._request(route, headers, body) == b''.join(written), body[:8]
        # Rendered anew for each POST where headers do not repeat.
        once = httpclient.HTTPClient(5, verify=False)
        assert once._request(route, headers, body) == b''.join(written), body[:8]


def test_an_answer_that_closes_the_connection_is_followed_by_a_new_one(server):
    api = server(lambda r: (200, None, {'Connection': 'close'}))
    client = httpclient.HTTPClient(5)
    for _ in range(2):
        assert client.post(f'http://127.0.0.1:{api.port}/', BODY, {}).status == 200
    assert api.connections == 2


@contextlib.contextmanager
def closing_after_each_answer():
    """A server that answers one request per connection, then closes it
    without saying so (as a load balancer's idle timeout does)."""
    listener = socket.create_server(('127.0.0.1', 0))
    closed = threading.Semaphore(0)

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            data = b''
            while not data.endswith(BODY):
                data += connection.recv(65536)
            connection.sendall(b'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n')
            connection.close()
            closed.release()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], closed
    finally:
        listener.close()
        thread.join(5)


def test_a_kept_connection_the_server_closed_is_not_used_again():
    with closing_after_each_answer() as (port, closed):
        client = httpclient.HTTPClient(5)
        for _ in range(3):
            assert client.post(f'http://127.0.0.1:{port}/', BODY, {}).status == 202
            assert closed.acquire(timeout=5)  # its FIN is here before the next


def test_a_kept_connection_closed_as_the_request_goes_out_is_tried_anew(server):
    api = server()
    client = httpclient.HTTPClient(5)
    url = f'http://127.0.0.1:{api.port}/'
    assert client.post(url, BODY, {}).status == 202
    (kept,) = client._idle.values()
    kept[0].sock.shutdown(socket.SHUT_RDWR)  # as if reset: not readable yet
    original = httpclient._dropped
    httpclient._dropped = lambda connection: False
    try:
        assert client.post(url, BODY, {}).status == 202
    finally:
        httpclient._dropped = original
    assert api.connections == 2


def test_start_writes_on_a_kept_connection_only_and_finish_reads_the_answer(
        server):
    arrived, answer = [], threading.Event()

    def slow(request):
        arrived.append(request)
        answer.wait(5)
        return 202, {'ok': True}, {}
    api = server(slow)
    client = httpclient.HTTPClient(5)
    url = f'http://127.0.0.1:{api.port}/v1/notifications'
    assert client.start(url, BODY, {'X-Auth-Token': 't'}) is None  # none kept
    assert arrived == []
    answer.set()
    assert client.post(url, BODY, {}).status == 202
    answer.clear()
    started = client.start(url, BODY, {'X-Auth-Token': 't'})
    assert started is not None
    # On the wire before anyone reads: the server has it, unanswered.
    deadline = time.monotonic() + 5
    while len(arrived) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert arrived[1].headers['x-auth-token'] == 't' and arrived[1].body == BODY
    answer.set()
    reader = []
    thread = threading.Thread(target=lambda: reader.append(client.finish(started)))
    thread.start()
    thread.join(5)
    (response,) = reader
    assert response.status == 202 and response.text == '{"ok": true}'
    assert client.post(url, BODY, {}).status == 202
    assert api.connections == 1  # kept again after finish


def test_finish_sends_again_once_if_the_server_had_closed_the_connection(
        monkeypatch):
    with closing_after_each_answer() as (port, closed):
        client = httpclient.HTTPClient(5)
        url = f'http://127.0.0.1:{port}/'
        assert client.post(url, BODY, {}).status == 202
        assert closed.acquire(timeout=5)
        # The close not seen yet as the request goes out on the kept one.
        monkeypatch.setattr(httpclient, '_dropped', lambda connection: False)
        started = client.start(url, BODY, {})
        assert started is not None
        assert client.finish(started).status == 202
        assert closed.acquire(timeout=5)  # a second connection answered it


def test_a_connection_opened_ahead_is_the_one_the_next_request_writes_on():
    with closing_after_each_answer() as (port, closed):
        client = httpclient.HTTPClient(5)
        url = f'http://127.0.0.1:{port}/'
        assert not client.ready(url)  # never posted to
        assert client.post(url, BODY, {}).status == 202
        assert closed.acquire(timeout=5)
        assert not client.ready(url)  # the kept one was closed by the server
        client.open_ahead(url)
        assert client.ready(url)
        client.open_ahead(url)  # one is idle: no second
        started = client.start(url, BODY, {})
        assert started is not None and not client.ready(url)
        assert client.finish(started).status == 202
        assert closed.acquire(timeout=5)
        assert not closed.acquire(timeout=0.2)  # the second one never opened


@pytest.mark.parametrize('writer', ['start', 'post'])
def test_a_request_waits_for_the_connection_being_opened_ahead(
        server, monkeypatch, writer):
    api = server()
    client = httpclient.HTTPClient(5)
    url = f'http://127.0.0.1:{api.port}/'
    connect, entered = httpclient._Connection.connect, threading.Event()

    def slow_connect(connection):
        entered.set()
        time.sleep(0.3)
        connect(connection)
    monkeypatch.setattr(httpclient._Connection, 'connect', slow_connect)
    opener = threading.Thread(target=client.open_ahead, args=(url,))
    opener.start()
    try:
        assert entered.wait(5)
        if writer == 'start':
            assert client.start(url, BODY, {}, wait=0.01) is None  # not open yet
            started = client.start(url, BODY, {}, wait=5)
            assert started is not None
            assert client.finish(started).status == 202
        else:
            assert client.post(url, BODY, {}).status == 202
    finally:
        opener.join(5)
    assert api.connections == 1  # the one opened ahead, no other


def test_opening_ahead_to_a_server_that_refuses_leaves_nothing_and_raises_nothing():
    client = httpclient.HTTPClient(5)
    url = f'http://127.0.0.1:{free_port()}/'
    client.open_ahead(url)
    assert not client.ready(url) and client.start(url, BODY, {}) is None
    with pytest.raises(httpclient.TransportError, match='Connection refused'):
        client.post(url, BODY, {})


def test_a_connection_opened_ahead_after_close_is_closed_not_kept(server):
    api = server()
    client = httpclient.HTTPClient(5)
    url = f'http://127.0.0.1:{api.port}/'
    client.close()
    client.open_ahead(url)
    assert not client.ready(url) and api.connections == 0


def test_concurrent_posts_share_kept_connections_up_to_the_bound(server):
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def slow(request):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return 202, {'ok': True}, {}
    api = server(slow)
    client = httpclient.HTTPClient(5, connections=4)
    url = f'http://127.0.0.1:{api.port}/'
    answers = []

    def post_three():
        answers.extend(client.post(url, BODY, {}).status for _ in range(3))
    threads = [threading.Thread(target=post_three) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == [202] * 24
    assert most[0] == 8  # every thread had a connection of its own
    (idle,) = client._idle.values()
    assert 1 <= len(idle) <= 4
    # What was kept is used again: no new connection for these.
    connections = api.connections
    for _ in range(3):
        assert client.post(url, BODY, {}).status == 202
    assert api.connections == connections
    client.close()
    assert not idle


def test_a_connection_returned_after_close_is_closed_not_kept(server):
    answering = threading.Event()

    def slow(request):
        answering.set()
        time.sleep(0.3)
        return 202, {'ok': True}, {}
    api = server(slow)
    client = httpclient.HTTPClient(5)
    url = f'http://127.0.0.1:{api.port}/'
    assert client.post(url, BODY, {}).status == 202
    (idle,) = client._idle.values()
    (first,) = idle
    answering.clear()
    statuses = []
    poster = threading.Thread(target=lambda: statuses.append(
        client.post(url, BODY, {}).status))
    poster.start()
    assert answering.wait(5)
    client.close()  # while the POST waits for its answer
    poster.join(5)
    assert statuses == [202]
    assert not idle and first.sock is None  # closed


def test_refused_and_timed_out_are_transport_errors(server):
    client = httpclient.HTTPClient(0.3)
    with pytest.raises(httpclient.TransportError, match='Connection refused'):
        client.post(f'http://127.0.0.1:{free_port()}/', BODY, {})
    stuck = socket.create_server(('127.0.0.1', 0))  # accepts, never answers
    try:
        with pytest.raises(httpclient.TransportError, match='timed out'):
            client.post(f'http://127.0.0.1:{stuck.getsockname()[1]}/', BODY, {})
    finally:
        stuck.close()


def test_an_http_url_goes_through_the_environments_proxy(server, monkeypatch):
    seen = []
    proxy = server(lambda r: (seen.append(r), (202, None, {}))[1])
    monkeypatch.setenv('http_proxy', f'http://ops:s%40cret@127.0.0.1:{proxy.port}')
    client = httpclient.HTTPClient(5)
    assert client.post('http://masakari.example:15868/v1/notifications',
                       BODY, {}).status == 202
    (request,) = seen
    assert request.path == 'http://masakari.example:15868/v1/notifications'
    assert request.headers['host'] == 'masakari.example:15868'
    assert request.headers['proxy-authorization'] == 'Basic ' + base64.b64encode(
        b'ops:s@cret').decode()


def test_no_proxy_sends_directly(server, monkeypatch):
    api = server()
    monkeypatch.setenv('http_proxy', f'http://127.0.0.1:{free_port()}')
    monkeypatch.setenv('no_proxy', '127.0.0.1')
    assert httpclient.HTTPClient(5).post(
        f'http://127.0.0.1:{api.port}/', BODY, {}).status == 202


@contextlib.contextmanager
def connect_proxy():
    """An HTTP proxy that only tunnels (CONNECT), recording each request line."""
    listener = socket.create_server(('127.0.0.1', 0))
    lines = []

    def pump(source, sink):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            head = b''
            while b'\r\n\r\n' not in head:
                head += client.recv(4096)
            line = head.split(b'\r\n')[0].decode()
            lines.append(line)
            host, port = line.split()[1].rsplit(':', 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], lines
    finally:
        listener.close()


def test_an_https_url_is_tunnelled_through_the_proxy_and_verified(
        server, monkeypatch, tmp_path):
    ca = make_ca(tmp_path)
    api = server(tls=ca.server_context())
    with connect_proxy() as (port, lines):
        monkeypatch.setenv('https_proxy', f'http://127.0.0.1:{port}')
        url = f'https://127.0.0.1:{api.port}/v1/notifications'
        assert httpclient.HTTPClient(5, str(ca.ca)).post(url, BODY, {}).status == 202
        with pytest.raises(httpclient.TransportError,
                           match='CERTIFICATE_VERIFY_FAILED'):
            httpclient.HTTPClient(5).post(url, BODY, {})  # the CA bundle only
    assert lines == [f'CONNECT 127.0.0.1:{api.port} HTTP/1.0'] * 2


def test_https_posts_keep_their_connection(server, tmp_path):
    ca = make_ca(tmp_path)
    api = server(tls=ca.server_context())
    client = httpclient.HTTPClient(5, str(ca.ca))
    for _ in range(3):
        assert client.post(f'https://127.0.0.1:{api.port}/', BODY, {}).status == 202
    assert api.connections == 1


def test_an_https_proxy_is_a_clear_error(monkeypatch):
    monkeypatch.setenv('https_proxy', 'https://proxy.example:3129')
    with pytest.raises(httpclient.TransportError, match='only http:// proxies'):
        httpclient.HTTPClient(5).post('https://masakari.example/v1', BODY, {})


def test_the_ca_bundle_of_the_environment_is_trusted_as_requests_would(
        server, monkeypatch, tmp_path):
    ca, other = make_ca(tmp_path / 'ca'), make_ca(tmp_path / 'other')
    api = server(tls=ca.server_context())
    url = f'https://127.0.0.1:{api.port}/'
    with pytest.raises(httpclient.TransportError, match='CERTIFICATE_VERIFY_FAILED'):
        httpclient.HTTPClient(5).post(url, BODY, {})
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', str(ca.ca))
    assert httpclient.HTTPClient(5).post(url, BODY, {}).status == 202
    # A CA file of its own ([api] cafile, a webhook's ca_file) comes first.
    with pytest.raises(httpclient.TransportError, match='CERTIFICATE_VERIFY_FAILED'):
        httpclient.HTTPClient(5, str(other.ca)).post(url, BODY, {})
