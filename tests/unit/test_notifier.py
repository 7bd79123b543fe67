"""The notifier over a real HTTP path: sink answers, retries, Keystone."""

import datetime
import logging
import threading
import time

import pytest
import tenacity

from instancemonitor.events import Notification
from instancemonitor.outbox import Outbox
from instancemonitor.sender import RetryPolicy
from instancemonitor.sender import Sender
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome
from instancemonitor.sinks import httpclient
from instancemonitor.sinks import masakari
from tests.fakes import keystone as fake_keystone
from tests.fakes.recovery_api import RecoveryAPI
from tests.processes import free_port
from tests.processes import wait_for

UUID = '26f37fe6-2b5c-4a8e-8a4b-1b0c6f1d2e3f'


def notification(uuid=UUID):
    return Notification('compute-1', uuid, 'LIFECYCLE', 'STOPPED_FAILED',
                        datetime.datetime.now(datetime.UTC))


@pytest.fixture
def sink_for(make_conf):
    def make(**api):
        return masakari.MasakariSink(masakari.adapter_from_conf(make_conf(api=api)))
    return make


def test_accepted_is_delivered_in_masakaris_exact_schema(recovery_api, sink_for):
    n = notification()
    answer = sink_for(endpoint=recovery_api.url).send(n)
    assert answer.outcome is Outcome.DELIVERED and answer.status == 202
    (stored,) = recovery_api.stored
    assert stored['type'] == 'VM' and stored['hostname'] == 'compute-1'
    assert stored['payload'] == {'event': 'LIFECYCLE', 'instance_uuid': UUID,
                                 'vir_domain_event': 'STOPPED_FAILED'}
    assert datetime.datetime.fromisoformat(stored['generated_time']) == n.generated_time


def test_a_resend_is_a_duplicate_and_counts_as_delivered(recovery_api, sink_for):
    sink, n = sink_for(endpoint=recovery_api.url), notification()
    assert sink.send(n).outcome is Outcome.DELIVERED
    answer = sink.send(n)
    assert answer.outcome is Outcome.DUPLICATE and answer.status == 409
    assert 'is duplicate' in answer.message


@pytest.mark.parametrize('status, message', [
    (409, ("Notification received from host compute-1 of type 'VM' is ignored "
          "as the host is already under maintenance.")),
    (400, "Invalid input for field/attribute payload. Value: {}."),
])
def test_final_answers_are_rejected_with_the_servers_message(
        recovery_api, sink_for, status, message):
    recovery_api.answer((status, message))
    answer = sink_for(endpoint=recovery_api.url).send(notification())
    assert answer == Answer(Outcome.REJECTED, status, message)


def test_an_unknown_host_is_retried_and_said_once_with_the_hosts_masakari_knows(
        recovery_api, make_conf, caplog):
    recovery_api.segments = {'segment-a': ['compute-2', 'compute-3']}
    not_found = (400, 'Host with name compute-1 could not be found.')
    recovery_api.answer(not_found, not_found)
    sink = masakari.MasakariSink(masakari.adapter_from_conf(
        make_conf(api={'endpoint': recovery_api.url})), 'compute-1')
    with caplog.at_level(logging.ERROR):
        for _ in range(2):
            assert sink.send(notification()) == Answer(Outcome.RETRY, *not_found)
    assert sink.host_unknown
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert 'does not know host compute-1 ([DEFAULT] hostname)' in error
    assert 'Hosts in its failover segments: compute-2, compute-3.' in error
    assert sink.send(notification()).outcome is Outcome.DELIVERED
    assert not sink.host_unknown


@pytest.mark.parametrize('segments, maintenance, unknown, level, said', [
    ({'segment-a': ['compute-1']}, set(), False, logging.INFO,
     'Host compute-1 is registered in failover segment segment-a'),
    ({'segment-a': ['compute-1']}, {'compute-1'}, False, logging.WARNING,
     'Host compute-1 is on maintenance in failover segment segment-a'),
    ({'segment-a': ['compute-2']}, set(), True, logging.ERROR,
     ('Host compute-1 ([DEFAULT] hostname) is in no failover segment of the '
     'recovery API, which would refuse its notifications (they are kept and '
     'retried). Hosts in its segments: compute-2')),
    (None, set(), False, logging.WARNING,
     ('Cannot check that the recovery API knows host compute-1: GET /segments: '
     'HTTP 404')),
])
def test_the_preflight_says_whether_masakari_knows_this_host(
        recovery_api, make_conf, caplog, segments, maintenance, unknown, level, said):
    recovery_api.segments, recovery_api.maintenance = segments, maintenance
    sink = masakari.MasakariSink(masakari.adapter_from_conf(
        make_conf(api={'endpoint': recovery_api.url})), 'compute-1')
    with caplog.at_level(logging.INFO):
        assert sink.check_registration() is True  # the API answered
    assert sink.host_unknown is unknown
    assert any(r.levelno == level and said in r.getMessage() for r in caplog.records), (
        [r.getMessage() for r in caplog.records])


