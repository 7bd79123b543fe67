"""Where the detection path's time goes: destroy() → POST stored, by stage.

The same setup as ``bench.latency`` (``agent_on_test_driver``: libvirt's
test driver, the agent with its durable outbox, a loopback receiver, all in
this process), with the first call of each stage timed by wrapping the
agent's own methods. Prints the median time from destroy() at which each
stage began (or ended):

    python -m bench.latency_breakdown [EVENTS]
"""

import statistics
import sys
import time
import uuid

from bench.common import DOMAIN_XML
from bench.common import agent_on_test_driver
from bench.common import machine
from instancemonitor import bus
from instancemonitor import journal
from instancemonitor import outbox
from instancemonitor import pipeline
from instancemonitor.sinks import masakari

_marks: dict[str, float] = {}

# (class, method, stage, when): what the stage's time is.
STAGES = (
    (bus.EventBus, 'publish', 'libvirt callback publishes', 'before'),
    (pipeline.NotificationPipeline, '__call__', 'dispatcher takes it', 'before'),
    (journal.Journal, 'record', 'journal starts', 'before'),
    (journal.Journal, 'record', 'journal done (in the transaction)', 'after'),
    (outbox.Outbox, 'wait_sent', 'committed; dispatcher waits for the send',
     'before'),
    (outbox.Outbox, 'take', 'a sender has it', 'after'),
    (masakari.MasakariSink, 'send', 'the sink starts the POST', 'before'),
    (outbox.Outbox, 'sent', 'request bytes written', 'before'),
)


def _timed(method, stage: str, when: str):
    def timed(*args, **kwargs):
        if when == 'before':
            _marks.setdefault(stage, time.perf_counter())
        result = method(*args, **kwargs)
        if when == 'after':
            _marks.setdefault(stage, time.perf_counter())
        return result
    return timed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    for cls, name, stage, when in STAGES:
        setattr(cls, name, _timed(getattr(cls, name), stage, when))
    rows = []
    with agent_on_test_driver() as (_agent, api, conn):
        for i in range(count):
            dom = conn.createXML(DOMAIN_XML.format(name=f'lat-{i}', uuid=uuid.uuid4()))
            time.sleep(0.01)  # the start's events are out of the way
            _marks.clear()
            started = time.perf_counter()
            dom.destroy()
            api.wait_stored(i + 1)
            done = time.perf_counter()
            rows.append({**{k: v - started for k, v in _marks.items()},
                         'receiver has it stored': done - started})
    print(f'# {machine()}; {count} destroys; median ms after destroy()')
    for stage in [s for _, _, s, _ in STAGES] + ['receiver has it stored']:
        values = [row[stage] * 1000 for row in rows if stage in row]
        print(f'{stage:45s} {statistics.median(values):6.2f}')


if __name__ == '__main__':
    main()
