"""The heartbeat source: which domains it pings, how, and what it publishes.

What a run of pings means (discovery, failing, reported, reboots) is the
state machine's, replayed in ``test_scenarios.py``.
"""

import contextlib
import threading
import time

import libvirt
import pytest

from instancemonitor.events import EventKind
from instancemonitor.sources import heartbeat
from instancemonitor.sources.heartbeat import Heartbeat
from instancemonitor.sources.heartbeat import LibvirtAgents
from instancemonitor.sources.heartbeat import Target
from instancemonitor.sources.heartbeat import has_agent_channel


def test_the_channel_is_read_from_the_domain_xml():
    assert has_agent_channel("""<domain><devices>
        <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>
        </channel></devices></domain>""")
    assert not has_agent_channel("""<domain><devices>
        <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/>
        </channel></devices></domain>""")
    assert not has_agent_channel('<domain><devices/></domain>')


def test_a_round_pings_in_parallel_so_hung_agents_do_not_add_up():
    targets = [Target(f'u{i}', f'vm{i}', i, domain_id=i) for i in range(500)]
    hung = set(range(0, 500, 10))  # 50 hung agents
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def ping(target):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            if target.domain in hung:
                time.sleep(0.3)  # libvirt's wait for a hung agent
                return False
            return True
        finally:
            with lock:
                in_flight[0] -= 1

    published = []
    beat = Heartbeat(published.append, lambda: targets, ping, interval=60,
                     workers=64)
    started = time.monotonic()
    beat.round()
    took = time.monotonic() - started
    beat.stop()
    assert peak[0] >= 50  # every hung ping waited at the same time
    assert took < 0.3 * 5  # one wait for all of them, not fifty
    assert {e.kind for e in published} == {EventKind.PING}
    answered = {e.domain_uuid for e in published if e.event == 1}
    missed = {e.domain_uuid for e in published if e.event == 0}
    assert missed == {f'u{i}' for i in hung} and len(answered) == 450
    # Answers come first: no healthy guest waits behind a hung one.
    assert all(e.event == 1 for e in published[:400])
    assert all(e.domain_id == int(e.domain_uuid[1:]) for e in published)


def test_an_error_that_is_not_the_agents_answer_publishes_nothing():
    published = []
    outcomes = iter([None, False, True])
    beat = Heartbeat(published.append, lambda: [Target('a', 'a', 0, 3)] * 3,
                     lambda target: next(outcomes), interval=60, workers=1)
    beat.round()
    beat.stop()
    assert sorted(e.event for e in published) == [0, 1]


class _Failing:
    def __init__(self, code):
        self.code = code


@pytest.mark.parametrize('code, outcome', [
    (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, False),   # not connected, or hung
    (libvirt.VIR_ERR_AGENT_UNSYNCED, False),
    (libvirt.VIR_ERR_OPERATION_TIMEOUT, False),    # another command holds it
    (libvirt.VIR_ERR_OPERATION_INVALID, None),     # domain not running
    (libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, None),  # no agent configured
    (libvirt.VIR_ERR_INTERNAL_ERROR, None),        # the connection went away
])
def test_a_ping_error_is_a_miss_only_when_it_is_the_agents(monkeypatch, code,
                                                           outcome):
    def command(domain, text, timeout, flags):
        error = libvirt.libvirtError('failed')
        error.err = (code, 0, 'failed', 2, '', '', '', -1, -1)
        raise error
    monkeypatch.setattr(heartbeat.libvirt_qemu, 'qemuAgentCommand', command)
    agents = LibvirtAgents(contextlib.nullcontext, timeout=2)
    assert agents.ping(Target('a', 'a', object(), 1)) is outcome


class _Dom:
    def __init__(self, uuid, dom_id, xml):
        self.uuid, self.dom_id, self.xml, self.xml_reads = uuid, dom_id, xml, 0

    def UUIDString(self):
        return self.uuid

    def ID(self):
        return self.dom_id

    def name(self):
        return self.uuid

    def XMLDesc(self, flags):
        self.xml_reads += 1
        return self.xml

    def agentSetResponseTimeout(self, timeout):
        raise AssertionError('the heartbeat must not change the domain')


def test_targets_read_each_domain_run_once_and_forget_ended_runs():
    from instancemonitor.sources.heartbeat import LibvirtAgents
    channel = ("<domain><devices><channel type='unix'><target type='virtio' "
               "name='org.qemu.guest_agent.0'/></channel></devices></domain>")
    running = {'a': _Dom('a', 1, channel), 'b': _Dom('b', 2, '<domain/>')}

    class Conn:
        def listAllDomains(self, flags):
            return list(running.values())
    agents = LibvirtAgents(lambda: contextlib.nullcontext(Conn()), 1)
    for _ in range(3):
        assert [t.uuid for t in agents.targets()] == ['a']
    assert running['a'].xml_reads == running['b'].xml_reads == 1
    # Runs that ended, with or without a channel, are not kept.
    for i in range(100):
        running = {'a': _Dom('a', 1, channel), 'c': _Dom('c', 10 + i, '<domain/>')}
        agents.targets()
    assert len(agents._channel) == 2
