"""A private RabbitMQ broker (Debian's rabbitmq-server) on 127.0.0.1, and an
oslo.messaging notification listener that consumes what the agent publishes.

The broker keeps everything in a temporary directory: its own node name,
ports, Erlang cookie (``HOME``), database and log, and an ``epmd`` of its own
on a free port. Every process it starts is stopped by pid.
"""

import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import threading

import kombu

from tests.processes import first_of_each
from tests.processes import free_port
from tests.processes import skip_or_fail
from tests.processes import stop_pid
from tests.processes import wait_for

SERVER = pathlib.Path('/usr/lib/rabbitmq/bin/rabbitmq-server')


class RabbitMQ:
    def __init__(self, directory: pathlib.Path, tls=None) -> None:
        """``tls``: a ``tests.tls.TestCA`` whose server certificate a second
        listener, on ``tls_port``, presents (amqps)."""
        if not SERVER.exists() or shutil.which('epmd') is None:
            skip_or_fail('rabbitmq-server is not installed '
                         '(apt-get install rabbitmq-server)')
        self.dir = directory
        self.port = free_port()
        self.password = secrets.token_hex(8)
        self.url = f'rabbit://instancemonitor:{self.password}@127.0.0.1:{self.port}/'
        self._epmd_port = free_port()
        self._env = dict(
            os.environ,
            HOME=str(directory / 'home'),
            RABBITMQ_CONF_ENV_FILE=str(directory / 'rabbitmq-env.conf'),
            RABBITMQ_NODENAME=f'im-test-{self.port}@localhost',
            RABBITMQ_NODE_IP_ADDRESS='127.0.0.1',
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(free_port()),
            ERL_EPMD_PORT=str(self._epmd_port),
            ERL_EPMD_ADDRESS='127.0.0.1',
            RABBITMQ_MNESIA_BASE=str(directory / 'mnesia'),
            RABBITMQ_LOG_BASE=str(directory / 'log'),
            RABBITMQ_CONFIG_FILE=str(directory / 'rabbitmq.conf'),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(directory / 'enabled_plugins'),
            RABBITMQ_PID_FILE=str(directory / 'beam.pid'),
            RABBITMQ_LOGS='-')
        (directory / 'home').mkdir(parents=True, exist_ok=True)
        (directory / 'rabbitmq-env.conf').write_text('')
        (directory / 'enabled_plugins').write_text('[].\n')
        config = f'default_user = instancemonitor\ndefault_pass = {self.password}\n'
        self.tls_port = free_port() if tls is not None else None
        if tls is not None:
            config += (f'listeners.ssl.default = 127.0.0.1:{self.tls_port}\n'
                       f'ssl_options.cacertfile = {tls.ca}\n'
                       f'ssl_options.certfile = {tls.cert}\n'
                       f'ssl_options.keyfile = {tls.key}\n'
                       'ssl_options.verify = verify_none\n'
                       'ssl_options.fail_if_no_peer_cert = false\n')
        (directory / 'rabbitmq.conf').write_text(config)
        self._epmd: subprocess.Popen | None = None
        self._server: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> 'RabbitMQ':
        if self._epmd is None:
            self._epmd = subprocess.Popen(
                ['epmd', '-port', str(self._epmd_port), '-address', '127.0.0.1'],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        self.starts += 1
        log = open(self.dir / f'server-{self.starts}.log', 'wb')
        self._server = subprocess.Popen(
            [str(SERVER)], env=self._env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_for(self._answers, timeout, f'RabbitMQ on port {self.port} '
                 f'(log: {self.dir}/server-{self.starts}.log)', interval=0.2)
        return self

    def _answers(self) -> bool:
        if self._server.poll() is not None:
            raise AssertionError(
                f'rabbitmq-server exited with {self._server.returncode}: '
                + (self.dir / f'server-{self.starts}.log').read_text()[-2000:])
        try:
            with kombu.Connection(self.url.replace('rabbit://', 'amqp://'),
                                  connect_timeout=1) as connection:
                connection.connect()
            return True
        except Exception:
            return False

    @property
    def pid(self) -> int | None:
        """The broker's (beam's) pid, once it runs."""
        return self._beam_pid()

    def _beam_pid(self) -> int | None:
        try:
            return int((self.dir / 'beam.pid').read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the broker as an operator would (SIGTERM, a clean shutdown)."""
        if self._server is not None:
            beam = self._beam_pid()
            stop_pid(self._server, timeout=30)
            self._kill_beam(beam)
            self._server = None

    def kill(self) -> None:
        """Crash the broker: SIGKILL to the Erlang VM."""
        beam = self._beam_pid()
        self._kill_beam(beam)
        if self._server is not None:
            stop_pid(self._server, timeout=10)
            self._server = None

    @staticmethod
    def _kill_beam(pid: int | None) -> None:
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def cleanup(self) -> None:
        self.stop()
        if self._epmd is not None:
            stop_pid(self._epmd)
            self._epmd = None


class Consumer:
    """An oslo.messaging notification listener on the agent's topic, with the
    options a fleet's consumer would use; keeps what it is given."""

    def __init__(self, url: str, topic: str = 'notifications',
                 exchange: str = 'openstack') -> None:
        import oslo_messaging
        from oslo_config import cfg

        self.conf = cfg.ConfigOpts()
        self.conf([], default_config_files=[], default_config_dirs=[])
        transport = oslo_messaging.get_notification_transport(self.conf, url=url)
        # Durable like the agent's queue; reconnect fast after a restart.
        for name, value in (('amqp_durable_queues', True),
                            ('rabbit_retry_interval', 1),
                            ('rabbit_retry_backoff', 0),
                            ('rabbit_interval_max', 1)):
            self.conf.set_override(name, value, group='oslo_messaging_rabbit')
        self.received: list[dict] = []
        self._lock = threading.Lock()
        self._transport = transport
        self._listener = oslo_messaging.get_notification_listener(
            transport, [oslo_messaging.Target(topic=topic, exchange=exchange)],
            [self], executor='threading')

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self._lock:
            self.received.append({'publisher_id': publisher_id,
                                  'event_type': event_type, 'payload': payload,
                                  'message_id': metadata['message_id'],
                                  'timestamp': metadata['timestamp']})

    def start(self) -> 'Consumer':
        self._listener.start()
        return self

    def stop(self) -> None:
        self._listener.stop()
        self._listener.wait()
        self._transport.cleanup()

    def unique(self) -> list[dict]:
        """What was received, without repeats (same message_id), in order."""
        with self._lock:
            return first_of_each(self.received, lambda m: m['message_id'])

    def wait_unique(self, count: int, timeout: float = 30.0) -> list[dict]:
        wait_for(lambda: len(self.unique()) >= count, timeout,
                 f'{count} messages on the bus (have {len(self.unique())})')
        return self.unique()
