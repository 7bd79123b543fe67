"""Per-domain journal: what was seen and notified for each instance.

Each domain runs through a small state machine::

    running --(failure the engine acts on, notified)--> failed
    failed  --(started or resumed)--> running    (watched afresh)

A second failure in the same episode (repeated I/O errors, a crash after a
watchdog, a heartbeat failure after a lifecycle one) is recorded but not
notified again, so one failure yields one recovery.
"""

import dataclasses
import datetime
import enum
import logging
import threading
from collections.abc import Callable
from typing import Protocol

import libvirt

from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.events import Notification
from instancemonitor.filter import Verdict

LOG = logging.getLogger(__name__)

# DomainEvent.source of events made from a state scan, not a libvirt event.
RECONCILIATION = 'reconciliation'


class DomainState(enum.StrEnum):
    RUNNING = 'running'
    FAILED = 'failed'


@dataclasses.dataclass
class DomainRecord:
    uuid: str
    name: str
    state: DomainState = DomainState.RUNNING
    # The last event seen, as 'KIND event/detail'.
    last_event: str = ''
    last_seen: datetime.datetime | None = None
    # The pair that opened the current failure episode, as 'EVENT/DETAIL'.
    failure: str = ''
    failed_at: datetime.datetime | None = None
    # Notifications queued for this domain since the agent knew it.
    notified: int = 0
    # The pairs ('EVENT/DETAIL') notified since the domain last ran, so that
    # reconciliation does not report the same state again.
    reported: frozenset[str] = frozenset()
    # The in-guest heartbeat's view: 'healthy', 'failing(2)', ... or ''.
    heartbeat: str = ''


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
            return dataclasses.replace(record) if record else None

    def put(self, record: DomainRecord) -> None:
        with self._lock:
            self._records[record.uuid] = dataclasses.replace(record)

    def forget(self, uuid: str) -> None:
        with self._lock:
            self._records.pop(uuid, None)

    def records(self) -> list[DomainRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._records.values()]


def heartbeat_state(event: DomainEvent) -> str:
    health = Health(event.event)
    name = health.name.lower()
    return f'{name}({event.detail})' if health is Health.FAILING else name


def describe(event: DomainEvent) -> str:
    return f'{event.kind.value} {event.event}/{event.detail}'


class Journal:
    """Applies events to domain records; says which notification to send."""

    def __init__(self, store: JournalStore, hostname: str) -> None:
        self._store = store
        self._hostname = hostname

    def record(self, event: DomainEvent, verdict: Verdict,
               queue: Callable[[Notification], None]) -> Notification | None:
        """Record ``event``; hand the notification it calls for to ``queue``.

        ``queue`` (the outbox) keeps the notification before the record that
        says it was sent is stored: a crash in between cannot lose it.
        """
        if (event.kind == EventKind.LIFECYCLE and
                event.event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED):
            self._store.forget(event.domain_uuid)
            return None
        record = self._store.get(event.domain_uuid)
        if (event.source == RECONCILIATION and verdict.running_again and
                (record is None or record.state is DomainState.RUNNING)):
            return None  # a scan that finds a domain running changes nothing
        record = record or DomainRecord(uuid=event.domain_uuid,
                                        name=event.domain_name)
        record.last_event = describe(event)
        record.last_seen = event.detected_at
        if event.kind == EventKind.HEARTBEAT:
            record.heartbeat = heartbeat_state(event)
        notification = None
        if verdict.running_again or (verdict.recovered and
                                     record.failure == verdict.recovered):
            if record.state is DomainState.FAILED:
                LOG.info('Domain %s (%s) is running again after %s; '
                         'watching it afresh', record.name, record.uuid,
                         record.failure)
            record.state = DomainState.RUNNING
            record.failure = ''
            record.failed_at = None
            record.reported = frozenset()
        elif verdict.pair is not None:
            label = '/'.join(verdict.pair)
            if event.source == RECONCILIATION and label in record.reported:
                pass  # the state this pass found was reported already
            elif verdict.recovery and record.state is DomainState.FAILED:
                LOG.info('Domain %s (%s): %s is part of the failure %s '
                         'already notified; not notifying again',
                         record.name, record.uuid, label, record.failure)
            else:
                if verdict.recovery:
                    record.state = DomainState.FAILED
                    record.failure = label
                    record.failed_at = event.detected_at
                notification = Notification(
                    hostname=self._hostname,
                    instance_uuid=event.domain_uuid,
                    event=verdict.pair[0],
                    vir_domain_event=verdict.pair[1],
                    generated_time=event.detected_at)
                record.notified += 1
                record.reported = record.reported | {label}
                LOG.info('Domain %s (%s): %s %s at %s; notification %s queued',
                         record.name, record.uuid, label,
                         'found by reconciliation' if event.source == RECONCILIATION
                         else 'detected', event.detected_at.isoformat(),
                         notification.notification_id)
                queue(notification)
        self._store.put(record)
        return notification

    def records(self) -> list[DomainRecord]:
        return self._store.records()

    def forget(self, uuid: str) -> bool:
        """Drop a domain's record (an operator's decision)."""
        record = self._store.get(uuid)
        if record is None:
            return False
        self._store.forget(uuid)
        LOG.info('Domain %s (%s) forgotten by the operator', record.name, uuid)
        return True
