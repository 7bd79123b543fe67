"""Live migration between two private libvirtds on this machine, each with
an agent of its own (hosts compute-1 and compute-2), one recording API that
counts every POST from both.

A migration that fails after the destination started its QEMU ends there
with STOPPED_FAILED, the very event of a crash, while the VM runs on at the
source: the agent on the destination must not name it. Each test asserts
the exact list of notifications, then shows that the VM is still watched
where it runs: its QEMU is killed and exactly one crash is notified, by the
host it runs on. The same holds with the agents restarted mid-migration,
knowing the migration only from their state databases and scans.
"""

import contextlib
import os
import re
import signal
import threading
import time

import libvirt
import pytest

from tests.e2e.conftest import AGENT_CHANNEL
from tests.e2e.conftest import guest_xml
from tests.e2e.guest import agent_guest_image
from tests.processes import free_port
from tests.processes import wait_for

QUIET = 3.0
CRASH = ('LIFECYCLE', 'STOPPED_FAILED')
MIGRATE = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
           libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
# Random data in guest RAM, sent at 2 MiB/s: about 16 s of migration to act
# in (zero pages are nearly free, so an idle guest migrates in 0.1 s).
BLOB_MIB, BANDWIDTH_MIB_S = 32, 2


def sent(api) -> list[tuple[str, str, str, str]]:
    """Every POST's (host, instance, event, detail), in order, repeats included."""
    return [(n['notification']['hostname'],
             n['notification']['payload']['instance_uuid'],
             n['notification']['payload']['event'],
             n['notification']['payload']['vir_domain_event'])
            for n in (r.json() for r in api.requests)]


def inputs(agent, name: str, scans: bool = False, own: bool = False) -> list[str]:
    """The state machine's inputs from libvirt's lifecycle events for
    ``name``, in the order the agent applied them (and the agents before it
    in its directory, unless ``own``), scans left out unless ``scans``.
    Other kinds are left out too: as a cancelled migration's destination
    QEMU is killed, libvirt may or may not send a CONTROL_ERROR first, which
    the journal applies as an 'event' that changes nothing."""
    found = re.findall(rf'Event LIFECYCLE of {name} \([^)]*\): (\S+)',
                       agent.output(own))
    return [i for i in found if scans or not i.startswith(('scan-', 'stale-'))]


def wait_inputs(agent, name: str, expected: list[str]) -> None:
    try:
        wait_for(lambda: inputs(agent, name) == expected, 20, f'{expected}', 0.2)
    except AssertionError:
        raise AssertionError(f'{name}: {inputs(agent, name)} != {expected}') from None


class Migration(threading.Thread):
    """``virsh migrate --live --p2p --persistent --undefinesource``, run on
    its own connection and thread; ``error`` is libvirt's, if it failed."""

    def __init__(self, source_uri: str, name: str, destination_uri: str,
                 slow: bool, post_copy: bool = False) -> None:
        super().__init__(name=f'migrate-{name}', daemon=True)
        self.conn = libvirt.open(source_uri)
        self.dom = self.conn.lookupByName(name)
        # p2p: the source daemon itself connects to the destination, which
        # must be named with a transport (qemu+unix) to be another host.
        self.destination = destination_uri.replace('qemu:', 'qemu+unix:', 1)
        self.params = {libvirt.VIR_MIGRATE_PARAM_URI: f'tcp://127.0.0.1:{free_port()}',
                       libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '127.0.0.1'}
        if slow:
            self.params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = BANDWIDTH_MIB_S
        self.flags = MIGRATE | (libvirt.VIR_MIGRATE_POSTCOPY if post_copy else 0)
        self.error: libvirt.libvirtError | None = None

    def run(self) -> None:
        try:
            self.dom.migrateToURI3(self.destination, self.params, self.flags)
        except libvirt.libvirtError as error:
            self.error = error

    def finish(self, timeout: float = 60) -> None:
        self.join(timeout)
        assert not self.is_alive(), 'the migration did not end'
        with contextlib.suppress(libvirt.libvirtError):  # its daemon restarted
            self.conn.close()


