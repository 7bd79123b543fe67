import datetime
import threading
import time

import pytest

from instancemonitor.events import Notification
from instancemonitor.outbox import MemoryOutboxStore
from instancemonitor.outbox import Outbox
from instancemonitor.store import SqliteStateStore

T0 = datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def notification(uuid='u1', event='LIFECYCLE'):
    return Notification('compute-1', uuid, event, 'STOPPED_FAILED', T0)


def test_due_notifications_come_out_in_order_of_detection():
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    first, second = notification('a'), notification('b')
    box.add(first)
    box.add(second)
    stop = threading.Event()
    assert box.take(stop) is first
    assert box.take(stop) is second
    assert box.pending() == 2  # in flight until settled
    box.delivered(first)
    box.delivered(second)
    assert box.pending() == 0


def test_held_notification_waits_and_can_be_withdrawn():
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    held, other = notification('a'), notification('b')
    box.add(held, delay=5.0)
    box.add(other, delay=5.0)
    assert box.withdraw_waiting('a') == [held]
    clock.now += 5.0
    assert box.take(threading.Event()) is other
    assert box.withdraw_waiting('b') == []  # in flight: it goes on...
    assert box.pending() == 1


def test_one_withdrawn_in_flight_is_not_retried_but_may_be_delivered():
    store = MemoryOutboxStore()
    box = Outbox(store)
    stop = threading.Event()
    failing, answered = notification('a'), notification('b')
    box.add(failing)
    box.add(answered)
    assert box.take(stop) is failing and box.take(stop) is answered
    assert box.withdraw_waiting('a') == [] and box.withdraw_waiting('b') == []
    assert not box.wanted(failing) and not box.wanted(answered)
    # ...and is dropped at its failure, not rescheduled; delivered, it is
    # simply delivered.
    assert box.retry_later(failing, 10.0) is False
    box.delivered(answered)
    assert box.pending() == 0 and store.pending('masakari') == []
    assert box.dead_letters() == []


RECOVERIES = frozenset({'LIFECYCLE/STOPPED_FAILED', 'IO_ERROR/STOPPED_FAILED'})


@pytest.mark.parametrize('even_due, withdrawn', [(frozenset(), 1), (RECOVERIES, 2)],
                         ids=['a forwarded one due now is sent',
                              'a recovery due now is withdrawn too'])
def test_one_waiting_for_its_next_round_is_withdrawn_one_due_now_if_a_recovery(
        even_due, withdrawn):
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    stop = threading.Event()
    retrying, due = notification('a'), notification('a', 'IO_ERROR')
    box.add(retrying)
    assert box.take(stop) is retrying
    assert box.retry_later(retrying, 30.0)  # the API did not answer
    box.add(due)  # due, no sender has taken it yet
    assert box.withdraw_waiting('a', even_due=even_due) == [retrying, due][:withdrawn]
    sent = box.take(stop, 0.0)
    clock.now += 60.0
    assert box.take(stop, 0.0) is None
    assert (sent, box.pending()) == ((due, 1) if withdrawn == 1 else (None, 0))


def test_a_recovery_whose_round_just_came_due_is_withdrawn():
    # Its retry round came, but no sender has taken it when the domain runs
    # again: sending it now would recover a running VM.
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    stop = threading.Event()
    retrying = notification('a')
    box.add(retrying)
    assert box.take(stop) is retrying
    assert box.retry_later(retrying, 10.0)
    clock.now += 10.0
    assert box.withdraw_waiting('a', even_due=RECOVERIES) == [retrying]
    assert box.take(stop, 0.0) is None and box.pending() == 0


def test_only_the_pairs_named_are_withdrawn():
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    hang, io = notification('a', 'QEMU_GUEST_AGENT_ERROR'), notification('a', 'IO_ERROR')
    box.add(hang, delay=5.0)
    box.add(io, delay=5.0)
    assert box.withdraw_waiting('a', ('QEMU_GUEST_AGENT_ERROR/STOPPED_FAILED',)) == [hang]
    assert box.withdraw_waiting('a') == [io]


