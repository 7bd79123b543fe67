"""The recovery API client: ``POST {endpoint}/notifications`` in Masakari's schema.

One keystoneauth1 session (token cache, TLS settings) serves every
notification; its endpoint is either looked up in the Keystone catalog
(service type ``instance-ha``) or given explicitly. The POST itself goes
through the lean client in ``httpclient``, with the session's token.
"""

import datetime
import json
import logging
import re
import threading
from collections.abc import Callable

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from instancemonitor import clock
from instancemonitor.conf import api as api_conf
from instancemonitor.conf.errors import ConfigurationError
from instancemonitor.events import Notification
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome
from instancemonitor.sinks import httpclient
from instancemonitor.worker import Worker

LOG = logging.getLogger(__name__)

_MESSAGE_LIMIT = 500
# Seconds the committing thread waits for a connection being opened ahead
# before it leaves the POST to a sender: a handshake on a LAN or loopback
# ends well within it; one to a farther API, or TLS's, may not.
CONNECT_AHEAD_WAIT = 0.002


def adapter_from_conf(conf: cfg.ConfigOpts) -> ks_adapter.Adapter:
    """A keystoneauth1 adapter for the recovery API from the ``[api]`` group."""
    group = api_conf.API_GROUP
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    if auth is None and not conf.api.endpoint:
        raise ConfigurationError(
            '[api] endpoint or [api] auth_type must be set: without Keystone '
            'authentication there is no catalog to find the recovery API in')
    session = ks_loading.load_session_from_conf_options(conf, group, auth=auth)
    return ks_adapter.Adapter(
        session,
        service_type=api_conf.SERVICE_TYPE,
        interface=conf.api.api_interface,
        region_name=conf.api.region,
        endpoint_override=conf.api.endpoint)


def _server_message(body: str) -> str:
    """The message of a Masakari error body ({"badRequest": {"message": ...}})."""
    try:
        document = json.loads(body)
    except ValueError:
        return body.strip()[:_MESSAGE_LIMIT]
    if isinstance(document, dict):
        for value in document.values():
            if isinstance(value, dict) and 'message' in value:
                return str(value['message'])[:_MESSAGE_LIMIT]
    return body.strip()[:_MESSAGE_LIMIT]


# Masakari's HostNotFoundByName, answered with 400: the host is not (or not
# yet, or no longer) in a failover segment. An operator can mend that.
_HOST_NOT_FOUND = re.compile(r'Host with name .* could not be found', re.IGNORECASE)


