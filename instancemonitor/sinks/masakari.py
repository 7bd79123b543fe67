"""The recovery API client: ``POST {endpoint}/notifications`` in Masakari's schema.

One keystoneauth1 session (token cache, TLS, connection pool) serves every
notification. Its endpoint is either looked up in the Keystone catalog
(service type ``instance-ha``) or given explicitly.
"""

import json
import logging

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from instancemonitor.conf import api as api_conf
from instancemonitor.conf.errors import ConfigurationError
from instancemonitor.events import Notification
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome

LOG = logging.getLogger(__name__)

_MESSAGE_LIMIT = 500


def adapter_from_conf(conf: cfg.ConfigOpts) -> ks_adapter.Adapter:
    """A keystoneauth1 adapter for the recovery API from the ``[api]`` group."""
    group = api_conf.API_GROUP
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    if auth is None and not conf.api.endpoint:
        raise ConfigurationError(
            '[api] endpoint or [api] auth_type must be set: without Keystone '
            'authentication there is no catalog to find the recovery API in')
    session = ks_loading.load_session_from_conf_options(conf, group, auth=auth)
    _size_connection_pool(session, conf.callback.sender_threads)
    return ks_adapter.Adapter(
        session,
        service_type=api_conf.SERVICE_TYPE,
        interface=conf.api.api_interface,
        region_name=conf.api.region,
        endpoint_override=conf.api.endpoint)


def _size_connection_pool(session: ks_session.Session, senders: int) -> None:
    """One kept-alive connection per sender thread: requests' default pool
    keeps 10 per host and discards the rest, reconnecting every time."""
    current = session.session.get_adapter('https://')
    pool = ks_session.TCPKeepAliveAdapter(
        pool_maxsize=max(10, senders),
        tls_ciphers=getattr(current, 'tls_ciphers', None),
        tls_min_version=getattr(current, 'tls_min_version', None))
    for prefix in ('https://', 'http://'):
        session.session.mount(prefix, pool)


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


class MasakariSink:
    name = 'masakari'

    # Answers retrying cannot change. 409 is split below: a duplicate means
    # the API already has the notification.
    _FINAL = frozenset({400, 409, 413, 422})

    def __init__(self, adapter: ks_adapter.Adapter) -> None:
        self._adapter = adapter

    def send(self, notification: Notification) -> Answer:
        try:
            response = self._adapter.post(
                '/notifications', json=notification.body(), raise_exc=False,
                connect_retries=0, status_code_retries=0)
        except ks_exceptions.ClientException as error:
            # Refused, timed out, catalog or Keystone unreachable, bad
            # credentials: all may mend, none is the notification's fault.
            return Answer(Outcome.RETRY, None,
                          f'{type(error).__name__}: {error}')
        status = response.status_code
        if 200 <= status < 300:
            return Answer(Outcome.DELIVERED, status)
        message = _server_message(response.text)
        if status == 409 and 'duplicate' in message.lower():
            return Answer(Outcome.DUPLICATE, status, message)
        if status in self._FINAL:
            return Answer(Outcome.REJECTED, status, message)
        if status in (401, 403):
            # The session already re-authenticated once; drop the token so
            # the next attempt logs in afresh.
            self._adapter.invalidate()
        return Answer(Outcome.RETRY, status, message)
