"""The notification chain as one bus subscriber: filter → journal → outbox."""

import logging

from instancemonitor.events import DomainEvent
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.outbox import Outbox

LOG = logging.getLogger(__name__)


class NotificationPipeline:
    def __init__(self, event_filter: EventFilter, journal: Journal,
                 outbox: Outbox) -> None:
        self._filter = event_filter
        self._journal = journal
        self._outbox = outbox

    def __call__(self, event: DomainEvent) -> None:
        verdict = self._filter.classify(event)
        LOG.debug('Event %s of %s (%s): %s', event.kind.value,
                  event.domain_name, event.domain_uuid, verdict)
        if verdict.running_again:
            for withdrawn in self._outbox.withdraw_held(event.domain_uuid):
                LOG.info('Domain %s (%s) started again within the reboot '
                         'window: %s/%s not reported', event.domain_name,
                         event.domain_uuid, withdrawn.event,
                         withdrawn.vir_domain_event)
        self._journal.record(
            event, verdict,
            queue=lambda notification: self._outbox.add(notification, verdict.hold))
