"""What event subscribers cost the recovery API, and how fast they get events.

The agent runs in this process on libvirt's test driver, with its SQLite
outboxes. The receiving ends run in a child process, as they would on other
machines: the loopback Masakari stand-in, two webhook receivers and an
oslo.messaging listener on a private RabbitMQ broker (Debian's
rabbitmq-server). Domains are created and destroyed one at a time, at most
RATE (75) a second and each once the recovery API has the previous stop;
each figure is from the destroy() call to the sink having the stop
(CLOCK_MONOTONIC, the same in both processes). Four runs:

* none: no subscribers (the recovery API alone);
* healthy: two webhooks (every event) and the message bus, all answering;
* webhooks: the two webhooks alone (for the CPU of one delivery of each kind);
* stuck: one webhook that never answers and the broker stopped, so those
  outboxes only grow while the other webhook goes on.

With two cores or more, this process (the agent) is pinned to the first
core, the receivers (the recovery API too) and the broker to the others, as
they would be on other machines. The agent's CPU per subscriber delivery is
this process's CPU in "healthy" beyond that in "none", divided by the
subscriber deliveries; a webhook's is that of "webhooks" beyond "none", and
the message bus's the rest of "healthy". Of it, the subscribers' sender
threads' own CPU (schedstat) is printed too: steadier than the difference
of two runs, which this machine's drift blurs.

    python -m bench.subscribers [EVENTS]
"""

import multiprocessing
import multiprocessing.connection
import os
import pathlib
import shutil
import sys
import tempfile
import time
import uuid

import libvirt

from bench.common import DOMAIN_XML
from bench.common import RecoveryAPI
from bench.common import cpu_seconds
from bench.common import machine
from bench.common import start_agent
from bench.common import thread_cpu_seconds
from instancemonitor.events import RECOVERY_SINK
from tests.processes import wait_for


def receivers(pipe: multiprocessing.connection.Connection, broker_url: str) -> None:
    """The child: serve the receiving ends (the recovery API too), note when
    each stop arrives, and answer the parent's requests."""
    from tests.fakes.webhook import WebhookReceiver
    from tests.rabbitmq import Consumer

    os.sched_setaffinity(0, OTHER_CORES)  # before any thread starts

    # sink → domain uuid → when its stop arrived (the later hook for webhooks).
    arrivals: dict[str, dict[str, float]] = {'webhooks': {}, 'bus': {}}
    seen_by_hook: dict[str, int] = {}

    class TimedReceiver(WebhookReceiver):
        def _handle(self, request):
            answer = super()._handle(request)
            document = request.json()
            if 200 <= answer[0] < 300 and document['detail'] == 'STOPPED_DESTROYED':
                domain_uuid = document['instance']['uuid']
                seen_by_hook[domain_uuid] = seen_by_hook.get(domain_uuid, 0) + 1
                if seen_by_hook[domain_uuid] == 2:
                    arrivals['webhooks'][domain_uuid] = time.monotonic()
            return answer

    class TimedConsumer(Consumer):
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            if payload['detail'] == 'STOPPED_DESTROYED':
                arrivals['bus'].setdefault(payload['instance']['uuid'],
                                           time.monotonic())

    hooks = [TimedReceiver(), TimedReceiver()]
    consumer = TimedConsumer(broker_url, 'bench').start()
    api = None
    pipe.send([hook.url for hook in hooks])
    while (request := pipe.recv()) != 'stop':
        if request == 'block':
            hooks[0].released.clear()
        elif request == 'collect':
            pipe.send({sink: dict(times) for sink, times in arrivals.items()})
        elif request == 'api':  # a new recovery API for a run
            if api is not None:
                api.stop()
            api = RecoveryAPI().start()
            pipe.send(api.url)
        elif request[0] == 'stored':  # wait until it has stored this many
            api.wait_stored(request[1], timeout=30)
            pipe.send(True)
        elif request == 'recovery':  # when each stop arrived at it
            pipe.send({r.json()['notification']['payload']['instance_uuid']:
                       r.received_at for r in api.requests})
    if api is not None:
        api.stop()
    consumer.stop()
    for hook in hooks:
        hook.stop()


