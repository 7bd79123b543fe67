"""[probes] and [probe:NAME] options: application probes run inside guests
through the QEMU guest agent.

``[probes] enabled`` lists names; each name has a section of its own,
``[probe:NAME]``, registered once the files are read (as webhooks are).
"""

from oslo_config import cfg

from instancemonitor.conf.sections import register_named_sections

GROUP = 'probes'
SECTION_PREFIX = 'probe:'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='Application probes',
        help="""
Checks run inside guests through the QEMU guest agent (``guest-exec``), so
that an application that has died or deadlocked inside a healthy guest is
recovered like a crash. They run on the heartbeat's pool of workers
(``[introspectiveinstancemonitor] ping_workers``), only on running domains
that have the guest agent's channel.
""")


def _probe_group(name: str) -> cfg.OptGroup:
    return cfg.OptGroup(
        SECTION_PREFIX + name,
        title=f'Probe {name}',
        help="""
One such section for each name in ``[probes] enabled``: ``[probe:web]`` for
the name ``web``. Which instances it runs on: the ``match_*`` rules below, or
a domain's own libvirt metadata, which overrides them (see the README,
"Application probes").

Example::

    [probe:web]
    command = /usr/bin/curl
    args = -fsS
    args = http://127.0.0.1/health
    period = 10
    timeout = 5
    failure_threshold = 3
    match_flavor = web.*
""",
        dynamic_group_owner='enabled')


probes_opts = [
    cfg.ListOpt(
        'enabled',
        default=[],
        help="""
Names of the probes to run.

Each name needs a ``[probe:NAME]`` section. Names are letters, digits,
``_``, ``.`` and ``-``; a name is also how the logs, the metrics, the events
(``PROBE/REPORTED``, with ``probe``) and ``instancemonitor-status`` call it.
"""),
]

probe_opts = [
    cfg.StrOpt(
        'type',
        default='exec',
        choices=[('exec', ('run ``command`` with ``args`` in the guest; exit '
                           'status 0 is a success')),
                 ('ping', "guest-ping: the guest agent answers")],
        help='What the probe does.'),
    cfg.StrOpt(
        'command',
        help="""
Absolute path, inside the guest, of the program to run (no shell: for one,
``command = /bin/sh`` with ``args = -c`` and ``args = SCRIPT``). Required
with ``type = exec``.

A program the guest agent cannot start (it is missing, or the agent's
allow/deny lists block ``guest-exec``) makes the probe *unavailable* on that
guest: logged, shown and counted, never a failure.
"""),
    cfg.MultiStrOpt(
        'args',
        default=[],
        help='The arguments, one ``args = ...`` line each, in order.'),
    cfg.FloatOpt(
        'period',
        default=10.0,
        min=1.0,
        help='Seconds from the start of one run of the probe to the next.'),
    cfg.FloatOpt(
        'timeout',
        default=5.0,
        min=1.0,
        help="""
Seconds a run may take; a program that has not exited by then is a failure
(it is left running: the guest agent cannot stop it). At most ``period``.
"""),
    cfg.FloatOpt(
        'initial_delay',
        default=60.0,
        min=0.0,
        help="""
Seconds after the probe first sees a run of the domain, or a guest reboot,
before it first runs (time for the application to start).

Until the probe has succeeded once in a run it is in *discovery*: its
failures are never reported, so a guest that boots slowly, or an image the
probe does not fit, is not recovered for it.
"""),
    cfg.IntOpt(
        'failure_threshold',
        default=3,
        min=1,
        help='Failures in a row after which the probe reports the instance.'),
    cfg.IntOpt(
        'success_threshold',
        default=1,
        min=1,
        help="""
Successes in a row after which a failing or reported probe is healthy again
(which ends a failure episode it opened: the next failure is news).
"""),
    cfg.StrOpt(
        'action',
        default='recover',
        choices=[('recover', ('notify the recovery API as a heartbeat failure '
                              'is (``[introspectiveinstancemonitor] '
                              'notification_event``), once per failure episode, '
                              'whatever saw the failure first')),
                 ('notify', 'events for webhooks and the message bus only')],
        help='What a reported probe does.'),
    cfg.ListOpt(
        'match_flavor',
        default=[],
        help="""
Shell-style patterns over the Nova flavor name of the instance
(``<nova:flavor name=...>`` in the domain's metadata).

The ``match_*`` rules of a probe must all match (each one is any of its
patterns); a probe with none runs only where a domain's metadata names it.
"""),
    cfg.ListOpt(
        'match_image',
        default=[],
        help='Patterns over the uuid of the root image (``<nova:root uuid=...>``).'),
    cfg.ListOpt(
        'match_project',
        default=[],
        help='Patterns over the project, its id or its name (``<nova:project>``).'),
    cfg.ListOpt(
        'match_name',
        default=[],
        help="""
Patterns over the libvirt domain name (``instance-*`` on Nova hosts; any name
where there is no Nova).
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(probes_opts, group=GROUP)


def register_probes(conf: cfg.ConfigOpts) -> list[str]:
    """Register the ``[probe:NAME]`` sections ``[probes] enabled`` names, once
    the files are read; return the section names."""
    return register_named_sections(conf, GROUP, 'probe', SECTION_PREFIX,
                                   _probe_group, probe_opts)


def list_opts() -> dict:
    return {_group(): probes_opts, _probe_group('name'): probe_opts}
