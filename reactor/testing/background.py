"""The background runner: :func:`serve_in_background` and the :class:`BackgroundServer` it returns.

:func:`serve_in_background` runs :func:`reactor.serve` on a daemon thread
and returns once the listener is bound. The engine serves the proxies of
:mod:`reactor.testing.proxies` in place of the user's handler and codec;
they record what the callbacks raise, so that :meth:`BackgroundServer.stop`
can re-raise the first exception in the test.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..codec import BuiltInFrameCodec
from ..connection import Conn
from ..internal import threads
from ..server import Server, serve
from .proxies import CodecProxy, HandlerProxy, Recorder
from .waiting import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BackgroundServer", "serve_in_background"]


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class BackgroundServer:
    """A reactor server running on background threads (see :func:`serve_in_background`).

    Attributes:

    * ``handler``: the handler as given.
    * ``server``: the :class:`reactor.Server` (what ``on_init_complete`` received).
    * ``addr``: the real bound address, stdlib shape: ``("127.0.0.1", 43121)``,
      ``("::1", 43121, 0, 0)`` or a Unix socket path; pass it to
      ``socket.create_connection`` / ``socket.connect`` as is.
    * ``host``, ``port``: from ``addr`` (None for Unix sockets).
    * ``url``: ``"http://127.0.0.1:43121"`` (``http://[::1]:...`` for IPv6);
      None for Unix and UDP.
    * ``proto_addr``: the real address in ``serve()``'s form, e.g. ``"tcp://127.0.0.1:43121"``.
    * ``connections``: a snapshot list of the open :class:`reactor.Conn` objects.
    * ``errors``: the exceptions callbacks raised so far (not yet re-raised).

    Attributes the server does not have are looked up on the handler, so
    ``srv.received()`` means ``srv.handler.received()``.
    """

    def __init__(
        self,
        handler: Any,
        proto_addr: str = "tcp://127.0.0.1:0",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        self._recorder = Recorder()
        # Raises the engine's TypeError for an object implementing none of the callbacks.
        proxy = HandlerProxy.wrapping(handler, self._recorder)
        self.handler = handler
        self.requested_addr = proto_addr
        self.network = proto_addr.partition("://")[0] if "://" in proto_addr else "tcp"
        self._lock = threading.Lock()  # guards _serve_error
        self._serve_error: BaseException | None = None
        self._stopped = False
        self._timeout = timeout
        options = self._wrap_codec(options)
        self._thread = threading.Thread(
            target=self._run, args=(proxy, proto_addr, options), name="reactor-testing-serve", daemon=True
        )
        self._start()

    # --- start / stop -------------------------------------------------------------------------------
    def _wrap_codec(self, options: dict[str, Any]) -> dict[str, Any]:
        codec = options.get("codec")
        if codec is None and options.get("options") is not None:
            codec = getattr(options["options"], "codec", None)
        if codec is None or type(codec) is BuiltInFrameCodec:
            return options
        if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
            return options  # let serve() reject it with its own message
        return {**options, "codec": CodecProxy(codec, self._recorder)}

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
        first exception a callback raised (with a note counting the others).
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
        self.raise_errors()

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Raised while the block's own exception (if any) is being handled, so
        # the callback's exception is chained after it: both are shown.
        self.stop()

    # --- errors -------------------------------------------------------------------------------------------
    @property
    def errors(self) -> list[BaseException]:
        """The exceptions callbacks have raised and that were not re-raised or taken yet."""
        return self._recorder.errors()

    def take_errors(self) -> list[BaseException]:
        """Return the recorded callback exceptions and forget them (for tests that expect one)."""
        return [e.error for e in self._recorder.take()]

    def raise_errors(self) -> None:
        """Raise (and forget) the exception ``serve()`` raised, else the first callback exception."""
        recorded = self._recorder.take()
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
            where = f"raised by {head.callback}() on thread {head.thread} of the reactor server on {self.proto_addr}"
            others = [r.error for r in recorded[1:]]
        note = where
        if others:
            kinds = ", ".join(f"{type(e).__name__}: {e}"[:120] for e in others[:5])
            note += f"; {len(others)} more callback exception(s) were recorded: {kinds}"
            if len(others) > 5:
                note += ", ..."
        if hasattr(first, "add_note"):
            first.add_note(note)
        raise first

    # --- what tests look at ----------------------------------------------------------------------------
    @property
    def addr(self) -> Any:
        assert self.server is not None
        return self.server.addr

    @property
    def host(self) -> str | None:
        addr = self.addr
        return addr[0] if isinstance(addr, tuple) else None

    @property
    def port(self) -> int | None:
        addr = self.addr
        return addr[1] if isinstance(addr, tuple) else None

    @property
    def url(self) -> str | None:
        """``http://host:port`` of a TCP server; None for Unix and UDP."""
        if self.host is None or self.network.startswith("udp"):
            return None
        return f"http://{_format_host(self.host)}:{self.port}"

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

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<BackgroundServer {self.proto_addr} {state} handler={type(self.handler).__name__}>"


def serve_in_background(
    handler: Any,
    proto_addr: str = "tcp://127.0.0.1:0",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    **options: Any,
) -> BackgroundServer:
    """Start ``handler`` on ``proto_addr`` on background threads; return once clients can connect.

    ``options`` are :func:`reactor.serve`'s keywords (``multicore=True``,
    ``codec=...``, ``options=Options(...)``). Use the result as a context
    manager, or call its :meth:`~BackgroundServer.stop` yourself; either
    stops the server, joins its threads, and re-raises the first exception
    a callback raised on a loop thread.

    :raises OSError: binding failed (e.g. the port is taken).
    :raises ValueError: an invalid option.
    """
    return BackgroundServer(handler, proto_addr, timeout=timeout, **options)
