"""The edge-triggered event loop (gnet v2: ``WithEdgeTriggeredIO``).

gnet keeps its default reactor and its optimised one in separate files
(v1.6.7: ``reactor_default_linux.go`` and ``reactor_optimized_linux.go``); the
same split here keeps the level-triggered loop in :mod:`reactor.eventloop`
free of edge-triggered branches. The engine picks the class once.

What changes with EPOLLET (epoll(7), "Level-triggered and edge-triggered"):
the kernel reports a file descriptor when its state *changes* (new bytes
arrived, room appeared in the send buffer), not while it stays ready. So:

* each fd is registered once for in|out|rdhup and never modified (no
  ``EPOLL_CTL_MOD`` when output is queued or flushed: a syscall saved per
  write that does not complete at once);
* a readable event must be read until EAGAIN, and a writable one written
  until EAGAIN or empty, or the rest would never be reported again; to keep
  one busy peer from starving the others, at most
  ``edge_triggered_io_chunk`` bytes are moved per event, and the loop then
  queues a task to continue instead of waiting for an edge that will not
  come;
* leaving a back-pressure pause must re-read explicitly, for the same reason.
"""

from __future__ import annotations

import errno
from logging import ERROR
from typing import TYPE_CHECKING, Any

from .connection import Conn
from .eventloop import MAX_BYTES_TO_WRITE_PER_LOOP, EventLoop
from .internal import unix
from .internal.netpoll import IN_EVENTS, OUT_EVENTS

if TYPE_CHECKING:
    from .engine import Engine
    from .internal.netpoll import Poller
    from .listener import Listener

__all__ = ["EdgeTriggeredEventLoop", "loop_class"]

_EAGAIN = errno.EAGAIN
_EINTR = errno.EINTR
_read_nowait = unix.read_nowait


class EdgeTriggeredEventLoop(EventLoop):
    """An :class:`~reactor.eventloop.EventLoop` whose connections are registered with EPOLLET."""

    edge_triggered = True

    def __init__(self, engine: Engine, poller: Poller, ln: Listener | None) -> None:
        self.io_chunk = engine.opts.edge_triggered_io_chunk
        super().__init__(engine, poller, ln)
        # Bound once, as in the level-triggered loop (a TLS server's already is _read_et_tls).
        self._read_plain = self._read_et
        if not self._tls_reads:
            self._read = self._read_et

    def _tls_read_strategy(self) -> Any:
        return self._read_et_tls

    def _on_event(self, fd: int, ev: int) -> None:
        c = self.connections.get(fd)
        if c is None:
            self._on_other_event(fd)
            return
        if ev & OUT_EVENTS and c._outbound._len:
            self._write(c)
        if ev & IN_EVENTS and c._opened and not c._paused:
            self._read(c)

    def _read_et(self, c: Conn) -> None:
        """Read until EAGAIN or the per-event chunk is used up (gnet v2's edge-triggered ``read``)."""
        budget = self.io_chunk
        fd, cbuf, cap, view = c.fd, self._cbuf, self.buffer_cap, self._view
        while True:
            n = _read_nowait(fd, cbuf, cap)
            if n <= 0:
                if n == 0:
                    self._on_eof(c)
                elif n == -_EINTR:
                    continue
                elif n != -_EAGAIN:
                    self.close_conn(c, unix.syscall_error("read", -n))
                return
            c.feed(view[:n])
            self._process(c)
            if not c._opened or c._paused or c._draining:
                return
            budget -= n
            if budget <= 0:
                # The edge will not be reported again for bytes already
                # waiting: come back through the task queue.
                self.poller.trigger(self._resume_read_et, c)
                return

    def _resume_read_et(self, c: Conn) -> None:
        if c._opened and not c._paused and not c._draining and self.connections.get(c.fd) is c:
            self._read(c)

    def _read_et_tls(self, c: Conn) -> None:
        """``_read_et`` for TLS: each chunk of ciphertext goes through ``_tls_input`` (decrypt, decode, flush)."""
        if c._tls is None:
            self._read_et(c)  # a client's plain connection
            return
        budget = self.io_chunk
        fd, cbuf, cap = c.fd, self._cbuf, self.buffer_cap
        while True:
            n = _read_nowait(fd, cbuf, cap)
            if n <= 0:
                if n == 0:
                    self._tls_eof(c)
                elif n == -_EINTR:
                    continue
                elif n != -_EAGAIN:
                    self._tls_error(c, unix.syscall_error("read", -n))
                return
            self._tls_input(c, n)
            if not c._opened or c._paused or c._draining:
                return
            budget -= n
            if budget <= 0:
                self.poller.trigger(self._resume_read_et, c)
                return

    def _write(self, c: Conn) -> None:
        """Write until EAGAIN, empty, or the chunk is used up (gnet v2's edge-triggered ``write``)."""
        if self.pre_write is not None:
            try:
                self.pre_write(c)
            except Exception as e:
                self.limited.log("pre_write raised", ERROR, "pre_write() raised for %r; closing it", c, exc_info=True)
                self.close_conn(c, e)
                return
        budget = self.io_chunk
        while c.outbound_buffered():
            n = c.flush_some(MAX_BYTES_TO_WRITE_PER_LOOP)
            if n < 0:
                if n == -_EINTR:
                    continue
                if n != -_EAGAIN:
                    self.close_conn(c, unix.syscall_error("write", -n))
                    return
                break
            budget -= n
            if budget <= 0 and c.outbound_buffered():
                # Normal priority, as for reads: an urgent task queued from
                # the loop runs in this same round (urgent tasks run until
                # their queue is empty), so a fast reader of a large queue
                # would keep the loop writing to it and never polling.
                self.poller.trigger(self._resume_write_et, c)
                break
        self._after_flush(c)

    def _resume_write_et(self, c: Conn) -> None:
        if c._opened and c.outbound_buffered() and self.connections.get(c.fd) is c:
            self._write(c)

    def _resumed(self, c: Conn) -> None:
        """Leaving a pause: decode what is held back, and read again, since no new edge will come."""
        super()._resumed(c)
        self.poller.trigger(self._resume_read_et, c)


def loop_class(edge_triggered: bool, backend: str = "epoll") -> type[EventLoop]:
    """The loop class for the ``edge_triggered`` option, chosen once, when the engine or client builds its loops.

    Edge-triggered registration is an epoll notion: on the io_uring backend a
    completion reports each read once, whatever the mode, and the
    level-triggered loop serves both (reactor.internal.uring).
    """
    return EdgeTriggeredEventLoop if edge_triggered and backend == "epoll" else EventLoop
