import pathlib
import subprocess
import sys

import pytest
from oslo_config import generator

from instancemonitor.conf import default as default_conf
from instancemonitor.sinks import masakari

ROOT = pathlib.Path(__file__).parents[2]
ETC = ROOT / 'etc' / 'instancemonitor'

MASAKARI_MONITORS_CONF = """
[DEFAULT]
host = compute-7
debug = true

[libvirt]
connection_uri = qemu:///system

[callback]
retry_max = 3
retry_interval = 2

[api]
region = RegionTwo
api_version = v1
api_interface = internal
auth_type = password
auth_url = http://keystone.example:5000/v3
project_name = service
project_domain_name = Default
username = masakari
user_domain_name = Default
password = not-logged-anywhere
cafile = /etc/ssl/certs/ca.pem
insecure = false
timeout = 7
"""


def test_sample_config_is_current(tmp_path):
    out = tmp_path / 'instancemonitor.conf.sample'
    generator.main(['--config-file',
                    str(ETC / 'instancemonitor-config-generator.conf'),
                    '--output-file', str(out)])
    committed = (ETC / 'instancemonitor.conf.sample').read_text()
    assert out.read_text() == committed, (
        'etc/instancemonitor/instancemonitor.conf.sample is stale: run '
        'oslo-config-generator --config-file '
        'etc/instancemonitor/instancemonitor-config-generator.conf')


def test_masakari_monitors_config_file_keeps_its_meaning(make_conf, tmp_path):
    path = tmp_path / 'masakarimonitors.conf'
    path.write_text(MASAKARI_MONITORS_CONF)
    conf = make_conf([str(path)])
    assert default_conf.hostname(conf) == 'compute-7'
    assert conf.libvirt.connection_uri == 'qemu:///system'
    assert (conf.callback.retry_max, conf.callback.retry_interval) == (3, 2.0)
    adapter = masakari.adapter_from_conf(conf)
    assert adapter.service_type == 'instance-ha'
    assert adapter.interface == 'internal'
    assert adapter.region_name == 'RegionTwo'
    assert adapter.session.timeout == 7.0
    assert adapter.session.verify == '/etc/ssl/certs/ca.pem'
    auth = adapter.session.auth
    assert auth.auth_url == 'http://keystone.example:5000/v3'
    assert (auth._username, auth._password, auth._project_name) == (
        'masakari', 'not-logged-anywhere', 'service')


def test_hostname_defaults_to_the_machines(make_conf):
    import socket
    assert default_conf.hostname(make_conf()) == socket.gethostname()


def test_http_timeout_is_finite_by_default_and_fits_the_units_watchdog(
        make_conf, monkeypatch):
    from instancemonitor import service
    from tests.integration.test_systemd import UNIT

    conf = make_conf(api={'endpoint': 'http://127.0.0.1:1/v1'})
    assert masakari.adapter_from_conf(conf).session.timeout == 15.0
    (watchdog,) = [line.split('=')[1] for line in UNIT.read_text().splitlines()
                   if line.startswith('WatchdogSec=')]
    monkeypatch.setenv('WATCHDOG_USEC', str(int(watchdog) * 1_000_000))
    monkeypatch.delenv('WATCHDOG_PID', raising=False)
    service.check_fits_watchdog(conf)  # the defaults start under the unit


@pytest.mark.parametrize('section, option, value', [
    ('DEFAULT', 'hostname', 'not a host name!'),
    ('libvirt', 'keepalive_interval', '0'),
    ('libvirt', 'keepalive_count', 'three'),
    ('events', 'forward', 'everything'),
    ('events', 'reboot_window', '-1'),
    ('callback', 'retry_max', '-2'),
    ('api', 'endpoint', 'ftp://127.0.0.1/v1'),
    ('api', 'auth_type', 'no-such-plugin'),
    ('api', 'auth_url', None),  # auth_type = password without auth_url
])
def test_bad_value_stops_the_daemon_naming_the_option(tmp_path, section, option, value):
    lines = [f'[{section}]', f'{option} = {value}'] if value is not None else []
    if section != 'api':
        lines += ['[api]', 'endpoint = http://127.0.0.1:1/v1']
    if value is None:
        lines += ['[api]', 'auth_type = password', 'username = u', 'password = p']
    path = tmp_path / 'bad.conf'
    path.write_text('\n'.join(lines) + '\n')
    result = subprocess.run(
        [sys.executable, '-m', 'instancemonitor.cmd.agent', '--config-file', str(path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert f'[{section}] {option}' in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr


def test_neither_endpoint_nor_keystone_is_a_config_error(tmp_path):
    path = tmp_path / 'empty.conf'
    path.write_text('[DEFAULT]\n')
    result = subprocess.run(
        [sys.executable, '-m', 'instancemonitor.cmd.agent', '--config-file', str(path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert '[api] endpoint or [api] auth_type must be set' in result.stderr


@pytest.mark.parametrize('lines, named', [
    (['[webhooks]', 'enabled = billing'], '[webhook:billing] url: required'),
    (['[webhooks]', 'enabled = billing', '[webhook:billing]', 'url = ftp://x/'],
     '[webhook:billing] url'),
    (['[webhooks]', 'enabled = billing', '[webhook:billing]', 'url = http://x/',
      'timeout = 0'], '[webhook:billing] timeout'),
    (['[webhooks]', 'enabled = billing', '[webhook:billing]', 'url = http://x/',
      'events = LIFECYCLE/*, LIFECYCLE/STOPED_*'],
     '[webhook:billing] events: LIFECYCLE/STOPED_*'),
    (['[webhooks]', 'enabled = bad name!'], '[webhooks] enabled'),
    (['[webhooks]', 'enabled = a, a', '[webhook:a]', 'url = http://x/'],
     '[webhooks] enabled: a is listed twice'),
    (['[message_bus]', 'transport_url = rabbit://u:p@127.0.0.1:1/',
      'events = lifecycle/*'], '[message_bus] events: lifecycle/*'),
    (['[message_bus]', 'durable = maybe'], '[message_bus] durable'),
    (['[probes]', 'enabled = web', '[probe:web]'], '[probe:web] command'),
    (['[probes]', 'enabled = web', '[probe:web]', 'command = bin/true'],
     '[probe:web] command'),
    (['[probes]', 'enabled = web', '[probe:web]', 'command = /bin/true',
      'period = 2', 'timeout = 5'], '[probe:web] timeout'),
    (['[probes]', 'enabled = web', '[probe:web]', 'command = /bin/true',
      'action = restart'], 'action'),
    (['[probes]', 'enabled = web', '[probe:web]', 'command = /bin/true',
      'failure_threshold = 0'], 'failure_threshold'),
    (['[probes]', 'enabled = we/b'], '[probes] enabled'),
])
def test_bad_subscriber_or_probe_options_stop_the_daemon_naming_the_option(
        tmp_path, lines, named):
    path = tmp_path / 'bad.conf'
    path.write_text('\n'.join(['[api]', 'endpoint = http://127.0.0.1:1/v1',
                               '[DEFAULT]', f'state_path = {tmp_path}/state',
                               *lines]) + '\n')
    result = subprocess.run(
        [sys.executable, '-m', 'instancemonitor.cmd.agent', '--config-file', str(path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert named in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'state').exists()


def test_the_message_bus_and_webhooks_are_imported_only_when_configured():
    import subprocess
    import sys
    code = ('import sys, instancemonitor.cmd.agent; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in '
            '("kombu", "amqp") or m.startswith("instancemonitor.sinks.")))')
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert loaded == ("['instancemonitor.sinks.httpclient', "
                      "'instancemonitor.sinks.masakari']")
