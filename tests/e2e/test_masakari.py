"""The SIGKILL scenario against the real Masakari API."""

import datetime
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from tests.fakes.http import HTTPServer
from tests.fakes.http import Request
from tests.processes import wait_for


def stored_for(masakari, instance_uuid: str) -> list[dict]:
    return [n for n in masakari.notifications()
            if n['payload']['instance_uuid'] == instance_uuid]


def test_sigkill_is_stored_by_masakari(hypervisor, start_guest, start_agent, masakari):
    agent = start_agent(masakari.url)
    dom = start_guest('e2e-masakari')
    os.kill(hypervisor.qemu_pid('e2e-masakari'), signal.SIGKILL)
    (notification,) = wait_for(lambda: stored_for(masakari, dom.UUIDString()), 15,
                               'Masakari to store the notification')
    assert notification['type'] == 'VM'
    assert notification['payload'] == {'event': 'LIFECYCLE',
                                       'instance_uuid': dom.UUIDString(),
                                       'vir_domain_event': 'STOPPED_FAILED'}
    # Masakari's own view of the source host and the time of detection.
    generated = datetime.datetime.fromisoformat(notification['generated_time'])
    age = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - generated
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)
    agent.wait_log('delivered to masakari (HTTP 202)')


def test_a_second_crash_soon_after_a_recovery_is_stored_too(
        hypervisor, start_guest, start_agent, masakari):
    """Crash, started again (as Masakari's recovery does), crash again 5 s
    later: inside Masakari's duplicate window, with the same payload (a VM
    payload can hold nothing else), yet a second failure."""
    window = masakari.DUPLICATE_INTERVAL
    agent = start_agent(masakari.url,
                        extra=f'[api]\nduplicate_detection_interval = {window}\n')
    dom = start_guest('e2e-twice', persistent=True)
    uuid = dom.UUIDString()
    os.kill(hypervisor.qemu_pid('e2e-twice'), signal.SIGKILL)
    wait_for(lambda: stored_for(masakari, uuid), 15, 'the first crash stored')
    dom.create()
    agent.wait_log('start: failed => running')
    time.sleep(5)
    os.kill(hypervisor.qemu_pid('e2e-twice'), signal.SIGKILL)
    agent.wait_log("within Masakari's duplicate window")
    first, second = sorted(wait_for(
        lambda: (lambda s: s if len(s) == 2 else None)(stored_for(masakari, uuid)),
        window + 15, 'the second crash stored'), key=lambda n: n['generated_time'])
    for stored in (first, second):
        assert stored['payload'] == {'event': 'LIFECYCLE', 'instance_uuid': uuid,
                                     'vir_domain_event': 'STOPPED_FAILED'}
    gap = (datetime.datetime.fromisoformat(second['generated_time']) -
           datetime.datetime.fromisoformat(first['generated_time']))
    assert gap > datetime.timedelta(seconds=window)
    time.sleep(2)
    assert len(stored_for(masakari, uuid)) == 2
    assert 'HTTP 409' not in agent.output()


def test_a_crash_while_the_host_is_out_of_its_segment_is_stored_once(
        hypervisor, start_guest, start_agent, masakari):
    masakari.register_host('compute-9')
    agent = start_agent(masakari.url, hostname='compute-9')
    agent.wait_log('Host compute-9 is registered in failover segment segment-compute-9')
    masakari.delete_host('compute-9')  # an operator re-creates it
    dom = start_guest('e2e-no-host')
    os.kill(hypervisor.qemu_pid('e2e-no-host'), signal.SIGKILL)
    agent.wait_log('The recovery API does not know host compute-9 ([DEFAULT] '
                   'hostname): "Host with name compute-9 could not be found."')
    time.sleep(20)
    assert stored_for(masakari, dom.UUIDString()) == []
    masakari.register_host('compute-9')
    (stored,) = wait_for(lambda: stored_for(masakari, dom.UUIDString()), 30,
                         'Masakari to store the crash')
    assert stored['source_host_uuid'] and stored['payload'] == {
        'event': 'LIFECYCLE', 'instance_uuid': dom.UUIDString(),
        'vir_domain_event': 'STOPPED_FAILED'}
    time.sleep(3)
    assert len(stored_for(masakari, dom.UUIDString())) == 1
    log = agent.output()
    assert log.count('does not know host compute-9') == 1  # one ERROR
    assert 'The recovery API knows host compute-9 again' in log
    assert 'dead letter' not in log


class AnswerLosingProxy:
    """Forwards POSTs to Masakari; withholds the first answer past the
    client's timeout, as a network that drops a response would."""

    def __init__(self, target: str, hold: float) -> None:
        self.target = target
        self.hold = hold
        self.forwarded: list[int] = []
        self._lock = threading.Lock()
        self._server = HTTPServer(self._handle)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self._server.port}/v1'

    def _handle(self, request: Request):
        forward = urllib.request.Request(
            self.target + request.path.removeprefix('/v1'), data=request.body,
            method=request.method, headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(forward, timeout=30) as response:
                status, body = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            status, body = error.code, json.loads(error.read())
        if request.method != 'POST':
            return status, body, {}  # the agent's registration check
        with self._lock:
            self.forwarded.append(status)
            first = len(self.forwarded) == 1
        if first:
            time.sleep(self.hold)  # the client has given up by now
        return status, body, {}

    def start(self):
        self._server.start()
        return self

    def stop(self):
        self._server.stop()


def test_a_resend_after_a_lost_answer_is_409_and_counted_delivered(
        hypervisor, start_guest, start_agent, masakari, tmp_path):
    proxy = AnswerLosingProxy(masakari.url, hold=3.0).start()
    try:
        agent = start_agent(proxy.url, extra='[api]\ntimeout = 1\n')
        dom = start_guest('e2e-resend')
        os.kill(hypervisor.qemu_pid('e2e-resend'), signal.SIGKILL)
        log = agent.wait_log('delivered to masakari', timeout=30)
        assert proxy.forwarded == [202, 409]
        assert ('delivered to masakari (HTTP 409: Notification received from '
                'host compute-1 of type VM is duplicate.)') in log
        assert len(stored_for(masakari, dom.UUIDString())) == 1
    finally:
        proxy.stop()
