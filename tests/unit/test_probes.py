"""Application probes: their state machine, which instances run which probe,
their definitions, and what a run's answer means."""

import base64
import contextlib
import datetime

import pytest

from instancemonitor.domainstate import DomainMachine
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Input
from instancemonitor.domainstate import Observation
from instancemonitor.domainstate import Phase
from instancemonitor.domainstate import Probe
from instancemonitor.events import ProbeCheck
from instancemonitor.events import ProbeOutcome
from instancemonitor.sources import probes
from instancemonitor.sources.probes import ProbeSpec
from instancemonitor.store import SqliteStateStore

T0 = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC)
RECOVERY = ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')
OK, FAIL, GONE = ProbeOutcome.SUCCESS, ProbeOutcome.FAILURE, ProbeOutcome.UNAVAILABLE


class Domain:
    """One domain's record through the machine, as the journal would keep it."""

    def __init__(self, machine: DomainMachine | None = None) -> None:
        self.machine = machine or DomainMachine()
        self.record = DomainRecord(uuid='u', name='vm')
        self.sent: list[tuple[str, str]] = []
        self.changes: list[tuple[str, str]] = []
        self.seconds = 0
        self.feed(Input.START, domain_id=1)

    def feed(self, given: Input, domain_id: int = 1, **fields) -> None:
        self.seconds += 1
        outcome = self.machine.apply(self.record, Observation(
            input=given, at=T0 + datetime.timedelta(seconds=self.seconds),
            domain_id=domain_id, seq=self.seconds, **fields))
        self.record = outcome.record
        self.sent += [pair for pair, _hold, _at in outcome.notify]
        self.changes += [(name, str(status)) for name, status, _ in outcome.probes]

    def probe(self, outcome: ProbeOutcome, name: str = 'web', threshold: int = 3,
              successes: int = 1, recover: bool = True, times: int = 1) -> None:
        for _ in range(times):
            self.feed(Input.PROBE, probe=ProbeCheck(
                name, outcome, threshold, successes, recover, 'out'))

    def state(self, name: str = 'web') -> str:
        return str(self.record.probes.get(name, 'discovery'))


def test_a_healthy_probe_that_fails_the_threshold_is_one_recovery():
    d = Domain()
    d.probe(OK)
    d.probe(FAIL, times=2)
    assert (d.state(), d.sent) == ('failing(2)', [])
    d.probe(FAIL, times=5)
    assert (d.state(), d.sent) == ('reported(3)', [RECOVERY])
    assert (d.record.episode, d.record.episode_by) == ('/'.join(RECOVERY), 'probe:web')
    assert d.changes == [('web', 'healthy'), ('web', 'failing(1)'),
                         ('web', 'failing(2)'), ('web', 'reported(3)')]


def test_healthy_again_ends_its_episode_and_the_next_failure_is_news():
    d = Domain()
    d.probe(OK)
    d.probe(FAIL, times=3)
    d.probe(OK)
    assert (d.state(), d.record.episode) == ('healthy', '')
    d.probe(FAIL, times=3)
    assert d.sent == [RECOVERY, RECOVERY]


def test_success_threshold_counts_successes_in_a_row():
    d = Domain()
    d.probe(OK, successes=2, times=2)
    d.probe(FAIL, times=3, successes=2)
    d.probe(OK, successes=2)
    assert d.state() == 'reported(3)'
    d.probe(OK, successes=2)
    assert (d.state(), d.record.episode) == ('healthy', '')


def test_a_probe_that_never_succeeded_in_the_run_is_never_reported():
    d = Domain()
    d.probe(FAIL, times=10)
    assert (d.state(), d.sent, d.changes) == ('discovery', [], [])


def test_unavailable_is_never_a_failure_and_is_told_once():
    d = Domain()
    d.probe(OK)
    d.probe(GONE, times=5)
    assert (d.state(), d.sent) == ('unavailable', [])
    assert d.changes == [('web', 'healthy'), ('web', 'unavailable')]
    d.probe(FAIL, times=5)  # runs again, and fails: as after a boot
    assert (d.state(), d.sent) == ('discovery', [])


