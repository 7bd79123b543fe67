"""Heartbeat round time: many guest agents, some hung.

The agent call is a stand-in with controlled delays (a healthy agent answers
in ~1 ms, as a real qemu-ga does; a hung one holds the call for libvirt's
own 5 s guest-sync wait, which the agent does not shorten: it never changes
the domain's agent timeout); everything else is the agent's own Heartbeat.
Prints one row per case.

    python -m bench.heartbeat_round
"""

import time

from bench.common import machine
from instancemonitor.sources.heartbeat import Heartbeat
from instancemonitor.sources.heartbeat import Target

HEALTHY_DELAY = 0.001
# What libvirt makes a ping to a hung agent wait (its fixed guest-sync).
LIBVIRT_HUNG_WAIT = 5.0


def round_time(domains: int, hung: int, timeout: float, workers: int) -> float:
    targets = [Target(f'u{i}', f'vm{i}', i, domain_id=i) for i in range(domains)]
    hung_ids = set(range(hung))

    def ping(target: Target) -> bool | None:
        if target.domain in hung_ids:
            time.sleep(timeout)
            return False
        time.sleep(HEALTHY_DELAY)
        return True

    beat = Heartbeat(lambda event: None, lambda: targets, ping, interval=60,
                     workers=workers)
    try:
        beat.round()  # warm the pool
        started = time.monotonic()
        beat.round()
        return time.monotonic() - started
    finally:
        beat.stop()


def main() -> None:
    print(f'# {machine()}, healthy ping {HEALTHY_DELAY * 1000:.0f} ms')
    print(f'{"domains":>8} {"hung":>5} {"hung wait s":>11} {"workers":>8} '
          f'{"round s":>8}')
    for domains, hung, timeout, workers in (
            (500, 0, LIBVIRT_HUNG_WAIT, 64),
            (500, 50, LIBVIRT_HUNG_WAIT, 64),
            (500, 100, LIBVIRT_HUNG_WAIT, 64),
            (500, 100, LIBVIRT_HUNG_WAIT, 128),
            (100, 10, 1.0, 1)):  # one at a time, as masakari-monitors pings
        seconds = round_time(domains, hung, timeout, workers)
        print(f'{domains:>8} {hung:>5} {timeout:>11.1f} {workers:>8} {seconds:>8.2f}')


if __name__ == '__main__':
    main()
