"""A named background thread with a stop event and a wake-up event."""

import threading


class Worker:
    """Subclasses implement ``_run``, looping until ``self._stop`` is set and
    waiting on ``self._wakeup`` (set by :meth:`wake` and :meth:`stop`)."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
