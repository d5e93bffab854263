"""Multi-process serving: ``serve(..., workers=N)`` forks N copies of the server.

gnet has no counterpart: Go runs its loops on every core from one process. A
CPython process runs Python code on one core at a time (the GIL), so N event
loops in one process overlap only inside syscalls. The way to use N cores is N
processes, each with its own listening socket on the same address, with
SO_REUSEPORT asking the kernel to spread new connections (or, for UDP, senders)
across them by a hash of the 4-tuple.

What the parent does, in order:

1. Fork worker 0 with the address as given and wait for it to bind. With port
   0 the kernel picks a port here; the other workers must bind *that* port, so
   they are forked only after worker 0 reports its real address. (A placeholder
   socket bound by the parent would do for TCP, which only balances across
   *listening* sockets, but a bound UDP socket receives datagrams at once.)
2. Fork workers 1..N-1 on the resolved address and wait for each to bind.
3. Wait on a pidfd per worker and an eventfd for ``reactor.stop()``, on an epoll
   instance: no polling, no SIGCHLD handler in the user's process.
4. When any worker exits, or stop is asked, SIGTERM the others ("stopped
   together"), reap them all, and return; or raise what made one fail.

Each worker is the ordinary single-process server (``serve`` with
``workers=1`` and ``reuse_port=True``), started right after ``fork()`` in a
process that has no threads yet. It stops gracefully on SIGTERM and SIGINT, and
the kernel sends it SIGTERM if the parent dies, SIGKILL included
(``PR_SET_PDEATHSIG``), so no worker outlives its parent. A worker leaves with
``os._exit``: the caller's code after ``serve()`` and its ``atexit`` handlers
run in the parent only.

The handler object is copied into each worker by ``fork()``: its state is per
process, and so are ``on_init_complete`` and ``on_shutdown`` (``Server.worker_id``
tells which worker is calling).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import WorkerError
from .internal import threads, unix
from .internal.waitfd import READABLE, wait_fd
from .listener import Listener

__all__ = ["Supervisor", "serve_workers"]

#: How long the parent waits for workers to stop after SIGTERM before SIGKILL.
STOP_GRACE = 10.0
#: The longest the supervising thread goes without running pending signal handlers.
SIGNAL_CHECK_INTERVAL = 0.5
#: How long a worker may take to bind its listener before the parent gives up.
START_TIMEOUT = 30.0

class _Worker:
    """The parent's record of one forked worker."""

    def __init__(self, worker_id: int, pid: int, pidfd: int, report_fd: int) -> None:
        self.worker_id = worker_id
        self.pid = pid
        self.pidfd = pidfd
        #: Read end of the pipe the worker reports on: ("ready", addr) once
        #: bound, ("error", exception) if serving failed. Closed when reaped.
        self.report_fd = report_fd
        self.pending = bytearray()  # report bytes read but not yet a whole report
        self.status: int | None = None  # the waitpid status once reaped
        self.error: BaseException | None = None
        self.sent = 0  # the last signal the parent sent it

    def __repr__(self) -> str:
        return f"<worker {self.worker_id} pid={self.pid}>"


