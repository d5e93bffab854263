"""The engine: start the loops and their threads, then stop and release everything, in order.

gnet counterpart (v1.6.7): the unexported ``server`` of ``server_unix.go``
(``start``, ``activateEventLoops``, ``activateReactors``, ``startEventLoops``,
``startSubReactors``, ``closeEventLoops``, ``stop``, ``signalShutdown``,
``waitForShutdown``, ``isInShutdown``); named ``Engine`` after gnet v2.
Accepting is in :mod:`reactor.acceptor`; the public ``serve``/``stop``/
``Server`` in :mod:`reactor.server`.

Threads. Each event loop is an OS thread ("reactor-loop-N"), stored on the
loop it runs (``EventLoop.thread``); in main-reactor mode one more loop
accepts ("reactor-main", ``Engine.main_loop.thread``); with ``ticker=True``
one more thread calls ``tick`` ("reactor-ticker"), kept here because the
ticker belongs to the server, not to a loop (gnet: ``server.tickerCtx``).
All of them have ended, and every fd they opened is closed, before
``Engine.stop`` returns.

Deliberate differences from gnet v1 (docs/gnet-mapping.md lists them):

* The shutdown signal is a flag plus a lock released once to wake the
  waiter, which signal handlers can use safely (gnet: a one-shot condition
  variable whose signal is lost if a loop exits before ``stop`` waits, #8).
* ``on_shutdown`` runs after every loop has stopped and every connection got
  ``on_closed`` (gnet calls it before telling the loops to stop, #9).
* In main-reactor mode the accepting thread is stopped *before* the
  sub-reactors, so no connection is handed to a loop that has exited.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .acceptor import Acceptor
from .codec import BuiltInFrameCodec
from .errors import ServerInShutdownError
from .eventloop import EventLoop, shutdown_task
from .eventloop_et import loop_class
from .handler import complete_handler
from .internal import threads
from .internal.netpoll import open_poller
from .listener import Listener, init_listener
from .load_balancer import LoadBalancer, new_load_balancer
from .options import Options
from .tls import check_context, record_sni

if TYPE_CHECKING:
    from .internal.netpoll import Poller
    from .server import Server

__all__ = ["SIGNAL_CHECK_INTERVAL", "Engine"]

#: The longest a waiting main thread goes without running pending signal handlers.
SIGNAL_CHECK_INTERVAL = 0.5


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
        #: The accepting loop in main-reactor mode; None in reuse_port mode.
        self.main_loop: EventLoop | None = None
        #: Extra SO_REUSEPORT listeners (reuse_port mode), closed with ``ln``.
        self.listeners: list[Listener] = []
        self.acceptor = Acceptor(ln, self.lb, opts, logger, proto_addr)
        #: ``serve(tls=...)``: every accepted connection gets a TLS session from it (reactor.tls).
        self.tls_context = check_context(opts.tls, server_side=True, what="serve(tls=...)")
        if self.tls_context is not None:
            record_sni(self.tls_context)  # so that c.tls.server_hostname can say what the client asked for
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
        self.server: Server | None = None

    # --- shutdown signalling (gnet: signalShutdown / waitForShutdown / isInShutdown) ---------------
    # --8<-- [start:signal-shutdown]
    def signal_shutdown(self) -> None:
        """Ask the server to stop; returns at once. Safe from any thread and from signal handlers."""
        self._shutdown_requested = True
        try:
            self._stop_gate.release()
        except RuntimeError:
            pass  # released already: asked before
    # --8<-- [end:signal-shutdown]

    @property
    def shutdown_requested(self) -> bool:
        """True once anyone has asked the server to stop (it may still be stopping)."""
        return self._shutdown_requested

    def is_in_shutdown(self) -> bool:
        """True once the whole stop sequence has finished (gnet: ``isInShutdown``)."""
        return self._done.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the stop sequence has finished, or ``timeout`` seconds; True if it has."""
        return self._done.wait(timeout)

    def owns_current_thread(self) -> bool:
        """True on one of this server's threads (a loop, the main reactor, the ticker)."""
        me = threading.current_thread()
        if me is self._ticker_thread or (self.main_loop is not None and me is self.main_loop.thread):
            return True
        return any(me is el.thread for el in self.lb)

    # --- accepting (gnet: acceptor_unix.go; see reactor.acceptor) ----------------------------------
    def accept(self, fd: int, ev: int) -> None:
        """The main reactor's poller callback: accept and hand over (``Acceptor.accept``)."""
        assert self.main_loop is not None
        self.acceptor.accept(self.main_loop, fd)

    def accept_on(self, el: EventLoop, fd: int) -> None:
        """What a reuse_port loop calls for its listener's readiness (``Acceptor.accept_on``)."""
        self.acceptor.accept_on(el, fd)

    # --- start (gnet: start, activateEventLoops, activateReactors) ----------------------------------
    # --8<-- [start:engine-start]
    def start(self, num_event_loop: int) -> None:
        # AF_UNIX listeners are never SO_REUSEPORT (see listener.py), so with
        # reuse_port they are served in main-reactor mode, as in gnet v2.
        # UDP is always served this way (gnet: one SO_REUSEPORT socket per loop).
        if self.ln.is_udp or (self.opts.reuse_port and self.ln.network != "unix"):
            self.activate_event_loops(num_event_loop)
        else:
            self.activate_reactors(num_event_loop)
    # --8<-- [end:engine-start]

    def _new_poller(self) -> Poller:
        """A poller on the backend ``resolve_options`` settled (epoll or io_uring)."""
        return open_poller(self.logger, self.opts.backend, self.opts.read_buffer_cap, self.opts.socket_send_buffer)

    def _new_loop(self, ln: Listener | None) -> EventLoop:
        poller = self._new_poller()
        try:
            el = loop_class(self.opts.edge_triggered, poller.backend)(self, poller, ln)
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

    # --8<-- [start:activate-event-loops]
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
            if ln.is_udp:
                el.poller.add_read(ln.fd)
            else:
                el.poller.add_listener(ln.fd)
        for el in self.lb:
            self._start_loop(el, el.run, f"reactor-loop-{el.idx}")
        if self.opts.ticker:
            self._start_ticker(self.lb.event_loops[0])
    # --8<-- [end:activate-event-loops]

    # --8<-- [start:activate-reactors]
    def activate_reactors(self, num_event_loop: int) -> None:
        """Main-reactor mode: N sub-reactors plus one accepting main reactor (gnet: ``activateReactors``)."""
        for _ in range(num_event_loop):
            self._new_loop(self.ln)
        main = EventLoop(self, self._new_poller(), self.ln)
        main.idx = -1
        self.main_loop = main
        main.poller.add_listener(self.ln.fd)
        for el in self.lb:
            self._start_loop(el, el.activate_sub_reactor, f"reactor-loop-{el.idx}")
        self._start_loop(main, main.activate_main_reactor, "reactor-main")
        if self.opts.ticker:
            self._start_ticker(main)
    # --8<-- [end:activate-reactors]

    # --8<-- [start:start-loop]
    def _start_loop(self, el: EventLoop, body: Callable[[], None], name: str) -> None:
        """Run ``body`` on a new thread stored as ``el.thread`` (gnet: ``startEventLoops``/``startSubReactors``)."""
        t = threading.Thread(target=body, name=name, daemon=True)
        el.thread = t  # before start: the thread may ask owns_current_thread() at once
        threads.start_thread(t)
    # --8<-- [end:start-loop]

    def _start_ticker(self, el: EventLoop) -> None:
        """gnet: ``go el.ticker(ctx)``; ``tick``'s SHUTDOWN goes to ``el``."""
        t = threading.Thread(target=el.ticker, args=(self._ticker_cancel,), name="reactor-ticker", daemon=True)
        self._ticker_thread = t
        threads.start_thread(t)

    # --- stop (gnet: stop, closeEventLoops) ----------------------------------------------------------
    # --8<-- [start:engine-stop]
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
    # --8<-- [end:engine-stop]

    def close(self) -> None:
        """Release what ``start`` may have opened when it failed half-way."""
        self.signal_shutdown()
        self._stop_loops()
        self._close_listeners()

    def _close_listeners(self) -> None:
        for ln in self.listeners:
            ln.close()
        self.ln.close()
        self.acceptor.close()

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
        _join_thread(self._ticker_thread)

    def _shutdown_loop(self, el: EventLoop) -> None:
        try:
            el.poller.urgent_trigger(shutdown_task)
        except ServerInShutdownError:
            pass

    def _join(self, el: EventLoop) -> None:
        _join_thread(el.thread)


def _join_thread(t: threading.Thread | None) -> None:
    """Join ``t`` if it was started and is not the calling thread (which cannot wait for itself)."""
    if t is not None and t.ident is not None and t is not threading.current_thread():
        t.join()
