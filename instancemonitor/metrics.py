"""Prometheus metrics (prometheus-client), on a registry of the agent's own.

Counters and the latency histogram are updated as things happen (a bus
subscriber, the sender's settle hook); gauges are read from the live state
at each scrape.
"""

import dataclasses
import logging
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from instancemonitor import clock
from instancemonitor.events import SILENT_KINDS
from instancemonitor.events import DomainEvent
from instancemonitor.events import Notification
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome

LOG = logging.getLogger(__name__)

THREAD_NAME = 'metrics-http'
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                   300, 3600)


@dataclasses.dataclass(frozen=True)
class LiveState:
    """Where the gauges read from, at scrape time."""

    connected: Callable[[], bool]
    reconnects: Callable[[], int]
    # Per sink: masakari, webhook:NAME, message-bus.
    pending: Callable[[], dict[str, int]]
    dead_lettered: Callable[[], dict[str, int]]
    heartbeat: Callable[[], dict[str, int]]
    # Per sink: seconds since the oldest pending notification was detected.
    oldest_pending: Callable[[], dict[str, float]] = dict
    # The recovery API said it does not know this host.
    host_unknown: Callable[[], bool] = lambda: False
    # The durable state is not all on disk.
    state_degraded: Callable[[], bool] = lambda: False
    # Domains by (application probe, its state).
    probes: Callable[[], dict[tuple[str, str], int]] = dict


class _LiveCollector(Collector):
    def __init__(self, state: LiveState) -> None:
        self._state = state

    def collect(self):
        s = self._state
        yield GaugeMetricFamily('instancemonitor_libvirt_connected',
                                '1 while the libvirt connection is open',
                                value=int(s.connected()))
        yield CounterMetricFamily('instancemonitor_libvirt_reconnects',
                                  'Connections opened after a lost one',
                                  value=s.reconnects())
        pending = GaugeMetricFamily('instancemonitor_outbox_pending',
                                    'Notifications waiting for a final answer',
                                    labels=['sink'])
        for sink, count in sorted(s.pending().items()):
            pending.add_metric([sink], count)
        yield pending
        oldest = GaugeMetricFamily(
            'instancemonitor_outbox_oldest_pending_age_seconds',
            'Seconds since the oldest notification still waiting for a final '
            'answer was detected (0: none waits)', labels=['sink'])
        for sink, age in sorted(s.oldest_pending().items()):
            oldest.add_metric([sink], age)
        yield oldest
        dead = CounterMetricFamily('instancemonitor_notifications_dead_lettered',
                                   'Notifications kept as dead letters: rejected '
                                   'or past max_pending_age', labels=['sink'])
        for sink, count in sorted(s.dead_lettered().items()):
            dead.add_metric([sink], count)
        yield dead
        health = GaugeMetricFamily('instancemonitor_heartbeat_domains',
                                   'Domains watched by the heartbeat, by state',
                                   labels=['state'])
        for state, count in sorted(s.heartbeat().items()):
            health.add_metric([state], count)
        yield health
        probes = GaugeMetricFamily('instancemonitor_probe_domains',
                                   'Domains an application probe runs on, by probe '
                                   'and state', labels=['probe', 'state'])
        for (probe, state), count in sorted(s.probes().items()):
            probes.add_metric([probe, state], count)
        yield probes
        yield GaugeMetricFamily(
            'instancemonitor_recovery_api_host_unknown',
            '1 while the recovery API says it does not know this host (its '
            'notifications are kept and retried)', value=int(s.host_unknown()))
        yield GaugeMetricFamily(
            'instancemonitor_state_degraded',
            '1 while the state database cannot be written (changes wait in '
            'memory) or the state is in memory only', value=int(s.state_degraded()))


class AgentMetrics:
    def __init__(self, state: LiveState) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self._events = prometheus_client.Counter(
            'instancemonitor_domain_events', 'Domain events seen, by kind and source',
            ['kind', 'source'], registry=self.registry)
        self._sent = prometheus_client.Counter(
            'instancemonitor_notifications_sent',
            'Notifications a sink accepted, or already had (409 duplicate)',
            ['sink'], registry=self.registry)
        self._rejected = prometheus_client.Counter(
            'instancemonitor_notifications_rejected',
            'Notifications a sink rejected for good, by HTTP status',
            ['sink', 'status'], registry=self.registry)
        self._latency = prometheus_client.Histogram(
            'instancemonitor_delivery_latency_seconds',
            'From detection of an event to a sink accepting its notification',
            ['sink'], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._last_delivery = prometheus_client.Gauge(
            'instancemonitor_last_delivery_timestamp_seconds',
            'When a notification was last delivered to a sink (Unix time)',
            ['sink'], registry=self.registry)
        self.registry.register(_LiveCollector(state))
        self._server: WSGIServer | None = None
        # Per sink: its children of _sent, _latency and _last_delivery
        # (``labels()`` takes a lock and checks its arguments on every call).
        self._delivery_metrics: dict[str, tuple] = {}

    def observe_event(self, event: DomainEvent) -> None:
        """A bus subscriber (for every kind but the silent ones)."""
        if event.kind in SILENT_KINDS:
            return
        self._events.labels(event.kind.value, event.source).inc()

    def settled(self, notification: Notification, answer: Answer) -> None:
        """The sender's hook: a notification got its final answer."""
        if answer.outcome in (Outcome.DELIVERED, Outcome.DUPLICATE):
            now = clock.utcnow()
            sink = notification.sink
            children = self._delivery_metrics.get(sink)
            if children is None:
                children = self._delivery_metrics[sink] = (
                    self._sent.labels(sink), self._latency.labels(sink),
                    self._last_delivery.labels(sink))
            sent, latency, last_delivery = children
            sent.inc()
            latency.observe(
                max(0.0, (now - notification.generated_time).total_seconds()))
            last_delivery.set(now.timestamp())
        elif answer.outcome is Outcome.REJECTED:
            self._rejected.labels(notification.sink, str(answer.status or '')).inc()

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics``; a port in use is logged, not fatal."""
        try:
            self._server, thread = prometheus_client.start_http_server(
                port, host, self.registry)
        except OSError as error:
            LOG.error('[metrics] port %d on %s: %s; metrics are off', port, host,
                      error)
            return
        thread.name = THREAD_NAME
        LOG.info('Metrics on http://%s:%d/metrics', host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
