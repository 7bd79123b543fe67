"""What the agent's imports cost in memory: the floor under its idle RSS.

Each row is a fresh interpreter that imports what the rows before it did,
and one more package, in the order the agent's default configuration
needs them (the message bus's and the webhooks' modules are imported only
when configured, and are not among them); RSS after a garbage collection,
and that row's share of it:

    python -m bench.imports
"""

import subprocess
import sys

from bench.common import machine

# (what the row adds, the modules it imports)
STEPS = (
    ('Python alone', ()),
    ('libvirt-python (and libvirt.so)', ('libvirt',)),
    ('sqlite3', ('sqlite3',)),
    ('oslo.config', ('oslo_config.cfg',)),
    ('oslo.log', ('oslo_log.log',)),
    ('requests', ('requests',)),
    ('keystoneauth1', ('keystoneauth1.session', 'keystoneauth1.loading')),
    ('tenacity', ('tenacity',)),
    ('prometheus-client', ('prometheus_client',)),
    ('the agent (instancemonitor.cmd.agent)', ('instancemonitor.cmd.agent',)),
)

PROBE = """
import gc, sys
for name in sys.argv[1:]:
    __import__(name)
gc.collect()
with open('/proc/self/status') as status:
    print(next(int(line.split()[1]) for line in status if line.startswith('VmRSS')))
"""


OPTIONAL = """
import sys, instancemonitor.cmd.agent
print(' '.join(m for m in ('oslo_messaging', 'kombu', 'instancemonitor.sinks.webhook',
                           'instancemonitor.sinks.messagebus')
               if m in sys.modules) or 'none')
"""


def rss_kib(modules: list[str]) -> int:
    return int(subprocess.run([sys.executable, '-c', PROBE, *modules], check=True,
                              capture_output=True, text=True).stdout)


def main() -> None:
    print(f'# {machine()}; RSS of a fresh interpreter, MiB')
    print(f'{"imported so far":<40} {"RSS":>6} {"added":>6}')
    modules: list[str] = []
    before = 0
    for label, adds in STEPS:
        modules += adds
        rss = min(rss_kib(modules) for _ in range(3)) / 1024
        added = f'{rss - before:+6.1f}' if before else ''
        print(f'{label:<40} {rss:>6.1f} {added:>6}')
        before = rss
    optional = subprocess.run([sys.executable, '-c', OPTIONAL], check=True,
                              capture_output=True, text=True).stdout.strip()
    print(f'# optional modules imported by the default configuration: {optional}')


if __name__ == '__main__':
    main()
