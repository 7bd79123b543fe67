"""``instancemonitor``: the agent daemon.

Exit status: 0 after a clean stop (SIGTERM, SIGINT), 78 (EX_CONFIG) when the
configuration is unusable, with a message naming the option, 75 (EX_TEMPFAIL)
when another agent holds ``state_path`` (systemd tries again later), 70
(EX_SOFTWARE) when one of its threads died (systemd restarts it).
"""

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from keystoneauth1 import exceptions as ks_exceptions
from oslo_config import cfg
from oslo_log import log as oslo_logging

import instancemonitor.conf
from instancemonitor.conf import probes as probes_conf
from instancemonitor.conf import webhooks as webhooks_conf
from instancemonitor.conf.errors import ConfigurationError
from instancemonitor.service import AgentService
from instancemonitor.statelock import StateLocked
from instancemonitor.supervision import Supervisor
from instancemonitor.supervision import ThreadDeaths

LOG = logging.getLogger(__name__)

EXIT_CONFIG = os.EX_CONFIG
EXIT_LOCKED = os.EX_TEMPFAIL
EXIT_THREAD_DIED = os.EX_SOFTWARE
PROJECT = 'instancemonitor'


def _check(group: str, name: str, read: Callable[[], object]) -> object:
    try:
        return read()
    except cfg.ConfigFileValueError as error:
        # oslo's text: "Value for option X from LocationInfo(...) is not
        # valid: REASON"; keep the reason, name the option our way.
        reason = str(error).rpartition(' is not valid: ')[2]
        raise ConfigurationError(
            f'[{group}] {name}: invalid value: {reason}') from error
    except cfg.Error as error:
        raise ConfigurationError(f'[{group}] {name}: {error}') from error


def validate(conf: cfg.ConfigOpts) -> None:
    """Read every option once: oslo.config checks a value when it is read."""
    for name in list(conf):
        value = _check('DEFAULT', name, lambda name=name: conf[name])
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for opt_name in list(value):
                _check(name, opt_name,
                       lambda group=value, opt=opt_name: group[opt])


def _auth_error(error: ks_exceptions.ClientException) -> ConfigurationError:
    if isinstance(error, ks_exceptions.NoMatchingPlugin):
        return ConfigurationError(f'[api] auth_type: {error}')
    if isinstance(error, ks_exceptions.MissingRequiredOptions):
        names = ', '.join(f'[api] {opt.dest}' for opt in error.options)
        return ConfigurationError(f'{names}: required by the auth_type')
    return ConfigurationError(f'[api]: {error}')


def load_config(argv: list[str] | None) -> cfg.ConfigOpts:
    """Parse and check the configuration; ConfigurationError names the option."""
    conf = instancemonitor.conf.CONF
    oslo_logging.register_options(conf)
    try:
        conf(argv, project=PROJECT, prog=PROJECT)
        webhooks_conf.register_webhooks(conf)
        probes_conf.register_probes(conf)
        validate(conf)
    except cfg.Error as error:
        raise ConfigurationError(str(error)) from error
    return conf


def reload(conf: cfg.ConfigOpts) -> None:
    """SIGHUP: re-read the configuration files; mutable options take effect
    (log level, intervals, retries), others need a restart."""
    LOG.info('Received SIGHUP, reloading the configuration')
    try:
        conf.mutate_config_files()
    except Exception:  # a broken file must not stop a running agent
        LOG.exception('Reloading the configuration failed; keeping the old one')


def main(argv: list[str] | None = None) -> int:
    try:
        conf = load_config(argv)
        oslo_logging.setup(conf, PROJECT)
        service = AgentService(conf)
    except ConfigurationError as error:
        print(f'{PROJECT}: configuration error: {error}', file=sys.stderr)
        return EXIT_CONFIG
    except ks_exceptions.ClientException as error:
        print(f'{PROJECT}: configuration error: {_auth_error(error)}',
              file=sys.stderr)
        return EXIT_CONFIG
    except StateLocked as error:
        print(f'{PROJECT}: {error}', file=sys.stderr)
        return EXIT_LOCKED
    conf.log_opt_values(LOG, logging.DEBUG)

    wakeup = threading.Event()
    requested: set[int] = set()

    def on_signal(signum: int, _frame: object) -> None:
        # Only note it: the main loop acts, outside the signal handler.
        requested.add(signum)
        wakeup.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    conf.register_mutate_hook(lambda conf, changed: service.apply_mutable(conf))
    deaths = ThreadDeaths(wakeup.set)
    deaths.install()
    service.start()
    supervisor = Supervisor(service.liveness, service.status,
                            waiting=service.waiting_for_libvirtd)
    supervisor.ready()
    service.tick()
    status = 0
    while True:
        wakeup.wait(supervisor.tick)
        wakeup.clear()
        if requested & {signal.SIGTERM, signal.SIGINT}:
            LOG.info('Received %s, stopping', ' and '.join(
                signal.Signals(s).name for s in sorted(requested)))
            break
        if ended := deaths.ended(service.threads()):
            LOG.critical('Thread %s is not running any more: stopping with exit '
                         'status %d, so that systemd restarts the agent',
                         ', '.join(ended), EXIT_THREAD_DIED)
            status = EXIT_THREAD_DIED
            break
        if signal.SIGHUP in requested:
            requested.discard(signal.SIGHUP)
            reload(conf)
        supervisor.check()
        service.tick()
    supervisor.stopping()
    service.stop()
    return status


if __name__ == '__main__':
    sys.exit(main())