HOSTNAMES = {'source': 'compute-1', 'destination': 'compute-2'}


@pytest.fixture
def host_agent(destination, start_agent, recovery_api):
    """Start the agent of 'source' or 'destination', or start it again on
    the state its last one left; scans every 0.5 s, so that scans during
    the migration (either side paused for it) are tested too."""
    def start(host: str, reconcile_interval: float = 0.5):
        return start_agent(recovery_api.url,
                           uri=destination.uri if host == 'destination' else '',
                           name=host, hostname=HOSTNAMES[host],
                           reconcile_interval=reconcile_interval)
    return start


@pytest.fixture
def two_hosts(hypervisor, host_agent):
    """Agents on both daemons."""
    return host_agent('source'), host_agent('destination')


def restart(agent, host_agent, host: str):
    """Stop ``agent`` (SIGTERM) and start it again on its state, once its
    scans have run twice."""
    assert agent.stop() == 0
    again = host_agent(host)
    again.wait_log('Domain state scan:', count=2, own=True)
    return again


@pytest.fixture
def migratable_guest(conn, tmp_path):
    """A persistent guest, as Nova's are; ``slow`` fills its RAM with random
    data (a loader device) so that a migration takes long enough to act in."""
    def start(name: str, slow: bool, blob_mib: int = BLOB_MIB) -> libvirt.virDomain:
        qemu_args: tuple[str, ...] = ()
        if slow:
            blob = tmp_path / f'{name}.ram'
            blob.write_bytes(os.urandom(blob_mib << 20))
            qemu_args = ('-device', f'loader,file={blob},addr=0x5000000,force-raw=on')
        dom = conn.defineXML(guest_xml(name, memory_mib=128, qemu_args=qemu_args))
        dom.create()
        return dom
    return start


def wait_incoming(destination, name: str) -> None:
    """Until the incoming side of the migration is under way."""
    dconn = libvirt.open(destination.uri)

    def started() -> bool:
        try:
            return dconn.lookupByName(name).state()[1] == (
                libvirt.VIR_DOMAIN_PAUSED_MIGRATION)
        except libvirt.libvirtError:
            return False
    try:
        wait_for(started, 30, f'{name} coming in on the destination', 0.1)
    finally:
        dconn.close()
    time.sleep(1.5)  # memory is on its way; scans ran on both sides


@pytest.fixture
def slow_migration(hypervisor, destination, migratable_guest):
    """Start a slowed live migration of a new guest ``name`` to the
    destination; return (its UUID, the Migration) once memory is on its way."""
    def start(name: str) -> tuple[str, Migration]:
        uuid = migratable_guest(name, slow=True).UUIDString()
        migration = Migration(hypervisor.uri, name, destination.uri, slow=True)
        migration.start()
        wait_incoming(destination, name)
        return uuid, migration
    return start


def crash_where_it_runs(daemon, name: str, host: str, uuid: str, api) -> None:
    """Kill the VM's QEMU: exactly one crash, from the host it runs on."""
    os.kill(daemon.qemu_pid(name), signal.SIGKILL)
    api.wait_stored(1, timeout=15)
    time.sleep(QUIET)
    assert sent(api) == [(host, uuid, *CRASH)]


def test_a_live_migration_that_succeeds_is_no_failure_on_either_host(
        hypervisor, destination, two_hosts, migratable_guest, recovery_api):
    source, target = two_hosts
    uuid = migratable_guest('mig-ok', slow=False).UUIDString()
    migration = Migration(hypervisor.uri, 'mig-ok', destination.uri, slow=False)
    migration.start()
    migration.finish()
    assert migration.error is None
    # DEFINED_ADDED (--persistent): 'defined', the domain persistent.
    wait_inputs(target, 'mig-ok', ['start-migration-in', 'defined', 'resume-migrated'])
    wait_inputs(source, 'mig-ok', ['defined', 'resume', 'start', 'pause-migration',
                                   'stop-migrated'])  # defined, started, migrated
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    crash_where_it_runs(destination, 'mig-ok', 'compute-2', uuid, recovery_api)


