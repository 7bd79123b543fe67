"""The floor under bench.burst: the same burst through the chosen parts
alone, with no code of the agent's.

1,000 domains of a test:/// node are destroyed; libvirt's lifecycle
callback (its default event loop, on a thread) hands each stop to one
dispatch thread, which writes what waits into SQLite in one transaction
(WAL, ``synchronous=FULL``: each group on disk before its POSTs, a little
stricter than the agent's store, which syncs while they go) and then hands
each row to a pool of ``max_in_flight`` threads (its default), started
beforehand; each POSTs its notification's JSON through ``http.client`` on
its own kept-alive connection to the loopback receiver (answering in 50 ms,
in a child process, as in bench.burst), then a delete thread removes the
delivered rows, in one transaction per group. This is the least any design
on these packages does per notification: an event, its row on disk before
its POST, the POST, and its row's removal. Figures, in a child process of
its own so the CPU is this work's alone (the destroy() calls included, as
in bench.burst): time until every notification is stored, and CPU per
notification.

    python -m bench.burst_floor [DOMAINS [THREADS]]
"""

import http.client
import json
import multiprocessing
import pathlib
import queue
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse

import libvirt

from bench.common import ChildRecoveryAPI
from bench.common import cpu_seconds
from bench.common import machine
from bench.common import node_xml
from bench.post_clients import HEADERS
from bench.post_clients import IN_FLIGHT
from instancemonitor import clock
from instancemonitor.events import Notification

API_DELAY = 0.05


def _database(directory: pathlib.Path) -> sqlite3.Connection:
    db = sqlite3.connect(directory / 'floor.sqlite', isolation_level=None,
                         check_same_thread=False)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('PRAGMA synchronous=FULL')
    db.execute('CREATE TABLE outbox (id TEXT PRIMARY KEY, body TEXT)')
    return db


def _burst(count: int, threads: int, url: str, work: pathlib.Path,
           pipe) -> None:
    db, db_lock = _database(work), threading.Lock()
    stops: queue.SimpleQueue = queue.SimpleQueue()
    posts: queue.SimpleQueue = queue.SimpleQueue()
    removals: queue.SimpleQueue = queue.SimpleQueue()
    target = urllib.parse.urlsplit(url)

    def event_loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=event_loop, daemon=True).start()
    conn = libvirt.open(node_xml(count, work))

    def lifecycle(_conn, dom, event, _detail, _opaque) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            stops.put((dom.UUIDString(), dom.name()))

    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lifecycle, None)

    def dispatch() -> None:
        while True:
            group = [stops.get()]
            while len(group) < 256:
                try:
                    group.append(stops.get_nowait())
                except queue.Empty:
                    break
            rows = [(domain_uuid, json.dumps(Notification(
                hostname='compute-1', instance_uuid=domain_uuid,
                event='LIFECYCLE', vir_domain_event='STOPPED_FAILED',
                generated_time=clock.utcnow(), instance_name=name).body()))
                for domain_uuid, name in group]
            with db_lock:
                db.execute('BEGIN')
                db.executemany('INSERT INTO outbox VALUES (?, ?)', rows)
                db.execute('COMMIT')
            for row in rows:
                posts.put(row)

    def post() -> None:
        connection = http.client.HTTPConnection(target.hostname, target.port,
                                                timeout=10)
        while True:
            row_id, body = posts.get()
            connection.request('POST', f'{target.path}/notifications',
                               body.encode(), HEADERS)
            response = connection.getresponse()
            response.read()
            removals.put(row_id)

    def remove() -> None:
        while True:
            group = [(removals.get(),)]
            while True:
                try:
                    group.append((removals.get_nowait(),))
                except queue.Empty:
                    break
            with db_lock:
                db.execute('BEGIN')
                db.executemany('DELETE FROM outbox WHERE id = ?', group)
                db.execute('COMMIT')

    for thread in ([dispatch, remove] + [post] * threads):
        threading.Thread(target=thread, daemon=True).start()
    doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    time.sleep(0.5)
    pipe.send('ready')
    pipe.recv()
    cpu = cpu_seconds()
    for dom in doms:
        dom.destroy()
    pipe.recv()  # every notification stored
    pipe.send(cpu_seconds() - cpu)


def run(count: int, threads: int = IN_FLIGHT) -> tuple[float, float]:
    api = ChildRecoveryAPI(API_DELAY).start()
    work = pathlib.Path(tempfile.mkdtemp(prefix='im-floor-'))
    pipe, child = multiprocessing.Pipe()
    process = multiprocessing.get_context('spawn').Process(
        target=_burst, args=(count, threads, api.url, work, child), daemon=True)
    process.start()
    try:
        pipe.recv()
        pipe.send('go')
        started = time.monotonic()
        api.wait_stored(count, timeout=600)
        elapsed = time.monotonic() - started
        pipe.send('done')
        cpu = pipe.recv()
    finally:
        process.kill()
        process.join(10)
        api.stop()
        shutil.rmtree(work, ignore_errors=True)
    return elapsed, cpu / count * 1000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else IN_FLIGHT
    print(f'# burst floor: {count} domains fail at once, API answers in '
          f'{API_DELAY * 1000:.0f} ms, {threads} threads posting, rows in '
          f'SQLite before their POST; no agent code; {machine()}')
    print(f'{"all delivered s":>16} {"CPU ms/notif":>13}')
    elapsed, cpu_ms = run(count, threads)
    print(f'{elapsed:>16.2f} {cpu_ms:>13.2f}')


if __name__ == '__main__':
    main()
