import contextlib
import threading
import time

import libvirt

from instancemonitor.events import EventKind
from instancemonitor.events import next_seq
from instancemonitor.sources.reconcile import Reconciler


class Domain:
    def __init__(self, uuid, name, state, reason, persistent=True):
        self.uuid, self._name, self.state_ = uuid, name, (state, reason)
        self.persistent = persistent

    def UUIDString(self):
        return self.uuid

    def name(self):
        return self._name

    def ID(self):
        return -1 if self.state_[0] == libvirt.VIR_DOMAIN_SHUTOFF else 3


class Conn:
    def __init__(self, domains, fail=False):
        self.domains, self.fail = domains, fail

    def getAllDomainStats(self, stats):
        assert stats == libvirt.VIR_DOMAIN_STATS_STATE
        if self.fail:
            raise libvirt.libvirtError('client socket is closed')
        return [(d, {'state.state': d.state_[0], 'state.reason': d.state_[1]})
                for d in self.domains]

    def listAllDomains(self, flags):
        assert flags == libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT
        return [d for d in self.domains if d.persistent]


def test_every_state_becomes_the_event_it_stands_for():
    published = []
    domains = [
        Domain('u1', 'killed', libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED),
        Domain('u2', 'failed', libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_FAILED),
        Domain('u3', 'io', libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR),
        Domain('u4', 'wd', libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_WATCHDOG),
        Domain('u5', 'off', libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED),
        Domain('u6', 'paused', libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER),
        Domain('u7', 'up', libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED,
               persistent=False),
        Domain('u8', 'moving', libvirt.VIR_DOMAIN_PAUSED,
               libvirt.VIR_DOMAIN_PAUSED_MIGRATION),
    ]
    reconciler = Reconciler(published.append, contextlib.nullcontext, 0)
    reconciler.FAILURE_SETTLE = 0.0
    failures = reconciler.scan(Conn(domains))
    assert failures == 2  # shut off on a failure
    assert [(e.domain_uuid, e.event, e.detail) for e in published] == [
        ('u3', libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
         libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR),
        ('u4', libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
         libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG),
        ('u5', libvirt.VIR_DOMAIN_EVENT_STOPPED,
         libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED),
        ('u6', libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
         libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),
        ('u7', libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED),
        ('u8', libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
         libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
        # Shut off on a failure: last, after FAILURE_SETTLE.
        ('u1', libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED),
        ('u2', libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED),
    ]
    assert {(e.kind, e.source) for e in published} == {
        (EventKind.LIFECYCLE, 'reconciliation')}
    # Active domains carry their id; one sequence number, taken before the read.
    assert [e.domain_id for e in published] == [3, 3, -1, 3, 3, 3, -1, -1]
    assert len({e.seq for e in published}) == 1 and published[0].seq < next_seq()
    # Whether each is persistent: all but the one created transient.
    assert [e.persistent for e in published] == [
        True, True, True, True, False, True, True, True]


def test_each_domain_the_journal_knows_and_the_scan_does_not_list_is_told():
    told = []
    reconciler = Reconciler(
        told.append, contextlib.nullcontext, 0,
        scanned=lambda uuids, seq: told.append((uuids, seq)),
        known=lambda: [('u1', 'up'), ('gone', 'vm-gone')])
    reconciler.scan(Conn([Domain('u1', 'up', libvirt.VIR_DOMAIN_RUNNING,
                                 libvirt.VIR_DOMAIN_RUNNING_BOOTED)]))
    listed, missing, scanned = told
    assert (listed.kind, listed.domain_uuid) == (EventKind.LIFECYCLE, 'u1')
    assert (missing.kind, missing.domain_uuid, missing.domain_name, missing.source,
            missing.persistent) == (EventKind.NOT_LISTED, 'gone', 'vm-gone',
                                    'reconciliation', None)
    # Before what is told after the scan (which releases what a restart
    # recovered), with the scan's own sequence number.
    assert scanned == ({'u1'}, listed.seq) and missing.seq == listed.seq


def test_a_scan_that_fails_tells_no_domain_missing():
    published = []
    Reconciler(published.append, contextlib.nullcontext, 0,
               known=lambda: [('gone', 'vm-gone')]).scan(Conn([], fail=True))
    assert published == []


def test_a_connection_that_cannot_answer_reports_nothing(caplog):
    published = []
    assert Reconciler(published.append, contextlib.nullcontext, 0).scan(
        Conn([], fail=True)) == 0
    assert published == [] and 'nothing is taken for a failure' in caplog.text


def test_what_a_scan_finds_shut_off_on_a_failure_waits_for_libvirts_events():
    # A guest panic: the state says shut off, crashed, a few ms before
    # libvirt's CRASHED and STOPPED_CRASHED events of it reach the agent.
    # Those events must go first, so that the scan is stale for the domain.
    published = []
    domains = [
        Domain('u1', 'panicked', libvirt.VIR_DOMAIN_SHUTOFF,
               libvirt.VIR_DOMAIN_SHUTOFF_CRASHED),
        Domain('u2', 'up', libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED),
    ]
    reconciler = Reconciler(published.append, contextlib.nullcontext, 0)
    reconciler.FAILURE_SETTLE = 0.3
    events = threading.Timer(0.05, published.append, ['libvirt: STOPPED_CRASHED'])
    events.start()
    try:
        assert reconciler.scan(Conn(domains)) == 1
    finally:
        events.join()
    assert [getattr(e, 'domain_uuid', e) for e in published] == [
        'u2', 'libvirt: STOPPED_CRASHED', 'u1']


class WatchedConn(Conn):
    """Records which thread read the states."""

    def __init__(self, domains):
        super().__init__(domains)
        self.readers = []
        self.read = threading.Event()

    def getAllDomainStats(self, stats):
        self.readers.append(threading.current_thread().name)
        self.read.set()
        return super().getAllDomainStats(stats)


def test_a_new_connection_is_scanned_on_the_workers_thread_not_the_callers():
    # The connection thread registers the reconciler on each connect; the
    # scan (with its FAILURE_SETTLE wait for a crashed domain) must not hold
    # it, or the agent is not taken for connected for half a second.
    published = []
    conn = WatchedConn([Domain('u1', 'killed', libvirt.VIR_DOMAIN_SHUTOFF,
                               libvirt.VIR_DOMAIN_SHUTOFF_CRASHED)])
    reconciler = Reconciler(published.append, lambda: contextlib.nullcontext(conn), 0)
    reconciler.FAILURE_SETTLE = 0.2
    # Registered before the worker runs (the service starts the connection
    # first): the scan is done once it does.
    assert reconciler.register(conn) == []
    assert conn.readers == [] and published == []
    reconciler.start()
    try:
        assert conn.read.wait(5)
        deadline = time.monotonic() + 5
        while not published and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reconciler.stop()
    assert conn.readers == ['reconcile']
    assert [(e.domain_uuid, e.detail) for e in published] == [
        ('u1', libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)]


def test_each_connection_is_scanned_once_and_every_scan_borrows_the_current_one():
    first, second = WatchedConn([Domain('a', 'a', 1, 1)]), WatchedConn(
        [Domain('b', 'b', 1, 1)])
    lent = [first]
    scanned = []
    reconciler = Reconciler(lambda event: None,
                            lambda: contextlib.nullcontext(lent[0]), 3600,
                            scanned=lambda uuids, seq: scanned.append(uuids))
    reconciler.start()
    try:
        reconciler.register(first)
        assert first.read.wait(5)
        lent[0] = second
        reconciler.register(second)
        assert second.read.wait(5)
        # A changed interval wakes the worker but is no scan of its own...
        periodic = WatchedConn([])
        lent[0] = periodic
        reconciler.set_interval(0.05)
        # ...the interval's scans read the connection open now.
        assert periodic.read.wait(5)
    finally:
        reconciler.stop()
    assert first.readers == second.readers == ['reconcile']
    assert scanned[:2] == [{'a'}, {'b'}]
