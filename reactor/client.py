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

New in reactor:

* addresses in ``serve()``'s own form, ``dial("tcp://127.0.0.1:9000")``,
  or a ``(host, port)`` tuple (a ``BackgroundServer.addr``); gnet's
  ``dial("tcp", "127.0.0.1:9000")`` still works;
* :meth:`Client.connect` and :meth:`Client.request`, a blocking
  request/response helper for scripts and tests: a client built without
  a handler queues each connection's frames for a :class:`BlockingConn`,
  which the caller's thread reads with ``recv()``;
* using a client that is not started raises :class:`~reactor.errors.ClientNotStartedError`
  (a ``RuntimeError``, and the ``ServerInShutdownError`` it used to be).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket as _socket
import ssl
import sys
import threading
from typing import TYPE_CHECKING, Any, overload

from .codec import BuiltInFrameCodec
from .connection import Conn, UDPConn
from .errors import ClientNotStartedError, EngineShutdown, ServerInShutdownError, UnsupportedProtocolError
from .eventloop import EventLoop, shutdown_task
from .eventloop_et import loop_class
from .handler import Action, EventServer, complete_handler
from .internal import sockets, threads, unix
from .internal.netpoll import open_poller
from .internal.waitfd import WRITABLE, wait_fd
from .listener import parse_proto_addr
from .options import Options, ServeOptions, make_logger
from .server import Server, resolve_options
from .tls import check_context

if sys.version_info >= (3, 11):
    from typing import Self, Unpack
elif TYPE_CHECKING:  # 3.10: for type checkers only (they bundle typing_extensions); nothing at run time
    from typing_extensions import Self, Unpack

__all__ = ["DEFAULT_RECV_TIMEOUT", "BlockingConn", "Client"]