@pytest.mark.parametrize('answer', [
    (200, 'not json at all'), (200, {'segments': 'not a list'}),
    (200, {'segments': [{'no uuid': 1}]}), (200, {'unexpected': []})])
def test_a_strange_answer_to_the_preflight_is_logged_never_raised(
        make_conf, caplog, answer):
    from tests.fakes.http import HTTPServer

    status, body = answer
    server = HTTPServer(lambda request: (status, body, {})).start()
    try:
        sink = masakari.MasakariSink(masakari.adapter_from_conf(make_conf(
            api={'endpoint': f'http://127.0.0.1:{server.port}/v1'})), 'compute-1')
        with caplog.at_level(logging.WARNING):
            assert sink.check_registration() is True  # it answered
        assert 'Cannot check that the recovery API knows host compute-1' in caplog.text
        assert not sink.host_unknown
    finally:
        server.stop()


def test_the_preflight_of_an_unreachable_api_is_tried_again(make_conf):
    sink = masakari.MasakariSink(masakari.adapter_from_conf(
        make_conf(api={'endpoint': f'http://127.0.0.1:{free_port()}/v1'})), 'compute-1')
    assert sink.check_registration() is False


def test_a_due_notification_has_its_connection_opened_while_it_is_stored(
        make_conf):
    from tests.fakes.http import HTTPServer

    # While ``closing``, a server that ends each connection after its
    # answer, as one whose keep-alive timeout is shorter than the time
    # between failures.
    closing = [True]

    def answer(request):
        document = {'segments': []} if request.method == 'GET' else {}
        return 202, document, {'Connection': 'close'} if closing[0] else {}
    api = HTTPServer(answer).start()
    sink = masakari.MasakariSink(masakari.adapter_from_conf(make_conf(
        api={'endpoint': f'http://127.0.0.1:{api.port}/v1'})), 'compute-1')
    ahead = masakari.ConnectAhead(sink)
    ahead.start()
    try:
        box = Outbox()
        box.on_held_due = ahead.request
        assert sink.send(notification()).outcome is Outcome.DELIVERED  # the URL
        assert sink.needs_connection()  # the server closed it
        connections = api.connections
        for uuid, opened in (('1', 1), ('2', 0)):
            n = notification(uuid + UUID[1:])
            with box.holding():
                box.add(n)  # the journal's transaction goes on meanwhile
                if opened:
                    wait_for(lambda: not sink.needs_connection(), 5,
                             'a connection opened ahead')
                else:
                    time.sleep(0.2)  # none would be opened
                box.release_held(sink.start)
                assert box.wait_sent(n, 0)  # written by this thread
            assert api.connections == connections + opened
            assert sink.finish(box.started(box.take(threading.Event(), 1.0))
                               ).outcome is Outcome.DELIVERED
            if opened:  # with one kept alive and idle, none is opened ahead
                closing[0] = False
                assert sink.send(notification()).outcome is Outcome.DELIVERED
                connections = api.connections
    finally:
        ahead.stop()
        sink.close()
        api.stop()


@pytest.mark.parametrize('status', [500, 502, 503, 404, 429])
def test_server_errors_are_transient(recovery_api, sink_for, status):
    recovery_api.answer((status, 'try later'))
    assert sink_for(endpoint=recovery_api.url).send(notification()).outcome is (
        Outcome.RETRY)


def test_a_hung_api_times_out_and_is_transient(recovery_api, sink_for):
    recovery_api.delay = 3.0
    started = time.monotonic()
    answer = sink_for(endpoint=recovery_api.url, timeout=0.3).send(notification())
    assert answer.outcome is Outcome.RETRY and answer.status is None
    assert time.monotonic() - started < 2.5


