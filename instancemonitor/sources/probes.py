"""Application probes: programs run inside guests through the QEMU guest agent.

``guest-ping`` proves only that qemu-ga answers; a deadlocked database or a
dead web server inside a healthy kernel still answers pings. A probe runs a
program in the guest (``guest-exec``), polls ``guest-exec-status`` until it
exits or its timeout passes, and publishes the outcome as a PROBE_RESULT
event; the per-domain state machine (``domainstate``) counts them and decides
what is a failure, under the same episode rules as a crash.

Which probes run on a domain: the ``[probe:NAME]`` rules matched against
Nova's own domain metadata (``<nova:instance>``) or the domain name, unless
the domain's metadata has a ``<probes>`` element in :data:`PROBES_NS`, which
then says it all (see the README). A METADATA_CHANGE event re-reads it.

Nothing here changes the domain or the guest agent's settings; the only
commands sent are guest-exec, guest-exec-status and guest-ping.
"""

import base64
import concurrent.futures
import dataclasses
import fnmatch
import json
import logging
import math
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

import libvirt
import libvirt_qemu
from oslo_config import cfg

from instancemonitor import clock
from instancemonitor.conf import probes as probes_conf
from instancemonitor.conf.errors import ConfigurationError
from instancemonitor.conf.sections import NAME
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import ProbeCheck
from instancemonitor.events import ProbeOutcome
from instancemonitor.sources.heartbeat import GUEST_PING
from instancemonitor.supervision import PROGRESS_TICK
from instancemonitor.virt.connection import Borrow
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

THREAD_NAME = 'probes'
# This project's namespace in a domain's libvirt metadata.
PROBES_NS = 'urn:instancemonitor:probes:1'
# Nova's (1.0 before Train, 1.1 since).
_NOVA_NS_PREFIX = 'http://openstack.org/xmlns/libvirt/nova/'
OUTPUT_LIMIT = 1024
# How often the prober looks for domains, and the first and longest wait
# between two guest-exec-status polls of one run.
SCAN_INTERVAL = 1.0
POLL_FIRST, POLL_MAX = 0.05, 0.5


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    name: str
    type: str = 'exec'
    command: str = ''
    args: tuple[str, ...] = ()
    period: float = 10.0
    timeout: float = 5.0
    initial_delay: float = 60.0
    failure_threshold: int = 3
    success_threshold: int = 1
    recover: bool = True
    match_flavor: tuple[str, ...] = ()
    match_image: tuple[str, ...] = ()
    match_project: tuple[str, ...] = ()
    match_name: tuple[str, ...] = ()

    def problem(self) -> tuple[str, str] | None:
        """(option, what is wrong), or None if the definition can run."""
        if self.type not in ('exec', 'ping'):
            return 'type', f'{self.type!r} is not exec or ping'
        if self.type == 'exec' and not self.command.startswith('/'):
            return 'command', 'an absolute path is required with type = exec'
        if self.timeout > self.period:
            return 'timeout', (f'{self.timeout:g} s is longer than the period '
                               f'({self.period:g} s)')
        for option in ('period', 'timeout'):
            if getattr(self, option) < 1:
                return option, 'at least 1 s'
        for option in ('failure_threshold', 'success_threshold'):
            if getattr(self, option) < 1:
                return option, 'at least 1'
        if self.initial_delay < 0:
            return 'initial_delay', 'not negative'
        return None

    def check(self, outcome: ProbeOutcome, output: str) -> ProbeCheck:
        return ProbeCheck(self.name, outcome, self.failure_threshold,
                          self.success_threshold, self.recover,
                          output[:OUTPUT_LIMIT])


def configured_probes(conf: cfg.ConfigOpts) -> dict[str, ProbeSpec]:
    """The ``[probe:NAME]`` definitions; ConfigurationError names a bad one."""
    specs = {}
    for section in probes_conf.register_probes(conf):
        opts = conf[section]
        spec = ProbeSpec(
            name=section.removeprefix(probes_conf.SECTION_PREFIX), type=opts.type,
            command=opts.command or '', args=tuple(opts.args),
            period=opts.period, timeout=opts.timeout,
            initial_delay=opts.initial_delay,
            failure_threshold=opts.failure_threshold,
            success_threshold=opts.success_threshold,
            recover=opts.action == 'recover',
            match_flavor=tuple(opts.match_flavor),
            match_image=tuple(opts.match_image),
            match_project=tuple(opts.match_project),
            match_name=tuple(opts.match_name))
        if problem := spec.problem():
            raise ConfigurationError(f'[{section}] {problem[0]}: {problem[1]}')
        specs[spec.name] = spec
    return specs


