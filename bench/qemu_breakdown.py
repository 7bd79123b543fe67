"""Where the detection path's time goes on real QEMU, by stage.

The setup of ``bench.vs_masakari_monitors`` (a private libvirtd, TCG guests,
a loopback recovery API behind a Keystone stand-in, instancemonitor's
default configuration), with the agent run as ``bench.marked_agent``, which
notes when each stage of the path began on the host's monotonic clock.
KILLS guests are killed one at a time; for each stage, milliseconds after
libvirt's STOPPED_FAILED as another client of the same libvirtd sees it
(p50, p90, max). Then again with a recovery API that closes each
connection after its answer, as a web server in front of the API does to
one idle for longer than its keep-alive timeout (seconds; failures come
further apart): each POST has its connection opened first. Then the kills
with ``bench.floor_agent`` in the agent's place, on a kept-alive
connection: the POST's arrival with no code of the agent's, the least a
durable agent on these packages adds. Root is needed (the private
libvirtd); about two and a half minutes.

    python -m bench.qemu_breakdown [KILLS]
"""

import ast
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from bench import marked_agent
from bench.common import machine
from bench.vs_masakari_monitors import Bench
from bench.vs_masakari_monitors import Stack
from bench.vs_masakari_monitors import agent_command
from bench.vs_masakari_monitors import crashes
from tests.fakes import keystone as fake_keystone
from tests.processes import PrivateLibvirtd
from tests.processes import stop_pid
from tests.processes import wait_for

ARRIVED = 'the POST arrives at the API'
FLOOR = 'bench.floor_agent'


def _marks(path: pathlib.Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return [ast.literal_eval(line) for line in path.read_text().splitlines()]


def floor_command(bench: Bench, stack: Stack, directory: pathlib.Path) -> list[str]:
    return [sys.executable, '-m', 'bench.floor_agent', bench.hypervisor.uri,
            stack.identity.auth_url, fake_keystone.USERNAME,
            fake_keystone.PASSWORD, fake_keystone.PROJECT,
            str(directory / 'floor.sqlite')]


def run(bench: Bench, stack: Stack, directory: pathlib.Path, kills: int,
        floor: bool = False) -> list[dict[str, float]]:
    """Each kill's row: ms after STOPPED_FAILED of each stage (the floor
    agent marks none) and of the POST's arrival."""
    marks = directory / 'marks'
    if floor:
        command = floor_command(bench, stack, directory)
    else:
        command = agent_command('instancemonitor', bench.hypervisor.uri,
                                stack.identity, directory)
        command[1:3] = ['-m', 'bench.marked_agent']
    log_path = directory / ('floor.log' if floor else 'agent.log')
    with open(log_path, 'ab') as log:
        agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, MARKS=str(marks)))
    rows = []
    try:
        wait_for(lambda: 'Connected to libvirt' in
                 log_path.read_text(errors='replace'), 15, f'{command[2]} connected')
        for i in range(kills):
            guest = f'breakdown-{"floor-" if floor else ""}{i}'
            (uuid,) = bench.guests([guest])
            time.sleep(0.3)
            before = len(_marks(marks))
            bench.kill([guest])
            arrived = wait_for(lambda u=uuid: crashes(stack, {u}).get(u), 30,
                               f'the crash of {guest}')
            failed = bench.clock.at(uuid)
            row = {ARRIVED: (arrived - failed) * 1000}
            if not floor:
                wait_for(lambda n=before: len(_marks(marks)) > n, 5, 'its marks')
                row.update((stage, (at - failed) * 1000)
                           for stage, at in _marks(marks)[before].items())
            rows.append(row)
            bench.clear()
    finally:
        stop_pid(agent)
    return rows


def _figures(values: list[float]) -> str:
    if len(values) < 2:  # a sender's stages are not on every path
        return f'{"":20s}'
    p90 = statistics.quantiles(values, n=10, method='inclusive')[-1]
    return f'{statistics.median(values):6.2f} {p90:6.2f} {max(values):6.2f}'


def main() -> None:
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    hypervisor = PrivateLibvirtd('qemu')
    directory = pathlib.Path(tempfile.mkdtemp(prefix='im-breakdown-'))
    try:
        hypervisor.start()
        bench = Bench(hypervisor, directory)
        stack = Stack()
        try:
            kept = run(bench, stack, directory, kills)
            stack.api.keep_alive = False
            closed = run(bench, stack, directory, kills)
            stack.api.keep_alive = True
            floor = run(bench, stack, directory, kills, floor=True)
        finally:
            stack.stop()
            bench.close()
    finally:
        hypervisor.cleanup()
    print(f'# {machine()}; {kills} guests killed one at a time; ms after '
          f'libvirt\'s STOPPED_FAILED; logs in {directory}')
    print(f'{"":45s} {"kept-alive connection":^20s}  {"closed after each answer":^20s}')
    print(f'{"":45s}' + f' {"p50":>6} {"p90":>6} {"max":>6} ' * 2)
    for stage in marked_agent.NAMES + [ARRIVED]:
        columns = [[row[stage] for row in rows if stage in row]
                   for rows in (kept, closed)]
        if any(len(values) > 1 for values in columns):
            # A sender's stages are not on every kill's path.
            counts = '/'.join(str(len(values)) for values in columns)
            print(f'{stage:45s} {_figures(columns[0])}  {_figures(columns[1])}' +
                  (f'  ({counts} of {kills})' if counts != f'{kills}/{kills}' else ''))
    print(f'{f"floor ({FLOOR}): the POST arrives":45s} '
          f'{_figures([row[ARRIVED] for row in floor])}')


if __name__ == '__main__':
    main()
