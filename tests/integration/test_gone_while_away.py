"""A domain that vanished while libvirtd was away: the in-process agent, a
private libvirtd serving the test driver (restarted, it forgets every
domain it was given, as if they were undefined meanwhile), a real HTTP
receiver on 127.0.0.1 refusing notifications until the domain is gone."""

import threading
import time
import uuid

import pytest

from tests.integration.test_testdriver import DOMAIN_XML
from tests.processes import wait_for

QUIET = 1.5  # seconds in which anything extra would have arrived (retries 0.1 s)


def _record(agent, domain_uuid: str):
    return next((r for r in agent.journal.records() if r.uuid == domain_uuid), None)


@pytest.mark.parametrize('persistent, expected', [
    # Undefined unseen: Masakari would stop and start it wherever it is now.
    (True, []),
    # Gone as it stopped, however it stopped: what it reported stands.
    (False, ['STOPPED_DESTROYED']),
], ids=['persistent', 'transient'])
def test_a_domain_gone_while_libvirtd_was_away(start_agent, test_libvirtd, client,
                                               recovery_api, persistent, expected):
    recovery_api.answer(*[(503, 'Service Unavailable')] * 10_000)
    agent = start_agent(test_libvirtd.uri,
                        events={'forward': 'all', 'reboot_window': 0},
                        libvirt={'reconcile_interval': 0.5})
    conn = client(test_libvirtd.uri)
    domain_uuid = str(uuid.uuid4())
    xml = DOMAIN_XML.format(name='vm-away', uuid=domain_uuid)
    if persistent:
        dom = conn.defineXML(xml)
        dom.create()
    else:
        dom = conn.createXML(xml)
    wait_for(lambda: (r := _record(agent, domain_uuid)) is not None and
             r.persistent is persistent, 10, 'a scan to tell whether it is persistent')
    dom.destroy()
    recovery_api.wait_requests(2)  # refused, and retried
    assert agent.outbox.pending() == 1

    scans: list[set[str]] = []
    scanned = agent.reconciler._scanned
    agent.reconciler._scanned = lambda listed, seq: (scans.append(listed),
                                                     scanned(listed, seq))
    test_libvirtd.kill()
    wait_for(lambda: not agent.connection.connected, 10, 'the connection lost')
    scans.clear()
    test_libvirtd.start()  # the test driver's own domains only: ours is gone
    wait_for(lambda: scans, 10, 'the scan at reconnection')
    assert domain_uuid not in scans[0]
    applied = threading.Event()
    agent.bus.after_pending(applied.set)  # what the scan published, applied
    assert applied.wait(10)
    time.sleep(0.3)  # an attempt in flight as it was withdrawn: answered 503
    # The API answers again.
    with recovery_api._changed:
        recovery_api.script.clear()
        tried = len(recovery_api.requests)
    time.sleep(QUIET)
    assert [event for _, _, event in recovery_api.payloads()] == expected
    assert len(recovery_api.requests) == tried + len(expected)
    assert agent.outbox.pending() == 0
    # A persistent domain's record goes with it; a transient one's stays
    # until [libvirt] forget_gone_after.
    assert (_record(agent, domain_uuid) is None) is persistent
