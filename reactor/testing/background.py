"""Throwaway reactor servers for tests: start one in about a millisecond, talk to it, stop it.

A minimal test::

    import socket
    from reactor.testing import EchoHandler, serve_in_background

    def test_echo():
        with serve_in_background(EchoHandler()) as srv:
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"ping")
                assert s.recv(4) == b"ping"

:func:`serve_in_background` runs :func:`reactor.serve` on a daemon thread and
returns once the listener is bound (clients can connect). Leaving the
``with`` block (or calling :meth:`BackgroundServer.stop`) stops the server,
joins every thread it started, and re-raises **in the test** the first
exception that any callback raised on a loop thread: an ``assert`` inside
``react`` fails the test that triggered it instead of only being logged.

Ready-made handlers:

* :class:`EchoHandler`: writes back what it reads (TCP, Unix and UDP).
* :class:`RecordingHandler`: records every received byte per connection and
  every open/close event; ``wait_for``, ``assert_received``.
* :class:`ScriptedHandler`: a conversation script (expected input → reply)
  that every connection must follow; a deviation fails the test.
* :class:`HTTPHandler`: a route table answering HTTP/1.1 (pipelining,
  Content-Length bodies), recording each request.
* :class:`FaultHandler`: a misbehaving peer (close after N bytes, reset,
  delay, drip-feed, never answer, garbage).

The pytest plugin (``reactor.pytest_plugin``) wraps all of this in fixtures;
see docs/testing.md.
"""

from __future__ import annotations

import heapq
import http
import itertools
import json as _json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

from .internal import sockets, unix
from .codec import BuiltInFrameCodec
from .connection import Conn, UDPConn
from .errors import CodecError, ServerInShutdownError
from .handler import CALLBACK_NAMES, Action, EventServer
from .server import Server, serve

__all__ = [
    "DEFAULT_TIMEOUT",
    "BackgroundServer",
    "EchoHandler",
    "Event",
    "FaultHandler",
    "HTTPHandler",
    "HTTPRequest",
    "RecordingHandler",
    "ScriptedHandler",
    "WaitTimeout",
    "serve_in_background",
]

#: Default bound, in seconds, of every wait in this module (start, stop, ``wait_for``...).
DEFAULT_TIMEOUT = 5.0

_CALLBACKS = CALLBACK_NAMES


class WaitTimeout(AssertionError, TimeoutError):
    """A ``wait_for``-style condition did not become true in time.

    Both an ``AssertionError`` (pytest reports it as a plain test failure)
    and a ``TimeoutError`` (``except TimeoutError`` catches it).
    """


# --------------------------------------------------------------------------------------------------
# The background server
# --------------------------------------------------------------------------------------------------
class _CallbackError(NamedTuple):
    callback: str
    thread: str
    error: BaseException


def _overrides(handler: Any, name: str) -> bool:
    """Whether the engine would call ``handler.<name>`` (mirrors eventloop._overridden)."""
    if not callable(getattr(handler, name, None)):
        return False
    return getattr(type(handler), name, None) is not getattr(EventServer, name)


