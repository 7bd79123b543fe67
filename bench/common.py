"""What the benchmarks share: the agent in this process on libvirt's test
driver, a loopback receiver that answers in one send (the test tier's
Masakari stand-in, here or in a child process), and figures of this process."""

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import platform
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from collections.abc import Iterator

import libvirt
from oslo_config import cfg
from oslo_log import log as oslo_logging

from instancemonitor import conf as im_conf
from instancemonitor.service import AgentService
from tests.fakes.recovery_api import RecoveryAPI
from tests.processes import wait_for

DOMAIN_XML = ("<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>"
              "<memory>65536</memory><os><type>hvm</type></os></domain>")


def machine() -> str:
    return (f'{os.cpu_count()} cores, Python {platform.python_version()}, '
            f'{platform.system()} {platform.release()}')


def node_xml(count: int, directory: pathlib.Path) -> str:
    """A test:/// URI with ``count`` running domains, each its own copy."""
    path = directory / 'node.xml'
    path.write_text('<node>' + ''.join(
        DOMAIN_XML.format(name=f'bench-{i:05d}', uuid=uuid.uuid4())
        for i in range(count)) + '</node>')
    return f'test://{path}'


def start_agent(uri: str, endpoint: str, config_files: list[str] = (),
                **groups: dict) -> AgentService:
    """The agent with the durable outbox, forwarding every stop at once.

    It logs as the daemon does by default (oslo.log, INFO: a line per
    transition, notification and delivery), to ``instancemonitor.log`` in
    its state directory instead of standard output."""
    conf = cfg.ConfigOpts()
    im_conf.register_opts(conf)
    oslo_logging.register_options(conf)
    conf([arg for path in config_files for arg in ('--config-file', path)],
         project='instancemonitor', default_config_files=[],
         default_config_dirs=[])
    state_path = tempfile.mkdtemp(prefix='im-bench-')
    settings = {
        'DEFAULT': {'hostname': 'compute-1', 'state_path': state_path,
                    'log_file': os.path.join(state_path, 'instancemonitor.log')},
        'libvirt': {'connection_uri': uri},
        'events': {'forward': 'all', 'reboot_window': 0},
        'api': {'endpoint': endpoint},
        'metrics': {'port': 0},
    }
    for group, values in groups.items():
        settings.setdefault(group, {}).update(values)
    for group, values in settings.items():
        for name, value in values.items():
            conf.set_override(name, value, group=None if group == 'DEFAULT' else group)
    oslo_logging.setup(conf, 'instancemonitor')
    agent = AgentService(conf)
    agent.start()
    agent.connection.wait_connected(10)
    return agent


@contextlib.contextmanager
def agent_on_test_driver(
        api: 'RecoveryAPI | ChildRecoveryAPI | None' = None,
) -> Iterator[tuple[AgentService, 'RecoveryAPI | ChildRecoveryAPI',
                    libvirt.virConnect]]:
    """The agent on test:///default, the heartbeat off, with a receiver
    (``api``, started; by default one in this process) and a connection to
    create and destroy domains through; all stopped, and the state
    directory removed, afterwards."""
    api = api or RecoveryAPI().start()
    agent = start_agent('test:///default', api.url,
                        introspectiveinstancemonitor={'enabled': False})
    conn = libvirt.open('test:///default')
    try:
        yield agent, api, conn
    finally:
        conn.close()
        agent.stop()
        api.stop()
        shutil.rmtree(agent.store.path.parent, ignore_errors=True)


def _serve_recovery_api(pipe: multiprocessing.connection.Connection,
                        delay: float) -> None:
    api = RecoveryAPI().start()
    api.delay = delay
    pipe.send(api.url)
    while (command := pipe.recv()) != 'stop':
        if command == 'arrivals':
            pipe.send([r.received_at for r in api.requests])
        else:
            pipe.send(len(api.stored))
    api.stop()


class ChildRecoveryAPI:
    """The Masakari stand-in in a child process, answering after ``delay``
    seconds: its CPU is not counted as the agent's."""

    def __init__(self, delay: float = 0.0) -> None:
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context('spawn').Process(
            target=_serve_recovery_api, args=(child, delay), daemon=True)
        self.url = ''

    def start(self) -> 'ChildRecoveryAPI':
        self._process.start()
        self.url = self._pipe.recv()
        return self

    def stored(self) -> int:
        self._pipe.send('count')
        return self._pipe.recv()

    def arrivals(self) -> list[float]:
        """When each POST of a notification arrived (``time.monotonic()``,
        one clock for every process of the host), in order."""
        self._pipe.send('arrivals')
        return self._pipe.recv()

    def wait_stored(self, count: int, timeout: float) -> None:
        wait_for(lambda: self.stored() >= count, timeout,
                 f'{count} notifications stored', interval=0.005)

    def stop(self) -> None:
        self._pipe.send('stop')
        self._process.join(10)


def rss_mib() -> float:
    with open('/proc/self/status') as status:
        kib = next(int(line.split()[1]) for line in status
                   if line.startswith('VmRSS'))
    return kib / 1024


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def thread_cpu_seconds(wanted: Callable[[str], bool]) -> float:
    """CPU of this process's live threads whose name is ``wanted``
    (Linux: /proc/self/task/TID/schedstat, nanoseconds on a CPU)."""
    total = 0
    for thread in threading.enumerate():
        if wanted(thread.name) and thread.native_id is not None:
            with contextlib.suppress(OSError):
                with open(f'/proc/self/task/{thread.native_id}/schedstat') as stat:
                    total += int(stat.read().split()[0])
    return total / 1e9


def agent_threads() -> int:
    prefixes = ('libvirt-', 'event-dispatch', 'sender-', 'reconcile', 'heartbeat')
    return sum(t.name.startswith(prefixes) for t in threading.enumerate())


__all__ = ['RecoveryAPI', 'ChildRecoveryAPI', 'machine', 'node_xml',
           'start_agent', 'agent_on_test_driver', 'rss_mib', 'cpu_seconds',
           'agent_threads']
