"""Immutable values that flow through the agent: domain events and notifications.

Nothing here imports libvirt: the codes in a :class:`DomainEvent` are libvirt's
numbers, and the tables that name them live with the code that reads them.
"""

import dataclasses
import datetime
import enum
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
    # The in-guest heartbeat: event is the health, detail the failed pings.
    HEARTBEAT = 'HEARTBEAT'


# ``event`` / ``detail`` of a kind that carries no such code (REBOOT, ...).
NO_CODE = -1


class Health(enum.IntEnum):
    """A HEARTBEAT event's ``event`` code; its ``detail`` is the failed pings."""

    DISCOVERY = 0
    HEALTHY = 1
    FAILING = 2
    REPORTED = 3
    NEVER_ANSWERED = 4


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


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One VM notification for the recovery API, frozen at detection."""

    hostname: str
    instance_uuid: str
    event: str
    vir_domain_event: str
    generated_time: datetime.datetime
    notification_id: str = dataclasses.field(
        default_factory=lambda: uuid.uuid4().hex)

    def body(self) -> dict:
        """The request body of ``POST /notifications``, in Masakari's schema."""
        stamp = self.generated_time.astimezone(datetime.UTC)
        return {'notification': {
            'type': 'VM',
            'hostname': self.hostname,
            'generated_time': stamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ'),
            'payload': {
                'event': self.event,
                'instance_uuid': self.instance_uuid,
                'vir_domain_event': self.vir_domain_event,
            },
        }}