def _kill_destination_qemu(destination, conn, name: str) -> None:
    os.kill(destination.qemu_pid(name), signal.SIGKILL)


def _domjobabort(destination, conn, name: str) -> None:
    conn.lookupByName(name).abortJob()  # on the source


@pytest.mark.parametrize('name, fail', [('mig-kill', _kill_destination_qemu),
                                        ('mig-abort', _domjobabort)],
                         ids=['destination QEMU killed', 'cancelled with domjobabort'])
def test_a_failed_migration_is_no_failure_and_the_source_runs_on(
        hypervisor, destination, conn, two_hosts, slow_migration, recovery_api,
        name, fail):
    source, target = two_hosts
    uuid, migration = slow_migration(name)
    fail(destination, conn, name)
    migration.finish()
    assert migration.error is not None
    # On the destination: STARTED_MIGRATED, then STOPPED_FAILED, as a crash.
    wait_inputs(target, name, ['start-migration-in', 'stop-failed'])
    target.wait_log('the failed incoming migration of a VM that runs on at its source')
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    # The source saw nothing but its own run go on.
    assert inputs(source, name) == ['defined', 'resume', 'start']
    crash_where_it_runs(hypervisor, name, 'compute-1', uuid, recovery_api)


def test_the_source_qemu_killed_mid_migration_is_one_crash_named_by_the_source(
        hypervisor, destination, conn, two_hosts, slow_migration, recovery_api):
    """The VM is lost on both sides: the destination's STOPPED_FAILED is its
    failed incoming migration, as above, and the source's is the crash."""
    source, target = two_hosts
    name = 'mig-source-kill'
    uuid, migration = slow_migration(name)
    os.kill(hypervisor.qemu_pid(name), signal.SIGKILL)
    migration.finish()
    assert migration.error is not None
    wait_inputs(source, name, ['defined', 'resume', 'start', 'stop-failed'])
    wait_inputs(target, name, ['start-migration-in', 'stop-failed'])
    recovery_api.wait_stored(1, timeout=15)
    time.sleep(QUIET)
    assert sent(recovery_api) == [('compute-1', uuid, *CRASH)]
    assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def migrated_away(source, destination, name: str, uuid: str, api,
                  seen: list[str]) -> None:
    """The source's agent applied ``seen``, then found that the migration
    took the VM away: nothing is sent, and the VM is watched where it runs."""
    wait_inputs(source, name, seen)
    source.wait_log('the migration went through and the VM runs at the destination')
    time.sleep(QUIET)
    assert sent(api) == []
    crash_where_it_runs(destination, name, 'compute-2', uuid, api)


def _die_in_the_last_phase(hypervisor, destination, conn, name: str,
                           after: float, meanwhile=lambda: None,
                           paused=lambda: None, started=lambda: None) -> Migration:
    """Migrate ``name`` slowly, calling ``started`` once it is under way;
    once the source is paused for the last phase, hold the destination's
    libvirtd (SIGSTOP), call ``paused``, SIGKILL the source QEMU ``after``
    seconds later, call ``meanwhile``, and let the destination go on 2 s
    after that."""
    migration = Migration(hypervisor.uri, name, destination.uri, slow=True)
    migration.start()
    started()
    dom = conn.lookupByName(name)
    wait_for(lambda: dom.state() == [libvirt.VIR_DOMAIN_PAUSED,
                                     libvirt.VIR_DOMAIN_PAUSED_MIGRATION],
             60, f'{name} paused for the last phase', 0.005)
    os.kill(destination.process.pid, signal.SIGSTOP)
    try:
        paused()
        time.sleep(after)
        os.kill(hypervisor.qemu_pid(name), signal.SIGKILL)
        meanwhile()
        time.sleep(2.0)
    finally:
        os.kill(destination.process.pid, signal.SIGCONT)
    migration.finish()
    return migration


def runs_at(daemon, name: str) -> bool:
    dconn = libvirt.open(daemon.uri)
    try:
        return dconn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    except libvirt.libvirtError:
        return False
    finally:
        dconn.close()


