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