class _Proxy(EventServer):
    """Forwards every callback to the user's handler, recording the exceptions it raises.

    The exception is re-raised, so the engine behaves exactly as without the
    proxy (logs it, closes the connection). ``pre_write``/``after_write``
    are only defined on the subclasses made by :func:`_proxy_class` when
    the user's handler has them, so that the engine can keep skipping them.
    """

    _h_on_init_complete: Callable[[Server], Any]
    _h_on_shutdown: Callable[[Server], None]
    _h_on_opened: Callable[[Conn], Any]
    _h_on_closed: Callable[[Conn, Optional[BaseException]], Any]
    _h_pre_write: Callable[[Conn], None]
    _h_after_write: Callable[[Conn, bytes], None]
    _h_react: Callable[[Optional[bytes], Conn], Any]
    _h_tick: Callable[[], Any]

    def __init__(self, handler: Any, owner: BackgroundServer) -> None:
        self._owner = owner
        defaults = EventServer()
        for name in _CALLBACKS:
            fn = getattr(handler, name, None)
            setattr(self, "_h_" + name, fn if callable(fn) else getattr(defaults, name))

    def _record(self, callback: str, error: BaseException) -> None:
        self._owner._record(callback, error)

    def on_init_complete(self, server: Server) -> Any:
        owner = self._owner
        owner.server = server
        # An exception here makes serve() raise it; _run then records it and sets _ready.
        result = self._h_on_init_complete(server)
        owner._ready.set()
        return result

    def on_shutdown(self, server: Server) -> None:
        try:
            self._h_on_shutdown(server)
        except Exception as e:
            self._record("on_shutdown", e)
            raise

    def on_opened(self, c: Conn) -> Any:
        owner = self._owner
        with owner._lock:
            owner._conns[c] = None
        try:
            return self._h_on_opened(c)
        except Exception as e:
            self._record("on_opened", e)
            raise

    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Any:
        owner = self._owner
        with owner._lock:
            owner._conns.pop(c, None)
        try:
            return self._h_on_closed(c, err)
        except Exception as e:
            self._record("on_closed", e)
            raise

    def react(self, frame: Optional[bytes], c: Conn) -> Any:
        try:
            return self._h_react(frame, c)
        except Exception as e:
            self._record("react", e)
            raise

    def tick(self) -> Any:
        try:
            return self._h_tick()
        except Exception as e:
            self._record("tick", e)
            raise

    def _pre_write(self, c: Conn) -> None:
        try:
            self._h_pre_write(c)
        except Exception as e:
            self._record("pre_write", e)
            raise

    def _after_write(self, c: Conn, data: bytes) -> None:
        try:
            self._h_after_write(c, data)
        except Exception as e:
            self._record("after_write", e)
            raise


_PROXY_CLASSES: dict[tuple[bool, bool], type] = {}


def _proxy_class(pre: bool, after: bool) -> type:
    cls = _PROXY_CLASSES.get((pre, after))
    if cls is None:
        attrs: dict[str, Any] = {}
        if pre:
            attrs["pre_write"] = _Proxy._pre_write
        if after:
            attrs["after_write"] = _Proxy._after_write
        cls = _PROXY_CLASSES[(pre, after)] = type("RecordingHandlerProxy", (_Proxy,), attrs)
    return cls


