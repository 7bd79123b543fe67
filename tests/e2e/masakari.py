"""The real Masakari API (from PyPI, in a cached virtualenv of its own) on
127.0.0.1, with SQLite, ``noauth2`` and no message bus.

Registering a host makes masakari-api log in to Keystone and ask Nova whether
a nova-compute service of that name exists: a Keystone stand-in answers both,
with Nova's ``os-services`` list routed on the same loopback server.
"""

import datetime
import json
import pathlib
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

from tests.fakes import keystone as fake_keystone
from tests.fakes.http import Request
from tests.processes import free_port
from tests.processes import skip_or_fail
from tests.processes import stop_pid
from tests.processes import test_cache
from tests.processes import wait_for

MASAKARI_VERSION = '22.0.0'


def masakari_venv() -> pathlib.Path:
    """The virtualenv with masakari installed, built once and cached."""
    venv = test_cache() / f'masakari-{MASAKARI_VERSION}'
    complete = venv / '.complete'
    if complete.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    result = subprocess.run(
        [str(venv / 'bin' / 'pip'), 'install', '-q', f'masakari=={MASAKARI_VERSION}'],
        capture_output=True, text=True)
    if result.returncode != 0:
        skip_or_fail(f'cannot install masakari: {result.stderr[-2000:]}')
    complete.touch()
    return venv


class MasakariAPI:
    # Masakari's duplicate_notification_detection_interval, shorter than its
    # 180 s default so that a test can wait it out.
    DUPLICATE_INTERVAL = 30

    def __init__(self, directory: pathlib.Path) -> None:
        self.venv = masakari_venv()
        self.dir = directory
        self.port = free_port()
        self.compute_hosts: set[str] = set()
        self.identity = fake_keystone.Keystone()
        self.identity.catalog['compute'] = {
            'public': f'{self.identity.url}/v2.1',
            'internal': f'{self.identity.url}/v2.1'}
        self.identity.route('/v2.1', self._nova)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v1'

    def _nova(self, request: Request) -> tuple[int, dict | None, dict]:
        """Nova's os-services list, filtered by host, for nova-compute."""
        path, _, query = request.path.partition('?')
        if path.rstrip('/') == '/v2.1/os-services':
            params = dict(p.partition('=')[::2] for p in query.split('&') if p)
            services = [{
                'id': str(uuid.uuid5(uuid.NAMESPACE_DNS, host)),
                'binary': 'nova-compute', 'host': host, 'zone': 'nova',
                'status': 'enabled', 'state': 'up', 'forced_down': False,
                'disabled_reason': None,
                'updated_at': datetime.datetime.now(datetime.UTC).isoformat()}
                for host in sorted(self.compute_hosts)
                if params.get('host') in (None, host)]
            return 200, {'services': services}, {}
        if path.rstrip('/') == '/v2.1':
            return 200, {'version': {
                'id': 'v2.1', 'status': 'CURRENT', 'version': '2.95',
                'min_version': '2.1', 'links': [
                    {'rel': 'self', 'href': f'{self.identity.url}/v2.1/'}]}}, {}
        return 404, {'itemNotFound': {'code': 404, 'message': path}}, {}

    def start(self) -> 'MasakariAPI':
        self.identity.start()
        etc = self.venv / 'etc' / 'masakari'
        conf = self.dir / 'masakari.conf'
        conf.write_text(f"""
[DEFAULT]
auth_strategy = noauth2
transport_url = fake://
notification_delay_max = 0
duplicate_notification_detection_interval = {self.DUPLICATE_INTERVAL}
masakari_api_listen = 127.0.0.1
masakari_api_listen_port = {self.port}
masakari_api_workers = 1
os_privileged_user_name = {fake_keystone.USERNAME}
os_privileged_user_password = {fake_keystone.PASSWORD}
os_privileged_user_tenant = {fake_keystone.PROJECT}
os_privileged_user_auth_url = {self.identity.auth_url}
log_file = {self.dir / 'masakari-api.log'}

[wsgi]
api_paste_config = {etc / 'api-paste.ini'}

[database]
connection = sqlite:///{self.dir / 'masakari.db'}

[taskflow]
connection = sqlite:///{self.dir / 'taskflow.db'}

[keystone_authtoken]
auth_type = password
""")
        bin_ = self.venv / 'bin'
        sync = subprocess.run(
            [str(bin_ / 'masakari-manage'), '--config-file', str(conf), 'db', 'sync'],
            capture_output=True, text=True, timeout=120)
        if sync.returncode != 0:
            raise AssertionError(f'masakari-manage db sync failed: {sync.stderr}')
        self.process = subprocess.Popen(
            [str(bin_ / 'masakari-api'), '--config-file', str(conf)],
            stdout=open(self.dir / 'masakari-api.out', 'ab'),
            stderr=subprocess.STDOUT)
        wait_for(self._answers, 60, 'masakari-api')
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f'masakari-api exited: {self.log()[-3000:]}')
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{self.port}/', timeout=2)
            return True
        except urllib.error.HTTPError:
            return True  # it answers
        except OSError:
            return False

    def log(self) -> str:
        parts = [self.dir / 'masakari-api.out', self.dir / 'masakari-api.log']
        return ''.join(p.read_text(errors='replace') for p in parts if p.exists())

    def request(self, method: str, path: str, body: dict | None = None
                ) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f'{self.url}{path}', data=data, method=method,
            headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b'{}')
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b'{}')

    def _segment(self, name: str) -> str | None:
        status, body = self.request('GET', '/segments')
        assert status == 200, (status, body)
        return next((s['uuid'] for s in body['segments'] if s['name'] == name), None)

    def register_host(self, hostname: str) -> None:
        """A failover segment (``segment-HOSTNAME``, made if need be) with
        this compute host in it."""
        self.compute_hosts.add(hostname)
        segment = self._segment(f'segment-{hostname}')
        if segment is None:
            status, body = self.request('POST', '/segments', {'segment': {
                'name': f'segment-{hostname}', 'recovery_method': 'auto',
                'service_type': 'COMPUTE'}})
            assert status in (200, 201), (status, body)
            segment = body['segment']['uuid']
        status, body = self.request('POST', f'/segments/{segment}/hosts', {'host': {
            'name': hostname, 'type': 'COMPUTE', 'control_attributes': 'SSH'}})
        assert status in (200, 201), (status, body, self.log()[-3000:])

    def delete_host(self, hostname: str) -> None:
        """Take the host out of its segment, as an operator re-creating it."""
        segment = self._segment(f'segment-{hostname}')
        status, body = self.request('GET', f'/segments/{segment}/hosts')
        assert status == 200, (status, body)
        (host,) = [h['uuid'] for h in body['hosts'] if h['name'] == hostname]
        status, body = self.request('DELETE', f'/segments/{segment}/hosts/{host}')
        assert status == 204, (status, body)

    def notifications(self) -> list[dict]:
        status, body = self.request('GET', '/notifications')
        assert status == 200, (status, body)
        return body['notifications']

    def stop(self) -> None:
        if self.process is not None:
            stop_pid(self.process)
        self.identity.stop()
