"""The message bus: every domain event as an oslo.messaging notification on a
real RabbitMQ broker, read by a real oslo.messaging listener, through broker
restarts and a broker crash."""

import uuid

import pytest

from tests.integration.test_daemon import config
from tests.integration.test_daemon import destroy_test_domain
from tests.integration.test_testdriver import DOMAIN_XML
from tests.processes import free_port
from tests.processes import wait_for
from tests.rabbitmq import Consumer
from tests.rabbitmq import RabbitMQ
from tests.tls import make_ca


@pytest.fixture(scope='session')
def broker_ca(tmp_path_factory):
    """The CA of the broker's TLS certificate (for 127.0.0.1)."""
    return make_ca(tmp_path_factory.mktemp('broker-ca'), 'broker-ca')


@pytest.fixture(scope='session')
def rabbitmq(tmp_path_factory, broker_ca):
    broker = RabbitMQ(tmp_path_factory.mktemp('rabbitmq'), tls=broker_ca)
    try:
        yield broker.start()
    finally:
        broker.cleanup()  # by pid, even when it failed to start


@pytest.fixture
def consumers(rabbitmq):
    made = []

    def make(topic: str) -> Consumer:
        made.append(Consumer(rabbitmq.url, topic))
        return made[-1]

    yield make
    for consumer in made:
        consumer.stop()


@pytest.fixture
def topic():
    """A topic of the test's own: the broker outlives the test."""
    return f'im-test-{uuid.uuid4().hex[:8]}'


def cycle(conn, count: int, prefix: str) -> list[str]:
    uuids = []
    for index in range(count):
        domain_uuid = str(uuid.uuid4())
        conn.createXML(DOMAIN_XML.format(name=f'{prefix}-{index}',
                                         uuid=domain_uuid)).destroy()
        uuids.append(domain_uuid)
    return uuids


def test_every_event_is_an_oslo_messaging_notification(
        start_agent, client, rabbitmq, consumers, topic):
    consumer = consumers(topic).start()
    agent = start_agent(message_bus={'transport_url': rabbitmq.url, 'topic': topic})
    uuids = cycle(client('test:///default'), 2, 'bus')
    got = [m for m in consumer.wait_unique(4 + 1)  # + the scan's 'test' domain
           if m['payload']['instance']['uuid'] in uuids]
    assert [(m['payload']['instance']['uuid'], m['event_type']) for m in got] == [
        (uuids[0], 'instancemonitor.LIFECYCLE.STARTED_BOOTED'),
        (uuids[0], 'instancemonitor.LIFECYCLE.STOPPED_DESTROYED'),
        (uuids[1], 'instancemonitor.LIFECYCLE.STARTED_BOOTED'),
        (uuids[1], 'instancemonitor.LIFECYCLE.STOPPED_DESTROYED')]
    last = got[-1]
    assert last['publisher_id'] == 'instancemonitor.compute-1'
    assert last['message_id'] == last['payload']['id']
    assert last['payload'] == {
        'id': last['message_id'], 'host': 'compute-1',
        'instance': {'uuid': uuids[1], 'name': 'bus-1'},
        'event': 'LIFECYCLE', 'detail': 'STOPPED_DESTROYED',
        'time': last['payload']['time'], 'source': 'libvirt'}
    # The consumer may have the last one before the agent has the broker's
    # confirm for it: then the outbox empties a moment later.
    wait_for(lambda: agent.outboxes['message-bus'].pending() == 0, 5,
             'every event confirmed by the broker')


def test_a_broker_restarted_mid_stream_misses_nothing(
        start_agent, client, rabbitmq, consumers, topic):
    consumer = consumers(topic).start()
    agent = start_agent(
        message_bus={'transport_url': rabbitmq.url, 'topic': topic, 'timeout': 2,
                     'events': ['LIFECYCLE/STOPPED_DESTROYED']},
        callback={'retry_interval': 0.5, 'retry_max': 1})
    conn = client('test:///default')
    before = cycle(conn, 5, 'before')
    consumer.wait_unique(5)
    rabbitmq.stop()
    during = cycle(conn, 10, 'during')
    wait_for(lambda: agent.outboxes['message-bus'].pending() == 10, 10,
             'all 10 kept while the broker is down')
    rabbitmq.start()
    after = cycle(conn, 5, 'after')
    got = [m['payload']['instance']['uuid'] for m in consumer.wait_unique(20, 60)]
    assert sorted(got) == sorted(before + during + after)  # each once
    # In order of detection, but for one that was between retries when the
    # broker came back.
    assert got[:5] == before
    assert [u for u in got if u in after] == after
    assert agent.outboxes['message-bus'].dead_letters() == []


