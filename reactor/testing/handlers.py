"""The ready-made handlers that record or script a conversation.

* :class:`EchoHandler`: writes back what it reads (TCP, Unix and UDP).
* :class:`RecordingHandler` (and its :class:`Event`): records every
  received byte per connection and every open/close event; ``wait_for``,
  ``assert_received``.
* :class:`ScriptedHandler`: a conversation script (expected input → reply)
  that every connection must follow; a deviation fails the test.

The HTTP handler is in :mod:`reactor.testing.http`, the misbehaving peer in
:mod:`reactor.testing.faults`; the ``wait_for`` they share in
:mod:`reactor.testing.waiting`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..connection import Conn, UDPConn
from ..handler import Action, EventServer
from .waiting import DEFAULT_TIMEOUT, Waiting, WaitTimeout

__all__ = ["EchoHandler", "Event", "RecordingHandler", "ScriptedHandler"]


def _conn_key(c: Conn) -> Any:
    """What identifies a peer: the Conn for streams; the sender for UDP (one UDPConn per datagram)."""
    if isinstance(c, UDPConn) and not c.connected:
        return ("udp", c.remote_addr)
    return c


class EchoHandler(EventServer):
    """Writes back every byte it reads (TCP and Unix streams; one datagram back per datagram for UDP)."""

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """``frame`` back, as it came."""
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
    error: BaseException | None = None


class RecordingHandler(Waiting, EventServer):
    """Records every byte received, per connection, and every open and close.

    Connections are numbered in the order they were opened (for UDP: in the
    order their senders were first seen). Thread-safe: the loops record,
    the test reads and waits.

    :param echo: also write every received chunk back (default: answer nothing).
    :param reply: bytes to answer each received chunk with (overrides ``echo``).
    """

    def __init__(self, echo: bool = False, reply: bytes | None = None) -> None:
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
    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        """Record an ``"opened"`` event (the connection gets the next index)."""
        with self._cond:
            i = self._conn_index(c)
            self._open[i] = True
            self._events.append(Event("opened", i))
            self._cond.notify_all()
        return None, Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """Record a ``"closed"`` event with ``err``."""
        with self._cond:
            i = self._conn_index(c)
            self._open[i] = False
            self._index.pop(_conn_key(c), None)  # a new Conn may reuse nothing, but keep the dict small
            self._events.append(Event("closed", i, error=err))
            self._cond.notify_all()
        return Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """Record ``frame`` as a ``"data"`` event; answer ``reply``, the frame (``echo``) or nothing."""
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
    def received(self, conn: int | None = None) -> bytes:
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
        """How many connections are open right now."""
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


class ScriptedHandler(Waiting, EventServer):
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
        steps: Sequence[tuple[bytes, bytes | None]],
        *,
        greeting: bytes | None = None,
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

    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        """Start the connection at step 0; send the ``greeting``, if any."""
        with self._cond:
            self._state(c)
        return self.greeting or None, Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """Forget the connection's progress."""
        with self._cond:
            self._states.pop(_conn_key(c), None)
        return Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """Match ``frame`` against the script, answer each completed step; a mismatch raises ``AssertionError``."""
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


