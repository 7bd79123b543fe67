"""Sender threads: take due notifications from the outbox and deliver them.

One thread always runs; while due notifications wait and every thread is
busy, another starts, up to ``max_in_flight`` at a time, so a burst of
failures is in flight at once; those extra threads end once idle for
``IDLE_EXIT`` seconds. Notifications are taken in order of detection. A
notification whose first request the committing thread already wrote
(``Outbox.release_held``) comes with it: its sender reads the answer.

Each notification gets up to ``retry_max`` retries in a round (tenacity), then
goes back into the outbox for a later round: nothing is dropped for want of
an answer. Only a final answer takes it out: delivered (or duplicate), or
rejected, which keeps it as a dead letter and logs the server's message.
"""

import functools
import itertools
import logging
import threading
from collections.abc import Callable

import tenacity

from instancemonitor import clock
from instancemonitor.events import RECOVERY_SINK
from instancemonitor.events import Notification
from instancemonitor.outbox import Outbox
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome
from instancemonitor.sinks import Sink
from instancemonitor.sinks import httpclient
from instancemonitor.supervision import PROGRESS_TICK
from instancemonitor.supervision import Liveness

LOG = logging.getLogger(__name__)


class RetryPolicy:
    """The ``[callback]`` retry options as a tenacity policy."""

    def __init__(self, retry_max: int, interval: float, backoff: bool = False,
                 interval_max: float = 300.0) -> None:
        self.retry_max = retry_max
        self.interval = interval
        self.backoff = backoff
        self.interval_max = interval_max

    def wait(self) -> tenacity.wait.wait_base:
        if self.backoff:
            return tenacity.wait_exponential_jitter(
                initial=self.interval, max=self.interval_max,
                jitter=self.interval)
        return tenacity.wait_fixed(self.interval)

    def next_round_delay(self) -> float:
        return self.interval_max if self.backoff else self.interval


class _Stopping(Exception):
    """Raised out of a retry wait when the sender is stopped."""


class _Withdrawn(Exception):
    """Raised instead of a retry of a notification withdrawn meanwhile."""


