"""A webhook: ``POST {url}`` of one domain event as a JSON document.

The URL is a secret (it may carry a token in its query or a password before
its host): what this sink says, and so the logs and the dead letters, shows
it redacted. User info in it becomes Basic authentication.

Headers: ``X-Instancemonitor-Delivery`` (the document's id, the same on every
resend), ``X-Instancemonitor-Event`` (``EVENT/DETAIL``),
``X-Instancemonitor-Timestamp`` (Unix seconds of this attempt) and, with a
secret, ``X-Instancemonitor-Signature-256: sha256=HEX``, the HMAC-SHA256 of
``TIMESTAMP.BODY``: a receiver that refuses old timestamps and signatures it
has seen cannot be fed a recorded delivery again.
"""

import base64
import hashlib
import hmac
import json
import urllib.parse

from oslo_config import cfg

from instancemonitor import clock
from instancemonitor.events import Notification
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome
from instancemonitor.sinks import httpclient

SIGNATURE_HEADER = 'X-Instancemonitor-Signature-256'
TIMESTAMP_HEADER = 'X-Instancemonitor-Timestamp'
_MESSAGE_LIMIT = 500
# Answers worth another try: timeouts, too early, too many, and 5xx below.
_TRANSIENT = frozenset({408, 425, 429})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b'.' + body,
                      hashlib.sha256).hexdigest()
    return f'sha256={digest}'


class WebhookSink:
    def __init__(self, name: str, url: str, secret: str | None = None,
                 timeout: float = 10.0, ca_file: str | None = None) -> None:
        self.name = name
        parts = urllib.parse.urlsplit(url)
        # Sent without the user info, which goes in a header instead.
        self._url = urllib.parse.urlunsplit(
            parts._replace(netloc=parts.netloc.rpartition('@')[2]))
        self._auth = {}
        if parts.username is not None:
            credentials = (f'{urllib.parse.unquote(parts.username)}:'
                           f'{urllib.parse.unquote(parts.password or "")}')
            self._auth = {'Authorization': 'Basic ' + base64.b64encode(
                credentials.encode()).decode()}
        self.url = httpclient.redacted(url)
        self._secret = secret
        # One sender thread per webhook: one connection.
        self._client = httpclient.HTTPClient(timeout, ca_file or None,
                                             connections=1)

    @classmethod
    def from_conf(cls, section: cfg.ConfigOpts.GroupAttr, name: str) -> 'WebhookSink':
        return cls(name, section.url, section.secret, section.timeout,
                   section.ca_file)

    def close(self) -> None:
        self._client.close()

    def send(self, notification: Notification) -> Answer:
        body = json.dumps(notification.document(), separators=(',', ':')).encode()
        headers = {
            **self._auth,
            'X-Instancemonitor-Delivery': notification.notification_id,
            'X-Instancemonitor-Event': notification.pair,
        }
        timestamp = str(int(clock.utcnow().timestamp()))
        headers[TIMESTAMP_HEADER] = timestamp
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, timestamp, body)
        try:
            response = self._client.post(self._url, body, headers)
        except httpclient.TransportError as error:
            return Answer(Outcome.RETRY, None, str(error).replace(self._url, self.url))
        status = response.status
        if 200 <= status < 300:
            return Answer(Outcome.DELIVERED, status)
        message = response.text.strip()[:_MESSAGE_LIMIT]
        if 300 <= status < 400:
            location = response.headers.get('Location')
            message = (f'redirected to {httpclient.redacted(location)}' if location
                       else 'redirected')
        if status in _TRANSIENT or status >= 500:
            return Answer(Outcome.RETRY, status, message)
        return Answer(Outcome.REJECTED, status, message)
