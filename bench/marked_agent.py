"""The detection path's stages, marked: ``install`` wraps the agent's own
methods so that the time (time.monotonic(), CLOCK_MONOTONIC, which every
process on the host shares) each stage began or ended is noted, and handed
on once the notification's request is written and its transaction synced.
``bench.latency_breakdown``
installs it in its own process; run as a module, it is the agent
(arguments as ``instancemonitor-agent``'s) writing one dict per
notification sent to the file ``$MARKS``, for ``bench.qemu_breakdown``."""

import os
import sys
import threading
import time
from collections.abc import Callable

from instancemonitor import bus
from instancemonitor import journal
from instancemonitor import outbox
from instancemonitor import pipeline
from instancemonitor.cmd import agent
from instancemonitor.sinks import httpclient
from instancemonitor.sinks import masakari

# (class, method, stage, when, first): with ``first`` the stage's first call
# since the last notification sent counts, otherwise its last one (an
# event's own stages come last before its notification is committed).
STAGES = (
    (bus.EventBus, 'publish', 'libvirt callback publishes', 'before', False),
    (pipeline.NotificationPipeline, '__call__', 'dispatcher takes it', 'before',
     False),
    (journal.Journal, 'record', 'journal starts', 'before', False),
    (journal.Journal, 'record', 'journal done (in the transaction)', 'after',
     False),
    (outbox.Outbox, 'release_held', 'committed; its sync starts', 'before',
     False),
    (outbox.Outbox, 'take', 'a sender has it', 'after', True),
    (masakari.MasakariSink, 'send', 'the sink starts the POST', 'before', True),
    (httpclient._HTTPConnection, 'send', 'request ready, written', 'before', True),
    (outbox.Outbox, 'wait_sent', 'synced; dispatcher waits for the send',
     'before', True),
    # Written by the committing thread (HTTPClient.start), or by a sender.
    (httpclient.HTTPClient, 'start', 'request bytes written', 'after', True),
    (outbox.Outbox, 'sent', 'request bytes written', 'before', True),
)
NAMES = list(dict.fromkeys(stage for _, _, stage, _, _ in STAGES))
# A notification's marks are handed on once all these have been noted: the
# request and its transaction's sync run side by side, either ends first,
# and a sender may take it only after its request was written.
LAST = {'a sender has it', NAMES[-2], NAMES[-1]}


def install(on_sent: Callable[[dict[str, float]], None]) -> None:
    """Mark the stages from now on; each notification's marks go to
    ``on_sent`` once its request is written."""
    marks: dict[str, float] = {}
    lock = threading.Lock()

    def mark(stage: str, first: bool) -> None:
        if first:
            marks.setdefault(stage, time.monotonic())
        else:
            marks[stage] = time.monotonic()

    def marked(method, stage: str, when: str, first: bool):
        def wrapper(*args, **kwargs):
            if when == 'before':
                mark(stage, first)
            result = method(*args, **kwargs)
            if when == 'after' and result is not None:  # take() timed out
                mark(stage, first)
            if stage in LAST and LAST <= marks.keys():
                with lock:
                    on_sent(dict(marks))
                    marks.clear()
            return result
        return wrapper

    for cls, name, stage, when, first in STAGES:
        setattr(cls, name, marked(getattr(cls, name), stage, when, first))


def main() -> int:
    out = open(os.environ['MARKS'], 'a', buffering=1)
    install(lambda marks: out.write(repr(marks) + '\n'))
    return agent.main()


if __name__ == '__main__':
    sys.exit(main())
