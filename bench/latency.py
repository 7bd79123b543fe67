"""libvirt event → POST received, with the durable outbox.

In this process: libvirt's test driver (test:///default) through libvirt's
real event loop, and the agent with its SQLite outbox (fsync on every
change), logging as the daemon does; in a child process, so that it does
not compete with the agent for the interpreter, a loopback receiver that
answers in one send. Domains are started and, once the agent has recorded
the start and then idled a while (each of ``IDLE``: a real failure comes
after the agent has idled, and on a VM a CPU just woken from idle is
slower), destroyed, one at a time; each latency is from the destroy() call
to the request's arrival at the receiver, both on the host's monotonic
clock. EVENTS failures per idle time.

    python -m bench.latency [EVENTS]
"""

import functools
import sys
import time
import uuid

import libvirt

from bench.common import DOMAIN_XML
from bench.common import ChildRecoveryAPI
from bench.common import agent_on_test_driver
from bench.common import machine
from instancemonitor.domainstate import Phase
from instancemonitor.service import AgentService
from tests.processes import wait_for

# Seconds the agent idles before each failure, one row each.
IDLE = (0.0, 0.01, 0.05)


def recorded_running(agent: AgentService, domain_uuid: str) -> bool:
    record = agent.store.get(domain_uuid)
    return (record is not None and record.phase is Phase.RUNNING
            and not agent.bus.pending())


def latencies(agent: AgentService, api: ChildRecoveryAPI,
              conn: libvirt.virConnect, count: int, idle: float) -> list[float]:
    """Milliseconds from each destroy() to its POST's arrival, sorted."""
    before = len(api.arrivals())
    started = []
    for i in range(count):
        dom = conn.createXML(DOMAIN_XML.format(name=f'lat-{uuid.uuid4().hex[:8]}',
                                               uuid=uuid.uuid4()))
        wait_for(functools.partial(recorded_running, agent, dom.UUIDString()),
                 10, 'the start recorded')
        time.sleep(idle)
        started.append(time.monotonic())
        dom.destroy()
        api.wait_stored(before + i + 1, timeout=10)
    arrivals = api.arrivals()[before:]
    assert len(arrivals) == count, f'{len(arrivals)} POSTs for {count} failures'
    return sorted((arrived - at) * 1000
                  for at, arrived in zip(started, arrivals, strict=True))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(f'# latency: libvirt event -> POST arrived, durable outbox; {machine()}')
    print(f'{"idle ms":>8} {"events":>7} {"p50 ms":>7} {"p99 ms":>7} {"max ms":>7}')
    with agent_on_test_driver(ChildRecoveryAPI().start()) as (agent, api, conn):
        for idle in IDLE:
            found = latencies(agent, api, conn, count, idle)

            def pct(p: float, found: list[float] = found) -> float:
                return found[min(len(found) - 1, int(len(found) * p))]
            print(f'{idle * 1000:>8.0f} {count:>7} {pct(0.50):>7.2f} '
                  f'{pct(0.99):>7.2f} {found[-1]:>7.2f}', flush=True)


if __name__ == '__main__':
    main()