def test_a_reboot_or_a_new_run_returns_every_probe_to_discovery():
    d = Domain()
    d.probe(OK)
    d.probe(OK, name='db')
    d.feed(Input.REBOOT)
    assert d.record.probes == {}
    assert d.changes[-2:] == [('db', 'discovery'), ('web', 'discovery')]
    d.probe(FAIL, times=5)
    assert d.sent == []
    d.probe(OK)
    d.feed(Input.START, domain_id=2)
    assert d.record.probes == {}


def test_one_recovery_per_episode_whatever_saw_it_first():
    d = Domain()
    d.probe(OK)
    d.feed(Input.IO_ERROR_REPORT, pair=('IO_ERROR', 'IO_ERROR_REPORT'))
    d.probe(FAIL, times=3)
    assert d.sent == [('IO_ERROR', 'IO_ERROR_REPORT')]
    # The heartbeat's answers do not end an episode a probe opened.
    e = Domain()
    e.probe(OK)
    e.probe(FAIL, times=3)
    e.feed(Input.PING_OK)
    assert e.record.episode == '/'.join(RECOVERY)
    e.feed(Input.PING_MISS)
    e.probe(FAIL)
    assert e.sent == [RECOVERY]


def test_action_notify_changes_state_and_never_recovers():
    d = Domain()
    d.probe(OK, recover=False)
    d.probe(FAIL, times=3, recover=False)
    assert (d.state(), d.sent, d.record.episode) == ('reported(3)', [], '')


def test_a_probe_of_another_run_or_a_stopped_domain_is_ignored():
    d = Domain()
    d.probe(OK)
    d.feed(Input.PROBE, domain_id=7, probe=ProbeCheck('web', FAIL, 1))
    assert d.state() == 'healthy'
    d.feed(Input.STOP, pair=None)
    assert d.record.phase is Phase.SHUTOFF
    d.feed(Input.PROBE, probe=ProbeCheck('web', FAIL, 1))
    assert d.sent == []


def test_probe_states_survive_a_restart_of_the_agent(tmp_path):
    d = Domain()
    d.probe(OK)
    d.probe(FAIL, times=2)
    d.probe(OK, name='db')
    d.probe(FAIL, times=3)
    state = SqliteStateStore(str(tmp_path))
    state.put(d.record)
    state.close()
    again = SqliteStateStore(str(tmp_path)).get('u')
    assert again.probes == d.record.probes
    assert again.probes['web'].state is Probe.REPORTED
    assert (again.episode, again.episode_by) == ('/'.join(RECOVERY), 'probe:web')


NOVA_XML = """<domain type='kvm'>
  <name>instance-0000002a</name>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>db-1</nova:name>
      <nova:flavor name="db.large"><nova:memory>8192</nova:memory></nova:flavor>
      <nova:owner>
        <nova:user uuid="9f1b">admin</nova:user>
        <nova:project uuid="4c2a7d0e">payments</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="b6a5c3e1-0d2f-4b7a-9c8e-1f2a3b4c5d6e"/>
    </nova:instance>
    {own}
  </metadata>
</domain>"""


def spec(name: str, **fields) -> ProbeSpec:
    return ProbeSpec(name=name, command='/bin/true', **fields)


@pytest.mark.parametrize('rules, runs', [
    ({'match_flavor': ('db.*',)}, True),
    ({'match_flavor': ('web.*', 'db.large')}, True),
    ({'match_flavor': ('web.*',)}, False),
    ({'match_project': ('payments',)}, True),
    ({'match_project': ('4c2a*',)}, True),
    ({'match_image': ('b6a5c3e1-*',)}, True),
    ({'match_name': ('instance-*',)}, True),
    ({'match_flavor': ('db.*',), 'match_project': ('billing',)}, False),  # all
    ({}, False),  # no rule: only where the metadata names it
])
def test_rules_match_novas_metadata(rules, runs):
    configured = {'db': spec('db', **rules)}
    found = probes.domain_probes(NOVA_XML.format(own=''), configured)
    assert [s.name for s in found] == (['db'] if runs else [])


