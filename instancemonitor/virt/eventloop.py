"""libvirt's native event loop, on one dedicated thread for the process.

libvirt allows one event implementation per process, registered before any
connection is opened; ``start()`` may therefore be called any number of times
and starts the loop once. The thread runs until the process exits.
"""

import threading

import libvirt

THREAD_NAME = 'libvirt-event-loop'

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _run() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def start() -> threading.Thread:
    """Register libvirt's default event implementation and run it."""
    global _thread
    with _lock:
        if _thread is None:
            libvirt.virEventRegisterDefaultImpl()
            # libvirt prints every error to stderr by default; we log the
            # exceptions it raises instead.
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _thread = threading.Thread(target=_run, name=THREAD_NAME,
                                       daemon=True)
            _thread.start()
        return _thread
