"""The per-domain state machine: has this domain failed, and is it news?

Every source feeds it, one :class:`Input` at a time: libvirt's lifecycle,
reboot, I/O error and guest-agent events, state scans, and the heartbeat's
pings. It is pure: no libvirt, no I/O, no clock of its own (time comes with
each input), so a scenario is a list of inputs and the notifications it
yields, replayed in microseconds (``tests/unit/test_scenarios.py``).

A domain's life is cut into *runs*. A run begins when the domain starts
(libvirt gives it a new domain id) or resumes from a pause that QEMU made on
an error. A domain id tells runs apart only within one life of libvirtd's
(a libvirtd started with nothing running counts from 1 again, as after a
host restart): a domain last seen stopped that is active again is in a new
run whatever its id, and a record of an earlier boot of the host (the
kernel's boot id) has no run going. Within a run at most one *failure
episode* is open: the first pair the recovery engine acts on opens it and is
notified; later ones of the same run are recorded and not sent. Only a new
run ends an episode, or, for an episode the heartbeat opened, the guest
agent answering again.

Three tables decide everything: :data:`LIFECYCLE_TABLE` (phase, input) →
(phase, action), :data:`HEARTBEAT_TABLE` (agent state, input) → (agent
state, action) and :data:`PROBE_TABLE` (a probe's state, its outcome) →
(state, action), one probe state per application probe. :func:`refine`
turns what an input cannot say by itself (is this scan stale? is this domain
id a new run? was a domain a scan no longer lists, or the migration watch
finds gone, persistent? has the startup grace passed?) into the input the
tables are keyed on.
"""

import dataclasses
import datetime
import enum

from instancemonitor.events import ProbeCheck
from instancemonitor.events import ProbeOutcome


class Phase(enum.StrEnum):
    UNKNOWN = 'unknown'              # never seen
    RUNNING = 'running'              # a run is going (guest reboots included)
    PAUSED = 'paused'                # paused by a client (suspend, snapshot)
    ERROR_PAUSED = 'error-paused'    # paused by QEMU on an I/O error or watchdog
    MIGRATING_IN = 'migrating-in'    # the incoming side of a migration, not yet resumed
    # Paused for the last phase of an outgoing migration (or for its
    # post-copy phase, the VM running at the destination)
    MIGRATING_OUT = 'migrating-out'
    # The same, the domain seen persistent by the migration watch then: if
    # QEMU dies and the domain is gone, the migration undefined it, even
    # if it was gone before the watch could look again.
    MIGRATING_OUT_DEFINED = 'migrating-out-defined'
    # QEMU died in that last phase: a failure unless the migration went
    # through (the VM runs at the destination). Its recovery is held for
    # the outcome, which the migration watch looks up.
    STOPPED_MIGRATING = 'stopped-migrating'
    # The same, the source domain seen still defined (persistent): its
    # disappearance is then the migration's success (undefine-source).
    STOPPED_MIGRATING_DEFINED = 'stopped-migrating-defined'
    SHUTOFF = 'shutoff'              # stopped cleanly: shutdown, destroy, save...
    FAILED = 'failed'                # stopped by a failure that is accounted for


class Input(enum.StrEnum):
    # libvirt lifecycle events
    START = 'start'                          # STARTED_BOOTED, _RESTORED, ...
    START_MIGRATION_IN = 'start-migration-in'  # STARTED_MIGRATED (destination)
    RESUME = 'resume'                        # RESUMED_UNPAUSED, _SNAPSHOT, ...
    RESUME_MIGRATED = 'resume-migrated'      # RESUMED_MIGRATED (either side)
    PAUSE = 'pause'                          # SUSPENDED_PAUSED, ...
    PAUSE_MIGRATION = 'pause-migration'      # SUSPENDED_MIGRATED (source)
    PAUSE_ERROR = 'pause-error'              # SUSPENDED_IOERROR, _WATCHDOG, _API_ERROR
    STOP_FAILED = 'stop-failed'              # STOPPED_FAILED: QEMU died
    STOP_CRASHED = 'stop-crashed'            # STOPPED_CRASHED: the guest crashed
    STOP_MIGRATED = 'stop-migrated'          # STOPPED_MIGRATED: now runs elsewhere
    STOP = 'stop'                            # STOPPED_SHUTDOWN, _DESTROYED, _SAVED, ...
    UNDEFINED = 'undefined'
    DEFINED = 'defined'                      # DEFINED_*: persistent (again)
    # the migration watch, on an outgoing migration's last phase and after
    # a QEMU died in it
    SOURCE_DEFINED = 'source-defined'        # the domain is persistent
    SOURCE_GONE = 'source-gone'              # the domain is no longer defined
    # (refined: gone, and persistent when last seen by a scan or an event)
    SOURCE_UNDEFINED = 'source-undefined'
    MIGRATION_ENDED = 'migration-ended'      # its job ended, the domain still here
    # other libvirt events
    IO_ERROR_REPORT = 'io-error-report'      # I/O error, action report: guest runs on
    REBOOT = 'reboot'                        # the guest reset or rebooted
    AGENT_CONNECTED = 'agent-connected'
    AGENT_DISCONNECTED = 'agent-disconnected'
    EVENT = 'event'                          # anything else: forwarded, no change
    # state scans (refined: same run, or a run this machine has not seen)
    SCAN_RUNNING = 'scan-running'
    SCAN_RUNNING_NEW_RUN = 'scan-running-new-run'
    SCAN_PAUSED = 'scan-paused'
    SCAN_PAUSED_NEW_RUN = 'scan-paused-new-run'
    SCAN_ERROR_PAUSED = 'scan-error-paused'
    SCAN_ERROR_PAUSED_NEW_RUN = 'scan-error-paused-new-run'
    SCAN_MIGRATING = 'scan-migrating'        # same run: ours, going out
    SCAN_MIGRATING_NEW_RUN = 'scan-migrating-new-run'  # a run we never saw: coming in
    SCAN_POSTCOPY = 'scan-postcopy'          # paused in post-copy: going out
    SCAN_POSTCOPY_NEW_RUN = 'scan-postcopy-new-run'
    SCAN_FAILED = 'scan-failed'              # shut off, reason crashed or failed
    SCAN_SHUTOFF = 'scan-shutoff'            # shut off, any other reason
    STALE_SCAN = 'stale-scan'                # read before an event already applied
    # a complete scan did not list the domain (refined: was it persistent?)
    SCAN_NOT_LISTED = 'scan-not-listed'      # transient, or not known: gone
    SCAN_UNDEFINED = 'scan-undefined'        # persistent: undefined unseen
    # the heartbeat
    PING_OK = 'ping-ok'
    PING_MISS = 'ping-miss'
    PING_MISS_GRACE_OVER = 'ping-miss-grace-over'
    # an application probe's run (PROBE_TABLE)
    PROBE = 'probe'