@pytest.mark.parametrize('restarted', [False, True],
                         ids=['', 'the source agent restarted meanwhile'])
def test_the_source_qemu_dying_once_the_data_is_across_names_nothing(
        hypervisor, destination, conn, host_agent, two_hosts, migratable_guest,
        recovery_api, restarted):
    """The source QEMU dies in the migration's last phase, after the last
    of its data reached the destination and before libvirt's Finish resumes
    the VM there: the migration succeeds and the VM runs at the destination,
    while the source sees SUSPENDED_MIGRATED, then STOPPED_FAILED, as when
    the VM is lost. The domain is then gone from the source (undefined by
    the migration, with no event): the agent, which held the crash for the
    migration's outcome, withdraws it; restarted while it waits, from its
    state database."""
    source, target = two_hosts
    name = 'mig-data-across'
    uuid = migratable_guest(name, slow=True).UUIDString()
    agents = {'source': source}

    def restart_source() -> None:
        source.wait_log('held for its outcome')
        agents['source'] = restart(source, host_agent, 'source')
    # Its last pages cross in at most 0.3 s at 2 MiB/s.
    migration = _die_in_the_last_phase(
        hypervisor, destination, conn, name, 1.5,
        restart_source if restarted else lambda: None)
    source = agents['source']
    if migration.error is not None:
        pytest.fail(f'the migration failed: {migration.error}')
    if not runs_at(destination, name):
        pytest.fail('the VM does not run at the destination')
    wait_inputs(source, name, ['defined', 'resume', 'start', 'pause-migration',
                               'stop-failed'])
    source.wait_log('the migration went through and the VM runs at the destination')
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    assert f'{uuid}: LIFECYCLE/STOPPED_FAILED withdrawn' in source.output()
    # The destination's agent kept its connection while its libvirtd was
    # held past keepalive (1 s x 3): RESUMED_MIGRATED came once it answered.
    wait_for(lambda: 'resume-migrated' in inputs(target, name), 20,
             'the destination running', 0.2)
    assert 'Lost the libvirt connection' not in target.output()
    crash_where_it_runs(destination, name, 'compute-2', uuid, recovery_api)


def _data_across_the_source_agent_stopped(hypervisor, destination, conn,
                                          name: str, source, **hook) -> None:
    """Kill the source QEMU once the data is across (``_die_in_the_last_phase``
    1.5 s after the pause), the source's agent stopped (SIGSTOP) by the
    ``started`` or ``paused`` hook given; once the migration has succeeded
    and undefined the domain, let the agent go on (SIGCONT, also on failure)."""
    try:
        migration = _die_in_the_last_phase(hypervisor, destination, conn, name,
                                           1.5, **hook)
        if migration.error is not None:
            pytest.fail(f'the migration failed: {migration.error}')
        if not runs_at(destination, name):
            pytest.fail('the VM does not run at the destination')
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)  # undefined before the agent goes on
    finally:
        os.kill(source.process.pid, signal.SIGCONT)


def test_the_source_agent_hearing_of_that_death_only_once_the_domain_is_gone_names_nothing(
        hypervisor, destination, conn, two_hosts, migratable_guest, recovery_api):
    """The same death, with the source's agent held (SIGSTOP) from the start
    of the last phase until the migration is over, as a busy agent would be
    late: when it applies the STOPPED_FAILED, the migration has already
    undefined the domain, so the watch never finds it defined after the
    death. It found the domain persistent when the last phase began, so
    gone means migrated away: nothing is sent."""
    source, target = two_hosts
    name = 'mig-agent-late'
    uuid = migratable_guest(name, slow=True).UUIDString()

    def hold_the_source_agent() -> None:
        source.wait_log(f'Domain {name} ({uuid}): source-defined: migrating-out '
                        '=> migrating-out-defined', timeout=5)
        os.kill(source.process.pid, signal.SIGSTOP)
    _data_across_the_source_agent_stopped(hypervisor, destination, conn, name,
                                          source, paused=hold_the_source_agent)
    migrated_away(source, destination, name, uuid, recovery_api,
                  ['defined', 'resume', 'start', 'pause-migration', 'stop-failed'])


