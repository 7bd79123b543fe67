"""A scan's findings go on the bus after the events libvirt received before
its answer, on libvirt's real event loop and test driver."""

import contextlib
import threading
import time
import uuid

import libvirt
import pytest

from instancemonitor.events import EventKind
from instancemonitor.sources.lifecycle import LibvirtEventSource
from instancemonitor.sources.reconcile import Reconciler
from instancemonitor.virt import eventloop
from tests.integration.test_testdriver import DOMAIN_XML
from tests.processes import wait_for


@contextlib.contextmanager
def event_loop_held():
    """libvirt's event loop busy in a timer of ours until the block ends:
    what libvirt receives meanwhile is queued, its callbacks not run."""
    eventloop.start()
    holding, release = threading.Event(), threading.Event()

    def hold(timer: int, _opaque: object) -> None:
        libvirt.virEventRemoveTimeout(timer)
        holding.set()
        release.wait(10)

    libvirt.virEventAddTimeout(0, hold, None)
    assert holding.wait(5)
    try:
        yield
    finally:
        release.set()


@pytest.fixture(params=['in-process', 'libvirtd'])
def test_driver_uri(request) -> str:
    """The test driver in this process, or served by a private libvirtd:
    there the events come on the socket before the scan's answer, read by
    the thread that waits for it."""
    if request.param == 'in-process':
        return 'test:///default'
    return request.getfixturevalue('test_libvirtd').uri


def test_a_scan_publishes_after_the_events_libvirt_queued_before_its_answer(
        client, test_driver_uri):
    eventloop.start()
    conn = client(test_driver_uri)
    published = []
    LibvirtEventSource(published.append).register(conn)
    domain_uuid = str(uuid.uuid4())
    name = f'vm-{domain_uuid[:8]}'
    dom = conn.defineXML(DOMAIN_XML.format(name=name, uuid=domain_uuid))
    dom.create()
    wait_for(lambda: len(published) == 2, 5, 'defined and started')
    scanner = Reconciler(published.append, contextlib.nullcontext, 0,
                         known=lambda: [(domain_uuid, name)])
    with event_loop_held():
        dom.destroy()
        dom.undefine()
        scan = threading.Thread(target=scanner.scan, args=(conn,))
        scan.start()
        time.sleep(0.3)
        assert [e.kind for e in published] == [EventKind.LIFECYCLE] * 2
    scan.join(5)
    assert not scan.is_alive()
    mine = [e for e in published if e.domain_uuid == domain_uuid]
    assert [(e.kind, e.event) for e in mine[2:]] == [
        (EventKind.LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED),
        (EventKind.LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_UNDEFINED),
        (EventKind.NOT_LISTED, -1)]
    assert mine[-1].seq < mine[-2].seq  # read before them: stale for the domain


def test_a_scan_takes_nothing_when_the_event_loop_does_not_catch_up(client, caplog):
    conn = client('test:///default')
    published = []
    scanner = Reconciler(published.append, contextlib.nullcontext, 0,
                         known=lambda: [('gone', 'vm-gone')])
    scanner.EVENTS_CATCH_UP = 0.2
    with event_loop_held():
        assert scanner.scan(conn) == 0
    assert published == []
    assert "event loop did not run the events received before its answer" in caplog.text


def test_the_loop_getting_there_as_the_wait_gives_up_is_caught_up(monkeypatch):
    """The timer runs (and removes itself) just as the wait times out: the
    waiter's removal fails, and the loop did catch up."""
    eventloop.start()
    given_up_at = 0.123

    class LateWait(threading.Event):
        def wait(self, timeout=None):
            if timeout != given_up_at:
                return super().wait(timeout)
            assert super().wait(5)  # the loop ran the timer...
            time.sleep(0.05)
            return False            # ...as the wait gave up

    monkeypatch.setattr(eventloop.threading, 'Event', LateWait)
    assert eventloop.caught_up(given_up_at)
