"""The end-to-end tier: a private libvirtd running real QEMU guests (TCG)."""

import uuid

import libvirt
import pytest

from tests.processes import AgentProcess
from tests.processes import PrivateLibvirtd


def guest_xml(name: str, devices: str = '', memory_mib: int = 64,
              os_extra: str = '<boot dev="hd"/>', features: str = '',
              qemu_args: tuple[str, ...] = ()) -> str:
    """A TCG guest; with no disk and no OS it idles in SeaBIOS (~40 MiB).
    ``qemu_args`` are added to QEMU's command line."""
    if qemu_args:
        features += '<qemu:commandline>' + ''.join(
            f"<qemu:arg value='{arg}'/>" for arg in qemu_args) + '</qemu:commandline>'
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name><uuid>{uuid.uuid4()}</uuid>
  <memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{os_extra}</os>
  {features}
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
    {devices}
  </devices>
</domain>"""


@pytest.fixture(scope='session')
def qemu_libvirtd():
    daemon = PrivateLibvirtd('qemu')
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()  # guests and libvirtd, by pid, even when start failed


@pytest.fixture(scope='session')
def qemu_virtqemud():
    """The modular QEMU daemon, as Fedora, RHEL 9 and upstream deploy it."""
    daemon = PrivateLibvirtd('qemu', daemon='virtqemud')
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


# For the core scenarios: run them on the monolithic and the modular daemon.
BOTH_DAEMONS = pytest.mark.parametrize('hypervisor', ['libvirtd', 'virtqemud'],
                                       indirect=True)


@pytest.fixture
def hypervisor(request):
    """The session's QEMU daemon, running, with no guest left after the test:
    libvirtd, or the one a ``BOTH_DAEMONS`` parameter names."""
    kind = getattr(request, 'param', 'libvirtd')
    daemon = request.getfixturevalue(
        'qemu_libvirtd' if kind == 'libvirtd' else 'qemu_virtqemud')
    if daemon.process.poll() is not None:
        daemon.start()
    yield daemon
    if daemon.process.poll() is not None:
        daemon.start()
    daemon.destroy_guests()


@pytest.fixture(scope='session')
def second_libvirtd():
    """Another QEMU libvirtd on this machine, a host of its own: the other
    end of live migrations."""
    daemon = PrivateLibvirtd('qemu')
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


@pytest.fixture
def destination(second_libvirtd):
    """The second libvirtd, running, with no guest left after the test."""
    if second_libvirtd.process.poll() is not None:
        second_libvirtd.start()
    yield second_libvirtd
    second_libvirtd.destroy_guests()


@pytest.fixture
def conn(hypervisor):
    c = libvirt.open(hypervisor.uri)
    yield c
    try:
        c.close()
    except libvirt.libvirtError:
        pass


@pytest.fixture
def start_guest(conn):
    """Start a guest: transient, or ``persistent`` (defined) as Nova's are."""
    def start(name: str, devices: str = '', persistent: bool = False,
              **kwargs) -> libvirt.virDomain:
        xml = guest_xml(name, devices, **kwargs)
        if not persistent:
            return conn.createXML(xml)
        dom = conn.defineXML(xml)
        dom.create()
        return dom
    return start


def agent_config(uri: str, endpoint: str, state_path: str,
                 forward: str = 'recovery', hostname: str = 'compute-1',
                 extra: str = '', reconcile_interval: float = 60.0) -> str:
    return f"""
[DEFAULT]
hostname = {hostname}
debug = true
state_path = {state_path}

[libvirt]
connection_uri = {uri}
keepalive_interval = 1
keepalive_count = 3
reconnect_interval = 0.1
reconnect_interval_max = 1
reconcile_interval = {reconcile_interval}

[events]
forward = {forward}
reboot_window = 0.5

[callback]
retry_interval = 0.5

[metrics]
port = 0

[api]
endpoint = {endpoint}
{extra}"""