class Supervisor:
    """The parent side of ``serve(..., workers=N)``; what ``reactor.stop()`` finds for its address."""

    def __init__(self, proto_addr: str, logger: logging.Logger) -> None:
        self.proto_addr = proto_addr
        self.logger = logger
        self.workers: list[_Worker] = []
        self._stop_fd = unix.eventfd()
        # As Engine's: asking to stop takes no lock that anyone waits for, so
        # that signal handlers may ask (see Engine.signal_shutdown). The
        # eventfd wakes supervise(); _fd_lock, only ever *tried*, keeps a
        # write from landing on the eventfd's number after stop_all closed it.
        self._shutdown_requested = False
        self._fd_lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.current_thread()

    # What reactor.stop() uses on an Engine.
    def signal_shutdown(self) -> None:
        """Ask every worker to stop; returns at once (safe from any thread and from signal handlers)."""
        self._shutdown_requested = True
        if self._fd_lock.acquire(blocking=False):
            # Not acquired: stop_all holds it, so the workers are being stopped anyway.
            try:
                if self._stop_fd >= 0:
                    unix.eventfd_write(self._stop_fd)
            finally:
                self._fd_lock.release()

    @property
    def shutdown_requested(self) -> bool:
        """True once anyone has asked the workers to stop."""
        return self._shutdown_requested

    def owns_current_thread(self) -> bool:
        # reactor.stop() from a signal handler runs on the supervising thread:
        # it must only signal, or it would wait for itself.
        return threading.current_thread() is self._thread

    def is_in_shutdown(self) -> bool:
        return self._done.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until every worker is reaped, or ``timeout`` seconds; True if they are."""
        return self._done.wait(timeout)

    # --- starting ---------------------------------------------------------------------------------------
    def spawn(self, worker_id: int, child: Callable[[int], None]) -> _Worker:
        """Fork one worker that runs ``child(report_fd)`` and never returns into the caller."""
        r, w = os.pipe()  # both O_CLOEXEC: nothing exec'ed later inherits them
        parent_pid = os.getpid()
        # Output still in Python's buffers would be copied into the worker
        # and written once more by each worker when it flushes at exit.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                for other in self.workers:
                    # What the parent holds for earlier workers is not this one's.
                    os.close(other.pidfd)
                    os.close(other.report_fd)
                os.close(self._stop_fd)
                threads.set_pdeathsig(signal.SIGTERM)
                # fork() copies the forking thread's signal mask, and reactor
                # starts its threads with SIGTERM & co. blocked (start_thread):
                # a worker forked from such a thread (serve_in_background's)
                # would never see PDEATHSIG's SIGTERM or the parent's stop.
                # This process has one thread: let it receive them.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, threads.ASYNC_SIGNALS)
                if os.getppid() != parent_pid:
                    os._exit(1)  # the parent died before prctl: nobody to serve for
                child(w)
                code = 0
            except BaseException:  # noqa: BLE001 - a forked child must never unwind into the caller
                try:
                    self.logger.exception("reactor worker %d failed", worker_id)
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(w)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            # Cannot watch it: do not leave it running unwatched.
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            raise
        worker = _Worker(worker_id, pid, pidfd, r)
        self.workers.append(worker)
        return worker

    def wait_ready(self, worker: _Worker) -> Any:
        """Block until ``worker`` reports its bound address; raise what it raised if it failed instead."""
        deadline = time.monotonic() + START_TIMEOUT
        msg = _read_report(worker, deadline)
        if msg is not None and msg[0] == "ready":
            return msg[1]
        if msg is not None and msg[0] == "error":
            raise msg[1]
        raise WorkerError(f"reactor worker {worker.worker_id} (pid {worker.pid}) exited before it was serving")

    # --- running ----------------------------------------------------------------------------------------
    def supervise(self) -> None:
        """Wait until a worker exits or stop is asked; then stop and reap them all."""
        epfd = unix.epoll_create1()
        try:
            unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, self._stop_fd, unix.EPOLLIN)
            for w in self.workers:
                # A pidfd is readable once its process has exited.
                unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, w.pidfd, unix.EPOLLIN)
            events = unix.EpollEvents(len(self.workers) + 1)
            # One epoll instance for all N + 1 fds, not wait_fd: wait_fd waits
            # on a single fd, and this wait ends when *any* of them is ready.
            # Bounded (see Engine.stop): a stop signal delivered to another
            # thread of the caller's runs its handler only when we return here.
            timeout_ms = int(SIGNAL_CHECK_INTERVAL * 1000)
            while not self._shutdown_requested:
                ready = unix.epoll_wait(epfd, events, timeout_ms)
                if any(fd != self._stop_fd for fd, _ in ready):
                    break  # one worker ended: the others follow (they live and die together)
        finally:
            unix.close(epfd)

    def stop_all(self) -> None:
        """SIGTERM every live worker, SIGKILL after STOP_GRACE, reap all; close what the parent holds."""
        self._shutdown_requested = True
        for w in self.workers:
            # An exited worker is a zombie until reaped: its pid is still ours to signal.
            w.sent = signal.SIGTERM
            _signal(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for w in self.workers:
            if not wait_fd(w.pidfd, READABLE, deadline - time.monotonic()):
                self.logger.error("reactor worker %d (pid %d) did not stop in %.0f s: killed",
                                  w.worker_id, w.pid, STOP_GRACE)
                w.sent = signal.SIGKILL
                _signal(w.pid, signal.SIGKILL)
            w.status = os.waitpid(w.pid, 0)[1]
            if w.error is None:
                # A worker that failed says why before it exits (the pipe
                # holds its last report, or EOF if it had nothing to say).
                msg = _read_report(w, time.monotonic())
                if msg is not None and msg[0] == "error":
                    w.error = msg[1]
            os.close(w.pidfd)
            os.close(w.report_fd)
        with self._fd_lock:
            fd, self._stop_fd = self._stop_fd, -1
        unix.close(fd)
        self._done.set()

    def raise_failure(self) -> None:
        """After stop_all: raise the first worker failure, its own exception or WorkerError with its status."""
        for w in self.workers:
            if w.error is not None:
                raise w.error
        for w in self.workers:
            assert w.status is not None
            if w.sent == signal.SIGKILL:
                raise WorkerError(
                    f"reactor worker {w.worker_id} (pid {w.pid}) did not stop within {STOP_GRACE:.0f} s "
                    "of SIGTERM and was killed"
                )
            if os.WIFSIGNALED(w.status) and os.WTERMSIG(w.status) == w.sent:
                continue  # ended by the SIGTERM we sent to stop it (before its handler was installed)
            code = os.waitstatus_to_exitcode(w.status)
            if code != 0:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                raise WorkerError(f"reactor worker {w.worker_id} (pid {w.pid}) {how}")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone (it stays a zombie until reaped, so the pid is still ours)


def _send_report(fd: int, kind: str, value: Any) -> None:
    """Write one report to the parent: a 4-byte length, then the pickled ``(kind, value)``.

    A worker may send two reports ("ready", then "error") before the parent
    reads either, so they arrive as one stream and need the length to split.
    """
    try:
        data = pickle.dumps((kind, value))
    except Exception:  # noqa: BLE001 - an exception that cannot be pickled still gets reported
        data = pickle.dumps((kind, WorkerError(repr(value)[:1000])))
    view = memoryview(struct.pack("<I", len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_report(w: _Worker, deadline: float) -> tuple[str, Any] | None:
    """Read ``w``'s next report; None on EOF (it exited without one more) or at ``deadline``."""
    while True:
        if len(w.pending) >= 4:
            (size,) = struct.unpack_from("<I", w.pending)
            if len(w.pending) >= 4 + size:
                msg = pickle.loads(w.pending[4 : 4 + size])
                del w.pending[: 4 + size]
                return msg  # type: ignore[no-any-return]
        # A pipe is readable once it holds data or its writer has closed it.
        if not wait_fd(w.report_fd, READABLE, deadline - time.monotonic()):
            return None
        chunk = os.read(w.report_fd, 1 << 16)
        if not chunk:
            return None
        w.pending += chunk


