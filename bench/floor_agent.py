"""The detection path's floor on real QEMU: the least a durable agent on the
chosen packages does between libvirt's event and the recovery API's POST,
with no code of the agent's.

Run by ``bench.qemu_breakdown`` as a process of its own, as the agent is:
libvirt's default event loop on a thread, whose lifecycle callback hands
each STOPPED_FAILED to one waiting thread (a SimpleQueue, as the agent's
callback hands events on); that thread commits the notification's row in
SQLite (WAL, one transaction, as the agent's store), writes its POST
through ``http.client`` on a connection opened beforehand, the request's
bytes in one write, and syncs the row to disk (fdatasync of the WAL)
while the request is on its way, as the agent's store does; then reads
the answer and removes the row. The token comes from keystoneauth once,
at start.

    python -m bench.floor_agent URI KEYSTONE_URL USERNAME PASSWORD PROJECT DB
"""

import datetime
import http.client
import json
import os
import queue
import sqlite3
import sys
import threading
import urllib.parse
import uuid

import libvirt
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

FAILED = (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)


def main() -> None:
    uri, auth_url, username, password, project, path = sys.argv[1:7]
    auth = v3.Password(auth_url=auth_url, username=username, password=password,
                       project_name=project, user_domain_name='Default',
                       project_domain_name='Default')
    session = ks_session.Session(auth=auth)
    endpoint = session.get_endpoint(service_type='instance-ha', interface='public')
    token = session.get_token()
    target = urllib.parse.urlsplit(f"{endpoint.rstrip('/')}/notifications")
    api = http.client.HTTPConnection(target.hostname, target.port)
    api.connect()

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('PRAGMA synchronous=NORMAL')
    db.execute('CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, body TEXT)')
    wal = os.open(path + '-wal', os.O_RDWR)

    failures: queue.SimpleQueue = queue.SimpleQueue()

    def lifecycle(_conn, dom, event, detail, _opaque) -> None:
        if (event, detail) == FAILED:
            failures.put((dom.UUIDString(), dom.name()))

    def event_loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=event_loop, name='libvirt-events', daemon=True).start()
    conn = libvirt.open(uri)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lifecycle, None)
    print('Connected to libvirt', flush=True)
    while True:
        instance, name = failures.get()
        notification_id = str(uuid.uuid4())
        body = json.dumps({'notification': {
            'type': 'VM', 'hostname': 'compute-1',
            'generated_time': datetime.datetime.now(datetime.UTC).isoformat(),
            'payload': {'event': 'LIFECYCLE', 'instance_uuid': instance,
                        'vir_domain_event': 'STOPPED_FAILED'}}}).encode()
        db.execute('BEGIN')
        db.execute('INSERT INTO outbox VALUES (?, ?)', (notification_id, body))
        db.execute('COMMIT')
        request = (f'POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n'
                   f'Content-Type: application/json\r\nX-Auth-Token: {token}\r\n'
                   f'Content-Length: {len(body)}\r\n\r\n').encode() + body
        api.sock.sendall(request)
        os.fdatasync(wal)
        answer = http.client.HTTPResponse(api.sock)
        answer.begin()
        answer.read()
        db.execute('DELETE FROM outbox WHERE id = ?', (notification_id,))
        os.fdatasync(wal)
        print(f'{name}: {answer.status}', flush=True)


if __name__ == '__main__':
    main()
