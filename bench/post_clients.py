"""The POST path's two designs, side by side: threads or asyncio.

N notifications' POSTs at once to the loopback Masakari stand-in in a child
process, answering each after 50 ms (bench.burst's receiver), each body its
own instance. Threads: up to ``[callback] max_in_flight`` threads (its
default), each posting through the sink's client (``sinks.httpclient``) on
kept-alive connections, as the senders do. asyncio: one event loop posting
through aiohttp with as many connections. Figures: time until every answer
came, and CPU of this process per POST (client work only: no journal, no
store). And the same threads each posting through its own pycurl handle
(libcurl). aiohttp and pycurl are not dependencies: ``pip install aiohttp
pycurl`` to compare.

    python -m bench.post_clients [POSTS]
"""

import asyncio
import json
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable

from bench.common import ChildRecoveryAPI
from bench.common import cpu_seconds
from bench.common import machine
from instancemonitor import clock
from instancemonitor.conf.callback import callback_opts
from instancemonitor.events import Notification
from instancemonitor.sinks import httpclient

API_DELAY = 0.05
IN_FLIGHT = next(o.default for o in callback_opts if o.name == 'max_in_flight')
HEADERS = {'X-Auth-Token': 'gAAAAA' + 'x' * 180, 'Content-Type': 'application/json'}


def bodies(count: int) -> list[bytes]:
    """The recovery API's bodies of ``count`` crashes, one per instance."""
    now = clock.utcnow()
    return [json.dumps(Notification(
        hostname='compute-1', instance_uuid=str(uuid.uuid4()), event='LIFECYCLE',
        vir_domain_event='STOPPED_FAILED', generated_time=now,
        instance_name=f'instance-{i:05d}').body()).encode() for i in range(count)]


def _in_threads(posts: list[bytes], in_flight: int,
                sender: Callable[[], Callable[[bytes], int]]) -> int:
    """Up to ``in_flight`` threads posting ``posts``; each makes its own
    ``sender()``, which posts a body and returns the status."""
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in posts:
        work.put(body)
    accepted = []

    def send() -> None:
        post = sender()
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            if post(body) < 300:
                accepted.append(body)
    threads = [threading.Thread(target=send, name=f'sender-{i}')
               for i in range(min(in_flight, len(posts)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(accepted)


def with_threads(url: str, posts: list[bytes], in_flight: int) -> int:
    client = httpclient.HTTPClient(10.0, connections=in_flight)
    try:
        return _in_threads(posts, in_flight, lambda: lambda body: client.post(
            url, body, HEADERS).status)
    finally:
        client.close()


def with_pycurl(url: str, posts: list[bytes], in_flight: int) -> int:
    import pycurl

    headers = [f'{name}: {value}' for name, value in HEADERS.items()] + ['Expect:']

    def sender() -> Callable[[bytes], int]:
        handle = pycurl.Curl()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.TIMEOUT, 10)
        handle.setopt(pycurl.HTTPHEADER, headers)
        handle.setopt(pycurl.WRITEFUNCTION, len)

        def post(body: bytes) -> int:
            handle.setopt(pycurl.POSTFIELDS, body)
            handle.perform()
            return handle.getinfo(pycurl.RESPONSE_CODE)
        return post
    return _in_threads(posts, in_flight, sender)


def with_aiohttp(url: str, posts: list[bytes], in_flight: int) -> int:
    import aiohttp

    async def send_all() -> int:
        connector = aiohttp.TCPConnector(limit=in_flight)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def send(body: bytes) -> bool:
                async with session.post(url, data=body, headers=HEADERS) as answer:
                    await answer.read()
                    return answer.status < 300
            return sum(await asyncio.gather(*(send(body) for body in posts)))
    return asyncio.run(send_all())


def run(design, count: int, delay: float = API_DELAY,
        in_flight: int = IN_FLIGHT) -> tuple[float, float]:
    api = ChildRecoveryAPI(delay).start()
    try:
        posts = bodies(count)
        cpu, started = cpu_seconds(), time.monotonic()
        accepted = design(f'{api.url}/notifications', posts, in_flight)
        elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu
    finally:
        api.stop()
    if accepted != count:
        raise SystemExit(f'{design.__name__}: {accepted} of {count} accepted')
    return elapsed, cpu / count * 1000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    designs = [('threads, http.client', with_threads)]
    try:
        import aiohttp
        designs.append((f'asyncio, aiohttp {aiohttp.__version__}', with_aiohttp))
    except ImportError:
        print('# aiohttp is not installed', file=sys.stderr)
    try:
        import pycurl
        designs.append((f'threads, pycurl {pycurl.version_info()[1]}', with_pycurl))
    except ImportError:
        print('# pycurl is not installed', file=sys.stderr)
    print(f'# {count} POSTs at once, at most {IN_FLIGHT} in flight, API answers '
          f'in {API_DELAY * 1000:.0f} ms; {machine()}')
    print(f'{"":26} {"all answered s":>15} {"CPU ms/POST":>12}')
    for _ in range(2):  # alternating: this machine's speed drifts
        for name, design in designs:
            elapsed, cpu_ms = run(design, count)
            print(f'{name:26} {elapsed:>15.2f} {cpu_ms:>12.3f}')
    # As an event subscriber's sender posts: one at a time, on one kept
    # connection, the CPU mostly idle between POSTs.
    print(f'# the same {count} one at a time from one thread, API answers at once')
    for _ in range(2):
        for name, design in designs:
            if design is not with_aiohttp:
                elapsed, cpu_ms = run(design, count, delay=0.0, in_flight=1)
                print(f'{name:26} {elapsed:>15.2f} {cpu_ms:>12.3f}')


if __name__ == '__main__':
    main()