def _child_main(serve_one: Callable[..., None], proto_addr: str, worker_id: int, report_fd: int) -> None:
    """Run in a freshly forked worker: serve until stopped, reporting readiness or failure to the parent."""
    # Plain lists, no threading.Event: a handler must take no lock (a second
    # signal can arrive while the first handler runs; see Engine.signal_shutdown).
    stopping: list[bool] = []
    engine_box: list[Any] = []

    def on_stop_signal(signum: int, frame: Any) -> None:
        stopping.append(True)
        if engine_box:
            engine_box[0].signal_shutdown()

    # Graceful stop on both: SIGTERM from the parent (or PR_SET_PDEATHSIG),
    # SIGINT from a terminal's Ctrl-C, which reaches the whole process group.
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)

    def on_bound(ln: Listener, engine: Any) -> None:
        engine_box.append(engine)
        _send_report(report_fd, "ready", ln.addr)
        if stopping:  # a signal came before there was an engine to stop
            engine.signal_shutdown()

    try:
        serve_one(proto_addr, worker_id, on_bound)
    except BaseException as e:
        _send_report(report_fd, "error", e)
        raise
    finally:
        os.close(report_fd)


def _with_port(address: str, port: int) -> str:
    """``"127.0.0.1:0"`` → ``"127.0.0.1:43121"`` (also ``":0"`` and ``"[::1]:0"``)."""
    host, _, _ = address.rpartition(":")
    return f"{host}:{port}"


def serve_workers(
    network: str,
    address: str,
    proto_addr: str,
    n: int,
    serve_one: Callable[[str, int, Callable[[Listener, Any], None]], None],
    register: Callable[[Supervisor], Callable[[], None]],
    logger: logging.Logger,
) -> None:
    """Fork ``n`` workers serving ``network://address`` with SO_REUSEPORT; block until all have exited.

    ``serve_one(proto_addr, worker_id, on_bound)`` runs one single-process
    server in a worker; ``register(supervisor)`` makes it findable by
    ``reactor.stop(proto_addr)`` and returns the matching unregister.
    """
    if network.startswith("unix"):
        raise ValueError(
            "option workers > 1 needs a tcp or udp address: AF_UNIX sockets cannot share an address "
            "with SO_REUSEPORT (use num_event_loop for several loops on a unix socket)"
        )
    sup = Supervisor(proto_addr, logger)
    unregister = register(sup)
    try:
        try:
            first = sup.spawn(0, functools.partial(_child_main, serve_one, f"{network}://{address}", 0))
            bound = sup.wait_ready(first)
            # Port 0 resolved by worker 0: the others bind the same one.
            resolved = f"{network}://{_with_port(address, bound[1])}"
            for i in range(1, n):
                if sup.shutdown_requested:
                    break  # asked to stop while starting: start no more
                w = sup.spawn(i, functools.partial(_child_main, serve_one, resolved, i))
                sup.wait_ready(w)
            logger.debug("serving %s with %d worker processes", proto_addr, n)
            sup.supervise()
        finally:
            sup.stop_all()
        sup.raise_failure()
    finally:
        unregister()

