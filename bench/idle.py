"""Idle footprint: 200 domains running, nothing happening, for 60 s.

In this process: the agent on a test:/// node with 200 running domains,
durable outbox, reconciliation every 60 s (its default), heartbeat on (no
test domain has an agent channel, so it pings nothing). Figures over the
window: CPU % of one core, RSS, the agent's threads, and wakeups (context
switches of the agent's threads, from /proc).

    python bench/idle.py [DOMAINS] [SECONDS]
"""

import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time

from bench.common import RecoveryAPI
from bench.common import agent_threads
from bench.common import cpu_seconds
from bench.common import machine
from bench.common import node_xml
from bench.common import rss_mib
from bench.common import start_agent

PREFIXES = ('libvirt-', 'event-dispatch', 'sender-', 'reconcile', 'heartbeat')


def agent_switches() -> int:
    """Context switches so far of the agent's threads (by name)."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith(PREFIXES)}
    total = 0
    for tid in ids:
        try:
            status = pathlib.Path(f'/proc/{os.getpid()}/task/{tid}/status').read_text()
        except OSError:
            continue
        # voluntary_ctxt_switches and nonvoluntary_ctxt_switches
        total += sum(int(line.split()[1]) for line in status.splitlines()
                     if 'ctxt_switches' in line)
    return total


def main() -> None:
    domains = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    work = pathlib.Path(tempfile.mkdtemp(prefix='im-idle-'))
    api = RecoveryAPI().start()
    agent = start_agent(node_xml(domains, work), api.url)
    try:
        time.sleep(2)  # past start-up and the first scan
        cpu, switches, rss = cpu_seconds(), agent_switches(), rss_mib()
        time.sleep(seconds)
        cpu, switches = cpu_seconds() - cpu, agent_switches() - switches
        threads, rss_end = agent_threads(), rss_mib()
    finally:
        agent.stop()
        api.stop()
        shutil.rmtree(agent.store.path.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f'# idle: {domains} domains, {seconds:.0f} s; {machine()}')
    print(f'{"CPU %":>6} {"RSS MiB":>8} {"agent threads":>14} {"wakeups/s":>10}')
    print(f'{cpu / seconds * 100:>6.2f} {rss_end:>8.0f} {threads:>14} '
          f'{switches / seconds:>10.1f}')
    print(f'# (RSS {rss:.0f} MiB at the start of the window; the process '
          'includes libvirt\'s test driver and the receiver)')


if __name__ == '__main__':
    main()