_DIAL_NETWORKS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix")
#: How long :meth:`BlockingConn.recv` waits for a frame unless told otherwise, in seconds.
DEFAULT_RECV_TIMEOUT = 10.0


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
    server-only ones are ignored) plus ``dial_timeout``. Use it as a context
    manager (``with reactor.Client(handler) as client:`` starts it, and
    stops it at the end), or call :meth:`start` and :meth:`stop`.

    Without a handler (``reactor.Client()``) the client queues the frames
    of each connection for the caller's thread: :meth:`connect` returns a
    :class:`BlockingConn` (``send``, ``recv``, ``request``), and
    :meth:`request` sends one request and returns one answer.
    """

    def __init__(self, handler: object | None = None, *, options: Options | None = None,
                 **opts: Unpack[ServeOptions]) -> None:
        """Check the handler and the options (``TypeError``/``ValueError`` as :func:`reactor.serve`); start nothing."""
        if handler is None:
            handler = _Inboxes()
        o = resolve_options(handler, options, opts)
        check_context(o.tls, server_side=False, what="Client(tls=...)")
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
        o = self._engine.opts
        poller = open_poller(self.logger, o.backend, o.read_buffer_cap, o.socket_send_buffer)
        loop = loop_class(o.edge_triggered, poller.backend)(self._engine, poller, None)  # type: ignore[arg-type]
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
        """Close every connection (each gets ``on_closed``), stop the loop, then ``on_shutdown`` (gnet: ``Stop``).

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

    def __enter__(self) -> Self:
        """Start the client (see :meth:`start`) and return it."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- connections ---------------------------------------------------------------------------
    @overload
    def dial(
        self, address: str | tuple[Any, ...], /, *, timeout: float | None = None,
        tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> Conn: ...

    @overload
    def dial(
        self, network: str, address: str | tuple[Any, ...], /, timeout: float | None = None, *,
        tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> Conn: ...

    def dial(
        self, address: str | tuple[Any, ...], address2: str | tuple[Any, ...] | None = None, /,
        timeout: float | None = None, *, tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> Conn:
        """Connect to ``address`` and serve the connection (gnet: ``Client.Dial``).

        ``address`` is in :func:`reactor.serve`'s form, ``"tcp://127.0.0.1:9000"``,
        ``"tcp6://[::1]:9000"``, ``"udp://127.0.0.1:53"``, ``"unix:///run/x.sock"``
        (``"127.0.0.1:9000"`` alone means tcp), or a ``(host, port)`` tuple
        (tcp; what ``socket`` and ``BackgroundServer.addr`` use). gnet's
        two-argument form ``dial("tcp", "127.0.0.1:9000")`` works too. Returns
        once the connection is registered and ``on_opened`` has run (not for
        UDP, which has no ``on_opened``, as in gnet).

        ``tls=ctx`` (a client-side ``ssl.SSLContext``, e.g.
        ``ssl.create_default_context()``; the client's ``tls`` option by
        default) runs a TLS handshake first, on the loop: ``dial`` returns
        once it has completed and ``on_opened`` has run, and raises its
        ``ssl.SSLError`` (a certificate that does not verify...) or a
        ``TimeoutError`` after ``tls_handshake_timeout``. ``server_hostname``
        is the name sent as SNI and checked against the certificate; it
        defaults to the address's host (required for a Unix socket when the
        context checks host names). Called from one of the client's own
        callbacks, ``dial`` cannot wait: it returns during the handshake, and
        ``on_opened`` follows it (writes made before are sent after it).

        :raises ConnectionRefusedError: (and other ``OSError``) the connect failed.
        :raises TimeoutError: no answer within ``timeout`` seconds
            (default: the ``dial_timeout`` option), or a TLS handshake not
            completed within ``tls_handshake_timeout``.
        :raises ssl.SSLError: the TLS handshake failed.
        :raises TypeError: ``tls`` is not an ``ssl.SSLContext``.
        :raises ValueError: a server-side ``tls`` context (``PROTOCOL_TLS_SERVER``),
            TLS over UDP, or no ``server_hostname`` where one is needed.
        :raises reactor.ClientNotStartedError: :meth:`start` was not called
            (a ``RuntimeError``; also a ``ServerInShutdownError``).
        :raises reactor.ServerInShutdownError: the client has stopped.
        :raises reactor.UnsupportedProtocolError: an unknown network.
        :raises reactor.InvalidNetworkAddressError: a malformed address.
        """
        network, addr = _dial_target(address, address2)
        return self._dial(network, addr, timeout, None, tls, server_hostname)

    def _dial(
        self, network: str, address: str, timeout: float | None, context: Any,
        tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> Conn:
        """:meth:`dial` once the address is parsed; ``context`` is set on the Conn before it is registered."""
        tls_setup = self._tls_setup(network, address, tls, server_hostname)
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
            return self._enroll_fd(fd, family, local, remote, udp=True, context=context)
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
        return self._enroll_fd(fd, family, local, remote, udp=False, context=context, tls=tls_setup)

    def _tls_setup(
        self, network: str, address: str, tls: object, server_hostname: str | None
    ) -> tuple[ssl.SSLContext, str | None] | None:
        """The context and SNI name a dial uses, checked before any socket exists; None without TLS."""
        ctx = check_context(tls if tls is not None else self.opts.tls, server_side=False, what="dial(tls=...)")
        if ctx is None:
            if server_hostname is not None:
                raise ValueError("dial(server_hostname=...) is only meaningful with tls=")
            return None
        if network.startswith("udp"):
            raise ValueError(f"dial(tls=...) is for stream sockets (tcp, unix), not {network!r}: DTLS is not supported")
        if server_hostname is None and network != "unix":
            host = address.rpartition(":")[0].strip("[]")
            server_hostname = host or None
        if server_hostname is None and ctx.check_hostname:
            raise ValueError(
                f"dial(tls=...) to {network}://{address} needs server_hostname=: the context checks the "
                "certificate's host name (check_hostname=True) and the address has none"
            )
        return ctx, server_hostname

    def connect(
        self, address: str | tuple[Any, ...], *, timeout: float | None = None,
        tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> BlockingConn:
        """Dial ``address`` (any form :meth:`dial` takes) for the caller's thread: a :class:`BlockingConn`.

        Only for a client built without a handler (``reactor.Client()``,
        with ``codec=`` to frame the answers): its loop queues each frame
        for :meth:`BlockingConn.recv`. ``timeout`` bounds the connect and is
        the connection's default ``recv`` timeout (:data:`DEFAULT_RECV_TIMEOUT`
        when None). ``tls`` and ``server_hostname`` as for :meth:`dial`.

        :raises TypeError: the client has a handler of its own (its ``react`` gets the frames).
        :raises reactor.ClientNotStartedError: the client is not started.
        """
        if not isinstance(self.handler, _Inboxes):
            raise TypeError(
                "connect() needs a Client built without a handler (reactor.Client(), which queues the frames "
                "for recv()); this one's handler gets them in react(): use dial()"
            )
        network, addr = _dial_target(address, None)
        inbox = _Inbox()
        c = self._dial(network, addr, timeout, inbox, tls, server_hostname)
        return BlockingConn(c, inbox, DEFAULT_RECV_TIMEOUT if timeout is None else timeout)

    def request(
        self, address: str | tuple[Any, ...], data: bytes, *, timeout: float | None = None,
        tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> bytes:
        """Connect to ``address``, send ``data`` (encoded by the codec), return the first frame back, close.

        For a client built without a handler (see :meth:`connect`); with the
        default codec, "the first frame" is whatever one read(2) brought.

        :raises TimeoutError: no answer within ``timeout`` seconds (:data:`DEFAULT_RECV_TIMEOUT` when None).
        :raises EOFError: the server closed the connection without answering.
        """
        with self.connect(address, timeout=timeout, tls=tls, server_hostname=server_hostname) as conn:
            return conn.request(data)

    def enroll(
        self, sock: _socket.socket, *, tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> Conn:
        """Adopt a connected stdlib socket: the client takes over its fd (gnet v2: ``Enroll``).

        The socket object is detached (it no longer owns the fd); from now on
        the connection is closed through ``Conn.close()`` or ``stop()``.

        ``tls=ctx`` (a client-side ``ssl.SSLContext``) runs a TLS handshake
        over the socket first, on the loop, as :meth:`dial` does: for a
        socket that reached its server through a proxy (HTTP ``CONNECT``) or
        after a plaintext ``STARTTLS`` exchange. ``enroll`` then returns once
        the handshake has completed and ``on_opened`` has run, or raises its
        ``ssl.SSLError``/``TimeoutError`` (the socket's fd is closed, and the
        handler's ``on_closed`` has had the error). Unlike :meth:`dial`, the
        client's ``tls`` option does not apply (whoever made the socket knows
        what it carries), and ``server_hostname`` is not taken from the peer's
        address, which may be a proxy's: it is required when the context
        checks host names.

        :raises ValueError: not a connected stream or datagram socket; an
            ``ssl.SSLSocket`` (its TLS session cannot be moved: enroll the
            plain socket with ``tls=``); TLS over UDP; ``server_hostname``
            missing where needed, or given without ``tls``.
        :raises TypeError: ``tls`` is not an ``ssl.SSLContext``.
        """
        self._check_running()
        if sock.type not in (_socket.SOCK_STREAM, _socket.SOCK_DGRAM):
            raise ValueError(f"cannot enroll a socket of type {sock.type!r}")
        if isinstance(sock, ssl.SSLSocket):
            raise ValueError("cannot enroll an ssl.SSLSocket: its TLS session lives in the socket object, not the fd; "
                             "enroll the plain socket with tls=ctx, server_hostname=... instead")
        try:
            remote = sock.getpeername()
        except OSError as e:
            raise ValueError(f"enroll() needs a connected socket: {e}") from e
        udp = sock.type == _socket.SOCK_DGRAM
        tls_setup = self._enroll_tls(tls, server_hostname, udp)  # checked before the socket is detached
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
        return self._enroll_fd(fd, family, local, remote, udp=udp, tls=tls_setup)

    @staticmethod
    def _enroll_tls(
        tls: object, server_hostname: str | None, udp: bool
    ) -> tuple[ssl.SSLContext, str | None] | None:
        """The context and SNI name :meth:`enroll` uses (None without TLS); only what was passed, nothing guessed."""
        ctx = check_context(tls, server_side=False, what="enroll(tls=...)")
        if ctx is None:
            if server_hostname is not None:
                raise ValueError("enroll(server_hostname=...) is only meaningful with tls=")
            return None
        if udp:
            raise ValueError("enroll(tls=...) is for stream sockets (tcp, unix), not UDP: DTLS is not supported")
        if server_hostname is None and ctx.check_hostname:
            raise ValueError(
                "enroll(tls=...) needs server_hostname=: the context checks the certificate's host name "
                "(check_hostname=True), and the peer's address may be a proxy's"
            )
        return ctx, server_hostname

    def _check_running(self) -> None:
        if not self._started:
            raise ClientNotStartedError(
                "the client is not started: call client.start() first, or use it as a context manager: "
                "with reactor.Client(handler) as client: client.dial('tcp://127.0.0.1:9000')"
            )
        if self._stopped or self._loop is None or self._loop.thread is None or not self._loop.thread.is_alive():
            raise ServerInShutdownError("the client has stopped (or never ran: on_init_complete returned SHUTDOWN)")

    def _enroll_fd(
        self, fd: int, family: int, local: unix.Address, remote: unix.Address, udp: bool, context: Any = None,
        tls: tuple[ssl.SSLContext, str | None] | None = None,
    ) -> Conn:
        loop = self._loop
        assert loop is not None
        c: Conn = UDPConn(fd, loop, local, remote, family, connected=True) if udp else Conn(fd, loop, local, remote)
        if context is not None:
            c.context = context  # before the loop can deliver a frame
        done = _Registration()
        if tls is not None:
            try:
                c.start_tls(tls[0], server_side=False, server_hostname=tls[1], waiter=done.settle)
            except BaseException:
                unix.close(fd)
                raise
        if threading.get_ident() == loop.tid:
            # Dialed from one of this loop's callbacks: waiting for a task
            # would wait for ourselves, so register right here.
            _register(loop, c, None)
            return c
        try:
            loop.poller.urgent_trigger(_register, loop, c, done)
        except ServerInShutdownError:
            unix.close(fd)
            raise
        done.wait(loop.thread)
        if done.error is not None:
            raise done.error
        return c


def _join_host_port(addr: tuple[Any, ...]) -> str:
    """``("::1", 9000)`` → ``"[::1]:9000"``; 4-tuples (IPv6 socket addresses) keep their first two items."""
    if len(addr) not in (2, 4) or not isinstance(addr[0], str) or not isinstance(addr[1], int):
        raise TypeError(f"a (host, port) tuple needs a str host and an int port, got {addr!r}")
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_target(address: object, address2: object) -> tuple[str, str]:
    """``(network, address)`` for the sockets: from ``"proto://addr"``, ``(host, port)`` or gnet's two arguments."""
    if address2 is not None:  # gnet's dial(network, address)
        network = address
        if not isinstance(network, str) or network not in _DIAL_NETWORKS:
            raise UnsupportedProtocolError(f"cannot dial network {network!r}; use one of {', '.join(_DIAL_NETWORKS)}")
        if isinstance(address2, tuple):
            return network, _join_host_port(address2)
        if not isinstance(address2, str):
            raise TypeError(f"address must be a str or a (host, port) tuple, got {type(address2).__name__}")
        if "://" in address2:
            named, addr = parse_proto_addr(address2)
            if named != network:
                raise UnsupportedProtocolError(f"dial({network!r}, {address2!r}): the address says {named!r}")
            return named, addr
        return network, address2
    if isinstance(address, tuple):
        return "tcp", _join_host_port(address)
    if not isinstance(address, str):
        raise TypeError(
            f"address must be 'proto://addr' (as serve() takes), 'host:port' or a (host, port) tuple, "
            f"got {type(address).__name__} {address!r:.80}"
        )
    if address in _DIAL_NETWORKS:
        raise TypeError(
            f"dial({address!r}) needs an address: dial('{address}://host:port') or dial({address!r}, 'host:port')"
        )
    network, addr = parse_proto_addr(address)
    if network not in _DIAL_NETWORKS:  # pragma: no cover - parse_proto_addr knows the same networks
        raise UnsupportedProtocolError(f"cannot dial network {network!r}")
    return network, addr


