"""A served entity's model in a child process that runs only while live traffic does not.

Shadow traffic must not slow the callers down. Measured on 2 cores (full corpus, 50% shadow,
concurrency 1): asking the shadow model in a thread of the server doubled the callers' p50
(the GIL); lowering that thread's priority made it worse (a low-priority thread holding the
GIL stalls everyone); a separate process at ``nice 19`` still cost +80% (the two compete for
memory bandwidth and caches, which priorities do not share out). What does hold: the child is
*stopped* (``SIGSTOP``) whenever a live request is in flight and continued (``SIGCONT``) when
none is, so it uses the machine only in the gaps live traffic leaves, whatever it is doing —
loading, retrieving or answering. Stopping and continuing cost two system calls per live
request (see :meth:`gcn_rag.serving.shadow.Shadows.enter`).

:class:`Sidecar` starts the child (``spawn``: a clean interpreter, no copied locks), which
loads the model with the server's picklable loader and then answers ``(frame, params)``
messages over a pipe, one at a time. Every failure is an answer, never an exception into the
server: the model's own errors come back as ``(error_code, message)``, a child that dies or
does not answer within the deadline (counted in *running* time, not stopped time) is killed
and reported, and the next request starts a new one. The kernel kills the child if the
server dies (``PR_SET_PDEATHSIG``), so a stopped child is never left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from gcn_rag.errors import BadInputError, DeadlineExceededError, GcnRagError, NotReadyError
from gcn_rag.model.registry import Loader

NICE = 19  # the lowest CPU priority, for the gaps it does run in
PR_SET_PDEATHSIG = 1
#: error codes a model raises for input it refuses (MLflow's), answered 400
CLIENT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST"})


class Sidecar:
    """One model version in its own process (see the module docstring)."""

    def __init__(self, loader: Loader, name: str, version: str) -> None:
        self.key = (name, version)
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child, loader, name, version), name="gcn-rag-sidecar", daemon=True
        )
        self._process.start()
        child.close()
        self.pid = self._process.pid or 0
        with contextlib.suppress(OSError):  # before it imports anything; threads inherit it
            os.setpriority(os.PRIO_PROCESS, self.pid, NICE)
        self._lock = threading.Lock()
        self._stopped_at: float | None = None
        self._stopped_s = 0.0  # time spent stopped, in all

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def pause(self) -> None:
        """Stop the child (a live request has started)."""
        with self._lock:
            if self._stopped_at is None and self.pid:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGSTOP)
                self._stopped_at = time.monotonic()

    def resume(self) -> None:
        """Continue the child (no live request is in flight)."""
        with self._lock:
            if self._stopped_at is not None:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGCONT)
                self._stopped_s += time.monotonic() - self._stopped_at
                self._stopped_at = None

    def wait_loaded(self, timeout_s: float) -> None:
        """Wait for the model to load (``timeout_s`` of running time); 503 if it fails."""
        status, detail = self._receive(timeout_s, "load")
        if status != "ready":
            self.close()
            name, version = self.key
            raise NotReadyError(
                f"The shadow model {name} version {version} failed to load: {detail}"
            )

    def predict(self, frame: Any, params: dict[str, Any] | None, timeout_s: float) -> Any:
        """The model's predictions for ``frame``; its failure as a :class:`GcnRagError`."""
        try:
            self._conn.send((frame, params))
        except (OSError, ValueError) as exc:
            self.close()
            raise GcnRagError(f"The shadow model's process is gone: {exc}") from None
        status, detail = self._receive(timeout_s, "answer")
        if status == "ok":
            return detail
        code, message = detail
        raise BadInputError(message) if code in CLIENT_ERROR_CODES else GcnRagError(message)

    def ask_to_stop(self) -> None:
        """Continue the child and ask it to end (without waiting: see :meth:`close`)."""
        self.resume()
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)

    def close(self) -> None:
        """End the child (continued, asked to stop, then killed after 2 s)."""
        self.ask_to_stop()
        self._process.join(2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()

    def _running_s(self, since: float, stopped_before: float) -> float:
        """Seconds the child has run since ``since`` (time stopped does not count)."""
        with self._lock:
            stopped = self._stopped_s - stopped_before
            if self._stopped_at is not None:
                stopped += time.monotonic() - max(self._stopped_at, since)
        return time.monotonic() - since - stopped

    def _receive(self, timeout_s: float, what: str) -> tuple[str, Any]:
        since, stopped_before = time.monotonic(), self._stopped_s
        try:
            while not self._conn.poll(0.2):
                if not self._process.is_alive():
                    raise EOFError("exited")
                if self._running_s(since, stopped_before) > timeout_s:
                    self.close()
                    raise DeadlineExceededError(
                        f"The shadow model did not {what} within {timeout_s:g} s of running."
                    )
            message: tuple[str, Any] = self._conn.recv()
            return message
        except (EOFError, OSError) as exc:
            self.close()
            raise GcnRagError(f"The shadow model's process exited during {what}: {exc}") from None


def _child(conn: Connection, loader: Loader, name: str, version: str) -> None:
    """The child's loop: load, say so, then answer one request at a time until told to stop."""
    with contextlib.suppress(OSError, AttributeError):  # die with the server (Linux)
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the server died before that took hold
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    try:
        model = loader(name, version)
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", ""))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        frame, params = job
        try:
            conn.send(("ok", model.predict(frame, params=params or None)))
        except Exception as exc:  # the model's failure, sent back as an answer
            code = str(getattr(exc, "error_code", "") or "INTERNAL_ERROR")
            conn.send(("error", (code, f"{type(exc).__name__}: {exc}")))
