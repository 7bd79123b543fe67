"""instancemonitor side by side with masakari-monitors, on real QEMU guests.

Each agent runs with its default configuration (only what must be set: the
host name, the libvirt URI, the Keystone login, and for instancemonitor a
state directory and metrics off), against the same private libvirtd (the
e2e tier's, QEMU under TCG; the guests' firmware halts their CPU, see
HALT_ROM) and a loopback recovery API behind a Keystone stand-in. This
process also listens to libvirt's events: agent-added latency is from its
STOPPED_FAILED callback to the POST's arrival at the API, on one monotonic
clock.

In turn, each agent alone: latency, bursts of 10 and 100 guests killed at
once with the API answering in 50 ms, idle CPU and memory. Then both at
once, each with its own API: 3 guests killed during a 2-minute API outage
(connections refused), and 3 persistent guests killed while libvirtd is
down; what reached each API afterwards.

masakari-monitors is installed from PyPI into a cached virtualenv, with
libvirt-python pinned to the host's libvirt. Root is needed (the private
libvirtd). Under five minutes with 30 kills (the default); the time of
each phase is printed to standard error.

    python -m bench.vs_masakari_monitors [KILLS]
"""

import concurrent.futures
import contextlib
import itertools
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

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
AGENTS = ('masakari-monitors', 'instancemonitor')
IDLE_SECONDS, IDLE_DOMAINS, BURSTS, API_DELAY = 8, 8, (10, 100), 0.05
OUTAGE, GAP_KILLS = 120.0, 3
# The guests' firmware: cli; hlt at the reset vector. A guest idling in
# SeaBIOS under TCG took 0.44 CPU-seconds of QEMU to start and 1.5 % of a
# core after; halted, 0.25 and 0.3 %, so the 200 guests of the bursts leave
# the two cores to the agents measured (as idle guests on KVM do).
HALT_ROM = bytes(0xFFF0) + b'\xfa\xf4\xeb\xfd' + bytes(12)
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


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def rss_mib(pid: int) -> float:
    status = pathlib.Path(f'/proc/{pid}/status').read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith('VmRSS')) / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size: shared libraries counted once across processes."""
    rollup = pathlib.Path(f'/proc/{pid}/smaps_rollup').read_text()
    return next(int(line.split()[1]) for line in rollup.splitlines()
                if line.startswith('Pss:')) / 1024


class Stack:
    """One agent's recovery API (restartable on its port) and Keystone."""

    def __init__(self) -> None:
        self.api = RecoveryAPI(token_check=self._valid).start()
        self.identity = fake_keystone.Keystone(
            {'instance-ha': {'public': self.api.url, 'internal': self.api.url}}).start()
        self._port = self.api._server.port
        # Every POST, across restarts of the API.
        self._earlier: list = []

    def _valid(self, token: str | None) -> bool:
        return self.identity.is_valid(token)

    def requests(self) -> list:
        return self._earlier + list(self.api.requests)

    def down(self) -> None:
        self._earlier += list(self.api.requests)
        self.api.stop()

    def up(self) -> None:
        self.api = RecoveryAPI(token_check=self._valid, port=self._port).start()

    def stop(self) -> None:
        self.identity.stop()
        self.api.stop()


def crashes(stack: Stack, uuids: set[str]) -> dict[str, float]:
    """Arrival of the first STOPPED_FAILED POST of each of ``uuids``."""
    arrived: dict[str, float] = {}
    for request in stack.requests():
        payload = request.json()['notification']['payload']
        if (payload['instance_uuid'] in uuids and
                payload['vir_domain_event'] == 'STOPPED_FAILED'):
            arrived.setdefault(payload['instance_uuid'], request.received_at)
    return arrived