class Action(enum.StrEnum):
    NONE = 'none'
    NEW_RUN = 'new-run'        # end the episode, the run's facts and the heartbeat's
    NEW_RUN_AND_FORWARD = 'new-run+forward'
    NEW_RUN_AND_WATCH = 'new-run+watch-migration'
    RECOVER = 'recover'        # notify the recovery pair unless an episode is open
    FORWARD = 'forward'        # notify a pair the engine does not act on
    FORWARD_ONCE = 'forward-once'  # the same, unless already notified this run
    SUPPRESS = 'suppress'      # a recovery pair that is no failure here
    # Undefined: it lives here no more; withdraw what waits to be sent, forget.
    FORGET = 'forget'
    # RECOVER, held for the outcome of the outgoing migration it died in,
    # which the migration watch is asked to follow.
    RECOVER_AFTER_MIGRATION = 'recover-after-migration'
    # An outgoing migration's last phase: the watch is asked whether the
    # domain is persistent, while it is still there to tell.
    WATCH_MIGRATION = 'watch-migration'
    RELEASE = 'release'        # the failure stands: send its held recovery now
    MIGRATED_AWAY = 'migrated-away'  # it runs elsewhere: withdraw all, forget
    TRANSIENT = 'transient'    # undefined while active: it runs on, the same run


ANY = '*'
ALL_PAIRS = (ANY,)
_ACTIVE = (Phase.RUNNING, Phase.PAUSED, Phase.ERROR_PAUSED, Phase.MIGRATING_OUT,
           Phase.MIGRATING_OUT_DEFINED)
# Phases in which a QEMU of the domain runs here, an incoming one included.
_QEMU_RUNS = _ACTIVE + (Phase.MIGRATING_IN,)
# Phases whose held recovery waits for the outcome of a migration.
AWAITING_MIGRATION = (Phase.STOPPED_MIGRATING, Phase.STOPPED_MIGRATING_DEFINED)

