"""Configuration: one module per option group, registered on ``CONF``.

NOTE: each group module builds a new ``OptGroup`` whenever it registers.
oslo.config keeps a registered group's option table (values, overrides, and
the auth plugin options keystoneauth adds) in a shallow copy that shares it
with the OptGroup object given, so one module-level group would carry one
ConfigOpts' state into every other (the tests make many).
"""

from oslo_config import cfg

from instancemonitor.conf import api
from instancemonitor.conf import callback
from instancemonitor.conf import default
from instancemonitor.conf import events
from instancemonitor.conf import introspective
from instancemonitor.conf import libvirt
from instancemonitor.conf import message_bus
from instancemonitor.conf import metrics
from instancemonitor.conf import probes
from instancemonitor.conf import webhooks

CONF = cfg.CONF

_GROUP_MODULES = (default, libvirt, events, callback, api, introspective, metrics,
                  webhooks, message_bus, probes)


def register_opts(conf: cfg.ConfigOpts) -> None:
    for module in _GROUP_MODULES:
        module.register_opts(conf)


register_opts(CONF)