def test_connection_refused_is_transient(sink_for):
    answer = sink_for(endpoint=f'http://127.0.0.1:{free_port()}/v1').send(notification())
    assert answer.outcome is Outcome.RETRY and 'Connection refused' in answer.message


def test_one_session_serves_every_notification(recovery_api, sink_for):
    sink = sink_for(endpoint=recovery_api.url)
    for i in range(20):
        assert sink.send(notification(f'00000000-0000-0000-0000-{i:012d}')).outcome is (
            Outcome.DELIVERED)
    assert recovery_api.connections == 1


def test_every_notification_in_flight_keeps_its_own_connection(recovery_api,
                                                               make_conf):
    conf = make_conf(api={'endpoint': recovery_api.url})
    adapter = masakari.adapter_from_conf(conf)
    sink = masakari.MasakariSink(adapter, connections=16)
    recovery_api.delay = 0.05  # so that all 16 are in flight together
    barrier = threading.Barrier(16)
    answers = []

    def send(i):
        barrier.wait()
        for j in range(5):
            answers.append(sink.send(
                notification(f'00000000-0000-0000-{i:04d}-{j:012d}')))
    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a for a in answers if a.outcome is not Outcome.DELIVERED] == []
    assert len(recovery_api.stored) == 80
    # At most one connection per thread: none discarded and reopened.
    assert recovery_api.connections <= 16


@pytest.fixture
def keystone_and_api():
    holder = {}
    api = RecoveryAPI(token_check=lambda t: holder['ks'].is_valid(t)).start()
    wrong = 'http://127.0.0.1:9/wrong-interface'
    ks = fake_keystone.Keystone({'instance-ha': {
        'public': wrong, 'internal': api.url, 'admin': wrong}}).start()
    holder['ks'] = ks
    yield ks, api
    ks.stop()
    api.stop()


def keystone_options(ks):
    return dict(auth_type='password', auth_url=ks.auth_url,
                username=fake_keystone.USERNAME, password=fake_keystone.PASSWORD,
                project_name=fake_keystone.PROJECT, user_domain_name='Default',
                project_domain_name='Default', api_interface='internal',
                region=fake_keystone.REGION)


def test_endpoint_comes_from_the_keystone_catalog(keystone_and_api, make_conf,
                                                  tmp_path):
    ks, api = keystone_and_api
    path = tmp_path / 'keystone.conf'
    path.write_text('[api]\n' + ''.join(
        f'{name} = {value}\n' for name, value in keystone_options(ks).items()))
    conf = make_conf([str(path)])
    sink = masakari.MasakariSink(masakari.adapter_from_conf(conf))
    assert sink.send(notification()).outcome is Outcome.DELIVERED
    assert len(api.stored) == 1 and ks.logins == 1
    # Token revoked: the session logs in again, the notification goes through.
    ks.revoke_all()
    assert sink.send(notification('11111111-2222-3333-4444-555555555555')).outcome is (
        Outcome.DELIVERED)
    assert ks.logins == 2



def keystone_sink(ks, make_conf, tmp_path):
    path = tmp_path / 'keystone.conf'
    path.write_text('[api]\n' + ''.join(
        f'{name} = {value}\n' for name, value in keystone_options(ks).items()))
    sink = masakari.MasakariSink(masakari.adapter_from_conf(make_conf([str(path)])))
    session = sink._adapter.session
    asked = []

    def get_auth_headers(*args, **kwargs):
        asked.append(1)
        return session_get_auth_headers(*args, **kwargs)
    session_get_auth_headers = session.get_auth_headers
    session.get_auth_headers = get_auth_headers
    return sink, asked


def test_a_valid_token_is_reused_without_asking_keystoneauth_again(
        keystone_and_api, make_conf, tmp_path):
    ks, api = keystone_and_api
    sink, asked = keystone_sink(ks, make_conf, tmp_path)
    for i in range(3):
        assert sink.send(notification(f'{i}1111111-2222-3333-4444-555555555555')
                         ).outcome is Outcome.DELIVERED
    assert len(api.stored) == 3 and ks.logins == 1 and len(asked) == 1
    tokens = {r.headers['x-auth-token'] for r in api.requests}
    assert len(tokens) == 1 and ks.is_valid(tokens.pop())
    # Revoked: the 401 invalidates the plugin's token; a new one is asked for.
    ks.revoke_all()
    assert sink.send(notification()).outcome is Outcome.DELIVERED
    # The refused request had the kept token; its retry asked for a new one.
    assert ks.logins == 2 and len(asked) == 2
    assert ks.is_valid(api.requests[-1].headers['x-auth-token'])


