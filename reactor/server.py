"""The public entry points: ``serve``, ``stop`` and the ``Server`` handlers receive.

gnet counterpart (v1.6.7): ``gnet.go`` (``Serve``, ``Stop``, ``Server``) and
the unexported ``serve`` of ``server_unix.go`` (here ``_serve``), which builds
the engine. The engine itself (starting loops, shutting down) is
:mod:`reactor.engine`; accepting is :mod:`reactor.acceptor`; ``workers=N``
is :mod:`reactor.workers`, reached through ``_serve_workers``.

``serve`` runs in the caller's thread and blocks there until the server has
shut down; ``reactor.stop(proto_addr)`` finds it in this module's registry
of running servers (``_servers``) by the exact address string it was given.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .codec import check_codec
from .engine import Engine
from .errors import ServerInShutdownError
from .handler import Action, check_handler
from .internal import unix
from .internal.uring import resolve_backend
from .listener import Listener, init_listener, parse_proto_addr
from .options import Options, ServeOptions, make_logger, normalize_read_buffer_cap
from .tls import check_context

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:  # 3.10: for type checkers only (they bundle typing_extensions); nothing at run time
    from typing_extensions import Unpack

if TYPE_CHECKING:
    from .workers import Supervisor

__all__ = ["Server", "resolve_options", "serve", "stop"]


class Server:
    """What ``on_init_complete`` and ``on_shutdown`` receive (gnet: ``Server``)."""

    def __init__(self, engine: Engine, num_event_loop: int, worker_id: int = 0) -> None:
        self._engine = engine
        #: As configured.
        self.multicore: bool = engine.opts.multicore
        #: The listener's real address (stdlib shape), e.g. ``("127.0.0.1", 43121)`` for ``:0``;
        #: None for a :class:`reactor.Client`.
        self.addr: unix.Address | None = engine.ln.addr if engine.ln is not None else None
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


# --- the public entry points (gnet: Serve, Stop) -----------------------------------------------------------
#: What reactor.stop() finds by address: a server, or the parent of its worker processes.
_servers: dict[str, Engine | Supervisor] = {}
_servers_lock = threading.Lock()


# --8<-- [start:serve]
def serve(handler: object, proto_addr: str, *, options: Options | None = None, **opts: Unpack[ServeOptions]) -> None:
    """Serve ``handler`` on ``proto_addr`` and block until the server has shut down (gnet: ``Serve``).

    ``proto_addr`` is ``"tcp://host:port"``, ``"tcp4://..."``, ``"tcp6://..."``,
    ``"udp://..."``, ``"udp4://..."``, ``"udp6://..."`` or ``"unix:///path"``
    (``unix://@name`` for the abstract namespace; ``"host:port"`` alone means tcp). Options come from
    ``options`` with ``opts`` keywords applied on top.

    With ``tls=ctx`` (a server-side ``ssl.SSLContext``) every connection
    speaks TLS (TCP and Unix sockets): the loop runs the handshake and the
    record layer in memory (:mod:`reactor.tls`), handlers see plaintext, and
    ``on_opened`` runs once the handshake has completed. A handshake that
    fails or does not complete within ``tls_handshake_timeout`` closes that
    connection only, logged once (rate-limited): it gets no ``on_opened``
    and is never in ``count_connections``, but ``on_closed`` gets its
    ``ssl.SSLError`` or ``TimeoutError`` (``c.tls`` is None then).

    :raises TypeError: a wrong type where nothing could work, before anything
        is bound: a handler class instead of an instance, an object with none
        of the callbacks, a codec class or a non-codec, ``options`` that is
        not an :class:`Options`, an address that is not a str; an unknown option name;
        ``tls`` that is not an ``ssl.SSLContext``.
    :raises ValueError: an invalid option (before anything is bound); ``tls`` with a
        client-side context (``PROTOCOL_TLS_CLIENT``) or on a UDP address.
    :raises reactor.UnsupportedProtocolError: unknown network scheme.
    :raises reactor.InvalidNetworkAddressError: malformed address.
    :raises OSError: bind/listen failed (e.g. ``EADDRINUSE``).
    :raises reactor.WorkerError: with ``workers`` > 1, a worker process died
        (a worker's own exception, such as the ``OSError`` of its bind, is
        re-raised as it is).
    """
    o = resolve_options(handler, options, opts)
    if not isinstance(proto_addr, str):
        raise TypeError(f"proto_addr must be a str like 'tcp://127.0.0.1:9000', got {type(proto_addr).__name__} "
                        f"{proto_addr!r:.80}")
    network, address = parse_proto_addr(proto_addr)
    if o.tls is not None:
        check_context(o.tls, server_side=True, what="serve(tls=...)")
        if network.startswith("udp"):
            raise ValueError(
                f"serve(tls=...) is for stream sockets (tcp, unix), not {network!r}: DTLS is not supported"
            )
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
# --8<-- [end:serve]


def resolve_options(handler: object, options: object, opts: Any) -> Options:
    """``options`` with the ``opts`` keywords applied, checked and normalised; ``serve`` and ``Client`` share it.

    :raises TypeError: see :func:`serve`: a handler or codec of the wrong
        type (:func:`reactor.handler.check_handler`,
        :func:`reactor.codec.check_codec`), ``options`` not an
        :class:`Options`, an unknown option name.
    :raises ValueError: an invalid option value (:meth:`Options.validate`).
    :raises IoUringUnavailable: ``backend="io_uring"`` on a kernel that refuses io_uring.
    """
    check_handler(handler)
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a reactor.Options (or pass the options as keywords), "
                        f"got {type(options).__name__} {options!r:.80}")
    o = options if options is not None else Options()
    if opts:
        o = o.replace(**opts)
    check_codec(o.codec)
    o.validate()
    # "auto" is settled here, once, before anything is bound; "io_uring" on a
    # kernel that refuses it raises IoUringUnavailable here.
    return o.replace(read_buffer_cap=normalize_read_buffer_cap(o.read_buffer_cap),
                     backend=resolve_backend(o.backend, o.logger))


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

    def register(sup: Supervisor) -> Callable[[], None]:
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


# --8<-- [start:serve-internal]
def _serve(
    handler: Any,
    ln: Listener,
    o: Options,
    proto_addr: str,
    logger: logging.Logger,
    *,
    worker_id: int = 0,
    on_bound: Callable[[Listener, Engine], None] | None = None,
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
# --8<-- [end:serve-internal]


def stop(proto_addr: str, timeout: float | None = None) -> None:
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
    if engine is None or engine.shutdown_requested:
        raise ServerInShutdownError(f"no running server on {proto_addr!r}")
    engine.signal_shutdown()
    if engine.owns_current_thread():
        return
    if not engine.wait_stopped(timeout):
        raise TimeoutError(f"server on {proto_addr!r} did not stop within {timeout} s")
