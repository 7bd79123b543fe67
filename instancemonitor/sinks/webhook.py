"""A webhook: ``POST {url}`` of one domain event as a JSON document.

Headers: ``X-Instancemonitor-Delivery`` (the document's id, the same on every
resend), ``X-Instancemonitor-Event`` (``EVENT/DETAIL``) and, with a secret,
``X-Instancemonitor-Signature-256: sha256=HEX``, the HMAC-SHA256 of the body.
"""

import hashlib
import hmac
import json

from oslo_config import cfg

from instancemonitor.events import Notification
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome
from instancemonitor.sinks import httpclient

SIGNATURE_HEADER = 'X-Instancemonitor-Signature-256'
_MESSAGE_LIMIT = 500
# Answers worth another try: timeouts, too early, too many, and 5xx below.
_TRANSIENT = frozenset({408, 425, 429})


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f'sha256={digest}'


class WebhookSink:
    def __init__(self, name: str, url: str, secret: str | None = None,
                 timeout: float = 10.0, ca_file: str | None = None) -> None:
        self.name = name
        self.url = url
        self._secret = secret
        # One sender thread per webhook: one connection.
        self._client = httpclient.HTTPClient(timeout, ca_file or True,
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
            'X-Instancemonitor-Delivery': notification.notification_id,
            'X-Instancemonitor-Event':
                f'{notification.event}/{notification.vir_domain_event}',
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            response = self._client.post(self.url, body, headers)
        except httpclient.TransportError as error:
            return Answer(Outcome.RETRY, None, str(error))
        status = response.status
        if 200 <= status < 300:
            return Answer(Outcome.DELIVERED, status)
        message = response.text.strip()[:_MESSAGE_LIMIT]
        if 300 <= status < 400:
            message = f"redirected to {response.headers.get('Location', '?')}"
        if status in _TRANSIENT or status >= 500:
            return Answer(Outcome.RETRY, status, message)
        return Answer(Outcome.REJECTED, status, message)
