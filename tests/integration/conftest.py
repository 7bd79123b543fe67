import libvirt
import pytest

from instancemonitor.service import AgentService
from tests.processes import AgentProcess
from tests.processes import PrivateLibvirtd


@pytest.fixture
def start_agent(make_conf, recovery_api, tmp_path):
    """Start the agent in this process, through libvirt's real event loop."""
    agents = []

    def start(uri: str = 'test:///default', config_files: list[str] | None = None,
              **groups: dict) -> AgentService:
        groups.setdefault('DEFAULT', {}).setdefault('state_path',
                                                    str(tmp_path / 'state'))
        groups.setdefault('api', {}).setdefault('endpoint', recovery_api.url)
        groups.setdefault('callback', {}).setdefault('retry_interval', 0.1)
        groups.setdefault('libvirt', {}).setdefault('connection_uri', uri)
        groups.setdefault('DEFAULT', {}).setdefault('hostname', 'compute-1')
        groups.setdefault('metrics', {}).setdefault('port', 0)
        agent = AgentService(make_conf(config_files, **groups))
        agents.append(agent)
        agent.start()
        assert agent.connection.wait_connected(10)
        return agent

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def test_libvirtd():
    """A private libvirtd serving the test driver on a unix socket."""
    daemon = PrivateLibvirtd()
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()  # by pid, even when it failed to start


@pytest.fixture
def agent_process(tmp_path):
    """Start ``instancemonitor`` processes; every one is stopped by pid after
    the test, passed or failed."""
    agents = []

    def start(config: str, **options) -> AgentProcess:
        agent = AgentProcess(config, tmp_path)
        agents.append(agent)
        return agent.start(**options)

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def client():
    """Open libvirt connections for the test's own actions; closed after."""
    conns = []

    def open_(uri: str) -> libvirt.virConnect:
        conns.append(libvirt.open(uri))
        return conns[-1]

    yield open_
    for conn in conns:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass
