"""A webhook receiver on 127.0.0.1 that checks every delivery it gets.

With the secret it checks each delivery as the README tells receivers to
(``check``): the signature over timestamp and body, the timestamp within
``REPLAY_WINDOW``, and no signature seen before, so a recorded delivery sent
again is not acted on (answered 208). It keeps each delivery (the agent's resends too, which
carry a new timestamp, so a test can count them), answers with scripted
statuses, can hold its answers until released, and can be stopped and
started again on its port.
"""

import hashlib
import hmac
import threading
import time

from tests.fakes.http import HTTPServer
from tests.fakes.http import Request
from tests.processes import first_of_each
from tests.processes import wait_for

REPLAY_WINDOW = 300


def check(secret: bytes, headers: dict[str, str], body: bytes, seen: set[str],
          now: float) -> str | None:
    """Why a delivery is refused (None: accept it). ``headers`` lower-case;
    ``seen``: the signatures accepted within the window."""
    timestamp = headers.get('x-instancemonitor-timestamp', '')
    given = headers.get('x-instancemonitor-signature-256', '')
    expected = 'sha256=' + hmac.new(secret, timestamp.encode() + b'.' + body,
                                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        return 'bad signature'
    if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW:
        return 'timestamp outside the replay window'
    if given in seen:
        return 'replayed'
    seen.add(given)
    return None


class WebhookReceiver:
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.deliveries: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.bad_signatures = 0
        # Refused deliveries, by reason (bad signatures counted above too).
        self.refused: dict[str, int] = {}
        self._seen: set[str] = set()
        self._answers: list[int] = []
        self._lock = threading.Lock()
        # Cleared: answers wait (a slow receiver) until released.
        self.released = threading.Event()
        self.released.set()
        self._server = HTTPServer(self._handle).start()
        self.port = self._server.port
        self.url = f'http://127.0.0.1:{self.port}/hooks/instances'

    def _handle(self, request: Request) -> tuple[int, dict | None, dict]:
        if request.method != 'POST' or request.path != '/hooks/instances':
            return 404, {'error': 'not here'}, {}
        if self.secret is not None:
            with self._lock:
                refused = check(self.secret.encode(), request.headers, request.body,
                                self._seen, time.time())
                if refused is not None:
                    self.refused[refused] = self.refused.get(refused, 0) + 1
                    self.bad_signatures += refused == 'bad signature'
            if refused == 'replayed':
                return 208, None, {}  # acknowledged, not acted on again
            if refused is not None:
                return 401, {'error': refused}, {}
        self.released.wait(30)
        with self._lock:
            status = self._answers.pop(0) if self._answers else 204
            if 200 <= status < 300:
                self.deliveries.append(request.json())
                self.headers.append(request.headers)
                self.bodies.append(request.body)
        return status, None, {}

    def answer(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, then 204 again."""
        with self._lock:
            self._answers.extend(statuses)

    def unique(self) -> list[dict]:
        """Deliveries without repeats (same id), in order of first arrival."""
        with self._lock:
            return first_of_each(self.deliveries, lambda d: d['id'])

    def wait_unique(self, count: int, timeout: float = 20.0) -> list[dict]:
        wait_for(lambda: len(self.unique()) >= count, timeout,
                 f'{count} webhook deliveries (have {len(self.unique())})')
        return self.unique()

    def stop(self) -> None:
        self.released.set()
        self._server.stop()

    def start_again(self) -> None:
        """Serve again on the same port, as a restarted receiver would."""
        self._server = HTTPServer(self._handle, self.port).start()
