"""instancemonitor side by side with masakari-monitors, on real QEMU guests.

Both agents run in turn, each with its default configuration (only what
must be set: the host name, the libvirt URI, the Keystone login, and for
instancemonitor a state directory and metrics off), against the same private
libvirtd (the e2e tier's, QEMU under TCG) and the same loopback recovery API
behind a Keystone stand-in. This process also listens to libvirt's events:
agent-added latency is from its STOPPED_FAILED callback to the POST's
arrival at the API, on one monotonic clock.

masakari-monitors is installed from PyPI into a cached virtualenv, with
libvirt-python pinned to the host's libvirt. Root is needed (the private
libvirtd). About three minutes.

    python -m bench.vs_masakari_monitors [KILLS]
"""

import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import libvirt

from bench.common import machine
from instancemonitor.virt import eventloop
from tests.e2e.conftest import guest_xml
from tests.fakes import keystone as fake_keystone
from tests.fakes.recovery_api import RecoveryAPI
from tests.processes import PrivateLibvirtd
from tests.processes import stop_pid
from tests.processes import test_cache
from tests.processes import wait_for

MASAKARI_MONITORS = 'masakari-monitors==22.0.0'
IDLE_SECONDS, IDLE_DOMAINS, BURST, API_DELAY = 30, 8, 10, 0.05
FAILED = (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)


def masakari_monitors() -> pathlib.Path:
    """masakari-instancemonitor, from its own cached virtualenv."""
    version = subprocess.run(['pkg-config', '--modversion', 'libvirt'],
                             capture_output=True, text=True, check=True).stdout.strip()
    venv = test_cache() / f'masakari-monitors-22-libvirt-{version}'
    if not (venv / '.complete').exists():
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
        subprocess.run([str(venv / 'bin' / 'pip'), 'install', '-q',
                        f'libvirt-python=={version}', MASAKARI_MONITORS], check=True)
        (venv / '.complete').touch()
    return venv / 'bin' / 'masakari-instancemonitor'


class FailureClock:
    """libvirt's STOPPED_FAILED events as this process sees them: when."""

    def __init__(self, uri: str) -> None:
        eventloop.start()
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.conn = libvirt.open(uri)
        self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, None)

    def _event(self, _conn, dom, event, detail, _opaque) -> None:
        if (event, detail) == FAILED:
            with self._lock:
                self.seen.setdefault(dom.UUIDString(), time.monotonic())

    def at(self, uuid: str) -> float:
        return wait_for(lambda: self.seen.get(uuid), 15, f'STOPPED_FAILED of {uuid}')


def api_section(identity: fake_keystone.Keystone) -> str:
    return '\n[api]\n' + identity.password_options()


def agent_command(name: str, uri: str, identity, directory: pathlib.Path) -> list[str]:
    config = directory / f'{name}.conf'
    if name == 'masakari-monitors':
        config.write_text(f'[DEFAULT]\nhostname = compute-1\n[libvirt]\n'
                          f'connection_uri = {uri}\n' + api_section(identity))
        return [str(masakari_monitors()), '--config-file', str(config)]
    config.write_text(f'[DEFAULT]\nhostname = compute-1\n'
                      f'state_path = {directory}/state\n'
                      f'[libvirt]\nconnection_uri = {uri}\n[metrics]\nport = 0\n'
                      + api_section(identity))
    return [sys.executable, '-m', 'instancemonitor.cmd.agent', '--config-file',
            str(config)]


def crashes(api: RecoveryAPI, uuids: set[str]) -> dict[str, float]:
    """Arrival of the first STOPPED_FAILED POST of each of ``uuids``."""
    arrived: dict[str, float] = {}
    for request in list(api.requests):
        payload = request.json()['notification']['payload']
        if (payload['instance_uuid'] in uuids and
                payload['vir_domain_event'] == 'STOPPED_FAILED'):
            arrived.setdefault(payload['instance_uuid'], request.received_at)
    return arrived


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def rss_mib(pid: int) -> float:
    status = pathlib.Path(f'/proc/{pid}/status').read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith('VmRSS')) / 1024


