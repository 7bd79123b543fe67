"""Every domain event, named, into the outbox of each event subscriber that
wants it (webhooks, the message bus): one bus subscriber for all of them.

Each subscriber's notifications go to its own outbox and sender, so a slow
or dead subscriber holds up neither the others nor the recovery API.

State scans repeat what is already known (every running domain, every
minute); a scan's event is passed on only when it tells this process
something new about the domain: the first time, or a changed state. A scan
and libvirt's events race: a scan read before an event already passed on is
stale, and libvirt's event of the very state a scan already told (the same
state in the same run, by its domain id) is not told twice.
"""

import collections
import contextlib
import dataclasses
from collections.abc import Callable

import libvirt

from instancemonitor.eventnames import EventPatterns
from instancemonitor.eventnames import event_name
from instancemonitor.events import SILENT_KINDS
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Notification
from instancemonitor.filter import RECONCILIATION
from instancemonitor.outbox import Outbox

# A scan reports a running domain as STARTED; RESUMED means the same state.
_SAME_STATE = {libvirt.VIR_DOMAIN_EVENT_RESUMED: libvirt.VIR_DOMAIN_EVENT_STARTED}
# Domains whose last state is remembered; transient domains never send
# UNDEFINED, so the least recently seen are forgotten past this (a scan then
# passes their state on once more).
REMEMBERED_DOMAINS = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class _Known:
    """A domain's last state passed on, and what told it."""

    state: int        # the lifecycle event code
    domain_id: int
    seq: int          # the event's, or the one its scan took before it read
    by_scan: bool


@dataclasses.dataclass(frozen=True)
class Subscription:
    patterns: EventPatterns
    outbox: Outbox


# What the agent tells itself: check runs, domains a scan did not list,
# metadata changes and what the migration watch found.
_INTERNAL = SILENT_KINDS | {EventKind.METADATA_CHANGE, EventKind.MIGRATION_SOURCE}


class EventFanout:
    def __init__(self, hostname: str, subscriptions: list[Subscription],
                 batch: Callable[[], contextlib.AbstractContextManager] = (
                     contextlib.nullcontext),
                 ) -> None:
        """``batch``: groups the writes of one event's notifications (the
        store's one transaction, one fsync for all subscribers)."""
        self._hostname = hostname
        self._subscriptions = subscriptions
        self._batch = batch
        # Domain uuid → its last state passed on.
        self._states: collections.OrderedDict[str, _Known] = collections.OrderedDict()

    def __call__(self, event: DomainEvent) -> None:
        if event.kind in _INTERNAL or not self._news(event):
            return
        name, detail = event_name(event)
        label = f'{name}/{detail}'
        wanted = [s for s in self._subscriptions if s.patterns.match(label)]
        if not wanted:
            return
        with self._batch():
            for subscription in wanted:
                subscription.outbox.add(Notification(
                    hostname=self._hostname, instance_uuid=event.domain_uuid,
                    event=name, vir_domain_event=detail,
                    generated_time=event.detected_at,
                    sink=subscription.outbox.sink,
                    instance_name=event.domain_name, source=event.source,
                    reason=event.reason, probe=event.probe))

    def _news(self, event: DomainEvent) -> bool:
        if event.kind != EventKind.LIFECYCLE:
            return True
        if event.event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
            self._states.pop(event.domain_uuid, None)
            return True
        state = _SAME_STATE.get(event.event, event.event)
        known = self._states.pop(event.domain_uuid, None)
        told = _Known(state, event.domain_id, event.seq,
                      event.source == RECONCILIATION)
        if told.by_scan:
            news = known is None or (known.state != state and known.seq < event.seq)
        else:
            # A scan can read a state before libvirt's event of it arrives.
            news = not (known is not None and known.by_scan and known.state == state
                        and event.domain_id >= 0 and known.domain_id == event.domain_id)
        # A scan that tells nothing new leaves what told the state before.
        self._states[event.domain_uuid] = told if news or not told.by_scan else known
        if len(self._states) > REMEMBERED_DOMAINS:
            self._states.popitem(last=False)
        return news
