"""Where notifications go. A sink makes one attempt and classifies the answer."""

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
        status = f'HTTP {self.status}' if self.status else 'no answer'
        return f'{status}: {self.message}' if self.message else status


class Sink(Protocol):
    name: str

    def send(self, notification: Notification) -> Answer: ...