# (phase or ANY, input) → (new phase or None to keep it, action). A specific
# phase's row wins over the ANY row of the same input.
LIFECYCLE_TABLE: dict[tuple[str, Input], tuple[Phase | None, Action]] = {
    # A start is always a new run: it ends any episode, and withdraws what
    # still waits to be sent for the domain.
    (ANY, Input.START): (Phase.RUNNING, Action.NEW_RUN),
    (ANY, Input.START_MIGRATION_IN): (Phase.MIGRATING_IN, Action.NEW_RUN),
    # Resuming from QEMU's own error pause is a new run; any other resume is
    # the same run going on. A resume of a stopped domain is the first event
    # of a start (RESUMED_UNPAUSED precedes STARTED_BOOTED): the start decides.
    (Phase.ERROR_PAUSED, Input.RESUME): (Phase.RUNNING, Action.NEW_RUN),
    (Phase.SHUTOFF, Input.RESUME): (None, Action.NONE),
    (Phase.FAILED, Input.RESUME): (None, Action.NONE),
    (ANY, Input.RESUME): (Phase.RUNNING, Action.NONE),
    # Incoming migration done, or an outgoing one that failed or was
    # cancelled: the source runs on in the same run.
    (ANY, Input.RESUME_MIGRATED): (Phase.RUNNING, Action.NONE),
    (ANY, Input.PAUSE): (Phase.PAUSED, Action.NONE),
    (ANY, Input.PAUSE_MIGRATION): (Phase.MIGRATING_OUT, Action.WATCH_MIGRATION),
    (Phase.MIGRATING_OUT_DEFINED, Input.PAUSE_MIGRATION): (None, Action.NONE),
    (ANY, Input.PAUSE_ERROR): (Phase.ERROR_PAUSED, Action.FORWARD),
    # The destination's QEMU of a migration that failed stops with FAILED,
    # exactly like a crash, while the VM runs on at the source.
    (Phase.MIGRATING_IN, Input.STOP_FAILED): (Phase.FAILED, Action.SUPPRESS),
    # The source's QEMU dying in an outgoing migration's last phase may
    # have sent the VM's last pages: the destination may resume it. Held
    # until the migration watch finds the outcome (or the hold runs out).
    (Phase.MIGRATING_OUT, Input.STOP_FAILED):
        (Phase.STOPPED_MIGRATING, Action.RECOVER_AFTER_MIGRATION),
    (Phase.MIGRATING_OUT_DEFINED, Input.STOP_FAILED):
        (Phase.STOPPED_MIGRATING_DEFINED, Action.RECOVER_AFTER_MIGRATION),
    (Phase.STOPPED_MIGRATING, Input.STOP_FAILED): (None, Action.NONE),
    (Phase.STOPPED_MIGRATING_DEFINED, Input.STOP_FAILED): (None, Action.NONE),
    (ANY, Input.STOP_FAILED): (Phase.FAILED, Action.RECOVER),
    (ANY, Input.STOP_CRASHED): (Phase.FAILED, Action.FORWARD),
    (ANY, Input.STOP_MIGRATED): (Phase.SHUTOFF, Action.NONE),
    (ANY, Input.STOP): (Phase.SHUTOFF, Action.FORWARD),
    # Undefined once stopped, the domain lives here no more (deleted, moved
    # to another host, shelved): what still waits to be sent for it is
    # withdrawn. Undefined while active, it runs on as a transient domain
    # (Nova does that for a volume swap) and its run goes on; seen
    # persistent in a migration's last phase, it is so no more.
    (ANY, Input.UNDEFINED): (None, Action.FORGET),
    (Phase.RUNNING, Input.UNDEFINED): (None, Action.TRANSIENT),
    (Phase.PAUSED, Input.UNDEFINED): (None, Action.TRANSIENT),
    (Phase.ERROR_PAUSED, Input.UNDEFINED): (None, Action.TRANSIENT),
    (Phase.MIGRATING_OUT, Input.UNDEFINED): (None, Action.TRANSIENT),
    (Phase.MIGRATING_OUT_DEFINED, Input.UNDEFINED):
        (Phase.MIGRATING_OUT, Action.TRANSIENT),
    # A failed migration leaves a persistent source domain defined: gone,
    # it was undefined by the migration that took the VM away.
    (Phase.STOPPED_MIGRATING_DEFINED, Input.UNDEFINED): (None, Action.MIGRATED_AWAY),
    (ANY, Input.DEFINED): (None, Action.NONE),
    # A persistent domain a scan does not list was undefined while nobody
    # watched (the agent stopped, libvirtd away), and is stopped (an active
    # domain is always listed): as UNDEFINED on a stopped domain, whatever
    # phase the agent last saw; the source of a migration's last phase was
    # undefined by the migration or by a client after it, the VM lives here
    # no more either way. A transient domain is not listed once it stops,
    # whatever stopped it: what it still has to send stands (never lost),
    # and its record is dropped after forget_gone_after.
    (ANY, Input.SCAN_UNDEFINED): (None, Action.FORGET),
    (ANY, Input.SCAN_NOT_LISTED): (None, Action.NONE),
    (Phase.MIGRATING_OUT, Input.SOURCE_DEFINED):
        (Phase.MIGRATING_OUT_DEFINED, Action.NONE),
    (Phase.STOPPED_MIGRATING, Input.SOURCE_DEFINED):
        (Phase.STOPPED_MIGRATING_DEFINED, Action.NONE),
    (ANY, Input.SOURCE_DEFINED): (None, Action.NONE),
    (Phase.STOPPED_MIGRATING_DEFINED, Input.SOURCE_GONE): (None, Action.MIGRATED_AWAY),
    # Not seen defined by the watch, but persistent when a scan or an event
    # last told (the agent too late to look before the migration undefined
    # it): the same. Gone before the death is applied, it is left to that
    # death's event, which the watch follows again.
    (Phase.STOPPED_MIGRATING, Input.SOURCE_UNDEFINED): (None, Action.MIGRATED_AWAY),
    (Phase.STOPPED_MIGRATING_DEFINED, Input.SOURCE_UNDEFINED):
        (None, Action.MIGRATED_AWAY),
    (ANY, Input.SOURCE_UNDEFINED): (None, Action.NONE),
    # Transient, or nothing told: gone whatever the outcome. Nothing tells
    # which, so the failure stands (never lost).
    (Phase.STOPPED_MIGRATING, Input.SOURCE_GONE): (Phase.FAILED, Action.RELEASE),
    (ANY, Input.SOURCE_GONE): (None, Action.NONE),
    (Phase.STOPPED_MIGRATING, Input.MIGRATION_ENDED): (Phase.FAILED, Action.RELEASE),
    (Phase.STOPPED_MIGRATING_DEFINED, Input.MIGRATION_ENDED):
        (Phase.FAILED, Action.RELEASE),
    (ANY, Input.MIGRATION_ENDED): (None, Action.NONE),
    (ANY, Input.IO_ERROR_REPORT): (None, Action.RECOVER),
    # The heartbeat starts over (HEARTBEAT_TABLE); never a failure.
    (ANY, Input.REBOOT): (None, Action.FORWARD),
    (ANY, Input.AGENT_CONNECTED): (None, Action.NONE),
    (ANY, Input.AGENT_DISCONNECTED): (None, Action.NONE),
    (ANY, Input.EVENT): (None, Action.FORWARD),
    # A scan never ends an episode of the run it finds, and notifies only
    # what nobody reported; one that finds a run not seen is a new run.
    (ANY, Input.SCAN_RUNNING): (None, Action.NONE),
    # Running, in the run of a migration's pause: the migration is over and
    # its RESUMED_MIGRATED was missed (the agent or libvirtd was away). At
    # the destination, a crash from now on is a crash.
    (Phase.MIGRATING_IN, Input.SCAN_RUNNING): (Phase.RUNNING, Action.NONE),
    (Phase.MIGRATING_OUT, Input.SCAN_RUNNING): (Phase.RUNNING, Action.NONE),
    (Phase.MIGRATING_OUT_DEFINED, Input.SCAN_RUNNING): (Phase.RUNNING, Action.NONE),
    (ANY, Input.SCAN_RUNNING_NEW_RUN): (Phase.RUNNING, Action.NEW_RUN),
    (ANY, Input.SCAN_PAUSED): (Phase.PAUSED, Action.NONE),
    (ANY, Input.SCAN_PAUSED_NEW_RUN): (Phase.PAUSED, Action.NEW_RUN),
    (ANY, Input.SCAN_ERROR_PAUSED): (Phase.ERROR_PAUSED, Action.FORWARD_ONCE),
    (ANY, Input.SCAN_ERROR_PAUSED_NEW_RUN):
        (Phase.ERROR_PAUSED, Action.NEW_RUN_AND_FORWARD),
    # Paused for a migration: the incoming side if the machine saw it come
    # in (its STOPPED_FAILED is then the failed migration), else going out.
    (Phase.MIGRATING_IN, Input.SCAN_MIGRATING): (None, Action.NONE),
    (Phase.MIGRATING_OUT_DEFINED, Input.SCAN_MIGRATING): (None, Action.NONE),
    (ANY, Input.SCAN_MIGRATING): (Phase.MIGRATING_OUT, Action.WATCH_MIGRATION),
    (ANY, Input.SCAN_MIGRATING_NEW_RUN): (Phase.MIGRATING_IN, Action.NEW_RUN),
    # Paused in post-copy: only ever the source.
    (Phase.MIGRATING_OUT_DEFINED, Input.SCAN_POSTCOPY): (None, Action.NONE),
    (ANY, Input.SCAN_POSTCOPY): (Phase.MIGRATING_OUT, Action.WATCH_MIGRATION),
    (ANY, Input.SCAN_POSTCOPY_NEW_RUN): (Phase.MIGRATING_OUT, Action.NEW_RUN_AND_WATCH),
    # Shut off on a failure: already accounted for if the machine saw it
    # stop that way (a notified crash, a guest crash, a failed incoming
    # migration); news otherwise, including after a clean stop, since a run
    # that followed it and crashed is the only way to that state.
    (Phase.FAILED, Input.SCAN_FAILED): (None, Action.NONE),
    (Phase.STOPPED_MIGRATING, Input.SCAN_FAILED): (None, Action.NONE),
    (Phase.STOPPED_MIGRATING_DEFINED, Input.SCAN_FAILED): (None, Action.NONE),
    (Phase.MIGRATING_IN, Input.SCAN_FAILED): (Phase.FAILED, Action.SUPPRESS),
    # Shut off where the machine last saw an outgoing migration's last
    # phase (the agent was away when QEMU died): as the event would be.
    (Phase.MIGRATING_OUT, Input.SCAN_FAILED):
        (Phase.STOPPED_MIGRATING, Action.RECOVER_AFTER_MIGRATION),
    (Phase.MIGRATING_OUT_DEFINED, Input.SCAN_FAILED):
        (Phase.STOPPED_MIGRATING_DEFINED, Action.RECOVER_AFTER_MIGRATION),
    (ANY, Input.SCAN_FAILED): (Phase.FAILED, Action.RECOVER),
    (ANY, Input.SCAN_SHUTOFF): (Phase.SHUTOFF, Action.NONE),
    (ANY, Input.STALE_SCAN): (None, Action.NONE),
    # Pings are the heartbeat's (HEARTBEAT_TABLE); they never move the phase.
    (ANY, Input.PING_OK): (None, Action.NONE),
    (ANY, Input.PING_MISS): (None, Action.NONE),
    (ANY, Input.PING_MISS_GRACE_OVER): (None, Action.NONE),
    (ANY, Input.PROBE): (None, Action.NONE),
}


