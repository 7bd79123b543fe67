"""[message_bus] options: domain events on a RabbitMQ topic for the fleet."""

from oslo_config import cfg

GROUP = 'message_bus'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='Message bus',
        help="""
Every domain event published to a topic on RabbitMQ as an oslo.messaging
notification (message format 2.0), so any number of consumers (an
oslo.messaging notification listener, or any AMQP client) can subscribe.
Publishing waits for the broker's confirm; until then the event stays in the
outbox, so delivery is at least once.
""")


message_bus_opts = [
    cfg.StrOpt(
        'transport_url',
        secret=True,
        help="""
The broker, ``rabbit://USER:PASSWORD@HOST:5672/VHOST`` (``amqp://`` is the
same). Several brokers of one cluster: separate their URLs with ``;`` and
each connection tries them in turn. Unset: no events are published.
"""),
    cfg.StrOpt(
        'exchange',
        default='openstack',
        help="""
The topic exchange to publish to; ``openstack`` is oslo.messaging's default
``control_exchange``.
"""),
    cfg.StrOpt(
        'topic',
        default='notifications',
        help="""
The topic: messages go with the routing key ``TOPIC.info`` and wait in the
queue of that name (declared by the agent, so nothing is lost before a
consumer first listens). oslo.messaging listeners subscribe to
``Target(topic=TOPIC)``.
"""),
    cfg.ListOpt(
        'events',
        default=['*'],
        help="""
The events to publish, as shell-style patterns over ``EVENT/DETAIL`` (``*``,
``LIFECYCLE/*``, ``*/STOPPED_FAILED``). A pattern that matches no event is a
configuration error.
"""),
    cfg.BoolOpt(
        'durable',
        default=True,
        help="""
Declare the exchange and the queue durable and send persistent messages, so
a broker restart keeps what consumers have not read yet. The consumers'
oslo.messaging option ``[oslo_messaging_rabbit] amqp_durable_queues`` must
have the same value: RabbitMQ refuses to declare a queue twice with a
different durability.
"""),
    cfg.BoolOpt(
        'ssl',
        default=False,
        help="""
Connect to the broker over TLS (an ``amqps://`` transport URL does too).
The broker's certificate is verified against ``ssl_ca_file`` (or the
system's CAs) and must name the host of the URL: the password never travels
in clear, and never to a broker that cannot prove who it is.

Related options:

* ``ssl_ca_file``, ``ssl_cert_file``, ``ssl_key_file``
"""),
    cfg.StrOpt(
        'ssl_ca_file',
        help='CA certificates (PEM) to verify the broker with; the system\'s '
             'if unset.'),
    cfg.StrOpt(
        'ssl_cert_file',
        help='A client certificate (PEM) to present to the broker, if it asks.'),
    cfg.StrOpt(
        'ssl_key_file',
        help='The private key of ``ssl_cert_file``.'),
    cfg.FloatOpt(
        'timeout',
        default=10.0,
        min=0.1,
        help='Seconds to wait to connect to the broker and for its confirm.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(message_bus_opts, group=GROUP)


def list_opts() -> dict:
    return {_group(): message_bus_opts}
