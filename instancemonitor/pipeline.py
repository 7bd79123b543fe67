"""The notification chain as one bus subscriber: filter → journal → outbox.

The journal's record of an event and the notifications it calls for are
written in one transaction (``group``: one fsync); the notifications go
once it has committed, while the store syncs it to disk (see ``store``
and the service's dispatch group). A notification due now is then on
the wire before anything else is done for its event: the subscribers wait until
a sender has sent it (at most ``HANDOFF_WAIT``), so they neither delay it
nor compete with it for the interpreter. The heartbeat's and the probes'
state changes, which the journal works out from pings and probe runs, go on
to ``listeners`` (the event subscribers' fan-out, the metrics) after that
too. The journal's log lines wait for the sends as well; for events the bus
dispatches together, until the group has committed.
"""

import contextlib
import functools
import logging
from collections.abc import Callable

from instancemonitor import clock
from instancemonitor.events import DomainEvent
from instancemonitor.events import Notification
from instancemonitor.filter import RECOVERY_PAIRS
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.outbox import Outbox

LOG = logging.getLogger(__name__)
# The journal's lines, logged under its name once the notification is out.
LOG_JOURNAL = logging.getLogger('instancemonitor.journal')

# Seconds the dispatcher waits for a sender to send a due notification.
HANDOFF_WAIT = 0.002
# Withdrawn even when due, if no sender has taken them yet: a recovery of
# what is over would stop a VM that runs again. A forwarded stop due now is
# sent ([events] reboot_window decides which stops wait for a start).
RECOVERY_LABELS = frozenset('/'.join(pair) for pair in RECOVERY_PAIRS)


class NotificationPipeline:
    def __init__(self, event_filter: EventFilter, journal: Journal,
                 outbox: Outbox,
                 listeners: list[Callable[[DomainEvent], None]] | None = None,
                 group: Callable[[], contextlib.AbstractContextManager] = (
                     contextlib.nullcontext),
                 ) -> None:
        self._group = group
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
        due: list[Notification] = []

        def queue(notification: Notification, hold: float) -> None:
            self._outbox.add(notification, hold)
            if not hold:
                due.append(notification)
        said: list[tuple] = []
        with self._group():
            derived = self._journal.record(event, observation, queue,
                                           self._withdraw_waiting,
                                           lambda *line: said.append(line),
                                           self._release_waiting)
            # After the group this event is in (the bus's, for events
            # dispatched together) has committed: a burst's lines do not
            # hold its commit.
            self._outbox.after_held(functools.partial(self._announce, due, said))
        for change in derived:
            for listener in self.listeners:
                listener(change)

    def _announce(self, due: list[Notification], said: list[tuple]) -> None:
        """Log what the journal said, once what is due is sent (or after
        ``HANDOFF_WAIT`` in all)."""
        deadline = clock.monotonic() + HANDOFF_WAIT
        for notification in due:
            self._outbox.wait_sent(notification,
                                   max(0.0, deadline - clock.monotonic()))
        for line in said:
            LOG_JOURNAL.info(*line)

    def _release_waiting(self, uuid: str, pairs: tuple[str, ...]) -> None:
        for released in self._outbox.release_waiting(uuid, pairs):
            LOG.info('Domain %s: %s/%s released: the failure it reports stands',
                     uuid, released.event, released.vir_domain_event)

    def _withdraw_waiting(self, uuid: str, pairs: tuple[str, ...]) -> None:
        for withdrawn in self._outbox.withdraw_waiting(uuid, pairs,
                                                       even_due=RECOVERY_LABELS):
            LOG.info('Domain %s: %s/%s withdrawn before it was sent: what it '
                     'reports is over (the domain runs again, here or at the '
                     'destination of its migration; its guest answers again; '
                     'or it was undefined and lives here no more)', uuid,
                     withdrawn.event, withdrawn.vir_domain_event)
