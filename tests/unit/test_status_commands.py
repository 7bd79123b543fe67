"""instancemonitor-status's commands on a state database (no agent)."""

import sqlite3

import pytest

from instancemonitor import store
from instancemonitor.cmd import status
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Phase


@pytest.mark.parametrize('phase, warned', [(Phase.FAILED, True),
                                           (Phase.RUNNING, False)])
def test_forgetting_a_failed_domain_says_a_scan_may_notify_it_again(
        tmp_path, capsys, phase, warned):
    state = store.SqliteStateStore(str(tmp_path))
    state.put(DomainRecord(uuid='u1', name='instance-01', phase=phase))
    state.close()
    assert status.main(['--state-path', str(tmp_path), 'forget', 'u1']) == 0
    out, err = capsys.readouterr()
    assert 'forget u1: queued' in out
    assert ('instance-01 (u1) is failed in the journal' in err) is warned
    with sqlite3.connect(tmp_path / store.FILENAME) as db:
        assert db.execute('SELECT verb, arg FROM commands').fetchall() == [
            ('forget', 'u1')]
