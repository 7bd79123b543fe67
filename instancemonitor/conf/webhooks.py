"""[webhooks] and [webhook:NAME] options: HTTP endpoints that get domain events.

``[webhooks] enabled`` lists names; each name has a section of its own,
``[webhook:NAME]``, registered once the files are read.
"""

from oslo_config import cfg

from instancemonitor.conf.sections import register_named_sections

GROUP = 'webhooks'
SECTION_PREFIX = 'webhook:'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='Webhooks',
        help='HTTP endpoints that receive every domain event they ask for.')


def _webhook_group(name: str) -> cfg.OptGroup:
    return cfg.OptGroup(
        SECTION_PREFIX + name,
        title=f'Webhook {name}',
        help="""
One such section for each name in ``[webhooks] enabled``: ``[webhook:billing]``
for the name ``billing``. Each webhook has its own outbox and sender thread: a
slow or unreachable one delays neither the others nor the recovery API.
""",
        dynamic_group_owner='enabled')


webhooks_opts = [
    cfg.ListOpt(
        'enabled',
        default=[],
        help="""
Names of the webhooks to deliver domain events to.

Each name needs a ``[webhook:NAME]`` section with at least its ``url``.
Names are letters, digits, ``_``, ``.`` and ``-``; a name is also the sink's
name in the logs, the metrics and ``instancemonitor-status``
(``webhook:NAME``).
"""),
]

webhook_opts = [
    cfg.URIOpt(
        'url',
        schemes=['http', 'https'],
        secret=True,
        help="""
Where each event is POSTed, as a JSON document. Required.

Treated as a secret, since it may carry a token (in its query) or a
password (``https://user:password@host/...``, sent as Basic
authentication): the logs, the dead letters' reasons and
``instancemonitor-status`` show its scheme, host, port and path only.

Any 2xx answer means delivered. 408, 425, 429, 5xx, timeouts and refused
connections are retried like the recovery API's notifications (``[callback]``
retry options, ``max_pending_age``). Any other answer, redirects included, is
final: the event is kept as a dead letter.
"""),
    cfg.ListOpt(
        'events',
        default=['*'],
        help="""
The events this webhook wants, as shell-style patterns over ``EVENT/DETAIL``:
``*`` for every event, ``LIFECYCLE/*``, ``*/STOPPED_FAILED``,
``HEARTBEAT/REPORTED``. A pattern that matches no event is a configuration
error.
"""),
    cfg.StrOpt(
        'secret',
        secret=True,
        help="""
Key of the HMAC-SHA256 signature of each delivery, sent as the header
``X-Instancemonitor-Signature-256: sha256=HEXDIGEST`` of the request body.
Unset: deliveries are not signed.
"""),
    cfg.FloatOpt(
        'timeout',
        default=10.0,
        min=0.1,
        help='Seconds to wait for the endpoint to connect and to answer.'),
    cfg.StrOpt(
        'ca_file',
        help='CA bundle to verify an https endpoint with; unset: the system CAs.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(webhooks_opts, group=GROUP)


def register_webhooks(conf: cfg.ConfigOpts) -> list[str]:
    """Register the ``[webhook:NAME]`` sections ``[webhooks] enabled`` names,
    once the files are read; return the section names."""
    return register_named_sections(conf, GROUP, 'webhook', SECTION_PREFIX,
                                   _webhook_group, webhook_opts)


def list_opts() -> dict:
    return {_group(): webhooks_opts, _webhook_group('name'): webhook_opts}
