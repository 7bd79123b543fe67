"""The intrusive check: guest-ping through the QEMU guest agent.

A guest whose kernel or application melts down while QEMU runs on produces
no libvirt event at all; its guest agent stops answering. Every
``guest_monitoring_interval`` each running domain with the agent's virtio
channel is pinged, on a bounded pool, so hung agents (up to the pool size at
once) cost a round one wait, not one wait per hung guest.

Each answer or miss is published as a PING event with the domain's id; the
per-domain state machine (``domainstate``) counts misses, knows about
reboots and runs, and decides what is a failure. An error that says nothing
about the guest agent (the domain stopped, libvirt went away) publishes
nothing.

Nothing here changes the domain: the guest agent's response timeout inside
libvirtd (``agentSetResponseTimeout``) applies to every client's agent
commands (Nova's quiesced snapshots, set-password), so it is left as it is.
libvirt then waits its own 5 s guest-sync for an agent that hangs, whatever
timeout a ping passes; the parallel pool absorbs that.
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
from instancemonitor.supervision import PROGRESS_TICK
from instancemonitor.virt.connection import Borrow
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

THREAD_NAME = 'heartbeat'
AGENT_CHANNEL = 'org.qemu.guest_agent.0'
GUEST_PING = '{"execute": "guest-ping"}'
_AGENT_CONNECTED = libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
# Errors that are the guest agent's answer: not connected or hung, out of
# step, or still busy with another client's command after libvirt's 30 s
# wait for the agent job.
_AGENT_MISSES = frozenset({libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                           libvirt.VIR_ERR_AGENT_UNSYNCED,
                           libvirt.VIR_ERR_OPERATION_TIMEOUT})


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    uuid: str
    name: str
    domain: object  # a virDomain, or whatever the ping callable takes
    # libvirt's id of the domain's run.
    domain_id: int = -1


def has_agent_channel(domain_xml: str) -> bool:
    """Whether the domain XML has the guest agent's virtio channel."""
    root = ElementTree.fromstring(domain_xml)
    return any(target.get('type') == 'virtio' and target.get('name') == AGENT_CHANNEL
               for target in root.iterfind('./devices/channel/target'))


class LibvirtAgents:
    """Targets and pings through libvirt: what the heartbeat runs on."""

    def __init__(self, borrow: Borrow, timeout: int) -> None:
        self._borrow = borrow
        self.timeout = timeout
        # (uuid, domain id) → has the channel; a new run re-reads the XML.
        self._channel: dict[tuple[str, int], bool] = {}

    def targets(self) -> list[Target]:
        with self._borrow() as conn:
            if conn is None:
                return []
            running = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)
        found, channel = [], {}
        # A domain holds its connection: safe to use once the lost one closes.
        for dom in running:
            key = (dom.UUIDString(), dom.ID())
            if key in self._channel:
                channel[key] = self._channel[key]
            else:
                try:
                    channel[key] = has_agent_channel(dom.XMLDesc(0))
                except libvirt.libvirtError:
                    continue  # gone meanwhile
            if channel[key]:
                found.append(Target(key[0], dom.name(), dom, key[1]))
        # Only runs still going are remembered: the cache stays bounded. A new
        # dict, so a reader never sees it change under it.
        self._channel = channel
        return found

    def ping(self, target: Target) -> bool | None:
        """True if the agent answered, False if it did not (not connected,
        hung), None if the error says nothing about the agent."""
        try:
            libvirt_qemu.qemuAgentCommand(target.domain, GUEST_PING,
                                          self.timeout, 0)
            return True
        except libvirt.libvirtError as error:
            if error.get_error_code() in _AGENT_MISSES:
                return False
            return None


class Heartbeat(Worker):
    def __init__(self, publish: Callable[[DomainEvent], None],
                 targets: Callable[[], list[Target]],
                 ping: Callable[[Target], bool | None],
                 interval: float, workers: int,
                 progress: Callable[[], None] = lambda: None,
                 pool: concurrent.futures.Executor | None = None) -> None:
        """``pool``: one shared with the application probes (its owner shuts
        it down); else a pool of ``workers`` of its own."""
        self._publish = publish
        self._progress = progress
        self._targets = targets
        self._ping = ping
        self.interval = interval
        self._own_pool = pool is None
        self._pool = pool or concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix='heartbeat-ping')
        super().__init__(THREAD_NAME)
        self.rounds = 0

    def on_agent_lifecycle(self, event: DomainEvent) -> None:
        """A bus subscriber: an agent that just connected is pinged at once."""
        if event.event == _AGENT_CONNECTED:
            self.wake()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self._own_pool:
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
        """Ping every target once, in parallel; publish each outcome as it
        comes, so a hung agent delays no other guest's."""
        pings = {self._pool.submit(self._ping, target): target
                 for target in self._targets()}
        for done in concurrent.futures.as_completed(pings):
            answered = done.result()
            if answered is None:
                continue
            target = pings[done]
            self._publish(DomainEvent(
                kind=EventKind.PING, domain_uuid=target.uuid,
                domain_name=target.name, event=int(answered),
                detected_at=clock.utcnow(), source='heartbeat',
                domain_id=target.domain_id))
        self.rounds += 1