class Sender:
    # Seconds without work after which an extra thread ends.
    IDLE_EXIT = 30.0

    def __init__(self, outbox: Outbox, sink: Sink, policy: RetryPolicy,
                 max_in_flight: int = 1, liveness: Liveness | None = None,
                 on_settle: Callable[[Notification, Answer], None] = lambda n, a: None,
                 ) -> None:
        self._outbox = outbox
        self._on_settle = on_settle
        self._sink = sink
        self._policy = policy
        self._liveness = liveness
        self.max_in_flight = max_in_flight
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy = 0
        self._numbers = itertools.count(1)
        self._first = threading.Thread(target=self._run, daemon=True,
                                       name=f'sender-{sink.name}-0')
        # Every thread alive, the first included.
        self._alive: set[threading.Thread] = {self._first}
        self.peak_threads = 1
        outbox.on_schedule = self._grow

    def start(self) -> None:
        self._first.start()

    @property
    def threads(self) -> list[threading.Thread]:
        """The thread that runs for as long as the sender (the extra ones
        come and go)."""
        return [self._first]

    def thread_count(self) -> int:
        with self._lock:
            return len(self._alive)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; an interrupted notification stays pending."""
        self._stop.set()
        self._outbox.wake()
        with self._lock:
            alive = list(self._alive)
        for thread in alive:
            if thread.ident is not None:
                thread.join(timeout)

    def _mark(self) -> None:
        # Only the first thread is watched: it never ends.
        if self._liveness is not None and threading.current_thread() is self._first:
            self._liveness.mark(self._first.name)

    def _grow(self) -> None:
        """Another thread, if every one is busy and more is due."""
        # Called after every take and schedule: the usual answer (a thread
        # is idle, or the bound is reached) comes without the lock that
        # hundreds of busy senders would queue on. Whoever is idle calls
        # this again once it takes something.
        if (self._busy < len(self._alive)
                or len(self._alive) >= self.max_in_flight):
            return
        with self._lock:
            if (not self._first.is_alive() or self._stop.is_set()
                    or len(self._alive) >= self.max_in_flight
                    or self._busy < len(self._alive) or not self._outbox.due()):
                return
            thread = threading.Thread(
                target=self._run, daemon=True,
                name=f'sender-{self._sink.name}-{next(self._numbers)}')
            self._alive.add(thread)
            self.peak_threads = max(self.peak_threads, len(self._alive))
        thread.start()

    def _run(self) -> None:
        extra = threading.current_thread() is not self._first
        tick = min(PROGRESS_TICK, self.IDLE_EXIT) if extra else PROGRESS_TICK
        idle_since = clock.monotonic()
        while not self._stop.is_set():
            self._mark()
            notification = self._outbox.take(self._stop, timeout=tick)
            if notification is None:
                if extra and clock.monotonic() - idle_since >= self.IDLE_EXIT:
                    with self._lock:
                        self._alive.discard(threading.current_thread())
                    return
                continue
            with self._lock:
                self._busy += 1
            self._grow()
            try:
                with httpclient.on_request(
                        sent=functools.partial(self._outbox.sent, notification)):
                    answer = self.deliver(notification,
                                          self._outbox.started(notification))
            except Exception:
                LOG.exception('Unexpected failure sending notification %s; '
                              'keeping it', notification.notification_id)
                answer = Answer(Outcome.RETRY, None, 'internal error')
            self._settle(notification, answer)
            with self._lock:
                self._busy -= 1
            idle_since = clock.monotonic()

    def deliver(self, notification: Notification,
                started: object | None = None) -> Answer:
        """Send with retries; return the final answer or the last transient
        one. ``started``: the first attempt's request, already written by
        the sink's ``start`` (its answer is read here)."""
        # NOTE: the first attempt goes out before tenacity is involved, which
        # costs about 27 us of CPU per call (several times that on a CPU just
        # woken from idle): the detection path is not charged for it. Retries
        # run in tenacity with the first answer as attempt 1, so attempt
        # numbers, waits and log lines are tenacity's as before.
        first = (self._sink.send(notification) if started is None
                 else self._sink.finish(started))
        if first.outcome is not Outcome.RETRY or not self._policy.retry_max:
            return first
        answers = [first]

        def attempt(notification: Notification) -> Answer:
            if answers:
                return answers.pop()
            if not self._outbox.wanted(notification):
                raise _Withdrawn()
            return self._sink.send(notification)

        def log_retry(state: tenacity.RetryCallState) -> None:
            LOG.warning(
                'Notification %s to %s not delivered (attempt %d: %s); '
                'retrying in %.1f s', notification.notification_id,
                self._sink.name, state.attempt_number, state.outcome.result(),
                state.upcoming_sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._policy.retry_max + 1),
            wait=self._policy.wait(),
            retry=tenacity.retry_if_result(
                lambda answer: answer.outcome is Outcome.RETRY),
            sleep=self._sleep,
            before_sleep=log_retry,
            retry_error_callback=lambda state: state.outcome.result())
        try:
            return retrying(attempt, notification)
        except _Stopping:
            return Answer(Outcome.RETRY, None, 'sender stopped')
        except _Withdrawn:
            return Answer(Outcome.RETRY, None, 'withdrawn')

    def _sleep(self, seconds: float) -> None:
        deadline = clock.monotonic() + seconds
        while (remaining := deadline - clock.monotonic()) > 0:
            if self._stop.wait(min(remaining, PROGRESS_TICK)):
                raise _Stopping()
            self._mark()

    def _settle(self, notification: Notification, answer: Answer) -> None:
        nid = notification.notification_id
        payload = notification.pair
        if answer.outcome is not Outcome.RETRY:
            self._on_settle(notification, answer)
        if answer.outcome in (Outcome.DELIVERED, Outcome.DUPLICATE):
            self._outbox.delivered(notification)
            # NOTE: a delivery to an event subscriber is a DEBUG line: at
            # dozens of events a second they would flood the log (and cost
            # about 40 us of CPU each); their failures are still warnings,
            # and instancemonitor_notifications_sent_total counts them.
            LOG.log(logging.INFO if self._sink.name == RECOVERY_SINK
                    else logging.DEBUG,
                    'Notification %s (%s of %s) delivered to %s (%s)', nid,
                    payload, notification.instance_uuid, self._sink.name, answer)
        elif answer.outcome is Outcome.REJECTED:
            self._outbox.rejected(notification, str(answer))
            LOG.error('Notification %s (%s of %s) rejected by %s for good '
                      '(%s); kept as a dead letter', nid, payload,
                      notification.instance_uuid, self._sink.name, answer)
        elif self._stop.is_set():
            self._outbox.retry_later(notification, 0.0)
        elif not self._outbox.wanted(notification):
            self._outbox.retry_later(notification, 0.0)  # drops it
            LOG.info('Notification %s (%s of %s) withdrawn: the domain runs '
                     'again; not retried', nid, payload, notification.instance_uuid)
        else:
            delay = self._policy.next_round_delay()
            if not self._outbox.retry_later(notification, delay):
                return  # too old: now a dead letter
            LOG.error('Notification %s (%s of %s) still not delivered to %s '
                      'after %d attempts (%s); kept pending, next round in '
                      '%.1f s', nid, payload, notification.instance_uuid,
                      self._sink.name, self._policy.retry_max + 1, answer,
                      delay)