class Agent(enum.StrEnum):
    """The heartbeat's view of a domain's guest agent in the current run."""

    UNWATCHED = ''                  # no ping yet in this run
    DISCOVERY = 'discovery'         # waiting for a first answer (startup_grace)
    HEALTHY = 'healthy'
    FAILING = 'failing'             # missed pings, fewer than the threshold
    REPORTED = 'reported'           # missed the threshold: notified
    NEVER_ANSWERED = 'never-answered'  # no answer within startup_grace
    DISCONNECTED = 'disconnected'   # the agent closed its channel (reboot?)


class AgentAction(enum.StrEnum):
    NONE = 'none'
    ANSWERED = 'answered'     # healthy; ends an episode the heartbeat opened
    MISSED = 'missed'         # one more miss; the threshold decides
    LOST = 'lost'             # no answer within startup_grace: report it if the
                              # agent answered before in this run, else never-answered
    DISCOVER = 'discover'     # (re)start discovery now, with the startup grace
    DISCONNECT = 'disconnect'


# (agent state or ANY, input) → (new agent state or None to keep it, action).
HEARTBEAT_TABLE: dict[tuple[str, Input], tuple[Agent | None, AgentAction]] = {
    (Agent.UNWATCHED, Input.PING_MISS): (Agent.DISCOVERY, AgentAction.DISCOVER),
    (ANY, Input.PING_OK): (Agent.HEALTHY, AgentAction.ANSWERED),
    (Agent.DISCOVERY, Input.PING_MISS): (None, AgentAction.NONE),
    (Agent.DISCOVERY, Input.PING_MISS_GRACE_OVER): (None, AgentAction.LOST),
    (Agent.DISCONNECTED, Input.PING_MISS): (None, AgentAction.NONE),
    (Agent.DISCONNECTED, Input.PING_MISS_GRACE_OVER): (None, AgentAction.LOST),
    (Agent.HEALTHY, Input.PING_MISS): (Agent.FAILING, AgentAction.MISSED),
    (Agent.FAILING, Input.PING_MISS): (Agent.FAILING, AgentAction.MISSED),
    (Agent.REPORTED, Input.PING_MISS): (None, AgentAction.NONE),
    (Agent.NEVER_ANSWERED, Input.PING_MISS): (None, AgentAction.NONE),
    # A reboot, or the agent coming back after closing its channel, is a
    # boot: discovery again. A connect without a disconnect (libvirtd
    # reconnecting to a running guest) changes nothing.
    (ANY, Input.REBOOT): (Agent.DISCOVERY, AgentAction.DISCOVER),
    (Agent.UNWATCHED, Input.REBOOT): (None, AgentAction.NONE),
    (Agent.DISCONNECTED, Input.AGENT_CONNECTED):
        (Agent.DISCOVERY, AgentAction.DISCOVER),
    (Agent.UNWATCHED, Input.AGENT_DISCONNECTED): (None, AgentAction.NONE),
    (ANY, Input.AGENT_DISCONNECTED): (Agent.DISCONNECTED, AgentAction.DISCONNECT),
}
# Pings that miss after the grace are plain misses where grace does not apply.
_GRACE_STATES = (Agent.DISCOVERY, Agent.DISCONNECTED)


