"""Per-domain journal: what was seen and notified for each instance.

The decisions are the state machine's (``domainstate``); the journal keeps
its records, durable when the store is, so a restarted agent, or one that
reconnects to libvirtd, goes on where it was: the same run, the same open
episode, the heartbeat's count of missed pings and whether the guest agent
answered in this run.
"""

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from instancemonitor.domainstate import AWAITING_MIGRATION
from instancemonitor.domainstate import Agent
from instancemonitor.domainstate import DomainMachine
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Observation
from instancemonitor.domainstate import Probe
from instancemonitor.domainstate import is_stale_scan
from instancemonitor.events import OF_KNOWN_DOMAINS
from instancemonitor.events import SILENT_KINDS
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.events import Notification
from instancemonitor.events import ProbeHealth

LOG = logging.getLogger(__name__)

# The heartbeat's states as subscribers and metrics name them.
_HEALTH = {Agent.DISCOVERY: Health.DISCOVERY, Agent.HEALTHY: Health.HEALTHY,
           Agent.FAILING: Health.FAILING, Agent.REPORTED: Health.REPORTED,
           Agent.NEVER_ANSWERED: Health.NEVER_ANSWERED,
           Agent.DISCONNECTED: Health.DISCONNECTED}
_PROBE_HEALTH = {state: ProbeHealth[state.name] for state in Probe}
# Seconds the journal remembers the event that made it forget a domain (its
# undefine): a scan read before that event and applied after it is stale,
# not a domain never seen. Far longer than an event can wait on the bus: the
# watchdog ends a dispatcher stuck for WatchdogSec.
FORGOTTEN_KEPT = 3600.0
# Seconds a record's last_seen may lag behind what scans found, when they
# find nothing else new: a scan does not rewrite every domain's record (a
# host's idle disk writes). It only makes a domain that is gone meanwhile
# pruned that much sooner after [libvirt] forget_gone_after.
SEEN_WRITTEN_EVERY = 600.0


class JournalStore(Protocol):
    """Where domain records live: memory here, disk when durable."""

    def get(self, uuid: str) -> DomainRecord | None: ...

    def put(self, record: DomainRecord) -> None: ...

    def forget(self, uuid: str) -> None: ...

    def records(self) -> list[DomainRecord]: ...


class MemoryJournalStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, DomainRecord] = {}

    def get(self, uuid: str) -> DomainRecord | None:
        with self._lock:
            record = self._records.get(uuid)
            return record.copy() if record else None

    def put(self, record: DomainRecord) -> None:
        with self._lock:
            self._records[record.uuid] = record.copy()

    def forget(self, uuid: str) -> None:
        with self._lock:
            self._records.pop(uuid, None)

    def records(self) -> list[DomainRecord]:
        with self._lock:
            return [r.copy() for r in self._records.values()]


def _only_seen_again(before: DomainRecord, record: DomainRecord) -> bool:
    """Whether ``record`` differs from ``before`` only by a ``last_seen``
    less than SEEN_WRITTEN_EVERY later."""
    if before.last_seen is None or record.last_seen is None:
        return False
    if (record.last_seen - before.last_seen).total_seconds() >= SEEN_WRITTEN_EVERY:
        return False
    again = record.copy()
    again.last_seen = before.last_seen
    return again == before


def describe(event: DomainEvent) -> str:
    return f'{event.kind.value} {event.event}/{event.detail}'


