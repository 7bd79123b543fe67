"""Webhooks: every domain event they ask for, signed, through their own
outboxes, to a real HTTP receiver on 127.0.0.1."""

import threading
import uuid

import pytest

from instancemonitor import store
from tests.fakes.webhook import WebhookReceiver
from tests.integration.test_testdriver import DOMAIN_XML
from tests.processes import wait_for

SECRET = 's3cret-for-hmac'


@pytest.fixture
def receivers():
    made = []

    def make(secret: str | None = None) -> WebhookReceiver:
        made.append(WebhookReceiver(secret))
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


def webhooks_conf(tmp_path, **hooks: dict) -> list[str]:
    """A config file with these webhooks: name → {option: value}."""
    lines = ['[webhooks]', f'enabled = {", ".join(hooks)}']
    for name, options in hooks.items():
        lines.append(f'[webhook:{name}]')
        lines += [f'{key} = {value}' for key, value in options.items()]
    path = tmp_path / 'webhooks.conf'
    path.write_text('\n'.join(lines) + '\n')
    return [str(path)]


def cycle(conn, count: int, prefix: str) -> list[str]:
    """Start and destroy ``count`` domains; return their uuids."""
    uuids = []
    for index in range(count):
        domain_uuid = str(uuid.uuid4())
        dom = conn.createXML(DOMAIN_XML.format(name=f'{prefix}-{index}',
                                               uuid=domain_uuid))
        dom.destroy()
        uuids.append(domain_uuid)
    return uuids


def mine(documents: list[dict], uuids: list[str]) -> list[dict]:
    return [d for d in documents if d['instance']['uuid'] in uuids]


def test_each_webhook_gets_the_events_it_asked_for_signed(
        start_agent, client, recovery_api, receivers, tmp_path):
    everything, stops = receivers(SECRET), receivers()
    agent = start_agent(
        config_files=webhooks_conf(
            tmp_path,
            everything={'url': everything.url, 'secret': SECRET},
            stops={'url': stops.url, 'events': 'LIFECYCLE/STOPPED_*'}),
        events={'forward': 'all', 'reboot_window': 0})
    (domain_uuid,) = cycle(client('test:///default'), 1, 'hook')
    recovery_api.wait_stored(1)
    wait_for(lambda: len(mine(everything.unique(), [domain_uuid])) == 2, 10,
             'both events at the catch-all webhook')
    started, destroyed = mine(everything.unique(), [domain_uuid])
    assert (started['event'], started['detail']) == ('LIFECYCLE', 'STARTED_BOOTED')
    assert destroyed == {
        'id': destroyed['id'], 'host': 'compute-1',
        'instance': {'uuid': domain_uuid, 'name': 'hook-0'},
        'event': 'LIFECYCLE', 'detail': 'STOPPED_DESTROYED',
        'time': destroyed['time'], 'source': 'libvirt'}
    assert destroyed['time'].endswith('Z')
    headers = everything.headers[everything.deliveries.index(destroyed)]
    assert headers['x-instancemonitor-delivery'] == destroyed['id']
    assert headers['x-instancemonitor-event'] == 'LIFECYCLE/STOPPED_DESTROYED'
    assert everything.bad_signatures == 0
    wait_for(lambda: mine(stops.unique(), [domain_uuid]), 10, 'the stop')
    (only,) = mine(stops.unique(), [domain_uuid])
    assert only['detail'] == 'STOPPED_DESTROYED' and only['id'] != destroyed['id']
    assert 'x-instancemonitor-signature-256' not in stops.headers[0]
    wait_for(lambda: agent.pending() == 0, 10, 'every outbox empty')


def test_a_wrong_secret_is_refused_and_kept_as_a_dead_letter(
        start_agent, client, recovery_api, receivers, tmp_path):
    receiver = receivers(SECRET)
    agent = start_agent(config_files=webhooks_conf(
        tmp_path, audit={'url': receiver.url, 'secret': 'not-the-secret',
                         'events': 'LIFECYCLE/STOPPED_DESTROYED'}))
    cycle(client('test:///default'), 1, 'wrong')
    box = agent.outboxes['webhook:audit']
    wait_for(lambda: box.dead_letters(), 10, 'a dead letter')
    (dead,) = box.dead_letters()
    assert dead.reason.startswith('HTTP 401')
    assert receiver.deliveries == [] and receiver.bad_signatures == 1
    assert agent.outbox.dead_letters() == []