class Probe(enum.StrEnum):
    """An application probe's view of one domain in the current run."""

    DISCOVERY = 'discovery'      # no success yet in this run (or since a reboot)
    HEALTHY = 'healthy'
    FAILING = 'failing'          # failed, fewer times in a row than the threshold
    REPORTED = 'reported'        # failed the threshold: reported
    UNAVAILABLE = 'unavailable'  # the guest agent cannot run it


class ProbeAction(enum.StrEnum):
    NONE = 'none'
    SUCCEEDED = 'succeeded'      # one more success; success_threshold: healthy,
                                 # and the end of an episode the probe opened
    FAILED = 'failed'            # one more failure; failure_threshold: reported
    UNAVAILABLE = 'unavailable'


# (probe state or ANY, outcome) → (new state or None to keep it, action). A
# probe that never succeeded in the run is never a failure: a guest still
# booting, or a probe that does not fit the image, must not cost a recovery.
PROBE_TABLE: dict[tuple[str, ProbeOutcome], tuple[Probe | None, ProbeAction]] = {
    (Probe.DISCOVERY, ProbeOutcome.SUCCESS): (None, ProbeAction.SUCCEEDED),
    (Probe.DISCOVERY, ProbeOutcome.FAILURE): (None, ProbeAction.NONE),
    (Probe.HEALTHY, ProbeOutcome.SUCCESS): (None, ProbeAction.NONE),
    (Probe.HEALTHY, ProbeOutcome.FAILURE): (Probe.FAILING, ProbeAction.FAILED),
    (Probe.FAILING, ProbeOutcome.SUCCESS): (None, ProbeAction.SUCCEEDED),
    (Probe.FAILING, ProbeOutcome.FAILURE): (None, ProbeAction.FAILED),
    (Probe.REPORTED, ProbeOutcome.SUCCESS): (None, ProbeAction.SUCCEEDED),
    (Probe.REPORTED, ProbeOutcome.FAILURE): (None, ProbeAction.NONE),
    # Runs again after being unavailable: as after a boot.
    (Probe.UNAVAILABLE, ProbeOutcome.SUCCESS): (Probe.DISCOVERY, ProbeAction.SUCCEEDED),
    (Probe.UNAVAILABLE, ProbeOutcome.FAILURE): (Probe.DISCOVERY, ProbeAction.NONE),
    # Unavailable is never a failure; a reported one stays reported.
    (Probe.REPORTED, ProbeOutcome.UNAVAILABLE): (None, ProbeAction.NONE),
    (ANY, ProbeOutcome.UNAVAILABLE): (Probe.UNAVAILABLE, ProbeAction.UNAVAILABLE),
}


@dataclasses.dataclass(frozen=True)
class ProbeStatus:
    state: Probe = Probe.DISCOVERY
    failures: int = 0            # in a row
    successes: int = 0           # in a row, toward success_threshold

    def __str__(self) -> str:
        if self.state in (Probe.FAILING, Probe.REPORTED):
            return f'{self.state}({self.failures})'
        return self.state.value


@dataclasses.dataclass
class DomainRecord:
    """What the journal keeps of one domain (persisted, but ``last_seq``)."""

    uuid: str
    name: str
    phase: Phase = Phase.UNKNOWN
    # The domain id of the current (or last) run; -1 if not known.
    run: int = -1
    # The recovery pair ('EVENT/DETAIL') that opened the run's episode, and
    # who saw it: 'libvirt', 'heartbeat', 'probe:NAME' ('' before version 5).
    episode: str = ''
    episode_by: str = ''
    failed_at: datetime.datetime | None = None
    # Pairs notified in this run (scans do not send them again).
    reported: frozenset[str] = frozenset()
    agent: Agent = Agent.UNWATCHED
    agent_failures: int = 0
    # When discovery (or the disconnection) began, for the startup grace.
    agent_since: datetime.datetime | None = None
    # The guest agent answered at least once in this run.
    agent_answered: bool = False
    # The generated_time of the last notification of each recovery pair
    # ('EVENT/DETAIL' → time), across runs: Masakari drops another of the
    # same pair within its duplicate window.
    recovery_times: dict[str, datetime.datetime] = dataclasses.field(
        default_factory=dict)
    # The last event seen, as 'KIND event/detail', and when.
    last_event: str = ''
    last_seen: datetime.datetime | None = None
    notified: int = 0
    # Whether the domain is persistent (defined), as the last scan or
    # (un)define event told; None: not known (a record of version 5).
    persistent: bool | None = None
    # Each application probe's state in this run, by probe name (a new dict
    # on every change: records are copied shallowly).
    probes: dict[str, ProbeStatus] = dataclasses.field(default_factory=dict)
    # The host's boot (the kernel's boot id) the record was last written in;
    # '' if not known (a record of version 6). No run outlives its boot.
    boot: str = ''
    # Sequence number of the last libvirt event applied (this process only):
    # a scan read before it is stale for this domain.
    last_seq: int = -1

    def copy(self) -> 'DomainRecord':
        """A shallow copy (as ``dataclasses.replace(self)``, at a seventh of
        its cost: the journal copies a record three times per event)."""
        clone = object.__new__(DomainRecord)
        clone.__dict__.update(self.__dict__)
        return clone

    @property
    def heartbeat(self) -> str:
        """The heartbeat's state for people: 'healthy', 'failing(2)', ..."""
        if self.agent is Agent.FAILING:
            return f'failing({self.agent_failures})'
        return self.agent.value


@dataclasses.dataclass(frozen=True)
class Observation:
    """One input for one domain, with what the filter says of it."""

    input: Input
    at: datetime.datetime
    # The domain id the observation was made on (-1: none or not known).
    domain_id: int = -1
    # For scans: the sequence number taken before the state was read. For
    # libvirt events: the event's own.
    seq: int = -1
    from_scan: bool = False
    # The (event, detail) pair to notify for it, if forwarded at all.
    pair: tuple[str, str] | None = None
    # Seconds a forwarded (non-recovery) stop is held for the reboot window.
    hold: float = 0.0
    # Input.PROBE: the probe's run.
    probe: ProbeCheck | None = None
    # Scans: whether the domain is persistent (None: not known).
    persistent: bool | None = None
    # The host's boot it was made in (the kernel's boot id; '' not known).
    boot: str = ''


