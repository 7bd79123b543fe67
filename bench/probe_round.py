"""Application probe round time: many guests, some of whose probes hang.

The guests are stand-ins: a connection that lists them, and a guest agent
command that answers ``guest-exec`` at once and ``guest-exec-status`` with
"exited, status 0" after ~1 ms for a healthy guest, and "still running" for
ever for a hung one (so each hung probe polls until its ``timeout``).
Everything else is the agent's own: the Prober, its runner's polling, and a
pool of ``[introspectiveinstancemonitor] ping_workers`` (64) threads. Prints
one row per case: the seconds from the round's start until every probe's
outcome was published.

    python -m bench.probe_round
"""

import concurrent.futures
import contextlib
import json
import threading
import time

from bench.common import machine
from instancemonitor.sources.probes import GuestAgentProbe
from instancemonitor.sources.probes import Prober
from instancemonitor.sources.probes import ProbeSpec

HEALTHY_DELAY = 0.001
XML = ("<domain><name>{name}</name><devices><channel type='unix'><target "
       "type='virtio' name='org.qemu.guest_agent.0'/></channel></devices></domain>")


class StandInDomain:
    """What the Prober asks of a virDomain, by libvirt's method names."""

    def __init__(self, index: int, hung: bool) -> None:
        self.index, self.hung = index, hung

    def UUIDString(self) -> str:
        return f'00000000-0000-0000-0000-{self.index:012d}'

    def ID(self) -> int:
        return self.index + 1

    def name(self) -> str:
        return f'instance-{self.index:08x}'

    def XMLDesc(self, _flags: int) -> str:
        return XML.format(name=self.name())


class StandInConnection:
    def __init__(self, domains: list[StandInDomain]) -> None:
        self._domains = domains

    def listAllDomains(self, _flags: int) -> list[StandInDomain]:
        return self._domains


def agent_command(domain: StandInDomain, command: str, _timeout: int,
                  _flags: int) -> str:
    request = json.loads(command)
    if request['execute'] == 'guest-exec':
        return json.dumps({'return': {'pid': 1}})
    if domain.hung:
        return json.dumps({'return': {'exited': False}})
    time.sleep(HEALTHY_DELAY)
    return json.dumps({'return': {'exited': True, 'exitcode': 0}})


def round_time(domains: int, hung: int, timeout: float, workers: int) -> float:
    guests = [StandInDomain(i, i < hung) for i in range(domains)]
    published = []
    done = threading.Event()

    def publish(event) -> None:
        published.append(event)
        if len(published) == domains:
            done.set()

    spec = ProbeSpec(name='app', command='/bin/test', args=('-f', '/run/ok'),
                     period=3600, timeout=timeout, initial_delay=0,
                     match_name=('instance-*',))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        stand_in = StandInConnection(guests)
        prober = Prober(publish, lambda: contextlib.nullcontext(stand_in),
                        {'app': spec}, pool,
                        runner=GuestAgentProbe(agent_command=agent_command))
        started = time.monotonic()
        prober.round()
        done.wait(timeout * 10)
        return time.monotonic() - started


def main() -> None:
    print(f'# {machine()}, healthy probe {HEALTHY_DELAY * 1000:.0f} ms')
    print(f'{"domains":>8} {"hung":>5} {"timeout s":>9} {"workers":>8} '
          f'{"round s":>8}')
    for domains, hung, timeout, workers in ((500, 0, 5.0, 64), (500, 50, 5.0, 64),
                                            (500, 100, 5.0, 64),
                                            (500, 100, 5.0, 128)):
        seconds = round_time(domains, hung, timeout, workers)
        print(f'{domains:>8} {hung:>5} {timeout:>9.1f} {workers:>8} {seconds:>8.2f}')


if __name__ == '__main__':
    main()
