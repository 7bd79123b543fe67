"""The state machine's stories (``scenarios.py``), replayed through the real
filter, journal, outbox and SQLite store, with the clock and the sequence of
events scripted."""

import datetime
import pathlib
import threading

import libvirt
import pytest

from instancemonitor.domainstate import DomainMachine
from instancemonitor.domainstate import HeartbeatPolicy
from instancemonitor.events import NO_CODE
from instancemonitor.events import DomainEvent
from instancemonitor.events import EventKind
from instancemonitor.events import MigrationSource
from instancemonitor.events import Notification
from instancemonitor.filter import RECONCILIATION
from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.outbox import Outbox
from instancemonitor.pipeline import NotificationPipeline
from instancemonitor.service import RECOVERED_CONFIRM_WAIT
from instancemonitor.sources.reconcile import lifecycle_of
from instancemonitor.store import SqliteStateStore
from tests.unit.scenarios import CRASH
from tests.unit.scenarios import STORIES
from tests.unit.scenarios import UP
from tests.unit.scenarios import Story

T0 = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.UTC)
UP_AND_CRASH = UP + '5 STOPPED_FAILED\n'
UUID = '0b2e7f3c-4a5d-4e6f-8a9b-0c1d2e3f4a5b'
# Seconds between the rounds of a notification the API does not take.
RETRY_ROUND = 10.0
_AGENT = {'AGENT_CONNECTED':
          libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED,
          'AGENT_DISCONNECTED':
          libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED}


