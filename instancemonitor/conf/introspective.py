"""[introspectiveinstancemonitor] options: the in-guest heartbeat.

The first three keep masakari-monitors' names and meaning.
"""

from oslo_config import cfg

GROUP = 'introspectiveinstancemonitor'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='In-guest heartbeat',
        help='guest-ping through the QEMU guest agent of every running domain '
             'that has the org.qemu.guest_agent.0 channel.',
    )


introspective_opts = [
    cfg.BoolOpt(
        'enabled',
        default=True,
        help="""
Ping the guest agent of every running domain that has one.

Domains without the ``org.qemu.guest_agent.0`` virtio channel in their XML
are never pinged, so this costs nothing where no guest has an agent.
"""),
    cfg.IntOpt(
        'guest_monitoring_interval',
        mutable=True,
        default=10,
        min=1,
        help="""
Seconds between two rounds of pings.

Related options:

* ``guest_monitoring_failure_threshold``: a hung guest is reported after
  about threshold x interval seconds.
"""),
    cfg.IntOpt(
        'guest_monitoring_timeout',
        mutable=True,
        default=2,
        min=1,
        help="""
Seconds one guest-ping may take before it counts as failed.

The agent never changes the domain's guest-agent response timeout inside
libvirtd (``agentSetResponseTimeout``): that setting applies to every
client's agent commands, Nova's quiesced snapshots included. So once an
agent has hung, libvirt waits its own fixed 5 s (guest-sync) in every later
ping, whatever this value; pings run in parallel (``ping_workers``), so hung
guests cost a round about 5 s in all, not 5 s each.
"""),
    cfg.IntOpt(
        'guest_monitoring_failure_threshold',
        mutable=True,
        default=3,
        min=1,
        help="""
Consecutive failed pings of a guest that answered before, after which its
failure is notified (once per failure episode).
"""),
    cfg.IntOpt(
        'ping_workers',
        default=64,
        min=1,
        max=512,
        help="""
Pings in flight at once. A round takes about one ``guest_monitoring_timeout``
as long as no more guests than this hang at the same time.
"""),
    cfg.FloatOpt(
        'startup_grace',
        mutable=True,
        default=300.0,
        min=0.0,
        help="""
Seconds within which a guest agent must answer after the heartbeat first
pings a domain's run, after a guest reboot (a REBOOT event), and after the
agent closes its channel (the guest shuts down or reboots). A reboot is never
a heartbeat failure while it lasts less than this.

When it passes without an answer: a guest whose agent answered earlier in
the same run (before a reboot, before a disconnection) is reported as a
heartbeat failure; one whose agent never answered in this run is handled as
``report_never_answered`` says.

Related options:

* ``report_never_answered``: what happens when it does not.
"""),
    cfg.BoolOpt(
        'report_never_answered',
        mutable=True,
        default=False,
        help="""
Notify a guest whose agent never answered within ``startup_grace``.

Possible values:

* False: log it once at WARNING only (a guest image without a running
  agent is common and not a failure of the guest).
* True: notify it as a heartbeat failure.
"""),
    cfg.StrOpt(
        'notification_event',
        default='QEMU_GUEST_AGENT_ERROR',
        choices=[
            ('QEMU_GUEST_AGENT_ERROR', ('QEMU_GUEST_AGENT_ERROR/STOPPED_FAILED, '
                                       'which Masakari recovers')),
            ('LIFECYCLE', 'LIFECYCLE/STOPPED_FAILED, as a crash would be'),
        ],
        help='The ``event`` a heartbeat failure is notified as.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(introspective_opts, group=GROUP)


def list_opts() -> dict:
    return {_group(): introspective_opts}