def test_a_held_notification_released_is_due_now_the_others_wait(tmp_path):
    clock = FakeClock()
    store = SqliteStateStore(str(tmp_path))
    box = Outbox(store, monotonic=clock, utcnow=lambda: T0)
    stop = threading.Event()
    crash, io, other = (notification('a'), notification('a', 'IO_ERROR'),
                        notification('b'))
    for n in (crash, io, other):
        box.add(n, delay=30.0)
    assert box.release_waiting('a', ('LIFECYCLE/STOPPED_FAILED',)) == [crash]
    assert box.take(stop, 0.0) is crash
    assert box.take(stop, 0.0) is None
    # Kept due now: a restart sends it at once too.
    assert {n.notification_id: due for n, due in store.pending('masakari')} == {
        crash.notification_id: T0.timestamp(),
        io.notification_id: T0.timestamp() + 30.0,
        other.notification_id: T0.timestamp() + 30.0}
    assert box.release_waiting('a', ('LIFECYCLE/STOPPED_FAILED',)) == []  # in flight
    clock.now += 30.0
    assert {box.take(stop, 0.0), box.take(stop, 0.0)} == {io, other}
    store.close()


def test_one_released_in_the_holding_block_that_added_it_goes_at_its_end():
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    held = notification('a')
    with box.holding():
        box.add(held, delay=30.0)
        assert box.release_waiting('a', ('LIFECYCLE/STOPPED_FAILED',)) == [held]
        assert box.take(threading.Event(), 0.0) is None
    assert box.take(threading.Event(), 0.0) is held


def test_one_a_restart_found_released_still_waits_for_the_first_scan(tmp_path):
    clock = FakeClock()
    store = SqliteStateStore(str(tmp_path))
    held = notification('a')
    store.insert(held, T0.timestamp() + 30.0)
    box = Outbox(store, monotonic=clock, utcnow=lambda: T0,
                 confirm_recovered_within=60.0)
    assert box.release_waiting('a', ('LIFECYCLE/STOPPED_FAILED',)) == [held]
    assert box.take(threading.Event(), 0.0) is None
    box.release_recovered()
    assert box.take(threading.Event(), 0.0) == held
    store.close()


def test_take_blocks_until_due_then_returns():
    box = Outbox()
    n = notification()
    box.add(n, delay=0.2)
    taken = []
    thread = threading.Thread(target=lambda: taken.append(box.take(threading.Event())))
    thread.start()
    thread.join(0.1)
    assert thread.is_alive() and taken == []
    thread.join(2)
    assert taken == [n]


def test_take_returns_none_once_stopped():
    box = Outbox()
    stop = threading.Event()
    result = []
    thread = threading.Thread(target=lambda: result.append(box.take(stop)))
    thread.start()
    stop.set()
    box.wake()
    thread.join(2)
    assert result == [None]


def test_rejected_notifications_are_kept_as_dead_letters():
    box = Outbox(monotonic=FakeClock())
    n = notification()
    box.add(n)
    box.take(threading.Event())
    box.rejected(n, 'HTTP 400: Host with name x could not be found.')
    assert box.pending() == 0
    (dead,) = box.dead_letters()
    assert dead.notification is n and 'could not be found' in dead.reason


def test_retry_later_puts_it_back_after_the_delay():
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    n = notification()
    box.add(n)
    stop = threading.Event()
    assert box.take(stop) is n
    box.retry_later(n, 10.0)
    assert box.pending() == 1
    clock.now += 10.0
    assert box.take(stop) is n


def test_notifications_added_while_holding_are_takeable_only_after_it():
    box = Outbox()
    stop = threading.Event()
    first, held_back = notification('a'), notification('b')
    with box.holding():
        box.add(first)
        box.add(held_back, delay=5.0)
        # Not scheduled yet: another thread cannot take it...
        taken = []
        taker = threading.Thread(target=lambda: taken.append(box.take(stop, 0.2)))
        taker.start()
        taker.join()
        assert taken == [None]
        # ...and a held one can still be withdrawn within the group.
        assert box.withdraw_waiting('b') == [held_back]
    assert box.take(stop, 1.0) is first
    assert box.pending() == 1