@dataclasses.dataclass(frozen=True)
class Instance:
    """What the rules match: the domain name and Nova's metadata of it."""

    name: str
    flavor: str = ''
    image: str = ''
    project_id: str = ''
    project_name: str = ''


def _any(patterns: tuple[str, ...], *values: str) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern)
               for pattern in patterns for value in values if value)


def matches(spec: ProbeSpec, instance: Instance) -> bool:
    """Every rule the probe has matches; a probe with no rule matches none."""
    rules = ((spec.match_flavor, (instance.flavor,)),
             (spec.match_image, (instance.image,)),
             (spec.match_project, (instance.project_id, instance.project_name)),
             (spec.match_name, (instance.name,)))
    given = [(patterns, values) for patterns, values in rules if patterns]
    return bool(given) and all(_any(patterns, *values) for patterns, values in given)


def _nova_instance(metadata: ElementTree.Element | None, name: str) -> Instance:
    if metadata is None:
        return Instance(name)
    for element in metadata:
        if element.tag.startswith('{' + _NOVA_NS_PREFIX) and \
                element.tag.endswith('}instance'):
            ns = element.tag[1:element.tag.index('}')]
            flavor = element.find(f'{{{ns}}}flavor')
            project = element.find(f'{{{ns}}}owner/{{{ns}}}project')
            root = element.find(f'{{{ns}}}root')
            return Instance(
                name, flavor=flavor.get('name', '') if flavor is not None else '',
                image=root.get('uuid', '') if root is not None else '',
                project_id=project.get('uuid', '') if project is not None else '',
                project_name=(project.text or '').strip() if project is not None
                else '')
    return Instance(name)


_METADATA_NUMBERS = {'period': float, 'timeout': float, 'initial_delay': float,
                     'failure_threshold': int, 'success_threshold': int}


def _metadata_spec(probe: ElementTree.Element,
                   configured: dict[str, ProbeSpec]) -> ProbeSpec:
    """One ``<probe>`` of a domain's metadata; ValueError says what is wrong."""
    name = probe.get('name', '')
    if not NAME.fullmatch(name):
        raise ValueError(f'name: {name!r} is not a valid probe name')
    changes: dict = {attribute: convert(probe.get(attribute))
                     for attribute, convert in _METADATA_NUMBERS.items()
                     if attribute in probe.attrib}
    for attribute in ('type', 'command'):
        if attribute in probe.attrib:
            changes[attribute] = probe.get(attribute)
    if 'action' in probe.attrib:
        if probe.get('action') not in ('recover', 'notify'):
            raise ValueError('action: recover or notify')
        changes['recover'] = probe.get('action') == 'recover'
    args = [arg.text or '' for arg in probe.iterfind(f'{{{PROBES_NS}}}arg')]
    if args:
        changes['args'] = tuple(args)
    spec = dataclasses.replace(configured.get(name) or ProbeSpec(name=name),
                               **changes)
    if problem := spec.problem():
        raise ValueError(': '.join(problem))
    return spec


def _from_metadata(element: ElementTree.Element, configured: dict[str, ProbeSpec],
                   domain: str) -> list[ProbeSpec]:
    """The probes a ``<probes>`` element defines; a bad one is logged and left
    out, never a failure of the domain."""
    specs = []
    for probe in element.iterfind(f'{{{PROBES_NS}}}probe'):
        try:
            specs.append(_metadata_spec(probe, configured))
        except ValueError as error:
            LOG.warning('Domain %s: probe %r in its metadata: %s; not run',
                        domain, probe.get('name', ''), error)
    return specs


def domain_probes(domain_xml: str, configured: dict[str, ProbeSpec]) -> list[ProbeSpec]:
    """The probes to run on a domain, from its XML."""
    root = ElementTree.fromstring(domain_xml)
    name = root.findtext('name', '')
    metadata = root.find('metadata')
    own = metadata.find(f'{{{PROBES_NS}}}probes') if metadata is not None else None
    if own is not None:
        return _from_metadata(own, configured, name)
    instance = _nova_instance(metadata, name)
    return [spec for spec in configured.values() if matches(spec, instance)]


