"""libvirt event → POST received, with the durable outbox.

In this process: libvirt's test driver (test:///default) through libvirt's
real event loop, the agent with its SQLite outbox (fsync on every change),
and a loopback receiver that answers in one send. Domains are destroyed one
at a time; each latency is from the destroy() call to the receiver having
stored the notification.

    python bench/latency.py [EVENTS]
"""

import sys
import time
import uuid

from bench.common import DOMAIN_XML
from bench.common import agent_on_test_driver
from bench.common import machine


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    latencies = []
    with agent_on_test_driver() as (_agent, api, conn):
        for i in range(count):
            dom = conn.createXML(DOMAIN_XML.format(name=f'lat-{i}', uuid=uuid.uuid4()))
            started = time.perf_counter()
            dom.destroy()
            api.wait_stored(i + 1)
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))]
    print(f'# latency: libvirt event -> POST stored, durable outbox; {machine()}')
    print(f'{"events":>7} {"p50 ms":>7} {"p99 ms":>7} {"max ms":>7}')
    print(f'{count:>7} {pct(0.50):>7.2f} {pct(0.99):>7.2f} {latencies[-1]:>7.2f}')


if __name__ == '__main__':
    main()
