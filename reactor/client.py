"""The client: outbound connections served by an event loop, like server connections.

gnet counterpart: ``client.go`` (v1.6.7: ``NewClient``, ``Start``, ``Stop``,
``Dial``) with gnet v2's fixes (``client_unix.go``: ``Enroll``, a ``Dial``
that returns once the connection is registered and ``OnOpen`` ran).

Differences from gnet v1, on purpose:

* ``dial`` connects without blocking the loop: a non-blocking ``connect(2)``
  in the caller's thread, then a wait for writability bounded by
  ``timeout`` (``Options.dial_timeout`` by default) and the verdict from
  SO_ERROR. A refused or unreachable peer raises the ``OSError`` at once
  (``ConnectionRefusedError``...); a silent one raises ``TimeoutError``.
  gnet v1 dials with Go's blocking ``net.Dial``.
* ``dial`` returns after the connection is registered with the loop and
  ``on_opened`` has run (gnet v1 returns before, so an immediate write can
  race the registration).
* ``enroll(sock)`` adopts an already connected stdlib socket (v2 ``Enroll``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket as _socket
import threading
from typing import Any, Optional

from .codec import BuiltInFrameCodec
from .connection import Conn, UDPConn
from .errors import EngineShutdown, ServerInShutdownError
from .eventloop import EventLoop, shutdown_task
from .eventloop_et import loop_class
from .handler import Action, complete_handler
from .internal import sockets, threads, unix
from .internal.netpoll import Poller
from .internal.waitfd import WRITABLE, wait_fd
from .options import Options, make_logger, normalize_read_buffer_cap
from .server import Server

__all__ = ["Client"]

_DIAL_NETWORKS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix")


class _ClientEngine:
    """What an EventLoop needs from its owner, for a client (gnet: the client struct's fields)."""

    def __init__(self, handler: Any, opts: Options, logger: logging.Logger) -> None:
        self.handler = complete_handler(handler)
        self.opts = opts
        self.logger = logger
        self.codec = opts.codec if opts.codec is not None else BuiltInFrameCodec()
        self.builtin_codec = type(self.codec) is BuiltInFrameCodec
        self.ln = None
        self.lb: list[EventLoop] = []
        self._shutdown = threading.Event()

    def signal_shutdown(self) -> None:
        self._shutdown.set()


class Client:
    """Dial connections and serve them on one event loop (gnet: ``Client``).

    ``Client(handler, **options)`` takes the same options as ``serve`` (the
    server-only ones are ignored) plus ``dial_timeout``.
    """

    def __init__(self, handler: Any, *, options: Optional[Options] = None, **opts: Any) -> None:
        o = options if options is not None else Options()
        if opts:
            o = o.replace(**opts)
        o.validate()
        o = o.replace(read_buffer_cap=normalize_read_buffer_cap(o.read_buffer_cap))
        self.opts = o
        self.logger, self._cleanup_logger = make_logger(o)
        self._engine = _ClientEngine(handler, o, self.logger)
        self.handler = self._engine.handler
        #: The client's one loop; its thread is ``_loop.thread`` once started.
        self._loop: EventLoop | None = None
        self._ticker_thread: threading.Thread | None = None
        self._ticker_cancel = threading.Event()
        self._started = False
        self._stopped = False
        self._finished = False
        self._finish_on_loop = False
        self._lock = threading.Lock()
        self._server: Server | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop (and the ticker) (gnet: ``Client.Start``).

        ``on_init_complete`` receives a :class:`Server` with ``addr=None``
        (gnet passes an empty ``Server{}``); returning SHUTDOWN stops nothing
        and only means the client is not started.
        """
        if self._started:
            raise RuntimeError("Client.start() called twice")
        self._started = True
        poller = Poller(self.logger)
        loop = loop_class(self._engine.opts.edge_triggered)(self._engine, poller, None)  # type: ignore[arg-type]
        self._engine.lb.append(loop)
        self._loop = loop
        self._server = Server(self._engine, 1)  # type: ignore[arg-type]
        if self.handler.on_init_complete(self._server) == Action.SHUTDOWN:
            self._stopped = self._finished = True  # never ran: nothing to stop, no on_shutdown
            poller.close()
            self._cleanup_logger()
            return
        loop.thread = threading.Thread(target=self._run, name="reactor-client-loop", daemon=True)
        threads.start_thread(loop.thread)
        if self.opts.ticker:
            self._ticker_thread = threading.Thread(
                target=loop.ticker, args=(self._ticker_cancel,), name="reactor-client-ticker", daemon=True
            )
            threads.start_thread(self._ticker_thread)

    def stop(self) -> None:
        """Close every connection (each gets ``on_closed``), stop the loop, then ``on_shutdown`` (gnet: ``Client.Stop``).

        Safe from any thread. Called from one of the client's own callbacks
        (the loop thread) it only asks the loop to stop and returns; the
        loop thread finishes the shutdown when it unwinds.
        """
        if not self._started:
            return
        with self._lock:
            if self._stopped:
                first = False
            else:
                self._stopped = first = True
        loop = self._loop
        assert loop is not None
        if first:
            self._ticker_cancel.set()
            try:
                loop.poller.urgent_trigger(shutdown_task)
            except ServerInShutdownError:
                pass
        if threading.get_ident() == loop.tid:
            self._finish_on_loop = True  # _run() calls _finish() after polling returns
            return
        if loop.thread is not None:
            loop.thread.join()
        self._finish()

    def _run(self) -> None:
        assert self._loop is not None
        self._loop.activate_sub_reactor()
        if self._finish_on_loop:
            self._finish()

    def _finish(self) -> None:
        """Release what the loop used and call on_shutdown, exactly once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        loop = self._loop
        assert loop is not None
        loop.discard_pending_registrations()
        loop.poller.close()
        if self._ticker_thread is not None and self._ticker_thread is not threading.current_thread():
            self._ticker_thread.join()
        try:
            self.handler.on_shutdown(self._server)
        except Exception:
            self.logger.exception("on_shutdown() raised")
        self._cleanup_logger()

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- connections ---------------------------------------------------------------------------
    def dial(self, network: str, address: str, timeout: Optional[float] = None) -> Conn:
        """Connect to ``address`` over ``network`` and serve the connection (gnet: ``Client.Dial``).

        ``network`` is ``tcp``/``tcp4``/``tcp6``/``unix``/``udp``/``udp4``/``udp6``
        and ``address`` is ``host:port`` or a Unix path. Returns once the
        connection is registered and ``on_opened`` has run (not for UDP,
        which has no ``on_opened``, as in gnet).

        :raises ConnectionRefusedError: (and other ``OSError``) the connect failed.
        :raises TimeoutError: no answer within ``timeout`` seconds.
        :raises reactor.ServerInShutdownError: the client is not running.
        """
        if network not in _DIAL_NETWORKS:
            from .errors import UnsupportedProtocolError

            raise UnsupportedProtocolError(f"cannot dial network {network!r}; use one of {', '.join(_DIAL_NETWORKS)}")
        self._check_running()
        if timeout is None:
            timeout = self.opts.dial_timeout
        opts = self.opts
        sock_opts: list[sockets.SockOpt] = []
        if opts.socket_recv_buffer > 0:
            sock_opts.append(sockets.SockOpt(sockets.set_recv_buffer, opts.socket_recv_buffer))
        if opts.socket_send_buffer > 0:
            sock_opts.append(sockets.SockOpt(sockets.set_send_buffer, opts.socket_send_buffer))
        if network.startswith("udp"):
            fd, local, family = sockets.udp_socket(network, address, True, sock_opts)
            remote = unix.getpeername(fd)
            return self._enroll_fd(fd, family, local, remote, udp=True)
        if network == "unix":
            path = "\0" + address[1:] if address.startswith("@") else address
            fd, _, family = sockets.unix_socket(path, False, sock_opts)
        else:
            if opts.tcp_no_delay:
                sock_opts.append(sockets.SockOpt(sockets.set_no_delay, 1))
            fd, _, family = sockets.tcp_socket(network, address, False, sock_opts)
        try:
            _wait_connected(fd, timeout, f"{network}://{address}")
            if opts.tcp_keepalive > 0 and network.startswith("tcp"):
                sockets.set_keepalive(fd, int(opts.tcp_keepalive))
            local, remote = unix.getsockname(fd), unix.getpeername(fd)
        except BaseException:
            unix.close(fd)
            raise
        return self._enroll_fd(fd, family, local, remote, udp=False)

    def enroll(self, sock: _socket.socket) -> Conn:
        """Adopt a connected stdlib socket: the client takes over its fd (gnet v2: ``Enroll``).

        The socket object is detached (it no longer owns the fd); from now on
        the connection is closed through ``Conn.close()`` or ``stop()``.
        """
        self._check_running()
        if sock.type not in (_socket.SOCK_STREAM, _socket.SOCK_DGRAM):
            raise ValueError(f"cannot enroll a socket of type {sock.type!r}")
        try:
            remote = sock.getpeername()
        except OSError as e:
            raise ValueError(f"enroll() needs a connected socket: {e}") from e
        udp = sock.type == _socket.SOCK_DGRAM
        family = int(sock.family)
        fd = sock.detach()
        try:
            flags = unix.fcntl(fd, unix.F_GETFL)
            unix.fcntl(fd, unix.F_SETFL, flags | unix.O_NONBLOCK)
            unix.fcntl(fd, unix.F_SETFD, unix.fcntl(fd, unix.F_GETFD) | unix.FD_CLOEXEC)
            local = unix.getsockname(fd)
            remote = unix.getpeername(fd)
        except BaseException:
            unix.close(fd)
            raise
        return self._enroll_fd(fd, family, local, remote, udp=udp)

    def _check_running(self) -> None:
        if (
            not self._started
            or self._stopped
            or self._loop is None
            or self._loop.thread is None
            or not self._loop.thread.is_alive()
        ):
            raise ServerInShutdownError("the client is not running: call start() first")

    def _enroll_fd(self, fd: int, family: int, local: unix.Address, remote: unix.Address, udp: bool) -> Conn:
        loop = self._loop
        assert loop is not None
        c: Conn = UDPConn(fd, loop, local, remote, family, connected=True) if udp else Conn(fd, loop, local, remote)
        if threading.get_ident() == loop.tid:
            # Dialed from one of this loop's callbacks: waiting for a task
            # would wait for ourselves, so register right here.
            _register(loop, c, None)
            return c
        done = _Registration()
        try:
            loop.poller.urgent_trigger(_register, loop, c, done)
        except ServerInShutdownError:
            unix.close(fd)
            raise
        done.wait(loop.thread)
        if done.error is not None:
            raise done.error
        return c


class _Registration:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: Optional[BaseException] = None

    def wait(self, thread: Optional[threading.Thread]) -> None:
        while not self.event.wait(0.2):
            if thread is None or not thread.is_alive():
                # The loop ended (a callback asked for SHUTDOWN) before it
                # ran our task; stop() will close the fd with the rest.
                raise ServerInShutdownError("the client's event loop has stopped")


def _register(loop: EventLoop, c: Conn, done: Optional[_Registration]) -> None:
    try:
        if isinstance(c, UDPConn):
            loop.register_udp(c)
        else:
            loop.register(c)
    except EngineShutdown:
        raise
    except BaseException as e:
        if done is not None:
            done.error = e
        else:
            raise
    finally:
        if done is not None:
            done.event.set()


def _wait_connected(fd: int, timeout: Optional[float], what: str) -> None:
    """Wait for a non-blocking connect to finish; raise its error (SO_ERROR) or TimeoutError.

    The socket becomes writable when the handshake completed or failed;
    SO_ERROR then says which (0, or the errno connect(2) would have returned).
    """
    if not wait_fd(fd, WRITABLE, timeout):
        raise TimeoutError(errno.ETIMEDOUT, f"connect to {what} timed out after {timeout} s")
    err = unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
    if err:
        assert isinstance(err, int)
        exc = OSError(err, os.strerror(err))
        if hasattr(exc, "add_note"):
            exc.add_note(f"in syscall connect to {what}")
        raise exc
