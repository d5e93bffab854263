"""The wrappers between the engine and a test's handler and codec, and what they record.

:class:`~reactor.testing.BackgroundServer` serves a :class:`HandlerProxy`
instead of the user's handler, and a :class:`CodecProxy` instead of a
custom codec. Both forward every call unchanged and note in a
:class:`Recorder`, shared with the server, the exceptions raised (re-raised
as well, so the engine behaves as without them), the results the engine
will refuse (checked with the engine's own rules,
:func:`reactor.handler.result_error`, :func:`~reactor.handler.output_error`
and :func:`~reactor.handler.tick_result`: the engine logs them and closes
the connection; the proxies record the same ``TypeError`` and return the
result unchanged), and the connections open. The server reads the
recorder from the test's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ..connection import Conn
from ..errors import CodecError
from ..handler import (
    BYTES_LIKE,
    CALLBACK_NAMES,
    EventServer,
    complete_handler,
    output_error,
    overrides,
    result_error,
    tick_result,
)
from ..server import Server

__all__ = ["CallbackError", "CodecProxy", "HandlerProxy", "InCallback", "Recorder"]


class CallbackError(NamedTuple):
    """An exception a callback raised, or the error its result earns: which callback, on which thread."""

    callback: str
    thread: str
    error: BaseException
    #: How ``error`` came from ``callback``: ``"raised by"``, or ``"returned by"`` for a result the engine refuses.
    how: str = "raised by"


class InCallback(threading.local):
    """Per thread: how many proxied callbacks are running on it (nested: a callback writing calls ``pre_write``)."""

    depth = 0


class Recorder:
    """What the proxies see, for their :class:`~reactor.testing.BackgroundServer` to read: thread-safe.

    The proxies run on the server's threads and write here; the test's
    thread reads. It is the only state they share.
    """

    def __init__(self) -> None:
        #: The :class:`reactor.Server`, once ``on_init_complete`` has been called.
        self.server: Server | None = None
        #: Set once the server is ready, or ``serve()`` has returned (failed to start).
        self.ready = threading.Event()
        #: Which threads are inside a proxied callback right now.
        self.in_callback = InCallback()
        self._lock = threading.Lock()
        self._conns: dict[Conn, None] = {}
        self._errors: list[CallbackError] = []

    def opened(self, c: Conn) -> None:
        """``c`` was opened (``on_opened`` is about to run)."""
        with self._lock:
            self._conns[c] = None

    def closed(self, c: Conn) -> None:
        """``c`` was closed (``on_closed`` is about to run)."""
        with self._lock:
            self._conns.pop(c, None)

    def connections(self) -> list[Conn]:
        """The connections open right now, in the order they were opened."""
        with self._lock:
            return list(self._conns)

    def record(self, callback: str, error: BaseException, how: str = "raised by") -> None:
        """Record ``error``, raised by ``callback`` on the current thread (``how="returned by"``: its bad result)."""
        with self._lock:
            self._errors.append(CallbackError(callback, threading.current_thread().name, error, how))

    def errors(self) -> list[BaseException]:
        """The recorded errors (a snapshot; not forgotten)."""
        with self._lock:
            return [e.error for e in self._errors]

    def take(self) -> list[CallbackError]:
        """The recorded errors, forgotten here."""
        with self._lock:
            taken, self._errors = self._errors, []
        return taken

    def on_callback_thread(self) -> bool:
        """Whether the current thread is running one of the proxied callbacks (or codec calls)."""
        return self.in_callback.depth > 0


#: HandlerProxy's subclasses by (base, defines pre_write, defines after_write).
_PROXY_CLASSES: dict[tuple[type[HandlerProxy], bool, bool], type[HandlerProxy]] = {}


class HandlerProxy(EventServer):
    """Forwards every callback to the user's handler, recording the exceptions it raises.

    The exception is re-raised, so the engine behaves exactly as without the
    proxy (logs it, closes the connection). ``pre_write``/``after_write``
    are only defined on the subclasses :meth:`wrapping` picks when the
    user's handler overrides them, so that the engine can keep skipping them.
    The callbacks that run on loop and ticker threads count themselves in
    ``Recorder.in_callback``, so that
    :meth:`~reactor.testing.BackgroundServer.stop` knows when it is called
    from inside one.
    """

    _h_on_init_complete: Callable[[Server], Any]
    _h_on_shutdown: Callable[[Server], None]
    _h_on_opened: Callable[[Conn], Any]
    _h_on_closed: Callable[[Conn, BaseException | None], Any]
    _h_pre_write: Callable[[Conn], None]
    _h_after_write: Callable[[Conn, bytes], None]
    _h_react: Callable[[bytes | None, Conn], Any]
    _h_tick: Callable[[], Any]

    def __init__(self, handler: Any, recorder: Recorder, raw_react: bool = True) -> None:
        """``handler`` has every callback (made so by :func:`reactor.handler.complete_handler`).

        ``raw_react``: ``react``'s output is written as it is (the built-in
        codec, UDP), so it must be bytes-like; with a custom codec it goes
        to ``encode`` instead, whose own output :class:`CodecProxy` checks.
        """
        self._recorder = recorder
        self._raw_react = raw_react
        self._calls = recorder.in_callback
        for name in CALLBACK_NAMES:
            setattr(self, "_h_" + name, getattr(handler, name))

    @classmethod
    def wrapping(cls, handler: Any, recorder: Recorder, raw_react: bool = True) -> HandlerProxy:
        """The proxy for ``handler``, defining ``pre_write``/``after_write`` only if ``handler`` overrides them.

        :raises TypeError: ``handler`` implements none of the callbacks
            (the engine's own check: :func:`reactor.handler.complete_handler`).
        """
        complete = complete_handler(handler)
        pre, after = overrides(handler, "pre_write"), overrides(handler, "after_write")
        key = (cls, pre, after)
        sub = _PROXY_CLASSES.get(key)
        if sub is None:
            attrs: dict[str, Any] = {}
            if pre:
                attrs["pre_write"] = cls._pre_write
            if after:
                attrs["after_write"] = cls._after_write
            sub = _PROXY_CLASSES[key] = type("RecordingHandlerProxy", (cls,), attrs)
        return sub(complete, recorder, raw_react)

    def _check_result(self, callback: str, result: Any, raw: bool) -> None:
        """Record the TypeError the engine closes the connection with, if ``result`` earns one."""
        err = result_error(callback, result)
        if err is None and raw:
            err = output_error(callback, result[0])
        if err is not None:
            self._recorder.record(callback, err, "returned by")

    def on_init_complete(self, server: Server) -> Any:
        recorder = self._recorder
        recorder.server = server
        # An exception here makes serve() raise it; BackgroundServer._run
        # then keeps it and sets ``ready``.
        result = self._h_on_init_complete(server)
        recorder.ready.set()
        return result

    def on_shutdown(self, server: Server) -> None:
        try:
            self._h_on_shutdown(server)
        except Exception as e:
            self._recorder.record("on_shutdown", e)
            raise

    def on_opened(self, c: Conn) -> Any:
        self._recorder.opened(c)
        calls = self._calls
        calls.depth += 1
        try:
            result = self._h_on_opened(c)
        except Exception as e:
            self._recorder.record("on_opened", e)
            raise
        finally:
            calls.depth -= 1
        self._check_result("on_opened", result, True)  # written raw, as gnet does
        return result

    def on_closed(self, c: Conn, err: BaseException | None) -> Any:
        self._recorder.closed(c)
        calls = self._calls
        calls.depth += 1
        try:
            return self._h_on_closed(c, err)
        except Exception as e:
            self._recorder.record("on_closed", e)
            raise
        finally:
            calls.depth -= 1

    def react(self, frame: bytes | None, c: Conn) -> Any:
        calls = self._calls
        calls.depth += 1
        try:
            result = self._h_react(frame, c)
        except Exception as e:
            self._recorder.record("react", e)
            raise
        finally:
            calls.depth -= 1
        self._check_result("react", result, self._raw_react)
        return result

    def tick(self) -> Any:
        calls = self._calls
        calls.depth += 1
        try:
            result = self._h_tick()
        except Exception as e:
            self._recorder.record("tick", e)
            raise
        finally:
            calls.depth -= 1
        try:
            tick_result(result)
        except TypeError as e:
            self._recorder.record("tick", e, "returned by")
        return result

    def _pre_write(self, c: Conn) -> None:
        calls = self._calls
        calls.depth += 1
        try:
            self._h_pre_write(c)
        except Exception as e:
            self._recorder.record("pre_write", e)
            raise
        finally:
            calls.depth -= 1

    def _after_write(self, c: Conn, data: bytes) -> None:
        calls = self._calls
        calls.depth += 1
        try:
            self._h_after_write(c, data)
        except Exception as e:
            self._recorder.record("after_write", e)
            raise
        finally:
            calls.depth -= 1


class CodecProxy:
    """Forwards ``encode``/``decode``, recording exceptions other than :class:`reactor.CodecError` and bad output.

    A :class:`reactor.CodecError` is how a codec refuses the peer's bytes
    (the engine closes that connection, logging a warning): not a bug of
    the test's code, so it is not recorded. What ``encode`` returns must be
    bytes-like (the engine writes it as it is); anything else is recorded
    as a ``TypeError``.
    """

    def __init__(self, codec: Any, recorder: Recorder) -> None:
        self.codec = codec
        self._recorder = recorder
        self._calls = recorder.in_callback
        self._encode: Callable[[Conn, bytes], bytes] = codec.encode
        self._decode: Callable[[Conn], bytes | None] = codec.decode

    def encode(self, c: Conn, data: bytes) -> bytes:
        """The codec's ``encode(c, data)``; recorded if it raises (not a CodecError) or returns no bytes."""
        calls = self._calls
        calls.depth += 1
        try:
            out = self._encode(c, data)
        except CodecError:
            raise
        except Exception as e:
            self._recorder.record("codec.encode", e)
            raise
        finally:
            calls.depth -= 1
        if not isinstance(out, BYTES_LIKE):
            name = type(self.codec).__name__
            err = TypeError(f"{name}.encode() returned {type(out).__name__}; it must return bytes")
            self._recorder.record("codec.encode", err, "returned by")
        return out

    def decode(self, c: Conn) -> bytes | None:
        """The codec's ``decode(c)``; recorded if it raises anything but a CodecError."""
        calls = self._calls
        calls.depth += 1
        try:
            return self._decode(c)
        except CodecError:
            raise
        except Exception as e:
            self._recorder.record("codec.decode", e)
            raise
        finally:
            calls.depth -= 1