def test_the_source_agent_frozen_for_the_whole_last_phase_names_nothing(
        hypervisor, destination, conn, host_agent, migratable_guest, recovery_api):
    """The same death, with the source's agent stopped (SIGSTOP) from before
    the last phase begins until the migration has undefined the domain: the
    watch never finds it defined, before or after the death. The agent knew
    it persistent (its define event, its scans), so gone is migrated away:
    nothing is sent. (Before the journal kept persistence, this was the
    crash of a VM running at the destination.) A smaller guest keeps the
    agent's freeze (about 12 s) within libvirtd's keepalive (30 s), so that
    it comes back to every event, on the same connection. The source's
    agent scans at the default interval: a scan after the thaw would find
    the domain undefined and withdraw the crash too, before the watch."""
    source = host_agent('source', reconcile_interval=60.0)
    host_agent('destination')
    name = 'mig-agent-frozen'
    uuid = migratable_guest(name, slow=True, blob_mib=16).UUIDString()
    wait_inputs(source, name, ['defined', 'resume', 'start'])

    def freeze_the_source_agent() -> None:
        os.kill(source.process.pid, signal.SIGSTOP)
    _data_across_the_source_agent_stopped(hypervisor, destination, conn, name,
                                          source, started=freeze_the_source_agent)
    migrated_away(source, destination, name, uuid, recovery_api,
                  ['defined', 'resume', 'start', 'pause-migration', 'stop-failed'])
    assert 'source-defined' not in source.output()
    assert 'Lost the libvirt connection' not in source.output()


def test_the_source_qemu_dying_before_the_data_is_across_is_one_crash(
        hypervisor, destination, conn, two_hosts, migratable_guest, recovery_api):
    """The same death at once: the destination never gets the last pages,
    the migration fails and the VM is lost. The source's crash, held for the
    migration's outcome, goes as soon as libvirt ends the migration's job,
    long before ``migration_outcome_wait`` (30 s) has passed."""
    source, target = two_hosts
    name = 'mig-lost'
    uuid = migratable_guest(name, slow=True).UUIDString()
    migration = _die_in_the_last_phase(hypervisor, destination, conn, name, 0.0)
    if migration.error is None:
        pytest.fail('the migration succeeded')
    wait_inputs(source, name, ['defined', 'resume', 'start', 'pause-migration',
                               'stop-failed'])
    source.wait_log('the migration did not take the VM away; '
                    'LIFECYCLE/STOPPED_FAILED goes now')
    recovery_api.wait_stored(1, timeout=15)
    time.sleep(QUIET)
    assert sent(recovery_api) == [('compute-1', uuid, *CRASH)]
    assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert not runs_at(destination, name)


# --- post-copy ----------------------------------------------------------------

def _die_in_post_copy(hypervisor, destination, conn, name: str, hold: bool,
                      bandwidth_mib_s: int = 0) -> Migration:
    """Migrate ``name`` slowly, switch to post-copy (the VM runs at the
    destination, fetching what it lacks from the source: at
    ``bandwidth_mib_s``, or as fast as it can), SIGKILL the source QEMU
    1.5 s later; ``hold``: the destination's libvirtd held (SIGSTOP) from
    the switch until 2 s after the kill, so that its Finish comes after."""
    migration = Migration(hypervisor.uri, name, destination.uri, slow=True,
                          post_copy=True)
    if bandwidth_mib_s:
        migration.params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = bandwidth_mib_s
    migration.start()
    wait_incoming(destination, name)
    if hold:
        os.kill(destination.process.pid, signal.SIGSTOP)
    try:
        conn.lookupByName(name).migrateStartPostCopy()
        time.sleep(1.5)
        os.kill(hypervisor.qemu_pid(name), signal.SIGKILL)
        time.sleep(2.0)
    finally:
        if hold:
            os.kill(destination.process.pid, signal.SIGCONT)
    migration.finish()
    return migration