def test_a_blocked_webhook_never_delays_the_recovery_api(
        start_agent, client, recovery_api, receivers, tmp_path):
    slow = receivers()
    slow.released.clear()  # every answer waits
    agent = start_agent(
        config_files=webhooks_conf(tmp_path, slow={
            'url': slow.url, 'timeout': 60, 'events': 'LIFECYCLE/STOPPED_*'}),
        events={'forward': 'all', 'reboot_window': 0})
    uuids = cycle(client('test:///default'), 5, 'slow')
    stored = recovery_api.wait_stored(5)
    assert {n['payload']['instance_uuid'] for n in stored} == set(uuids)
    assert slow.deliveries == []
    wait_for(lambda: agent.outboxes['webhook:slow'].pending() == 5, 5, '5 waiting')
    slow.released.set()
    assert [d['instance']['uuid'] for d in slow.wait_unique(5)] == uuids


def test_a_receiver_restarted_mid_stream_gets_every_event(
        start_agent, client, recovery_api, receivers, tmp_path):
    receiver = receivers()
    start_agent(
        config_files=webhooks_conf(tmp_path, ops={
            'url': receiver.url, 'events': 'LIFECYCLE/STOPPED_DESTROYED'}),
        callback={'retry_interval': 0.2, 'retry_max': 2})
    conn = client('test:///default')
    first = cycle(conn, 5, 'before')
    receiver.wait_unique(5)
    receiver.stop()  # connections refused from now on
    during = cycle(conn, 10, 'during')
    receiver.answer(503, 503)  # then it comes back, overloaded at first
    receiver.start_again()
    after = cycle(conn, 5, 'after')
    got = [d['instance']['uuid'] for d in receiver.wait_unique(20)]
    assert sorted(got) == sorted(first + during + after)
    # In order of detection, but for one that was between retries when the
    # receiver came back.
    assert got[:5] == first
    assert [u for u in got if u in after] == after
    assert len(receiver.deliveries) == 20  # each once: nothing was half-sent


def test_undelivered_events_survive_a_restart_of_the_agent(
        start_agent, client, recovery_api, receivers, tmp_path):
    receiver = receivers()
    receiver.stop()
    files = webhooks_conf(tmp_path, ops={
        'url': receiver.url, 'events': 'LIFECYCLE/STOPPED_DESTROYED'})
    agent = start_agent(config_files=files, callback={'retry_max': 0})
    uuids = cycle(client('test:///default'), 3, 'kept')
    wait_for(lambda: agent.outboxes['webhook:ops'].pending() == 3, 10, '3 pending')
    agent.stop()
    kept = store.SqliteStateStore(str(tmp_path / 'state'), store.SUBSCRIBERS_FILENAME)
    assert [n.instance_uuid for n, _ in kept.pending('webhook:ops')] == uuids
    kept.close()
    receiver.start_again()
    start_agent(config_files=files)
    assert [d['instance']['uuid'] for d in receiver.wait_unique(3)] == uuids


def test_threads_are_named_one_per_subscriber(start_agent, recovery_api, receivers,
                                             tmp_path):
    hook = receivers()
    agent = start_agent(config_files=webhooks_conf(tmp_path, a={'url': hook.url},
                                                   b={'url': hook.url}))
    names = {t.name for t in threading.enumerate()}
    assert {'sender-webhook:a-0', 'sender-webhook:b-0'} <= names
    # A sender waiting on its receiver must not get the agent restarted by
    # the systemd watchdog: only the recovery API's senders are watched.
    watched = agent.liveness.stale(-1.0)
    assert 'sender-masakari-0' in watched
    assert not [name for name in watched if 'webhook' in name]
