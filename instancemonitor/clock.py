"""The one place time comes from, so tests can control it."""

import datetime
import time


def monotonic() -> float:
    """Seconds on a clock that never jumps: for intervals and deadlines."""
    return time.monotonic()


def utcnow() -> datetime.datetime:
    """The current wall time in UTC: for stamps such as ``generated_time``."""
    return datetime.datetime.now(datetime.UTC)
