"""Wiring and the lifecycle of the agent's threads.

Threads: ``libvirt-event-loop`` (libvirt's loop; callbacks only enqueue),
``libvirt-connection`` (connect, reconnect, the scan after each connect),
``reconcile`` (periodic state scans), ``migration-watch`` (the outcome of
a migration whose source QEMU died; idle otherwise), ``heartbeat``
(guest-ping rounds, on a ``heartbeat-ping`` pool that grows only as far as
needed), ``probes`` (the application probes; with them, the heartbeat and
the probes share one ``guest-agent`` pool), ``event-dispatch`` (the bus:
filter, journal, outboxes), ``sender-masakari-0`` and, while
there is a backlog, up to ``[callback] max_in_flight`` - 1 more
``sender-masakari-N`` (delivery to the recovery API) and one
``sender-webhook:NAME-0`` per webhook and ``sender-message-bus-0``
(delivery to event subscribers, each from an outbox of its own).
"""

import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Protocol

import libvirt
from oslo_config import cfg

from instancemonitor import clock
from instancemonitor import hostboot
from instancemonitor import statelock
from instancemonitor import store
from instancemonitor.bus import WILDCARD
from instancemonitor.bus import EventBus
from instancemonitor.conf import api as api_conf
from instancemonitor.conf import default as default_conf
from instancemonitor.conf import webhooks as webhooks_conf
from instancemonitor.conf.errors import ConfigurationError
from instancemonitor.domainstate import AWAITING_MIGRATION
from instancemonitor.domainstate import DomainMachine
from instancemonitor.domainstate import HeartbeatPolicy
from instancemonitor.eventnames import EventPatterns
from instancemonitor.events import RECOVERY_SINK
from instancemonitor.events import EventKind
from instancemonitor.fanout import EventFanout
from instancemonitor.fanout import Subscription
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.journal import MemoryJournalStore
from instancemonitor.metrics import AgentMetrics
from instancemonitor.metrics import LiveState
from instancemonitor.outbox import MemoryOutboxStore
from instancemonitor.outbox import Outbox
from instancemonitor.pipeline import NotificationPipeline
from instancemonitor.sender import RetryPolicy
from instancemonitor.sender import Sender
from instancemonitor.sinks import Sink
from instancemonitor.sinks import masakari
from instancemonitor.sources.heartbeat import THREAD_NAME as HEARTBEAT_THREAD
from instancemonitor.sources.heartbeat import Heartbeat
from instancemonitor.sources.heartbeat import LibvirtAgents
from instancemonitor.sources.lifecycle import LibvirtEventSource
from instancemonitor.sources.migration import MigrationWatch
from instancemonitor.sources.probes import THREAD_NAME as PROBES_THREAD
from instancemonitor.sources.probes import Prober
from instancemonitor.sources.probes import configured_probes
from instancemonitor.sources.reconcile import THREAD_NAME as RECONCILE_THREAD
from instancemonitor.sources.reconcile import Reconciler
from instancemonitor.supervision import PROGRESS_TICK
from instancemonitor.supervision import Liveness
from instancemonitor.supervision import watchdog_interval
from instancemonitor.virt import eventloop
from instancemonitor.virt.connection import THREAD_NAME as CONNECTION_THREAD
from instancemonitor.virt.connection import LibvirtConnection

LOG = logging.getLogger(__name__)

# Seconds between deletions of old dead letters.
DEAD_LETTER_PRUNE_INTERVAL = 600.0
# Seconds what the outbox held at start waits for the first scan of the
# domains once libvirtd answers, at most: if no scan completes by then, it
# is sent unconfirmed. While libvirtd cannot be reached it waits however
# long (see Outbox.start_confirmation_wait).
RECOVERED_CONFIRM_WAIT = 30.0
# The watched threads that make calls to libvirtd (and wait in them, or in
# the heartbeat's pings, for as long as it does not answer).
LIBVIRT_CALLERS = frozenset({CONNECTION_THREAD, RECONCILE_THREAD,
                             HEARTBEAT_THREAD, PROBES_THREAD})


class EventSink(Sink, Protocol):
    """A sink of event subscribers (closed when the agent stops)."""

    def close(self) -> None: ...


