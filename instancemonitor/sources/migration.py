"""The outcome of an outgoing migration whose source QEMU died.

A QEMU that dies in a live migration's last phase (the source paused, its
last pages on the way) sends STOPPED_FAILED, the event of a crash, whether
or not the destination got every page: libvirt may still resume the VM
there. No event tells which; the source domain does:

* it is no longer defined: the migration undefined it
  (``VIR_MIGRATE_UNDEFINE_SOURCE``, as Nova's do), so the VM runs at the
  destination. Only a persistent domain tells that way; a transient one is
  gone either way, so the watch says whether it found it defined, and is
  asked already when the last phase begins: the undefine may come before
  it could look after the death;
* it is still defined once libvirt ended the migration's job (its completed
  job statistics appear): the migration failed and the VM is lost.

The watch looks both up on its own thread, a few times a second, for each
domain the journal asks it to follow, and publishes what it finds as a
``MIGRATION_SOURCE`` event; the state machine decides. It only reads: the
completed statistics are read with ``VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED``,
so they stay for any other client (Nova).
"""

import dataclasses
import logging
import threading
from collections.abc import Callable

import libvirt

from instancemonitor import clock
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import MigrationSource
from instancemonitor.virt.connection import Borrow
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

THREAD_NAME = 'migration-watch'
# Seconds between two looks at a followed domain.
POLL_INTERVAL = 0.1
_COMPLETED = (libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED |
              libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)


@dataclasses.dataclass
class _Followed:
    uuid: str
    name: str
    until: float              # monotonic: the hold's end; given up then
    held: bool                # its recovery waits for the outcome
    told_defined: bool = False


class MigrationWatch(Worker):
    def __init__(self, publish: Callable[[DomainEvent], None],
                 borrow: Borrow, wait: float) -> None:
        """``borrow`` lends the open connection, if any; ``wait``: seconds
        a domain is followed (the hold of its recovery)."""
        self._publish = publish
        self._borrow = borrow
        self.wait = wait
        self._lock = threading.Lock()
        self._followed: dict[str, _Followed] = {}
        super().__init__(THREAD_NAME)

    def follow(self, uuid: str, name: str, held: bool = True) -> None:
        """Follow a domain (from any thread; never blocks): one paused for
        its migration's last phase until it is seen once, one shut off
        (``held``: its recovery waits) until the outcome is known."""
        with self._lock:
            self._followed[uuid] = _Followed(uuid, name,
                                             clock.monotonic() + self.wait, held)
        self.wake()

    def following(self) -> list[str]:
        with self._lock:
            return list(self._followed)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                followed = list(self._followed.values())
            if not followed:
                self._wakeup.wait()
                self._wakeup.clear()
                continue
            with self._borrow() as conn:
                for domain in followed:
                    if clock.monotonic() >= domain.until:
                        LOG.log(logging.INFO if domain.held else logging.DEBUG,
                                'Domain %s (%s): no outcome of its migration '
                                'within %g s%s', domain.name, domain.uuid,
                                self.wait, '; its recovery goes as held'
                                if domain.held else '')
                        self._drop(domain)
                    elif conn is not None and self._look(conn, domain):
                        self._drop(domain)
            self._stop.wait(POLL_INTERVAL)

    def _drop(self, domain: _Followed) -> None:
        with self._lock:
            if self._followed.get(domain.uuid) is domain:
                del self._followed[domain.uuid]

    def _look(self, conn: libvirt.virConnect, domain: _Followed) -> bool:
        """Look the domain up once, publishing what is news; True once the
        outcome is known, or the domain is not stopped (paused for the last
        phase: whether it is persistent was all to learn; running: started
        again, its events tell the rest)."""
        try:
            dom = conn.lookupByUUIDString(domain.uuid)
            state, _ = dom.state()
            if not domain.told_defined and dom.isPersistent():
                self._tell(domain, MigrationSource.DEFINED)
                domain.told_defined = True
            if state != libvirt.VIR_DOMAIN_SHUTOFF:
                return True
            ended = dom.jobStats(_COMPLETED).get('type', libvirt.VIR_DOMAIN_JOB_NONE)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                self._tell(domain, MigrationSource.GONE)
                return True
            LOG.debug('Domain %s: looking up its migration failed (%s); '
                      'trying again', domain.uuid, error.get_error_message())
            return False
        if ended != libvirt.VIR_DOMAIN_JOB_NONE:
            self._tell(domain, MigrationSource.JOB_ENDED)
            return True
        return False

    def _tell(self, domain: _Followed, found: MigrationSource) -> None:
        self._publish(DomainEvent(
            kind=EventKind.MIGRATION_SOURCE, domain_uuid=domain.uuid,
            domain_name=domain.name, event=found, detected_at=clock.utcnow(),
            source=THREAD_NAME))