def test_confirmed_messages_survive_a_broker_crash(
        start_agent, client, rabbitmq, consumers, topic):
    agent = start_agent(
        message_bus={'transport_url': rabbitmq.url, 'topic': topic, 'timeout': 2,
                     'events': ['LIFECYCLE/STOPPED_DESTROYED']},
        callback={'retry_interval': 0.5, 'retry_max': 1})
    conn = client('test:///default')
    confirmed = cycle(conn, 5, 'confirmed')  # no consumer yet: they wait queued
    wait_for(lambda: agent.metrics.registry.get_sample_value(
        'instancemonitor_notifications_sent_total', {'sink': 'message-bus'}) == 5,
        20, 'the broker confirms all 5')
    rabbitmq.kill()
    during = cycle(conn, 5, 'crashed')
    rabbitmq.start()
    consumer = consumers(topic).start()
    got = [m['payload']['instance']['uuid'] for m in consumer.wait_unique(10, 60)]
    assert got[:5] == confirmed  # kept by the broker through its crash
    assert sorted(got[5:]) == sorted(during)


def test_the_daemon_publishes_and_never_logs_the_broker_password(
        test_libvirtd, recovery_api, agent_process, rabbitmq, consumers, topic,
        tmp_path):
    consumer = consumers(topic).start()
    agent = agent_process(
        config(test_libvirtd.uri, f'endpoint = {recovery_api.url}', tmp_path / 'state')
        + f'\n[message_bus]\ntransport_url = {rabbitmq.url}\ntopic = {topic}\n'
          'events = LIFECYCLE/STOPPED_*\n')
    agent.wait_log('Connected to libvirt')
    domain_uuid = destroy_test_domain(test_libvirtd.uri)
    (message,) = consumer.wait_unique(1)
    assert message['payload']['instance']['uuid'] == domain_uuid
    agent.wait_log('delivered to message-bus')
    assert rabbitmq.password not in agent.output()
    assert 'Connected to the message bus at amqp://instancemonitor:**@' in agent.output()


def test_a_dead_broker_in_the_list_is_passed_over(start_agent, client, rabbitmq,
                                                 consumers, topic):
    consumer = consumers(topic).start()
    dead = rabbitmq.url.replace(f':{rabbitmq.port}/', f':{free_port()}/')
    start_agent(message_bus={'transport_url': f'{dead};{rabbitmq.url}',
                             'topic': topic, 'timeout': 2,
                             'events': ['LIFECYCLE/STOPPED_DESTROYED']},
                callback={'retry_max': 0})
    uuids = cycle(client('test:///default'), 3, 'failover')
    got = consumer.wait_unique(3)
    assert sorted(m['payload']['instance']['uuid'] for m in got) == sorted(uuids)


def tls_url(rabbitmq, host: str) -> str:
    return f'rabbit://instancemonitor:{rabbitmq.password}@{host}:{rabbitmq.tls_port}/'


def bus_notification(topic_uuid: str):
    import datetime

    from instancemonitor.events import Notification
    return Notification('compute-1', topic_uuid, 'LIFECYCLE', 'STOPPED_FAILED',
                        datetime.datetime.now(datetime.UTC), sink='message-bus')


def test_over_tls_the_broker_is_verified_by_its_ca_and_name(
        rabbitmq, broker_ca, consumers, topic, tmp_path):
    from instancemonitor.sinks import Outcome
    from instancemonitor.sinks.messagebus import MessageBusSink
    from instancemonitor.sinks.messagebus import tls_options

    consumer = consumers(topic).start()
    verified = tls_options(str(broker_ca.ca))
    good = MessageBusSink(tls_url(rabbitmq, '127.0.0.1'), 'compute-1', topic=topic,
                          timeout=5, tls=verified)
    n = bus_notification(str(uuid.uuid4()))
    try:
        assert good.send(n).outcome is Outcome.DELIVERED
    finally:
        good.close()
    wait_for(lambda: [m for m in consumer.received
                      if m['payload']['id'] == n.notification_id], 10, 'the event')

    other = make_ca(tmp_path / 'other-ca', 'other-ca')
    failures = {
        'an unknown CA': (tls_url(rabbitmq, '127.0.0.1'), tls_options(str(other.ca)),
                          'CERTIFICATE_VERIFY_FAILED'),
        # As if the URL named a host the certificate is not for (kombu
        # turns "localhost" into 127.0.0.1, so no loopback name can differ).
        'another host name': (tls_url(rabbitmq, '127.0.0.1'),
                              dict(verified, server_hostname='broker.example'),
                              "Hostname mismatch"),
    }
    for what, (url, options, said) in failures.items():
        sink = MessageBusSink(url, 'compute-1', topic=topic, timeout=5, tls=options)
        try:
            answer = sink.send(bus_notification(str(uuid.uuid4())))
        finally:
            sink.close()
        # Kept and retried, with a clear reason; the password never sent.
        assert answer.outcome is Outcome.RETRY, what
        assert said in answer.message, (what, answer.message)


def test_ssl_true_in_the_configuration_is_tls(start_agent, client, rabbitmq,
                                              broker_ca, consumers, topic):
    consumer = consumers(topic).start()
    start_agent(message_bus={'transport_url': tls_url(rabbitmq, '127.0.0.1'),
                             'topic': topic, 'ssl': True,
                             'ssl_ca_file': str(broker_ca.ca)})
    (domain_uuid,) = cycle(client('test:///default'), 1, 'tls')
    wait_for(lambda: [m for m in consumer.received
                      if m['payload']['instance']['uuid'] == domain_uuid
                      and m['payload']['detail'] == 'STOPPED_DESTROYED'], 20,
             'the stop over TLS')
