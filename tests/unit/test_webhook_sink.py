"""The webhook sink over real HTTP: its URL is a secret."""

import datetime

import pytest

from instancemonitor.events import Notification
from instancemonitor.sinks import Outcome
from instancemonitor.sinks.httpclient import redacted
from instancemonitor.sinks.webhook import WebhookSink
from tests.fakes.http import HTTPServer
from tests.fakes.webhook import WebhookReceiver
from tests.processes import free_port
from tests.tls import make_ca

TOKEN = 'tok-3f9a1c'


def event():
    return Notification('compute-1', '26f37fe6-2b5c-4a8e-8a4b-1b0c6f1d2e3f',
                        'LIFECYCLE', 'STOPPED_FAILED',
                        datetime.datetime.now(datetime.UTC), sink='webhook:audit')


@pytest.mark.parametrize('url, shown', [
    (f'https://bob:pw@hooks.example:8443/in/x?token={TOKEN}#frag',
     'https://hooks.example:8443/in/x'),
    (f'http://[::1]/hook?{TOKEN}', 'http://[::1]/hook'),
    ('http://hooks.example', 'http://hooks.example'),
])
def test_a_url_is_shown_without_user_info_query_or_fragment(url, shown):
    assert redacted(url) == shown


def test_a_refused_delivery_says_where_without_the_token():
    port = free_port()
    sink = WebhookSink('webhook:audit', f'http://alice:pw-9@127.0.0.1:{port}/hook'
                       f'?token={TOKEN}')
    answer = sink.send(event())
    assert answer.outcome is Outcome.RETRY and 'Connection refused' in answer.message
    assert answer.message.startswith(f'127.0.0.1:{port}: ')
    assert TOKEN not in str(answer) and 'pw-9' not in str(answer)
    assert sink.url == f'http://127.0.0.1:{port}/hook'


def test_a_redirect_is_a_dead_letter_whose_reason_hides_the_token():
    server = HTTPServer(lambda request: (
        302, None, {'Location': f'https://elsewhere.example/hook?token={TOKEN}'})).start()
    try:
        sink = WebhookSink('webhook:audit',
                           f'http://127.0.0.1:{server.port}/hook?token={TOKEN}')
        answer = sink.send(event())
    finally:
        server.stop()
    assert answer.outcome is Outcome.REJECTED
    assert str(answer) == 'HTTP 302: redirected to https://elsewhere.example/hook'


def test_user_info_in_the_url_is_sent_as_basic_authentication():
    receiver = WebhookReceiver()
    try:
        url = receiver.url.replace('http://', 'http://alice:p%40ss@')
        assert WebhookSink('webhook:audit', url).send(event()).outcome is (
            Outcome.DELIVERED)
        (headers,) = receiver.headers
    finally:
        receiver.stop()
    # base64 of "alice:p@ss"
    assert headers['authorization'] == 'Basic YWxpY2U6cEBzcw=='


def test_a_recorded_delivery_played_again_is_not_acted_on():
    import hashlib
    import hmac
    import time
    import urllib.error
    import urllib.request

    secret = 'shared-key'
    receiver = WebhookReceiver(secret)

    def play(headers, body):
        request = urllib.request.Request(receiver.url, data=body, method='POST',
                                         headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=5).status
        except urllib.error.HTTPError as error:
            return error.code
    try:
        sink = WebhookSink('webhook:audit', receiver.url, secret=secret)
        n = event()
        assert sink.send(n).outcome is Outcome.DELIVERED
        (headers,), (body,) = receiver.headers, receiver.bodies
        recorded = {name: value for name, value in headers.items()
                    if name.startswith('x-instancemonitor') or name == 'content-type'}
        # The very same request again: acknowledged, not a new delivery.
        assert play(recorded, body) == 208
        # Tampered with: the signature covers the timestamp and the body.
        assert play(dict(recorded, **{'x-instancemonitor-timestamp':
                                      str(int(time.time()) + 1)}), body) == 401
        assert play(recorded, body.replace(b'STOPPED_FAILED', b'STOPPED_SHUTDOWN')) == 401
        # Signed right but old: outside the replay window.
        old = str(int(time.time()) - 600)
        stale = 'sha256=' + hmac.new(secret.encode(), old.encode() + b'.' + body,
                                     hashlib.sha256).hexdigest()
        assert play(dict(recorded, **{'x-instancemonitor-timestamp': old,
                                      'x-instancemonitor-signature-256': stale}),
                    body) == 401
        assert len(receiver.deliveries) == 1
        assert receiver.refused == {'replayed': 1, 'bad signature': 2,
                                    'timestamp outside the replay window': 1}
        # The agent's own resend, a second later, is signed anew: accepted,
        # and its id says it is the same event.
        time.sleep(1.1)
        assert sink.send(n).outcome is Outcome.DELIVERED
        assert len(receiver.deliveries) == 2 and len(receiver.unique()) == 1
    finally:
        receiver.stop()


def test_an_https_webhook_is_verified_with_its_ca_file_or_the_systems_cas(
        tmp_path, monkeypatch):
    ca = make_ca(tmp_path / 'ca')
    server = HTTPServer(lambda request: (204, None, {}),
                        tls=ca.server_context()).start()
    try:
        url = f'https://127.0.0.1:{server.port}/hook'
        monkeypatch.delenv('SSL_CERT_FILE', raising=False)
        monkeypatch.setenv('SSL_CERT_DIR', str(tmp_path / 'none'))
        # requests' bundle is keystoneauth's, not the webhooks'.
        monkeypatch.setenv('REQUESTS_CA_BUNDLE', str(ca.ca))
        untrusted = WebhookSink('webhook:t', url).send(event())
        assert untrusted.outcome is Outcome.RETRY
        assert 'CERTIFICATE_VERIFY_FAILED' in untrusted.message
        assert WebhookSink('webhook:t', url, ca_file=str(ca.ca)).send(
            event()).outcome is Outcome.DELIVERED
        monkeypatch.setenv('SSL_CERT_FILE', str(ca.ca))  # the system's store
        assert WebhookSink('webhook:t', url).send(event()).outcome is (
            Outcome.DELIVERED)
    finally:
        server.stop()