def measure(name: str, kills: int, hypervisor: PrivateLibvirtd,
            directory: pathlib.Path) -> dict[str, str]:
    api = RecoveryAPI(token_check=lambda t: identity.is_valid(t)).start()
    identity = fake_keystone.Keystone(
        {'instance-ha': {'public': api.url, 'internal': api.url}}).start()
    clock = FailureClock(hypervisor.uri)
    conn = libvirt.open(hypervisor.uri)
    log = open(directory / f'{name}.log', 'ab')
    agent = subprocess.Popen(agent_command(name, hypervisor.uri, identity, directory),
                             stdout=log, stderr=subprocess.STDOUT)
    tag = name.split('-')[0][:4]
    try:
        time.sleep(5)  # connected (masakari-monitors says nothing when it is)

        def kill(names: list[str]) -> set[str]:
            uuids = {conn.lookupByName(n).UUIDString() for n in names}
            for n in names:
                os.kill(hypervisor.qemu_pid(n), signal.SIGKILL)
            return uuids

        latencies = []
        for i in range(kills):
            guest = f'{tag}-lat-{i}'
            conn.createXML(guest_xml(guest))
            time.sleep(0.3)
            (uuid,) = kill([guest])
            arrived = wait_for(lambda u=uuid: crashes(api, {u}).get(u), 30,
                               f'{name}: the crash of {guest}')
            latencies.append((arrived - clock.at(uuid)) * 1000)

        api.delay = API_DELAY
        names = [f'{tag}-burst-{i}' for i in range(BURST)]
        for guest in names:
            conn.createXML(guest_xml(guest))
        time.sleep(1)
        uuids = kill(names)
        arrived = wait_for(lambda: (lambda a: a if len(a) == BURST else None)(
            crashes(api, uuids)), 30, f'{name}: the burst')
        first_event = min(clock.at(u) for u in uuids)
        burst_ms = (max(arrived.values()) - first_event) * 1000
        api.delay = 0.0

        for i in range(IDLE_DOMAINS):
            conn.createXML(guest_xml(f'{tag}-idle-{i}'))
        time.sleep(2)
        before = cpu_seconds(agent.pid)
        time.sleep(IDLE_SECONDS)
        idle_cpu, rss = cpu_seconds(agent.pid) - before, rss_mib(agent.pid)
        threads = len(os.listdir(f'/proc/{agent.pid}/task'))
    finally:
        stop_pid(agent)
        log.close()
        hypervisor.destroy_guests()
        clock.conn.close()
        conn.close()
        identity.stop()
        api.stop()
    quantiles = statistics.quantiles(latencies, n=100, method='inclusive')
    return {
        'agent-added latency p50 / p99 (ms)':
            f'{statistics.median(latencies):.2f} / {quantiles[98]:.2f}',
        f'{BURST} killed at once, API answering in {API_DELAY * 1000:.0f} ms: '
        'last POST arrives after': f'{burst_ms:.0f} ms',
        f'idle, {IDLE_DOMAINS} domains, {IDLE_SECONDS} s: CPU, RSS, threads':
            f'{idle_cpu:.2f} CPU-s, {rss:.1f} MiB, {threads}',
    }


def main() -> None:
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    hypervisor = PrivateLibvirtd('qemu')
    directory = pathlib.Path(tempfile.mkdtemp(prefix='im-vs-'))
    try:
        hypervisor.start()
        results = {name: measure(name, kills, hypervisor, directory)
                   for name in ('masakari-monitors', 'instancemonitor')}
    finally:
        hypervisor.cleanup()
    print(f'{kills} sequential kills of real QEMU guests (TCG), default '
          f'configurations; {machine()}')
    rows = list(results['instancemonitor'])
    width = max(len(r) for r in rows)
    print(f'{"":{width}}  {"masakari-monitors 22.0.0":>26}  {"instancemonitor":>26}')
    for row in rows:
        print(f'{row:{width}}  {results["masakari-monitors"][row]:>26}  '
              f'{results["instancemonitor"][row]:>26}')


if __name__ == '__main__':
    main()