class Replay:
    """One domain's story through the agent's notification chain."""

    def __init__(self, story: Story, directory: pathlib.Path) -> None:
        self.story = story
        self.directory = directory
        self.now = 0.0
        self.domain_id = 0
        # The host's boot: BOOT makes another.
        self.boot = 1
        # Whether libvirt has the domain persistent (defined), as its scans say.
        self.persistent = not story.transient
        self.seqs: list[int] = []
        # What reached the API, and when; while it is down, every POST fails.
        self.sent: list[tuple[Notification, float]] = []
        self.api_down = False
        self._open()

    def _open(self) -> None:
        story = self.story
        self.store = SqliteStateStore(str(self.directory))
        policy = HeartbeatPolicy(
            threshold=story.threshold, grace=story.grace,
            report_never_answered=story.report_never_answered,
            pair=(story.heartbeat_event, 'STOPPED_FAILED'))
        self.journal = Journal(self.store, 'compute-1', DomainMachine(
            policy, duplicate_window=story.duplicate_window,
            migration_wait=story.migration_wait))
        # As the agent's: what a restart finds waits for the first scan.
        self.outbox = Outbox(self.store, monotonic=lambda: self.now,
                             utcnow=self._utcnow,
                             confirm_recovered_within=RECOVERED_CONFIRM_WAIT)
        self.outbox.start_confirmation_wait()  # libvirtd answers at once
        self.pipeline = NotificationPipeline(
            EventFilter(forward_all=story.forward == 'all',
                        reboot_window=story.reboot_window, boot=f'boot-{self.boot}'),
            self.journal, self.outbox)

    def _utcnow(self) -> datetime.datetime:
        return T0 + datetime.timedelta(seconds=self.now)

    def event(self, what: str, args: list[str]) -> DomainEvent | None:
        options = dict(a.split('=', 1) for a in args if '=' in a)
        seq = 10 * (len(self.seqs) + 1)
        if read := [a for a in args if a.startswith('read@')]:
            seq = 10 * int(read[0][5:]) - 5
        self.seqs.append(seq)
        if what.startswith('STARTED'):
            self.domain_id = int(options.get('id', self.domain_id + 1))
        domain_id = int(options.get('id', self.domain_id))
        kind, event, detail = EventKind.LIFECYCLE, NO_CODE, NO_CODE
        source, persistent = 'libvirt', None
        if what.startswith(('DEFINED_', 'UNDEFINED_')) and what != 'UNDEFINED_RENAMED':
            self.persistent = what.startswith('DEFINED_')
        if what == 'SCAN' and args[0] == 'absent':
            kind, source, domain_id = EventKind.NOT_LISTED, RECONCILIATION, -1
        elif what == 'SCAN':
            if {'transient', 'persistent'} & set(args):
                self.persistent = 'persistent' in args
            persistent = self.persistent
            state_reason = args[0].upper().split('-')
            state = getattr(libvirt, f'VIR_DOMAIN_{state_reason[0]}')
            reason = (getattr(libvirt, f'VIR_DOMAIN_{"_".join(state_reason)}')
                      if len(state_reason) > 1 else 0)
            found = lifecycle_of(state, reason)
            if found is None:
                return None  # a state the scan says nothing of
            event, detail = found
            source = RECONCILIATION
            if state == libvirt.VIR_DOMAIN_SHUTOFF:
                domain_id = -1
            elif 'id' in options:
                self.domain_id = domain_id
        elif what == 'REBOOT':
            kind = EventKind.REBOOT
        elif what.startswith('MIGRATION_'):
            kind, source, domain_id = EventKind.MIGRATION_SOURCE, 'migration-watch', -1
            event = MigrationSource[what.removeprefix('MIGRATION_')
                                    .removeprefix('SOURCE_')]
        elif what in _AGENT:
            kind, event = EventKind.AGENT_LIFECYCLE, _AGENT[what]
        elif what.startswith('PING_'):
            kind, event, source = EventKind.PING, int(what == 'PING_OK'), 'heartbeat'
        elif what == 'IO_ERROR_REASON':
            kind = EventKind.IO_ERROR_REASON
            event = libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE
        elif what.startswith(('WATCHDOG_', 'IO_ERROR_')):
            kind = EventKind(what.rsplit('_', 1)[0])
            event = getattr(libvirt, f'VIR_DOMAIN_EVENT_{what}')
        else:
            event = getattr(libvirt, f'VIR_DOMAIN_EVENT_{what.split("_")[0]}')
            detail = getattr(libvirt, f'VIR_DOMAIN_EVENT_{what}')
        return DomainEvent(kind=kind, domain_uuid=UUID, domain_name='vm-1',
                           event=event, detail=detail, detected_at=self._utcnow(),
                           source=source, domain_id=domain_id, seq=seq,
                           persistent=persistent)

    def step(self, line: str) -> None:
        seconds, what, *args = line.split()
        self.now = float(seconds)
        if what in ('RESTART', 'BOOT', 'API_DOWN', 'API_UP', 'TICK'):
            self.seqs.append(10 * (len(self.seqs) + 1))
            if what in ('RESTART', 'BOOT'):
                self.store.close()
                if what == 'BOOT':  # libvirtd numbers its domains from 1 again
                    self.boot, self.domain_id = self.boot + 1, 0
                self._open()
            elif what != 'TICK':
                self.api_down = what == 'API_DOWN'
        elif event := self.event(what, args):
            self.pipeline(event)
            if event.source == RECONCILIATION:
                self.outbox.release_recovered()
        self._deliver()

    def _deliver(self) -> None:
        """What a sender does with each notification due now: a POST that
        arrives, or, while the API is down, a round of failed ones."""
        while (n := self.outbox.take(threading.Event(), timeout=0.0)) is not None:
            if self.api_down:
                self.outbox.retry_later(n, RETRY_ROUND)
            else:
                self.outbox.delivered(n)
                self.sent.append((n, self.now))

    def notified(self) -> tuple[str, ...]:
        """What reached the API, then what is still to be sent."""
        return tuple(f'{n.event}/{n.vir_domain_event}' for n, _ in
                     self.sent + self.store.pending('masakari'))


def replay(story: Story, directory: pathlib.Path) -> tuple[str, ...]:
    run = Replay(story, directory)
    for line in filter(None, (line.strip() for line in story.steps.splitlines())):
        run.step(line)
    try:
        return run.notified()
    finally:
        run.store.close()


def test_there_are_enough_stories_and_each_has_its_own_name():
    assert len(STORIES) >= 100
    assert len({s.name for s in STORIES}) == len(STORIES)


@pytest.mark.parametrize('story', STORIES, ids=[s.name for s in STORIES])
def test_story(story, tmp_path):
    assert replay(story, tmp_path) == story.expect


def _pending(story: Story, directory: pathlib.Path) -> list[tuple[str, float, float]]:
    """(EVENT/DETAIL, seconds after T0 it is generated, seconds after T0 it
    is sent or due) of each notification sent or left to send."""
    run = Replay(story, directory)
    for line in filter(None, (line.strip() for line in story.steps.splitlines())):
        run.step(line)
    try:
        return [(f'{n.event}/{n.vir_domain_event}',
                 (n.generated_time - T0).total_seconds(), at)
                for n, at in run.sent] + [
            (f'{n.event}/{n.vir_domain_event}',
             (n.generated_time - T0).total_seconds(), due - T0.timestamp())
            for n, due in run.store.pending('masakari')]
    finally:
        run.store.close()


