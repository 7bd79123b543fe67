"""What a state scan or an agent restart may never change, in every story.

Each story of ``scenarios.py`` is replayed again and again with one more
step that must leave its notifications exactly as they were:

* a truthful scan (the state the story's last lifecycle event, or its last
  fresh scan, left the domain in) right after any step;
* the agent restarting on its database right after any step, followed by
  the scan it makes when it connects;
* the same truthful scan, read before the next step and applied one to three
  steps later: a scan that was under way while libvirt's events went on (not
  past another scan: one thread makes them, one after the other).

A scan that tells what the agent already knows, or a restart, that names a
VM for recovery is a false recovery; one that drops a notification loses a
failure.
"""

import dataclasses
import pathlib
import re
import tempfile
from collections.abc import Iterator

import pytest

from tests.unit.scenarios import STORIES
from tests.unit.scenarios import Story
from tests.unit.test_scenarios import replay

# How many steps after its read a stale scan is applied, at most.
STALE_DEPTH = 3

# The state libvirt reports after each lifecycle event, as a story's SCAN
# names it; None: no scan says anything of it then (shutting down, its crash
# preserved, or gone by the migration watch's look), so none is added. An
# undefine and a define change the state they find (see states).
_STATE_AFTER = {
    'STARTED_MIGRATED': 'paused-migration',
    'SUSPENDED_PAUSED': 'paused',
    'SUSPENDED_MIGRATED': 'paused-migration',
    'SUSPENDED_IOERROR': 'paused-ioerror',
    'SUSPENDED_WATCHDOG': 'paused-watchdog',
    # libvirt's state for a killed QEMU and for a guest crash alike.
    'STOPPED_FAILED': 'shutoff-crashed',
    'STOPPED_CRASHED': 'shutoff-crashed',
    'STOPPED_DESTROYED': 'shutoff-destroyed',
    'STOPPED_SHUTDOWN': 'shutoff-shutdown',
    'STOPPED_SAVED': 'shutoff-saved',
    'STOPPED_MIGRATED': 'shutoff-migrated',
    'MIGRATION_SOURCE_GONE': None,
    'CRASHED_PANICKED': None,
    'SHUTDOWN_GUEST': None,
    'SHUTDOWN_HOST': None,
}
_READ = re.compile(r'read@(\d+)')


def states(steps: list[str], transient: bool = False) -> list[str | None]:
    """The state a scan would read right after each step. A story's scan
    that finds another state than its events left tells of events nobody
    saw (the agent or libvirtd was down), at a time it does not say: the
    steps since the last one known are then of no known state. A host
    restart stops every domain (a ``transient`` one is then gone) and leaves
    no reason."""
    state: str | None = None
    after: list[str | None] = []
    known = -1  # the last step whose state is certain
    for index, step in enumerate(steps):
        _, what, *args = step.split()
        if what == 'SCAN' and not _READ.search(step) and args[0] != state:
            after[known + 1:] = [None] * (index - known - 1)
        if what.startswith('RESUMED_'):
            # Before a start's STARTED_* (libvirt sends RESUMED_UNPAUSED
            # first), the domain is already in the run that event opens.
            stopped = state is None or state.startswith('shutoff')
            state = None if stopped else 'running'
        elif what.startswith('STARTED_'):
            state = _STATE_AFTER.get(what, 'running')
        elif what.startswith('UNDEFINED_') and what != 'UNDEFINED_RENAMED':
            # A stopped domain is then gone; an active one runs on, transient.
            stopped = state is not None and state.startswith('shutoff')
            state = 'absent' if stopped else state
        elif what.startswith('DEFINED_'):
            state = 'shutoff' if state == 'absent' else state
        elif what in _STATE_AFTER:
            state = _STATE_AFTER[what]
        elif what == 'BOOT':
            state = 'absent' if transient or state == 'absent' else 'shutoff-unknown'
        elif what == 'SCAN' and not _READ.search(step):
            state = args[0]
        else:
            after.append(state)
            continue
        known = index
        after.append(state)
    return after


