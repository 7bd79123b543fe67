"""libvirtd down for a while: failures during the gap, time to reconnect.

A private libvirtd with the QEMU driver (root; the test tier's fixture) runs
one persistent guest per gap. For each gap, libvirtd is SIGKILLed, the
guest's QEMU is SIGKILLed while libvirtd is down (no event can ever report
it), and libvirtd is started again after the gap. Figures: time from
libvirtd answering again to the agent being reconnected, and whether the
failure was notified (found by reconciliation), i.e. lost or not. The agent
runs in this process with its defaults (reconnect backoff 0.5 s doubling to
10 s).

    python -m bench.libvirtd_restart [GAP ...]
"""

import os
import shutil
import signal
import sys
import time

import libvirt

from bench.common import RecoveryAPI
from bench.common import machine
from bench.common import start_agent
from tests.e2e.conftest import guest_xml
from tests.processes import PrivateLibvirtd
from tests.processes import wait_for


def main() -> None:
    gaps = [float(g) for g in sys.argv[1:]] or [0.2, 1.0, 5.0, 20.0, 60.0]
    daemon = PrivateLibvirtd('qemu')
    api = RecoveryAPI().start()
    rows, agent = [], None
    try:
        daemon.start()
        agent = start_agent(daemon.uri, api.url,
                            introspectiveinstancemonitor={'enabled': False})
        for number, gap in enumerate(gaps):
            conn = libvirt.open(daemon.uri)
            dom = conn.defineXML(guest_xml(f'gap-{number}'))
            dom.create()
            uuid = dom.UUIDString()
            conn.close()
            pid = daemon.qemu_pid(f'gap-{number}')
            daemon.kill()
            wait_for(lambda: not agent.connection.connected, 10, 'the loss seen')
            os.kill(pid, signal.SIGKILL)
            time.sleep(gap)
            daemon.start()
            back = time.monotonic()
            wait_for(lambda: agent.connection.connected, 60, 'reconnection')
            reconnect = time.monotonic() - back
            try:
                wait_for(lambda uuid=uuid: uuid in [p[0] for p in api.payloads()], 15,
                         'the failure notified')
                lost = 0
            except AssertionError:
                lost = 1
            rows.append((gap, reconnect, lost))
    finally:
        if agent is not None:
            agent.stop()
            shutil.rmtree(agent.store.path.parent, ignore_errors=True)
        api.stop()
        daemon.cleanup()
    print(f'# libvirtd SIGKILLed, a guest killed during the gap, libvirtd back; '
          f'{machine()}')
    print(f'{"gap s":>6} {"reconnect s":>12} {"failures lost":>14}')
    for gap, reconnect, lost in rows:
        print(f'{gap:>6.1f} {reconnect:>12.2f} {lost:>14}')


if __name__ == '__main__':
    main()