class MasakariSink:
    name = 'masakari'

    # Answers retrying cannot change. 409 is split below: a duplicate means
    # the API already has the notification.
    _FINAL = frozenset({400, 409, 413, 422})

    def __init__(self, adapter: ks_adapter.Adapter, hostname: str = '',
                 connections: int = 10) -> None:
        """``connections``: kept alive, one per notification in flight."""
        self._adapter = adapter
        session = adapter.session
        self._client = httpclient.HTTPClient(session.timeout, session.verify,
                                             session.cert, connections,
                                             repeated_headers=True)
        # Looked up in the catalog again after the API could not be reached.
        self._endpoint: str | None = None
        self.hostname = hostname
        # Masakari said it does not know this host; cleared by an accepted
        # notification or a registration check that finds it.
        self.host_unknown = False
        self._unreachable = False
        self._lock = threading.Lock()
        # (plugin, its auth_ref, when to ask again, headers): _auth_headers.
        self._kept_headers: tuple | None = None

    def start(self, notification: Notification) -> httpclient.Started | None:
        """Write the notification's POST now, if nothing slow is needed for
        it: the endpoint known, the token's headers kept, a kept-alive
        connection idle. :meth:`finish` reads the answer; None: nothing was
        sent (:meth:`send` does it all)."""
        headers = self._kept_auth_headers()
        if self._endpoint is None or headers is None:
            return None
        return self._client.start(_notifications_url(self._endpoint),
                                  json.dumps(notification.body()).encode(),
                                  headers, wait=CONNECT_AHEAD_WAIT)

    def needs_connection(self) -> bool:
        """Whether the next POST would open a connection first (False
        until the endpoint is known: the sender's POST looks it up)."""
        endpoint = self._endpoint
        return endpoint is not None and not self._client.ready(
            _notifications_url(endpoint))

    def connect_ahead(self) -> None:
        """Have a connection to the API open for the next POST (see
        :meth:`HTTPClient.open_ahead`)."""
        endpoint = self._endpoint
        if endpoint is not None:
            self._client.open_ahead(_notifications_url(endpoint))

    def finish(self, started: httpclient.Started) -> Answer:
        """The answer to a POST :meth:`start` wrote, as :meth:`send`'s."""
        return self._answer(started.body,
                            lambda: self._client.finish(started))

    def send(self, notification: Notification) -> Answer:
        body = json.dumps(notification.body()).encode()
        return self._answer(body, lambda: self._post(body))

    def _answer(self, body: bytes,
                first: Callable[[], httpclient.Response]) -> Answer:
        try:
            response = first()
            if response.status == 401:
                # Expired or revoked: one more try with a new token, as
                # keystoneauth's own session does.
                self._adapter.invalidate()
                response = self._post(body)
        except (ks_exceptions.ClientException, httpclient.TransportError) as error:
            # Refused, timed out, catalog or Keystone unreachable, bad
            # credentials: all may mend, none is the notification's fault.
            self._unreachable, self._endpoint = True, None
            reason = (str(error) if isinstance(error, httpclient.TransportError)
                      else f'{type(error).__name__}: {error}')
            return Answer(Outcome.RETRY, None, reason)
        if self._unreachable:
            self._unreachable = False
            LOG.info('The recovery API answers again')
            self.check_registration()
        status = response.status
        if 200 <= status < 300:
            self._host_known()
            return Answer(Outcome.DELIVERED, status)
        message = _server_message(response.text)
        if status == 409 and 'duplicate' in message.lower():
            return Answer(Outcome.DUPLICATE, status, message)
        if status == 400 and _HOST_NOT_FOUND.search(message):
            self._host_not_found(message)
            return Answer(Outcome.RETRY, status, message)
        if status in self._FINAL:
            return Answer(Outcome.REJECTED, status, message)
        if status in (401, 403):
            # The session already re-authenticated once; drop the token so
            # the next attempt logs in afresh.
            self._adapter.invalidate()
        return Answer(Outcome.RETRY, status, message)

    def _post(self, body: bytes) -> httpclient.Response:
        endpoint = self._endpoint or self._adapter.get_endpoint()
        if not endpoint:
            raise ks_exceptions.EndpointNotFound(
                f'no {api_conf.SERVICE_TYPE} endpoint in the catalog')
        self._endpoint = endpoint
        return self._client.post(_notifications_url(endpoint), body,
                                 self._auth_headers())

    def _auth_headers(self) -> dict[str, str]:
        """The auth plugin's headers (the token), from keystoneauth.

        NOTE: keystoneauth parses the token's expiry again on every call
        (about 45 us); the headers are kept for as long as the plugin holds
        the same token and keystoneauth would not renew it yet (its
        ``MIN_TOKEN_LIFE_SECONDS`` before expiry). A token that is
        invalidated (a 401) or renewed is a new ``auth_ref``: asked again.
        """
        kept = self._kept_auth_headers()  # {} without an auth plugin
        if kept is not None:
            return kept
        auth = self._adapter.auth or self._adapter.session.auth
        headers = self._adapter.session.get_auth_headers(auth) or {}
        token = getattr(auth, 'auth_ref', None)
        expires = getattr(token, 'expires', None)
        if token is None or not isinstance(expires, datetime.datetime):
            self._kept_headers = None
            return headers
        if expires.tzinfo is None:  # keystoneauth's times are UTC
            expires = expires.replace(tzinfo=datetime.UTC)
        renew_at = expires - datetime.timedelta(
            seconds=getattr(auth, 'MIN_TOKEN_LIFE_SECONDS', 120))
        self._kept_headers = (auth, token, renew_at, headers)
        return headers

    def _learn_route(self) -> None:
        """Keep the endpoint and the token's headers once the API answered
        the preflight, which asked keystoneauth for both, and the POST's
        route and rendering: the first failure's POST then waits for no
        catalog lookup, token parse or proxy lookup (2 of its 4 ms on real
        QEMU here), as no later one does."""
        try:
            endpoint = self._adapter.get_endpoint() or None
            if endpoint is not None:
                self._client.prepare(_notifications_url(endpoint),
                                     self._auth_headers())
            self._endpoint = endpoint
        except (ks_exceptions.ClientException, httpclient.TransportError) as error:
            LOG.debug('The recovery API\'s endpoint or token is looked up again '
                      'at the first notification: %s', error)

    def _kept_auth_headers(self) -> dict[str, str] | None:
        """The kept headers if still good (see :meth:`_auth_headers`), with
        no call to keystoneauth; None if they must be asked for."""
        auth = self._adapter.auth or self._adapter.session.auth
        if auth is None:
            return {}
        kept = self._kept_headers
        if (kept is not None and kept[0] is auth and
                kept[1] is getattr(auth, 'auth_ref', None) and
                clock.utcnow() < kept[2]):
            return kept[3]
        return None

    def close(self) -> None:
        self._client.close()

    def _host_known(self) -> None:
        if self.host_unknown:
            self.host_unknown = False
            LOG.info('The recovery API knows host %s again', self.hostname)

    def _host_not_found(self, message: str) -> None:
        with self._lock:
            if self.host_unknown:
                return  # said once per period
            self.host_unknown = True
        LOG.error('The recovery API does not know host %s ([DEFAULT] hostname): '
                  '"%s". Hosts in its failover segments: %s. Notifications are '
                  'kept and retried until [callback] max_pending_age; register '
                  'the host in a segment, or set [DEFAULT] hostname to its name '
                  'there', self.hostname, message, self._known_hosts_text())

    def _hosts(self) -> list[tuple[str, dict]]:
        """(segment name, host) of every host in every failover segment;
        raises RegistrationUnknown if the API cannot tell."""
        try:
            return [(str(segment.get('name', segment['uuid'])), host)
                    for segment in self._get('/segments', 'segments')
                    for host in self._get(f'/segments/{segment["uuid"]}/hosts',
                                          'hosts')
                    if isinstance(host, dict) and 'name' in host]
        except (AttributeError, KeyError, TypeError) as error:
            raise RegistrationUnknown(f'unexpected answer ({error!r})',
                                      answered=True) from None

    def _get(self, path: str, key: str) -> list[dict]:
        try:
            response = self._adapter.get(path, raise_exc=False, connect_retries=0)
        except ks_exceptions.ClientException as error:
            raise RegistrationUnknown(f'{type(error).__name__}: {error}',
                                      answered=False) from None
        if response.status_code != 200:
            raise RegistrationUnknown(
                f'GET {path}: HTTP {response.status_code}: '
                f'{_server_message(response.text)}', answered=True)
        try:
            return response.json()[key]
        except (ValueError, KeyError, TypeError):
            raise RegistrationUnknown(f'GET {path}: not a list of {key}',
                                      answered=True) from None

    def _known_hosts_text(self) -> str:
        try:
            return _host_names(self._hosts())
        except RegistrationUnknown as error:
            return f'(cannot list them: {error.args[0]})'

    def check_registration(self) -> bool:
        """The preflight: is this host in a failover segment, and not on
        maintenance? Logged, never fatal. False if the API did not answer;
        True if it did, even to say that it will not tell (403, 404)."""
        try:
            hosts = self._hosts()
        except RegistrationUnknown as error:
            unknown = error
        else:
            unknown = None
        if unknown is None or unknown.answered:
            self._learn_route()
        if unknown is not None:  # logged outside the handler: no traceback
            LOG.warning('Cannot check that the recovery API knows host %s: %s',
                        self.hostname, unknown)
            return unknown.answered
        mine = [(segment, host) for segment, host in hosts
                if host.get('name') == self.hostname]
        if not mine:
            with self._lock:
                self.host_unknown = True
            LOG.error('Host %s ([DEFAULT] hostname) is in no failover segment of '
                      'the recovery API, which would refuse its notifications '
                      '(they are kept and retried). Hosts in its segments: %s',
                      self.hostname, _host_names(hosts))
            return True
        self._host_known()
        for segment, host in mine:
            if host.get('on_maintenance'):
                LOG.warning('Host %s is on maintenance in failover segment %s: '
                            'the recovery API ignores its notifications (409) '
                            'until it is taken off', self.hostname, segment)
            else:
                LOG.info('Host %s is registered in failover segment %s of the '
                         'recovery API', self.hostname, segment)
        return True


