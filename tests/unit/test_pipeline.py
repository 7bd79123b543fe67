"""The notification chain's log lines: one per failure, after the commit."""

import dataclasses
import logging

from instancemonitor.filter import EventFilter
from instancemonitor.journal import Journal
from instancemonitor.journal import MemoryJournalStore
from instancemonitor.outbox import Outbox
from instancemonitor.pipeline import NotificationPipeline
from tests.unit.test_journal import STARTED
from tests.unit.test_journal import STOPPED_FAILED
from tests.unit.test_journal import UUID
from tests.unit.test_journal import lifecycle


def journal_lines(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == 'instancemonitor.journal']


def chain():
    outbox = Outbox()
    pipeline = NotificationPipeline(
        EventFilter(forward_all=False, reboot_window=0.0),
        Journal(MemoryJournalStore(), 'compute-1'), outbox, group=outbox.holding)
    return outbox, pipeline


def test_a_failure_is_one_line_with_its_transition(caplog):
    caplog.set_level(logging.INFO)
    outbox, pipeline = chain()
    pipeline(lifecycle(*STARTED))
    caplog.clear()
    pipeline(lifecycle(*STOPPED_FAILED, seconds=5))
    (line,) = journal_lines(caplog)
    assert line.startswith(f'Domain instance-0001 ({UUID}): stop-failed: '
                           'running => failed; LIFECYCLE/STOPPED_FAILED detected at ')
    assert line.endswith(' queued')


def test_events_dispatched_together_are_logged_once_their_group_is_over(caplog):
    caplog.set_level(logging.INFO)
    outbox, pipeline = chain()
    other = dataclasses.replace(lifecycle(*STARTED), domain_uuid='u2',
                                domain_name='instance-0002')
    with outbox.holding():  # the bus's group
        pipeline(lifecycle(*STARTED))
        pipeline(other)
        pipeline(lifecycle(*STOPPED_FAILED, seconds=5))
        pipeline(dataclasses.replace(other, event=STOPPED_FAILED[0],
                                     detail=STOPPED_FAILED[1]))
        assert journal_lines(caplog) == []  # not while the group commits
        assert outbox.pending() == 0  # nor is anything scheduled yet
    lines = journal_lines(caplog)
    assert outbox.pending() == 2
    assert [line.split(' (')[0] + ': ' + line.split('): ')[1].split(' at ')[0]
            for line in lines] == [
        'Domain instance-0001: start: unknown => running',
        'Domain instance-0002: start: unknown => running',
        ('Domain instance-0001: stop-failed: running => failed; '
        'LIFECYCLE/STOPPED_FAILED detected'),
        ('Domain instance-0002: stop-failed: running => failed; '
        'LIFECYCLE/STOPPED_FAILED detected')]