def test_rules_match_the_domain_name_where_there_is_no_nova():
    xml = "<domain><name>app-7</name></domain>"
    configured = {'app': spec('app', match_name=('app-*',)),
                  'db': spec('db', match_flavor=('*',))}
    assert [s.name for s in probes.domain_probes(xml, configured)] == ['app']


def test_the_domains_own_metadata_overrides_the_rules():
    own = f"""<probes xmlns="{probes.PROBES_NS}">
      <probe name="db" period="30"/>
      <probe name="app" command="/usr/bin/test" timeout="2" failure_threshold="2"
             action="notify"><arg>-f</arg><arg>/run/app-ok</arg></probe>
      <probe name="broken" period="soon" command="/bin/true"/>
      <probe name="relative" command="test"/>
    </probes>"""
    configured = {'db': spec('db', match_flavor=('db.*',), period=10.0),
                  'web': spec('web', match_flavor=('*',))}
    found = probes.domain_probes(NOVA_XML.format(own=own), configured)
    assert [s.name for s in found] == ['db', 'app']  # not web: the metadata says
    db, app = found
    assert (db.command, db.period) == ('/bin/true', 30.0)
    assert (app.command, app.args, app.timeout, app.failure_threshold,
            app.recover) == ('/usr/bin/test', ('-f', '/run/app-ok'), 2.0, 2, False)
    # An empty element: no probe at all on this instance.
    none = NOVA_XML.format(own=f'<probes xmlns="{probes.PROBES_NS}"/>')
    assert probes.domain_probes(none, configured) == []


def _status(code: int | None = 0, out: bytes = b'', err: bytes = b'',
            signal: int | None = None) -> dict:
    status = {'exited': True, 'out-data': base64.b64encode(out).decode(),
              'err-data': base64.b64encode(err).decode()}
    if code is not None:
        status['exitcode'] = code
    if signal is not None:
        status['signal'] = signal
    return status


def test_exit_status_zero_is_success_and_output_is_kept_to_a_kib():
    assert probes._outcome(_status(0, b'ok\n')) == (OK, 'ok')
    outcome, text = probes._outcome(_status(1, b'x' * 5000))
    assert outcome is FAIL and text.startswith('exit status 1: xxx')
    assert len(text) <= len('exit status 1: ') + probes.OUTPUT_LIMIT
    assert probes._outcome(_status(None, signal=9)) == (FAIL, 'killed by signal 9')
    assert probes._outcome(_status(2, err=b'no such file')) == (
        FAIL, 'exit status 2: no such file')


class StandInDomain:
    """What the Prober asks of a virDomain."""

    def __init__(self, xml: str, domain_id: int = 3) -> None:
        self.xml, self.domain_id = xml, domain_id

    def UUIDString(self) -> str:
        return 'u'

    def ID(self) -> int:
        return self.domain_id

    def name(self) -> str:
        return 'app-1'

    def XMLDesc(self, _flags: int) -> str:
        return self.xml


class StandInConnection:
    def __init__(self, *domains: StandInDomain) -> None:
        self.domains = list(domains)

    def listAllDomains(self, _flags: int) -> list[StandInDomain]:
        return self.domains


class AtOnce:
    """An executor that runs what it is given at once, in the caller."""

    def submit(self, fn, *args):
        fn(*args)


class Runner:
    def __init__(self) -> None:
        self.runs: list[str] = []

    def run(self, _domain, spec):
        self.runs.append(spec.name)
        return ProbeOutcome.SUCCESS, 'fine'


def prober_with(domain: StandInDomain, resumed=lambda *_: False):
    published, runner = [], Runner()
    prober = probes.Prober(published.append,
                           lambda: contextlib.nullcontext(StandInConnection(domain)),
                           {'app': spec('app', match_name=('app-*',),
                                        initial_delay=30.0)},
                           AtOnce(), runner=runner, resumed=resumed)
    return prober, runner, published