def test_released_notifications_are_taken_at_once_the_rest_at_the_end():
    box = Outbox()
    stop = threading.Event()
    first, held_back = notification('a'), notification('b')
    schedules = []
    box.on_schedule = lambda: schedules.append(time.monotonic())
    with box.holding():
        box.add(first)
        box.add(held_back, delay=5.0)
        assert box.take(stop, 0.1) is None  # not committed yet
        box.release_held()  # the transaction has committed
        # A sender thread may start for it now, not only at the end.
        assert len(schedules) == 1
        assert box.take(stop, 1.0) is first
        assert box.take(stop, 0.1) is None  # a hold still holds
        late = notification('c')
        box.add(late)  # after the release: held until the end
        assert box.take(stop, 0.1) is None
    assert len(schedules) == 2
    assert box.take(stop, 1.0) is late
    assert box.withdraw_waiting('b') == [held_back]


def test_on_a_quiet_outbox_the_committing_thread_starts_the_first_requests():
    box = Outbox()
    stop = threading.Event()
    ns = [notification(f'u{i}') for i in range(Outbox.START_MAX + 1)]
    held_back = notification('h')
    started_on = []

    def start(n):
        started_on.append((n, threading.current_thread()))
        return f'request of {n.instance_uuid}'
    with box.holding():
        for n in ns:
            box.add(n)
        box.add(held_back, delay=5.0)
        box.release_held(start)
    # The first START_MAX, on this thread, in order of detection; the rest
    # and the held one as usual.
    assert started_on == [(n, threading.current_thread())
                          for n in ns[:Outbox.START_MAX]]
    assert box.wait_sent(ns[0], 0)  # on the wire already
    taken = [box.take(stop, 1.0) for _ in ns]
    assert taken == ns
    assert [box.started(n) for n in taken] == [
        f'request of {n.instance_uuid}' for n in ns[:Outbox.START_MAX]] + [None]
    assert box.started(ns[0]) is None  # handed on once
    assert box.take(stop, 0.1) is None


def test_the_sink_is_told_of_each_due_notification_added_while_holding_first():
    stored, told = [], []

    class Store(MemoryOutboxStore):
        def insert(self, notification, due_at):
            stored.append(notification.instance_uuid)
    box = Outbox(Store())
    box.on_held_due = lambda: told.append(list(stored))
    box.add(notification('outside'))  # not in a holding block
    with box.holding():
        box.add(notification('held'), delay=5.0)  # not due now
        assert told == []
        box.add(notification('due'))
        box.add(notification('due too'))
    # Each time before the due one was stored.
    assert told == [['outside', 'held'], ['outside', 'held', 'due']]


def test_a_failing_head_start_loses_nothing(caplog):
    box = Outbox()

    def fails():
        raise RuntimeError('boom')
    box.on_held_due = fails
    n = notification('a')
    with box.holding():
        box.add(n)
    assert box.take(threading.Event(), 1.0) is n
    assert 'Getting ready to send notification' in caplog.text


def test_nothing_is_started_while_other_notifications_are_due():
    box = Outbox()
    stop = threading.Event()
    waiting, fresh = notification('a'), notification('b')
    box.add(waiting)  # due, not taken yet
    started = []
    with box.holding():
        box.add(fresh)
        box.release_held(lambda n: started.append(n) or 'request')
    assert started == []
    assert [box.take(stop, 1.0), box.take(stop, 1.0)] == [waiting, fresh]


def test_a_failing_start_leaves_the_notification_to_a_sender(caplog):
    box = Outbox()
    stop = threading.Event()
    n = notification('a')

    def start(_):
        raise RuntimeError('boom')
    with box.holding():
        box.add(n)
        box.release_held(start)
    assert box.take(stop, 1.0) is n and box.started(n) is None
    assert 'a sender sends it' in caplog.text


def test_only_the_holder_releases_its_additions():
    box = Outbox()
    stop = threading.Event()
    with box.holding():
        box.add(notification('a'))
        other = threading.Thread(target=box.release_held)
        other.start()
        other.join()
        taken = []
        taker = threading.Thread(target=lambda: taken.append(box.take(stop, 0.2)))
        taker.start()
        taker.join()
        assert taken == [None]
    assert box.take(stop, 1.0) is not None


def test_the_oldest_pending_age_is_from_detection_and_zero_when_empty():
    clock = FakeClock()
    box = Outbox(monotonic=clock)
    assert box.oldest_age() == 0.0
    first = notification('a')
    box.add(first)
    clock.now += 30.0
    box.add(notification('b'))
    clock.now += 5.0
    assert box.oldest_age() == 35.0
    box.delivered(first)
    assert box.oldest_age() == 5.0