@pytest.mark.parametrize('segments', [{'segment-a': ['compute-1']}, None])
def test_after_the_preflight_the_first_post_asks_keystoneauth_nothing(
        keystone_and_api, make_conf, tmp_path, segments, monkeypatch):
    ks, api = keystone_and_api
    api.segments = segments  # None: GET /segments answers 404
    sink, asked = keystone_sink(ks, make_conf, tmp_path)
    sink.hostname = 'compute-1'
    looked_up, routed = [], []
    get_endpoint = sink._adapter.get_endpoint
    sink._adapter.get_endpoint = lambda *a, **k: looked_up.append(1) or get_endpoint(
        *a, **k)
    route = httpclient._route
    monkeypatch.setattr(httpclient, '_route',
                        lambda url: routed.append(url) or route(url))
    assert sink.check_registration() is True
    before = len(asked), len(looked_up), len(routed)
    assert before[1:] == (1, 1)  # the proxies for its URL were looked up too
    assert sink.send(notification()).outcome is Outcome.DELIVERED
    assert (len(asked), len(looked_up), len(routed)) == before and ks.logins == 1
    assert ks.is_valid(api.requests[-1].headers['x-auth-token'])


def test_a_preflight_that_reaches_no_api_leaves_the_lookup_to_the_first_post(
        make_conf):
    sink = masakari.MasakariSink(masakari.adapter_from_conf(
        make_conf(api={'endpoint': f'http://127.0.0.1:{free_port()}/v1'})), 'compute-1')
    looked_up = []
    sink._adapter.get_endpoint = lambda *a, **k: looked_up.append(1)
    assert sink.check_registration() is False
    assert looked_up == []


def test_a_token_keystoneauth_would_renew_is_not_kept(make_conf, tmp_path):
    holder = {}
    api = RecoveryAPI(token_check=lambda t: holder['ks'].is_valid(t)).start()
    # Tokens expire in 60 s, within keystoneauth's 120 s renewal margin.
    ks = holder['ks'] = fake_keystone.Keystone(
        {'instance-ha': {'internal': api.url}}, token_lifetime=60).start()
    try:
        sink, asked = keystone_sink(ks, make_conf, tmp_path)
        for i in range(3):
            assert sink.send(notification(f'{i}1111111-2222-3333-4444-555555555555')
                             ).outcome is Outcome.DELIVERED
        # Asked each time, and keystoneauth logged in again each time.
        assert len(asked) == 3 and ks.logins >= 3
        assert len({r.headers['x-auth-token'] for r in api.requests}) == 3
    finally:
        ks.stop()
        api.stop()

class ScriptedSink:
    name = 'scripted'

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = []

    def send(self, n):
        self.sent.append((time.monotonic(), n))
        return self.answers.pop(0) if self.answers else Answer(Outcome.DELIVERED, 202)


def run_one(sink, policy, n=None):
    outbox = Outbox()
    sender = Sender(outbox, sink, policy)
    n = n or notification()
    outbox.add(n)
    return outbox, sender, n


def run_until_drained(outbox, sender, timeout=5.0):
    """Run the sender until nothing is pending (or ``timeout``), then stop it."""
    sender.start()
    try:
        wait_for(lambda: outbox.pending() == 0, timeout, 'an empty outbox')
    except AssertionError:
        pass  # the caller's assertions say what is left
    finally:
        sender.stop()


def test_sender_retries_per_policy_then_delivers():
    retry = Answer(Outcome.RETRY, 503, 'busy')
    sink = ScriptedSink(retry, retry)
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=5, interval=0.1))
    run_until_drained(outbox, sender)
    assert outbox.pending() == 0 and len(sink.sent) == 3
    times = [t for t, _ in sink.sent]
    assert all(b - a >= 0.09 for a, b in zip(times, times[1:], strict=False))
    assert all(sent is n for _, sent in sink.sent)  # same generated_time each time


