"""``instancemonitor-status``: what the agent knows, read from its state.

Reads the state databases read-only, so it is safe while the agent runs.
``requeue`` and ``forget`` are queued for the agent, which applies them
within seconds while it runs, or when it next starts.
"""

import argparse
import json
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path

from oslo_config import cfg

from instancemonitor.conf import default as default_conf
from instancemonitor.store import FILENAME
from instancemonitor.store import SUBSCRIBERS_FILENAME
from instancemonitor.store import probe_states

DEFAULT_CONFIG = '/etc/instancemonitor/instancemonitor.conf'


def _state_path(args: argparse.Namespace) -> Path:
    if args.state_path:
        return Path(args.state_path)
    conf = cfg.ConfigOpts()
    default_conf.register_opts(conf)
    files = [args.config_file] if Path(args.config_file).exists() else []
    conf([a for f in files for a in ('--config-file', f)], project='instancemonitor',
         default_config_files=[], default_config_dirs=[])
    return Path(conf.state_path)


def _rows(db: sqlite3.Connection, sql: str) -> list[dict]:
    cursor = db.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


_PENDING = ('SELECT notification_id, sink, instance_uuid, event, '
            'vir_domain_event, generated_time FROM outbox '
            'WHERE dead_reason IS NULL ORDER BY seq')
_DEAD = ('SELECT notification_id, sink, instance_uuid, event, vir_domain_event, '
         'generated_time, dead_reason FROM outbox WHERE dead_reason IS NOT NULL '
         'ORDER BY seq')


def _read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f'file:{database}?mode=ro', uri=True)


def read_state(database: Path) -> dict:
    """The agent's state; the event subscribers' outboxes are read from
    their own database next to ``database``, when there is one."""
    state = _read_main(database)
    subscribers = database.with_name(SUBSCRIBERS_FILENAME)
    if subscribers.exists():
        db = _read_only(subscribers)
        try:
            state['pending'] += _rows(db, _PENDING)
            state['dead_letters'] += _rows(db, _DEAD)
        finally:
            db.close()
    return state


def _probes(text: str) -> str:
    """The probes column for people: 'db=failing(2) web=healthy'."""
    return ' '.join(f'{name}={status}'
                    for name, status in sorted(probe_states(text).items()))


def _read_main(database: Path) -> dict:
    db = _read_only(database)
    try:
        columns = {row[1] for row in db.execute('PRAGMA table_info(domains)')}
        # A database an older agent wrote, not opened since, has no probes.
        probes = 'probes' if 'probes' in columns else "'' AS probes"
        domains = _rows(db, 'SELECT name, uuid, state, heartbeat, failure, '
                            f'failed_at, last_event, last_seen, notified, {probes} '
                            'FROM domains ORDER BY name')
        for row in domains:
            row['probes'] = _probes(row['probes'])
        return {
            'agent': dict(db.execute('SELECT key, value FROM agent').fetchall()),
            'domains': domains,
            'pending': _rows(db, _PENDING),
            'dead_letters': _rows(db, _DEAD),
            'queued_commands': _rows(db, 'SELECT verb, arg FROM commands ORDER BY id'),
        }
    finally:
        db.close()


def _table(title: str, rows: list[dict], columns: Iterable[str]) -> str:
    columns = list(columns)
    lines = [f'{title} ({len(rows)})']
    if rows:
        cells = [[str(row[c] if row[c] is not None else '') for c in columns]
                 for row in rows]
        widths = [max(len(c), *(len(r[i]) for r in cells))
                  for i, c in enumerate(columns)]
        lines.append('  '.join(c.upper().ljust(w) for c, w in zip(columns, widths,
                                                                  strict=True)))
        lines += ['  '.join(v.ljust(w) for v, w in zip(r, widths, strict=True))
                  for r in cells]
    return '\n'.join(lines)


def render(state: dict) -> str:
    agent = state['agent']
    head = f"Agent: {agent.get('status', 'never ran with this state')}"
    if 'pid' in agent:
        head += f" (pid {agent['pid']}, since {agent['since']})"
    if agent.get('pruned'):
        head += f"\nPruned since then: {agent['pruned']}"
    return '\n\n'.join([
        head,
        _table('Domains', state['domains'],
               ('name', 'uuid', 'state', 'heartbeat', 'probes', 'failure',
                'last_event', 'last_seen')),
        _table('Pending notifications', state['pending'],
               ('notification_id', 'sink', 'instance_uuid', 'event',
                'vir_domain_event', 'generated_time')),
        _table('Dead letters', state['dead_letters'],
               ('notification_id', 'sink', 'instance_uuid', 'event',
                'vir_domain_event', 'generated_time', 'dead_reason')),
    ]) + '\n'


def _queue(database: Path, verb: str, arg: str) -> None:
    db = sqlite3.connect(database)
    try:
        with db:
            db.execute('INSERT INTO commands (verb, arg) VALUES (?, ?)', (verb, arg))
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='instancemonitor-status',
        description="Show the agent's journal and outbox; re-queue a dead letter "
                    'or forget a domain.')
    parser.add_argument('--config-file', default=DEFAULT_CONFIG,
                        help=f'the agent\'s configuration (default {DEFAULT_CONFIG})')
    parser.add_argument('--state-path', help='[DEFAULT] state_path, if not from '
                                             'the configuration')
    parser.add_argument('--json', action='store_true', help='print JSON')
    sub = parser.add_subparsers(dest='command')
    requeue = sub.add_parser('requeue', help='send a dead-lettered notification again')
    requeue.add_argument('notification_id')
    forget = sub.add_parser('forget', help="drop a domain's journal record")
    forget.add_argument('uuid')
    args = parser.parse_args(argv)

    try:
        database = _state_path(args) / FILENAME
    except cfg.Error as error:
        print(f'instancemonitor-status: configuration error: {error}', file=sys.stderr)
        return 78
    if not database.exists():
        print(f'instancemonitor-status: no state at {database}', file=sys.stderr)
        return 1
    try:
        state = read_state(database)
        if args.command == 'requeue':
            ids = [d['notification_id'] for d in state['dead_letters']]
            if args.notification_id not in ids:
                print(f'instancemonitor-status: no dead letter {args.notification_id}',
                      file=sys.stderr)
                return 1
            _queue(database, 'requeue', args.notification_id)
        elif args.command == 'forget':
            domains = {d['uuid']: d for d in state['domains']}
            if args.uuid not in domains:
                print(f'instancemonitor-status: no domain {args.uuid}', file=sys.stderr)
                return 1
            if domains[args.uuid]['state'] == 'failed':
                print(f'instancemonitor-status: {domains[args.uuid]["name"]} '
                      f'({args.uuid}) is failed in the journal: if it is still '
                      'shut off on a failure at the next scan, the agent takes it '
                      'for a failure nobody reported and notifies the recovery '
                      'API again', file=sys.stderr)
            _queue(database, 'forget', args.uuid)
    except sqlite3.Error as error:
        print(f'instancemonitor-status: cannot read {database}: {error}',
              file=sys.stderr)
        return 1
    if args.command:
        print(f'{args.command} {getattr(args, "notification_id", None) or args.uuid}: '
              'queued; the agent applies it within seconds while it runs, or when '
              'it next starts')
    elif args.json:
        print(json.dumps(state, indent=2))
    else:
        print(render(state), end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