class Journal:
    """Applies observations to domain records; queues the notifications
    they call for."""

    def __init__(self, store: JournalStore, hostname: str,
                 machine: DomainMachine | None = None,
                 follow_migration: Callable[[str, str, bool], None] = (
                     lambda uuid, name, held: None)) -> None:
        """``follow_migration(uuid, name, held)``: have a domain's outgoing
        migration looked up (the migration watch's): the outcome of the one
        its QEMU died in, its recovery ``held`` for it, or else whether the
        domain is persistent."""
        self._store = store
        self._hostname = hostname
        self.machine = machine or DomainMachine()
        self.follow_migration = follow_migration
        # uuid → (seq, time) of the event that made the journal forget it
        # (this process only, as seqs are; the dispatcher's thread only).
        self._forgotten: dict[str, tuple[int, datetime.datetime]] = {}

    def record(self, event: DomainEvent, observation: Observation,
               queue: Callable[[Notification, float], None],
               withdraw_waiting: Callable[[str, tuple[str, ...]], None],
               say: Callable[..., None] = LOG.info,
               release_waiting: Callable[[str, tuple[str, ...]], None] = (
                   lambda uuid, pairs: None)) -> list[DomainEvent]:
        """Apply ``observation`` of ``event``; return the heartbeat's and the
        probes' changes, as events for subscribers.

        ``queue`` (the outbox) keeps each notification before the record that
        says it was sent is stored: a crash in between cannot lose it.
        ``say`` logs what happened (the pipeline defers it until the
        notification is on its way). ``withdraw_waiting`` and
        ``release_waiting`` drop, or send now, what the outbox holds.
        """
        before = self._store.get(event.domain_uuid)
        if before is None:
            if event.kind in OF_KNOWN_DOMAINS:
                return []
            before = DomainRecord(
                uuid=event.domain_uuid, name=event.domain_name,
                last_seq=self._forgotten.get(event.domain_uuid, (-1,))[0])
        outcome = self.machine.apply(before, observation)
        if outcome.withdraw:
            withdraw_waiting(event.domain_uuid, outcome.withdraw)
        if outcome.release:
            release_waiting(event.domain_uuid, outcome.release)
        record = outcome.record
        if record is None:
            self._trace(before, outcome.trace, say)
            self._store.forget(event.domain_uuid)
            self._remember_forgotten(event.domain_uuid, observation.seq,
                                     event.detected_at)
            return []
        if event.kind not in SILENT_KINDS and not is_stale_scan(before, observation):
            record.name = event.domain_name
            record.last_event, record.last_seen = describe(event), event.detected_at
        queued = []
        for (name, detail), hold, generated in outcome.notify:
            notification = Notification(
                hostname=self._hostname, instance_uuid=event.domain_uuid,
                event=name, vir_domain_event=detail,
                generated_time=generated, instance_name=record.name,
                source=event.source)
            queue(notification, hold)
            queued.append((notification, hold))
        # A lone transition goes on the first notification's line: one line
        # per failure (a burst logs thousands).
        lead = ''
        if queued and len(outcome.trace) == 1:
            lead = f'{outcome.trace[0]}; '
        else:
            self._trace(before, outcome.trace, say)
        for notification, hold in queued:
            say('Domain %s (%s): %s%s/%s %s at %s; notification %s queued%s',
                record.name, record.uuid, lead,
                notification.event, notification.vir_domain_event,
                'found by reconciliation' if observation.from_scan
                else 'detected', event.detected_at.isoformat(),
                notification.notification_id,
                f', held {hold:g} s' if hold else '')
            lead = ''
        if record != before and not (observation.from_scan
                                     and _only_seen_again(before, record)):
            self._store.put(record)
        if outcome.follow_migration:
            self.follow_migration(record.uuid, record.name,
                                  record.phase in AWAITING_MIGRATION)
        derived = []
        if outcome.heartbeat is not None and outcome.heartbeat[0] in _HEALTH:
            agent, failures = outcome.heartbeat
            derived.append(DomainEvent(
                kind=EventKind.HEARTBEAT, domain_uuid=record.uuid,
                domain_name=record.name, event=_HEALTH[agent], detail=failures,
                detected_at=event.detected_at, source='heartbeat',
                domain_id=record.run))
        for name, status, output in outcome.probes:
            derived.append(DomainEvent(
                kind=EventKind.PROBE, domain_uuid=record.uuid,
                domain_name=record.name, event=_PROBE_HEALTH[status.state],
                detail=status.failures, reason=output,
                detected_at=event.detected_at, source='probe',
                domain_id=record.run, probe=name))
        return derived

    def _remember_forgotten(self, uuid: str, seq: int,
                            at: datetime.datetime) -> None:
        kept_since = at - datetime.timedelta(seconds=FORGOTTEN_KEPT)
        for old in [u for u, (_, when) in self._forgotten.items()
                    if when < kept_since]:
            del self._forgotten[old]
        self._forgotten[uuid] = (seq, at)

    @staticmethod
    def _trace(before: DomainRecord, lines: list[str],
               say: Callable[..., None]) -> None:
        for line in lines:
            say('Domain %s (%s): %s', before.name, before.uuid, line)

    def records(self) -> list[DomainRecord]:
        return self._store.records()

    def prune_gone(self, present: set[str], seq: int, now: datetime.datetime,
                   after: float) -> int:
        """Drop the records of domains a complete scan (taken at ``seq``) did
        not list, of which nothing was seen for ``after`` seconds; return
        how many. An event applied since the scan began keeps its record."""
        gone = [r for r in self._store.records()
                if r.uuid not in present and r.last_seq < seq and
                (r.last_seen is None or
                 (now - r.last_seen).total_seconds() > after)]
        for record in gone:
            self._store.forget(record.uuid)
            LOG.info('Domain %s (%s) is gone (last seen %s): its journal record '
                     'is dropped', record.name, record.uuid,
                     record.last_seen.isoformat() if record.last_seen else 'never')
        return len(gone)

    def probe_resumed(self, uuid: str, domain_id: int, name: str) -> bool:
        """Whether probe ``name`` is past discovery in the run ``domain_id``."""
        record = self._store.get(uuid)
        return (record is not None and record.run == domain_id and
                name in record.probes and
                record.probes[name].state is not Probe.DISCOVERY)

    def probe_counts(self) -> dict[tuple[str, str], int]:
        """Domains by (probe, state)."""
        counts: dict[tuple[str, str], int] = {}
        for record in self._store.records():
            for name, status in record.probes.items():
                key = (name, status.state.value)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def heartbeat_counts(self) -> dict[str, int]:
        """Domains by the heartbeat's state, among those it watches."""
        counts = dict.fromkeys((h.name.lower() for h in Health), 0)
        for record in self._store.records():
            if record.agent in _HEALTH:
                counts[_HEALTH[record.agent].name.lower()] += 1
        return counts

    def forget(self, uuid: str) -> bool:
        """Drop a domain's record (an operator's decision)."""
        record = self._store.get(uuid)
        if record is None:
            return False
        self._store.forget(uuid)
        LOG.info('Domain %s (%s) forgotten by the operator', record.name, uuid)
        return True