def test_sender_makes_retry_max_retries_in_a_round():
    retry = Answer(Outcome.RETRY, None, 'ConnectFailure')
    sink = ScriptedSink(*[retry] * 3)
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=2, interval=0.0))
    answer = sender.deliver(n)
    assert answer.outcome is Outcome.RETRY and len(sink.sent) == 3


def test_sender_parks_after_a_round_and_tries_again(caplog):
    retry = Answer(Outcome.RETRY, None, 'ConnectFailure')
    sink = ScriptedSink(retry, retry)
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=1, interval=0.2))
    with caplog.at_level(logging.ERROR):
        run_until_drained(outbox, sender)
    assert outbox.pending() == 0 and len(sink.sent) == 3
    assert 'still not delivered' in caplog.text and 'kept pending' in caplog.text


def test_sender_keeps_rejected_as_dead_letter_and_logs_the_message(caplog):
    sink = ScriptedSink(
        Answer(Outcome.REJECTED, 400, 'Host with name x could not be found.'))
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=3, interval=0.0))
    with caplog.at_level(logging.ERROR):
        run_until_drained(outbox, sender)
    assert len(sink.sent) == 1
    assert [d.notification for d in outbox.dead_letters()] == [n]
    assert 'Host with name x could not be found.' in caplog.text


def test_a_notification_withdrawn_during_its_retries_is_not_tried_again(caplog):
    # The domain started again while the API kept failing: a later attempt
    # that got through would have Masakari stop a running VM.
    sink = ScriptedSink(*[Answer(Outcome.RETRY, 503, 'busy')] * 10)
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=10, interval=0.2))
    sender.start()
    try:
        wait_for(lambda: len(sink.sent) >= 2, 5, 'two attempts')
        assert outbox.withdraw_waiting(n.instance_uuid) == []  # in flight
        with caplog.at_level(logging.INFO):
            wait_for(lambda: outbox.pending() == 0, 5, 'the withdrawal')
        tried = len(sink.sent)
        time.sleep(0.5)
    finally:
        sender.stop()
    assert len(sink.sent) == tried <= 3
    assert 'withdrawn: the domain runs again; not retried' in caplog.text
    assert outbox.dead_letters() == []


def test_stop_interrupts_a_retry_wait_and_keeps_the_notification():
    sink = ScriptedSink(*[Answer(Outcome.RETRY, 503, 'busy')] * 10)
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=10, interval=60.0))
    sender.start()
    deadline = time.monotonic() + 5
    while not sink.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sender.stop()
    assert time.monotonic() - started < 2.0
    assert outbox.pending() == 1 and len(sink.sent) == 1


def test_backoff_grows_with_jitter_up_to_the_cap():
    wait = RetryPolicy(retry_max=10, interval=1.0, backoff=True,
                       interval_max=5.0).wait()
    state = tenacity.RetryCallState(None, None, (), {})
    waits = []
    for attempt in range(1, 7):
        state.attempt_number = attempt
        waits.append(wait(state))
    assert 1.0 <= waits[0] <= 2.0
    assert waits[2] >= 4.0
    assert max(waits) <= 5.0
    fixed = RetryPolicy(retry_max=1, interval=2.0).wait()
    assert fixed(state) == 2.0


