"""[libvirt] options: the connection the events come from."""

from oslo_config import cfg

GROUP = 'libvirt'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='libvirt connection',
        help='Where domain events come from and how the connection is kept.'
    )


libvirt_opts = [
    cfg.StrOpt(
        'connection_uri',
        default='qemu:///system',
        help="""
libvirt URI to watch.

Possible values:

* ``qemu:///system`` for the host's system libvirtd (the normal case).
* Any libvirt URI, e.g. ``qemu:///system?socket=/path/libvirt-sock``.
"""),
    cfg.IntOpt(
        'keepalive_interval',
        default=5,
        min=1,
        help="""
Seconds between keepalive probes to libvirtd.

Keepalive runs on a second connection that carries no calls. A libvirtd
that stops answering for about ``keepalive_interval`` x (``keepalive_count``
+ 1) seconds is reported (the log, ``instancemonitor_libvirt_connected`` 0)
and waited for, for as long as it takes: the calls and events on the
agent's connection go on once it answers again, and the systemd watchdog
does not take the threads waiting on it for wedged. A libvirtd that exits
is reconnected to at once. Under systemd's watchdog that product must be
below half of ``WatchdogSec`` (30 s with the unit's 60), or the agent
stops at start naming this option.

Related options:

* ``keepalive_count``
"""),
    cfg.IntOpt(
        'keepalive_count',
        default=3,
        min=1,
        help="""
Unanswered keepalive probes after which libvirtd is reported not answering.

Related options:

* ``keepalive_interval``
"""),
    cfg.FloatOpt(
        'reconcile_interval',
        mutable=True,
        default=60.0,
        min=0.0,
        help="""
Seconds between scans of every domain's state (also done at start and after
every reconnection). A domain found shut off because it crashed or failed,
or paused on an I/O error or a watchdog, whose failure was not notified yet
(it happened while libvirtd or the agent was down, when no event is ever
delivered) is notified as if its event had been seen.

Possible values:

* 0: scan only at start and after a reconnection.
* A positive number of seconds.
"""),
    cfg.FloatOpt(
        'forget_gone_after',
        default=86400.0,
        min=0.0,
        help="""
Seconds after which the journal record of a domain that no longer exists is
dropped: one that no state scan has listed and no event has named for this
long (transient domains that stopped, and domains nothing told persistent
or not). A domain last seen persistent that a scan no longer lists was
undefined while nobody watched: its record goes at once, with what it still
had to send, as on libvirt's undefine event. Keeps the state database from
growing for ever on a host whose instances come and go. A scan that finds
nothing new of a domain writes when it saw it at most every 10 minutes, so a
domain can go up to 10 minutes sooner.

Possible values:

* 0: keep every record.
* Seconds (default: one day).

Related options:

* ``reconcile_interval``: records are dropped after a scan.
"""),
    cfg.FloatOpt(
        'reconnect_interval',
        default=0.5,
        min=0.05,
        help="""
Seconds before the first reconnection attempt after the connection is lost.

Each failed attempt doubles the wait, up to ``reconnect_interval_max``. The
agent retries for ever; it never exits because libvirtd is down.

Related options:

* ``reconnect_interval_max``
"""),
    cfg.FloatOpt(
        'reconnect_interval_max',
        default=1.0,
        min=0.05,
        help="""
Upper bound, in seconds, of the wait between reconnection attempts: the
agent is connected again at most this long after libvirtd answers. An
attempt on libvirtd's local socket that fails costs next to nothing, so the
default keeps it short.

Related options:

* ``reconnect_interval``
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(libvirt_opts, group=GROUP)


def list_opts() -> dict:
    return {_group(): libvirt_opts}
