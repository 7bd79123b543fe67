"""Immutable values that flow through the agent: domain events and notifications.

Nothing here imports libvirt: the codes in a :class:`DomainEvent` are libvirt's
numbers, and the tables that name them live with the code that reads them.
"""

import dataclasses
import datetime
import enum
import itertools
import uuid


class EventKind(enum.StrEnum):
    """What kind of thing happened to a domain: the bus's topics."""

    LIFECYCLE = 'LIFECYCLE'
    REBOOT = 'REBOOT'
    WATCHDOG = 'WATCHDOG'
    IO_ERROR = 'IO_ERROR'
    IO_ERROR_REASON = 'IO_ERROR_REASON'
    CONTROL_ERROR = 'CONTROL_ERROR'
    AGENT_LIFECYCLE = 'AGENT_LIFECYCLE'
    # The domain's metadata changed: event is libvirt's type, reason the
    # namespace (for the application probes; not forwarded).
    METADATA_CHANGE = 'METADATA_CHANGE'
    # The heartbeat's view of a guest agent, when it changes: event is the
    # health, detail the failed pings in a row.
    HEARTBEAT = 'HEARTBEAT'
    # One guest-ping's outcome: event is 1 if the agent answered, else 0.
    PING = 'PING'
    # An application probe's state, when it changes: event is a ProbeHealth,
    # detail its failures in a row, ``probe`` its name, ``reason`` the output.
    PROBE = 'PROBE'
    # One probe run's outcome (``check``): what the journal counts.
    PROBE_RESULT = 'PROBE_RESULT'
    # What the migration watch found of a domain whose QEMU died in an
    # outgoing migration: event is a MigrationSource.
    MIGRATION_SOURCE = 'MIGRATION_SOURCE'
    # A complete state scan did not list the domain (its ``seq`` is the
    # scan's): it stopped and vanished, or it was undefined.
    NOT_LISTED = 'NOT_LISTED'


# Kinds that tell the journal something without being news of the domain:
# one run of a check (a guest-ping, a probe; only the state changes it
# causes, HEARTBEAT and PROBE, are news) and a domain a scan did not list.
# They mark no record as seen, and neither subscribers nor metrics get them.
SILENT_KINDS = frozenset({EventKind.PING, EventKind.PROBE_RESULT,
                          EventKind.NOT_LISTED})

# Kinds that only ever tell of a domain the journal holds: what the migration
# watch it asked found, a known domain a scan did not list. Of a domain it
# forgot meanwhile (undefined, migrated away) they tell nothing, and bring
# no record back.
OF_KNOWN_DOMAINS = frozenset({EventKind.MIGRATION_SOURCE, EventKind.NOT_LISTED})

# ``event`` / ``detail`` of a kind that carries no such code (REBOOT, ...).
NO_CODE = -1


class Health(enum.IntEnum):
    """A HEARTBEAT event's ``event`` code; its ``detail`` is the failed pings."""

    DISCOVERY = 0
    HEALTHY = 1
    FAILING = 2
    REPORTED = 3
    NEVER_ANSWERED = 4
    DISCONNECTED = 5


class ProbeHealth(enum.IntEnum):
    """A PROBE event's ``event`` code."""

    DISCOVERY = 0
    HEALTHY = 1
    FAILING = 2
    REPORTED = 3
    UNAVAILABLE = 4


class MigrationSource(enum.IntEnum):
    """A MIGRATION_SOURCE event's ``event`` code."""

    DEFINED = 0      # still defined, and persistent
    GONE = 1         # no longer defined
    JOB_ENDED = 2    # the migration's job ended; the domain is still defined


class ProbeOutcome(enum.StrEnum):
    SUCCESS = 'success'          # exit status 0
    FAILURE = 'failure'          # another status, or no exit within the timeout
    UNAVAILABLE = 'unavailable'  # the guest agent cannot run it (none, blocked)


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeCheck:
    """One run of one probe on one domain, with the rules that judge it."""

    name: str
    outcome: ProbeOutcome
    failure_threshold: int = 3
    success_threshold: int = 1
    # action = recover: the recovery pair once per episode; else events only.
    recover: bool = True
    output: str = ''             # the first KiB of what it printed, or why


# Every event gets the next number when it is made: a state scan takes one
# before it reads, so an event made after that is known to be newer.
_SEQUENCE = itertools.count()


def next_seq() -> int:
    return next(_SEQUENCE)


@dataclasses.dataclass(frozen=True, slots=True)
class DomainEvent:
    """One observation about one domain, stamped when it was detected.

    ``event`` and ``detail`` are libvirt's codes for the kind: lifecycle event
    and detail, watchdog or I/O error action, agent state and reason.
    """

    kind: EventKind
    domain_uuid: str
    domain_name: str
    event: int = NO_CODE
    detail: int = NO_CODE
    reason: str = ''
    detected_at: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC))
    source: str = 'libvirt'
    # libvirt's id of the domain's run (-1 when it is not running or unknown).
    domain_id: int = -1
    seq: int = dataclasses.field(default_factory=next_seq)
    # PROBE and PROBE_RESULT: the probe's name; PROBE_RESULT: its run.
    probe: str = ''
    check: ProbeCheck | None = None
    # State scans: whether the domain is persistent (None: not known).
    persistent: bool | None = None


# Notification.sink of the recovery API's notifications.
RECOVERY_SINK = 'masakari'


def _utc_stamp(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One message for one sink, frozen at detection.

    For the recovery API (``sink`` ``masakari``) it is a VM notification,
    :meth:`body`; for an event subscriber (a webhook, the message bus) it
    describes one domain event, :meth:`document`. ``notification_id`` stays
    the same through every resend, so a receiver can drop repeats.
    """

    hostname: str
    instance_uuid: str
    event: str
    vir_domain_event: str
    generated_time: datetime.datetime
    notification_id: str = dataclasses.field(
        default_factory=lambda: uuid.uuid4().hex)
    sink: str = RECOVERY_SINK
    instance_name: str = ''
    # DomainEvent.source: libvirt, heartbeat or reconciliation.
    source: str = ''
    # The I/O error's reason, when libvirt gives one; a probe's output.
    reason: str = ''
    # The application probe of a PROBE event.
    probe: str = ''

    @property
    def pair(self) -> str:
        """'EVENT/DETAIL', as the state machine and the logs name it."""
        return f'{self.event}/{self.vir_domain_event}'

    def body(self) -> dict:
        """The request body of ``POST /notifications``, in Masakari's schema."""
        return {'notification': {
            'type': 'VM',
            'hostname': self.hostname,
            'generated_time': _utc_stamp(self.generated_time),
            'payload': {
                'event': self.event,
                'instance_uuid': self.instance_uuid,
                'vir_domain_event': self.vir_domain_event,
            },
        }}

    def document(self) -> dict:
        """The JSON document an event subscriber receives."""
        document = {
            'id': self.notification_id,
            'host': self.hostname,
            'instance': {'uuid': self.instance_uuid, 'name': self.instance_name},
            'event': self.event,
            'detail': self.vir_domain_event,
            'time': _utc_stamp(self.generated_time),
            'source': self.source,
        }
        if self.reason:
            document['reason'] = self.reason
        if self.probe:
            document['probe'] = self.probe
        return document
