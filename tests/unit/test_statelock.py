import os

import pytest

from instancemonitor import statelock


def test_a_second_lock_on_the_same_state_names_the_holder(tmp_path):
    held = statelock.acquire(str(tmp_path / 'state'))
    with pytest.raises(statelock.StateLocked) as raised:
        statelock.acquire(str(tmp_path / 'state'))
    assert raised.value.holder == str(os.getpid())
    assert str(raised.value) == (
        f'another instancemonitor (pid {os.getpid()}) holds '
        f'{tmp_path}/state/instancemonitor.lock: one agent per [DEFAULT] state_path')
    held.release()
    statelock.acquire(str(tmp_path / 'state')).release()


def test_a_state_path_that_cannot_hold_a_lock_is_no_error(tmp_path):
    (tmp_path / 'file').write_text('')
    statelock.acquire(str(tmp_path / 'file')).release()  # logged, not raised