def _patterns(group: str, events: list[str]) -> EventPatterns:
    patterns = EventPatterns(events)
    unmatched = patterns.unmatched()
    if not events or unmatched:
        raise ConfigurationError(
            f'[{group}] events: {", ".join(unmatched) or "empty"}: '
            'matches no event (patterns are like *, LIFECYCLE/*, '
            '*/STOPPED_FAILED)')
    return patterns


def event_sinks(conf: cfg.ConfigOpts,
                hostname: str) -> list[tuple[EventSink, EventPatterns]]:
    """The event subscribers the configuration asks for, with the events each
    wants: the webhooks, then the message bus (imported only when configured:
    an agent without them does not carry kombu)."""
    sinks: list[tuple[EventSink, EventPatterns]] = []
    sections = webhooks_conf.register_webhooks(conf)
    if sections:
        from instancemonitor.sinks.webhook import WebhookSink
    for section in sections:
        opts = conf[section]
        if not opts.url:
            raise ConfigurationError(f'[{section}] url: required')
        sinks.append((WebhookSink.from_conf(opts, section),
                      _patterns(section, opts.events)))
    if conf.message_bus.transport_url:
        from instancemonitor.sinks.messagebus import MessageBusSink
        sinks.append((MessageBusSink.from_conf(conf.message_bus, hostname),
                      _patterns('message_bus', conf.message_bus.events)))
    return sinks


def heartbeat_policy(opts: cfg.ConfigOpts.GroupAttr) -> HeartbeatPolicy:
    return HeartbeatPolicy(
        threshold=opts.guest_monitoring_failure_threshold,
        grace=opts.startup_grace,
        report_never_answered=opts.report_never_answered,
        pair=(opts.notification_event, 'STOPPED_FAILED'))


def check_fits_watchdog(conf: cfg.ConfigOpts) -> None:
    """A send must end well within systemd's watchdog interval, or a slow
    control plane would get a healthy agent restarted; and keepalive must
    tell a libvirtd that does not answer within half of it, or the threads
    waiting on that libvirtd would be taken for wedged first."""
    watchdog = watchdog_interval()
    if watchdog is None:
        return
    timeout = conf.api.timeout
    per_send = api_conf.REQUESTS_PER_SEND
    if timeout is None or per_send * timeout >= watchdog:
        raise ConfigurationError(
            f'[api] timeout: {timeout} s does not fit the systemd watchdog '
            f'({watchdog:g} s, WatchdogSec): one send may make {per_send} requests '
            '(endpoint discovery, a token, the POST), each up to the timeout; '
            f'set it below {watchdog / per_send:g} s')
    interval, count = conf.libvirt.keepalive_interval, conf.libvirt.keepalive_count
    if interval * (count + 1) >= watchdog / 2:
        raise ConfigurationError(
            f'[libvirt] keepalive_interval: {interval} s x (keepalive_count '
            f'{count} + 1) does not fit the systemd watchdog ({watchdog:g} s, '
            'WatchdogSec): a libvirtd that does not answer must be known within '
            'half of it, or the threads waiting on it are taken for wedged; '
            f'keep the product below {watchdog / 2:g} s')


def max_delay(conf: cfg.ConfigOpts) -> float:
    """The longest a notification is scheduled ahead: a hold for the reboot
    window, a migration's outcome or Masakari's duplicate window, or the
    wait before the next retry round."""
    callback = conf.callback
    return max(conf.events.reboot_window, conf.events.migration_outcome_wait,
               conf.api.duplicate_detection_interval + 1,
               callback.retry_interval_max if callback.retry_backoff
               else callback.retry_interval)


