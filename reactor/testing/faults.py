"""Fault injection: :class:`FaultHandler`, a peer that misbehaves on purpose, and its timer thread.

* :class:`FaultHandler`: close after N bytes, reset, delay, drip-feed,
  never answer, or answer garbage (:data:`DEFAULT_GARBAGE`).
* ``_Scheduler``: the one helper thread per handler that sends the delayed
  and drip-fed answers with ``async_write`` (an event loop never sleeps).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..connection import Conn
from ..errors import ServerInShutdownError
from ..handler import Action, EventServer
from ..internal import sockets, threads, unix
from ..server import Server
from .waiting import DEFAULT_TIMEOUT

__all__ = ["DEFAULT_GARBAGE", "FaultHandler"]


class _Scheduler:
    """One thread running ``fn(*args)`` at given monotonic times (never on an event loop)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closing = False

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            if self._closing:
                return
            heapq.heappush(self._heap, (when, next(self._seq), fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                threads.start_thread(self._thread)
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
                logging.getLogger("reactor").exception("reactor.testing scheduler task failed")

    def close(self, timeout: float | None = None) -> None:
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


def _wake(c: Conn) -> None:
    if not c.opened:
        return
    try:
        c.wake()
    except ServerInShutdownError:
        pass


DEFAULT_GARBAGE = b"\x00\xff\xfeGARBAGE\x80\x81 this is not the answer you expected\r\n\r\n\xde\xad\xbe\xef"


class FaultHandler(EventServer):
    """A peer that misbehaves in one of several ways; build it with the class methods.

    Each mode answers with ``response`` (fixed bytes per received chunk) or,
    when ``response`` is None, echoes what it received, and then:

    * :meth:`close_after` (``"close_after"``): sends exactly ``nbytes``
      bytes in all (once that many were asked for), then a FIN: the client
      reads ``nbytes`` bytes, then EOF, every time. The server shuts down
      its sending side (``shutdown(SHUT_WR)``) once the bytes are in the
      kernel, then reads and discards what the client sends until the
      client closes. Closing at once would not do: ``close(2)`` with unread
      bytes in the receive buffer sends a RST instead of a FIN (tcp(7),
      RFC 2525 section 2.17), and so does a segment reaching a closed socket;
      a client whose first bytes race the close would see either.
    * :meth:`reset` (``"reset"``): on the first bytes received, sends at most
      ``nbytes`` bytes, then closes with SO_LINGER {on, 0}: a TCP RST, every
      time (the client gets ``ConnectionResetError``).
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
        response: bytes | None = None,
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
        #: close_after's connections past their bytes: True once shut down for writing.
        self._ending: dict[Conn, bool] = {}
        self._drip_next: dict[Conn, float] = {}
        self._scheduler = _Scheduler(f"reactor-testing-{mode}")

    # --- constructors, one per mode ------------------------------------------------------------------
    @classmethod
    def close_after(cls, nbytes: int, response: bytes | None = None) -> FaultHandler:
        """Send ``nbytes`` bytes of the answers (echo, or ``response``), then EOF (a FIN, never a RST)."""
        return cls("close_after", nbytes=nbytes, response=response)

    @classmethod
    def reset(cls, nbytes: int = 0, response: bytes | None = None) -> FaultHandler:
        """On the first bytes received, send at most ``nbytes`` bytes, then reset the connection (RST)."""
        return cls("reset", nbytes=nbytes, response=response)

    @classmethod
    def delay(cls, seconds: float, response: bytes | None = None) -> FaultHandler:
        """Send each answer ``seconds`` after its request arrived."""
        return cls("delay", seconds=seconds, response=response)

    @classmethod
    def drip(cls, interval: float = 0.01, response: bytes | None = None) -> FaultHandler:
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
    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        """``close_after(0)``: the FIN right away; every other mode waits for the client."""
        if self.mode == "close_after" and self.nbytes == 0:
            self._end(c)
        return None, Action.NONE

    def _end(self, c: Conn) -> None:
        """close_after's end: a FIN once the answer is in the kernel; then read and drop until the client closes.

        Never ``close(2)`` here: with bytes of the client's still unread (or
        arriving later) the kernel would answer with a RST instead of a FIN.
        The connection is closed by the loop when the client closes its side
        (EOF), or when the server stops.
        """
        if c.outbound_buffered():
            # The kernel has not taken the whole answer yet: a FIN now would
            # cut it. Look again in a millisecond, on the loop (wake -> react(None)).
            self._ending[c] = False
            self._scheduler.call_at(time.monotonic() + 0.001, _wake, c)
            return
        self._ending[c] = True
        try:
            unix.shutdown(c.fd, unix.SHUT_WR)
        except OSError:
            pass  # the client is gone already; the loop sees that on its next read

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """Forget ``c``."""
        self._sent.pop(c, None)
        self._ending.pop(c, None)
        self._drip_next.pop(c, None)
        return Action.NONE

    def on_shutdown(self, server: Server) -> None:
        """Drop the pending delayed and drip-fed sends and join the helper thread."""
        self._scheduler.close(DEFAULT_TIMEOUT)

    def stop_helpers(self, timeout: float | None = None) -> None:
        """Drop the pending delayed/drip-fed sends and join the helper thread.

        :class:`~reactor.testing.BackgroundServer` calls this after the
        server stopped (the hook any handler with helper threads may define).
        """
        self._scheduler.close(timeout)

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """Answer ``frame`` the way the mode says (see the class)."""
        ending = self._ending.get(c)
        if frame is None:
            if ending is False:
                self._end(c)  # a wake from _end: is the answer in the kernel now?
            return None, Action.NONE
        mode = self.mode
        answer = self.response if self.response is not None else frame
        if mode == "never_answer" or ending is not None:
            return None, Action.NONE  # close_after past its end: read and drop
        if mode == "garbage":
            return self.data, Action.NONE
        if mode == "reset":
            sockets.set_linger(c.fd, 0)  # close(2) now sends a RST, whatever is unread or unsent
            return (answer[: self.nbytes] or None), Action.CLOSE
        if mode == "close_after":
            sent = self._sent.get(c, 0)
            left = self.nbytes - sent
            if len(answer) >= left:
                if left:
                    c.write(answer[:left])
                self._end(c)
                return None, Action.NONE
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
