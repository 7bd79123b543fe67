"""The notification chain as one bus subscriber: filter → journal → outbox.

A notification due now is on the wire before anything else is done for its
event: the journal's write and the subscribers wait until a sender has sent
it (at most ``HANDOFF_WAIT``), so they neither delay it nor compete with it
for the interpreter. The heartbeat's state changes, which the journal works
out from pings, go on to ``listeners`` (the event subscribers' fan-out, the
metrics) after the recovery API's notification is queued.
"""

import logging
from collections.abc import Callable

from instancemonitor.events import DomainEvent
from instancemonitor.events import Notification
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.outbox import Outbox

LOG = logging.getLogger(__name__)

# Seconds the dispatcher waits for a sender to send a due notification.
HANDOFF_WAIT = 0.002


class NotificationPipeline:
    def __init__(self, event_filter: EventFilter, journal: Journal,
                 outbox: Outbox,
                 listeners: list[Callable[[DomainEvent], None]] | None = None,
                 ) -> None:
        self._filter = event_filter
        self._journal = journal
        self._outbox = outbox
        self.listeners = listeners if listeners is not None else []

    def __call__(self, event: DomainEvent) -> None:
        observation = self._filter.classify(event)
        if observation is None:
            return
        LOG.debug('Event %s of %s (%s, id %d): %s', event.kind.value,
                  event.domain_name, event.domain_uuid, event.domain_id,
                  observation.input)
        derived = self._journal.record(event, observation, self._queue,
                                       self._withdraw_held)
        if derived is not None:
            for listener in self.listeners:
                listener(derived)

    def _queue(self, notification: Notification, hold: float) -> None:
        self._outbox.add(notification, hold)
        if not hold:
            self._outbox.wait_sent(notification, HANDOFF_WAIT)

    def _withdraw_held(self, uuid: str) -> None:
        for withdrawn in self._outbox.withdraw_held(uuid):
            LOG.info('Domain %s started again within the reboot window: %s/%s '
                     'not reported', uuid, withdrawn.event,
                     withdrawn.vir_domain_event)
