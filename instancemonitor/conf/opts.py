"""The option list for oslo-config-generator (entry point ``oslo.config.opts``)."""

from oslo_config import cfg

from instancemonitor.conf import _GROUP_MODULES


def list_opts() -> list[tuple[str | cfg.OptGroup, list[cfg.Opt]]]:
    listed = []
    for module in _GROUP_MODULES:
        listed.extend(module.list_opts().items())
    return listed
