"""Where the detection path's time goes: destroy() → POST stored, by stage.

``agent_on_test_driver``: libvirt's test driver, the agent with its
durable outbox, and a loopback receiver, all in this process (the
receiver too, unlike ``bench.latency``'s, as it stamps the last stage),
with each stage marked by ``bench.marked_agent``'s wrappers
of the agent's own methods. Prints the median time from destroy() at which
each stage began (or ended):

    python -m bench.latency_breakdown [EVENTS]
"""

import statistics
import sys
import time
import uuid

from bench import marked_agent
from bench.common import DOMAIN_XML
from bench.common import agent_on_test_driver
from bench.common import machine
from tests.processes import wait_for

STORED = 'receiver has it stored'


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    sent: list[dict[str, float]] = []
    marked_agent.install(sent.append)
    rows = []
    with agent_on_test_driver() as (_agent, api, conn):
        for i in range(count):
            dom = conn.createXML(DOMAIN_XML.format(name=f'lat-{i}', uuid=uuid.uuid4()))
            time.sleep(0.01)  # the start's events are out of the way
            started = time.monotonic()
            dom.destroy()
            api.wait_stored(i + 1)
            done = time.monotonic()
            # Its request was written before it was stored, but the sender
            # may hand on its marks a moment after.
            wait_for(lambda n=i: len(sent) > n, 5, 'the marks of the notification')
            rows.append({**{k: v - started for k, v in sent[i].items()},
                         STORED: done - started})
    print(f'# {machine()}; {count} destroys; median ms after destroy()')
    for stage in marked_agent.NAMES + [STORED]:
        values = [row[stage] * 1000 for row in rows if stage in row]
        # A sender's stages are not on every path (none at all, when the
        # committing thread writes every request itself).
        median = f'{statistics.median(values):6.2f}' if values else f'{"-":>6s}'
        share = '' if len(values) == len(rows) else f'  ({len(values)} of {len(rows)})'
        print(f'{stage:45s} {median}{share}')


if __name__ == '__main__':
    main()