class GuestAgentProbe:
    """Runs one probe through libvirt's guest agent command passthrough."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep,
                 agent_command: Callable[[object, str, int, int], str] = (
                     libvirt_qemu.qemuAgentCommand)) -> None:
        """``agent_command``: libvirt's passthrough, or a stand-in (bench)."""
        self._sleep = sleep
        self._agent_command = agent_command

    def run(self, domain: libvirt.virDomain,
            spec: ProbeSpec) -> tuple[ProbeOutcome, str]:
        started = clock.monotonic()
        if spec.type == 'ping':
            try:
                self._command(domain, GUEST_PING, spec.timeout)
                return ProbeOutcome.SUCCESS, ''
            except libvirt.libvirtError as error:
                return ProbeOutcome.FAILURE, _message(error)
        command = {'execute': 'guest-exec', 'arguments': {
            'path': spec.command, 'arg': list(spec.args), 'capture-output': True}}
        try:
            pid = self._command(domain, json.dumps(command), spec.timeout)['pid']
        except (libvirt.libvirtError, KeyError, TypeError) as error:
            return ProbeOutcome.UNAVAILABLE, _message(error)
        status_command = json.dumps({'execute': 'guest-exec-status',
                                     'arguments': {'pid': pid}})
        wait = POLL_FIRST
        while True:
            try:
                status = self._command(domain, status_command, spec.timeout)
            except (libvirt.libvirtError, TypeError) as error:
                # The agent stopped answering mid-run: the heartbeat's to judge.
                return ProbeOutcome.UNAVAILABLE, _message(error)
            if status.get('exited'):
                return _outcome(status)
            left = spec.timeout - (clock.monotonic() - started)
            if left <= 0:
                return ProbeOutcome.FAILURE, f'no exit within {spec.timeout:g} s'
            self._sleep(min(wait, left))
            wait = min(wait * 2, POLL_MAX)

    def _command(self, domain: libvirt.virDomain, command: str,
                 timeout: float) -> dict:
        answer = self._agent_command(domain, command, max(1, math.ceil(timeout)), 0)
        return json.loads(answer)['return']


def _message(error: Exception) -> str:
    if isinstance(error, libvirt.libvirtError):
        return error.get_error_message() or str(error)
    return f'unexpected answer from the guest agent ({error!r})'


def _outcome(status: dict) -> tuple[ProbeOutcome, str]:
    output = b''
    for key in ('out-data', 'err-data'):
        if status.get(key):
            output += base64.b64decode(status[key])
    text = output[:OUTPUT_LIMIT].decode(errors='replace').strip()
    if 'exitcode' in status:
        code = status['exitcode']
        if code == 0:
            return ProbeOutcome.SUCCESS, text
        return ProbeOutcome.FAILURE, f'exit status {code}' + (
            f': {text}' if text else '')
    return ProbeOutcome.FAILURE, f'killed by signal {status.get("signal")}' + (
        f': {text}' if text else '')


@dataclasses.dataclass
class _Watched:
    """One domain's run, as the prober knows it."""

    name: str
    domain: libvirt.virDomain
    probes: list[ProbeSpec]
    # Probe name → when it is next due (monotonic seconds).
    due: dict[str, float]


