"""[metrics] options: the Prometheus endpoint."""

from oslo_config import cfg

GROUP = 'metrics'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='Metrics',
        help='A Prometheus endpoint (prometheus-client) with the agent figures.',
    )


metrics_opts = [
    cfg.PortOpt(
        'port',
        default=9796,
        help="""
Port of the metrics endpoint (``http://HOST:PORT/metrics``).

Possible values:

* 0: no endpoint.
* A port number.

Related options:

* ``host``
"""),
    cfg.HostAddressOpt(
        'host',
        default='127.0.0.1',
        help="""
Address the metrics endpoint listens on. The default keeps it on this host;
set an address a Prometheus server can reach to scrape it from elsewhere.
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(metrics_opts, group=GROUP)


def list_opts() -> dict:
    return {_group(): metrics_opts}