def _insert(steps: list[str], after: int, *new: str) -> list[str]:
    """``new`` steps after step ``after`` (1-based), the later steps' read@K
    moved to keep pointing at the same steps."""
    def shift(step: str) -> str:
        return _READ.sub(lambda m: f'read@{int(m[1]) + len(new) * (int(m[1]) > after)}',
                         step)
    return steps[:after] + list(new) + [shift(step) for step in steps[after:]]


def variants(story: Story) -> Iterator[tuple[str, list[str]]]:
    steps = [line.strip() for line in story.steps.splitlines() if line.strip()]
    for index, state in enumerate(states(steps, story.transient), 1):
        if state is None:
            continue
        at = steps[index - 1].split()[0]
        yield f'a scan after step {index}', _insert(steps, index, f'{at} SCAN {state}')
        # A scan read before a restart cannot arrive after it.
        if all(int(k) > index for step in steps[index:] for k in _READ.findall(step)):
            yield (f'a restart after step {index}',
                   _insert(steps, index, f'{at} RESTART', f'{at} SCAN {state}'))
        for applied in range(index + 1, min(len(steps), index + STALE_DEPTH) + 1):
            # One thread scans, publishing all it found before it reads
            # again: a scan never overtakes another, nor a restart.
            if re.search(r' (RESTART|BOOT|SCAN)\b', steps[applied - 1]):
                break
            when = steps[applied - 1].split()[0]
            yield (f'a scan read before step {index + 1}, applied after step {applied}',
                   _insert(steps, applied, f'{when} SCAN {state} read@{index + 1}'))


@pytest.fixture
def scratch() -> Iterator[pathlib.Path]:
    """A directory for the replays' databases, in memory where the host has
    /dev/shm (each replay commits a few times; a disk's fsyncs make this
    test minutes long)."""
    shm = pathlib.Path('/dev/shm')
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as path:
        yield pathlib.Path(path)


def test_the_states_follow_the_events():
    assert states(['0 RESUMED_UNPAUSED', '0 STARTED_BOOTED', '5 SUSPENDED_MIGRATED',
                   '6 STOPPED_MIGRATED', '7 UNDEFINED_REMOVED', '8 DEFINED_ADDED']) == [
        None, 'running', 'paused-migration', 'shutoff-migrated', 'absent', 'shutoff']
    # Undefined while it runs: it runs on, transient.
    assert states(['0 STARTED_BOOTED', '5 UNDEFINED_REMOVED', '6 DEFINED_ADDED']) == [
        'running', 'running', 'running']
    assert states(['0 SCAN paused-migration id=3', '1 SCAN running read@1',
                   '5 STOPPED_FAILED']) == [
        'paused-migration', 'paused-migration', 'shutoff-crashed']
    # Started while the agent was down: when, nobody knows.
    assert states(['0 STARTED_BOOTED', '5 STOPPED_FAILED', '6 PING_MISS', '20 RESTART',
                   '20 SCAN running id=9', '21 REBOOT']) == [
        'running', 'shutoff-crashed', None, None, 'running', 'running']


def test_a_later_steps_stale_read_keeps_pointing_at_its_step():
    steps = ['0 STARTED_BOOTED', '5 STOPPED_FAILED', '6 SCAN running read@2']
    assert _insert(steps, 1, '0 RESTART', '0 SCAN running') == [
        '0 STARTED_BOOTED', '0 RESTART', '0 SCAN running', '5 STOPPED_FAILED',
        '6 SCAN running read@4']


@pytest.mark.parametrize('story', STORIES, ids=[s.name for s in STORIES])
def test_no_truthful_scan_or_restart_changes_what_a_story_notifies(story, scratch):
    changed = []
    for number, (label, steps) in enumerate(variants(story)):
        directory = scratch / str(number)
        got = replay(dataclasses.replace(story, steps='\n'.join(steps)), directory)
        if got != story.expect:
            changed.append(f'{label}: {list(got)} ({" / ".join(steps)})')
    assert not changed, f'expected {list(story.expect)}, but with\n' + '\n'.join(changed)
