"""The user-facing callback protocol: ``EventHandler``, ``EventServer`` and ``Action``.

gnet counterpart: ``gnet.go`` (v1.6.7: ``EventHandler``, ``EventServer``,
``Action``). Callbacks run on the owning event loop's thread, except ``tick``,
which runs on its own thread exactly as gnet's ``Tick`` runs on its own
goroutine (so state it shares with other callbacks needs a lock).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .connection import Conn
    from .server import Server

__all__ = [
    "BYTES_LIKE",
    "CALLBACK_NAMES",
    "Action",
    "EventHandler",
    "EventServer",
    "check_handler",
    "complete_handler",
    "output_error",
    "overridden",
    "overrides",
    "result_error",
    "tick_result",
]

#: Every callback of the handler protocol, in gnet's order.
CALLBACK_NAMES = (
    "on_init_complete",
    "on_shutdown",
    "on_opened",
    "on_closed",
    "pre_write",
    "after_write",
    "react",
    "tick",
)


class Action(enum.IntEnum):
    """What the loop should do after a callback returns (gnet: ``Action``).

    Any other integer is treated as NONE, as gnet does (its tests return -1
    on purpose).
    """

    #: Nothing: keep the connection.
    NONE = 0
    #: Close this connection (in ``react``: after writing ``out``, stop
    #: processing further frames of this read).
    CLOSE = 1
    #: Shut the whole server down.
    SHUTDOWN = 2


@runtime_checkable
class EventHandler(Protocol):
    """The callbacks a server calls (gnet: ``EventHandler``).

    Inherit from :class:`EventServer` to implement only some of them.
    """

    def on_init_complete(self, server: Server) -> Action:
        """Once the listener is bound, before any loop starts. SHUTDOWN makes ``serve`` return."""
        ...

    def on_shutdown(self, server: Server) -> None:
        """After every loop has stopped and every connection got ``on_closed``."""
        ...

    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        """A new connection is registered with its loop (with TLS: its handshake completed); ``out`` is written raw."""
        ...

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """The connection is closed; ``err`` says why (None: local close or clean EOF).

        Without ``on_opened`` before it only for a TLS handshake that did not
        complete: ``err`` is then its error (never None) and ``c.tls`` is None.
        """
        ...

    def pre_write(self, c: Conn) -> None:
        """Right before reactor writes user data to the socket."""
        ...

    def after_write(self, c: Conn, data: bytes) -> None:
        """After user data was written or buffered (not necessarily on the wire yet)."""
        ...

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """Once per decoded frame; with ``frame=None`` after ``c.wake()``. ``out`` is encoded and written."""
        ...

    def tick(self) -> tuple[float, Action]:
        """With ``ticker=True``: called on the ticker thread; returns the delay before the next tick."""
        ...


class EventServer:
    """No-op implementations of every callback: inherit and override what you need.

    gnet: ``EventServer``. The loops notice which of ``pre_write`` /
    ``after_write`` you did not override and skip calling them on the hot path.
    """

    def on_init_complete(self, server: Server) -> Action:
        """Once the listener is bound, before any loop starts; return SHUTDOWN to make ``serve`` return.

        The default returns ``Action.NONE``. For a :class:`reactor.Client`,
        ``server.addr`` is None.
        """
        return Action.NONE

    def on_shutdown(self, server: Server) -> None:
        """After every loop has stopped and every connection got ``on_closed``; the default does nothing."""
        return None

    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        """A new connection is registered with its loop; return ``(out, action)``.

        With TLS (``serve(tls=...)``, ``Client.dial(tls=...)``) it runs once
        the handshake has completed, and ``c.tls`` is set. ``out``
        (bytes-like or None) is written as it is, not encoded by the codec
        (as in gnet); ``Action.CLOSE`` closes the connection after writing
        it. The default returns ``(None, Action.NONE)``.
        """
        return None, Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """The connection is closed; ``err`` says why (None: a local close or the peer's clean EOF).

        Every connection gets exactly one ``on_closed``, after its
        ``on_opened``, with one exception: a TLS connection whose handshake
        did not complete (not TLS at all, a certificate that fails
        verification, a truncated record, the peer leaving before or during
        the handshake, ``tls_handshake_timeout``, a ``close()`` or a stop
        meanwhile) gets ``on_closed`` with no ``on_opened`` before it. Then
        ``err`` is never None (an ``ssl.SSLError``, e.g. ``ssl.SSLEOFError``
        for a peer that left; ``TimeoutError``; ``ConnectionAbortedError``
        for a local close), ``c.tls`` is None, and the connection was never
        in ``count_connections``.

        Return ``Action.SHUTDOWN`` to stop the server; the default returns ``Action.NONE``.
        """
        return Action.NONE

    def pre_write(self, c: Conn) -> None:
        """Right before reactor writes user data to the socket; not called unless overridden."""
        return None

    def after_write(self, c: Conn, data: bytes) -> None:
        """After user data was written or buffered (not necessarily on the wire yet); not called unless overridden."""
        return None

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """Once per decoded frame; with ``frame=None`` after ``c.wake()``; return ``(out, action)``.

        ``out`` (or None) is encoded by the codec and written; ``action`` is
        ``Action.NONE``, ``Action.CLOSE`` (close after writing ``out``) or
        ``Action.SHUTDOWN`` (stop the server). Anything but a 2-tuple closes
        the connection with a ``TypeError`` (see :func:`result_error`). The
        default answers nothing: ``(None, Action.NONE)``.
        """
        return None, Action.NONE

    def tick(self) -> tuple[float, Action]:
        """With ``ticker=True``: called on the ticker thread; return ``(delay in seconds, action)``.

        The next tick comes ``delay`` seconds later; ``Action.SHUTDOWN``
        stops the server. The default returns ``(0.0, Action.NONE)``.
        """
        return 0.0, Action.NONE


# --- introspection: the one place that knows a handler's shape -------------------------------------------------
def overridden(handler: Any, name: str) -> Callable[..., Any] | None:
    """``handler``'s bound callback ``name``, or None when it is missing or EventServer's no-op.

    The engine skips a no-op ``pre_write``/``after_write`` entirely (two
    Python calls saved per write), and the testing proxies forward only what
    the user's handler really defines, so both ask this one function.
    """
    method = getattr(handler, name, None)
    if not callable(method):
        return None
    if getattr(type(handler), name, None) is getattr(EventServer, name):
        return None
    return method  # type: ignore[no-any-return]


def overrides(handler: Any, name: str) -> bool:
    """Whether the engine will call ``handler.<name>`` as user code (not EventServer's no-op)."""
    return overridden(handler, name) is not None


def complete_handler(handler: Any) -> Any:
    """``handler`` itself, or a stand-in filling EventServer's no-op for each callback it lacks.

    gnet's users embed ``gnet.EventServer`` to get the defaults; Python
    users may instead pass a duck-typed object with only some callbacks.

    :raises TypeError: ``handler`` implements none of the callbacks (a
        class instead of an instance, a function, a codec ...).
    """
    missing = [name for name in CALLBACK_NAMES if not callable(getattr(handler, name, None))]
    if not missing:
        return handler
    if len(missing) == len(CALLBACK_NAMES):
        raise TypeError(
            f"handler {handler!r} implements none of the callbacks ({', '.join(CALLBACK_NAMES)}); "
            "inherit from reactor.EventServer and override the ones you need"
        )
    defaults = EventServer()
    stand_in = type("HandlerWithDefaults", (), {})()
    for name in CALLBACK_NAMES:
        setattr(stand_in, name, getattr(defaults if name in missing else handler, name))
    return stand_in


def check_handler(handler: object) -> None:
    """Refuse, before anything is bound, what cannot be a handler; ``serve`` and ``Client`` call it.

    :raises TypeError: ``handler`` is a class (pass an instance:
        ``serve(MyHandler(), ...)``), or it implements none of the callbacks.
    """
    if isinstance(handler, type):
        raise TypeError(
            f"handler must be an instance, got the class {handler.__qualname__}: "
            f"pass {handler.__qualname__}() instead of {handler.__qualname__}"
        )
    complete_handler(handler)


# --- what a callback may return: the one rule, for the loops and for reactor.testing -------------------------
#: What the loops write as it is: a callback's ``out`` (raw) or an encoder's result must be one of these.
BYTES_LIKE = (bytes, bytearray, memoryview)


def result_error(callback: str, result: object) -> TypeError | None:
    """Why the loops refuse ``result`` as the return value of ``callback`` (``on_opened``, ``react``), or None.

    The rule: a tuple ``(out, action)`` of exactly two items (checked, not
    just unpacked: ``b"ab"`` would unpack into two ints). The loops close the
    connection with this error and log it; :mod:`reactor.testing` records it
    so that the test fails.
    """
    if type(result) is tuple and len(result) == 2:
        return None
    shown = repr(result)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return TypeError(f"{callback}() must return a tuple (bytes | None, Action), got {type(result).__name__} {shown}")


def output_error(callback: str, out: object) -> TypeError | None:
    """Why ``out`` cannot be written as it is (it is neither None nor bytes-like), or None.

    Applies to what is written raw: ``on_opened``'s ``out``, ``react``'s
    with the built-in codec, and what a codec's ``encode`` returns.
    """
    if out is None or isinstance(out, BYTES_LIKE):
        return None
    return TypeError(f"{callback}() returned data of type {type(out).__name__}; it must be bytes-like or None")


def tick_result(result: object) -> tuple[float, Any]:
    """``tick()``'s result checked: ``(delay in seconds as a float, action)``.

    :raises TypeError: not a 2-tuple, or a delay that ``float()`` refuses.
    """
    if type(result) is not tuple or len(result) != 2:
        shown = repr(result)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        raise TypeError(f"tick() must return a tuple (delay_seconds, Action), got {type(result).__name__} {shown}")
    delay, action = result
    try:
        return float(delay), action
    except (TypeError, ValueError) as e:
        raise TypeError(f"tick() must return (delay_seconds, Action): the delay {delay!r} is not a number") from e