class _Inbox:
    """One :class:`BlockingConn`'s frames and end: filled on the loop thread, read on the caller's."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frames: collections.deque[bytes] = collections.deque()
        self.closed = False
        self.error: BaseException | None = None

    def put(self, frame: bytes) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def close(self, err: BaseException | None) -> None:
        with self.cond:
            self.closed = True
            self.error = err
            self.cond.notify_all()


class _Inboxes(EventServer):
    """The handler of a ``Client()`` built without one: each connection's frames go to its :class:`_Inbox`."""

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """Queue ``frame`` for the connection's :class:`BlockingConn`."""
        inbox = c.context
        if frame is not None and isinstance(inbox, _Inbox):
            inbox.put(frame)
        return None, Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """Tell the :class:`BlockingConn` (its ``recv`` raises once the queued frames are read)."""
        inbox = c.context
        if isinstance(inbox, _Inbox):
            inbox.close(err)
        return Action.NONE


class BlockingConn:
    """A client connection for the caller's thread: :meth:`send`, :meth:`recv` a frame, or :meth:`request` both.

    From :meth:`Client.connect`. The client's loop does the I/O and frames
    the input with the client's codec; this object only queues frames and
    waits for them, so it is safe from any thread (one reader at a time
    makes sense). A context manager: leaving the block closes the connection.
    """

    def __init__(self, conn: Conn, inbox: _Inbox, timeout: float) -> None:
        """Wrap ``conn``, whose frames the client's loop puts in ``inbox``; ``timeout``: the default for ``recv``."""
        #: The underlying :class:`reactor.Conn` (its thread-safe methods may be used too).
        self.conn = conn
        #: The default ``recv`` timeout, in seconds.
        self.timeout = timeout
        self._inbox = inbox

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the connection (encoded by the client's codec; ``Conn.async_write``).

        :raises EOFError: the connection is closed (or its error, if it failed).
        """
        self._raise_if_closed()
        self.conn.async_write(data)

    def recv(self, timeout: float | None = None) -> bytes:
        """The next frame the server sent, waiting up to ``timeout`` seconds (default: :attr:`timeout`).

        Frames that arrived before the connection closed are still returned
        in order; after them, the end is raised.

        :raises TimeoutError: no frame within ``timeout``.
        :raises EOFError: the server closed the connection (cleanly).
        :raises OSError: the connection failed (e.g. ``ConnectionResetError``).
        """
        inbox = self._inbox
        wait = self.timeout if timeout is None else timeout
        with inbox.cond:
            if not inbox.cond.wait_for(lambda: inbox.frames or inbox.closed, wait):
                raise TimeoutError(f"no frame from {self.conn.remote_addr!r} within {wait} s")
            if inbox.frames:
                return inbox.frames.popleft()
        self._raise_if_closed()
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, data: bytes, timeout: float | None = None) -> bytes:
        """:meth:`send` ``data``, then :meth:`recv` the answer (the next frame)."""
        self.send(data)
        return self.recv(timeout)

    @property
    def closed(self) -> bool:
        """Whether the connection has closed (frames may still be queued for :meth:`recv`)."""
        with self._inbox.cond:
            return self._inbox.closed

    def close(self, timeout: float | None = None) -> None:
        """Close the connection and wait (up to ``timeout``, default :attr:`timeout`) until the loop has closed it.

        Idempotent; does nothing once the client has stopped (it closed every connection).
        """
        if self.closed:
            return
        try:
            self.conn.close()
        except ServerInShutdownError:
            return
        inbox = self._inbox
        with inbox.cond:
            inbox.cond.wait_for(lambda: inbox.closed, self.timeout if timeout is None else timeout)

    def _raise_if_closed(self) -> None:
        inbox = self._inbox
        with inbox.cond:
            if not inbox.closed:
                return
            err = inbox.error
        if err is not None:
            raise err
        raise EOFError(f"the connection to {self.conn.remote_addr!r} is closed")

    def __enter__(self) -> Self:
        """The connection itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlockingConn {self.conn!r}>"


class _Registration:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: BaseException | None = None

    def settle(self, err: BaseException | None) -> None:
        """The TLS handshake ended (on the loop): ``dial`` returns, or raises ``err``."""
        self.error = err
        self.event.set()

    def wait(self, thread: threading.Thread | None) -> None:
        while not self.event.wait(0.2):
            if thread is None or not thread.is_alive():
                # The loop ended (a callback asked for SHUTDOWN) before it
                # ran our task; stop() will close the fd with the rest.
                raise ServerInShutdownError("the client's event loop has stopped")


def _register(loop: EventLoop, c: Conn, done: _Registration | None) -> None:
    handshaking = False
    try:
        if isinstance(c, UDPConn):
            loop.register_udp(c)
        else:
            loop.register(c)
        # A TLS connection registered and mid-handshake: the loop settles
        # ``done`` when the handshake ends (Conn.tls_settled).
        handshaking = c.opened and c.tls_handshaking()
    except EngineShutdown:
        raise
    except BaseException as e:
        if done is not None:
            done.error = e
        else:
            raise
    finally:
        if done is not None and not handshaking:
            done.event.set()


def _wait_connected(fd: int, timeout: float | None, what: str) -> None:
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
