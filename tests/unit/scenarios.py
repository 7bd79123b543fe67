"""Stories for the per-domain state machine, replayed without libvirt.

A story is a list of steps, one per line: ``SECONDS WHAT [id=N] [read@K]``.
WHAT is a libvirt lifecycle event by its constant's name (``STOPPED_FAILED``,
``STARTED_MIGRATED``...), ``REBOOT``, ``WATCHDOG_PAUSE``,
``IO_ERROR_REPORT``, ``IO_ERROR_PAUSE``, ``IO_ERROR_REASON``,
``AGENT_CONNECTED``, ``AGENT_DISCONNECTED``, ``PING_OK``, ``PING_MISS``,
``SCAN STATE-REASON`` (a state scan finding the domain in that libvirt state,
e.g. ``SCAN running``, ``SCAN shutoff-crashed``, ``SCAN paused-migration``;
``transient`` or ``persistent`` after it says what the domain is from then
on, which is otherwise what the story's (UN)DEFINED events left, persistent
unless the story is ``transient``), ``SCAN absent`` (a complete scan that
does not list the domain),
``MIGRATION_SOURCE_DEFINED``, ``MIGRATION_SOURCE_GONE``,
``MIGRATION_JOB_ENDED`` (what the migration watch finds of a domain whose
QEMU died in an outgoing migration), ``RESTART`` (the agent process restarts
on its state database), ``BOOT`` (the host restarts, and the agent with it:
every QEMU stopped unseen, domain ids counted from 1 again), ``TICK`` (time
passes), or ``API_DOWN`` /
``API_UP``: from then on every POST fails (each due notification is tried
again 10 s later), or arrives. After each step what is due is sent; the
notifications expected are those sent, then those still waiting.

Every STARTED_* gives the domain a new id unless ``id=`` says otherwise;
other events, pings and scans of an active domain carry the current id.
``read@K``: a scan whose state was read just before step K (counting from
1) and arrives now, stale.

Each story ends with the exact notifications left to send, in order, as
``EVENT/DETAIL``; ``[]`` is "nothing".
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Story:
    name: str
    steps: str
    expect: tuple[str, ...]
    forward: str = 'recovery'
    threshold: int = 3
    grace: float = 60.0
    report_never_answered: bool = False
    heartbeat_event: str = 'QEMU_GUEST_AGENT_ERROR'
    reboot_window: float = 1.0
    duplicate_window: float = 180.0
    migration_wait: float = 30.0
    # Created transient (createXML), not defined as Nova's domains are.
    transient: bool = False


CRASH = 'LIFECYCLE/STOPPED_FAILED'
IO = 'IO_ERROR/IO_ERROR_REPORT'
HANG = 'QEMU_GUEST_AGENT_ERROR/STOPPED_FAILED'
NONE: tuple[str, ...] = ()

# Defined, then started: a Nova guest (persistent).
DEFINED = '0 DEFINED_ADDED\n'

# A guest that is running, its agent answering (the usual start).
UP = """
0 RESUMED_UNPAUSED
0 STARTED_BOOTED
1 PING_OK
"""

# An I/O error (its episode open, the guest runs on), then the host restarts.
IO_THEN_HOST_RESTART = UP + '5 IO_ERROR_REPORT\n100 BOOT\n'
# A crash the API does not take.
CRASH_WHILE_API_DOWN = UP + '4 API_DOWN\n5 STOPPED_FAILED\n'

STORIES = [
    # --- Crashes: one failure, one notification -------------------------
    Story('qemu killed', UP + '5 STOPPED_FAILED', (CRASH,)),
    Story('qemu killed, the event twice', UP + '5 STOPPED_FAILED\n5 STOPPED_FAILED',
          (CRASH,)),
    Story('crash, started again (as Masakari does), crash again',
          UP + '5 STOPPED_FAILED\n20 STARTED_BOOTED\n40 STOPPED_FAILED',
          (CRASH, CRASH)),
    Story('a crash is never held for the reboot window, even if a start follows',
          UP + '5 STOPPED_FAILED\n5.2 STARTED_BOOTED', (CRASH,)),
    Story('a crash held by nothing with reboot_window 0',
          UP + '5 STOPPED_FAILED', (CRASH,), reboot_window=0.0),
    Story('watchdog poweroff is one crash',
          UP + '5 WATCHDOG_POWEROFF\n5 STOPPED_FAILED', (CRASH,)),
    Story('watchdog poweroff, forward all',
          UP + '5 WATCHDOG_POWEROFF\n5 STOPPED_FAILED',
          ('WATCHDOG/WATCHDOG_POWEROFF', CRASH), forward='all'),
    Story('watchdog pause is not recovered',
          UP + '5 WATCHDOG_PAUSE\n5 SUSPENDED_WATCHDOG', NONE),
    Story('watchdog pause, forward all',
          UP + '5 WATCHDOG_PAUSE\n5 SUSPENDED_WATCHDOG',
          ('WATCHDOG/WATCHDOG_PAUSE', 'LIFECYCLE/SUSPENDED_WATCHDOG'), forward='all'),
    Story('guest panic (on_crash destroy) is not a recovery pair',
          UP + '5 CRASHED_PANICKED\n5 STOPPED_CRASHED', NONE),
    Story('guest panic, forward all',
          UP + '5 CRASHED_PANICKED\n5 STOPPED_CRASHED',
          ('LIFECYCLE/CRASHED_PANICKED', 'LIFECYCLE/STOPPED_CRASHED'), forward='all',
          reboot_window=0.0),
    Story('guest panic, then scans find it shut off crashed: accounted for',
          UP + '5 CRASHED_PANICKED\n5 STOPPED_CRASHED\n10 SCAN shutoff-crashed\n'
          '20 SCAN shutoff-crashed', NONE),
    Story('guest panic as QEMU 7.2 sends it, the agent restarts, its scan finds '
          'it shut off crashed',
          UP + '5 SUSPENDED_PAUSED\n5 CRASHED_PANICKED\n5 STOPPED_CRASHED\n'
          '6 RESTART\n6 SCAN shutoff-crashed', NONE),
    Story('qemu SIGTERMed', UP + '5 SHUTDOWN_HOST\n5 STOPPED_SHUTDOWN', NONE),
    Story('qemu SIGTERMed, forward all, nothing restarts it',
          UP + '5 SHUTDOWN_HOST\n5 STOPPED_SHUTDOWN',
          ('LIFECYCLE/STOPPED_SHUTDOWN',), forward='all'),
    Story('undefined after a crash, defined and crashed again: two',
          UP + '5 STOPPED_FAILED\n6 UNDEFINED_REMOVED\n10 DEFINED_ADDED\n'
          '11 STARTED_BOOTED\n30 STOPPED_FAILED', (CRASH, CRASH)),
    Story('running, made transient and defined again (a volume swap), then a '
          'crash: one',
          UP + '10 UNDEFINED_REMOVED\n12 DEFINED_ADDED\n20 STOPPED_FAILED', (CRASH,)),
    Story('an I/O error, the VM made transient and defined again, more I/O '
          'errors: the same run, one',
          UP + '5 IO_ERROR_REPORT\n10 UNDEFINED_REMOVED\n12 DEFINED_ADDED\n'
          '20 IO_ERROR_REPORT', (IO,)),
    Story('a second crash held for the duplicate window, the domain then '
          'undefined: the first only',
          UP + '5 STOPPED_FAILED\n20 STARTED_BOOTED\n40 STOPPED_FAILED\n'
          '60 UNDEFINED_REMOVED\n300 TICK', (CRASH,)),

    # --- I/O errors --------------------------------------------------------
    Story('failing disk, report policy: errors keep coming',
          UP + '5 IO_ERROR_REPORT\n6 IO_ERROR_REPORT\n7 IO_ERROR_REPORT', (IO,)),
    Story('failing disk, report policy, resets and scans every 2 s',
          UP + '5 IO_ERROR_REPORT\n6 SCAN running\n7 REBOOT\n7 REBOOT\n'
          '7.5 IO_ERROR_REPORT\n8 SCAN running\n10 SCAN running\n11 REBOOT\n'
          '11.5 IO_ERROR_REPORT\n12 SCAN running\n14 SCAN running', (IO,)),
    Story('failing disk, then the guest crashes in the same run',
          UP + '5 IO_ERROR_REPORT\n9 STOPPED_FAILED', (IO,)),
    Story('failing disk, restarted (stop, start), failing again: two',
          UP + '5 IO_ERROR_REPORT\n9 STOPPED_DESTROYED\n10 RESUMED_UNPAUSED\n'
          '10 STARTED_BOOTED\n12 IO_ERROR_REPORT', (IO, IO)),
    Story('failing disk, stop policy, forward all',
          UP + '5 IO_ERROR_PAUSE\n5 IO_ERROR_REASON\n5 SUSPENDED_IOERROR',
          ('IO_ERROR/IO_ERROR_PAUSE', 'IO_ERROR_REASON/UNKNOWN',
           'LIFECYCLE/SUSPENDED_IOERROR'), forward='all'),
    Story('failing disk, stop policy, default: not recovered',
          UP + '5 IO_ERROR_PAUSE\n5 IO_ERROR_REASON\n5 SUSPENDED_IOERROR\n'
          '10 SCAN paused-ioerror\n15 RESUMED_UNPAUSED', NONE),
    Story('resuming from an error pause is a new run',
          UP + '5 IO_ERROR_REPORT\n6 SUSPENDED_IOERROR\n9 RESUMED_UNPAUSED\n'
          '10 IO_ERROR_REPORT', (IO, IO)),
    Story('resuming from an admin pause is the same run',
          UP + '5 IO_ERROR_REPORT\n6 SUSPENDED_PAUSED\n9 RESUMED_UNPAUSED\n'
          '10 IO_ERROR_REPORT', (IO,)),
    Story('failing disk episode survives an agent restart',
          UP + '5 IO_ERROR_REPORT\n6 RESTART\n6 SCAN running\n8 IO_ERROR_REPORT',
          (IO,)),

    # --- Operations that are not failures ------------------------------------
    Story('virsh shutdown', UP + '5 SHUTDOWN_GUEST\n6 STOPPED_SHUTDOWN', NONE),
    Story('shutdown from inside the guest',
          UP + '5 AGENT_DISCONNECTED\n6 SHUTDOWN_GUEST\n6 STOPPED_SHUTDOWN\n'
          '10 SCAN shutoff-shutdown', NONE),
    Story('virsh destroy', UP + '5 SHUTDOWN_HOST\n5 STOPPED_DESTROYED', NONE),
    Story('virsh destroy, forward all, not started again',
          UP + '5 STOPPED_DESTROYED', ('LIFECYCLE/STOPPED_DESTROYED',),
          forward='all'),
    Story('destroy and start within the reboot window, forward all',
          UP + '5 STOPPED_DESTROYED\n5.5 RESUMED_UNPAUSED\n5.5 STARTED_BOOTED',
          NONE, forward='all'),
    Story('destroy and start after the reboot window, forward all',
          UP + '5 STOPPED_DESTROYED\n7 RESUMED_UNPAUSED\n7 STARTED_BOOTED',
          ('LIFECYCLE/STOPPED_DESTROYED',), forward='all'),
    Story('a scan never withdraws a held stop, forward all',
          UP + '5 STOPPED_DESTROYED\n5.5 SCAN running read@1',
          ('LIFECYCLE/STOPPED_DESTROYED',), forward='all'),
    Story('virsh reboot (ACPI or agent)', UP + '5 REBOOT\n9 PING_OK', NONE),
    Story('virsh reset', UP + '5 REBOOT\n5 REBOOT\n5 REBOOT', NONE),
    Story('virsh reset, forward all: each REBOOT is forwarded',
          UP + '5 REBOOT\n5 REBOOT', ('REBOOT/UNKNOWN', 'REBOOT/UNKNOWN'),
          forward='all'),
    Story('save and restore',
          UP + '5 STOPPED_SAVED\n8 SCAN shutoff-saved\n10 STARTED_RESTORED\n'
          '10 RESUMED_UNPAUSED\n12 PING_OK', NONE),
    Story('managedsave and start',
          UP + '5 SUSPENDED_PAUSED\n5 STOPPED_SAVED\n10 RESUMED_UNPAUSED\n'
          '10 STARTED_RESTORED\n14 PING_OK', NONE),
    Story('suspend and resume, scans in between',
          UP + '5 SUSPENDED_PAUSED\n6 PING_MISS\n7 SCAN paused\n8 PING_MISS\n'
          '9 SCAN paused\n10 PING_MISS\n12 RESUMED_UNPAUSED\n13 PING_OK', NONE),
    Story('a scan that finds the domain running on the same run: nothing',
          UP + '5 SCAN running\n65 SCAN running\n125 SCAN running', NONE),
    Story('first sight by a scan: running', '0 SCAN running id=7', NONE),
    Story('first sight by a scan: shut off cleanly', '0 SCAN shutoff-shutdown', NONE),

    # --- Scans: failures nobody reported --------------------------------------
    Story('crashed before the agent ever ran', '0 SCAN shutoff-crashed', (CRASH,)),
    Story('crashed before the agent ran, scanned again and again',
          '0 SCAN shutoff-crashed\n60 SCAN shutoff-failed\n120 SCAN shutoff-crashed',
          (CRASH,)),
    Story('crashed while libvirtd was down: found by the scan at reconnect',
          UP + '20 SCAN shutoff-crashed\n80 SCAN shutoff-crashed', (CRASH,)),
    Story('the crash event arrives after the scan found it',
          UP + '5 SCAN shutoff-crashed\n5.1 STOPPED_FAILED', (CRASH,)),
    Story('the scan arrives after the crash event',
          UP + '5 STOPPED_FAILED\n6 SCAN shutoff-crashed', (CRASH,)),
    Story('a scan read before a crash arrives after it (the race)',
          UP + '5 STOPPED_FAILED\n5.01 SCAN running read@4', (CRASH,)),
    Story('a scan read before a crash, then scans find it crashed: one',
          UP + '5 STOPPED_FAILED\n5.01 SCAN running read@4\n60 SCAN shutoff-crashed',
          (CRASH,)),
    Story('a scan read before the destroy that followed a crash: not a new crash',
          UP + '5 STOPPED_FAILED\n20 STARTED_BOOTED\n30 STOPPED_DESTROYED\n'
          '30.1 SCAN running read@6\n90 SCAN shutoff-destroyed', (CRASH,)),
    Story('a scan read before a crash, with a start right after the crash',
          UP + '5 STOPPED_FAILED\n5.01 SCAN running read@4\n5.3 STARTED_BOOTED',
          (CRASH,)),
    Story('a stale scan of the old crash after a start and destroy: nothing new',
          UP + '5 STOPPED_FAILED\n30 STARTED_BOOTED\n40 STOPPED_DESTROYED\n'
          '40.1 SCAN shutoff-crashed read@5', (CRASH,)),
    Story('destroyed, then started and crashed while libvirtd was down',
          UP + '5 STOPPED_DESTROYED\n100 SCAN shutoff-crashed', (CRASH,)),
    Story('crashed, restarted and crashed again while the agent was down',
          UP + '5 STOPPED_FAILED\n6 RESTART\n60 SCAN shutoff-crashed', (CRASH,)),
    Story('QEMU killed while the agent was stopped: found by its scan at start',
          UP + '5 RESTART\n6 SCAN shutoff-crashed\n7 SCAN shutoff-crashed', (CRASH,)),
    Story('QEMU killed while the agent was stopped, then libvirtd restarted: '
          'the reason is lost, nothing',
          UP + '5 RESTART\n6 SCAN shutoff-unknown\n7 SCAN shutoff-unknown', NONE),
    Story('destroyed while the agent was stopped',
          UP + '5 RESTART\n6 SCAN shutoff-destroyed\n7 SCAN shutoff-destroyed', NONE),
    Story('killed and started again while the agent was stopped',
          UP + '5 RESTART\n6 SCAN running id=2\n7 SCAN running id=2', NONE),
    Story('restarted while the agent was down ends the episode',
          UP + '5 STOPPED_FAILED\n6 RESTART\n60 SCAN running id=2\n'
          '70 STOPPED_FAILED', (CRASH, CRASH)),
    Story('a scan finding a new run ends an I/O error episode',
          UP + '5 IO_ERROR_REPORT\n60 SCAN running id=5\n62 IO_ERROR_REPORT',
          (IO, IO)),
    Story('scan finds an I/O-error pause, forward all: once',
          UP + '10 SCAN paused-ioerror\n70 SCAN paused-ioerror',
          ('LIFECYCLE/SUSPENDED_IOERROR',), forward='all'),
    Story('scan finds a watchdog pause, forward all: once',
          UP + '10 SCAN paused-watchdog\n70 SCAN paused-watchdog',
          ('LIFECYCLE/SUSPENDED_WATCHDOG',), forward='all'),
    Story('scan after the I/O-error pause event, forward all: not again',
          UP + '5 SUSPENDED_IOERROR\n10 SCAN paused-ioerror',
          ('LIFECYCLE/SUSPENDED_IOERROR',), forward='all'),
    Story('scan finds an I/O-error pause, default: nothing',
          UP + '10 SCAN paused-ioerror', NONE),
    Story('scan finds a new run paused on an I/O error, forward all',
          UP + '5 SUSPENDED_IOERROR\n6 RESTART\n60 SCAN paused-ioerror id=9',
          ('LIFECYCLE/SUSPENDED_IOERROR', 'LIFECYCLE/SUSPENDED_IOERROR'),
          forward='all'),

    # --- A domain id used again -------------------------------------------
    # libvirtd started with nothing running (after a host restart, or a
    # restart of its own) gives ids from 1 again: a domain seen stopped that
    # runs again is in a new run whatever its id, and no run outlives the
    # host's boot.
    Story('an I/O error, shut off; libvirtd restarted and the domain started '
          'with its old id while the agent was away, then QEMU killed: two',
          UP + '5 IO_ERROR_REPORT\n10 STOPPED_DESTROYED\n20 RESTART\n'
          '20 SCAN running id=1\n30 STOPPED_FAILED', (IO, CRASH)),
    Story('shut off; started with its old id while the agent was away, then '
          'its guest agent hangs: one',
          UP + '10 STOPPED_SHUTDOWN\n20 RESTART\n20 SCAN running id=1\n'
          '21 PING_OK\n22 PING_MISS\n23 PING_MISS\n24 PING_MISS', (HANG,)),
    Story('crashed, started with its old id while the agent was away, crashed '
          'again: two',
          UP + '5 STOPPED_FAILED\n6 RESTART\n60 SCAN running id=1\n'
          '70 STOPPED_FAILED', (CRASH, CRASH)),
    Story('API down: a crash, then started with its old id while the agent '
          'was away: withdrawn',
          CRASH_WHILE_API_DOWN + '20 RESTART\n20 SCAN running id=1\n40 API_UP', NONE),
    Story('the host restarted unseen (power lost), the domain autostarted with '
          'its old id before the agent connected, its guest agent not up yet: '
          'none',
          UP + '100 BOOT\n130 SCAN running id=1\n131 PING_MISS\n141 PING_MISS\n'
          '151 PING_MISS\n161 PING_MISS', NONE),
    Story('the host restarted in an I/O error episode, the domain autostarted '
          'with its old id, then QEMU killed: two',
          IO_THEN_HOST_RESTART + '130 SCAN running id=1\n140 STOPPED_FAILED',
          (IO, CRASH)),
    Story('the host restarted in an I/O error episode, the crash of the run '
          'after comes before the agent\'s first scan: two',
          IO_THEN_HOST_RESTART + '130 STOPPED_FAILED id=1', (IO, CRASH)),
    Story('the host restarted in an I/O error episode, the agent saw the start: '
          'as any new run, two',
          IO_THEN_HOST_RESTART + '130 RESUMED_UNPAUSED\n130 STARTED_BOOTED id=1\n'
          '140 STOPPED_FAILED', (IO, CRASH)),
    Story('API down: a crash, the host restarted, the domain left shut off: '
          'sent once the API is back',
          CRASH_WHILE_API_DOWN + '100 BOOT\n101 SCAN shutoff-unknown\n120 API_UP',
          (CRASH,)),
    Story('API down: a crash, the host restarted, the domain autostarted with '
          'its old id: withdrawn',
          CRASH_WHILE_API_DOWN + '100 BOOT\n130 SCAN running id=1\n140 API_UP', NONE),

    # --- The heartbeat -------------------------------------------------------
    Story('healthy guest', UP + '11 PING_OK\n21 PING_OK\n31 PING_OK', NONE),
    Story('two misses, then an answer', UP + '11 PING_MISS\n21 PING_MISS\n31 PING_OK',
          NONE),
    Story('hung guest: threshold misses', UP + '11 PING_MISS\n21 PING_MISS\n'
          '31 PING_MISS', (HANG,)),
    Story('hung guest stays hung: one', UP + '11 PING_MISS\n21 PING_MISS\n'
          '31 PING_MISS\n41 PING_MISS\n51 PING_MISS', (HANG,)),
    Story('hung, answers again, hangs again: two',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n41 PING_OK\n'
          '51 PING_MISS\n61 PING_MISS\n71 PING_MISS', (HANG, HANG)),
    Story('threshold 1', UP + '11 PING_MISS', (HANG,), threshold=1),
    Story('hang notified as LIFECYCLE, then the crash: one',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n40 STOPPED_FAILED',
          (CRASH,), heartbeat_event='LIFECYCLE'),
    Story('hang reported, then QEMU dies: one recovery',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n40 STOPPED_FAILED',
          (HANG,)),
    Story('QEMU dies: later misses are not pings of a running domain',
          UP + '5 STOPPED_FAILED\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS',
          (CRASH,)),
    Story('failing disk, then the agent hangs: one',
          UP + '5 IO_ERROR_REPORT\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS', (IO,)),
    Story('an agent that never answers: logged, not reported (default)',
          '0 STARTED_BOOTED\n1 PING_MISS\n31 PING_MISS\n61 PING_MISS\n91 PING_MISS',
          NONE),
    Story('an agent that never answers, report_never_answered',
          '0 STARTED_BOOTED\n1 PING_MISS\n31 PING_MISS\n61 PING_MISS\n91 PING_MISS',
          (HANG,), report_never_answered=True),
    Story('never answered, then answers: nothing',
          '0 STARTED_BOOTED\n1 PING_MISS\n70 PING_MISS\n80 PING_OK', NONE),
    Story('never answered (reported), answers, then hangs: two',
          '0 STARTED_BOOTED\n1 PING_MISS\n70 PING_MISS\n80 PING_OK\n90 PING_MISS\n'
          '100 PING_MISS\n110 PING_MISS', (HANG, HANG), report_never_answered=True),
    Story('slow first answer within the grace',
          '0 STARTED_BOOTED\n1 PING_MISS\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n'
          '41 PING_OK', NONE),
    Story('reboot from inside: agent gone for a while, back after boot',
          UP + '5 AGENT_DISCONNECTED\n5 REBOOT\n7 PING_MISS\n9 PING_MISS\n'
          '11 PING_MISS\n12 AGENT_CONNECTED\n13 PING_OK', NONE, threshold=2),
    Story('graceful reboot: the agent stops before the reset',
          UP + '5 AGENT_DISCONNECTED\n7 PING_MISS\n9 PING_MISS\n11 PING_MISS\n'
          '13 REBOOT\n15 PING_MISS\n17 PING_MISS\n19 AGENT_CONNECTED\n21 PING_OK',
          NONE, threshold=2),
    Story('reset without an agent event, misses while it boots',
          UP + '5 REBOOT\n7 PING_MISS\n9 PING_MISS\n11 PING_MISS\n13 PING_OK', NONE,
          threshold=2),
    Story('a hang after a reboot is still a hang',
          UP + '5 REBOOT\n15 PING_OK\n25 PING_MISS\n35 PING_MISS\n45 PING_MISS',
          (HANG,)),
    Story('rebooted and never back within the grace',
          UP + '5 REBOOT\n15 PING_MISS\n35 PING_MISS\n55 PING_MISS\n66 PING_MISS',
          (HANG,)),
    Story('the agent closed its channel and never came back',
          UP + '5 AGENT_DISCONNECTED\n15 PING_MISS\n45 PING_MISS\n66 PING_MISS',
          (HANG,)),
    Story('the agent reconnects and answers', UP + '5 AGENT_DISCONNECTED\n'
          '15 PING_MISS\n20 AGENT_CONNECTED\n21 PING_OK', NONE),
    Story('an agent connect without a disconnect (libvirtd reconnecting) '
          'does not reset the count',
          UP + '11 PING_MISS\n21 PING_MISS\n22 AGENT_CONNECTED\n31 PING_MISS', (HANG,)),
    Story('libvirtd restarted during a hang',
          UP + '11 PING_MISS\n21 PING_MISS\n30 SCAN running\n35 PING_MISS', (HANG,)),
    Story('agent restarted during a hang',
          UP + '11 PING_MISS\n21 PING_MISS\n25 RESTART\n26 SCAN running\n'
          '35 PING_MISS', (HANG,)),
    Story('agent restarted after a reported hang: not again',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n35 RESTART\n'
          '36 SCAN running\n41 PING_MISS\n51 PING_MISS\n61 PING_MISS', (HANG,)),
    Story('agent restarted while healthy, then a hang',
          UP + '5 RESTART\n6 SCAN running\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS',
          (HANG,)),
    Story('agent restarted; the domain restarted meanwhile: discovery again',
          UP + '5 RESTART\n6 SCAN running id=4\n11 PING_MISS id=4\n'
          '21 PING_MISS id=4\n31 PING_MISS id=4', NONE),
    Story('a new run after a reported hang is watched afresh',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n40 STOPPED_DESTROYED\n'
          '41 STARTED_BOOTED\n50 PING_OK\n60 PING_MISS\n70 PING_MISS\n80 PING_MISS',
          (HANG, HANG)),
    Story('pings of the previous run are ignored',
          UP + '5 STOPPED_DESTROYED\n6 STARTED_BOOTED id=2\n7 PING_MISS id=1\n'
          '8 PING_MISS id=1\n9 PING_MISS id=1', NONE),
    Story('pings while paused are ignored',
          UP + '5 SUSPENDED_PAUSED\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n'
          '40 RESUMED_UNPAUSED\n41 PING_OK', NONE),
    Story('reported hang, guest reboots, answers: the episode is over; hang again',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n35 REBOOT\n45 PING_OK\n'
          '55 PING_MISS\n65 PING_MISS\n75 PING_MISS', (HANG, HANG)),
    Story('reported hang, then a failing disk in the same run: one',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n35 IO_ERROR_REPORT', (HANG,)),

    # --- The API does not answer: what waits is withdrawn once it is over ----
    Story('API down: a crash, then the VM started again: withdrawn',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n20 RESUMED_UNPAUSED\n20 STARTED_BOOTED\n'
          '30 API_UP', NONE),
    Story('API down: a crash, the agent restarts, its scan finds the VM running '
          'again: withdrawn',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n20 RESTART\n20 SCAN running id=9\n'
          '30 API_UP', NONE),
    Story('API down: a crash, the agent restarts, still shut off: sent once the '
          'API is back',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n20 RESTART\n20 SCAN shutoff-crashed\n'
          '30 API_UP\n35 SCAN shutoff-crashed', (CRASH,)),
    Story('API down: a crash; the agent restarts, the API is back before its '
          'first scan, which finds the VM running again: withdrawn',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n12 RESTART\n13 API_UP\n'
          '16 SCAN running id=9', NONE),
    Story('API down: a crash; the agent restarts, the API is back before its '
          'first scan, which finds it still shut off: sent then',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n12 RESTART\n13 API_UP\n'
          '16 SCAN shutoff-crashed', (CRASH,)),
    Story('API down: a crash; the agent restarts, libvirtd answers but no scan '
          'completes: sent unconfirmed 30 s later',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n12 RESTART\n13 API_UP\n'
          '41 PING_MISS\n43 PING_MISS', (CRASH,)),
    Story('API down: a hang, then the guest agent answers again: withdrawn',
          UP + '4 API_DOWN\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n38 PING_OK\n'
          '50 API_UP', NONE),
    Story('API down: a hang that goes on is sent once the API is back',
          UP + '4 API_DOWN\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n'
          '41 PING_MISS\n50 API_UP', (HANG,)),
    Story('API down: an I/O error is sent though the guest agent answers',
          UP + '4 API_DOWN\n5 IO_ERROR_REPORT\n11 PING_OK\n20 API_UP', (IO,)),
    Story('API down: a crash, then the domain undefined (deleted, or moved to '
          'another host): withdrawn',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n15 TICK\n20 UNDEFINED_REMOVED\n'
          '30 API_UP', NONE),
    Story('API down: a crash, the domain undefined and defined again, still shut '
          'off: withdrawn',
          UP + '4 API_DOWN\n5 STOPPED_FAILED\n15 TICK\n20 UNDEFINED_REMOVED\n'
          '21 DEFINED_ADDED\n30 API_UP\n35 SCAN shutoff', NONE),
    Story('API down: a crash, then the stopped domain renamed: still one',
          DEFINED + UP + '4 API_DOWN\n5 STOPPED_FAILED\n15 TICK\n20 UNDEFINED_RENAMED\n'
          '20 DEFINED_RENAMED\n30 API_UP', (CRASH,)),
    Story('API down: an I/O error, the VM made transient and defined again while '
          'it runs: sent once the API is back',
          UP + '4 API_DOWN\n5 IO_ERROR_REPORT\n15 TICK\n20 UNDEFINED_REMOVED\n'
          '21 DEFINED_ADDED\n30 API_UP', (IO,)),
    Story('API down: a hang, the VM made transient while it goes on: sent once '
          'the API is back',
          UP + '4 API_DOWN\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n'
          '35 UNDEFINED_REMOVED\n41 PING_MISS\n50 API_UP', (HANG,)),
    Story('API down: a crash held past the duplicate window, started again: withdrawn',
          UP + '5 STOPPED_FAILED\n20 STARTED_BOOTED\n25 API_DOWN\n'
          '40 STOPPED_FAILED\n60 STARTED_BOOTED\n70 API_UP', (CRASH,)),
    Story('API down: a crash, the agent restarted, shut off (reason lost), '
          'then started while its retry round was due: withdrawn',
          CRASH_WHILE_API_DOWN + '20 RESTART\n20 SCAN shutoff-unknown\n'
          '30 SCAN running id=2\n40 API_UP', NONE),

    # --- Undefined while nobody watched (the agent stopped, libvirtd away) ---
    # A scan that does not list a persistent domain: it was undefined.
    Story('API down: a crash, the agent restarted, the domain undefined '
          'meanwhile: withdrawn',
          DEFINED + UP + '4 API_DOWN\n5 STOPPED_FAILED\n15 TICK\n20 RESTART\n'
          '20 SCAN absent\n30 API_UP', NONE),
    Story('API down: a crash, libvirtd away while the domain is undefined: '
          'withdrawn',
          DEFINED + UP + '4 API_DOWN\n5 STOPPED_FAILED\n15 TICK\n20 SCAN absent\n'
          '40 API_UP', NONE),
    Story('API down: an I/O error, the VM migrated away (undefined at the '
          'source) while libvirtd was away: withdrawn',
          DEFINED + UP + '4 API_DOWN\n5 IO_ERROR_REPORT\n15 TICK\n20 SCAN absent\n'
          '40 API_UP', NONE),
    Story('API down: a hang, the agent restarted, the VM deleted meanwhile: '
          'withdrawn',
          DEFINED + UP + '4 API_DOWN\n11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n'
          '35 RESTART\n35 SCAN absent\n50 API_UP', NONE),
    Story('persistence seen by a scan, not by an event: a crash, the agent '
          'restarted, undefined meanwhile: withdrawn',
          UP + '2 SCAN running\n4 API_DOWN\n5 STOPPED_FAILED\n20 RESTART\n'
          '20 SCAN absent\n30 API_UP', NONE),
    Story('a crash sent, the agent restarted, undefined meanwhile; defined, '
          'started and crashed again: two',
          DEFINED + UP + '5 STOPPED_FAILED\n10 RESTART\n10 SCAN absent\n'
          '300 DEFINED_ADDED\n301 RESUMED_UNPAUSED\n301 STARTED_BOOTED\n'
          '400 STOPPED_FAILED', (CRASH, CRASH)),
    Story('a scan read before the domain was defined and started, applied after '
          'its I/O error: nothing withdrawn',
          DEFINED + UP + '4 API_DOWN\n5 IO_ERROR_REPORT\n6 SCAN absent read@1\n'
          '20 API_UP', (IO,)),
    Story('transient: a crash the API refused, the agent restarted, the domain '
          'not listed (gone as it stopped): sent once the API is back',
          UP + '2 SCAN running\n4 API_DOWN\n5 STOPPED_FAILED\n15 TICK\n20 RESTART\n'
          '20 SCAN absent\n30 API_UP', (CRASH,), transient=True),
    Story('made transient while it runs, then a crash the API refused, not '
          'listed after: sent once the API is back',
          DEFINED + UP + '3 UNDEFINED_REMOVED\n4 API_DOWN\n5 STOPPED_FAILED\n'
          '15 TICK\n20 SCAN absent\n30 API_UP', (CRASH,)),
    Story('source: QEMU dies in the last phase, the agent restarted, the domain '
          'not listed: undefined by the migration or after it, none',
          DEFINED + UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n7 RESTART\n'
          '7 SCAN absent\n60 TICK', NONE),
    Story('source: a transient domain\'s QEMU dies in the last phase, the agent '
          'restarted, not listed: one, after the wait',
          UP + '2 SCAN running\n5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n'
          '7 RESTART\n7 SCAN absent\n60 TICK', (CRASH,), transient=True),

    # --- Migration -----------------------------------------------------------
    Story('source: live migration succeeds',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_MIGRATED\n11 PING_MISS', NONE),
    Story('destination: live migration succeeds',
          '0 STARTED_MIGRATED\n2 DEFINED_ADDED\n2 RESUMED_MIGRATED\n3 PING_OK', NONE),
    Story('destination: QEMU killed mid-migration',
          '0 STARTED_MIGRATED\n5 STOPPED_FAILED', NONE),
    Story('destination: failed migration, forward all',
          '0 STARTED_MIGRATED\n5 STOPPED_FAILED', NONE, forward='all'),
    Story('destination: failed migration of a pre-defined domain, scanned after',
          '0 STARTED_MIGRATED\n5 STOPPED_FAILED\n10 SCAN shutoff-crashed\n'
          '70 SCAN shutoff-failed', NONE),
    Story('destination: migration cancelled by domjobabort on the source',
          '0 STARTED_MIGRATED\n3 STOPPED_FAILED\n4 UNDEFINED_REMOVED', NONE),
    Story('destination: migration cancelled, a scan read before the undefine '
          'applied after it',
          '0 STARTED_MIGRATED\n3 STOPPED_FAILED\n4 UNDEFINED_REMOVED\n'
          '4 SCAN shutoff-crashed read@3', NONE),
    Story('destination: incoming migration first seen by a scan, then fails',
          '0 SCAN paused-migration id=3\n5 STOPPED_FAILED', NONE),
    Story('destination: incoming seen by a scan, its failure only by a scan',
          '0 SCAN paused-migration id=3\n60 SCAN shutoff-crashed', NONE),
    Story('destination: scans during the incoming migration, then its QEMU killed',
          '0 STARTED_MIGRATED\n1 SCAN paused-migration\n2 SCAN paused-migration\n'
          '5 STOPPED_FAILED', NONE),
    Story('destination: its QEMU killed, a scan finds it shut off before '
          'the STOPPED_FAILED event',
          '0 STARTED_MIGRATED\n1 SCAN paused-migration\n'
          '1.5 SCAN shutoff-failed\n1.6 STOPPED_FAILED', NONE),
    Story('destination: the agent restarts during the incoming migration, '
          'which then fails',
          '0 STARTED_MIGRATED\n1 RESTART\n1 SCAN paused-migration\n5 STOPPED_FAILED',
          NONE),
    Story('destination: the agent is stopped during the incoming migration, '
          'which is cancelled meanwhile',
          '0 STARTED_MIGRATED\n1 SCAN paused-migration\n5 RESTART', NONE),
    Story('destination: the agent restarts during an incoming migration that '
          'succeeds, then a crash is one',
          '0 STARTED_MIGRATED\n1 RESTART\n1 SCAN paused-migration\n5 DEFINED_ADDED\n'
          '5 RESUMED_MIGRATED\n30 STOPPED_FAILED', (CRASH,)),
    Story('destination: its resume missed while the agent was disconnected, a '
          'scan finds it running, then a crash is one',
          '0 STARTED_MIGRATED\n1 SCAN paused-migration\n5 SCAN running\n'
          '30 STOPPED_FAILED', (CRASH,)),
    Story('destination: its resume missed, a scan finds it running, then a hang '
          'is one',
          '0 STARTED_MIGRATED\n5 SCAN running\n6 PING_OK\n16 PING_MISS\n'
          '26 PING_MISS\n36 PING_MISS', (HANG,)),
    Story('source: the resume of a failed migration missed, a scan finds it '
          'running, then a crash is one at once',
          UP + '5 SUSPENDED_MIGRATED\n10 SCAN running\n30 STOPPED_FAILED\n'
          '30 TICK', (CRASH,)),
    Story('destination: the source libvirtd dies mid-migration, the incoming '
          'domain is destroyed',
          '0 STARTED_MIGRATED\n1 SCAN paused-migration\n2 STOPPED_DESTROYED', NONE),
    Story('destination: a scan while the incoming domain starts up, then it fails',
          '0 SCAN paused-starting_up id=3\n0.3 STARTED_MIGRATED id=3\n'
          '1 SCAN paused-migration\n5 STOPPED_FAILED', NONE),
    Story('a scan while a domain starts up, then it boots and crashes',
          '0 SCAN paused-starting_up id=3\n0.3 RESUMED_UNPAUSED\n'
          '0.3 STARTED_BOOTED id=3\n5 STOPPED_FAILED', (CRASH,)),
    Story('destination: pings while the migration comes in are ignored',
          '0 STARTED_MIGRATED\n1 PING_MISS\n2 PING_MISS\n3 PING_MISS\n'
          '4 RESUMED_MIGRATED\n5 PING_OK', NONE),
    Story('destination: after a successful migration, a crash is a crash',
          '0 STARTED_MIGRATED\n2 RESUMED_MIGRATED\n3 PING_OK\n30 STOPPED_FAILED',
          (CRASH,)),
    Story('destination: after a successful migration, a hang is a hang',
          '0 STARTED_MIGRATED\n2 RESUMED_MIGRATED\n3 PING_OK\n13 PING_MISS\n'
          '23 PING_MISS\n33 PING_MISS', (HANG,)),
    Story('destination: a later migration to the same host succeeds',
          '0 STARTED_MIGRATED\n5 STOPPED_FAILED\n50 STARTED_MIGRATED\n'
          '52 RESUMED_MIGRATED', NONE),
    Story('source: failure in Finish, the source resumes',
          UP + '5 SUSPENDED_MIGRATED\n7 RESUMED_MIGRATED\n8 SCAN running', NONE),
    Story('source: failure in Finish, then the source crashes later',
          UP + '5 SUSPENDED_MIGRATED\n7 RESUMED_MIGRATED\n30 STOPPED_FAILED', (CRASH,)),
    Story('source: device state mismatch, resumed unpaused, then a hang',
          UP + '5 SUSPENDED_MIGRATED\n7 RESUMED_UNPAUSED\n11 PING_MISS\n'
          '21 PING_MISS\n31 PING_MISS', (HANG,)),
    Story('source: domjobabort (no event), then a crash',
          UP + '20 SCAN running\n30 STOPPED_FAILED', (CRASH,)),
    Story('source: the agent restarts during a live migration that succeeds',
          UP + '5 RESTART\n5 SCAN running\n8 SUSPENDED_MIGRATED\n9 STOPPED_MIGRATED',
          NONE),
    Story('source: libvirtd restarted mid-migration, which it cancels; then a crash',
          UP + '5 SCAN running\n6 SCAN running\n30 STOPPED_FAILED', (CRASH,)),
    Story('source: QEMU dies while paused for migration',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED', (CRASH,)),
    Story('source: the migration pause seen only by a scan, then QEMU dies',
          UP + '5 SCAN paused-migration\n6 STOPPED_FAILED', (CRASH,)),
    Story('source: the domain seen persistent in the last phase, undefined by a '
          'client then, QEMU dies and the domain is gone: one',
          UP + '5 SUSPENDED_MIGRATED\n5.1 MIGRATION_SOURCE_DEFINED\n'
          '6 UNDEFINED_REMOVED\n7 STOPPED_FAILED\n7.5 MIGRATION_SOURCE_GONE\n'
          '60 TICK', (CRASH,)),
    Story('source: QEMU dies in the last phase, the domain undefined with an '
          'event, never seen persistent: none',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n7 UNDEFINED_REMOVED\n'
          '60 TICK', NONE),
    Story('source: QEMU dies in the last phase, the migration goes through '
          'and undefines the source: none',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '8 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: QEMU dies in the last phase, the migration fails: one',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '6.3 MIGRATION_JOB_ENDED\n60 TICK\n70 SCAN shutoff-crashed', (CRASH,)),
    Story('source: QEMU dies in the last phase, seen only by a scan, the '
          'migration goes through: none',
          UP + '5 SCAN paused-migration\n6 STOPPED_FAILED\n'
          '6.1 MIGRATION_SOURCE_DEFINED\n6.2 UNDEFINED_REMOVED\n60 TICK', NONE),
    Story('source: QEMU dies in the last phase, the outcome never found: one, '
          'after the wait',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '60 TICK', (CRASH,)),
    Story('source: a transient domain\'s QEMU dies in the last phase: gone '
          'either way, one',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_GONE\n'
          '60 TICK', (CRASH,), transient=True),
    Story('source: QEMU dies in the last phase, the agent restarts, the '
          'migration goes through: none',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '7 RESTART\n7 SCAN shutoff-crashed\n9 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: QEMU dies in the last phase, the agent restarts, the '
          'migration failed meanwhile: one',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '7 RESTART\n9 SCAN shutoff-crashed\n9.1 MIGRATION_JOB_ENDED', (CRASH,)),
    Story('source: the agent restarts as QEMU dies in the last phase; its scan '
          'finds it shut off, the migration goes through: none',
          UP + '5 SUSPENDED_MIGRATED\n6 RESTART\n6 SCAN shutoff-crashed\n'
          '6.1 MIGRATION_SOURCE_DEFINED\n8 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: the agent restarts as QEMU dies in the last phase; its scan '
          'finds it shut off, the migration fails: one',
          UP + '5 SUSPENDED_MIGRATED\n6 RESTART\n6 SCAN shutoff-crashed\n'
          '6.1 MIGRATION_SOURCE_DEFINED\n6.3 MIGRATION_JOB_ENDED\n60 TICK', (CRASH,)),
    Story('source: QEMU dies in the last phase, the event twice, the migration '
          'goes through: none',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6 STOPPED_FAILED\n'
          '6.1 MIGRATION_SOURCE_DEFINED\n8 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: QEMU dies in the last phase, the migration fails, the VM is '
          'started again and crashes: two',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '6.3 MIGRATION_JOB_ENDED\n20 RESUMED_UNPAUSED\n20 STARTED_BOOTED\n'
          '40 STOPPED_FAILED', (CRASH, CRASH)),
    Story('source: QEMU dies in the last phase, migration_outcome_wait 0: one '
          'at once, whatever follows',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n6.1 MIGRATION_SOURCE_DEFINED\n'
          '8 MIGRATION_SOURCE_GONE', (CRASH,), migration_wait=0.0),
    Story('source: the watch finds the domain persistent as the last phase '
          'begins; QEMU dies, the migration goes through and the domain is gone '
          'at the watch\'s first look after: none',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n6 STOPPED_FAILED\n'
          '6.01 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: the watch finds the domain persistent as the last phase '
          'begins; QEMU dies, the migration fails: one',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n6 STOPPED_FAILED\n'
          '6.3 MIGRATION_JOB_ENDED\n60 TICK', (CRASH,)),
    Story('source: the last phase seen by a scan, the domain persistent; QEMU '
          'dies, gone at the first look after: none',
          UP + '5 SCAN paused-migration\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '6 STOPPED_FAILED\n6.01 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: the domain persistent in the last phase, the agent restarts, '
          'QEMU dies, gone at the first look after: none',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n5.5 RESTART\n'
          '5.5 SCAN paused-migration\n6 STOPPED_FAILED\n6.01 MIGRATION_SOURCE_GONE\n'
          '60 TICK', NONE),
    Story('source: defined, its whole last phase missed (the agent too late to '
          'look before the migration undefined it); QEMU died, gone: none',
          DEFINED + UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_GONE\n'
          '6 STOPPED_FAILED\n6.01 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: told persistent by a scan, never by the watch; QEMU dies in '
          'the last phase, gone at the first look after: none',
          UP + '2 SCAN running persistent\n5 SUSPENDED_MIGRATED\n'
          '6 STOPPED_FAILED\n6.01 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: defined, QEMU dies in the last phase, the agent restarts, '
          'gone at the first look after: none',
          DEFINED + UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n7 RESTART\n'
          '7 SCAN shutoff-crashed\n9 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: defined, the migration fails before the watch could look: one',
          DEFINED + UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_FAILED\n'
          '6.3 MIGRATION_JOB_ENDED\n60 TICK', (CRASH,)),
    Story('source: defined, made transient in the last phase, QEMU dies, '
          'gone: one',
          DEFINED + UP + '5 SUSPENDED_MIGRATED\n5.5 UNDEFINED_REMOVED\n'
          '6 STOPPED_FAILED\n6.01 MIGRATION_SOURCE_GONE\n60 TICK', (CRASH,)),
    Story('source: persistent in a migration that fails in Finish, then made '
          'transient; the next migration of the domain loses it: one',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '7 RESUMED_MIGRATED\n10 UNDEFINED_REMOVED\n20 SUSPENDED_MIGRATED\n'
          '21 STOPPED_FAILED\n'
          '21.01 MIGRATION_SOURCE_GONE\n60 TICK', (CRASH,)),
    Story('source: the domain persistent in the last phase, the migration '
          'succeeds: none',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '6 STOPPED_MIGRATED\n6.01 MIGRATION_SOURCE_GONE', NONE),
    Story('source: the domain persistent in the last phase, QEMU dies, '
          'migration_outcome_wait 0: one at once',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '6 STOPPED_FAILED\n6.01 MIGRATION_SOURCE_GONE', (CRASH,),
          migration_wait=0.0),
    Story('source: post-copy, QEMU dies once the data is across, the migration '
          'undefines the source: none',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '6 SUSPENDED_POSTCOPY\n8 STOPPED_FAILED\n8.01 MIGRATION_SOURCE_GONE\n'
          '60 TICK', NONE),
    Story('source: post-copy, QEMU dies, the migration fails: one',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '6 SUSPENDED_POSTCOPY\n8 STOPPED_FAILED\n8.3 MIGRATION_JOB_ENDED\n'
          '60 TICK', (CRASH,)),
    Story('source: post-copy fails, then QEMU dies: one at once',
          UP + '5 SUSPENDED_MIGRATED\n5.01 MIGRATION_SOURCE_DEFINED\n'
          '6 SUSPENDED_POSTCOPY\n8 SUSPENDED_POSTCOPY_FAILED\n8 STOPPED_FAILED',
          (CRASH,)),
    Story('source: the agent restarts in post-copy, its scan finds it so; QEMU '
          'dies once the data is across: none',
          UP + '5 SUSPENDED_MIGRATED\n6 SUSPENDED_POSTCOPY\n7 RESTART\n'
          '7 SCAN paused-postcopy\n7.01 MIGRATION_SOURCE_DEFINED\n8 STOPPED_FAILED\n'
          '8.01 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('source: a run first seen paused in post-copy, QEMU dies, the '
          'migration fails: one',
          '0 SCAN paused-postcopy id=4\n0.01 MIGRATION_SOURCE_DEFINED\n'
          '3 STOPPED_FAILED\n3.3 MIGRATION_JOB_ENDED\n60 TICK', (CRASH,)),
    Story('source: a run first seen paused in post-copy, QEMU dies, the '
          'migration goes through: none',
          '0 SCAN paused-postcopy id=4\n0.01 MIGRATION_SOURCE_DEFINED\n'
          '3 STOPPED_FAILED\n3.01 MIGRATION_SOURCE_GONE\n60 TICK', NONE),
    Story('destination: post-copy, then its QEMU dies: one',
          '0 STARTED_MIGRATED\n2 RESUMED_POSTCOPY\n3 SCAN running-postcopy\n'
          '5 STOPPED_FAILED', (CRASH,)),
    Story('source: a hang reported, then the VM migrates away: one',
          UP + '11 PING_MISS\n21 PING_MISS\n31 PING_MISS\n35 SUSPENDED_MIGRATED\n'
          '36 STOPPED_MIGRATED', (HANG,)),
    Story('source: migrated away, pings of the old run ignored',
          UP + '5 SUSPENDED_MIGRATED\n6 STOPPED_MIGRATED\n7 PING_MISS\n'
          '8 PING_MISS\n9 PING_MISS\n10 SCAN shutoff-migrated', NONE),

    # --- Crashes in each phase ------------------------------------------------
    Story('crash while paused', UP + '5 SUSPENDED_PAUSED\n9 STOPPED_FAILED', (CRASH,)),
    Story('crash while paused on an I/O error',
          UP + '5 SUSPENDED_IOERROR\n9 STOPPED_FAILED', (CRASH,)),
    Story('crash during heartbeat discovery',
          '0 STARTED_BOOTED\n1 PING_MISS\n5 STOPPED_FAILED', (CRASH,)),
    Story('crash while the heartbeat counts misses',
          UP + '11 PING_MISS\n15 STOPPED_FAILED', (CRASH,)),
    Story('crash while the guest reboots', UP + '5 REBOOT\n6 STOPPED_FAILED', (CRASH,)),
    Story('crash while the guest agent is disconnected',
          UP + '5 AGENT_DISCONNECTED\n6 STOPPED_FAILED', (CRASH,)),
    Story('crash right after a restore',
          UP + '5 STOPPED_SAVED\n10 STARTED_RESTORED\n11 STOPPED_FAILED', (CRASH,)),
    Story('crash right after managedsave and start',
          UP + '5 STOPPED_SAVED\n10 RESUMED_UNPAUSED\n10 STARTED_RESTORED\n'
          '12 STOPPED_FAILED', (CRASH,)),
    Story('crash after a reboot-window restart, forward all',
          UP + '5 STOPPED_DESTROYED\n5.5 STARTED_BOOTED\n8 STOPPED_FAILED',
          (CRASH,), forward='all'),
    Story('crash during a libvirtd outage seen only by scan, then restarted',
          UP + '20 SCAN shutoff-crashed\n30 STARTED_BOOTED\n31 PING_OK', (CRASH,)),
    Story('crash after an agent restart',
          UP + '5 RESTART\n6 SCAN running\n9 STOPPED_FAILED', (CRASH,)),
    Story('crash with the agent restarted in between events and scan',
          UP + '5 STOPPED_FAILED\n6 RESTART\n7 SCAN shutoff-crashed\n'
          '67 SCAN shutoff-crashed', (CRASH,)),
    Story('crash of a domain whose run is not known yet (first event seen)',
          '5 STOPPED_FAILED', (CRASH,)),
]