class _CodecProxy:
    """Forwards ``encode``/``decode``, recording exceptions other than :class:`reactor.CodecError`."""

    def __init__(self, codec: Any, owner: BackgroundServer) -> None:
        self.codec = codec
        self._owner = owner
        self._encode = codec.encode
        self._decode = codec.decode

    def encode(self, c: Conn, data: bytes) -> bytes:
        try:
            return self._encode(c, data)
        except CodecError:
            raise
        except Exception as e:
            self._owner._record("codec.encode", e)
            raise

    def decode(self, c: Conn) -> Optional[bytes]:
        try:
            return self._decode(c)
        except CodecError:
            raise
        except Exception as e:
            self._owner._record("codec.decode", e)
            raise


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
        if not any(callable(getattr(handler, name, None)) for name in _CALLBACKS):
            raise TypeError(
                f"handler {handler!r} implements none of the callbacks ({', '.join(_CALLBACKS)}); "
                "inherit from reactor.EventServer and override the ones you need"
            )
        self.handler = handler
        self.requested_addr = proto_addr
        self.network = proto_addr.partition("://")[0] if "://" in proto_addr else "tcp"
        self.server: Optional[Server] = None
        self._lock = threading.Lock()
        self._conns: dict[Conn, None] = {}
        self._errors: list[_CallbackError] = []
        self._serve_error: Optional[BaseException] = None
        self._ready = threading.Event()
        self._stopped = False
        self._timeout = timeout
        options = self._wrap_codec(options)
        proxy = _proxy_class(_overrides(handler, "pre_write"), _overrides(handler, "after_write"))(handler, self)
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
        return {**options, "codec": _CodecProxy(codec, self)}

    def _run(self, proxy: _Proxy, proto_addr: str, options: dict[str, Any]) -> None:
        try:
            serve(proxy, proto_addr, **options)
        except BaseException as e:
            self._serve_error = e
        finally:
            self._ready.set()

    def _start(self) -> None:
        unix.start_thread(self._thread)
        if not self._ready.wait(self._timeout):
            # Bound to never happen; do not leave a half-started server behind.
            if self.server is not None:
                self.server.stop()
            self._thread.join(self._timeout)
            raise TimeoutError(f"reactor server on {self.requested_addr!r} did not start within {self._timeout} s")
        if self.server is None or self._serve_error is not None:
            # serve() failed before being ready: EADDRINUSE, a bad option, on_init_complete raised...
            self._thread.join(self._timeout)
            self._stopped = True
            err, self._serve_error = self._serve_error, None
            if err is not None:
                raise err
            raise RuntimeError("serve() returned before the server was ready")  # pragma: no cover

    @property
    def running(self) -> bool:
        """True until the server has stopped (by :meth:`stop` or by an ``Action.SHUTDOWN``)."""
        return self._thread.is_alive()

    def _on_own_thread(self) -> bool:
        me = threading.current_thread()
        if me is self._thread:
            return True
        engine = getattr(self.server, "_engine", None)
        owns = getattr(engine, "owns_current_thread", None)
        return bool(owns()) if owns is not None else False

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the server, join its threads, and re-raise what went wrong on them.

        Idempotent: only the first call stops and raises. Raises, in this
        order of preference, the exception ``serve()`` itself raised, or the
        first exception a callback raised (with a note counting the others).
        Called from one of the server's own threads (a callback), it only
        signals the shutdown.

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
        close = getattr(self.handler, "_testing_close", None)
        if close is not None:
            close(timeout)
        self.raise_errors()

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Raised while the block's own exception (if any) is being handled, so
        # the callback's exception is chained after it: both are shown.
        self.stop()

    # --- errors -------------------------------------------------------------------------------------------
    def _record(self, callback: str, error: BaseException) -> None:
        with self._lock:
            self._errors.append(_CallbackError(callback, threading.current_thread().name, error))

    @property
    def errors(self) -> list[BaseException]:
        """The exceptions callbacks have raised and that were not re-raised or taken yet."""
        with self._lock:
            return [e.error for e in self._errors]

    def take_errors(self) -> list[BaseException]:
        """Return the recorded callback exceptions and forget them (for tests that expect one)."""
        with self._lock:
            taken, self._errors = self._errors, []
        return [e.error for e in taken]

    def raise_errors(self) -> None:
        """Raise (and forget) the exception ``serve()`` raised, else the first callback exception."""
        with self._lock:
            recorded, self._errors = self._errors, []
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
    def host(self) -> Optional[str]:
        addr = self.addr
        return addr[0] if isinstance(addr, tuple) else None

    @property
    def port(self) -> Optional[int]:
        addr = self.addr
        return addr[1] if isinstance(addr, tuple) else None

    @property
    def url(self) -> Optional[str]:
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
        with self._lock:
            return list(self._conns)

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


# --------------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------------
def _conn_key(c: Conn) -> Any:
    """What identifies a peer: the Conn for streams; the sender for UDP (one UDPConn per datagram)."""
    if isinstance(c, UDPConn) and not c._connected:
        return ("udp", c.remote_addr)
    return c


class _Waiting:
    """A Condition and ``wait_for``; subclasses call ``self._changed()`` after each update."""

    def __init__(self) -> None:
        self._cond = threading.Condition()

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _describe(self) -> str:
        return ""

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = DEFAULT_TIMEOUT,
        message: Optional[str] = None,
    ) -> Any:
        """Wait until ``predicate()`` is true, re-checking after every event; return its value.

        ``predicate`` runs with the handler's lock held (its own methods
        may be called: the lock is re-entrant).

        :raises WaitTimeout: (an ``AssertionError`` and a ``TimeoutError``)
            not true within ``timeout`` seconds; the message shows what
            the handler has seen so far.
        """
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
            if result:
                return result
            what = message or getattr(predicate, "__name__", repr(predicate))
            state = self._describe()
            raise WaitTimeout(f"{what}: not true within {timeout} s" + (f"; {state}" if state else ""))


class EchoHandler(EventServer):
    """Writes back every byte it reads (TCP and Unix streams; one datagram back per datagram for UDP)."""

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        return frame, Action.NONE


class Event(NamedTuple):
    """One thing a :class:`RecordingHandler` saw.

    ``kind`` is ``"opened"``, ``"data"`` or ``"closed"``; ``conn`` the
    connection's index (0 for the first opened); ``data`` the bytes of a
    ``"data"`` event; ``error`` what ``on_closed`` received.
    """

    kind: str
    conn: int
    data: bytes = b""
    error: Optional[BaseException] = None