class SlowSink(ScriptedSink):
    """Answers after 0.1 s; counts what is in flight together."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def send(self, n):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.1)
        with self.lock:
            self.in_flight -= 1
        return super().send(n)


def backlog(outbox, count):
    for i in range(count):
        outbox.add(notification(f'00000000-0000-0000-0000-{i:012d}'))


def test_senders_grow_with_the_backlog_up_to_max_in_flight():
    sink, outbox = SlowSink(), Outbox()
    backlog(outbox, 12)
    sender = Sender(outbox, sink, RetryPolicy(retry_max=0, interval=0),
                    max_in_flight=4)
    run_until_drained(outbox, sender)
    assert len(sink.sent) == 12
    assert sink.most_in_flight == 4 and sender.peak_threads == 4
    assert not any(t.name.startswith('sender-scripted') for t in threading.enumerate())


def test_a_burst_is_in_flight_at_once_with_no_more_threads_than_it_needs():
    sink, outbox = SlowSink(), Outbox()
    backlog(outbox, 10)
    sender = Sender(outbox, sink, RetryPolicy(retry_max=0, interval=0),
                    max_in_flight=64)
    started = time.monotonic()
    run_until_drained(outbox, sender)
    # All ten together: one 0.1 s answer, not ten in a row.
    assert sink.most_in_flight == 10 and sender.peak_threads == 10
    assert time.monotonic() - started < 0.9


def test_failures_detected_one_after_another_are_in_flight_together():
    # Each arrives while every sender is busy with the ones before it.
    sink, outbox = SlowSink(), Outbox()
    sender = Sender(outbox, sink, RetryPolicy(retry_max=0, interval=0),
                    max_in_flight=64)
    sender.start()
    try:
        for i in range(10):
            outbox.add(notification(f'00000000-0000-0000-0000-{i:012d}'))
            time.sleep(0.005)
        wait_for(lambda: len(sink.sent) == 10, 5, 'all delivered')
    finally:
        sender.stop()
    assert sink.most_in_flight == 10 and sender.peak_threads == 10


def test_extra_senders_end_when_idle_and_the_first_stays(monkeypatch):
    monkeypatch.setattr(Sender, 'IDLE_EXIT', 0.2)
    sink, outbox = SlowSink(), Outbox()
    backlog(outbox, 6)
    sender = Sender(outbox, sink, RetryPolicy(retry_max=0, interval=0),
                    max_in_flight=8)
    sender.start()
    try:
        wait_for(lambda: len(sink.sent) == 6, 5, 'the backlog delivered')
        assert sender.thread_count() == 6
        wait_for(lambda: sender.thread_count() == 1, 5, 'extra senders ended')
        assert sender.threads[0].is_alive()
        # A new burst grows it again.
        outbox.add(notification('11111111-0000-0000-0000-000000000001'))
        outbox.add(notification('11111111-0000-0000-0000-000000000002'))
        wait_for(lambda: len(sink.sent) == 8, 5, 'the second burst delivered')
        assert sink.most_in_flight == 6
    finally:
        sender.stop()
    assert not any(t.name.startswith('sender-scripted') for t in threading.enumerate())




def test_a_notification_is_known_sent_before_its_answer(recovery_api, sink_for):
    # The dispatcher waits for this before the journal write and the
    # subscribers' work for the same event.
    recovery_api.delay = 0.5
    outbox = Outbox()
    sender = Sender(outbox, sink_for(endpoint=recovery_api.url),
                    RetryPolicy(retry_max=0, interval=0))
    sender.start()
    try:
        n = notification()
        started = time.monotonic()
        outbox.add(n)
        assert outbox.wait_sent(n, 2.0)
        assert time.monotonic() - started < 0.4  # not after the answer
        assert outbox.pending() == 1
        wait_for(lambda: outbox.pending() == 0, 5, 'the answer')
    finally:
        sender.stop()


def test_a_notification_that_cannot_be_sent_is_not_said_sent(sink_for):
    outbox = Outbox()
    sender = Sender(outbox, sink_for(endpoint=f'http://127.0.0.1:{free_port()}/v1'),
                    RetryPolicy(retry_max=0, interval=10))
    sender.start()
    try:
        n = notification()
        outbox.add(n)
        assert not outbox.wait_sent(n, 0.3)
        assert outbox.pending() == 1
    finally:
        sender.stop()


@pytest.mark.parametrize('name, level', [('masakari', logging.INFO),
                                         ('webhook-ops', logging.DEBUG)])
def test_a_delivery_is_logged_at_info_only_for_the_recovery_api(caplog, name, level):
    sink = ScriptedSink()
    sink.name = name
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=0, interval=0))
    with caplog.at_level(logging.DEBUG, logger='instancemonitor.sender'):
        run_until_drained(outbox, sender)
    (line,) = [r for r in caplog.records if 'delivered to' in r.getMessage()]
    assert line.levelno == level and n.notification_id in line.getMessage()


def test_the_first_attempt_then_the_retries_are_numbered_as_tenacitys(caplog):
    retry = Answer(Outcome.RETRY, 503, 'busy')
    sink = ScriptedSink(retry, retry)
    outbox, sender, n = run_one(sink, RetryPolicy(retry_max=5, interval=0.01))
    with caplog.at_level(logging.WARNING, logger='instancemonitor.sender'):
        run_until_drained(outbox, sender)
    assert len(sink.sent) == 3
    assert [r.getMessage().split('(attempt ')[1].split(':')[0]
            for r in caplog.records if 'not delivered' in r.getMessage()] == ['1', '2']