@dataclasses.dataclass(frozen=True)
class HeartbeatPolicy:
    threshold: int = 3
    grace: float = 300.0
    report_never_answered: bool = False
    # The pair a heartbeat failure is notified as.
    pair: tuple[str, str] = ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')


@dataclasses.dataclass
class Outcome:
    """What one observation did: the caller carries it out."""

    record: DomainRecord | None            # None: forget the domain
    # (pair, seconds held, generated_time)
    notify: list[tuple[tuple[str, str], float, datetime.datetime]] = (
        dataclasses.field(default_factory=list))
    # Withdraw the domain's notifications of these pairs ('EVENT/DETAIL',
    # or ALL_PAIRS) that still wait to be sent: what they report is over.
    withdraw: tuple[str, ...] = ()
    # Send the domain's notifications of these pairs that are held, now.
    release: tuple[str, ...] = ()
    # Have the migration watch follow the domain's outgoing migration: the
    # outcome of the one its QEMU died in (the record's phase is then one
    # of AWAITING_MIGRATION), or whether the domain is persistent.
    follow_migration: bool = False
    # The heartbeat's new (state, failures), when it changed.
    heartbeat: tuple[Agent, int] | None = None
    # Probes whose state changed: (name, new status, output of the run).
    probes: list[tuple[str, ProbeStatus, str]] = dataclasses.field(
        default_factory=list)
    trace: list[str] = dataclasses.field(default_factory=list)


def _is_new_run(record: DomainRecord, domain_id: int) -> bool:
    """Whether an active domain seen with ``domain_id`` is in a run the
    record has not seen. One last seen stopped (or never seen) started
    again, whatever its id: libvirtd gives ids from 1 again when it starts
    with nothing running. A record that never learnt its run (from an older
    agent) adopts the id of a domain it believes active."""
    if domain_id < 0:
        return False
    if record.phase not in _QEMU_RUNS:
        return True
    return record.run >= 0 and domain_id != record.run


_NEW_RUN_VARIANT = {
    Input.SCAN_RUNNING: Input.SCAN_RUNNING_NEW_RUN,
    Input.SCAN_PAUSED: Input.SCAN_PAUSED_NEW_RUN,
    Input.SCAN_ERROR_PAUSED: Input.SCAN_ERROR_PAUSED_NEW_RUN,
    Input.SCAN_MIGRATING: Input.SCAN_MIGRATING_NEW_RUN,
    Input.SCAN_POSTCOPY: Input.SCAN_POSTCOPY_NEW_RUN,
}


def is_stale_scan(record: DomainRecord, obs: Observation) -> bool:
    """Whether ``obs`` is a scan read before an event already applied to
    ``record``: it says nothing newer."""
    return obs.from_scan and obs.seq < record.last_seq


def refine(record: DomainRecord, obs: Observation,
           policy: HeartbeatPolicy) -> Input | None:
    """The table input ``obs`` stands for, given the record; None if it is
    about another run than the record's (a ping that was under way when the
    run ended) and must be ignored."""
    given = obs.input
    if obs.from_scan:
        if is_stale_scan(record, obs):
            return Input.STALE_SCAN
        if given is Input.SCAN_NOT_LISTED and record.persistent:
            return Input.SCAN_UNDEFINED
        if given in _NEW_RUN_VARIANT and _is_new_run(record, obs.domain_id):
            return _NEW_RUN_VARIANT[given]
        return given
    if given is Input.SOURCE_GONE and record.persistent:
        return Input.SOURCE_UNDEFINED
    if given in (Input.PING_OK, Input.PING_MISS, Input.PROBE):
        if record.phase is not Phase.RUNNING or (
                record.run >= 0 and obs.domain_id != record.run):
            return None
        if (given is Input.PING_MISS and record.agent in _GRACE_STATES and
                record.agent_since is not None and
                (obs.at - record.agent_since).total_seconds() >= policy.grace):
            return Input.PING_MISS_GRACE_OVER
    return given


def _lookup(table: dict, state: str, given: Input) -> tuple:
    return table.get((state, given)) or table[(ANY, given)]


def _heartbeat_lookup(agent: Agent, given: Input) -> tuple[Agent | None, AgentAction]:
    row = HEARTBEAT_TABLE.get((agent, given)) or HEARTBEAT_TABLE.get((ANY, given))
    return row or (None, AgentAction.NONE)


def _label(pair: tuple[str, str]) -> str:
    return '/'.join(pair)


# Past the end of Masakari's duplicate window, with room for a database
# that keeps generated_time to the second.
_WINDOW_MARGIN = datetime.timedelta(seconds=1)