class RecordingHandler(_Waiting, EventServer):
    """Records every byte received, per connection, and every open and close.

    Connections are numbered in the order they were opened (for UDP: in the
    order their senders were first seen). Thread-safe: the loops record,
    the test reads and waits.

    :param echo: also write every received chunk back (default: answer nothing).
    :param reply: bytes to answer each received chunk with (overrides ``echo``).
    """

    def __init__(self, echo: bool = False, reply: Optional[bytes] = None) -> None:
        super().__init__()
        self.echo = echo
        self.reply = reply
        self._index: dict[Any, int] = {}
        self._data: list[bytearray] = []
        self._open: list[bool] = []
        self._events: list[Event] = []

    def _conn_index(self, c: Conn) -> int:
        key = _conn_key(c)
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self._data)
            self._data.append(bytearray())
            self._open.append(False)
        return i

    # callbacks
    def on_opened(self, c: Conn) -> tuple[Optional[bytes], Action]:
        with self._cond:
            i = self._conn_index(c)
            self._open[i] = True
            self._events.append(Event("opened", i))
            self._cond.notify_all()
        return None, Action.NONE

    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Action:
        with self._cond:
            i = self._conn_index(c)
            self._open[i] = False
            self._index.pop(_conn_key(c), None)  # a new Conn may reuse nothing, but keep the dict small
            self._events.append(Event("closed", i, error=err))
            self._cond.notify_all()
        return Action.NONE

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        if frame is None:
            return None, Action.NONE
        with self._cond:
            i = self._conn_index(c)
            self._data[i] += frame
            self._events.append(Event("data", i, bytes(frame)))
            self._cond.notify_all()
        if self.reply is not None:
            return self.reply, Action.NONE
        return (frame if self.echo else None), Action.NONE

    # what tests look at
    def received(self, conn: Optional[int] = None) -> bytes:
        """Bytes received on connection number ``conn``; all connections concatenated (in index order) if None."""
        with self._cond:
            if conn is None:
                return b"".join(self._data)
            if conn >= len(self._data):
                return b""
            return bytes(self._data[conn])

    def received_by_connection(self) -> list[bytes]:
        """Bytes received on each connection, by index."""
        with self._cond:
            return [bytes(d) for d in self._data]

    @property
    def events(self) -> list[Event]:
        """Every open/data/close event so far, in order (a snapshot)."""
        with self._cond:
            return list(self._events)

    @property
    def opened(self) -> int:
        """How many connections have been opened so far."""
        with self._cond:
            return sum(1 for e in self._events if e.kind == "opened")

    @property
    def closed(self) -> int:
        """How many connections have been closed so far."""
        with self._cond:
            return sum(1 for e in self._events if e.kind == "closed")

    @property
    def open_connections(self) -> int:
        with self._cond:
            return sum(self._open)

    def _describe(self) -> str:
        data = [bytes(d) for d in self._data]
        shown = ", ".join(f"{i}: {d[:200]!r}{'...' if len(d) > 200 else ''}" for i, d in enumerate(data))
        return f"received so far: {{{shown}}}; opened {self.opened}, closed {self.closed}"

    def assert_received(self, data: bytes, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the bytes received over all connections (concatenated by index) equal ``data``.

        :raises WaitTimeout: they do not within ``timeout`` seconds, or more
            than ``data`` arrived (shows expected and actual).
        """
        data = bytes(data)
        with self._cond:
            self._cond.wait_for(lambda: len(self.received()) >= len(data), timeout)
            got = self.received()
        if got != data:
            raise WaitTimeout(
                f"expected the server to receive {data[:500]!r} within {timeout} s, "
                f"it received {got[:500]!r}" + (" (truncated)" if max(len(data), len(got)) > 500 else "")
            )

    def wait_for_connections(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until at least ``n`` connections have been opened."""
        self.wait_for(lambda: self.opened >= n, timeout, f"{n} connection(s) opened")

    def wait_closed(self, n: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until at least ``n`` connections have been closed."""
        self.wait_for(lambda: self.closed >= n, timeout, f"{n} connection(s) closed")


class _ScriptState:
    __slots__ = ("buf", "done", "index", "step")

    def __init__(self, index: int) -> None:
        self.index = index
        self.step = 0
        self.buf = b""
        self.done = False


class ScriptedHandler(_Waiting, EventServer):
    """Every connection must follow a script of ``(expected input, reply)`` steps.

    Input is matched on exact bytes: they are buffered until the expected
    bytes are complete, however the client splits them (a wrong byte fails
    as soon as it arrives). Then the reply is written and the next step
    begins. A mismatch (or input after the last step) raises an
    ``AssertionError`` in ``react``: the loop closes that connection, and
    a :class:`BackgroundServer` re-raises the error in the test.

    :param steps: ``[(b"HELO\\r\\n", b"250 ok\\r\\n"), ...]``; a reply may be None or b"" (no answer).
    :param greeting: written when a connection opens (before the first step).
    :param close_when_done: close the connection after the last step's reply.
    """

    def __init__(
        self,
        steps: Sequence[tuple[bytes, Optional[bytes]]],
        *,
        greeting: Optional[bytes] = None,
        close_when_done: bool = False,
    ) -> None:
        super().__init__()
        self.steps = [(bytes(expected), reply) for expected, reply in steps]
        for expected, _ in self.steps:
            if not expected:
                raise ValueError("each step must expect at least one byte (use greeting= to speak first)")
        self.greeting = greeting
        self.close_when_done = close_when_done
        self._states: dict[Any, _ScriptState] = {}
        self._count = itertools.count()
        #: AssertionErrors raised for mismatches (also re-raised by the background server).
        self.errors: list[AssertionError] = []
        self._completed = 0

    def _state(self, c: Conn) -> _ScriptState:
        key = _conn_key(c)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _ScriptState(next(self._count))
        return st

    def on_opened(self, c: Conn) -> tuple[Optional[bytes], Action]:
        with self._cond:
            self._state(c)
        return self.greeting or None, Action.NONE

    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Action:
        with self._cond:
            self._states.pop(_conn_key(c), None)
        return Action.NONE

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        if frame is None:
            return None, Action.NONE
        out: list[bytes] = []
        with self._cond:
            st = self._state(c)
            st.buf += frame
            while st.buf:
                if st.step >= len(self.steps):
                    self._fail(c, st, out, f"input after the last step: {st.buf[:200]!r}")
                expected, reply = self.steps[st.step]
                n = min(len(expected), len(st.buf))
                if st.buf[:n] != expected[:n]:
                    self._fail(c, st, out, f"expected {expected!r}, got {st.buf[: len(expected)]!r}")
                if n < len(expected):
                    break  # a prefix of the expected bytes: wait for the rest
                st.buf = st.buf[n:]
                st.step += 1
                if reply:
                    out.append(bytes(reply))
                if st.step == len(self.steps):
                    st.done = True
                    self._completed += 1
                    self._cond.notify_all()
                    if self.close_when_done:
                        break
        action = Action.CLOSE if (self.close_when_done and st.done) else Action.NONE
        return (b"".join(out) or None), action

    def _fail(self, c: Conn, st: _ScriptState, out: list[bytes], what: str) -> None:
        err = AssertionError(f"ScriptedHandler: connection {st.index}, step {st.step}: {what}")
        self.errors.append(err)
        self._cond.notify_all()
        if out:
            # Replies to the steps completed by this same chunk still go out
            # (the exception discards react's return value).
            c.write(b"".join(out))
        raise err

    @property
    def completed(self) -> int:
        """How many connections have gone through the whole script."""
        with self._cond:
            return self._completed

    def wait_complete(self, n: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until ``n`` connections have completed the script."""
        self.wait_for(lambda: self._completed >= n, timeout, f"{n} connection(s) completed the script")

    def _describe(self) -> str:
        steps = {st.index: st.step for st in self._states.values()}
        return f"completed: {self._completed}; open connections at step: {steps}; errors: {self.errors}"


# --- HTTP ------------------------------------------------------------------------------------------------
class HTTPRequest(NamedTuple):
    """One request an :class:`HTTPHandler` received. Header names are lower-cased."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        """The request target as sent (``path?query``)."""
        return f"{self.path}?{self.query}" if self.query else self.path


Body = Union[bytes, str]
HeadersLike = Union[Mapping[str, str], Iterable[tuple[str, str]], None]
RouteValue = Union[Body, tuple[int, HeadersLike, Body], Callable[[HTTPRequest], Any]]

_MAX_HEADER = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class _HTTPBad(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HTTPState:
    __slots__ = ("buf", "closing", "continued")

    def __init__(self) -> None:
        self.buf = b""
        self.continued = False  # 100 Continue sent for the request at the head of buf
        self.closing = False


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _response(status: int, headers: HeadersLike, body: Body, *, head: bool = False, close: bool = False) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    names = {k.lower() for k, _ in items}
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines += [f"{k}: {v}" for k, v in items]
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if "content-type" not in names and body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    if close and "connection" not in names:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else bytes(body))


class HTTPHandler(_Waiting, EventServer):
    """A tiny HTTP/1.1 server: a route table, a 404 for the rest, every request recorded.

    Routes map ``(METHOD, path)`` to ``(status, headers, body)`` (or just a
    body, for 200), or to a function of the :class:`HTTPRequest` returning
    either. The path is matched without its query string. ``HEAD`` falls
    back to the ``GET`` route, without the body. Pipelined requests are
    answered in order, in one write; request bodies need ``Content-Length``
    (chunked request bodies get 501). ``Expect: 100-continue`` is honoured.
    Use it with the default codec (it buffers partial requests itself).

    ::

        h = HTTPHandler({("GET", "/"): (200, {"X-A": "1"}, b"hi")})
        h.route("POST", "/items", status=201, json={"id": 1})
    """

    def __init__(
        self,
        routes: Optional[Mapping[tuple[str, str], RouteValue]] = None,
        *,
        default: tuple[int, HeadersLike, Body] = (404, None, b"Not Found"),
    ) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], RouteValue] = {}
        for (method, path), value in (routes or {}).items():
            self.routes[(method.upper(), path)] = value
        self.default = default
        self._requests: list[HTTPRequest] = []
        self._states: dict[Conn, _HTTPState] = {}

    def route(
        self,
        method: str,
        path: str,
        body: Union[Body, Callable[[HTTPRequest], Any]] = b"",
        *,
        status: int = 200,
        headers: HeadersLike = None,
        json: Any = None,
    ) -> HTTPHandler:
        """Answer ``method path`` with ``status``, ``headers`` and ``body`` (or ``json``, serialised).

        ``body`` may be a function of the :class:`HTTPRequest` returning a
        body or ``(status, headers, body)``. Returns the handler (chainable).
        Safe to call while the server runs.
        """
        if json is not None:
            hdrs = dict(headers.items()) if isinstance(headers, Mapping) else dict(headers or ())
            hdrs.setdefault("Content-Type", "application/json")
            self.routes[(method.upper(), path)] = (status, hdrs, _json.dumps(json).encode())
        elif callable(body):
            self.routes[(method.upper(), path)] = body
        else:
            self.routes[(method.upper(), path)] = (status, headers, body)
        return self

    @property
    def requests(self) -> list[HTTPRequest]:
        """Every request received so far, in arrival order (a snapshot)."""
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> list[HTTPRequest]:
        """Wait until at least ``n`` requests have arrived; return them all."""
        self.wait_for(lambda: len(self._requests) >= n, timeout, f"{n} HTTP request(s) received")
        return self.requests

    def _describe(self) -> str:
        return f"requests so far: {[f'{r.method} {r.target}' for r in self._requests]}"

    # callbacks
    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Action:
        self._states.pop(c, None)
        return Action.NONE

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        if frame is None:
            return None, Action.NONE
        st = self._states.get(c)
        if st is None:
            st = self._states[c] = _HTTPState()
        if st.closing:
            return None, Action.NONE
        st.buf += frame
        out: list[bytes] = []
        while st.buf:
            try:
                parsed = self._parse_one(st, out)
            except _HTTPBad as e:
                out.append(_response(e.status, None, f"{_reason(e.status)}: {e}\n", close=True))
                st.closing = True
                break
            if parsed is None:
                break
            request, close = parsed
            with self._cond:
                self._requests.append(request)
                self._cond.notify_all()
            out.append(self._answer(request, close))
            if close:
                st.closing = True
                break
        return (b"".join(out) or None), (Action.CLOSE if st.closing else Action.NONE)

    def _parse_one(self, st: _HTTPState, out: list[bytes]) -> Optional[tuple[HTTPRequest, bool]]:
        buf = st.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEADER:
                raise _HTTPBad(431, "request header block too large")
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith("HTTP/1."):
            raise _HTTPBad(400, f"malformed request line {lines[0][:80]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _HTTPBad(400, f"malformed header line {line[:80]!r}")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "transfer-encoding" in headers:
            raise _HTTPBad(501, "Transfer-Encoding request bodies are not supported")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise _HTTPBad(400, f"bad Content-Length {length[:40]!r}")
        n = int(length)
        if n > _MAX_BODY:
            raise _HTTPBad(413, f"body of {n} bytes is too large")
        total = end + 4 + n
        if len(buf) < total:
            if headers.get("expect", "").lower() == "100-continue" and not st.continued:
                st.continued = True
                out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        st.buf = buf[total:]
        st.continued = False
        path, _, query = target.partition("?")
        request = HTTPRequest(method.upper(), path, query, version, headers, bytes(buf[end + 4 : total]))
        conn_hdr = headers.get("connection", "").lower()
        close = "close" in conn_hdr or (version == "HTTP/1.0" and "keep-alive" not in conn_hdr)
        return request, close

    def _answer(self, request: HTTPRequest, close: bool) -> bytes:
        head = request.method == "HEAD"
        value = self.routes.get((request.method, request.path))
        if value is None and head:
            value = self.routes.get(("GET", request.path))
        if value is None:
            status, headers, body = self.default
            return _response(status, headers, body, head=head, close=close)
        if callable(value):
            value = value(request)
        if isinstance(value, (bytes, bytearray, memoryview, str)):
            status, headers, body = 200, None, value
        else:
            status, headers, body = value
        return _response(status, headers, bytes(body) if not isinstance(body, str) else body, head=head, close=close)


# --- faults ---------------------------------------------------------------------------------------------
class _Scheduler:
    """One thread running ``fn(*args)`` at given monotonic times (never on an event loop)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._closing = False

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            if self._closing:
                return
            heapq.heappush(self._heap, (when, next(self._seq), fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                unix.start_thread(self._thread)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing:
                        return
                    if self._heap:
                        delay = self._heap[0][0] - time.monotonic()
                        if delay <= 0:
                            _, _, fn, args = heapq.heappop(self._heap)
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
            try:
                fn(*args)
            except Exception:  # pragma: no cover - the scheduled functions catch their own errors
                import logging

                logging.getLogger("reactor").exception("reactor.testing scheduler task failed")

    def close(self, timeout: Optional[float] = None) -> None:
        """Drop pending calls and join the thread; the scheduler can be used again afterwards."""
        with self._cond:
            self._closing = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._thread = None
            self._closing = False


def _send_later(c: Conn, data: bytes) -> None:
    if not c.opened:
        return
    try:
        c.async_write(data)
    except ServerInShutdownError:
        pass


DEFAULT_GARBAGE = b"\x00\xff\xfeGARBAGE\x80\x81 this is not the answer you expected\r\n\r\n\xde\xad\xbe\xef"


class FaultHandler(EventServer):
    """A peer that misbehaves in one of several ways; build it with the class methods.

    Each mode answers with ``response`` (fixed bytes per received chunk) or,
    when ``response`` is None, echoes what it received, and then:

    * :meth:`close_after` (``"close_after"``): sends at most ``nbytes``
      bytes in all, then closes (the client reads ``nbytes`` bytes, then EOF).
    * :meth:`reset` (``"reset"``): on the first bytes received, sends at most
      ``nbytes`` bytes, then closes with SO_LINGER 0: a TCP RST (the client
      gets ``ConnectionResetError``).
    * :meth:`delay` (``"delay"``): sends each answer ``seconds`` later (from
      a timer thread with ``async_write``; the loop never sleeps).
    * :meth:`drip` (``"drip"``): sends each answer one byte at a time,
      ``interval`` seconds apart.
    * :meth:`never_answer` (``"never_answer"``): reads and discards, never
      writes, never closes.
    * :meth:`garbage` (``"garbage"``): answers every chunk with ``data``
      (default :data:`DEFAULT_GARBAGE`) instead.

    Delay and drip run one helper thread per handler, stopped when the
    server shuts down.
    """

    MODES = ("close_after", "reset", "delay", "drip", "never_answer", "garbage")

    def __init__(
        self,
        mode: str,
        *,
        nbytes: int = 0,
        seconds: float = 0.1,
        interval: float = 0.01,
        response: Optional[bytes] = None,
        data: bytes = DEFAULT_GARBAGE,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown FaultHandler mode {mode!r}; use one of {', '.join(self.MODES)}")
        if nbytes < 0 or seconds < 0 or interval < 0:
            raise ValueError("nbytes, seconds and interval must be >= 0")
        self.mode = mode
        self.nbytes = nbytes
        self.seconds = seconds
        self.interval = interval
        self.response = response
        self.data = bytes(data)
        self._sent: dict[Conn, int] = {}
        self._drip_next: dict[Conn, float] = {}
        self._scheduler = _Scheduler(f"reactor-testing-{mode}")

    # --- constructors, one per mode ------------------------------------------------------------------
    @classmethod
    def close_after(cls, nbytes: int, response: Optional[bytes] = None) -> FaultHandler:
        """Send at most ``nbytes`` bytes of the answers (echo, or ``response``), then close."""
        return cls("close_after", nbytes=nbytes, response=response)

    @classmethod
    def reset(cls, nbytes: int = 0, response: Optional[bytes] = None) -> FaultHandler:
        """On the first bytes received, send at most ``nbytes`` bytes, then reset the connection (RST)."""
        return cls("reset", nbytes=nbytes, response=response)

    @classmethod
    def delay(cls, seconds: float, response: Optional[bytes] = None) -> FaultHandler:
        """Send each answer ``seconds`` after its request arrived."""
        return cls("delay", seconds=seconds, response=response)

    @classmethod
    def drip(cls, interval: float = 0.01, response: Optional[bytes] = None) -> FaultHandler:
        """Send each answer one byte at a time, ``interval`` seconds apart."""
        return cls("drip", interval=interval, response=response)

    @classmethod
    def never_answer(cls) -> FaultHandler:
        """Accept and read, but never write or close."""
        return cls("never_answer")

    @classmethod
    def garbage(cls, data: bytes = DEFAULT_GARBAGE) -> FaultHandler:
        """Answer every chunk with ``data``, whatever was asked."""
        return cls("garbage", data=data)

    def __repr__(self) -> str:
        return f"<FaultHandler {self.mode}>"

    # --- callbacks -----------------------------------------------------------------------------------
    def on_opened(self, c: Conn) -> tuple[Optional[bytes], Action]:
        if self.mode == "close_after" and self.nbytes == 0:
            return None, Action.CLOSE
        return None, Action.NONE

    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Action:
        self._sent.pop(c, None)
        self._drip_next.pop(c, None)
        return Action.NONE

    def on_shutdown(self, server: Server) -> None:
        self._scheduler.close(DEFAULT_TIMEOUT)

    def _testing_close(self, timeout: Optional[float] = None) -> None:
        self._scheduler.close(timeout)

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        if frame is None:
            return None, Action.NONE
        mode = self.mode
        answer = self.response if self.response is not None else frame
        if mode == "never_answer":
            return None, Action.NONE
        if mode == "garbage":
            return self.data, Action.NONE
        if mode in ("close_after", "reset"):
            sent = self._sent.get(c, 0)
            left = self.nbytes - sent
            if mode == "reset" or len(answer) >= left:
                if mode == "reset":
                    sockets.set_linger(c.fd, 0)
                return (answer[:left] or None), Action.CLOSE
            self._sent[c] = sent + len(answer)
            return answer, Action.NONE
        now = time.monotonic()
        if mode == "delay":
            self._scheduler.call_at(now + self.seconds, _send_later, c, bytes(answer))
            return None, Action.NONE
        # drip: one byte per write, each connection's bytes strictly after its previous ones
        at = max(now, self._drip_next.get(c, now))
        for i in range(len(answer)):
            self._scheduler.call_at(at, _send_later, c, answer[i : i + 1])
            at += self.interval
        self._drip_next[c] = at
        return None, Action.NONE
