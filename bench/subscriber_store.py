"""What a subscriber's outbox costs per delivery in the SQLite store: the
event's insert (its own transaction, as the fan-out writes it), then the
removal once delivered, committed on its own (as the recovery API's store
does) or deferred to the next transaction (as the subscribers' store does).
CPU of this thread and wall time per notification, on a database under
/var/tmp (a real disk, not tmpfs: fsync counts).

    python -m bench.subscriber_store [NOTIFICATIONS]
"""

import dataclasses
import resource
import shutil
import sys
import tempfile
import time
import uuid

from bench.common import machine
from instancemonitor import clock
from instancemonitor import store
from instancemonitor.events import Notification


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def run(count: int, defer_removals: bool) -> tuple[float, float]:
    """CPU and wall microseconds per notification."""
    directory = tempfile.mkdtemp(prefix='im-bench-store-', dir='/var/tmp')
    try:
        state = store.SqliteStateStore(directory, store.SUBSCRIBERS_FILENAME,
                                       defer_removals=defer_removals)
        template = Notification('compute-1', str(uuid.uuid4()), 'LIFECYCLE',
                                'STOPPED_DESTROYED', clock.utcnow(),
                                sink='webhook:h0', instance_name='vm-1',
                                source='libvirt')
        notifications = [dataclasses.replace(template,
                                             notification_id=uuid.uuid4().hex)
                         for _ in range(count)]
        cpu, started = thread_cpu(), time.monotonic()
        for notification in notifications:
            with state.batch():
                state.insert(notification, 0.0)
            state.remove(notification.notification_id, delivered=True)
        state.retry()  # the agent's tick writes what is left
        cpu, wall = thread_cpu() - cpu, time.monotonic() - started
        state.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return cpu / count * 1e6, wall / count * 1e6


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f'# {count} notifications, insert then removal each; {machine()}')
    print(f'{"removal":<22} {"CPU us":>8} {"wall us":>8}')
    for _ in range(2):  # alternating: this machine's speed drifts
        for label, defer in (('own commit (fsync)', False),
                             ('with the next commit', True)):
            cpu_us, wall_us = run(count, defer)
            print(f'{label:<22} {cpu_us:>8.1f} {wall_us:>8.1f}')


if __name__ == '__main__':
    main()