class DomainMachine:
    """Applies observations to records; says what to notify.

    ``duplicate_window``: Masakari's duplicate_notification_detection_interval.
    Masakari takes a notification for a duplicate, and drops it, when one of
    the same host and payload has a generated_time at most that much older;
    the payload of a VM notification can be nothing but its instance and
    pair. So a second recovery of the same pair for the same instance within
    the window (it crashed, was recovered, crashed again) is held until the
    window has passed and is generated then: late, never lost.
    """

    def __init__(self, policy: HeartbeatPolicy | None = None,
                 duplicate_window: float = 0.0,
                 migration_wait: float = 0.0) -> None:
        """``migration_wait``: seconds a QEMU death in an outgoing
        migration's last phase waits for the migration's outcome."""
        self.policy = policy or HeartbeatPolicy()
        self.duplicate_window = duplicate_window
        self.migration_wait = migration_wait

    def apply(self, record: DomainRecord, obs: Observation) -> Outcome:
        """The outcome of ``obs`` on a copy of ``record``."""
        record = record.copy()
        out = Outcome(record)
        if obs.boot and record.boot != obs.boot:
            if record.boot:
                self._host_restarted(record, obs, out)
            record.boot = obs.boot
        given = refine(record, obs, self.policy)
        if given is None:
            return out
        if not obs.from_scan and obs.seq > record.last_seq:
            record.last_seq = obs.seq
        if obs.persistent is not None and given is not Input.STALE_SCAN:
            record.persistent = obs.persistent  # a fresh scan's
        elif given is Input.DEFINED:
            record.persistent = True
        phase, action = _lookup(LIFECYCLE_TABLE, record.phase, given)
        if not self.migration_wait:  # a death in a migration is any other death
            if action is Action.RECOVER_AFTER_MIGRATION:
                phase, action = Phase.FAILED, Action.RECOVER
            elif action is Action.WATCH_MIGRATION:
                action = Action.NONE
            elif action is Action.NEW_RUN_AND_WATCH:
                action = Action.NEW_RUN
        before = record.phase
        if action in (Action.NEW_RUN, Action.NEW_RUN_AND_FORWARD,
                      Action.NEW_RUN_AND_WATCH):
            self._new_run(record, obs, out)
        if phase is not None:
            record.phase = phase
        if record.phase != before:
            out.trace.append(f'{given}: {before} => {record.phase}')
        match action:
            case Action.FORGET:
                out.record = None
                out.withdraw = ALL_PAIRS
                out.trace.append(
                    f'{given}: forgotten' if given is Input.UNDEFINED else
                    f'{given}: not listed by a scan, and persistent when last '
                    'seen: undefined unseen, it lives here no more; forgotten')
            case Action.TRANSIENT:
                record.persistent = False
                out.trace.append(f'{given}: runs on as a transient domain, the '
                                 'same run')
            case Action.MIGRATED_AWAY:
                out.record = None
                out.withdraw = ALL_PAIRS
                out.trace.append(f'{given}: the migration went through and the VM '
                                 'runs at the destination; not a failure here')
            case Action.RECOVER:
                self._recover(record, obs.pair, obs.at, out, given)
            case Action.WATCH_MIGRATION | Action.NEW_RUN_AND_WATCH:
                out.follow_migration = True
            case Action.RECOVER_AFTER_MIGRATION:
                out.follow_migration = True
                self._recover(record, obs.pair, obs.at, out, given,
                              hold=self.migration_wait)
                out.trace.append(f'{given}: in the last phase of an outgoing '
                                 'migration; held for its outcome, at most '
                                 f'{self.migration_wait:g} s')
            case Action.RELEASE:
                if record.episode:
                    out.release = (record.episode,)
                    out.trace.append(f'{given}: the migration did not take the VM '
                                     f'away; {record.episode} goes now')
            case Action.FORWARD | Action.NEW_RUN_AND_FORWARD | Action.FORWARD_ONCE:
                # Only FORWARD sends every time; the others once per run.
                if obs.pair is not None and (
                        action is Action.FORWARD or
                        _label(obs.pair) not in record.reported):
                    self._notify(record, obs.pair, obs.hold, out, obs.at)
            case Action.SUPPRESS:
                # Accounted for as this run's episode, though not notified:
                # a scan can find the domain shut off before libvirt's
                # STOPPED_FAILED of the same run arrives (or the other way
                # round), and that is no news either.
                if obs.pair is not None and not record.episode:
                    self._open_episode(record, _label(obs.pair), 'libvirt', obs.at)
                out.trace.append(f'{given}: the failed incoming migration of a VM '
                                 'that runs on at its source; not a failure')
        if given is Input.REBOOT:
            self._reset_probes(record, out)
        self._heartbeat(record, obs, given, out)
        if given is Input.PROBE and obs.probe is not None:
            self._probe(record, obs.probe, obs.at, out)
        return out

    def _new_run(self, record: DomainRecord, obs: Observation, out: Outcome) -> None:
        if record.episode:
            out.trace.append(f'new run (id {obs.domain_id}): the episode of '
                             f'{record.episode} is over')
        record.run = obs.domain_id
        self._end_run(record, out)
        # The domain runs again: a stop held for the reboot window was a
        # reboot after all, and a recovery still waiting (held past
        # Masakari's duplicate window, or for the API to answer) would stop
        # a running VM. A fresh scan that finds the new run says so as
        # surely as libvirt's event (a stale one never gets here).
        out.withdraw = ALL_PAIRS

    def _end_run(self, record: DomainRecord, out: Outcome) -> None:
        """Forget what the run knew: its episode, the heartbeat's and the
        probes' states."""
        record.episode, record.episode_by, record.failed_at = '', '', None
        record.reported = frozenset()
        self._set_agent(record, Agent.UNWATCHED, out)
        record.agent_answered, record.agent_since = False, None
        self._reset_probes(record, out)

    def _host_restarted(self, record: DomainRecord, obs: Observation,
                        out: Outcome) -> None:
        """The record is of an earlier boot of the host: its run ended with
        that boot, however nobody saw. Its episode is over, but what waits
        to be sent stands until the domain is seen running again (a new
        run) or undefined."""
        line = f'{obs.input}: the host restarted since run {record.run}, which is over'
        if record.phase in _QEMU_RUNS:
            line += f'; {record.phase} => {Phase.SHUTOFF}'
            record.phase = Phase.SHUTOFF
        out.trace.append(line)
        record.run = -1
        self._end_run(record, out)

    def _recover(self, record: DomainRecord, pair: tuple[str, str] | None,
                 at: datetime.datetime, out: Outcome, why: str,
                 by: str = 'libvirt', hold: float = 0.0) -> None:
        if pair is None:
            return
        if record.episode:
            out.trace.append(f'{why}: {_label(pair)} is part of the episode of '
                             f'{record.episode}; not notified again')
            return
        label = _label(pair)
        self._open_episode(record, label, by, at)
        generated = at
        window = datetime.timedelta(seconds=self.duplicate_window)
        last = record.recovery_times.get(label)
        if window and last is not None and generated - last <= window:
            generated = last + window + _WINDOW_MARGIN
            out.trace.append(
                f'{why}: {label} within Masakari\'s duplicate window of the one '
                f'generated at {last.isoformat()}: held until '
                f'{generated.isoformat()}, or Masakari would drop it')
        record.recovery_times = {**record.recovery_times, label: generated}
        self._notify(record, pair, max(hold, (generated - at).total_seconds()),
                     out, generated)

    def _notify(self, record: DomainRecord, pair: tuple[str, str], hold: float,
                out: Outcome, generated: datetime.datetime) -> None:
        out.notify.append((pair, hold, generated))
        record.reported = record.reported | {_label(pair)}
        record.notified += 1

    def _set_agent(self, record: DomainRecord, agent: Agent, out: Outcome,
                   failures: int = 0) -> None:
        if (record.agent, record.agent_failures) != (agent, failures):
            record.agent, record.agent_failures = agent, failures
            out.heartbeat = (agent, failures)

    def _heartbeat(self, record: DomainRecord, obs: Observation, given: Input,
                   out: Outcome) -> None:
        state, action = _heartbeat_lookup(record.agent, given)
        policy = self.policy
        match action:
            case AgentAction.NONE:
                return
            case AgentAction.DISCOVER | AgentAction.DISCONNECT:
                record.agent_since = obs.at
                self._set_agent(record, state, out)
            case AgentAction.ANSWERED:
                record.agent_answered = True
                self._set_agent(record, state, out)
                label = _label(policy.pair)
                if record.episode == label and record.episode_by in ('heartbeat', ''):
                    out.trace.append(f'{given}: the guest agent answers again; '
                                     f'the episode of {label} is over')
                    self._end_episode(record, label, out)
            case AgentAction.MISSED:
                failures = record.agent_failures + 1
                if failures >= policy.threshold:
                    self._set_agent(record, Agent.REPORTED, out, failures)
                    out.trace.append(f'{given}: missed {failures} pings in a row')
                    self._recover(record, policy.pair, obs.at, out, given, 'heartbeat')
                else:
                    self._set_agent(record, Agent.FAILING, out, failures)
            case AgentAction.LOST:
                if record.agent_answered:
                    self._set_agent(record, Agent.REPORTED, out)
                    out.trace.append(f'{given}: no answer within the startup '
                                     'grace from an agent that answered in this run')
                    self._recover(record, policy.pair, obs.at, out, given, 'heartbeat')
                else:
                    self._set_agent(record, Agent.NEVER_ANSWERED, out)
                    out.trace.append(
                        f'{given}: the guest agent has not answered in this run '
                        'within the startup grace' + (
                            '' if policy.report_never_answered else
                            '; not reported (report_never_answered is off)'))
                    if policy.report_never_answered:
                        self._recover(record, policy.pair, obs.at, out, given,
                                      'heartbeat')
        if out.heartbeat is not None:
            out.trace.append(f'heartbeat {out.heartbeat[0] or "unwatched"}'
                             + (f'({out.heartbeat[1]})' if out.heartbeat[1] else ''))

    @staticmethod
    def _open_episode(record: DomainRecord, label: str, by: str,
                      at: datetime.datetime) -> None:
        record.episode, record.episode_by, record.failed_at = label, by, at

    @staticmethod
    def _end_episode(record: DomainRecord, label: str, out: Outcome) -> None:
        """The failure that opened the episode is over (the guest answers
        again): its notification, if it still waits, would recover a
        healthy VM."""
        record.episode, record.episode_by, record.failed_at = '', '', None
        record.reported = record.reported - {label}
        out.withdraw = (*out.withdraw, label)

    @staticmethod
    def _reset_probes(record: DomainRecord, out: Outcome) -> None:
        """A new run or a guest reboot: every probe is in discovery again."""
        for name, status in sorted(record.probes.items()):
            if status.state is not Probe.DISCOVERY:
                out.probes.append((name, ProbeStatus(), ''))
        if record.probes:
            record.probes = {}

    def _probe(self, record: DomainRecord, check: ProbeCheck,
               at: datetime.datetime, out: Outcome) -> None:
        before = record.probes.get(check.name, ProbeStatus())
        row = (PROBE_TABLE.get((before.state, check.outcome)) or
               PROBE_TABLE[(ANY, check.outcome)])
        state, action = row
        status = dataclasses.replace(before, state=state or before.state)
        label, by = _label(self.policy.pair), f'probe:{check.name}'
        match action:
            case ProbeAction.SUCCEEDED:
                successes = status.successes + 1
                if successes >= check.success_threshold:
                    status = ProbeStatus(Probe.HEALTHY)
                    if record.episode == label and record.episode_by == by:
                        out.trace.append(f'probe {check.name} succeeds again; the '
                                         f'episode of {label} is over')
                        self._end_episode(record, label, out)
                else:  # a reported probe keeps its count until healthy
                    failures = 0 if status.state is Probe.FAILING else status.failures
                    status = dataclasses.replace(status, successes=successes,
                                                 failures=failures)
            case ProbeAction.FAILED:
                failures = status.failures + 1
                status = dataclasses.replace(status, failures=failures, successes=0)
                if failures >= check.failure_threshold:
                    status = dataclasses.replace(status, state=Probe.REPORTED)
                    out.trace.append(f'probe {check.name} failed {failures} times '
                                     f'in a row: {check.output!r}')
                    if check.recover:
                        self._recover(record, self.policy.pair, at, out,
                                      f'probe {check.name}', by)
            case ProbeAction.UNAVAILABLE:
                status = ProbeStatus(Probe.UNAVAILABLE)
                if before.state is not Probe.UNAVAILABLE:  # told once
                    out.trace.append(f'probe {check.name} cannot run: {check.output}')
        if status != before:
            record.probes = {**record.probes, check.name: status}
            if status.state is not before.state or (
                    status.state is Probe.FAILING and
                    status.failures > before.failures):
                out.probes.append((check.name, status, check.output))
                out.trace.append(f'probe {check.name} {status}')
