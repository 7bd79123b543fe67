"""libvirt's native event loop, on one dedicated thread for the process.

libvirt allows one event implementation per process, registered before any
connection is opened; ``start()`` may therefore be called any number of times
and starts the loop once. The thread runs until the process exits.

libvirt's client does not run a connection's event callbacks as it reads
the events: whichever thread reads them (the loop, or one waiting for an
answer on the connection) queues them and sets the connection's event timer
due at once, and the loop runs the callbacks from that timer. So an answer
can reach its caller before the callbacks of events libvirtd sent earlier
have run. ``caught_up()`` waits for them: the loop (GLib's, in libvirt 9.0)
runs timers that are due in the order they became due, so a timer added
after the answer runs after the callbacks of every event read before it.
"""

import contextlib
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


def caught_up(timeout: float) -> bool:
    """Wait until the loop has run the callbacks of every libvirt event
    received before the call; False if it did not within ``timeout``
    seconds. With no loop running no callback is ever run: True at once."""
    if _thread is None:
        return True
    reached = threading.Event()

    def reach(timer: int, _opaque: object) -> None:
        reached.set()
        # libvirt raises on a second removal: the waiter's, if it gave up.
        with contextlib.suppress(libvirt.libvirtError):
            libvirt.virEventRemoveTimeout(timer)

    timer = libvirt.virEventAddTimeout(0, reach, None)
    if not reached.wait(timeout):
        with contextlib.suppress(libvirt.libvirtError):  # it ran meanwhile
            libvirt.virEventRemoveTimeout(timer)
    return reached.is_set()
