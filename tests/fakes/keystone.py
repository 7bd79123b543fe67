"""A Keystone v3 stand-in: password login, tokens with a catalog, revocation.

Token and discovery documents come from keystoneauth1's own fixtures, so a
client parses what real Keystone would send. Other paths can be routed to
handlers of their own (a Nova stand-in, say) on the same server.
"""

import datetime
import ssl
import threading
import uuid
from collections.abc import Callable

from keystoneauth1 import fixture

from tests.fakes.http import HTTPServer
from tests.fakes.http import Request

USERNAME = 'masakari-agent'
PASSWORD = 'pa55-Wörd-s3cret'
PROJECT = 'service'
REGION = 'RegionOne'

Route = Callable[[Request], tuple[int, dict | None, dict]]


class Keystone:
    def __init__(self, catalog: dict[str, dict[str, str]] | None = None,
                 tls: ssl.SSLContext | None = None,
                 token_lifetime: float = 3600.0) -> None:
        """``catalog``: service type → {interface (public, ...): URL};
        ``tls``: serve HTTPS with this server-side context;
        ``token_lifetime``: seconds until a token it issues expires."""
        self.token_lifetime = token_lifetime
        self.catalog = dict(catalog or {})
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._valid: set[str] = set()
        self.logins = 0
        self._server = HTTPServer(self._handle, tls=tls)

    @property
    def url(self) -> str:
        return f'{self._server.scheme}://127.0.0.1:{self._server.port}'

    @property
    def auth_url(self) -> str:
        return f'{self.url}/v3'

    def password_options(self) -> str:
        """keystoneauth's password login to this stand-in, as ``[api]``
        option lines (masakari-monitors reads the same)."""
        return f"""auth_type = password
auth_url = {self.auth_url}
username = {USERNAME}
password = {PASSWORD}
project_name = {PROJECT}
user_domain_name = Default
project_domain_name = Default
region = {REGION}
"""

    def route(self, prefix: str, handler: Route) -> None:
        """Answer requests whose path starts with ``prefix`` with ``handler``."""
        self._routes[prefix] = handler

    def start(self) -> 'Keystone':
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def is_valid(self, token: str | None) -> bool:
        with self._lock:
            return token in self._valid

    def revoke_all(self) -> None:
        with self._lock:
            self._valid.clear()

    def _handle(self, request: Request) -> tuple[int, dict | None, dict]:
        for prefix, handler in self._routes.items():
            if request.path.startswith(prefix):
                return handler(request)
        if request.method == 'GET' and request.path.rstrip('/') in ('', '/v3'):
            return 200, {'version': fixture.V3Discovery(self.auth_url)}, {}
        if request.method == 'POST' and request.path == '/v3/auth/tokens':
            return self._login(request)
        return 404, {'error': {'code': 404, 'message': f'no {request.path}'}}, {}

    def _login(self, request: Request) -> tuple[int, dict | None, dict]:
        identity = request.json()['auth']['identity']['password']['user']
        if identity.get('name') != USERNAME or identity.get('password') != PASSWORD:
            return 401, {'error': {'code': 401, 'message': 'bad login'}}, {}
        token_id = uuid.uuid4().hex
        token = fixture.V3Token(user_name=USERNAME, project_name=PROJECT,
                                user_domain_id='default',
                                project_domain_id='default',
                                expires=datetime.datetime.now(datetime.UTC) +
                                datetime.timedelta(seconds=self.token_lifetime))
        for service_type, urls in self.catalog.items():
            service = token.add_service(service_type)
            for interface, url in urls.items():
                service.add_endpoint(interface, url, region=REGION)
        with self._lock:
            self._valid.add(token_id)
            self.logins += 1
        return 201, token, {'X-Subject-Token': token_id}
