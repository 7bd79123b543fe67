"""The agent, with the time each stage of the detection path began (or
ended) appended to the file ``$MARKS`` (one dict per notification sent, on
CLOCK_MONOTONIC, which every process on the host shares). For
``bench.qemu_breakdown``; arguments as ``instancemonitor-agent``'s."""

import os
import sys
import threading
import time

from instancemonitor import bus
from instancemonitor import journal
from instancemonitor import outbox
from instancemonitor import pipeline
from instancemonitor.cmd import agent
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
    (outbox.Outbox, 'wait_sent', 'committed; dispatcher waits for the send',
     'before', True),
    (outbox.Outbox, 'take', 'a sender has it', 'after', True),
    (masakari.MasakariSink, 'send', 'the sink starts the POST', 'before', True),
    (outbox.Outbox, 'sent', 'request bytes written', 'before', True),
)
LAST_STAGE = STAGES[-1][2]

_marks: dict[str, float] = {}
_lock = threading.Lock()


def _marked(method, stage: str, when: str, first: bool, out):
    def marked(*args, **kwargs):
        if when == 'before':
            _mark(stage, first)
        result = method(*args, **kwargs)
        if when == 'after':
            _mark(stage, first)
        if stage == LAST_STAGE:
            with _lock:
                out.write(repr(dict(_marks)) + '\n')
                _marks.clear()
        return result
    return marked


def _mark(stage: str, first: bool) -> None:
    if first:
        _marks.setdefault(stage, time.monotonic())
    else:
        _marks[stage] = time.monotonic()


def main() -> int:
    out = open(os.environ['MARKS'], 'a', buffering=1)
    for cls, name, stage, when, first in STAGES:
        setattr(cls, name, _marked(getattr(cls, name), stage, when, first, out))
    return agent.main()


if __name__ == '__main__':
    sys.exit(main())
