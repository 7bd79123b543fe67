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
    # The heartbeat's view of a guest agent, when it changes: event is the
    # health, detail the failed pings in a row.
    HEARTBEAT = 'HEARTBEAT'
    # One guest-ping's outcome: event is 1 if the agent answered, else 0.
    PING = 'PING'


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
    # The I/O error's reason, when libvirt gives one.
    reason: str = ''

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
        return document