class AgentService:
    def __init__(self, conf: cfg.ConfigOpts, sink: Sink | None = None) -> None:
        # A configuration error must stop the agent before it touches disk.
        check_fits_watchdog(conf)
        self.hostname = default_conf.hostname(conf)
        if sink is None:
            sink = masakari.MasakariSink(masakari.adapter_from_conf(conf),
                                         self.hostname,
                                         connections=conf.callback.max_in_flight)
        self.sink = sink
        self._preflight = self._connect_ahead = None
        if isinstance(sink, masakari.MasakariSink):
            self._preflight = masakari.Preflight(sink)
            self._connect_ahead = masakari.ConnectAhead(sink)
        subscribers = event_sinks(conf, self.hostname)
        self.probes = configured_probes(conf)
        self.liveness = Liveness()
        self.bus = EventBus()
        self.state_lock = statelock.acquire(conf.state_path)
        self.store = store.open_state(conf.state_path)
        self.connection = LibvirtConnection(
            conf.libvirt.connection_uri,
            keepalive_interval=conf.libvirt.keepalive_interval,
            keepalive_count=conf.libvirt.keepalive_count,
            reconnect_interval=conf.libvirt.reconnect_interval,
            reconnect_interval_max=conf.libvirt.reconnect_interval_max,
            progress=lambda: self.liveness.mark(CONNECTION_THREAD))
        self.migration_watch = MigrationWatch(
            self.bus.publish, self.connection.borrowed,
            conf.events.migration_outcome_wait)
        self.journal = Journal(
            self.store or MemoryJournalStore(), self.hostname,
            DomainMachine(heartbeat_policy(conf.introspectiveinstancemonitor),
                          duplicate_window=conf.api.duplicate_detection_interval,
                          migration_wait=conf.events.migration_outcome_wait),
            follow_migration=self.migration_watch.follow)
        # What an earlier run left to send waits for the first scan: a VM
        # started meanwhile must not be recovered (the scan withdraws it).
        self.outbox = Outbox(self.store or MemoryOutboxStore(),
                             max_age=conf.callback.max_pending_age,
                             max_delay=max_delay(conf),
                             confirm_recovered_within=RECOVERED_CONFIRM_WAIT)
        if self._connect_ahead is not None:
            self.outbox.on_held_due = self._connect_ahead.request
        # Every sink's outbox, the recovery API's first. The subscribers'
        # are in a database of their own: the recovery API's writes never
        # wait for theirs.
        self.outboxes = {RECOVERY_SINK: self.outbox}
        self.subscriber_store = (
            store.open_state(conf.state_path, store.SUBSCRIBERS_FILENAME,
                             defer_removals=True)
            if subscribers and self.store else None)
        for subscriber, _ in subscribers:
            self.outboxes[subscriber.name] = Outbox(
                self.subscriber_store or MemoryOutboxStore(),
                max_age=conf.callback.max_pending_age, sink=subscriber.name,
                max_delay=max_delay(conf))
        self.filter = EventFilter(
            forward_all=conf.events.forward == 'all',
            reboot_window=conf.events.reboot_window, boot=hostboot.boot_id())
        # The recovery API's chain first: subscribers never delay it.
        pipeline = NotificationPipeline(self.filter, self.journal, self.outbox,
                                        group=self._dispatch_group)
        self.bus.subscribe(WILDCARD, pipeline)
        if subscribers:
            fanout = EventFanout(self.hostname, [
                Subscription(patterns, self.outboxes[subscriber.name])
                for subscriber, patterns in subscribers],
                batch=(self.subscriber_store.batch if self.subscriber_store
                       else contextlib.nullcontext))
            self.bus.subscribe(WILDCARD, fanout)
            pipeline.listeners.append(fanout)
        self.metrics = AgentMetrics(LiveState(
            connected=lambda: self.connection.connected,
            reconnects=lambda: max(0, self.connection.connects - 1),
            pending=lambda: {name: box.pending()
                             for name, box in self.outboxes.items()},
            dead_lettered=lambda: {name: box.dead_lettered
                                   for name, box in self.outboxes.items()},
            oldest_pending=lambda: {name: box.oldest_age()
                                    for name, box in self.outboxes.items()},
            heartbeat=lambda: (self.journal.heartbeat_counts()
                               if self.heartbeat else {}),
            host_unknown=self.host_unknown,
            state_degraded=self.state_degraded,
            probes=self.journal.probe_counts))
        pipeline.listeners.append(self.metrics.observe_event)
        self.bus.subscribe(WILDCARD, self.metrics.observe_event)
        self._metrics_address = (conf.metrics.host, conf.metrics.port)
        self.retry_policy = RetryPolicy(
            retry_max=conf.callback.retry_max,
            interval=conf.callback.retry_interval,
            backoff=conf.callback.retry_backoff,
            interval_max=conf.callback.retry_interval_max)
        self.sender = Sender(
            self.outbox, sink, self.retry_policy,
            max_in_flight=conf.callback.max_in_flight, liveness=self.liveness,
            on_settle=self.metrics.settled)
        # One thread each: a subscriber gets its events in order of detection.
        # Not watched by the systemd watchdog: a sender waiting on its
        # receiver is not a wedged agent (its backlog shows in the metrics).
        self.subscriber_senders = [
            Sender(self.outboxes[subscriber.name], subscriber, self.retry_policy,
                   on_settle=self.metrics.settled)
            for subscriber, _ in subscribers]
        self._subscribers: list[EventSink] = [
            subscriber for subscriber, _ in subscribers]
        self.connection.on_connect(LibvirtEventSource(self.bus.publish).register)
        self.reconciler = Reconciler(
            self.bus.publish, self.connection.borrowed,
            conf.libvirt.reconcile_interval, scanned=self._scanned,
            progress=lambda: self.liveness.mark(RECONCILE_THREAD),
            known=lambda: [(r.uuid, r.name) for r in self.journal.records()])
        self._forget_gone_after = conf.libvirt.forget_gone_after
        self._dead_letter_bounds = (conf.callback.dead_letter_max_age,
                                    conf.callback.dead_letter_max_count)
        # What was pruned since the start, for instancemonitor-status.
        self._pruned = {'domains': 0, 'dead_letters': 0}
        self._pruned_lock = threading.Lock()
        self._next_dead_letter_prune = 0.0
        # After the event callbacks: a failure between the two is seen twice
        # at worst, and the journal keeps one.
        self.connection.on_connect(self.reconciler.register)
        self.connection.on_connect(self._libvirt_answers)
        # One pool for everything that waits on guest agents.
        self._agent_pool = (concurrent.futures.ThreadPoolExecutor(
            max_workers=conf.introspectiveinstancemonitor.ping_workers,
            thread_name_prefix='guest-agent') if self.probes else None)
        self.heartbeat = self._heartbeat(conf.introspectiveinstancemonitor)
        self.prober = self._prober()
        self._stop = threading.Event()
        self._dispatcher = threading.Thread(
            target=self.bus.run, name='event-dispatch', daemon=True,
            args=(self._stop, lambda: self.liveness.mark('event-dispatch'),
                  PROGRESS_TICK, self._dispatch_group))
        self._loop_timer: int | None = None
        self._recorded_status = self._recorded_pruned = ''

    @contextlib.contextmanager
    def _dispatch_group(self) -> Iterator[None]:
        """Events dispatched together: one transaction of the state database,
        whose notifications go once it has committed, while the store syncs
        it to disk: on a quiet host this thread writes the first requests
        itself, on kept-alive connections (no thread to wake first), and
        senders read the answers."""
        with self.outbox.holding():
            with (self.store.batch(committed=self._release_committed)
                  if self.store else contextlib.nullcontext()):
                yield

    def _release_committed(self) -> None:
        self.outbox.release_held(getattr(self.sink, 'start', None))

    def _heartbeat(self, opts: cfg.ConfigOpts.GroupAttr) -> Heartbeat | None:
        if not opts.enabled:
            return None
        self._agents = agents = LibvirtAgents(self.connection.borrowed,
                                              opts.guest_monitoring_timeout)
        heartbeat = Heartbeat(
            self.bus.publish, agents.targets, agents.ping,
            interval=opts.guest_monitoring_interval, workers=opts.ping_workers,
            progress=lambda: self.liveness.mark(HEARTBEAT_THREAD),
            pool=self._agent_pool)
        self.bus.subscribe(EventKind.AGENT_LIFECYCLE, heartbeat.on_agent_lifecycle)
        return heartbeat

    def _prober(self) -> Prober | None:
        if not self.probes:
            return None
        prober = Prober(self.bus.publish, self.connection.borrowed,
                        self.probes, self._agent_pool,
                        progress=lambda: self.liveness.mark(PROBES_THREAD),
                        resumed=self.journal.probe_resumed)
        for kind in (EventKind.METADATA_CHANGE, EventKind.REBOOT):
            self.bus.subscribe(kind, prober.on_event)
        return prober

    def apply_mutable(self, conf: cfg.ConfigOpts) -> None:
        """Apply the options a reload (SIGHUP) may change; the log level is
        oslo.log's own hook."""
        self.filter.reboot_window = conf.events.reboot_window
        for outbox in self.outboxes.values():
            outbox.max_age = conf.callback.max_pending_age
            outbox.max_delay = max_delay(conf)
        policy, callback = self.retry_policy, conf.callback
        policy.retry_max, policy.interval = callback.retry_max, callback.retry_interval
        policy.backoff = callback.retry_backoff
        policy.interval_max = callback.retry_interval_max
        self.reconciler.set_interval(conf.libvirt.reconcile_interval)
        if self.heartbeat is not None:
            opts = conf.introspectiveinstancemonitor
            self.heartbeat.interval = opts.guest_monitoring_interval
            self._agents.timeout = opts.guest_monitoring_timeout
        self.journal.machine.policy = heartbeat_policy(
            conf.introspectiveinstancemonitor)

    def _watched_threads(self) -> list[threading.Thread]:
        """The threads the systemd watchdog waits on (but the event loop's,
        which a libvirt timer marks)."""
        threads = [self._dispatcher, self.connection.thread,
                   self.reconciler.thread, *self.sender.threads]
        if self.heartbeat is not None:
            threads.append(self.heartbeat.thread)
        if self.prober is not None:
            threads.append(self.prober.thread)
        return threads

    def waiting_for_libvirtd(self) -> list[str]:
        """The watched threads that call libvirtd, while it does not answer
        (none while it does): any of them may be waiting on it."""
        if self.connection.answering:
            return []
        return [thread.name for thread in self._watched_threads()
                if thread.name in LIBVIRT_CALLERS]

    def threads(self) -> list[threading.Thread]:
        """The threads that run for as long as the agent does."""
        return [eventloop.start(), *self._watched_threads(),
                self.migration_watch.thread,
                *(t for sender in self.subscriber_senders for t in sender.threads)]

    def pending(self) -> int:
        """Notifications pending, for every sink."""
        return sum(box.pending() for box in self.outboxes.values())

    def status(self) -> str:
        """One line for systemd's STATUS=."""
        if not self.connection.answering:
            return f'libvirtd does not answer ({self.connection.uri}), waiting'
        if not self.connection.connected:
            return f'libvirt disconnected ({self.connection.uri}), retrying'
        dead = sum(box.dead_lettered for box in self.outboxes.values())
        unknown = ('; the recovery API does not know host '
                   f'{self.hostname}' if self.host_unknown() else '')
        degraded = ('; state database not writable, changes kept in memory'
                    if self.state_degraded() else '')
        return (f'watching {self.connection.uri}; {self.pending()} '
                f'notifications pending, {dead} dead-lettered{unknown}{degraded}')

    def host_unknown(self) -> bool:
        """The recovery API says it does not know this host."""
        return getattr(self.sink, 'host_unknown', False)

    @property
    def _stores(self) -> list[store.SqliteStateStore]:
        """The state databases open, the recovery API's first."""
        return [state for state in (self.store, self.subscriber_store)
                if state is not None]

    def state_degraded(self) -> bool:
        """The durable state is not (all) on disk: a database that cannot be
        written now, or none at all."""
        return self.store is None or any(state.degraded for state in self._stores)

    def _libvirt_answers(self, _conn: libvirt.virConnect) -> list[int]:
        """A connection is open: the first scan can confirm what the outbox
        held at start."""
        self.outbox.start_confirmation_wait()
        return []

    def _scanned(self, present: set[str], seq: int) -> None:
        """After a complete scan (its states published, not yet applied)."""
        self.bus.after_pending(self.outbox.release_recovered)
        self._prune_gone(present, seq)

    def _prune_gone(self, present: set[str], seq: int) -> None:
        """Drop the records of domains long gone."""
        if not self._forget_gone_after:
            return
        count = self.journal.prune_gone(present, seq, clock.utcnow(),
                                        self._forget_gone_after)
        with self._pruned_lock:
            self._pruned['domains'] += count

    def _prune_dead_letters(self) -> None:
        max_age, max_count = self._dead_letter_bounds
        if not (max_age or max_count) or (
                clock.monotonic() < self._next_dead_letter_prune):
            return
        self._next_dead_letter_prune = clock.monotonic() + DEAD_LETTER_PRUNE_INTERVAL
        count = 0
        for name in self.outboxes:
            state = self.store if name == RECOVERY_SINK else self.subscriber_store
            if state is not None:
                count += state.prune_dead_letters(name, max_age, max_count,
                                                  clock.utcnow())
        if count:
            LOG.info('%d dead letters deleted: detected over %.0f s ago, or past '
                     '%d per sink', count, max_age, max_count)
            with self._pruned_lock:
                self._pruned['dead_letters'] += count

    def pruned(self) -> str:
        """What was pruned since the start, for people ('' if nothing)."""
        with self._pruned_lock:
            domains, dead = self._pruned['domains'], self._pruned['dead_letters']
        if not (domains or dead):
            return ''
        return (f'{domains} journal records of domains gone for over '
                f'{self._forget_gone_after:g} s, {dead} old dead letters')

    def tick(self) -> None:
        """Periodic duties of the main thread: writing back state kept in
        memory, pruning, the status row for ``instancemonitor-status`` and
        the operator commands it queued."""
        if self.store is None:
            return
        for state in self._stores:
            state.retry()
        self._prune_dead_letters()
        if (pruned := self.pruned()) and pruned != self._recorded_pruned:
            self.store.set_agent_status({'pruned': pruned})
            self._recorded_pruned = pruned
        status = self.status()
        if status != self._recorded_status:
            self.store.set_agent_status({
                'status': status, 'pid': str(os.getpid()),
                'since': clock.utcnow().isoformat(timespec='seconds')})
            self._recorded_status = status
        for verb, arg in self.store.take_commands():
            done = (any(box.requeue(arg) for box in self.outboxes.values())
                    if verb == 'requeue'
                    else self.journal.forget(arg) if verb == 'forget' else False)
            if not done:
                LOG.warning('Operator command %s %s: nothing to do', verb, arg)

    def start(self) -> None:
        LOG.info('instancemonitor starting: host %s, libvirt %s',
                 self.hostname, self.connection.uri)
        if self.store is not None:
            self.store.set_agent_status({'pruned': ''})  # counts from this start
        if self._metrics_address[1]:
            self.metrics.serve(*self._metrics_address)
        eventloop.start()
        # Every watched thread starts with a mark: one that never shows
        # progress at all is stale too.
        for thread in self._watched_threads():
            self.liveness.mark(thread.name)
        # Proves the event loop turns: the callback only records the time.
        self.liveness.mark(eventloop.THREAD_NAME)
        self._loop_timer = libvirt.virEventAddTimeout(
            int(PROGRESS_TICK * 1000),
            lambda _timer, _opaque: self.liveness.mark(eventloop.THREAD_NAME), None)
        self._dispatcher.start()
        if self._preflight is not None:
            self._preflight.start()
            self._connect_ahead.start()
        self.sender.start()
        for sender in self.subscriber_senders:
            sender.start()
        # A death in a migration that an earlier run held: its outcome is
        # looked up again.
        for record in self.journal.records():
            if record.phase in AWAITING_MIGRATION:
                self.migration_watch.follow(record.uuid, record.name)
        self.migration_watch.start()
        self.connection.start()
        self.reconciler.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        if self.prober is not None:
            self.prober.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; what is still pending stays in the outbox.

        Sources first, then the bus is drained, so every event detected
        before the stop is journaled and its notification kept.
        """
        if self._loop_timer is not None:
            libvirt.virEventRemoveTimeout(self._loop_timer)
            self._loop_timer = None
        if self.heartbeat is not None:
            self.heartbeat.stop(timeout)
        if self.prober is not None:
            self.prober.stop(timeout)
        if self._agent_pool is not None:
            self._agent_pool.shutdown(wait=False, cancel_futures=True)
        self.reconciler.stop(timeout)
        self.migration_watch.stop(timeout)
        self.connection.stop(timeout)
        self._stop.set()
        self.bus.wake()
        self._dispatcher.join(timeout)
        if self._preflight is not None:
            self._preflight.stop(timeout)
            self._connect_ahead.stop(timeout)
        self.sender.stop(timeout)
        for sender in self.subscriber_senders:
            sender.stop(timeout)
        for subscriber in self._subscribers:
            subscriber.close()
        if isinstance(self.sink, masakari.MasakariSink):
            self.sink.close()
        self.metrics.stop()
        LOG.info('instancemonitor stopped; %d notifications pending',
                 self.pending())
        for state in self._stores:
            state.close()
        self.state_lock.release()
