"""The quickstart demo: the agent doing its job, end to end, on this machine.

A private libvirtd runs one small QEMU guest; the real masakari-api (from
PyPI) is the recovery engine, with this host registered; the agent watches.
The guest's QEMU is killed, and the notification Masakari stored is printed.
Everything started here is stopped at the end. Needs root and the packages
``quickstart.sh`` installs. Built from the test tier's own fixtures.
"""

import json
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time

import libvirt

from tests.e2e.conftest import agent_config
from tests.e2e.conftest import guest_xml
from tests.e2e.masakari import MasakariAPI
from tests.processes import AgentProcess
from tests.processes import PrivateLibvirtd
from tests.processes import wait_for

HOST = 'compute-1'


def say(text: str) -> None:
    print(f'==> {text}', flush=True)


def main() -> int:
    work = pathlib.Path(tempfile.mkdtemp(prefix='im-quickstart-'))
    hypervisor = masakari = agent = None
    try:
        say('starting a private libvirtd with the QEMU driver (state in '
            f'{work})')
        hypervisor = PrivateLibvirtd('qemu').start()
        say('starting the real masakari-api (first run installs it, ~30 s)')
        masakari = MasakariAPI(work)
        masakari.start()
        masakari.register_host(HOST)
        say(f'masakari-api on {masakari.url}, host {HOST} in a failover segment')
        agent = AgentProcess(agent_config(hypervisor.uri, masakari.url,
                                          str(work / 'state'), hostname=HOST),
                             work).start()
        agent.wait_log('Connected to libvirt')
        say(f'instancemonitor running (pid {agent.process.pid}), log {agent.log}')
        conn = libvirt.open(hypervisor.uri)
        dom = conn.createXML(guest_xml('quickstart-vm'))
        say(f'guest quickstart-vm running, uuid {dom.UUIDString()}')
        time.sleep(1)
        pid = hypervisor.qemu_pid('quickstart-vm')
        say(f'killing its QEMU (pid {pid}) with SIGKILL, as a crash would')
        os.kill(pid, signal.SIGKILL)
        stored = wait_for(lambda: [n for n in masakari.notifications()
                                   if n['payload']['instance_uuid'] == dom.UUIDString()],
                          30, 'the notification in Masakari')
        say('Masakari stored this notification (GET /v1/notifications):')
        print(json.dumps(stored[0], indent=2))
        conn.close()
        return 0
    finally:
        say('stopping everything started here')
        if agent is not None:
            agent.stop()
        if masakari is not None:
            masakari.stop()
        if hypervisor is not None:
            hypervisor.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
