"""A ``serve(..., workers=N)`` program for tests/unit/test_workers.py, run as a subprocess.

    python tests/unit/workers_server.py ADDR --workers N [--loops L] [--signals stop|none]
        [--init-shutdown K] [--init-raise K] [--tick-shutdown K] [--nest-signal K] [--in-thread]

The test suite never forks its own process: this script is the parent that
forks the workers. It reports on stdout, one JSON object per line (flushed):

* ``{"ev": "parent", "pid": ...}`` before ``serve``;
* from each worker: ``{"ev": "init", "pid", "ppid", "worker_id", "workers",
  "addr", "reuse_port", "loops"}`` in ``on_init_complete`` and
  ``{"ev": "shutdown", "pid", "worker_id"}`` in ``on_shutdown``;
* from the parent: ``{"ev": "stop_returned"}`` after ``reactor.stop(ADDR)``
  (asked for by the line ``stop`` on stdin, from a thread), then
  ``{"ev": "returned", "children": [...]}`` when ``serve`` returned (exit 0),
  or ``{"ev": "raised", "type", "module", "errno", "msg", "children"}`` when
  it raised (exit 3). ``children`` lists the pids the parent still has as
  children at that point: none, if every worker was reaped.

What the workers do with traffic (TCP connections or UDP datagrams): the
payload ``shutdown`` returns ``Action.SHUTDOWN``; ``exit N`` calls
``os._exit(N)``; anything else is answered with ``"<pid> <worker_id>\\n"``.

``--signals stop`` (the default) installs SIGTERM and SIGINT handlers in the
parent that call ``reactor.stop(ADDR)``, as the examples do; ``none`` leaves
Python's defaults (SIGTERM kills the parent, SIGINT raises KeyboardInterrupt).
``--init-shutdown K`` / ``--init-raise K``: worker K's ``on_init_complete``
returns SHUTDOWN / raises :class:`InitFailed`. ``--tick-shutdown K``: worker
K's ``tick`` returns SHUTDOWN 0.3 s after it started. ``--in-thread``: ``serve``
runs on a thread of the parent (the main thread waits for it); ``--masked``
starts that thread as reactor starts its own, with the async signals blocked.
``--nest-signal K``: worker K gets a second SIGTERM while its stop handler
holds a lock (see :func:`nest_a_signal_in_the_stop_handler`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import types
from typing import Any

import reactor
from reactor import Action
from reactor.internal import threads

# netsupport is tests/netsupport.py, one folder up: not on the sys.path of this subprocess.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netsupport import children_of  # noqa: E402


class InitFailed(RuntimeError):
    """What ``--init-raise`` raises; the parent must re-raise this very type."""


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def nest_a_signal_in_the_stop_handler() -> None:
    """Make a second SIGTERM arrive while the worker's stop handler is inside a lock operation.

    What Ctrl-C in a terminal does by chance: SIGINT reaches every worker, and
    the parent's SIGTERM follows within a millisecond; if it lands while the
    first handler runs, Python runs the second handler right there (signal
    handlers nest). A handler that *waits* for a lock then waits forever for
    the one its own outer call holds (``threading.Event.set``, as the first
    version did). Forced here, once, for determinism: a profile hook makes
    SIGTERM pending at the first lock operation (``__enter__``/``acquire``/
    ``release``) made inside reactor's worker signal handler, so the nested
    handler runs right after it returns. The hook is installed only while
    that handler runs (a wrapper around it): a signal that arrived while a
    profile function was running would run its handler untraced.
    """
    fired: list[bool] = []

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        if fired or event != "c_call" or getattr(arg, "__name__", "") not in ("__enter__", "acquire", "release"):
            return
        f: types.FrameType | None = frame
        while f is not None and f.f_code.co_name != "on_stop_signal":
            f = f.f_back
        if f is not None:
            fired.append(True)
            emit(ev="nested-signal-sent", pid=os.getpid(), inside=arg.__name__)
            # To this thread (Python runs handlers on the main thread); os.kill might pick a
            # loop thread. The last thing done here: any Python call after it would run the
            # nested handler *before* the lock operation. It runs at the next check instead,
            # once the C call has returned (the profile hook's c_return call is the first).
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    stop_handler = signal.getsignal(signal.SIGTERM)  # reactor's on_stop_signal, installed after fork
    assert callable(stop_handler) and getattr(stop_handler, "__name__", "") == "on_stop_signal", stop_handler

    def traced_stop_handler(signum: int, frame: types.FrameType | None) -> None:
        sys.setprofile(profile)
        try:
            stop_handler(signum, frame)
        finally:
            sys.setprofile(None)

    signal.signal(signal.SIGTERM, traced_stop_handler)
    signal.signal(signal.SIGINT, traced_stop_handler)


class Handler(reactor.EventServer):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: reactor.Server | None = None
        self.started = 0.0

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        self.started = time.monotonic()
        if server.worker_id == self.args.nest_signal:
            nest_a_signal_in_the_stop_handler()  # before "init": the test may signal at once
        addr = server.addr
        emit(ev="init", pid=os.getpid(), ppid=os.getppid(), worker_id=server.worker_id, workers=server.workers,
             addr=list(addr) if isinstance(addr, tuple) else addr, reuse_port=server.reuse_port,
             loops=server.num_event_loop)
        if server.worker_id == self.args.init_raise:
            raise InitFailed(f"worker {server.worker_id} refuses to start")
        if server.worker_id == self.args.init_shutdown:
            return Action.SHUTDOWN
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        emit(ev="shutdown", pid=os.getpid(), worker_id=server.worker_id)

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        data = (frame or b"").strip()
        if data == b"shutdown":
            return None, Action.SHUTDOWN
        if data.startswith(b"exit "):
            sys.stdout.flush()
            os._exit(int(data.split()[1]))
        assert self.server is not None
        return f"{os.getpid()} {self.server.worker_id}\n".encode(), Action.NONE

    def tick(self) -> tuple[float, Action]:
        assert self.server is not None
        if self.server.worker_id == self.args.tick_shutdown and time.monotonic() - self.started > 0.3:
            return 0.0, Action.SHUTDOWN
        return 0.05, Action.NONE


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loops", type=int, default=1)
    p.add_argument("--signals", choices=("stop", "none"), default="stop")
    p.add_argument("--init-shutdown", type=int, default=-1)
    p.add_argument("--init-raise", type=int, default=-1)
    p.add_argument("--tick-shutdown", type=int, default=-1)
    p.add_argument("--nest-signal", type=int, default=-1)
    p.add_argument("--in-thread", action="store_true", help="call serve() on a thread, not the main thread")
    p.add_argument("--masked", action="store_true",
                   help="with --in-thread: start that thread with reactor's signal mask (as serve_in_background)")
    args = p.parse_args()

    if args.signals == "stop":
        def on_signal(signum: int, frame: object) -> None:
            try:
                reactor.stop(args.addr)
            except reactor.ServerInShutdownError:
                pass

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    stop_asked, stop_reported = threading.Event(), threading.Event()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                stop_asked.set()
                try:
                    reactor.stop(args.addr, timeout=20)
                except BaseException as e:  # reported, the test decides
                    emit(ev="stop_error", type=type(e).__name__, msg=str(e))
                else:
                    emit(ev="stop_returned")
                stop_reported.set()

    threading.Thread(target=read_commands, name="commands", daemon=True).start()
    emit(ev="parent", pid=os.getpid())

    def run() -> None:
        reactor.serve(Handler(args), args.addr, workers=args.workers, num_event_loop=args.loops,
                      ticker=args.tick_shutdown >= 0)

    try:
        if args.in_thread:
            failure: list[BaseException] = []

            def target() -> None:
                try:
                    run()
                except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
                    failure.append(e)

            t = threading.Thread(target=target, name="serve")
            if args.masked:
                threads.start_thread(t)  # SIGTERM & co. blocked in t, and so in what it forks
            else:
                t.start()
            while t.is_alive():
                t.join(0.05)  # a bounded join: signal handlers run on the main thread meanwhile
            if failure:
                raise failure[0]
        else:
            run()
    except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt included: the test wants to know
        emit(ev="raised", type=type(e).__name__, module=type(e).__module__, errno=getattr(e, "errno", None),
             msg=str(e), children=children_of(os.getpid()))
        return 3
    if stop_asked.is_set():
        stop_reported.wait(20)  # serve() may return before reactor.stop() does: report both
    emit(ev="returned", children=children_of(os.getpid()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
