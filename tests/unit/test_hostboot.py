"""The host's boot id, as the journal's runs are told apart by it."""

import datetime
import logging

from instancemonitor import hostboot
from instancemonitor.domainstate import DomainMachine
from instancemonitor.domainstate import DomainRecord
from instancemonitor.domainstate import Input
from instancemonitor.domainstate import Observation
from instancemonitor.domainstate import Phase

T0 = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC)


def test_the_boot_id_is_the_kernels():
    boot = hostboot.boot_id()
    assert boot == hostboot.BOOT_ID.read_text().strip()
    assert len(boot) == 36


def test_an_unreadable_boot_id_is_empty_and_said(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert hostboot.boot_id(tmp_path / 'missing') == ''
    assert 'taken for the same run' in caplog.text


def test_a_record_without_a_boot_adopts_it_and_keeps_its_run():
    # Written by an agent before boot ids were kept: nothing says its run
    # is over, so it goes on.
    record = DomainRecord('u', 'vm', phase=Phase.RUNNING, run=3,
                          episode='IO_ERROR/IO_ERROR_REPORT')
    out = DomainMachine().apply(record, Observation(
        Input.SCAN_RUNNING, T0, domain_id=3, from_scan=True, boot='b1'))
    assert (out.record.boot, out.record.run, out.record.episode) == (
        'b1', 3, 'IO_ERROR/IO_ERROR_REPORT')


def test_an_unknown_boot_changes_nothing():
    record = DomainRecord('u', 'vm', phase=Phase.RUNNING, run=3, boot='b1')
    out = DomainMachine().apply(record, Observation(
        Input.SCAN_RUNNING, T0, domain_id=3, from_scan=True))
    assert (out.record.boot, out.record.run, out.record.phase) == (
        'b1', 3, Phase.RUNNING)
