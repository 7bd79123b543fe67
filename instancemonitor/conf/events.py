"""[events] options: which domain events become notifications."""

from oslo_config import cfg

GROUP = 'events'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='Event filter',
        help='Which libvirt domain events are forwarded to the recovery API.'
    )


events_opts = [
    cfg.StrOpt(
        'forward',
        default='recovery',
        choices=[
            ('recovery', ('only the events the recovery engine acts on: '
                          'LIFECYCLE/STOPPED_FAILED and '
                          'IO_ERROR/IO_ERROR_REPORT')),
            ('all', ('every event masakari-monitors forwards (stops, '
                     'shutdowns, suspends on error, reboots, watchdog, I/O '
                     'and control errors) plus crashes; Masakari stores the '
                     'ones it does not act on as "ignored"')),
        ],
        help="""
Which libvirt domain events are sent to the recovery API.

Related options:

* ``reboot_window``
"""),
    cfg.FloatOpt(
        'reboot_window',
        mutable=True,
        default=1.0,
        min=0.0,
        help="""
Seconds a forwarded STOPPED or SHUTDOWN event that the recovery engine does
not act on (``forward = all``: STOPPED_SHUTDOWN, STOPPED_DESTROYED, ...) is
held before it is sent.

If the same domain starts again within this window, the stop was part of a
reboot and is not reported. Each held event is sent this much later than it
was detected; its ``generated_time`` is still the time of detection. A
failure the engine acts on (LIFECYCLE/STOPPED_FAILED and the others) is not
held for it: libvirt never restarts a domain whose QEMU died, so it is sent at
once (but see ``migration_outcome_wait``).

Possible values:

* 0 to send at once and never suppress a stop.
* A positive number of seconds.

Related options:

* ``forward``
* ``migration_outcome_wait``
"""),
    cfg.FloatOpt(
        'migration_outcome_wait',
        default=30.0,
        min=0.0,
        help="""
Seconds at most that a QEMU death in the last phase of an outgoing live
migration (the source paused, its last pages on their way, or post-copy)
waits for the migration's outcome before its LIFECYCLE/STOPPED_FAILED is
sent.

Such a death sends the event of a crash even when the destination got every
page and libvirt resumes the VM there. Meanwhile the agent looks the source
domain up a few times a second, and only reads. If the migration undefines it
(Nova's do: VIR_MIGRATE_UNDEFINE_SOURCE), the VM runs at the destination and
nothing is sent. If libvirt ends the migration's job with the domain still
defined, or the domain is transient (gone either way), the VM is lost and the
notification goes at once. Only when neither is known within this many seconds
(the destination's libvirtd does not answer the source's) is it sent
then. The notification is kept durably meanwhile; ``generated_time`` is the
time of detection.

Possible values:

* 0 to send such a death at once, as any other.
* A positive number of seconds: about libvirt's keepalive between the two
  libvirtds (qemu.conf keepalive_interval x keepalive_count, 30 s by
  default), after which the source gives up on the destination.

Related options:

* ``reboot_window``
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(events_opts, group=GROUP)


def list_opts() -> dict:
    return {_group(): events_opts}