class Prober(Worker):
    """Runs each domain's probes when due, on the pool it shares with the
    heartbeat; publishes each run's outcome."""

    def __init__(self, publish: Callable[[DomainEvent], None],
                 borrow: Borrow,
                 configured: dict[str, ProbeSpec],
                 pool: concurrent.futures.Executor,
                 runner: GuestAgentProbe | None = None,
                 progress: Callable[[], None] = lambda: None,
                 resumed: Callable[[str, int, str], bool] = lambda *_: False) -> None:
        """``resumed(uuid, domain id, probe)``: whether the journal already
        has that probe past discovery in that run (the agent restarted or
        reconnected): it runs at once, not after its initial delay."""
        super().__init__(THREAD_NAME)
        self._resumed = resumed
        self._publish = publish
        self._borrow = borrow
        self.configured = configured
        self._pool = pool
        self._runner = runner or GuestAgentProbe()
        self._progress = progress
        # (uuid, domain id) → what runs there; only runs still going are kept.
        self._watched: dict[tuple[str, int], _Watched] = {}
        self._in_flight: set[tuple[str, int, str]] = set()
        # Domains whose probes must be worked out again, and whose delays
        # start over (a reboot): written from the bus thread.
        self._reread: set[str] = set()
        self._restart: set[str] = set()

    def on_event(self, event: DomainEvent) -> None:
        """A bus subscriber: metadata changes and guest reboots."""
        if event.kind == EventKind.METADATA_CHANGE:
            self._reread.add(event.domain_uuid)
            self.wake()
        elif event.kind == EventKind.REBOOT:
            self._restart.add(event.domain_uuid)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._progress()
            try:
                wait = self.round()
            except libvirt.libvirtError as error:
                LOG.warning('Probe round failed (%s)', error.get_error_message())
                wait = SCAN_INTERVAL
            if self._wakeup.wait(min(wait, PROGRESS_TICK)):
                self._wakeup.clear()

    def round(self) -> float:
        """Start every probe that is due; return the seconds until the next."""
        with self._borrow() as conn:
            if conn is None:
                return SCAN_INTERVAL
            running = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)
        now = clock.monotonic()
        # Swapped, not cleared: the bus thread may add to them meanwhile.
        reread, self._reread = self._reread, set()
        restart, self._restart = self._restart, set()
        watched = {}
        for dom in running:
            key = (dom.UUIDString(), dom.ID())
            known = self._watched.get(key)
            if known is None or key[0] in reread:
                known = self._watch(dom, key, now, known)
                if known is None:
                    continue
            if key[0] in restart:
                known.due = {spec.name: now + spec.initial_delay
                             for spec in known.probes}
            watched[key] = known
        self._watched = watched
        next_due = now + SCAN_INTERVAL
        for (uuid, domain_id), run in watched.items():
            for spec in run.probes:
                flight = (uuid, domain_id, spec.name)
                if flight in self._in_flight:
                    continue
                if run.due[spec.name] <= now:
                    run.due[spec.name] = now + spec.period
                    self._in_flight.add(flight)
                    self._pool.submit(self._probe, uuid, domain_id, run, spec)
                next_due = min(next_due, run.due[spec.name])
        return max(0.0, next_due - now)

    def _watch(self, dom: libvirt.virDomain, key: tuple[str, int], now: float,
               known: _Watched | None) -> _Watched | None:
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError:
            return None  # gone meanwhile
        # A domain without the guest agent's channel is not skipped: its
        # probes are unavailable there, which an operator must see.
        specs = domain_probes(xml, self.configured)
        due = {}
        for spec in specs:
            if known is not None:  # its metadata was read again
                due[spec.name] = known.due.get(spec.name, now + spec.initial_delay)
            elif self._resumed(*key, spec.name):
                due[spec.name] = now
            else:
                due[spec.name] = now + spec.initial_delay
        names = [s.name for s in specs]
        if names != ([s.name for s in known.probes] if known else []):
            LOG.info('Domain %s: probes %s', dom.name(), ', '.join(names) or 'none')
        elif known is None:
            LOG.debug('Domain %s: probes none', dom.name())
        return _Watched(dom.name(), dom, specs, due)

    def _probe(self, uuid: str, domain_id: int, run: _Watched, spec: ProbeSpec) -> None:
        try:
            try:
                outcome, output = self._runner.run(run.domain, spec)
            except Exception as error:  # a probe must never end the pool's worker
                LOG.exception('Probe %s on %s', spec.name, run.name)
                outcome, output = ProbeOutcome.UNAVAILABLE, repr(error)
            self._publish(DomainEvent(
                kind=EventKind.PROBE_RESULT, domain_uuid=uuid, domain_name=run.name,
                detected_at=clock.utcnow(), source='probe', domain_id=domain_id,
                probe=spec.name, check=spec.check(outcome, output)))
        finally:
            # No wake-up: the next round (within SCAN_INTERVAL) schedules it
            # again; a wake-up per finished run would list every domain as
            # often as probes finish.
            self._in_flight.discard((uuid, domain_id, spec.name))
