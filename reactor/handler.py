"""The user-facing callback protocol: ``EventHandler``, ``EventServer`` and ``Action``.

gnet counterpart: ``gnet.go`` (v1.6.7: ``EventHandler``, ``EventServer``,
``Action``). Callbacks run on the owning event loop's thread, except ``tick``,
which runs on its own thread exactly as gnet's ``Tick`` runs on its own
goroutine (so state it shares with other callbacks needs a lock).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Tuple, runtime_checkable

if TYPE_CHECKING:
    from .connection import Conn
    from .server import Server

__all__ = ["CALLBACK_NAMES", "Action", "EventHandler", "EventServer", "complete_handler", "overridden", "overrides"]

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

    def on_opened(self, c: Conn) -> Tuple[Optional[bytes], Action]:
        """A new connection is registered with its loop; ``out`` is written raw (not encoded)."""
        ...

    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Action:
        """The connection is closed; ``err`` says why (None: local close or clean EOF)."""
        ...

    def pre_write(self, c: Conn) -> None:
        """Right before reactor writes user data to the socket."""
        ...

    def after_write(self, c: Conn, data: bytes) -> None:
        """After user data was written or buffered (not necessarily on the wire yet)."""
        ...

    def react(self, frame: Optional[bytes], c: Conn) -> Tuple[Optional[bytes], Action]:
        """Once per decoded frame; with ``frame=None`` after ``c.wake()``. ``out`` is encoded and written."""
        ...

    def tick(self) -> Tuple[float, Action]:
        """With ``ticker=True``: called on the ticker thread; returns the delay before the next tick."""
        ...


class EventServer:
    """No-op implementations of every callback: inherit and override what you need.

    gnet: ``EventServer``. The loops notice which of ``pre_write`` /
    ``after_write`` you did not override and skip calling them on the hot path.
    """

    def on_init_complete(self, server: Server) -> Action:
        return Action.NONE

    def on_shutdown(self, server: Server) -> None:
        return None

    def on_opened(self, c: Conn) -> Tuple[Optional[bytes], Action]:
        return None, Action.NONE

    def on_closed(self, c: Conn, err: Optional[BaseException]) -> Action:
        return Action.NONE

    def pre_write(self, c: Conn) -> None:
        return None

    def after_write(self, c: Conn, data: bytes) -> None:
        return None

    def react(self, frame: Optional[bytes], c: Conn) -> Tuple[Optional[bytes], Action]:
        return None, Action.NONE

    def tick(self) -> Tuple[float, Action]:
        return 0.0, Action.NONE


# --- introspection: the one place that knows a handler's shape -------------------------------------------------
def overridden(handler: Any, name: str) -> Optional[Callable[..., Any]]:
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
