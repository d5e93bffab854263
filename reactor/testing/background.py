"""The background runner: :func:`serve_in_background` and the :class:`BackgroundServer` it returns.

:func:`serve_in_background` runs :func:`reactor.serve` on a daemon thread
and returns once the listener is bound. The engine serves the proxies of
:mod:`reactor.testing.proxies` in place of the user's handler and codec;
they record what the callbacks raise and the results the engine refuses,
so that :meth:`BackgroundServer.stop` can re-raise the first of them in the test.

Typing: ``BackgroundServer`` is generic over its handler
(``serve_in_background(Echo())`` is a ``BackgroundServer[Echo]`` whose
``handler`` is an ``Echo``), its options are :class:`reactor.options.ServeOptions`,
and ``host``/``port``/``url`` are plain ``str``/``int``/``str``: they raise
a ``ValueError`` on a server that has none (a Unix socket; ``url`` on UDP too)
instead of returning None, so that a TCP test needs no ``assert srv.port is not None``.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..codec import BuiltInFrameCodec
from ..connection import Conn
from ..internal import threads
from ..options import Options, ServeOptions
from ..server import Server, resolve_options, serve
from .proxies import CodecProxy, HandlerProxy, Recorder
from .waiting import DEFAULT_TIMEOUT

if sys.version_info >= (3, 11):
    from typing import Self, Unpack
elif TYPE_CHECKING:  # 3.10: for type checkers only (they bundle typing_extensions); nothing at run time
    from typing_extensions import Self, Unpack

__all__ = ["BackgroundServer", "ServerFactory", "serve_in_background"]

#: The handler type a :class:`BackgroundServer` serves.
H = TypeVar("H")


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class BackgroundServer(Generic[H]):
    """A reactor server running on background threads (see :func:`serve_in_background`).

    Attributes:

    * ``handler``: the handler as given (typed: ``BackgroundServer[H]`` has an ``H``).
    * ``server``: the :class:`reactor.Server` (what ``on_init_complete`` received).
    * ``addr``: the real bound address, stdlib shape: ``("127.0.0.1", 43121)``,
      ``("::1", 43121, 0, 0)`` or a Unix socket path; pass it to
      ``socket.create_connection`` / ``socket.connect`` as is.
    * ``host``, ``port``: from ``addr``; a ``ValueError`` for a Unix socket server.
    * ``url``: ``"http://127.0.0.1:43121"`` (``http://[::1]:...`` for IPv6,
      ``https://`` with ``tls=``); a ``ValueError`` for Unix and UDP servers.
    * ``tls``: the server's ``ssl.SSLContext`` (``tls=`` option), or None.
    * ``network``: ``"tcp"``, ``"tcp6"``, ``"udp"``, ``"unix"``... as requested.
    * ``proto_addr``: the real address in ``serve()``'s form, e.g. ``"tcp://127.0.0.1:43121"``.
    * ``connections``: a snapshot list of the open :class:`reactor.Conn` objects.
    * ``errors``: the errors recorded so far and not yet re-raised: exceptions
      callbacks raised, and a ``TypeError`` for each result the engine refused.

    Attributes the server does not have are looked up on the handler, so
    ``srv.received()`` means ``srv.handler.received()``, and set on it if it
    has them (``srv.fail_at_stop = False`` sets ``srv.handler.fail_at_stop``).
    ``url_for("/path")`` is ``url + "/path"``.
    """

    def __init__(
        self,
        handler: H,
        proto_addr: str = "tcp://127.0.0.1:0",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        raise_errors: bool = True,
        options: Options | None = None,
        **opts: Unpack[ServeOptions],
    ) -> None:
        """Start ``handler`` (see :func:`serve_in_background`, which takes the same arguments)."""
        self._recorder = Recorder()
        self.handler: H = handler
        self.requested_addr = proto_addr
        self.network = proto_addr.partition("://")[0] if "://" in proto_addr else "tcp"
        self._raise_recorded = raise_errors
        self._lock = threading.Lock()  # guards _serve_error
        self._serve_error: BaseException | None = None
        self._stopped = False
        self._timeout = timeout
        kwargs: dict[str, Any] = dict(opts)
        if options is not None:
            kwargs["options"] = options
        self.tls: Any = kwargs["tls"] if "tls" in kwargs else getattr(options, "tls", None)
        codec = self._custom_codec(kwargs)
        # serve()'s own up-front checks (a handler class, no callbacks at all, a
        # codec class...), run here too: the proxy below would hide the handler.
        resolve_options(handler, options, opts)
        raw = codec is None or self.network.startswith("udp")
        proxy = HandlerProxy.wrapping(handler, self._recorder, raw_react=raw)
        if codec is not None:
            kwargs["codec"] = CodecProxy(codec, self._recorder)
        self._thread = threading.Thread(
            target=self._run, args=(proxy, proto_addr, kwargs), name="reactor-testing-serve", daemon=True
        )
        self._start()
        self._delegating = True  # see __setattr__

    # --- start / stop -------------------------------------------------------------------------------
    @staticmethod
    def _custom_codec(kwargs: dict[str, Any]) -> Any:
        """The codec to wrap in a :class:`CodecProxy`: one given and not the built-in one; else None."""
        codec = kwargs.get("codec")
        if codec is None and kwargs.get("options") is not None:
            codec = getattr(kwargs["options"], "codec", None)
        if codec is None or type(codec) is BuiltInFrameCodec:
            return None
        return codec

    def _run(self, proxy: HandlerProxy, proto_addr: str, options: dict[str, Any]) -> None:
        try:
            serve(proxy, proto_addr, **options)
        except BaseException as e:  # noqa: BLE001 - kept, and raised in the test by stop()
            with self._lock:
                self._serve_error = e
        finally:
            self._recorder.ready.set()

    def _start(self) -> None:
        threads.start_thread(self._thread)
        if not self._recorder.ready.wait(self._timeout):
            # Bound to never happen; do not leave a half-started server behind.
            if self.server is not None:
                self.server.stop()
            self._thread.join(self._timeout)
            raise TimeoutError(f"reactor server on {self.requested_addr!r} did not start within {self._timeout} s")
        if self.server is None or self._serve_error is not None:
            # serve() failed before being ready: EADDRINUSE, a bad option, on_init_complete raised...
            self._thread.join(self._timeout)
            self._stopped = True
            with self._lock:
                err, self._serve_error = self._serve_error, None
            if err is not None:
                raise err
            raise RuntimeError("serve() returned before the server was ready")  # pragma: no cover

    @property
    def running(self) -> bool:
        """True until the server has stopped (by :meth:`stop` or by an ``Action.SHUTDOWN``)."""
        return self._thread.is_alive()

    @property
    def server(self) -> Server | None:
        """The :class:`reactor.Server` (what ``on_init_complete`` received); None until then."""
        return self._recorder.server

    def _on_own_thread(self) -> bool:
        """The serve() thread, or a loop or ticker thread inside one of this server's callbacks."""
        return threading.current_thread() is self._thread or self._recorder.on_callback_thread()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server, join its threads, and re-raise what went wrong on them.

        Idempotent: only the first call stops and raises. Raises, in this
        order of preference, the exception ``serve()`` itself raised, or the
        first exception a callback raised (with a note counting the others);
        then, if the handler has a ``check_at_stop()`` method, what it raises
        (:class:`~reactor.testing.HTTPHandler`: the unexpected requests).
        Called from one of the server's own threads (a callback), it only
        signals the shutdown. Once stopped, a handler's ``stop_helpers(timeout)``
        method, if it has one, is called to join threads of its own
        (:class:`~reactor.testing.FaultHandler`'s timer).

        :raises TimeoutError: the server did not stop within ``timeout``
            seconds (default: the ``timeout`` given at start).
        """
        if self._stopped:
            return
        if self.server is not None:
            self.server.stop()
        if self._on_own_thread():
            return  # joining here would wait for ourselves
        timeout = self._timeout if timeout is None else timeout
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(
                f"reactor server on {self.proto_addr!r} did not stop within {timeout} s "
                "(a callback blocking its event loop?)"
            )
        self._stopped = True
        stop_helpers = getattr(self.handler, "stop_helpers", None)
        if callable(stop_helpers):
            stop_helpers(timeout)
        check_at_stop = getattr(self.handler, "check_at_stop", None)
        try:
            self.raise_errors()
        finally:
            if callable(check_at_stop):
                check_at_stop()  # HTTPHandler: unexpected requests, failed expectations

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> Self:
        """The server itself (it is already running)."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Raised while the block's own exception (if any) is being handled, so
        # the callback's exception is chained after it: both are shown.
        self.stop()

    # --- errors -------------------------------------------------------------------------------------------
    @property
    def errors(self) -> list[BaseException]:
        """The errors recorded and not re-raised or taken yet: callback exceptions, and refused results.

        A refused result is what the engine logs and closes the connection
        for: a callback returning something other than ``(out, action)``
        (``react`` returning bare bytes, ``on_opened`` a str, ``tick`` a
        float), ``out`` that cannot be written (a str with the built-in
        codec), a codec's ``encode`` returning something other than bytes.
        Each is the ``TypeError`` the engine closes the connection with.
        """
        return self._recorder.errors()

    def take_errors(self) -> list[BaseException]:
        """Return the recorded errors (see :attr:`errors`) and forget them: for tests that provoke one on purpose."""
        return [e.error for e in self._recorder.take()]

    @property
    def raises_errors(self) -> bool:
        """Whether :meth:`stop` re-raises recorded errors (``raise_errors=False`` at start turns it off)."""
        return self._raise_recorded

    def raise_errors(self) -> None:
        """Raise (and forget) the exception ``serve()`` raised, else the first recorded error.

        With ``raise_errors=False`` only ``serve()``'s own exception is raised:
        the recorded errors stay in :attr:`errors` for the test to inspect.
        """
        recorded = self._recorder.take() if self._raise_recorded else []
        with self._lock:
            serve_error, self._serve_error = self._serve_error, None
        if serve_error is None and not recorded:
            return
        if serve_error is not None:
            first: BaseException = serve_error
            where = f"raised by reactor.serve() on {self.requested_addr!r}"
            others = [r.error for r in recorded]
        else:
            head = recorded[0]
            first = head.error
            where = f"{head.how} {head.callback}() on thread {head.thread} of the reactor server on {self.proto_addr}"
            others = [r.error for r in recorded[1:]]
        note = where
        if others:
            kinds = ", ".join(f"{type(e).__name__}: {e}"[:120] for e in others[:5])
            note += f"; {len(others)} more callback exception(s) or refused result(s) were recorded: {kinds}"
            if len(others) > 5:
                note += ", ..."
        if hasattr(first, "add_note"):
            first.add_note(note)
        raise first

    # --- what tests look at ----------------------------------------------------------------------------
    @property
    def addr(self) -> Any:
        """The real bound address, ``socket`` module shape: ``("127.0.0.1", 43121)``, ``("::1", 43121, 0, 0)``, a path.

        Typed ``Any`` so that it can be passed as it is to ``socket.create_connection``
        (TCP) or ``socket.connect`` (Unix) in typed tests.
        """
        assert self.server is not None
        return self.server.addr

    def _ip_addr(self, what: str) -> tuple[Any, ...]:
        addr = self.addr
        if not isinstance(addr, tuple):
            raise ValueError(f"{self.proto_addr} is a Unix socket server: it has no {what} (its path is srv.addr)")
        return addr

    @property
    def host(self) -> str:
        """The bound IP address, e.g. ``"127.0.0.1"`` or ``"::1"``.

        :raises ValueError: a Unix socket server (it has a path, :attr:`addr`).
        """
        return str(self._ip_addr("host")[0])

    @property
    def port(self) -> int:
        """The bound port (the real one when ``:0`` was asked for).

        :raises ValueError: a Unix socket server (it has a path, :attr:`addr`).
        """
        return int(self._ip_addr("port")[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of a TCP server (``http://[::1]:port`` for IPv6; ``https://`` with ``tls=``).

        :raises ValueError: a Unix or UDP server (no HTTP there).
        """
        if self.network.startswith("udp"):
            raise ValueError(f"{self.proto_addr} is a UDP server: it has no http:// URL (use srv.host, srv.port)")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{_format_host(self.host)}:{self.port}"

    def url_for(self, suffix: str) -> str:
        """:attr:`url` followed by ``suffix`` (a leading ``/`` is added if missing): ``srv.url_for("/api?x=1")``."""
        return self.url + (suffix if suffix.startswith("/") else "/" + suffix)

    @property
    def proto_addr(self) -> str:
        """The real address in ``serve()``'s form (``"tcp://127.0.0.1:43121"``, ``"unix:///tmp/x.sock"``)."""
        if self.server is None:
            return self.requested_addr
        addr = self.addr
        if isinstance(addr, tuple):
            return f"{self.network}://{_format_host(addr[0])}:{addr[1]}"
        if isinstance(addr, bytes):
            addr = addr.decode("utf-8", "backslashreplace")
        return f"unix://{addr}"

    @property
    def connections(self) -> list[Conn]:
        """The connections open right now, in the order they were opened (a snapshot)."""
        return self._recorder.connections()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the server lacks: delegate to the handler
        # (srv.route(...), srv.received(), srv.wait_for(...)).
        if name.startswith("_"):
            raise AttributeError(name)
        handler = self.__dict__.get("handler")
        if handler is not None and hasattr(handler, name):
            return getattr(handler, name)
        raise AttributeError(f"neither the BackgroundServer nor its handler {handler!r} has an attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # Once started, setting a public attribute the server lacks and its
        # handler has sets the handler's (srv.no_handler_status_code = 404),
        # as reading it reads the handler's.
        d = self.__dict__
        if d.get("_delegating") and not name.startswith("_") and name not in d and not hasattr(type(self), name):
            handler = d.get("handler")
            if handler is not None and hasattr(handler, name):
                setattr(handler, name, value)
                return
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<BackgroundServer {self.proto_addr} {state} handler={type(self.handler).__name__}>"


def serve_in_background(
    handler: H,
    proto_addr: str = "tcp://127.0.0.1:0",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    raise_errors: bool = True,
    options: Options | None = None,
    **opts: Unpack[ServeOptions],
) -> BackgroundServer[H]:
    """Start ``handler`` on ``proto_addr`` on background threads; return once clients can connect.

    ``options`` and ``opts`` are :func:`reactor.serve`'s (``multicore=True``,
    ``codec=...``, ``options=Options(...)``). Use the result as a context
    manager, or call its :meth:`~BackgroundServer.stop` yourself; either
    stops the server, joins its threads, and re-raises the first error
    recorded on a loop thread: an exception a callback raised, or a result
    the engine refused (see :attr:`BackgroundServer.errors`).
    ``raise_errors=False`` keeps them in ``errors`` instead, for a test that
    provokes many on purpose (``take_errors()`` is the way for one).

    :raises OSError: binding failed (e.g. the port is taken).
    :raises TypeError: a handler or codec class instead of an instance, and other wrong types
        (as :func:`reactor.serve`).
    :raises ValueError: an invalid option.
    """
    return BackgroundServer(handler, proto_addr, timeout=timeout, raise_errors=raise_errors, options=options, **opts)


class ServerFactory(Protocol):
    """The type of the ``reactor_server`` fixture: ``reactor_server(handler, network="tcp", **options)``.

    Annotate the fixture argument with it in a typed test
    (``def test_x(reactor_server: ServerFactory) -> None``): the server it
    returns is a ``BackgroundServer`` of the handler's own type.
    """

    def __call__(
        self,
        handler: H,
        network: str = "tcp",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        raise_errors: bool = True,
        options: Options | None = None,
        **opts: Unpack[ServeOptions],
    ) -> BackgroundServer[H]:
        """Start ``handler`` on ``network`` (``"tcp"``, ``"tcp6"``, ``"udp"``, ``"udp6"``, ``"unix"`` or an address)."""
        ...