def _recovered(directory, clock, *notifications, wait=30.0, answering=True):
    """An outbox over a state database that already holds ``notifications``,
    due now, as after a restart; ``answering``: libvirtd answers at once."""
    store = SqliteStateStore(str(directory))
    for n in notifications:
        store.insert(n, 0.0)
    box = Outbox(store, monotonic=clock, confirm_recovered_within=wait)
    if answering:
        box.start_confirmation_wait()
    return box, store


def test_what_a_restart_finds_waits_for_the_first_scan_which_may_withdraw_it(tmp_path):
    clock = FakeClock()
    stop = threading.Event()
    started, crashed = notification('a'), notification('b')
    box, store = _recovered(tmp_path, clock, started, crashed)
    assert box.take(stop, 0.0) is None and box.pending() == 2
    # The scan finds 'a' in a new run (withdrawn), 'b' still shut off.
    assert box.withdraw_waiting('a') == [started]
    box.release_recovered()
    assert box.take(stop, 0.0) == crashed
    assert [n for n, _ in store.pending('masakari')] == [crashed]


def test_with_no_scan_what_a_restart_found_goes_after_the_wait(tmp_path):
    clock = FakeClock()
    stop = threading.Event()
    crashed = notification('b')
    box, _ = _recovered(tmp_path, clock, crashed)
    clock.now += 29.0
    assert box.take(stop, 0.0) is None
    clock.now += 1.0
    assert box.take(stop, 0.0) == crashed


def test_while_libvirtd_cannot_be_reached_what_a_restart_found_waits(tmp_path):
    # Its recovery could not be carried out here meanwhile, and the VM may
    # have been started again or undefined while the agent was stopped.
    clock = FakeClock()
    stop = threading.Event()
    crashed = notification('b')
    box, _ = _recovered(tmp_path, clock, crashed, answering=False)
    clock.now += 3600.0
    assert box.take(stop, 0.0) is None
    box.start_confirmation_wait()  # libvirtd answers: the wait begins
    clock.now += 20.0
    box.start_confirmation_wait()  # a reconnection does not begin it again
    clock.now += 9.0
    assert box.take(stop, 0.0) is None
    clock.now += 1.0
    assert box.take(stop, 0.0) == crashed


def test_a_take_waiting_for_libvirtd_wakes_when_it_answers(tmp_path):
    crashed = notification('b')
    box, _ = _recovered(tmp_path, time.monotonic, crashed, wait=0.3,
                        answering=False)
    threading.Timer(0.3, box.start_confirmation_wait).start()
    started = time.monotonic()
    assert box.take(threading.Event(), timeout=5.0) == crashed
    assert 0.55 <= time.monotonic() - started < 2.5


def test_a_take_waiting_for_the_confirmation_wakes_at_its_end(tmp_path):
    crashed = notification('b')
    box, _ = _recovered(tmp_path, time.monotonic, crashed, wait=0.3)
    started = time.monotonic()
    assert box.take(threading.Event(), timeout=5.0) == crashed
    assert 0.25 <= time.monotonic() - started < 2.0


def test_new_notifications_do_not_wait_for_the_confirmation(tmp_path):
    clock = FakeClock()
    stop = threading.Event()
    box, _ = _recovered(tmp_path, clock, notification('b'))
    fresh = notification('c')
    box.add(fresh)
    assert box.take(stop, 0.0) is fresh


def test_a_call_after_held_runs_once_the_outermost_holding_block_has_scheduled():
    box = Outbox()
    stop = threading.Event()
    n = notification('a')
    calls = []
    box.after_held(lambda: calls.append('outside: at once'))
    assert calls == ['outside: at once']
    with box.holding():
        with box.holding():  # nested, as a pipeline's group in the bus's
            box.add(n)
            box.after_held(lambda: calls.append(box.take(stop, 0.0)))
        assert calls == ['outside: at once']  # the inner block does not count
    # After the outer block: scheduled by then, so the call could take it.
    assert calls == ['outside: at once', n]


def test_a_failing_call_after_held_is_logged_and_the_others_still_run(caplog):
    box = Outbox()
    calls = []
    with box.holding():
        box.after_held(lambda: 1 / 0)
        box.after_held(lambda: calls.append('ran'))
    assert calls == ['ran'] and 'after a holding block failed' in caplog.text
