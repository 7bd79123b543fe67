"""Where notifications go: the recovery API, webhooks, the message bus.

A sink makes one attempt and classifies the answer."""

import dataclasses
import enum
from typing import Protocol

from instancemonitor.events import Notification


class Outcome(enum.Enum):
    DELIVERED = 'delivered'
    # The receiver already has it (e.g. a retry after a lost answer).
    DUPLICATE = 'duplicate'
    # Final: retrying cannot help; kept as a dead letter.
    REJECTED = 'rejected'
    # Transient: try again later.
    RETRY = 'retry'


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    status: int | None = None
    message: str = ''

    def __str__(self) -> str:
        if not self.status:
            return self.message or 'no answer'
        status = f'HTTP {self.status}'
        return f'{status}: {self.message}' if self.message else status


class Sink(Protocol):
    """One attempt per ``send``. The recovery API's sink also has
    ``start(notification)``, which writes the request if that is quick
    (returning what ``finish(started)`` needs to read the answer), for the
    detection path's first attempt."""
    name: str

    def send(self, notification: Notification) -> Answer: ...
