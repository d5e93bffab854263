"""Server options: one dataclass, every field also a keyword of ``serve()``.

gnet counterpart: ``options.go`` (v1.6.7: ``Options`` and the ``WithX``
functions). Go's functional options become dataclass fields; ``serve(h, addr,
options=Options(...), multicore=True)`` applies the keywords on top of the
dataclass, the way ``WithOptions`` followed by ``WithMulticore`` would.

Every value is checked in :meth:`Options.validate` before anything is bound,
and a bad value raises ``ValueError`` naming the option.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from .load_balancer import LoadBalancing

if TYPE_CHECKING:
    from .codec import ICodec

__all__ = [
    "ASYNC_WRITE_LIMIT_FACTOR",
    "BACKENDS",
    "BACKEND_ENV",
    "Backend",
    "DEFAULT_ASYNC_WRITE_LIMIT",
    "DEFAULT_READ_BUFFER_CAP",
    "DEFAULT_TLS_HANDSHAKE_TIMEOUT",
    "DEFAULT_WRITE_BUFFER_CAP",
    "MAX_EVENT_LOOPS",
    "MAX_WORKERS",
    "Options",
    "ServeOptions",
    "default_backend",
    "make_logger",
    "normalize_read_buffer_cap",
]

#: gnet's ``ringbuffer.MaxStreamBufferCap``: the read buffer size per loop.
DEFAULT_READ_BUFFER_CAP = 64 * 1024
#: New in reactor: the outbound high-water mark per connection (see ``write_buffer_cap``).
DEFAULT_WRITE_BUFFER_CAP = 4 * 1024 * 1024
#: New in reactor: ``async_write_limit`` defaults to this many times ``write_buffer_cap`` ...
ASYNC_WRITE_LIMIT_FACTOR = 4
#: ... and to at least this (16 MiB), also when ``write_buffer_cap`` is 0. The
#: hard limit stops runaway producers; a fire-and-forget producer whose flow
#: is bounded some other way (a small cap pausing the peer's input, say)
#: must not trip over it.
DEFAULT_ASYNC_WRITE_LIMIT = ASYNC_WRITE_LIMIT_FACTOR * DEFAULT_WRITE_BUFFER_CAP
#: Default per-event I/O budget in edge-triggered mode (gnet v2: ``EdgeTriggeredIOChunk``, 1 MiB).
DEFAULT_EDGE_TRIGGERED_IO_CHUNK = 1024 * 1024
#: The values of the ``backend`` option (reactor.internal.uring.BACKENDS).
Backend = Literal["epoll", "io_uring", "auto"]
BACKENDS: tuple[str, ...] = ("epoll", "io_uring", "auto")
#: The environment variable that sets the default ``backend``.
BACKEND_ENV = "REACTOR_BACKEND"


def default_backend() -> Backend:
    """The ``backend`` option's default: ``$REACTOR_BACKEND`` if set (validated with the other options), else epoll."""
    return os.environ.get(BACKEND_ENV, "") or "epoll"  # type: ignore[return-value]
#: gnet refuses more than 10,000 locked OS threads (``ErrTooManyEventLoopThreads``);
#: every reactor loop is an OS thread, so the limit always applies.
MAX_EVENT_LOOPS = 10_000
#: A sanity bound on worker processes: far more than cores is a typo, not a plan.
MAX_WORKERS = 1024
#: The kernel's limit for TCP_KEEPIDLE / TCP_KEEPINTVL (MAX_TCP_KEEPIDLE in include/net/tcp.h).
MAX_TCP_KEEPALIVE = 32767
#: Seconds a TLS handshake may take from the connection's registration (``tls_handshake_timeout``).
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0


def normalize_read_buffer_cap(cap: int) -> int:
    """gnet's rule: <=0 → 64 KiB, <=1 KiB → 1 KiB, otherwise rounded up to a power of two."""
    if cap <= 0:
        return DEFAULT_READ_BUFFER_CAP
    if cap <= 1024:
        return 1024
    return 1 << (cap - 1).bit_length()


