"""The tiny guest with the QEMU guest agent, for the in-guest heartbeat."""

import json
import time

import libvirt
import libvirt_qemu
import pytest

from tests.e2e.conftest import guest_ping
from tests.processes import wait_for


def guest_exec(dom: libvirt.virDomain, script: str) -> int:
    answer = libvirt_qemu.qemuAgentCommand(dom, json.dumps({
        'execute': 'guest-exec',
        'arguments': {'path': '/bin/sh', 'arg': ['-c', script]}}), 5, 0)
    return json.loads(answer)['return']['pid']


def test_tiny_guest_boots_and_its_agent_answers_and_can_be_hung(start_agent_guest):
    started = time.monotonic()
    dom = start_agent_guest('e2e-agent')
    booted = time.monotonic() - started
    assert guest_ping(dom) == {'return': {}}
    # A test can hang the agent from inside the guest for a while.
    guest_exec(dom, 'kill -STOP $(pidof qemu-ga); sleep 8; kill -CONT $(pidof qemu-ga)')
    with pytest.raises(libvirt.libvirtError) as hung:
        wait_for(lambda: guest_ping(dom, timeout=1) and False, 5, 'a hung agent')
    assert hung.value.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE
    wait_for(lambda: _answers(dom), 30, 'the agent to answer again', interval=0.5)
    print(f'agent answered {booted:.1f} s after start')


def _answers(dom: libvirt.virDomain) -> bool:
    try:
        return guest_ping(dom, timeout=1) == {'return': {}}
    except libvirt.libvirtError:
        return False
