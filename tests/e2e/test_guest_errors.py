"""Watchdogs and I/O errors of real QEMU guests, per the filter table."""

import time

import libvirt
import libvirt_qemu

from tests.e2e.conftest import BOTH_DAEMONS
from tests.processes import wait_for

QUIET = 2.0


def arm_ib700(dom: libvirt.virDomain) -> None:
    # Write the ib700's timeout register through the monitor: it fires ~2 s
    # later, as a hung guest's watchdog would.
    libvirt_qemu.qemuMonitorCommand(dom, 'o /b 0x443 0x0e',
                                    libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)


def pairs(api) -> set[tuple[str, str]]:
    return {(event, detail) for _, event, detail in api.payloads()}


def test_watchdog_pause_is_forwarded_as_the_table_says(start_guest, start_agent,
                                                       recovery_api):
    start_agent(recovery_api.url, forward='all')
    dom = start_guest('e2e-wd-pause', "<watchdog model='ib700' action='pause'/>")
    arm_ib700(dom)
    recovery_api.wait_stored(2, timeout=20)
    time.sleep(QUIET)
    assert pairs(recovery_api) == {('WATCHDOG', 'WATCHDOG_PAUSE'),
                                   ('LIFECYCLE', 'SUSPENDED_WATCHDOG')}
    assert dom.state() == [libvirt.VIR_DOMAIN_PAUSED,
                           libvirt.VIR_DOMAIN_PAUSED_WATCHDOG]


def test_watchdog_poweroff_is_one_stopped_failed(start_guest, start_agent,
                                                 recovery_api):
    start_agent(recovery_api.url)
    dom = start_guest('e2e-wd-off', "<watchdog model='ib700' action='poweroff'/>")
    arm_ib700(dom)
    (stored,) = recovery_api.wait_stored(1, timeout=20)
    assert stored['payload'] == {'event': 'LIFECYCLE',
                                 'instance_uuid': dom.UUIDString(),
                                 'vir_domain_event': 'STOPPED_FAILED'}
    time.sleep(QUIET)
    assert len(recovery_api.requests) == 1


@BOTH_DAEMONS
def test_io_error_with_report_policy_is_one_io_error_report(
        start_guest, start_agent, recovery_api, failing_disk):
    disk, flag = failing_disk
    agent = start_agent(recovery_api.url)
    flag.touch()
    dom = start_guest('e2e-io-report', disk('report'))
    (stored,) = recovery_api.wait_stored(1, timeout=20)
    assert stored['payload'] == {'event': 'IO_ERROR', 'instance_uuid': dom.UUIDString(),
                                 'vir_domain_event': 'IO_ERROR_REPORT'}
    time.sleep(QUIET)
    assert len(recovery_api.requests) == 1
    assert agent.process.poll() is None


def test_io_error_with_stop_policy_pauses_the_guest(start_guest, start_agent,
                                                   recovery_api, failing_disk):
    disk, flag = failing_disk
    agent = start_agent(recovery_api.url, forward='all')
    flag.touch()
    dom = start_guest('e2e-io-stop', disk('stop'))
    wait_for(lambda: ('LIFECYCLE', 'SUSPENDED_IOERROR') in pairs(recovery_api), 20,
             'SUSPENDED_IOERROR')
    time.sleep(QUIET)
    assert {('IO_ERROR', 'IO_ERROR_PAUSE'), ('IO_ERROR_REASON', 'UNKNOWN'),
            ('LIFECYCLE', 'SUSPENDED_IOERROR')} <= pairs(recovery_api)
    assert ('IO_ERROR', 'IO_ERROR_REPORT') not in pairs(recovery_api)
    assert dom.state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR]
    assert agent.process.poll() is None
