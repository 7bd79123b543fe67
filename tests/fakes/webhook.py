"""A webhook receiver on 127.0.0.1 that checks every delivery it gets.

It checks the signature when it has the secret, keeps each delivery (repeats
too, so a test can count them), answers with scripted statuses, can hold its
answers until released, and can be stopped and started again on its port.
"""

import hashlib
import hmac
import threading

from tests.fakes.http import HTTPServer
from tests.fakes.http import Request
from tests.processes import first_of_each
from tests.processes import wait_for


class WebhookReceiver:
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.deliveries: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.bad_signatures = 0
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
            expected = 'sha256=' + hmac.new(self.secret.encode(), request.body,
                                            hashlib.sha256).hexdigest()
            given = request.headers.get('x-instancemonitor-signature-256', '')
            if not hmac.compare_digest(expected, given):
                with self._lock:
                    self.bad_signatures += 1
                return 401, {'error': 'bad signature'}, {}
        self.released.wait(30)
        with self._lock:
            status = self._answers.pop(0) if self._answers else 204
            if 200 <= status < 300:
                self.deliveries.append(request.json())
                self.headers.append(request.headers)
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