@pytest.fixture
def start_agent(tmp_path, hypervisor):
    """Start the agent on the session's libvirtd, or on ``uri``; agents of
    different ``name`` have directories (config, log, state) of their own,
    one of the same name starts on the state the last one left."""
    agents = []

    def start(endpoint: str, uri: str = '', name: str = '',
              connected: bool = True, prefix: tuple[str, ...] = (),
              **options) -> AgentProcess:
        """``connected``: wait until it has connected to libvirt;
        ``prefix``: a command that execs the agent."""
        directory = tmp_path / name if name else tmp_path
        directory.mkdir(exist_ok=True)
        agent = AgentProcess(agent_config(uri or hypervisor.uri, endpoint,
                                          str(directory / 'state'), **options),
                             directory).start(prefix)
        agents.append(agent)
        if connected:
            agent.wait_log('Connected to libvirt')
        return agent

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def failing_disk(tmp_path):
    """An NBD disk served by nbdkit whose reads fail with EIO while armed.

    Returns (disk XML for a guest, flag path): errors happen only while the
    flag file exists (nbdkit's error filter, ``error-file``).
    """
    import shutil
    import subprocess

    from tests.processes import skip_or_fail
    from tests.processes import stop_pid
    from tests.processes import wait_for

    if not shutil.which('nbdkit'):
        skip_or_fail('nbdkit is not installed')
    sock, flag = tmp_path / 'nbd.sock', tmp_path / 'errors-on'
    process = subprocess.Popen(
        ['nbdkit', '-f', '--unix', str(sock), '--filter=error', 'memory',
         'size=16M', 'error=EIO', 'error-rate=100%', f'error-file={flag}'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 10, 'nbdkit socket')
    except AssertionError:
        stop_pid(process)
        raise

    def disk(policy: str) -> str:
        # The source must carry name=: without it libvirt 9.0 drops the
        # IO_ERROR events.
        return f"""<disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' error_policy='{policy}'
              rerror_policy='{policy}'/>
      <source protocol='nbd' name='disk0'>
        <host transport='unix' socket='{sock}'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>"""

    yield disk, flag
    stop_pid(process)


@pytest.fixture(scope='session')
def masakari(tmp_path_factory):
    """The real masakari-api with host ``compute-1`` in a failover segment."""
    from tests.e2e.masakari import MasakariAPI

    api = MasakariAPI(tmp_path_factory.mktemp('masakari'))
    try:
        api.start()
        api.register_host('compute-1')
    except BaseException:
        api.stop()
        raise
    yield api
    api.stop()


AGENT_CHANNEL = """<channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>"""


def guest_ping(dom: libvirt.virDomain, timeout: int = 5) -> dict:
    import json

    import libvirt_qemu
    return json.loads(libvirt_qemu.qemuAgentCommand(
        dom, '{"execute": "guest-ping"}', timeout, 0))


@pytest.fixture
def start_agent_guest(conn, tmp_path):
    """Start the tiny qemu-ga guest; return it once its agent answers."""
    from tests.e2e.guest import agent_guest_image
    from tests.processes import wait_for

    kernel, initrd = agent_guest_image()

    def start(name: str, wait_for_agent: bool = True,
              acpi: bool = False) -> libvirt.virDomain:
        """``acpi``: so that a power-off inside the guest ends QEMU (without
        it the kernel only halts)."""
        console = tmp_path / f'{name}.console'
        dom = conn.createXML(guest_xml(
            name, AGENT_CHANNEL + f"""
    <serial type='file'><source path='{console}'/><target port='0'/></serial>""",
            memory_mib=128, features='<features><acpi/></features>' if acpi else '',
            os_extra=f'<kernel>{kernel}</kernel><initrd>{initrd}</initrd>'
                     '<cmdline>console=ttyS0 quiet panic=-1</cmdline>'))

        def answers() -> bool:
            try:
                return guest_ping(dom) == {'return': {}}
            except libvirt.libvirtError:
                return False
        if wait_for_agent:
            try:
                wait_for(answers, 90, f'the guest agent of {name}', interval=0.5)
            except AssertionError:
                text = console.read_text(errors='replace') if console.exists() else ''
                raise AssertionError(
                    f'no agent in {name}; console:\n{text[-3000:]}') from None
        return dom
    return start
