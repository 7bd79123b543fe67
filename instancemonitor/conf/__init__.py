"""Configuration: one module per option group, registered on ``CONF``."""

from oslo_config import cfg

from instancemonitor.conf import api
from instancemonitor.conf import callback
from instancemonitor.conf import default
from instancemonitor.conf import events
from instancemonitor.conf import libvirt

CONF = cfg.CONF

_GROUP_MODULES = (default, libvirt, events, callback, api)


def register_opts(conf: cfg.ConfigOpts) -> None:
    for module in _GROUP_MODULES:
        module.register_opts(conf)


register_opts(CONF)