def test_a_second_crash_within_masakaris_duplicate_window_is_held_past_it(tmp_path):
    story = Story('two crashes 35 s apart', UP_AND_CRASH + '20 STARTED_BOOTED\n'
                  '21 RESTART\n40 STOPPED_FAILED', ())
    (first, second) = _pending(story, tmp_path)
    assert first == ('LIFECYCLE/STOPPED_FAILED', 5.0, 5.0)
    # 180 s after the first (and one more, for a database that keeps whole
    # seconds), across an agent restart: generated and due then, not at 40.
    assert second == ('LIFECYCLE/STOPPED_FAILED', 186.0, 186.0)


def test_crashes_further_apart_than_the_window_are_sent_at_once(tmp_path):
    story = Story('two crashes 200 s apart',
                  UP_AND_CRASH + '20 STARTED_BOOTED\n205 STOPPED_FAILED', ())
    assert [p[1:] for p in _pending(story, tmp_path)] == [(5.0, 5.0), (205.0, 205.0)]


def test_with_no_window_the_second_crash_goes_at_once(tmp_path):
    story = Story('two crashes, window off',
                  UP_AND_CRASH + '20 STARTED_BOOTED\n40 STOPPED_FAILED', (),
                  duplicate_window=0.0)
    assert [p[1:] for p in _pending(story, tmp_path)] == [(5.0, 5.0), (40.0, 40.0)]


def test_a_held_second_crash_is_withdrawn_if_the_vm_is_started_again(tmp_path):
    # Someone else started it: a recovery now would stop a running VM.
    story = Story('held crash, then started',
                  UP_AND_CRASH + '20 STARTED_BOOTED\n40 STOPPED_FAILED\n'
                  '60 STARTED_BOOTED', ())
    assert [p[1:] for p in _pending(story, tmp_path)] == [(5.0, 5.0)]


DEATH_IN_MIGRATION = UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n'


@pytest.mark.parametrize('outcome, sent_at', [
    ('6.1 MIGRATION_SOURCE_DEFINED\n6.3 MIGRATION_JOB_ENDED\n', 6.3),
    ('6.1 MIGRATION_SOURCE_GONE\n', 6.1),       # transient: gone either way
    ('6.1 MIGRATION_SOURCE_DEFINED\n', 36.0),   # no outcome: after the wait
    ('', 36.0)],                                # the watch never saw it
    ids=['job ended', 'transient', 'no outcome', 'not looked up'])
def test_a_death_in_a_migration_is_sent_once_it_is_known_lost(
        tmp_path, outcome, sent_at):
    story = Story('death in a migration',
                  DEATH_IN_MIGRATION + outcome + '36 TICK\n60 TICK', ())
    # generated when detected, sent (or due) when known lost.
    assert _pending(story, tmp_path) == [(CRASH, 6.0, sent_at)]


def test_a_death_in_a_migration_that_went_through_leaves_nothing(tmp_path):
    story = Story('death in a migration that went through', DEATH_IN_MIGRATION +
                  '6.1 MIGRATION_SOURCE_DEFINED\n8 MIGRATION_SOURCE_GONE\n', ())
    assert _pending(story, tmp_path) == []


def test_a_crash_after_a_failed_migration_whose_resume_was_missed_goes_at_once(
        tmp_path):
    # A scan found the source running again: its migration is over, and a
    # crash is no longer held for a migration's outcome.
    story = Story('resume missed', UP + '5 SUSPENDED_MIGRATED\n10 SCAN running\n'
                  '30 STOPPED_FAILED\n31 TICK', ())
    assert _pending(story, tmp_path) == [(CRASH, 30.0, 30.0)]


def test_a_domain_never_told_persistent_keeps_its_failure_when_not_listed(tmp_path):
    # Started and crashed between two scans, no define event seen: whether
    # it was undefined or was transient and vanished as it stopped, nothing
    # tells. Its crash stands: never lost. (Not a story: a truthful scan
    # added before the crash would tell that it is persistent.)
    story = Story('never told persistent', UP + '4 API_DOWN\n5 STOPPED_FAILED\n'
                  '15 TICK\n20 RESTART\n20 SCAN absent\n30 API_UP', ())
    assert replay(story, tmp_path) == (CRASH,)
