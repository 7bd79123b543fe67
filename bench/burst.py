"""A burst: 1,000 domains fail at once and the API answers in 50 ms.

In this process: a test:/// node with N running domains, all destroyed
through the agent's own connection (a node file gives each connection its
own copy), the agent with its durable outbox and its default configuration,
and a loopback receiver in a child process that holds every answer 50 ms.
Figures, from the first destroy() on (the agent's scan of the domains after
connecting is over by then): time until every notification is stored, CPU
per notification of this process (the agent, and the destroy() calls of the
test driver), the agent's peak thread count and the process's peak RSS.

    python bench/burst.py [DOMAINS]
"""

import pathlib
import shutil
import sys
import tempfile
import threading
import time

import libvirt

from bench.common import ChildRecoveryAPI
from bench.common import agent_threads
from bench.common import cpu_seconds
from bench.common import machine
from bench.common import node_xml
from bench.common import rss_mib
from bench.common import start_agent
from tests.processes import wait_for

API_DELAY = 0.05


def run(count: int) -> tuple[float, float, int, float]:
    work = pathlib.Path(tempfile.mkdtemp(prefix='im-burst-'))
    api = ChildRecoveryAPI(API_DELAY).start()
    agent = start_agent(node_xml(count, work), api.url,
                        introspectiveinstancemonitor={'enabled': False})
    # The scan after connecting, a reconciliation event per domain, is done
    # before the burst: it is not the burst's work.
    wait_for(lambda: (len(agent.journal.records()) == count and
                      not agent.bus.pending()), 60, 'the first scan recorded')
    time.sleep(0.5)
    peaks, done = {'threads': 0, 'rss': 0.0}, threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peaks['threads'] = max(peaks['threads'], agent_threads())
            peaks['rss'] = max(peaks['rss'], rss_mib())
    sampler = threading.Thread(target=sample)
    try:
        with agent.connection.borrowed() as conn:
            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        sampler.start()
        cpu, started = cpu_seconds(), time.monotonic()
        for dom in doms:
            dom.destroy()
        api.wait_stored(count, timeout=600)
        elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join()
        agent.stop()
        api.stop()
        shutil.rmtree(agent.store.path.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return elapsed, cpu / count * 1000, peaks['threads'], peaks['rss']


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f'# burst: {count} domains fail at once, API answers in '
          f'{API_DELAY * 1000:.0f} ms, durable outbox; {machine()}')
    print(f'{"all delivered s":>16} {"CPU ms/notif":>13} '
          f'{"peak threads":>13} {"peak RSS MiB":>13}')
    elapsed, cpu_ms, threads, rss = run(count)
    print(f'{elapsed:>16.2f} {cpu_ms:>13.2f} {threads:>13} {rss:>13.0f}')


if __name__ == '__main__':
    main()
