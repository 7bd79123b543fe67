"""A stand-in for Masakari's notification API, as strict as the real one.

``POST /v1/notifications`` is checked against Masakari's schema (400 on any
deviation) and against its duplicate rule (409 when a stored notification has
the same type, host and payload and a ``generated_time`` no older than the
new one's minus 180 s). Answers can be scripted per request.
"""

import collections
import datetime
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable

from tests.fakes.http import HTTPServer
from tests.fakes.http import Request

HOSTNAME = re.compile(r'^[a-zA-Z0-9._-]{1,255}$')
DUPLICATE_WINDOW = datetime.timedelta(seconds=180)


def schema_error(document: object) -> str | None:
    """What Masakari's schema would reject in a POST body, or None."""
    if not isinstance(document, dict) or set(document) != {'notification'}:
        return 'body must be {"notification": {...}}'
    n = document['notification']
    if not isinstance(n, dict) or set(n) != {
            'type', 'hostname', 'generated_time', 'payload'}:
        return 'notification needs exactly type, hostname, generated_time, payload'
    if n['type'] not in ('VM', 'COMPUTE_HOST', 'PROCESS'):
        return f'bad type {n["type"]!r}'
    if not isinstance(n['hostname'], str) or not HOSTNAME.match(n['hostname']):
        return f'bad hostname {n["hostname"]!r}'
    try:
        datetime.datetime.fromisoformat(n['generated_time'])
    except (TypeError, ValueError):
        return f'bad generated_time {n["generated_time"]!r}'
    payload = n['payload']
    if n['type'] == 'VM':
        # Masakari's create_vm_payload: these three keys and no other.
        if not isinstance(payload, dict) or set(payload) != {
                'event', 'instance_uuid', 'vir_domain_event'}:
            return 'VM payload needs exactly event, instance_uuid, vir_domain_event'
        try:
            uuid.UUID(payload['instance_uuid'])
        except (TypeError, ValueError, AttributeError):
            return f'bad instance_uuid {payload["instance_uuid"]!r}'
        for key in ('event', 'vir_domain_event'):
            if not isinstance(payload[key], str) or not 1 <= len(payload[key]) <= 255:
                return f'bad {key}'
    return None


def _utc(stamp: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


class RecoveryAPI:
    def __init__(self, token_check: Callable[[str | None], bool] | None = None,
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        # With ``token_check``, a request whose X-Auth-Token fails it gets 401.
        self._token_check = token_check
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.stored: list[dict] = []       # accepted notifications (202)
        # (type, hostname, payload) → generated times stored, for the rule.
        self._stored_times: dict[tuple, list[datetime.datetime]] = (
            collections.defaultdict(list))
        self.requests: list[Request] = []  # every POST, whatever the answer
        # Scripted answers, used up in order: (status, message) or a delay.
        self.script: collections.deque = collections.deque()
        self.delay = 0.0
        self.segments: dict[str, list[str]] | None = None
        self.maintenance: set[str] = set()
        # Hosts in no segment: their notifications get Masakari's 400.
        self.unknown_hosts: set[str] = set()
        # False: every answer closes its connection, as a server whose
        # keep-alive timeout is shorter than the time between requests.
        self.keep_alive = True
        self._server = HTTPServer(self._respond, port, tls)

    @property
    def url(self) -> str:
        return f'{self._server.scheme}://127.0.0.1:{self._server.port}/v1'

    @property
    def connections(self) -> int:
        return self._server.connections

    def start(self) -> 'RecoveryAPI':
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def answer(self, *answers: tuple[int, str]) -> None:
        """Script the next answers, e.g. ``(503, 'busy')``, before the default."""
        with self._lock:
            self.script.extend(answers)

    def _segments(self, path: str) -> tuple[int, dict | None, dict]:
        """GET /segments and /segments/{uuid}/hosts from ``self.segments``
        (segment name → host names; None: 404, as an API without them)."""
        if self.segments is None:
            return 404, {'itemNotFound': {'code': 404, 'message': path}}, {}
        ids = {str(uuid.uuid5(uuid.NAMESPACE_DNS, name)): name for name in self.segments}
        parts = path.split('?')[0].strip('/').split('/')  # v1 segments [id hosts]
        if len(parts) == 2:
            return 200, {'segments': [{'uuid': i, 'name': n} for i, n in ids.items()]}, {}
        hosts = self.segments.get(ids.get(parts[2], ''), [])
        return 200, {'hosts': [{'name': h, 'on_maintenance': h in self.maintenance}
                               for h in hosts]}, {}

    def _respond(self, request: Request) -> tuple[int, dict | None, dict]:
        status, document, headers = self._handle(request)
        if not self.keep_alive:
            headers = {**headers, 'Connection': 'close'}
        return status, document, headers

    def _handle(self, request: Request) -> tuple[int, dict | None, dict]:
        if request.method == 'GET' and '/segments' in request.path:
            return self._segments(request.path)
        if request.method != 'POST' or not request.path.endswith('/notifications'):
            return 404, {'itemNotFound': {'code': 404, 'message': 'no such path'}}, {}
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
            if self._token_check and not self._token_check(
                    request.headers.get('x-auth-token')):
                return 401, {'error': {'code': 401, 'message': 'bad token'}}, {}
            scripted = self.script.popleft() if self.script else None
            delay = self.delay
        if delay:
            time.sleep(delay)
        if scripted is not None:
            status, message = scripted
            return status, {'error': {'code': status, 'message': message}}, {}
        try:
            document = request.json()
        except ValueError:
            return 400, {'badRequest': {'code': 400, 'message': 'malformed JSON'}}, {}
        error = schema_error(document)
        if error:
            return 400, {'badRequest': {'code': 400, 'message': error}}, {}
        n = document['notification']
        if n['hostname'] in self.unknown_hosts:
            message = f"Host with name {n['hostname']} could not be found."
            return 400, {'badRequest': {'code': 400, 'message': message}}, {}
        key = (n['type'], n['hostname'], json.dumps(n['payload'], sort_keys=True))
        generated = _utc(n['generated_time'])
        with self._changed:
            if any(t >= generated - DUPLICATE_WINDOW for t in self._stored_times[key]):
                message = (f"Notification received from host {n['hostname']}"
                           f" of type '{n['type']}' is duplicate.")
                return 409, {'conflictingRequest': {'code': 409, 'message': message}}, {}
            stored = dict(n, notification_uuid=str(uuid.uuid4()), status='new')
            self.stored.append(stored)
            self._stored_times[key].append(generated)
            self._changed.notify_all()
        return 202, {'notification': stored}, {}

    def wait_stored(self, count: int, timeout: float = 10.0) -> list[dict]:
        """Wait until ``count`` notifications are stored; return them all."""
        return self._wait(lambda: len(self.stored) >= count, timeout,
                          lambda: self.stored)

    def wait_requests(self, count: int, timeout: float = 10.0) -> list[Request]:
        return self._wait(lambda: len(self.requests) >= count, timeout,
                          lambda: self.requests)

    def _wait(self, done, timeout, result):
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise AssertionError(
                    f'timed out: {len(self.stored)} stored, '
                    f'{len(self.requests)} requests')
            return list(result())

    def payloads(self) -> list[tuple[str, str, str]]:
        """(instance_uuid, event, vir_domain_event) of every stored one."""
        with self._lock:
            return [(n['payload']['instance_uuid'], n['payload']['event'],
                     n['payload']['vir_domain_event']) for n in self.stored]
