import threading

from instancemonitor.bus import WILDCARD
from instancemonitor.bus import EventBus
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind


def run(bus, **options):
    stop = threading.Event()
    thread = threading.Thread(target=bus.run, args=(stop,), kwargs=options)
    thread.start()
    return stop, thread


def test_subscribers_get_their_kinds_and_wildcards_everything_in_order():
    bus = EventBus()
    lifecycle, everything, done = [], [], threading.Event()
    bus.subscribe(EventKind.LIFECYCLE, lifecycle.append)
    bus.subscribe(WILDCARD, everything.append)
    bus.subscribe(EventKind.WATCHDOG, lambda e: done.set())
    events = [DomainEvent(EventKind.LIFECYCLE, 'u1', 'a', 5, 1),
              DomainEvent(EventKind.REBOOT, 'u1', 'a'),
              DomainEvent(EventKind.LIFECYCLE, 'u2', 'b', 2, 0),
              DomainEvent(EventKind.WATCHDOG, 'u2', 'b', 1)]
    for event in events:
        bus.publish(event)
    stop, thread = run(bus)
    assert done.wait(5)
    stop.set()
    bus.wake()
    thread.join(5)
    assert lifecycle == [events[0], events[2]]
    assert everything == events


def test_a_failing_subscriber_does_not_stop_the_others(caplog):
    bus = EventBus()
    got = threading.Event()

    def broken(event):
        raise RuntimeError('boom')

    bus.subscribe(WILDCARD, broken)
    bus.subscribe(WILDCARD, lambda e: got.set())
    bus.publish(DomainEvent(EventKind.REBOOT, 'u', 'n'))
    stop, thread = run(bus)
    assert got.wait(5)
    stop.set()
    bus.wake()
    thread.join(5)
    assert not thread.is_alive()
    assert 'boom' in caplog.text


def test_publish_never_blocks_and_only_enqueues():
    bus = EventBus()
    calls = []
    bus.subscribe(WILDCARD, calls.append)
    for i in range(10000):
        bus.publish(DomainEvent(EventKind.REBOOT, str(i), 'n'))
    assert calls == [] and bus.pending() == 10000


def test_stopping_dispatches_what_was_published_before_the_stop():
    bus = EventBus()
    got = []
    bus.subscribe(WILDCARD, got.append)
    events = [DomainEvent(EventKind.REBOOT, str(i), 'n') for i in range(100)]
    for event in events:
        bus.publish(event)
    stop = threading.Event()
    stop.set()
    bus.wake()
    bus.run(stop)  # returns once the queue up to the wake is done
    assert got == events


def test_events_waiting_together_are_dispatched_in_one_group_in_order():
    import contextlib

    bus = EventBus()
    got, groups = [], []

    @contextlib.contextmanager
    def group():
        groups.append(len(got))
        yield
        groups.append(len(got))

    bus.subscribe(WILDCARD, got.append)
    events = [DomainEvent(EventKind.REBOOT, str(i), 'n') for i in range(300)]
    for event in events:
        bus.publish(event)
    stop = threading.Event()
    stop.set()
    bus.wake()
    bus.run(stop, group=group)
    assert got == events
    # At most GROUP_MAX (256) per group; the wake ends the last one.
    assert groups == [0, 256, 256, 300]


def test_an_event_alone_is_dispatched_without_a_group():
    bus = EventBus()
    got, groups = [], []
    bus.subscribe(WILDCARD, got.append)
    bus.subscribe(WILDCARD, lambda e: done.set())
    done = threading.Event()
    stop, thread = run(bus, group=lambda: groups.append(1))
    bus.publish(DomainEvent(EventKind.REBOOT, 'u', 'n'))
    assert done.wait(5)
    stop.set()
    bus.wake()
    thread.join(5)
    assert len(got) == 1 and groups == []


def test_a_call_after_pending_comes_after_every_event_published_before_it(caplog):
    bus = EventBus()
    got = []
    bus.subscribe(WILDCARD, got.append)
    events = [DomainEvent(EventKind.REBOOT, str(i), 'n') for i in range(10)]
    for event in events[:5]:
        bus.publish(event)
    bus.after_pending(lambda: got.append('called'))
    bus.after_pending(lambda: 1 / 0)  # logged, and the dispatch goes on
    for event in events[5:]:
        bus.publish(event)
    stop = threading.Event()
    stop.set()
    bus.wake()
    bus.run(stop)
    assert got == events[:5] + ['called'] + events[5:]
    assert 'after the pending events failed' in caplog.text