def test_the_source_qemu_dying_once_post_copy_has_the_data_across_names_nothing(
        hypervisor, destination, conn, two_hosts, migratable_guest, recovery_api):
    """Post-copy: the source pauses (SUSPENDED_POSTCOPY) and the VM runs at
    the destination. The source QEMU dies once every page is across, before
    libvirt's Finish: the migration succeeds. The source saw its last phase,
    then STOPPED_FAILED, as in pre-copy: nothing is sent (before post-copy
    was taken for the last phase, this was a crash notified at once)."""
    source, target = two_hosts
    name = 'mig-postcopy-across'
    uuid = migratable_guest(name, slow=True).UUIDString()
    migration = _die_in_post_copy(hypervisor, destination, conn, name, hold=True)
    if migration.error is not None:
        pytest.fail(f'the migration failed: {migration.error}')
    if not runs_at(destination, name):
        pytest.fail('the VM does not run at the destination')
    # SUSPENDED_MIGRATED, then SUSPENDED_POSTCOPY.
    migrated_away(source, destination, name, uuid, recovery_api,
                  ['defined', 'resume', 'start', 'pause-migration', 'pause-migration',
                   'stop-failed'])


def test_the_source_qemu_dying_while_post_copy_still_needs_it_is_one_crash(
        hypervisor, destination, conn, two_hosts, migratable_guest, recovery_api):
    """The same death while the destination still fetches pages from it:
    the VM is lost (libvirt leaves it 'running, post-copy failed' at the
    destination, waiting for pages that cannot come). Exactly one crash,
    named by the source, where Nova still has the instance."""
    source, target = two_hosts
    name = 'mig-postcopy-lost'
    uuid = migratable_guest(name, slow=True).UUIDString()
    try:
        migration = _die_in_post_copy(hypervisor, destination, conn, name,
                                      hold=False, bandwidth_mib_s=BANDWIDTH_MIB_S)
        assert migration.error is not None
        recovery_api.wait_stored(1, timeout=45)
        time.sleep(QUIET)
        assert sent(recovery_api) == [('compute-1', uuid, *CRASH)]
    finally:
        # libvirt 9.0 keeps the dead source domain locked by the failed
        # migration's job; only a new daemon lets the fixture undefine it.
        hypervisor.kill()


# --- the heartbeat during a migration -------------------------------------------

def test_a_live_migration_with_the_heartbeat_on_names_nothing(
        hypervisor, destination, conn, two_hosts, recovery_api, tmp_path):
    """A guest whose agent answers, migrated slowly (about 50 s): the source
    pings it all along (libvirt serves the agent on other connections while
    the migration runs) and neither host names it."""
    source, target = two_hosts
    name = 'mig-pinged'
    kernel, initrd = agent_guest_image()
    blob = tmp_path / f'{name}.ram'
    blob.write_bytes(os.urandom(64 << 20))
    dom = conn.defineXML(guest_xml(
        name, AGENT_CHANNEL, memory_mib=192,
        os_extra=f'<kernel>{kernel}</kernel><initrd>{initrd}</initrd>'
                 '<cmdline>console=ttyS0 quiet panic=-1</cmdline>',
        qemu_args=('-device', f'loader,file={blob},addr=0x5000000,force-raw=on')))
    dom.create()
    source.wait_log('heartbeat healthy', 90)
    answered_before = source.output().count(f'Event PING of {name} (')
    migration = Migration(hypervisor.uri, name, destination.uri, slow=True)
    started = time.monotonic()
    migration.start()
    migration.finish(180)
    assert migration.error is None
    assert time.monotonic() - started > 30
    wait_inputs(source, name, ['defined', 'resume', 'start', 'pause-migration',
                               'stop-migrated'])
    log = source.output()
    during = log[:log.index('pause-migration: running')]
    assert during.count(f'Event PING of {name} (') - answered_before >= 2
    assert 'ping-miss' not in during.split('heartbeat healthy', 1)[1]
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    assert 'resume-migrated' in inputs(target, name)


# --- the agents restarted during a migration ---------------------------------