def _notifications_url(endpoint: str) -> str:
    return f"{endpoint.rstrip('/')}/notifications"


def _host_names(hosts: list[tuple[str, dict]]) -> str:
    return ', '.join(sorted({host['name'] for _, host in hosts})) or '(none)'


class RegistrationUnknown(Exception):
    """The recovery API could not say which hosts it knows; ``answered``:
    it answered, though not with them."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class Preflight(Worker):
    """At start: asks the recovery API whether it knows this host, until it
    answers (doubling waits, up to a minute), then ends. Later checks run
    when the API answers again after being unreachable (``send``)."""

    WAIT, WAIT_MAX = 1.0, 60.0

    def __init__(self, sink: MasakariSink) -> None:
        self._sink = sink
        super().__init__('recovery-preflight')

    def _run(self) -> None:
        wait = self.WAIT
        while not self._sink.check_registration():
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, self.WAIT_MAX)


class ConnectAhead(Worker):
    """Opens a connection to the recovery API as soon as a failure's
    notification is due, while the journal and the outbox are still storing
    it: when the server closed the last one (a web server's keep-alive
    timeout is seconds; failures come minutes or days apart), the handshake
    is then done by the time the transaction commits, and the committing
    thread writes the POST itself, as on a kept-alive connection."""

    def __init__(self, sink: MasakariSink) -> None:
        self._sink = sink
        super().__init__('recovery-connect')

    def request(self) -> None:
        """Open one now if the next POST would have to (a poll of the kept
        connection: no thread is woken while one is open)."""
        if self._sink.needs_connection():
            self.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wakeup.wait()
            self._wakeup.clear()
            if not self._stop.is_set():
                self._sink.connect_ahead()
