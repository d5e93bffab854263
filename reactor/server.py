"""The server engine: start the loops, accept, shut everything down; ``serve`` and ``stop``.

gnet counterpart (v1.6.7): ``server_unix.go`` (``server``, ``start``,
``activateEventLoops``, ``activateReactors``, ``stop``, ``signalShutdown``),
``acceptor_unix.go`` (``svr.accept``) and ``gnet.go`` (``Serve``, ``Stop``,
``Server``).

Threads. ``serve`` runs in the caller's thread and blocks there until the
server has shut down. Each event loop is an OS thread ("reactor-loop-N"); in
main-reactor mode one more thread accepts ("reactor-main"); with
``ticker=True`` one more calls ``tick`` ("reactor-ticker"). All of them have
ended, and every fd they opened is closed, before ``serve`` returns.

Deliberate differences from gnet v1 (docs/gnet-mapping.md lists them):

* The shutdown signal is a flag plus a lock released once to wake the
  waiter, which signal handlers can use safely (gnet: a one-shot condition
  variable whose signal is lost if a loop exits before ``stop`` waits, #8).
* ``on_shutdown`` runs after every loop has stopped and every connection got
  ``on_closed`` (gnet calls it before telling the loops to stop, #9).
* EMFILE/ENFILE from ``accept4`` do not shut the server down (#2): the
  connection at the head of the backlog is accepted on a reserved fd and
  closed at once (libuv's trick), so the peer learns immediately instead of
  hanging, the listener stops reporting readiness for it, and accepting
  resumes by itself once fds are free again. The error is logged, at most
  once a second.
* In main-reactor mode the accepting thread is stopped *before* the
  sub-reactors, so no connection is handed to a loop that has exited.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .internal import sockets, threads, unix
from .codec import BuiltInFrameCodec
from .connection import Conn
from .errors import ServerInShutdownError
from .eventloop import EventLoop, shutdown_task
from .handler import Action, complete_handler
from .listener import Listener, init_listener, parse_proto_addr
from .load_balancer import LoadBalancer, new_load_balancer
from .internal.netpoll import Poller
from .options import Options, make_logger

if TYPE_CHECKING:
    from .workers import Supervisor

__all__ = ["Engine", "Server", "serve", "stop"]

#: Accepts per readiness report: v2 drains until EAGAIN; a bound keeps a
#: connect storm from starving a reuse_port loop's established connections.
MAX_ACCEPTS_PER_EVENT = 128
#: The longest a waiting main thread goes without running pending signal handlers.
SIGNAL_CHECK_INTERVAL = 0.5
#: How long a listener is left unpolled when fd exhaustion leaves no way to
#: shed a pending connection (see Engine._accept_one).
ACCEPT_BACKOFF = 0.1


class Server:
    """What ``on_init_complete`` and ``on_shutdown`` receive (gnet: ``Server``)."""

    def __init__(self, engine: Engine, num_event_loop: int, worker_id: int = 0) -> None:
        self._engine = engine
        #: As configured.
        self.multicore: bool = engine.opts.multicore
        #: The listener's real address (stdlib shape), e.g. ``("127.0.0.1", 43121)`` for ``:0``;
        #: None for a :class:`reactor.Client`.
        self.addr: Optional[unix.Address] = engine.ln.addr if engine.ln is not None else None
        #: Effective number of event loops.
        self.num_event_loop: int = num_event_loop
        #: As configured.
        self.reuse_port: bool = engine.opts.reuse_port
        #: As configured, in seconds.
        self.tcp_keepalive: float = engine.opts.tcp_keepalive
        #: Worker processes serving this address, as configured (1: just this process).
        self.workers: int = engine.opts.workers
        #: Which of them this process is, 0 to ``workers - 1`` (see :mod:`reactor.workers`).
        self.worker_id: int = worker_id

    def __repr__(self) -> str:
        workers = f" worker={self.worker_id}/{self.workers}" if self.workers > 1 else ""
        return f"<Server addr={self.addr!r} loops={self.num_event_loop} reuse_port={self.reuse_port}{workers}>"

    def count_connections(self) -> int:
        """Open connections across all loops; safe from any thread (gnet: ``CountConnections``)."""
        return sum(el.count_connections() for el in self._engine.lb)

    def dup_fd(self) -> int:
        """A close-on-exec duplicate of the listening socket; the caller must close it (gnet: ``DupFd``)."""
        if self._engine.ln is None:
            raise RuntimeError("a client has no listening socket to duplicate")
        return self._engine.ln.dup()

    def stop(self) -> None:
        """Ask the server to shut down; returns at once (safe from any thread, callbacks included)."""
        self._engine.signal_shutdown()


class _ReserveFd:
    """A spare fd held open so that accept can still make progress at EMFILE (libuv's trick)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._fd = self._open()

    @staticmethod
    def _open() -> int:
        try:
            return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1

    def shed(self, listen_fd: int) -> bool:
        """Accept one pending connection on the spare fd and close it; True if one was shed."""
        with self._lock:
            if self._closed:
                return False
            if self._fd < 0:
                self._fd = self._open()
                if self._fd < 0:
                    return False
            # -1 before the close: a sibling loop whose accept4 gets this
            # number must then see the spare missing and adopt its fd (see
            # adopt; _accept_one reads _fd without the lock, after accept4).
            spare, self._fd = self._fd, -1
            unix.close(spare)
            shed = False
            try:
                nfd, _ = unix.accept4(listen_fd)
            except OSError:
                pass
            else:
                unix.close(nfd)
                shed = True
            self._fd = self._open()
            return shed

    def restore(self) -> None:
        with self._lock:
            if self._fd < 0 and not self._closed:
                self._fd = self._open()

    def adopt(self, nfd: int, listen_fd: int) -> bool:
        """Turn a just-accepted ``nfd`` into the spare if the spare is missing; True if it was.

        ``restore`` before ``accept4`` leaves a window: an fd another loop frees
        in between goes to the connection, and the spare stays missing for as
        long as the process is at its limit (every later accept4 fails with
        EMFILE and nothing can be shed). ``dup2`` closes the connection and
        puts a duplicate of the listener in the same slot in one step, so no
        other thread can take the number in between; the peer sees the close
        that shedding means. The duplicate is as good a spare as /dev/null:
        only its number matters, and closing it leaves the listener open.
        """
        with self._lock:
            if self._fd >= 0 or self._closed:
                return False
            os.dup2(listen_fd, nfd, inheritable=False)
            self._fd = nfd
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                unix.close(self._fd)
                self._fd = -1


class Engine:
    """The running server (gnet v1: the unexported ``server`` struct)."""

    def __init__(
        self,
        handler: Any,
        ln: Listener,
        opts: Options,
        proto_addr: str,
        logger: logging.Logger,
    ) -> None:
        self.handler = complete_handler(handler)
        self.ln = ln
        self.opts = opts
        self.proto_addr = proto_addr
        self.logger = logger
        self.codec = opts.codec if opts.codec is not None else BuiltInFrameCodec()
        self.builtin_codec = type(self.codec) is BuiltInFrameCodec
        self.lb: LoadBalancer[EventLoop] = new_load_balancer(opts.lb)
        self.main_loop: EventLoop | None = None
        self.listeners: list[Listener] = []
        self.threads: list[threading.Thread] = []
        # Shutdown is asked for from anywhere, signal handlers included, so
        # asking takes no lock that anyone waits for: a handler that waited
        # for a lock deadlocks when it interrupts the lock's holder on the
        # same thread (the main thread inside Event.wait, or a first handler
        # inside Event.set when a second signal arrives: Ctrl-C to a group).
        # A flag, plus a plain Lock held from the start and *released* to
        # wake the waiter: Lock.release never blocks, and a second release
        # raises instead of waiting.
        self._shutdown_requested = False
        self._stop_gate = threading.Lock()
        self._stop_gate.acquire()
        self._done = threading.Event()
        self._ticker_cancel = threading.Event()
        self._ticker_thread: threading.Thread | None = None
        self._reserve = _ReserveFd()
        self._last_emfile_log = 0.0
        self.server: Server | None = None

    # --- shutdown signalling (gnet: signalShutdown / waitForShutdown) --------------------------
    def signal_shutdown(self) -> None:
        """Ask the server to stop; returns at once. Safe from any thread and from signal handlers."""
        self._shutdown_requested = True
        try:
            self._stop_gate.release()
        except RuntimeError:
            pass  # released already: asked before

    def is_in_shutdown(self) -> bool:
        """True once the whole stop sequence has finished (gnet: ``isInShutdown``)."""
        return self._done.is_set()

    def owns_current_thread(self) -> bool:
        me = threading.current_thread()
        return me in self.threads or me is self._ticker_thread

    # --- start (gnet: start, activateEventLoops, activateReactors) ----------------------------------
    def start(self, num_event_loop: int) -> None:
        # AF_UNIX listeners are never SO_REUSEPORT (see listener.py), so with
        # reuse_port they are served in main-reactor mode, as in gnet v2.
        # UDP is always served this way (gnet: one SO_REUSEPORT socket per loop).
        if self.ln.is_udp or (self.opts.reuse_port and self.ln.network != "unix"):
            self.activate_event_loops(num_event_loop)
        else:
            self.activate_reactors(num_event_loop)

    def _new_loop(self, ln: Listener | None) -> EventLoop:
        poller = Poller(self.logger)
        try:
            el = EventLoop(self, poller, ln)
        except BaseException:
            poller.close()
            raise
        self.lb.register(el)
        return el

    def _bound_address(self) -> str:
        """The first listener's real address as ``host:port``, so extra reuse_port
        listeners bind the same port even when the user asked for ``:0``."""
        addr = self.ln.addr
        assert isinstance(addr, tuple)
        if len(addr) == 4:
            return f"[{addr[0]}]:{addr[1]}"
        return f"{addr[0]}:{addr[1]}"

    def activate_event_loops(self, num_event_loop: int) -> None:
        """reuse_port mode: N loops, each accepting on its own SO_REUSEPORT listener (gnet: ``activateEventLoops``)."""
        for i in range(num_event_loop):
            if i == 0:
                ln = self.ln
            else:
                ln = init_listener(self.ln.network, self._bound_address(), self.opts)
                self.listeners.append(ln)
            el = self._new_loop(ln)
            el.owns_listener = True
            el.poller.add_read(ln.fd)
        for el in self.lb:
            self._start_thread(el.run, f"reactor-loop-{el.idx}")
        if self.opts.ticker:
            self._start_ticker(self.lb.event_loops[0])

    def activate_reactors(self, num_event_loop: int) -> None:
        """Main-reactor mode: N sub-reactors plus one accepting main reactor (gnet: ``activateReactors``)."""
        for _ in range(num_event_loop):
            self._new_loop(self.ln)
        main = EventLoop(self, Poller(self.logger), self.ln)
        main.idx = -1
        self.main_loop = main
        main.poller.add_read(self.ln.fd)
        for el in self.lb:
            self._start_thread(el.activate_sub_reactor, f"reactor-loop-{el.idx}")
        self._start_thread(main.activate_main_reactor, "reactor-main")
        if self.opts.ticker:
            self._start_ticker(main)

    def _start_thread(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self.threads.append(t)
        threads.start_thread(t)

    # --- accept (gnet: svr.accept / el.accept) ---------------------------------------------------------
    def accept(self, fd: int, ev: int) -> None:
        """Main reactor: accept and hand each connection to a sub-reactor by the load balancer."""
        assert self.main_loop is not None
        for _ in range(MAX_ACCEPTS_PER_EVENT):
            accepted = self._accept_one(self.main_loop, fd)
            if accepted is None:
                return
            nfd, remote = accepted
            el = self.lb.next(remote)
            c = Conn(nfd, el, self.ln.addr, remote)
            try:
                # Registration must happen on the owning loop's thread: only
                # it touches its connection table and epoll interest.
                el.poller.urgent_trigger(el.register, c)
            except ServerInShutdownError:
                unix.close(nfd)
                return

    def accept_on(self, el: EventLoop, fd: int) -> None:
        """reuse_port loop: accept on its own listener and register right here (gnet: ``el.accept``)."""
        assert el.ln is not None
        for _ in range(MAX_ACCEPTS_PER_EVENT):
            accepted = self._accept_one(el, fd)
            if accepted is None:
                return
            nfd, remote = accepted
            el.register(Conn(nfd, el, el.ln.addr, remote))

    def _accept_one(self, el: EventLoop, fd: int) -> tuple[int, unix.Address] | None:
        """One accept4 with gnet's errno triage, minus its fatal EMFILE; None: nothing (more) to accept."""
        reserve = self._reserve
        if reserve._fd < 0 and not reserve._closed:
            # The spare was lost to another thread during a shed. A freed fd
            # must go back to it before accept4 takes it for the next
            # pending connection, or at the limit every freed fd is handed to
            # one more connection and the rest wait in the backlog unshed.
            reserve.restore()
        try:
            nfd, remote = unix.accept4(fd)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM):
                # The peer gave up while in the backlog (or a firewall said
                # no): nothing to serve, try the next one on the next event.
                return None
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                now = time.monotonic()
                if now - self._last_emfile_log >= 1.0:
                    self._last_emfile_log = now
                    self.logger.error(
                        "accept4 on %s failed: %s; shedding pending connections until fds are free",
                        self.proto_addr,
                        e,
                    )
                if not self._reserve.shed(fd):
                    # No spare fd either (another thread took the number):
                    # the listener stays readable, and a level-triggered
                    # poll would spin on it. Stop watching it for a while.
                    self._pause_accepting(el, fd)
                return None
            self.logger.error("accept4 on %s failed: %s", self.proto_addr, e)
            return None
        if reserve._fd < 0 and reserve.adopt(nfd, fd):
            # Lost the race described in _ReserveFd.adopt: this connection is
            # shed so that the next EMFILE can shed the rest of the backlog.
            return None
        if self.opts.tcp_keepalive > 0 and self.ln.network.startswith("tcp"):
            try:
                sockets.set_keepalive(nfd, int(self.opts.tcp_keepalive))
            except OSError as e:
                self.logger.error("cannot set TCP keep-alive on fd %d: %s", nfd, e)
        return nfd, remote

    def _pause_accepting(self, el: EventLoop, fd: int) -> None:
        """Stop polling listener ``fd`` on ``el`` for ACCEPT_BACKOFF seconds (fd exhaustion)."""
        try:
            el.poller.delete(fd)
        except OSError:
            return
        el.timers.schedule(el.timers.now + ACCEPT_BACKOFF, self._resume_accepting, el, fd)

    def _resume_accepting(self, el: EventLoop, fd: int) -> None:
        try:
            el.poller.add_read(fd)
        except OSError as e:
            self.logger.error("cannot resume accepting on fd %d: %s", fd, e)

    # --- ticker (gnet: el.ticker) ----------------------------------------------------------------------------
    def _start_ticker(self, el: EventLoop) -> None:
        t = threading.Thread(target=el.ticker, args=(self._ticker_cancel,), name="reactor-ticker", daemon=True)
        self._ticker_thread = t
        threads.start_thread(t)

    # --- stop (gnet: stop) ----------------------------------------------------------------------------------
    def stop(self, s: Server) -> None:
        """Wait for the shutdown signal, then stop and release everything, in order."""
        try:
            # Bounded waits: a signal for a handler that would release the
            # gate may have been delivered to another thread (see
            # threads.start_thread), and then only a return to the interpreter
            # loop here runs that handler. Our own threads block such
            # signals, but the caller's other threads may not.
            while not self._stop_gate.acquire(timeout=SIGNAL_CHECK_INTERVAL):
                pass
        finally:
            # Even on KeyboardInterrupt in the wait: never return with threads alive.
            self._stop_loops()
            try:
                self.handler.on_shutdown(s)
            except Exception:
                self.logger.exception("on_shutdown() raised")
            # Only now: on_shutdown may still use the listener (dup_fd()).
            self._close_listeners()
            self._done.set()

    def _stop_everything(self) -> None:
        self._stop_loops()
        self._close_listeners()

    def _close_listeners(self) -> None:
        for ln in self.listeners:
            ln.close()
        self.ln.close()
        self._reserve.close()

    def _stop_loops(self) -> None:
        self._ticker_cancel.set()
        if self.main_loop is not None:
            self._shutdown_loop(self.main_loop)
            self._join(self.main_loop)
        for el in self.lb:
            self._shutdown_loop(el)
        for el in self.lb:
            self._join(el)
        for el in self.lb:
            el.discard_pending_registrations()
            el.poller.close()
        if self.main_loop is not None:
            self.main_loop.poller.close()
        if self._ticker_thread is not None and self._ticker_thread is not threading.current_thread():
            self._ticker_thread.join()

    def _shutdown_loop(self, el: EventLoop) -> None:
        try:
            el.poller.urgent_trigger(shutdown_task)
        except ServerInShutdownError:
            pass

    def _join(self, el: EventLoop) -> None:
        for t in self.threads:
            if t.name == ("reactor-main" if el.idx == -1 else f"reactor-loop-{el.idx}"):
                t.join()

    def close(self) -> None:
        """Release what ``start`` may have opened when it failed half-way."""
        self.signal_shutdown()
        self._stop_everything()


# --- the public entry points (gnet: Serve, Stop) -----------------------------------------------------------
#: What reactor.stop() finds by address: a server, or the parent of its worker processes.
_servers: dict[str, Union[Engine, "Supervisor"]] = {}
_servers_lock = threading.Lock()


def serve(handler: Any, proto_addr: str, *, options: Optional[Options] = None, **opts: Any) -> None:
    """Serve ``handler`` on ``proto_addr`` and block until the server has shut down (gnet: ``Serve``).

    ``proto_addr`` is ``"tcp://host:port"``, ``"tcp4://..."``, ``"tcp6://..."``,
    ``"udp://..."``, ``"udp4://..."``, ``"udp6://..."`` or ``"unix:///path"``
    (``unix://@name`` for the abstract namespace; ``"host:port"`` alone means tcp). Options come from
    ``options`` with ``opts`` keywords applied on top.

    :raises ValueError: an invalid option (before anything is bound).
    :raises reactor.UnsupportedProtocolError: unknown network scheme.
    :raises reactor.InvalidNetworkAddressError: malformed address.
    :raises OSError: bind/listen failed (e.g. ``EADDRINUSE``).
    :raises reactor.WorkerError: with ``workers`` > 1, a worker process died
        (a worker's own exception, such as the ``OSError`` of its bind, is
        re-raised as it is).
    """
    o = options if options is not None else Options()
    if opts:
        o = o.replace(**opts)
    o.validate()
    o = o.replace(read_buffer_cap=_normalized_cap(o.read_buffer_cap))
    network, address = parse_proto_addr(proto_addr)
    if o.workers > 1:
        _serve_workers(handler, network, address, proto_addr, o)
        return
    logger, cleanup_logger = make_logger(o)
    try:
        ln = init_listener(network, address, o)
        try:
            _serve(handler, ln, o, proto_addr, logger)
        finally:
            ln.close()
    finally:
        cleanup_logger()


def _serve_workers(handler: Any, network: str, address: str, proto_addr: str, o: Options) -> None:
    """``serve(..., workers=N)``: N forked processes, one listener each (see :mod:`reactor.workers`)."""
    from .workers import serve_workers

    # Each worker is a single-process server with its own SO_REUSEPORT
    # listener; its loops take turns on it the same way (reuse_port mode).
    worker_opts = o.replace(reuse_port=True)

    def serve_one(bind_addr: str, worker_id: int, on_bound: Callable[[Listener, Engine], None]) -> None:
        # Forked from a parent whose other servers' threads did not come
        # along; and whose lock another parent thread might have held.
        global _servers_lock
        _servers_lock = threading.Lock()
        _servers.clear()
        net, addr = parse_proto_addr(bind_addr)
        logger, cleanup_logger = make_logger(worker_opts)
        try:
            ln = init_listener(net, addr, worker_opts)
            try:
                _serve(handler, ln, worker_opts, proto_addr, logger, worker_id=worker_id, on_bound=on_bound)
            finally:
                ln.close()
        finally:
            cleanup_logger()

    def register(sup: Any) -> Callable[[], None]:
        with _servers_lock:
            _servers[proto_addr] = sup

        def unregister() -> None:
            with _servers_lock:
                if _servers.get(proto_addr) is sup:
                    del _servers[proto_addr]

        return unregister

    logger, cleanup_logger = make_logger(o)
    try:
        serve_workers(network, address, proto_addr, o.workers, serve_one, register, logger)
    finally:
        cleanup_logger()


def _normalized_cap(cap: int) -> int:
    from .options import normalize_read_buffer_cap

    return normalize_read_buffer_cap(cap)


def _serve(
    handler: Any,
    ln: Listener,
    o: Options,
    proto_addr: str,
    logger: logging.Logger,
    *,
    worker_id: int = 0,
    on_bound: Optional[Callable[[Listener, Engine], None]] = None,
) -> None:
    """gnet: the unexported ``serve``."""
    num_event_loop = o.num_loops()
    engine = Engine(handler, ln, o, proto_addr, logger)
    s = Server(engine, num_event_loop, worker_id)
    engine.server = s
    if on_bound is not None:
        try:
            on_bound(ln, engine)
        except BaseException:
            engine.close()
            raise
    try:
        action = engine.handler.on_init_complete(s)
    except BaseException:
        engine.close()  # the engine already holds its reserved spare fd
        raise
    if action == Action.SHUTDOWN:
        engine.close()
        return
    # Registered before the loops start: a callback or the first tick may
    # call reactor.stop(proto_addr) as soon as they run.
    with _servers_lock:
        _servers[proto_addr] = engine
    try:
        engine.start(num_event_loop)
    except BaseException:
        logger.exception("reactor server on %s failed to start", proto_addr)
        engine.close()
        with _servers_lock:
            if _servers.get(proto_addr) is engine:
                del _servers[proto_addr]
        raise
    logger.debug("serving %s on %r with %d event loop(s)", proto_addr, ln.addr, num_event_loop)
    try:
        engine.stop(s)
    finally:
        with _servers_lock:
            if _servers.get(proto_addr) is engine:
                del _servers[proto_addr]


def stop(proto_addr: str, timeout: Optional[float] = None) -> None:
    """Shut down the server started with exactly this ``proto_addr`` (gnet: ``Stop``).

    Waits until it has fully stopped, or ``timeout`` seconds. Called from one
    of that server's own threads (a callback, ``tick``), it only signals:
    waiting there would wait for itself.

    :raises reactor.ServerInShutdownError: no running server has that address.
    :raises TimeoutError: it did not finish stopping within ``timeout``.
    """
    # No lock for the lookup (one dict read is atomic under the GIL): stop()
    # is called from signal handlers, which must not wait for a lock their
    # own thread may hold (see Engine.signal_shutdown).
    engine = _servers.get(proto_addr)
    if engine is None or engine._shutdown_requested:
        raise ServerInShutdownError(f"no running server on {proto_addr!r}")
    engine.signal_shutdown()
    if engine.owns_current_thread():
        return
    if not engine._done.wait(timeout):
        raise TimeoutError(f"server on {proto_addr!r} did not stop within {timeout} s")
