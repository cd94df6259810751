"""One thread for a process's model work on CPU, so the models never fight for the cores.

torch runs a call's matrix products on OpenMP threads (GNU libgomp), one team per
calling thread, sized to the cores. Once two threads of a process have computed with
torch, libgomp manages more threads than there are cores and stops letting idle team
threads spin: every parallel region then sleeps and wakes its threads through the
kernel. ``python -m benchmarks.threads`` measured it on 2 cores (docs/benchmarks.md):
the continuous batch decoded at 0.47x its speed alone once another thread had classified
one message and then only slept, and at 0.43x beside a classifier taking 10 messages/s
on its own thread; with those classifications on the lane, at 0.90x.

So on CPU every model call of the process runs on one thread, the :func:`shared_lane`:
loading, classifying, generating. A call queued with :meth:`Lane.run` waits for the end
of the current decoding step (a few milliseconds), then has every core to itself, and so
does the next step. The lane alternates between queued calls and the steps of its
*steppers* (a continuous batch: :class:`Stepper`), and sleeps when neither has work.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stepper(Protocol):
    """Work that advances in steps on a lane (``core.batching``'s dense backend)."""

    def has_work(self) -> bool: ...

    def step(self) -> None:
        """One step; exceptions are the stepper's to handle (the lane logs and goes on)."""
        ...


class Lane:
    """A worker thread running queued calls and its steppers' steps in turn."""

    def __init__(self, name: str = "model-lane") -> None:
        self._wake = threading.Condition()
        self._calls: deque[tuple[Callable[[], object], Future[object]]] = deque()
        self._steppers: list[Stepper] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- calls -----------------------------------------------------------------------------
    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` to run on the lane before its next step; its result or error
        comes back through the future."""
        future: Future[T] = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the model lane is closed")
            self._calls.append((fn, future))  # type: ignore[arg-type]
            self._wake.notify()
        return future

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lane and wait for it (at once when already on the lane)."""
        if self.on_lane:
            return fn()
        return self.submit(fn).result()

    # -- steppers --------------------------------------------------------------------------
    def attach(self, stepper: Stepper) -> None:
        with self._wake:
            self._steppers.append(stepper)
            self._wake.notify()

    def detach(self, stepper: Stepper) -> None:
        with self._wake:
            if stepper in self._steppers:
                self._steppers.remove(stepper)

    def wake(self) -> None:
        """A stepper has new work: let the lane look again if it sleeps."""
        with self._wake:
            self._wake.notify()

    @property
    def on_lane(self) -> bool:
        return threading.current_thread() is self._thread

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread; calls still queued fail with RuntimeError."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if not self.on_lane:
            self._thread.join()

    # -- the thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._closed or self._calls or any(s.has_work() for s in self._steppers)):
                    self._wake.wait()
                if self._closed:
                    left, self._calls = list(self._calls), deque()
                    break
                calls, self._calls = list(self._calls), deque()
                steppers = list(self._steppers)
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # the caller's error, raised where it waits
                        future.set_exception(exc)
            for stepper in steppers:
                if stepper.has_work():
                    try:
                        stepper.step()
                    except Exception:  # a stepper that lets one through must not stop the lane
                        log.exception("model lane: a step failed")
        for _fn, future in left:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the model lane was closed"))


_shared: Lane | None = None
_shared_lock = threading.Lock()


def shared_lane() -> Lane:
    """The process's lane for CPU model work, started on first use; it lives as long as
    the process (a daemon thread), since any second computing thread costs every call."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = Lane("models")
        return _shared