class Bench:
    def __init__(self, hypervisor: PrivateLibvirtd, directory: pathlib.Path) -> None:
        self.hypervisor = hypervisor
        self.directory = directory
        self.clock = FailureClock(hypervisor.uri)
        self.conn = libvirt.open(hypervisor.uri)
        self._runs = itertools.count()
        # (what, seconds it took), printed after the table.
        self.phases: list[tuple[str, float]] = []
        self._rom = directory / 'halt.rom'
        self._rom.write_bytes(HALT_ROM)

    def start(self, stacks: dict[str, Stack]) -> dict[str, subprocess.Popen]:
        """The agents of ``stacks``, once each has connected to libvirtd."""
        connections = self._clients()
        agents = {}
        for name, stack in stacks.items():
            run = self.directory / f'{name}-{next(self._runs)}'
            run.mkdir()
            with open(run / 'agent.log', 'ab') as log:
                agents[name] = subprocess.Popen(
                    agent_command(name, self.hypervisor.uri, stack.identity, run),
                    stdout=log, stderr=subprocess.STDOUT)
        # masakari-monitors logs nothing when it has connected: libvirtd's
        # sockets tell, and a second more covers registering the callbacks.
        wait_for(lambda: self._clients() >= connections + len(agents), 30,
                 f'{", ".join(agents)} connected to libvirtd')
        time.sleep(1)
        return agents

    @contextlib.contextmanager
    def phase(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases.append((what, time.monotonic() - started))

    def _clients(self) -> int:
        """Open sockets of libvirtd: one per client connection, and its own."""
        count = 0
        for fd in pathlib.Path(f'/proc/{self.hypervisor.process.pid}/fd').iterdir():
            with contextlib.suppress(FileNotFoundError):  # closed meanwhile
                count += os.readlink(fd).startswith('socket:')
        return count

    def guests(self, names: list[str], persistent: bool = False) -> list[str]:
        """Start guests, a few at a time (libvirtd starts QEMUs in parallel);
        their UUIDs, in the order of ``names``."""
        def start(name: str) -> str:
            xml = guest_xml(name, os_extra=f"<loader type='rom'>{self._rom}</loader>")
            if persistent:
                dom = self.conn.defineXML(xml)
                dom.create()
            else:
                dom = self.conn.createXML(xml)
            return dom.UUIDString()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(start, names))

    def clear(self) -> None:
        """Destroy (and undefine) every guest, a few at a time."""
        def destroy(dom: libvirt.virDomain) -> None:
            for action in (dom.destroy, dom.undefine):
                with contextlib.suppress(libvirt.libvirtError):
                    action()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(destroy, self.conn.listAllDomains()))
        self.hypervisor.destroy_guests()  # what is left, by pid

    def kill(self, names: list[str]) -> None:
        for name in names:
            os.kill(self.hypervisor.qemu_pid(name), signal.SIGKILL)

    def burst(self, name: str, stack: Stack, count: int, pid: int) -> str:
        names = [f'{name[:4]}-burst{count}-{i}' for i in range(count)]
        uuids = set(self.guests(names))
        time.sleep(1 + count / 50)
        threads, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.005):
                threads[0] = max(threads[0], len(os.listdir(f'/proc/{pid}/task')))
        sampler = threading.Thread(target=sample)
        sampler.start()
        self.kill(names)
        try:
            arrived = wait_for(lambda: (lambda a: a if len(a) == count else None)(
                crashes(stack, uuids)), 60, f'{name}: the burst of {count}')
        finally:
            done.set()
            sampler.join()
        events = {u: self.clock.at(u) for u in uuids}
        first = min(events.values())
        last_post = (max(arrived.values()) - first) * 1000
        last_event = (max(events.values()) - first) * 1000
        added = max(arrived[u] - events[u] for u in uuids) * 1000
        self.clear()
        return (f'{last_post:.0f} ms ({last_event:.0f}; {added:.0f}), '
                f'{threads[0]} threads')

    def alone(self, name: str, kills: int) -> dict[str, str]:
        """One agent on its own: latency, bursts, idle."""
        stack = Stack()
        agent = self.start({name: stack})[name]
        try:
            latencies = []
            with self.phase(f'{name}: {kills} kills one at a time'):
                # Started together (each takes about a second to start, a
                # fraction of it CPU); then killed one at a time.
                names = [f'{name[:4]}-lat-{i}' for i in range(kills)]
                uuids = self.guests(names)
                time.sleep(1)  # their start seen
                for guest, uuid in zip(names, uuids, strict=True):
                    time.sleep(0.3)
                    self.kill([guest])
                    arrived = wait_for(lambda u=uuid: crashes(stack, {u}).get(u), 30,
                                       f'{name}: the crash of {guest}')
                    latencies.append((arrived - self.clock.at(uuid)) * 1000)
            print(f'{name}: agent-added ms, kill by kill: ' +
                  ' '.join(f'{ms:.2f}' for ms in latencies), file=sys.stderr)
            with self.phase(f'{name}: idle'):
                self.guests([f'{name[:4]}-idle-{i}' for i in range(IDLE_DOMAINS)])
                time.sleep(2)
                before = cpu_seconds(agent.pid)
                time.sleep(IDLE_SECONDS)
                idle_cpu = cpu_seconds(agent.pid) - before
                rss, pss = rss_mib(agent.pid), pss_mib(agent.pid)
                threads = len(os.listdir(f'/proc/{agent.pid}/task'))
                self.clear()
            stack.api.delay = API_DELAY
            bursts = {}
            for count in BURSTS:
                with self.phase(f'{name}: {count} at once'):
                    bursts[count] = self.burst(name, stack, count, agent.pid)
        finally:
            stop_pid(agent)
            self.clear()
            stack.stop()
        quantiles = statistics.quantiles(latencies, n=100, method='inclusive')
        rows = {'agent-added latency p50 / p99 (ms)':
                f'{statistics.median(latencies):.2f} / {quantiles[98]:.2f}'}
        for count, figure in bursts.items():
            rows[f'{count} killed at once, API {API_DELAY * 1000:.0f} ms: last POST '
                 'after the first event (last event; most agent-added), peak '
                 'threads'] = figure
        rows[f'idle, {IDLE_DOMAINS} domains, {IDLE_SECONDS} s: CPU-s, RSS / PSS '
             'MiB, threads'] = f'{idle_cpu:.2f}, {rss:.1f} / {pss:.1f}, {threads}'
        return rows

    def together(self) -> dict[str, dict[str, str]]:
        """Both agents at once, each with its own API: failures during an API
        outage, then during a libvirtd gap; what each API got."""
        stacks = {name: Stack() for name in AGENTS}
        agents = self.start(stacks)
        rows: dict[str, dict[str, str]] = {name: {} for name in AGENTS}
        try:
            with self.phase('both: the API outage'):
                names = [f'outage-{i}' for i in range(GAP_KILLS)]
                uuids = set(self.guests(names, persistent=True))
                time.sleep(1)
                for stack in stacks.values():
                    stack.down()
                down_at = time.monotonic()
                time.sleep(1)
                self.kill(names)
                time.sleep(OUTAGE - (time.monotonic() - down_at))
                for stack in stacks.values():
                    stack.up()
                self._settle(stacks, uuids)
                for name in AGENTS:
                    rows[name][f'{GAP_KILLS} killed during a {OUTAGE / 60:.0f}-minute '
                               'API outage: reported after it'] = self._reported(
                                   stacks[name], uuids, agents[name])
                self.clear()
            with self.phase('both: the libvirtd gap'):
                names = [f'gap-{i}' for i in range(GAP_KILLS)]
                uuids = set(self.guests(names, persistent=True))
                time.sleep(1)
                pids = [self.hypervisor.qemu_pid(n) for n in names]
                self.hypervisor.kill()
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(2)
                self.hypervisor.start()
                self._settle(stacks, uuids, most=8.0)
                for name in AGENTS:
                    rows[name][f'{GAP_KILLS} killed while libvirtd was down: '
                               'reported after it returned'] = self._reported(
                                   stacks[name], uuids, agents[name])
        finally:
            for agent in agents.values():
                stop_pid(agent)
            self.hypervisor.destroy_guests()
            for stack in stacks.values():
                stack.stop()
        return rows

    @staticmethod
    def _settle(stacks: dict[str, Stack], uuids: set[str], most: float = 15.0) -> None:
        """Until every agent's API has all of ``uuids``, or ``most`` seconds
        (after an outage: one retry interval of both agents' defaults, and
        then some; after a libvirtd gap: a reconnection and a scan)."""
        deadline = time.monotonic() + most
        while time.monotonic() < deadline and any(
                len(crashes(stack, uuids)) < len(uuids) for stack in stacks.values()):
            time.sleep(0.2)
        time.sleep(1)  # a duplicate, if one comes

    @staticmethod
    def _reported(stack: Stack, uuids: set[str], agent: subprocess.Popen) -> str:
        figure = f'{len(crashes(stack, uuids))} of {len(uuids)}'
        return figure if agent.poll() is None else f'{figure} (agent exited)'

    def close(self) -> None:
        for conn in (self.clock.conn, self.conn):  # libvirtd was restarted
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()


def main() -> None:
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    hypervisor = PrivateLibvirtd('qemu')
    directory = pathlib.Path(tempfile.mkdtemp(prefix='im-vs-'))
    started = time.monotonic()
    try:
        hypervisor.start()
        bench = Bench(hypervisor, directory)
        try:
            results = {name: bench.alone(name, kills) for name in AGENTS}
            for name, rows in bench.together().items():
                results[name].update(rows)
        finally:
            bench.close()
    finally:
        hypervisor.cleanup()
    print(f'{kills} sequential kills of real QEMU guests (TCG), default '
          f'configurations; {machine()}; {time.monotonic() - started:.0f} s; '
          f'logs in {directory}')
    for what, seconds in bench.phases:
        print(f'  {what}: {seconds:.0f} s', file=sys.stderr)
    rows = list(results['instancemonitor'])
    width = max(len(r) for r in rows)
    print(f'{"":{width}}  {"masakari-monitors 22.0.0":>26}  {"instancemonitor":>26}')
    for row in rows:
        print(f'{row:{width}}  {results["masakari-monitors"].get(row, "-"):>26}  '
              f'{results["instancemonitor"][row]:>26}')


if __name__ == '__main__':
    main()
