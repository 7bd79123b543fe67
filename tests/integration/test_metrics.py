"""The Prometheus endpoint, scraped for real after real events."""

import socket
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_testdriver import DOMAIN_XML
from tests.processes import free_port
from tests.processes import wait_for


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5).read()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples}


def test_metrics_count_events_deliveries_and_dead_letters(start_agent, client,
                                                          recovery_api):
    port = free_port()
    agent = start_agent(events={'forward': 'all', 'reboot_window': 0},
                        metrics={'port': port})
    conn = client('test:///default')
    delivered = conn.createXML(DOMAIN_XML.format(name='m-ok', uuid=uuid.uuid4()))
    delivered.destroy()
    recovery_api.wait_stored(1)
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'delivery')
    recovery_api.answer((400, 'Invalid input for field/attribute payload.'))
    rejected = conn.createXML(DOMAIN_XML.format(name='m-bad', uuid=uuid.uuid4()))
    rejected.destroy()
    wait_for(lambda: agent.outbox.dead_letters(), 5, 'a dead letter')
    recovery_api.unknown_hosts.add('compute-1')
    conn.createXML(DOMAIN_XML.format(name='m-unknown', uuid=uuid.uuid4())).destroy()
    wait_for(lambda: scrape(port)[('instancemonitor_recovery_api_host_unknown', ())]
             == 1, 5, 'the host unknown')
    recovery_api.unknown_hosts.clear()
    recovery_api.wait_stored(2)
    wait_for(lambda: agent.outbox.pending() == 0, 5, 'delivery')
    m = scrape(port)
    assert m[('instancemonitor_recovery_api_host_unknown', ())] == 0
    assert m[('instancemonitor_state_degraded', ())] == 0
    assert m[('instancemonitor_libvirt_connected', ())] == 1
    assert m[('instancemonitor_libvirt_reconnects_total', ())] == 0
    assert m[('instancemonitor_domain_events_total',
              (('kind', 'LIFECYCLE'), ('source', 'libvirt')))] >= 4  # 2 starts, 2 stops
    sink = ('sink', 'masakari')
    assert m[('instancemonitor_notifications_sent_total', (sink,))] == 2
    assert m[('instancemonitor_notifications_rejected_total',
              (sink, ('status', '400')))] == 1
    assert m[('instancemonitor_notifications_dead_lettered_total', (sink,))] == 1
    assert m[('instancemonitor_outbox_pending', (sink,))] == 0
    assert m[('instancemonitor_delivery_latency_seconds_count', (sink,))] == 2
    assert m[('instancemonitor_delivery_latency_seconds_bucket',
              (('le', '+Inf'), sink))] == 2
    assert m[('instancemonitor_last_delivery_timestamp_seconds', (sink,))] > 0
    assert m[('instancemonitor_heartbeat_domains', (('state', 'healthy'),))] == 0


def test_a_metrics_port_in_use_is_logged_and_monitoring_goes_on(
        start_agent, client, recovery_api, caplog):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        agent = start_agent(events={'forward': 'all', 'reboot_window': 0},
                            metrics={'port': taken.getsockname()[1]})
        assert '[metrics] port' in caplog.text and 'metrics are off' in caplog.text
        dom = client('test:///default').createXML(
            DOMAIN_XML.format(name='m-busy', uuid=uuid.uuid4()))
        dom.destroy()
        recovery_api.wait_stored(1)
        assert agent.connection.connected
