"""[callback] options: how notifications are delivered (masakari-monitors' names)."""

from oslo_config import cfg

GROUP = 'callback'


def _group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(
        GROUP,
        title='Notification delivery',
        help='Retries and concurrency of sending notifications to the API.'
    )


callback_opts = [
    cfg.IntOpt(
        'retry_max',
        mutable=True,
        default=12,
        min=0,
        help="""
Retries of one notification after its first attempt fails, in one round.

A notification still undelivered after ``retry_max`` retries is NOT dropped
(unlike masakari-monitors): it stays pending and a new round of attempts
starts after ``retry_interval`` (``retry_interval_max`` with backoff).

Related options:

* ``retry_interval``, ``retry_backoff``
"""),
    cfg.FloatOpt(
        'retry_interval',
        mutable=True,
        default=10.0,
        min=0.0,
        help="""
Seconds between attempts to send a notification.

Related options:

* ``retry_max``
* ``retry_backoff``: with it, the first wait; later waits double.
"""),
    cfg.BoolOpt(
        'retry_backoff',
        mutable=True,
        default=False,
        help="""
Wait exponentially longer between attempts, with random jitter.

Possible values:

* False: wait ``retry_interval`` between attempts.
* True: wait ``retry_interval`` x 2^n plus up to ``retry_interval`` of
  jitter, capped at ``retry_interval_max``.

Related options:

* ``retry_interval``, ``retry_interval_max``
"""),
    cfg.FloatOpt(
        'retry_interval_max',
        mutable=True,
        default=300.0,
        min=0.0,
        help="""
Upper bound of the wait between attempts when ``retry_backoff`` is on.

Related options:

* ``retry_backoff``
"""),
    cfg.FloatOpt(
        'max_pending_age',
        mutable=True,
        default=86400.0,
        min=0.0,
        help="""
Seconds after detection when a notification still not delivered becomes a
dead letter: logged at ERROR, counted, and kept on disk for the operator,
never silently deleted.

The age is elapsed time, so a step of the wall clock (NTP) neither ages a
notification nor makes it young again; across a restart of the agent, the
time it was down counts too (from the wall clock, never less than 0).

Possible values:

* 0: keep retrying for ever.
* A positive number of seconds (default: one day).

Related options:

* ``retry_max``, ``retry_interval``
"""),
    cfg.FloatOpt(
        'dead_letter_max_age',
        default=2592000.0,
        min=0.0,
        help="""
Seconds after detection when a dead letter is deleted from the state
database (for every sink); ``instancemonitor-status`` says how many were.

Possible values:

* 0: keep dead letters until an operator re-queues them.
* Seconds (default: 30 days).

Related options:

* ``dead_letter_max_count``
"""),
    cfg.IntOpt(
        'dead_letter_max_count',
        default=10000,
        min=0,
        help="""
Dead letters kept at most, per sink; the oldest go first.

Possible values:

* 0: no limit.
* A number (default: 10,000).

Related options:

* ``dead_letter_max_age``
"""),
    cfg.IntOpt(
        'max_in_flight',
        default=512,
        min=1,
        max=4096,
        deprecated_name='sender_threads',
        help="""
Notifications to the recovery API sent at the same time, at most.

One sender thread runs always; while due notifications wait and every
sender is busy, another starts (up to this number), and it ends after 30 s
without work. Each holds one notification until it gets a final answer, so
a slow or retrying request never holds up the others. Pending notifications
are taken in order of detection.

The default is above the guests of any compute host: a whole host's
failures are in flight at once. Lower it if the recovery API must not get
more concurrent requests from one host.
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(callback_opts, group=GROUP)


def list_opts() -> dict:
    return {_group(): callback_opts}
