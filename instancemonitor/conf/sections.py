"""Sections named by a list option, such as ``[webhook:NAME]`` for each name
in ``[webhooks] enabled``: registered once the files are read."""

import re
from collections.abc import Callable

from oslo_config import cfg

from instancemonitor.conf.errors import ConfigurationError

NAME = re.compile(r'[A-Za-z0-9_.-]+')


def register_named_sections(conf: cfg.ConfigOpts, owner: str, what: str,
                            prefix: str, make_group: Callable[[str], cfg.OptGroup],
                            opts: list[cfg.Opt]) -> list[str]:
    """Register a ``PREFIXNAME`` section for each name ``[owner] enabled``
    lists; return the section names. ``what`` names one in messages."""
    sections = []
    for name in conf[owner].enabled:
        if not NAME.fullmatch(name):
            raise ConfigurationError(
                f'[{owner}] enabled: invalid {what} name {name!r}: use letters, '
                'digits, _, . and -')
        section = prefix + name
        if section in sections:
            raise ConfigurationError(f'[{owner}] enabled: {name} is listed twice')
        conf.register_group(make_group(name))
        conf.register_opts(opts, group=section)
        sections.append(section)
    return sections