# Stops per second, at most: a steady stream (the figure of issue 14).
RATE = 75
AGENT_CORES = {0}
OTHER_CORES = set(range(1, os.cpu_count() or 1)) or AGENT_CORES


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` (the threads it starts later inherit it)."""
    for task in os.listdir(f'/proc/{pid}/task'):
        os.sched_setaffinity(int(task), cores)


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f'{values[len(values) // 2]:>7.2f} {p99:>7.2f}'


def config(directory: pathlib.Path, urls: list[str]) -> list[str]:
    lines = ['[webhooks]', 'enabled = ' + ', '.join(f'h{i}' for i in range(len(urls)))]
    for index, url in enumerate(urls):
        lines += [f'[webhook:h{index}]', f'url = {url}', 'timeout = 300']
    path = directory / 'subscribers.conf'
    path.write_text('\n'.join(lines) + '\n')
    return [str(path)]


def run(count: int, label: str, files: list[str], bus: dict,
        pipe: multiprocessing.connection.Connection,
        collect: bool = False) -> tuple[float, int, float]:
    """Print the run's figures; return this process's CPU seconds, the
    subscriber deliveries and the CPU seconds of the subscribers' sender
    threads."""
    pipe.send('api')
    agent = start_agent('test:///default', pipe.recv(), files, message_bus=bus,
                        introspectiveinstancemonitor={'enabled': False},
                        libvirt={'reconcile_interval': 0})
    conn = libvirt.open('test:///default')
    destroyed: dict[str, float] = {}
    arrivals: dict[str, dict[str, float]] = {}
    deliveries = [0]
    for name, box in agent.outboxes.items():
        if name != 'masakari':
            def counted(notification, delivered=box.delivered):
                deliveries[0] += 1
                delivered(notification)
            box.delivered = counted
    cpu, senders = cpu_seconds(), thread_cpu_seconds(subscriber_sender)
    try:
        due = time.monotonic()
        for i in range(count):
            domain_uuid = str(uuid.uuid4())
            dom = conn.createXML(DOMAIN_XML.format(name=f'sub-{i}', uuid=domain_uuid))
            due += 1 / RATE
            time.sleep(max(0.0, due - time.monotonic()))
            destroyed[domain_uuid] = time.monotonic()
            dom.destroy()
            pipe.send(('stored', i + 1))
            pipe.recv()
        pipe.send('recovery')
        recovery = [(at - destroyed[u]) * 1000 for u, at in pipe.recv().items()]
        if collect:
            def all_arrived() -> bool:
                pipe.send('collect')
                arrivals.update(pipe.recv())
                return all(len(times) >= count for times in arrivals.values())
            wait_for(all_arrived, 60, 'every stop at every subscriber', interval=0.2)
        waiting = {name: box.pending() for name, box in agent.outboxes.items()
                   if name != 'masakari' and box.pending()}
        cpu = cpu_seconds() - cpu
        senders = thread_cpu_seconds(subscriber_sender) - senders
    finally:
        conn.close()
        agent.stop()
        shutil.rmtree(agent.store.path.parent, ignore_errors=True)
    print(f'{label:<8} {"masakari":<14} {percentiles(recovery)}')
    for sink, times in sorted(arrivals.items()):
        print(f'{label:<8} {sink:<14} ' + percentiles(
            [(at - destroyed[u]) * 1000 for u, at in times.items() if u in destroyed]))
    for name, pending in waiting.items():
        print(f'{label:<8} {name:<14} {pending} events waiting in its outbox')
    return cpu, deliveries[0], senders


def subscriber_sender(thread_name: str) -> bool:
    return (thread_name.startswith('sender-')
            and not thread_name.startswith(f'sender-{RECOVERY_SINK}-'))


def main() -> None:
    from tests.rabbitmq import RabbitMQ

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    directory = pathlib.Path(tempfile.mkdtemp(prefix='im-bench-subscribers-'))
    broker = RabbitMQ(directory / 'rabbitmq')
    pipe, child_pipe = multiprocessing.Pipe()
    child = None
    try:
        broker.start()
        pin(broker.pid, OTHER_CORES)
        child = multiprocessing.get_context('spawn').Process(
            target=receivers, args=(child_pipe, broker.url), name='receivers')
        child.start()
        urls = pipe.recv()
        bus = {'transport_url': broker.url, 'topic': 'bench'}
        print(f'# subscribers: destroy() -> the sink has the stop, {count} domains, '
              f'at most {RATE} a second; {machine()}')
        print(f'{"run":<8} {"sink":<14} {"p50 ms":>7} {"p99 ms":>7}')
        os.sched_setaffinity(0, AGENT_CORES)
        alone, _, _ = run(count, 'none', [], {}, pipe)
        cpu, deliveries, senders = run(count, 'healthy', config(directory, urls),
                                       bus, pipe, collect=True)
        print(f'agent CPU per subscriber delivery: '
              f'{(cpu - alone) / deliveries * 1000:.2f} ms ({deliveries} deliveries), '
              f'of which {senders / deliveries * 1000:.2f} in their sender threads; '
              f'agent on cores {sorted(AGENT_CORES)}, receivers (the recovery API '
              f'too) and broker on {sorted(OTHER_CORES)}')
        # The same events to the webhooks alone: what one costs, and so
        # what the message bus's deliveries (the rest of "healthy") cost.
        hooks_cpu, hooks, hook_senders = run(count, 'webhooks',
                                             config(directory, urls), {}, pipe)
        per_hook = (hooks_cpu - alone) / hooks
        per_bus = (cpu - alone - per_hook * hooks) / (deliveries - hooks)
        print(f'  per webhook delivery: {per_hook * 1000:.2f} ms (a run with the '
              f'webhooks only, {hooks} deliveries; '
              f'{hook_senders / hooks * 1000:.2f} in their sender threads); '
              f'per message-bus delivery: {per_bus * 1000:.2f} ms '
              f'({deliveries - hooks}; '
              f'{(senders - hook_senders) / (deliveries - hooks) * 1000:.2f} in its '
              f'sender thread)')
        pipe.send('block')  # the first webhook never answers from now on
        broker.stop()
        run(count, 'stuck', config(directory, urls), dict(bus, timeout=1), pipe)
    finally:
        if child is not None:
            pipe.send('stop')
            child.join(30)
            if child.is_alive():
                child.kill()
        broker.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
