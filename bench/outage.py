"""An API outage: failures keep coming while the recovery API is down.

masakari-monitors drops a notification after retry_max x retry_interval
(12 x 10 s = 2 minutes); the issue asks for 10 minutes of outage. Scaled
here to fit two minutes: the outage lasts OUTAGE seconds with retry_max 2 x
retry_interval 1 s, so it is 20 times one round of retries, as 10 minutes
are 5 times masakari-monitors' round. 200 domains fail during the outage,
spread over it; then the API returns. Figures: notifications lost (must be
0), time from the API's return until all are stored, the notifications the
API then received twice (409, counted as delivered).

    python bench/outage.py [OUTAGE_SECONDS]
"""

import pathlib
import shutil
import sys
import tempfile
import time

import libvirt

from bench.common import RecoveryAPI
from bench.common import machine
from bench.common import node_xml
from bench.common import start_agent
from tests.processes import free_port

FAILURES = 200


def main() -> None:
    outage = float(sys.argv[1]) if len(sys.argv) > 1 else 40.0
    work = pathlib.Path(tempfile.mkdtemp(prefix='im-outage-'))
    port = free_port()  # nothing listens: refused, as a down API is
    agent = start_agent(node_xml(FAILURES, work), f'http://127.0.0.1:{port}/v1',
                        callback={'retry_max': 2, 'retry_interval': 1.0},
                        introspectiveinstancemonitor={'enabled': False})
    api = RecoveryAPI(port=port)
    try:
        with agent.connection.borrowed() as conn:
            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        gap = outage / len(doms)
        for dom in doms:  # failures spread over the outage
            dom.destroy()
            time.sleep(gap)
        pending = agent.outbox.pending()
        api.start()
        returned = time.monotonic()
        api.wait_stored(FAILURES, timeout=120)
        drained = time.monotonic() - returned
        lost = FAILURES - len({n['payload']['instance_uuid'] for n in api.stored})
        twice = len(api.requests) - len(api.stored)
    finally:
        agent.stop()
        api.stop()
        shutil.rmtree(agent.store.path.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f'# outage: API refused for {outage:.0f} s (20 rounds of retry_max 2 x '
          f'retry_interval 1 s), {FAILURES} failures during it; {machine()}')
    print(f'{"failures":>9} {"pending at return":>18} {"lost":>5} {"drain s":>8} '
          f'{"sent twice":>11}')
    print(f'{FAILURES:>9} {pending:>18} {lost:>5} {drained:>8.1f} {twice:>11}')


if __name__ == '__main__':
    main()
