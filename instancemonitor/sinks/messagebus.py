"""The message bus: each domain event as an oslo.messaging notification on
a RabbitMQ topic, published with kombu (the AMQP library oslo.messaging's
rabbit driver is built on).

Why not oslo.messaging's ``Notifier``: its notifications are at most once by
design. Its rabbit driver does wait for the broker's confirm, but the
notifier logs a failed send and returns, so the caller cannot keep the event
for another try. Here a publish counts as delivered only once the broker has
confirmed it (publisher confirms); any failure leaves the event in the outbox.

The message is what ``Notifier`` with the ``messagingv2`` driver sends: the
2.0 envelope ``{"oslo.version": "2.0", "oslo.message": "<JSON>"}`` around
``message_id``, ``publisher_id``, ``event_type``, ``priority``, ``payload``
and ``timestamp``, with routing key ``TOPIC.info`` on a topic exchange, so
an oslo.messaging notification listener reads it as it reads Nova's.
``message_id`` is the event document's id, the same on every resend.
"""

import datetime
import json
import logging
import ssl

import amqp.exceptions
import kombu
import kombu.exceptions
from oslo_config import cfg

from instancemonitor.events import Notification
from instancemonitor.sinks import Answer
from instancemonitor.sinks import Outcome

LOG = logging.getLogger(__name__)

NAME = 'message-bus'
PRIORITY = 'info'
EVENT_TYPE_PREFIX = 'instancemonitor.'
_ERRORS = (OSError, kombu.exceptions.KombuError, amqp.exceptions.AMQPError)


def kombu_url(transport_url: str) -> str:
    """oslo.messaging's ``rabbit://`` URLs are AMQP URLs kombu reads as
    ``amqp://``; several are separated by ``;`` (failover)."""
    urls = [url.strip() for url in transport_url.split(';') if url.strip()]
    return ';'.join('amqp://' + url.removeprefix('rabbit://')
                    if url.startswith('rabbit://') else url for url in urls)


def tls_options(ca_file: str | None = None, cert_file: str | None = None,
                key_file: str | None = None) -> dict:
    """TLS with the broker's certificate verified, and its name: kombu puts
    the host of each broker URL in ``server_hostname`` (None), which turns
    py-amqp's hostname check on."""
    options: dict = {'cert_reqs': ssl.CERT_REQUIRED, 'server_hostname': None}
    if ca_file:
        options['ca_certs'] = ca_file
    if cert_file:
        options['certfile'] = cert_file
        options['keyfile'] = key_file
    return options


def envelope(notification: Notification, publisher_id: str) -> dict:
    """The message body, as oslo.messaging's notifier would send it."""
    stamp = notification.generated_time.astimezone(datetime.UTC).replace(tzinfo=None)
    message = {
        'message_id': notification.notification_id,
        'publisher_id': publisher_id,
        'event_type': (f'{EVENT_TYPE_PREFIX}{notification.event}.'
                       f'{notification.vir_domain_event}'),
        'priority': PRIORITY.upper(),
        'payload': notification.document(),
        'timestamp': str(stamp),
    }
    return {'oslo.version': '2.0', 'oslo.message': json.dumps(message)}


class MessageBusSink:
    name = NAME

    def __init__(self, transport_url: str, hostname: str,
                 exchange: str = 'openstack', topic: str = 'notifications',
                 durable: bool = True, timeout: float = 10.0,
                 tls: dict | None = None) -> None:
        """``tls``: py-amqp's TLS options (see ``tls_options``), or None."""
        self._url = kombu_url(transport_url)
        if tls is None and self._url.startswith('amqps://'):
            tls = tls_options()
        self._tls = tls
        self._publisher_id = f'instancemonitor.{hostname}'
        self._routing_key = f'{topic}.{PRIORITY}'
        self._exchange = kombu.Exchange(exchange, 'topic', durable=durable)
        # The queue oslo.messaging's listener for TOPIC consumes from; the
        # agent declares it too, so nothing published before a consumer
        # first listens is lost.
        self._queue = kombu.Queue(self._routing_key, self._exchange,
                                  routing_key=self._routing_key,
                                  durable=durable, auto_delete=False)
        self._delivery_mode = 2 if durable else 1
        self._timeout = timeout
        self._connection: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None

    @classmethod
    def from_conf(cls, opts: cfg.ConfigOpts.GroupAttr,
                  hostname: str) -> 'MessageBusSink':
        tls = (tls_options(opts.ssl_ca_file, opts.ssl_cert_file, opts.ssl_key_file)
               if opts.ssl else None)
        return cls(opts.transport_url, hostname, opts.exchange, opts.topic,
                   opts.durable, opts.timeout, tls)

    def _connect(self) -> kombu.Producer:
        connection = kombu.Connection(
            self._url, connect_timeout=self._timeout,
            # A copy: kombu fills in the host of the broker it tries.
            ssl=dict(self._tls) if self._tls is not None else False,
            transport_options={'confirm_publish': True})
        try:
            # Each broker of the list once, without waiting between them.
            connection.ensure_connection(max_retries=self._url.count(';') + 1,
                                         interval_start=0, interval_step=0)
            channel = connection.channel()
            self._queue(channel).declare()
        except BaseException:
            connection.release()
            raise
        LOG.info('Connected to the message bus at %s',
                 connection.as_uri())  # as_uri() masks the password
        self._connection = connection
        self._producer = kombu.Producer(channel)
        return self._producer

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except _ERRORS:
                pass
        self._connection = self._producer = None

    def send(self, notification: Notification) -> Answer:
        body = envelope(notification, self._publisher_id)
        # A kept connection may have died since the last publish (broker
        # restarted): then one more try, at once, on a new connection.
        for fresh in ((False, True) if self._producer else (True,)):
            try:
                producer = self._connect() if fresh else self._producer
                producer.publish(body, exchange=self._exchange,
                                 routing_key=self._routing_key,
                                 serializer='json',
                                 delivery_mode=self._delivery_mode,
                                 timeout=self._timeout, retry=False)
                return Answer(Outcome.DELIVERED, None, 'confirmed by the broker')
            except _ERRORS as error:
                self.close()
                failure = f'{type(error).__name__}: {error}'
        return Answer(Outcome.RETRY, None, failure)