@dataclasses.dataclass
class Options:
    """Everything ``serve()`` can be told (gnet: ``Options``)."""

    #: Run one event loop per CPU instead of one (ignored when ``num_event_loop`` > 0).
    #: The loops are threads of one process: their Python code takes turns on
    #: the GIL, so for Python-heavy requests more loops cost more CPU per
    #: request, not less (docs/multicore.md); ``workers`` uses several cores.
    multicore: bool = False
    #: Exact number of event loops; overrides ``multicore`` when > 0.
    num_event_loop: int = 0
    #: How the main reactor hands connections to loops (main-reactor mode only).
    lb: LoadBalancing = LoadBalancing.ROUND_ROBIN
    #: Worker processes (new in reactor): > 1 forks that many copies of the
    #: server, each with its own SO_REUSEPORT listener on the same address, so
    #: that Python code runs on several cores (see :mod:`reactor.workers`).
    #: tcp and udp only.
    workers: int = 1
    #: SO_REUSEPORT: N loops each with its own listening socket, balanced by the
    #: kernel, instead of one main reactor accepting for N sub-reactors.
    reuse_port: bool = False
    #: SO_REUSEADDR on the listener.
    reuse_addr: bool = False
    #: TCP keep-alive idle time and probe interval in seconds on accepted
    #: connections (0: off). Whole seconds, as the kernel takes them; at least 1.
    tcp_keepalive: float = 0.0
    #: TCP_NODELAY (Nagle off) on TCP listeners, inherited by accepted sockets.
    tcp_no_delay: bool = True
    #: SO_RCVBUF / SO_SNDBUF for the listener (inherited by accepted sockets); 0: kernel default.
    socket_recv_buffer: int = 0
    socket_send_buffer: int = 0
    #: Bytes read from one socket per readable event (the per-loop read buffer);
    #: normalised like gnet's (<=0 → 64 KiB, min 1 KiB, power of two).
    read_buffer_cap: int = DEFAULT_READ_BUFFER_CAP
    #: Outbound high-water mark per connection: above it the connection stops
    #: being read until its outbound buffer has drained to half of it. gnet's
    #: outbound buffer is unbounded (a slow reader grows it until OOM:
    #: panjf2000/gnet#420, #533). 0 disables the limit.
    write_buffer_cap: int = DEFAULT_WRITE_BUFFER_CAP
    #: The most output a connection may have waiting (outbound buffer plus
    #: ``async_write`` calls queued for its loop, counted when queued) before
    #: ``Conn.async_write`` refuses more with ``WriteBufferFullError``.
    #: ``write_buffer_cap`` is the soft mark (``async_write`` returns False
    #: above it, ``Conn.wait_writable`` waits for half of it); this is the hard
    #: one, for producers that ignore the soft one. None: 4 x
    #: ``write_buffer_cap`` but at least 16 MiB (``ASYNC_WRITE_LIMIT_FACTOR``,
    #: ``DEFAULT_ASYNC_WRITE_LIMIT``), so 16 MiB with the defaults. 0: no
    #: limit. gnet v1 and v2 queue without bound.
    async_write_limit: int | None = None
    #: Pin event loop i to CPU i (mod the CPUs available). Python threads are
    #: already OS threads, so this is what gnet's LockOSThread amounts to here.
    lock_os_thread: bool = False
    #: Call the handler's ``tick`` on a ticker thread.
    ticker: bool = False
    #: Frames the byte stream; None: the built-in whole-buffer codec.
    codec: Any | None = None
    #: Log to this file (with ``log_level``) in addition to the "reactor" logger's handlers.
    log_path: str = ""
    #: Level of the "reactor" logger while the server runs (a ``logging`` level or its name).
    log_level: int | str = logging.INFO
    #: Use this logger instead of ``logging.getLogger("reactor")``.
    logger: logging.Logger | None = None
    #: gnet v2's edge-triggered mode: EPOLLET registration, reads and writes
    #: loop until EAGAIN or ``edge_triggered_io_chunk`` bytes per event.
    edge_triggered: bool = False
    #: Per-event read/write budget in edge-triggered mode (fairness between connections).
    edge_triggered_io_chunk: int = DEFAULT_EDGE_TRIGGERED_IO_CHUNK
    #: Close a connection after this many seconds without a decoded frame and
    #: without output progress (0: never). A slowloris peer that trickles a
    #: request one byte at a time never completes a frame, so it is closed.
    idle_timeout: float = 0.0
    #: Client only: seconds ``Client.dial`` waits for a connection to be established.
    dial_timeout: float = 10.0
    #: TLS (new; gnet has none): a server-side ``ssl.SSLContext`` makes ``serve``
    #: speak TLS on every connection (``PROTOCOL_TLS_SERVER`` or
    #: ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)``, with
    #: ``load_cert_chain``); handlers see plaintext, and ``on_opened`` runs once
    #: the handshake has completed. For a :class:`reactor.Client`, a client-side
    #: context used by every ``dial`` that does not pass its own. SNI and ALPN
    #: come from the context (``sni_callback``, ``set_alpn_protocols``). TCP and
    #: Unix sockets only. See :mod:`reactor.tls`.
    tls: ssl.SSLContext | None = None
    #: Seconds a TLS handshake may take before the connection is closed with
    #: a ``TimeoutError`` (a peer that connects and never speaks, or stalls).
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT
    #: The kernel interface the event loops drive: ``"epoll"`` (gnet's, the
    #: default), ``"io_uring"`` (completions: recv requests instead of
    #: ``read(2)`` calls; raises ``IoUringUnavailable`` where the kernel
    #: refuses it) or ``"auto"`` (io_uring where available, else epoll with one
    #: log line). See :mod:`reactor.internal.uring`. The default can be set for
    #: a whole process with the environment variable ``REACTOR_BACKEND``, as
    #: libuv's ``UV_USE_IO_URING``; a test suite runs itself on both that way.
    backend: Backend = dataclasses.field(default_factory=lambda: default_backend())

    def replace(self, **changes: Any) -> Options:
        """A copy with ``changes`` applied; unknown names raise ``TypeError`` listing the valid ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid option (before anything is bound).

        :raises TypeError: ``tls`` is not an ``ssl.SSLContext`` (which side it is for is
            checked by ``serve`` and ``Client``, which know the side).
        """
        if self.tls is not None and not isinstance(self.tls, ssl.SSLContext):
            raise TypeError(f"option tls must be an ssl.SSLContext (or None), got {type(self.tls).__name__} "
                            f"{self.tls!r:.80}")
        if (
            not isinstance(self.tls_handshake_timeout, (int, float))
            or isinstance(self.tls_handshake_timeout, bool)
            or not 0 < self.tls_handshake_timeout < float("inf")
        ):
            raise ValueError(f"option tls_handshake_timeout must be a positive number of seconds, "
                             f"got {self.tls_handshake_timeout!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"option backend must be one of {', '.join(map(repr, BACKENDS))}, got {self.backend!r}")
        for name in ("multicore", "reuse_port", "reuse_addr", "tcp_no_delay", "lock_os_thread", "ticker",
                     "edge_triggered"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"option {name} must be a bool, got {getattr(self, name)!r}")
        for name in ("num_event_loop", "socket_recv_buffer", "socket_send_buffer", "read_buffer_cap",
                     "write_buffer_cap", "edge_triggered_io_chunk", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"option {name} must be an int, got {value!r}")
        for name in ("num_event_loop", "socket_recv_buffer", "socket_send_buffer", "write_buffer_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"option {name} must be >= 0, got {getattr(self, name)}")
        limit = self.async_write_limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"option async_write_limit must be None (the default), 0 (no limit) or bytes > 0, "
                             f"got {limit!r}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"option workers must be 1-{MAX_WORKERS} processes, got {self.workers}")
        if self.num_event_loop > MAX_EVENT_LOOPS:
            from .errors import TooManyEventLoopThreadsError

            raise TooManyEventLoopThreadsError(
                f"option num_event_loop={self.num_event_loop} exceeds the limit of {MAX_EVENT_LOOPS} "
                "event-loop threads"
            )
        if (
            not isinstance(self.idle_timeout, (int, float))
            or isinstance(self.idle_timeout, bool)
            or not 0 <= self.idle_timeout < float("inf")
        ):
            raise ValueError(f"option idle_timeout must be >= 0 seconds (0: off), got {self.idle_timeout!r}")
        if (
            not isinstance(self.dial_timeout, (int, float))
            or isinstance(self.dial_timeout, bool)
            or self.dial_timeout <= 0
        ):
            raise ValueError(f"option dial_timeout must be a positive number of seconds, got {self.dial_timeout!r}")
        if self.edge_triggered_io_chunk <= 0:
            raise ValueError(f"option edge_triggered_io_chunk must be > 0, got {self.edge_triggered_io_chunk}")
        try:
            if isinstance(self.lb, bool):
                raise ValueError
            LoadBalancing(self.lb)
        except ValueError:
            raise ValueError(
                f"option lb must be a reactor.LoadBalancing value, got {self.lb!r}"
            ) from None
        if not isinstance(self.tcp_keepalive, (int, float)) or isinstance(self.tcp_keepalive, bool):
            raise ValueError(f"option tcp_keepalive must be a number of seconds, got {self.tcp_keepalive!r}")
        if not (self.tcp_keepalive == 0 or 1 <= self.tcp_keepalive <= MAX_TCP_KEEPALIVE):
            # gnet logs "invalid time duration" and silently skips keep-alive
            # for < 1 s; refusing up front is clearer. NaN fails every
            # comparison and lands here too.
            raise ValueError(
                f"option tcp_keepalive must be 0 (off) or 1-{MAX_TCP_KEEPALIVE} seconds, got {self.tcp_keepalive!r}"
            )
        if self.codec is not None and not (hasattr(self.codec, "encode") and hasattr(self.codec, "decode")):
            raise ValueError(f"option codec must have encode(c, data) and decode(c) methods, got {self.codec!r}")
        if self.logger is not None and not isinstance(self.logger, logging.Logger):
            raise ValueError(f"option logger must be a logging.Logger, got {self.logger!r}")
        if isinstance(self.log_level, str):
            if not isinstance(logging.getLevelName(self.log_level.upper()), int):
                raise ValueError(f"option log_level: unknown level name {self.log_level!r}")
        elif not isinstance(self.log_level, int) or isinstance(self.log_level, bool):
            raise ValueError(f"option log_level must be a logging level, got {self.log_level!r}")
        if not isinstance(self.log_path, (str, os.PathLike)):
            raise ValueError(f"option log_path must be a path, got {self.log_path!r}")

    def async_write_limit_bytes(self) -> int:
        """The effective ``async_write_limit``: the option, or its default from ``write_buffer_cap``; 0: none."""
        if self.async_write_limit is not None:
            return self.async_write_limit
        return max(ASYNC_WRITE_LIMIT_FACTOR * self.write_buffer_cap, DEFAULT_ASYNC_WRITE_LIMIT)

    def num_loops(self) -> int:
        """Effective number of event loops (gnet: the computation at the top of ``serve``)."""
        if self.num_event_loop > 0:
            return self.num_event_loop
        if self.multicore:
            return len(os.sched_getaffinity(0)) or 1
        return 1


def make_logger(opts: Options) -> tuple[logging.Logger, Any]:
    """The logger a server uses, and a cleanup callable to run when it stops.

    gnet: the logging set-up in ``Serve``. An explicit ``logger`` wins;
    otherwise it is ``logging.getLogger("reactor")``, and ``log_path`` adds a
    file handler at ``log_level`` for the server's lifetime (removed and
    closed by the cleanup, so repeated serve/stop cycles leak no fds).
    """
    if opts.logger is not None:
        return opts.logger, lambda: None
    logger = logging.getLogger("reactor")
    level = opts.log_level
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if not opts.log_path:
        return logger, lambda: None
    handler = logging.FileHandler(os.fspath(opts.log_path))
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)

    def cleanup() -> None:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)

    return logger, cleanup


class ServeOptions(TypedDict, total=False):
    """The keywords ``serve()``, ``Client()`` and ``serve_in_background()`` take: :class:`Options`' fields, typed.

    For type checkers only (``**opts: Unpack[ServeOptions]``): a misspelt
    option or a value of the wrong type is reported before the code runs.
    At run time :meth:`Options.replace` and :meth:`Options.validate` check
    the same things. Keep it in step with :class:`Options`
    (tests/unit/test_typing.py compares the two).
    """

    multicore: bool
    num_event_loop: int
    lb: LoadBalancing
    workers: int
    reuse_port: bool
    reuse_addr: bool
    tcp_keepalive: float
    tcp_no_delay: bool
    socket_recv_buffer: int
    socket_send_buffer: int
    read_buffer_cap: int
    write_buffer_cap: int
    async_write_limit: int | None
    lock_os_thread: bool
    ticker: bool
    codec: ICodec | None
    log_path: str
    log_level: int | str
    logger: logging.Logger | None
    edge_triggered: bool
    edge_triggered_io_chunk: int
    idle_timeout: float
    dial_timeout: float
    tls: ssl.SSLContext | None
    tls_handshake_timeout: float
    backend: Backend
