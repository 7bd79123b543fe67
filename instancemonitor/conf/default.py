"""[DEFAULT] options."""

import socket

from oslo_config import cfg

# Masakari's own schema for a notification's hostname.
HOSTNAME_PATTERN = r'^[a-zA-Z0-9._-]{1,255}$'

default_opts = [
    cfg.StrOpt(
        'hostname',
        regex=HOSTNAME_PATTERN,
        deprecated_opts=[cfg.DeprecatedOpt('host', group='DEFAULT')],
        help="""
Name of this compute host as the recovery engine knows it.

Every notification carries it. Masakari only accepts notifications from a
host registered in one of its failover segments, so this must be exactly the
name used there (usually the nova-compute service's host name).

Possible values:

* 1 to 255 characters of letters, digits, ``.``, ``_`` and ``-``.
* Unset: the machine's hostname (``socket.gethostname()``).
"""),
    cfg.StrOpt(
        'state_path',
        default='/var/lib/instancemonitor',
        help="""
Directory of the agent's durable state: the per-domain journal and the
outbox of pending and dead-lettered notifications (one SQLite database,
readable by its owner only).

If it cannot be written (unwritable, disk full) the agent keeps detecting
and sending with its state in memory, and says so once at ERROR. A database
file that is corrupt is moved aside (``*.corrupt-TIMESTAMP``), never deleted.
"""),
]


def hostname(conf: cfg.ConfigOpts) -> str:
    """The hostname to report: the option, else the machine's name."""
    return conf.hostname or socket.gethostname()


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(default_opts)


def list_opts() -> dict:
    return {'DEFAULT': default_opts}