def test_both_agents_restarted_during_a_live_migration_that_succeeds_name_nothing(
        hypervisor, destination, host_agent, two_hosts, slow_migration,
        recovery_api):
    source, target = two_hosts
    name = 'mig-restarts'
    uuid, migration = slow_migration(name)
    source = restart(source, host_agent, 'source')
    target = restart(target, host_agent, 'destination')
    assert migration.is_alive(), 'the migration ended before the agents restarted'
    # What the restarted agents' scans found, the migration still under way.
    assert 'scan-running' in inputs(source, name, scans=True, own=True)
    assert any(i.startswith('scan-migrating')
               for i in inputs(target, name, scans=True, own=True))
    migration.finish()
    assert migration.error is None
    wait_inputs(target, name, ['start-migration-in', 'defined', 'resume-migrated'])
    wait_inputs(source, name, ['defined', 'resume', 'start', 'pause-migration',
                               'stop-migrated'])
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    crash_where_it_runs(destination, name, 'compute-2', uuid, recovery_api)


@pytest.mark.parametrize('across', [False, True],
                         ids=['restarted before the cancel', 'stopped across the cancel'])
def test_the_destination_agent_restarted_during_a_cancelled_migration_names_nothing(
        hypervisor, destination, conn, host_agent, two_hosts, slow_migration,
        recovery_api, across):
    """The destination's STOPPED_FAILED is the cancelled migration's, told to
    an agent that knows the incoming domain only from its state database and
    its scan; or no event at all, the agent being stopped when it came."""
    source, target = two_hosts
    name = f'mig-restart-{"across" if across else "before"}'
    uuid, migration = slow_migration(name)
    if across:
        assert target.stop() == 0
        conn.lookupByName(name).abortJob()
        migration.finish()
        target = host_agent('destination')
        target.wait_log('Domain state scan:', count=4, own=True)
        expected = ['start-migration-in']
    else:
        target = restart(target, host_agent, 'destination')
        assert any(i.startswith('scan-migrating')
                   for i in inputs(target, name, scans=True, own=True))
        conn.lookupByName(name).abortJob()
        migration.finish()
        expected = ['start-migration-in', 'stop-failed']
        target.wait_log('the failed incoming migration of a VM that runs on at '
                        'its source', own=True)
    assert migration.error is not None
    wait_inputs(target, name, expected)
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert inputs(source, name) == ['defined', 'resume', 'start']
    crash_where_it_runs(hypervisor, name, 'compute-1', uuid, recovery_api)


# --- a libvirtd restarted during a migration ---------------------------------

def restart_daemon(daemon, agent) -> None:
    """SIGKILL ``daemon`` (its QEMUs live on), start it again, and wait
    until ``agent`` has reconnected to it and scanned twice since."""
    daemon.kill()
    agent.wait_log('Lost the libvirt connection')
    daemon.start()
    agent.wait_log('Reconnected to libvirt')
    scanned = agent.output().count('Domain state scan:')
    agent.wait_log('Domain state scan:', count=scanned + 2)


@pytest.mark.parametrize('side', ['source', 'destination'])
def test_a_libvirtd_killed_and_restarted_during_a_live_migration_names_nothing(
        hypervisor, destination, two_hosts, slow_migration, recovery_api, side):
    """Either daemon's death fails the migration, and the VM runs on at the
    source. The source's: the destination destroys the incoming domain
    with the source's connection, and the source's agent reconnects to a
    daemon that cancelled the migration. The destination's: its agent
    reconnects to a daemon on which the incoming domain is gone."""
    source, target = two_hosts
    name = f'mig-libvirtd-{side}'
    uuid, migration = slow_migration(name)
    if side == 'source':
        restart_daemon(hypervisor, source)
    else:
        restart_daemon(destination, target)
    migration.finish()
    assert migration.error is not None
    time.sleep(QUIET)
    assert sent(recovery_api) == []
    sconn, dconn = libvirt.open(hypervisor.uri), libvirt.open(destination.uri)
    try:
        assert sconn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert name not in [d.name() for d in dconn.listAllDomains()]
    finally:
        sconn.close()
        dconn.close()
    crash_where_it_runs(hypervisor, name, 'compute-1', uuid, recovery_api)