def test_a_probe_waits_its_initial_delay_unless_the_journal_had_it_running():
    domain = StandInDomain('<domain><name>app-1</name></domain>')
    prober, runner, _ = prober_with(domain)
    assert prober.round() == probes.SCAN_INTERVAL  # looks again in a second
    assert runner.runs == []
    # After an agent restart the journal still has it healthy in this run.
    prober, runner, published = prober_with(domain, resumed=lambda u, i, n: (
        (u, i, n) == ('u', 3, 'app')))
    prober.round()
    assert runner.runs == ['app']
    (event,) = published
    assert (event.kind.value, event.probe, event.check.outcome, event.check.output,
            event.domain_id) == ('PROBE_RESULT', 'app', OK, 'fine', 3)


def test_metadata_changes_are_read_again_and_a_reboot_restarts_the_delay():
    from instancemonitor.events import DomainEvent
    from instancemonitor.events import EventKind

    domain = StandInDomain('<domain><name>app-1</name></domain>')
    prober, runner, _ = prober_with(domain)
    prober.round()
    domain.xml = NOVA_XML.replace('instance-0000002a', 'app-1').format(own=(
        f'<probes xmlns="{probes.PROBES_NS}"><probe name="now" command="/bin/true" '
        'initial_delay="0"/></probes>'))
    prober.round()
    assert runner.runs == []  # not read again without a metadata change
    prober.on_event(DomainEvent(EventKind.METADATA_CHANGE, 'u', 'app-1'))
    prober.round()
    assert runner.runs == ['now']
    prober.on_event(DomainEvent(EventKind.REBOOT, 'u', 'app-1'))
    prober.round()  # due again at once: its initial delay is 0
    assert runner.runs == ['now', 'now']


class StandInAgent:
    """libvirt's guest agent passthrough, answering as qemu-ga would."""

    def __init__(self, *statuses: dict, error: str = '') -> None:
        self.statuses = list(statuses)
        self.error = error
        self.commands: list[dict] = []

    def __call__(self, _domain, command: str, timeout: int, flags: int) -> str:
        import json

        import libvirt
        request = json.loads(command)
        self.commands.append(request)
        assert timeout >= 1 and flags == 0
        if self.error:
            raise libvirt.libvirtError(self.error)
        if request['execute'] == 'guest-exec':
            return json.dumps({'return': {'pid': 42}})
        if request['execute'] == 'guest-ping':
            return json.dumps({'return': {}})
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return json.dumps({'return': status})


def test_the_runner_polls_guest_exec_status_until_the_program_exits():
    agent = StandInAgent({'exited': False}, {'exited': False}, _status(0, b'up'))
    runner = probes.GuestAgentProbe(sleep=lambda _s: None, agent_command=agent)
    assert runner.run(None, spec('app', args=('-q',))) == (OK, 'up')
    assert agent.commands[0] == {'execute': 'guest-exec', 'arguments': {
        'path': '/bin/true', 'arg': ['-q'], 'capture-output': True}}
    assert [c['execute'] for c in agent.commands[1:]] == ['guest-exec-status'] * 3
    assert {c['arguments']['pid'] for c in agent.commands[1:]} == {42}


def test_the_runner_gives_up_at_the_timeout_and_says_unavailable_for_agent_errors():
    runner = probes.GuestAgentProbe(agent_command=StandInAgent({'exited': False}))
    assert runner.run(None, spec('app', timeout=1.0)) == (FAIL, 'no exit within 1 s')
    blocked = probes.GuestAgentProbe(agent_command=StandInAgent(
        error='The command guest-exec has been disabled for this instance'))
    outcome, why = blocked.run(None, spec('app'))
    assert (outcome, 'guest-exec has been disabled' in why) == (GONE, True)
    ping = probes.GuestAgentProbe(agent_command=StandInAgent())
    assert ping.run(None, ProbeSpec(name='p', type='ping')) == (OK, '')
