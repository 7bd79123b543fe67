"""The intrusive check: guest-ping through the QEMU guest agent.

A guest whose kernel or application melts down while QEMU runs on produces
no libvirt event at all; its guest agent stops answering. Every
``guest_monitoring_interval`` each running domain with the agent's virtio
channel is pinged, on a bounded pool, so a hung agent (up to the pool size
at once) costs a round one timeout, not one timeout per hung guest.

Per domain (``HealthTracker``, pure and clock-injected)::

    discovery --answer--> healthy --fail--> failing(1..n) --n=threshold--> reported
        |                    ^                  |answer                      |answer
        |                    +------------------+----------------------------+
        +--no answer within startup_grace--> reported (or only logged)

Each change is published as a HEARTBEAT event; the journal records it and a
report becomes one notification per failure episode.
"""

import concurrent.futures
import dataclasses
import logging
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

import libvirt
import libvirt_qemu

from instancemonitor import clock
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import Health
from instancemonitor.supervision import PROGRESS_TICK
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

THREAD_NAME = 'heartbeat'
AGENT_CHANNEL = 'org.qemu.guest_agent.0'
GUEST_PING = '{"execute": "guest-ping"}'
_AGENT_CONNECTED = libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    uuid: str
    name: str
    domain: object  # a virDomain, or whatever the ping callable takes


@dataclasses.dataclass(slots=True)
class _State:
    health: Health
    since: float
    failures: int = 0


class HealthTracker:
    """Per-domain heartbeat state; says which transitions to publish."""

    def __init__(self, threshold: int, grace: float, report_never_answered: bool,
                 monotonic: Callable[[], float] = clock.monotonic) -> None:
        self.threshold = threshold
        self.grace = grace
        self.report_never_answered = report_never_answered
        self._monotonic = monotonic
        self._states: dict[str, _State] = {}

    def counts(self) -> dict[str, int]:
        """How many domains are in each state."""
        counts = dict.fromkeys((h.name.lower() for h in Health), 0)
        for state in list(self._states.values()):
            counts[state.health.name.lower()] += 1
        return counts

    def health(self, uuid: str) -> Health | None:
        state = self._states.get(uuid)
        return state.health if state else None

    def track(self, uuids: set[str]) -> set[str]:
        """The domains to watch now; return those new to discovery. The
        others are forgotten, so a domain that runs again starts over."""
        now = self._monotonic()
        new = uuids - self._states.keys()
        for uuid in new:
            self._states[uuid] = _State(Health.DISCOVERY, now)
        for uuid in self._states.keys() - uuids:
            del self._states[uuid]
        return new

    def observe(self, uuid: str, answered: bool) -> tuple[Health, int] | None:
        """Apply one ping's outcome; return the new (health, failures) if it
        changed, else None."""
        state = self._states.get(uuid)
        if state is None:
            return None
        before = (state.health, state.failures)
        if answered:
            state.health, state.failures = Health.HEALTHY, 0
        elif state.health is Health.DISCOVERY:
            if self._monotonic() - state.since >= self.grace:
                state.health = Health.NEVER_ANSWERED
        elif state.health in (Health.HEALTHY, Health.FAILING):
            state.failures += 1
            state.health = (Health.REPORTED if state.failures >= self.threshold
                            else Health.FAILING)
        after = (state.health, state.failures)
        return after if after != before else None


def has_agent_channel(domain_xml: str) -> bool:
    """Whether the domain XML has the guest agent's virtio channel."""
    root = ElementTree.fromstring(domain_xml)
    return any(target.get('type') == 'virtio' and target.get('name') == AGENT_CHANNEL
               for target in root.iterfind('./devices/channel/target'))


class LibvirtAgents:
    """Targets and pings through libvirt: what the heartbeat runs on."""

    def __init__(self, current: Callable[[], libvirt.virConnect | None],
                 timeout: int) -> None:
        self._current = current
        self.timeout = timeout
        # (uuid, domain id) → has the channel; a new run re-reads the XML.
        self._channel: dict[tuple[str, int], bool] = {}

    def targets(self) -> list[Target]:
        conn = self._current()
        if conn is None:
            return []
        found, running = [], set()
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING):
            key = (dom.UUIDString(), dom.ID())
            running.add(key)
            if key not in self._channel:
                try:
                    self._channel[key] = has_agent_channel(dom.XMLDesc(0))
                    if self._channel[key]:
                        # A hung agent must not cost libvirt's own 5 s a call.
                        dom.agentSetResponseTimeout(self.timeout)
                except libvirt.libvirtError:
                    continue  # gone meanwhile
            if self._channel[key]:
                found.append(Target(key[0], dom.name(), dom))
        # Only runs still going are remembered: the cache stays bounded.
        self._channel = {k: v for k, v in self._channel.items() if k in running}
        return found

    def set_timeout(self, timeout: int) -> None:
        """A new per-call timeout, set on every domain at its next look."""
        self.timeout = timeout
        self._channel.clear()

    def ping(self, target: Target) -> bool:
        try:
            libvirt_qemu.qemuAgentCommand(target.domain, GUEST_PING,
                                          self.timeout, 0)
            return True
        except libvirt.libvirtError:
            return False  # not connected, hung, or the domain stopped


class Heartbeat(Worker):
    def __init__(self, publish: Callable[[DomainEvent], None],
                 targets: Callable[[], list[Target]],
                 ping: Callable[[Target], bool], tracker: HealthTracker,
                 interval: float, workers: int,
                 progress: Callable[[], None] = lambda: None) -> None:
        self._publish = publish
        self._progress = progress
        self._targets = targets
        self._ping = ping
        self.tracker = tracker
        self.interval = interval
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix='heartbeat-ping')
        super().__init__(THREAD_NAME)
        self.rounds = 0

    def on_agent_lifecycle(self, event: DomainEvent) -> None:
        """A bus subscriber: an agent that just connected is pinged at once."""
        if event.event == _AGENT_CONNECTED:
            self.wake()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = clock.monotonic()
            self._progress()
            try:
                self.round()
            except libvirt.libvirtError as error:
                LOG.warning('Heartbeat round failed (%s)', error.get_error_message())
            while (wait := self.interval - (clock.monotonic() - started)) > 0:
                self._progress()
                if self._wakeup.wait(min(wait, PROGRESS_TICK)):
                    break
            self._wakeup.clear()

    def round(self) -> None:
        """Ping every target once, in parallel; publish what changed."""
        targets = self._targets()
        new = self.tracker.track({t.uuid for t in targets})
        for target in targets:
            if target.uuid in new:
                self._report(target, Health.DISCOVERY, 0)
        answers = list(self._pool.map(self._ping, targets))
        for target, answered in zip(targets, answers, strict=True):
            change = self.tracker.observe(target.uuid, answered)
            if change is not None:
                self._report(target, *change)
        self.rounds += 1

    def _report(self, target: Target, health: Health, failures: int) -> None:
        if health is Health.NEVER_ANSWERED:
            LOG.warning('Guest agent of %s (%s) has not answered since the domain '
                        'was first seen running%s', target.name, target.uuid,
                        '' if self.tracker.report_never_answered
                        else '; not reported (report_never_answered is off)')
            if not self.tracker.report_never_answered:
                return
        elif health is Health.REPORTED:
            LOG.warning('Guest agent of %s (%s) missed %d pings in a row',
                        target.name, target.uuid, failures)
        self._publish(DomainEvent(
            kind=EventKind.HEARTBEAT, domain_uuid=target.uuid,
            domain_name=target.name, event=health, detail=failures,
            detected_at=clock.utcnow(), source='heartbeat'))
