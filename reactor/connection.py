"""A connection: its fd, its inbound and outbound buffers, and the write path.

Why this module is long (~1,100 lines, where the project aims for 500): a
``Conn`` is one object with two faces, the handler's API (buffers, writes,
the thread-safe methods and their back-pressure) and the event loop's side
(the interest state machine, timers, closing), and both change the same
fields under the same invariants (write ordering, the state diagram below).
Splitting the class across files would put one invariant in two places;
the sections below follow gnet's ``connection_unix.go`` instead.

gnet counterpart: ``connection_unix.go`` (v1.6.7: ``conn``, ``write``,
``writev``, ``open``, ``Read``, ``ReadN``, ``ShiftN``, ``ResetBuffer``,
``BufferLength``, ``AsyncWrite``, ``Wake``, ``Close``) plus the v2
conveniences ``Peek``/``Next``/``Discard``/``InboundBuffered``/``Flush``.

Threads. Everything except ``async_write``, ``async_writev``, ``wake``,
``close``, ``set_deadline``, ``wait_writable``, ``inbound_buffered``,
``outbound_buffered`` and the read-only attributes must run on the
connection's event loop thread, i.e. inside its callbacks. gnet silently corrupts its buffers
when that rule is broken (its most reported non-bug, panjf2000/gnet#420,
#479, #525); here such a call raises ``RuntimeError`` naming the safe methods.

What the codec sees. During a read the bytes just read sit in the loop's
shared read buffer (``_buffer``, a view, no copy); bytes left over from
earlier reads sit in the connection's ``_inbound`` ring. The buffer methods
present the concatenation ``inbound ‖ buffer``, as gnet's do. After the
decode loop, whatever is left of ``_buffer`` is copied into ``_inbound``,
because the loop's buffer is reused by the next read on any connection.

Who owns what. The connection owns its buffers and its interest state
machine; the event loop owns the syscalls that move bytes (``read(2)`` into
its shared buffer, the EPOLLOUT flush) and the fd's life (registration,
close, ``on_closed``). The loop never assigns a ``Conn`` field: it calls the
methods in the "event loop's side" section below, which return what the loop
must do next instead of calling back up into it. The states, and the only
methods that move between them::

    (new) --register/mark_open--> R       interest: in
    R  --output queued (write_raw)-----> RW      interest: in|out
    RW --flush emptied (update_interest)-> R
    RW --outbound > write_buffer_cap----> W       paused: interest out only
    W  --outbound <= cap / 2-------------> RW or R (frames held back get decoded)
    any open --start_draining (EOF, Action.CLOSE)--> draining: out only,
               closed by the loop once the outbound queue is empty
    any --mark_closed (loop's close_conn)-----------> closed

Edge-triggered loops register in|out once and never change the interest;
the same methods then only move the paused/draining flags.

Invariant (write ordering): if ``_outbound`` is non-empty, new output is
appended to it and never written around it, so bytes reach the peer in the
order they were written, whichever path (react, write, async_write) wrote them.

Bounded by construction (issue 17). What other threads can make a
connection hold is counted and capped here:

* ``async_write`` bytes are counted when queued (``_Rare.async_pending``,
  under the loop's ``async_lock``), before they reach the outbound buffer;
  ``async_write`` returns False above ``write_buffer_cap`` and refuses past
  ``async_write_limit``; ``wait_writable`` blocks a producer thread until
  the output has drained to half the cap.
* ``wake()`` calls not yet run are merged into one queued task, and a wake
  that finds the connection paused (its peer is not reading) is held, like
  the frames held back, until the pause ends.
* ``set_deadline`` and ``idle_timeout`` keep at most one live timer entry
  each (``_Rare.deadline_timer``, ``_idle_timer``); a deadline moved later
  re-arms lazily when its entry fires, and ``mark_closed`` cancels both, so
  a closed connection is not kept alive by the loop's timer heap.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import WriteBufferFullError
from .internal import unix
from .internal.netpoll import READ_EVENTS, READ_WRITE_EVENTS, WRITE_EVENTS
from .internal.timers import TimerQueue
from .pkg.listbuffer import ListBuffer
from .pkg.ringbuffer import RingBuffer
from .tls import FLUSH_THRESHOLD, WANT_READ, WRITE_SLICE, TLSInfo, TLSSession

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from .eventloop import EventLoop
    from .internal.netpoll import Poller
    from .internal.timers import Timer

__all__ = ["Conn", "UDPConn", "DRAINED", "RESUMED"]

#: ``Conn.update_interest`` results, for the loop: the queue of a draining
#: connection has emptied (close it now), or a back-pressure pause has ended
#: with frames still held back (decode them: no readable event will come).
DRAINED = 1
RESUMED = 2

_EMPTY = memoryview(b"")
_get_ident = threading.get_ident
_ffi = unix.ffi
_MAX_IOV = unix.IOV_MAX
#: One flush asked for by ``Conn.flush`` writes at most this much (gnet v2 flushes everything).
_FLUSH_MAX = 1 << 30
#: Edge-triggered registration: gnet v2's ``EPOLLET``, plus RDHUP to see a half-close without a read.
_ET_FLAGS = unix.EPOLLET | unix.EPOLLRDHUP
_EAGAIN = errno.EAGAIN
_EINTR = errno.EINTR

_SAFE = "async_write(), async_writev(), wake(), close(), set_deadline() and wait_writable()"

# _Rare.wake_state: no wake pending; a wake task is queued; a wake found the
# connection paused and waits for the pause to end (no task queued).
_WAKE_IDLE = 0
_WAKE_QUEUED = 1
_WAKE_HELD = 2
_timer_when = TimerQueue.when

# The inbound ring of every connection that has no leftover bytes: most
# connections never keep any (each read is consumed whole), and a ring per
# connection was ~150 bytes of an idle connection's memory. It is only read
# and reset (resetting an empty ring stores zeros it already holds); the one
# place that writes leftovers, keep_leftover(), gives the connection its own.
_NO_INBOUND = RingBuffer()


class _NoOutbound(ListBuffer):
    """The type of ``_NO_OUTBOUND``: a ListBuffer that is always empty and refuses to grow."""

    __slots__ = ()

    def push(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("queued into the shared empty outbound buffer")

    def push_view(self, data: bytes, offset: int) -> None:
        raise AssertionError("queued into the shared empty outbound buffer")


# The outbound queue of every connection that never had to queue output: most
# write everything straight through, and a ListBuffer per connection was ~48
# bytes of an idle connection's memory. Its _len is always 0, so the hot
# path's ``c._outbound._len`` stays a plain attribute read; the places that
# queue (queue_unwritten, _writev's remainder, the TLS close alert) give it its own
# first, and every other push is behind an ``_outbound._len`` check. Once a
# connection has its own it keeps it (no churn); close puts the shared one back.
_NO_OUTBOUND: ListBuffer = _NoOutbound()


class _Rare:
    """A connection's rarely used fields, in one object made the first time one of them is set.

    The thread-safe methods' state (``set_deadline``, ``wake``, ``close``,
    ``async_write``'s count, ``wait_writable``'s waiters): most connections
    never use any of it, and its seven slots on every ``Conn`` (six net of
    ``_rare``) were 48 bytes of an idle connection's memory (CPython
    allocates in 16-byte steps: 240 -> 192 B). A connection that uses any
    of it pays 96 B for this object, 48 B more than before.
    ``Conn._rare`` is None until ``Conn._get_rare`` makes it, once,
    under the loop's ``async_lock`` (any thread may be first); it is kept
    for the connection's life, so every later store lands in the same object.
    """

    __slots__ = (
        "deadline",
        "deadline_timer",
        "deadline_queued",
        "wake_state",
        "close_queued",
        "async_pending",
        "waiters",
    )

    def __init__(self) -> None:
        self.deadline: float | None = None  # set_deadline(): close at this loop-clock time (any thread stores it)
        self.deadline_timer: Timer | None = None  # the live heap entry for deadline (loop only)
        self.deadline_queued = False  # a cross-thread set_deadline task is queued (one at a time)
        self.wake_state = _WAKE_IDLE  # wake() calls merge while one is queued or held
        self.close_queued = False  # close() calls merge into the one close task queued
        self.async_pending = 0  # async_write bytes queued, not yet written (under loop.async_lock)
        self.waiters = 0  # threads in wait_writable() (under loop.async_lock)


def _not_on_loop(name: str) -> RuntimeError:
    return RuntimeError(
        f"Conn.{name}() must be called on the connection's event-loop thread (inside its "
        f"callbacks); from any other thread use the thread-safe {_SAFE}"
    )


def _check_bytes(data: Any, what: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes-like, got {type(data).__name__}")


class Conn:
    """One stream connection owned by one event loop (gnet: ``conn``)."""

    __slots__ = (
        "fd",
        "_loop",
        "_ctx",
        "_local_addr",
        "_remote_addr",
        "_buffer",
        "_boff",
        "_inbound",
        "_outbound",
        "_opened",
        "_interest",
        "_paused",
        "_draining",
        "_active",
        "_idle_timer",
        "_rare",
        "_edge",
        "_error",
        "_tls",
        "__weakref__",
    )

    def __init__(self, fd: int, loop: EventLoop, local_addr: unix.Address, remote_addr: unix.Address) -> None:
        #: The socket's file descriptor (valid until the connection is closed).
        self.fd = fd
        self._loop = loop
        self._ctx: Any = None
        self._local_addr = local_addr
        self._remote_addr = remote_addr
        self._buffer: memoryview = _EMPTY
        self._boff = 0  # where _buffer starts inside the loop's read buffer
        self._inbound = _NO_INBOUND  # a ring of its own only once bytes are left over
        self._outbound = _NO_OUTBOUND  # a queue of its own only once output is left over
        self._opened = False
        self._interest = 0  # the epoll mask this fd is registered with right now
        self._paused = False  # reading paused: outbound above write_buffer_cap
        # Closing gracefully (peer EOF, or Action.CLOSE with output queued):
        # read nothing more, close once the outbound buffer has drained.
        self._draining = False
        self._active = 0.0  # loop clock of the last frame or output progress (idle_timeout)
        self._idle_timer: Timer | None = None  # the live heap entry for idle_timeout (loop only)
        self._rare: _Rare | None = None  # deadline, wake, close, async_write state: made on first use
        self._edge = False  # registered edge-triggered: the interest never changes
        self._error: OSError | None = None  # a write failed for good; the loop is closing us
        self._tls: TLSSession | None = None  # TLS: the session every byte in and out goes through

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"<Conn fd={self.fd} {state} local={self._local_addr!r} remote={self._remote_addr!r}>"

    def _get_rare(self) -> _Rare:
        """The connection's ``_Rare``, made on first use: race-free, from any thread.

        Check, lock, check again: two threads making one each would lose the
        stores made into the one overwritten. Never call it holding the
        loop's ``async_lock`` (not reentrant): the callers under that lock
        get it before they take the lock.
        """
        rare = self._rare
        if rare is None:
            with self._loop.async_lock:
                rare = self._rare
                if rare is None:
                    rare = self._rare = _Rare()
        return rare

    @property
    def _async_pending(self) -> int:
        """``async_write`` bytes queued, not yet written (read-only; tests and debugging)."""
        rare = self._rare
        return 0 if rare is None else rare.async_pending

    # --- attributes safe from any thread -------------------------------------------------
    @property
    def context(self) -> Any:
        """A slot for user data (gnet: ``Context`` / ``SetContext``); None until set, cleared after ``on_closed``."""
        return self._ctx

    @context.setter
    def context(self, value: Any) -> None:
        self._ctx = value

    @property
    def local_addr(self) -> unix.Address:
        """The listener's address, in the stdlib ``socket`` module's shape."""
        return self._local_addr

    @property
    def remote_addr(self) -> unix.Address:
        """The peer's address (stdlib shape; ``""`` for an unnamed Unix peer)."""
        return self._remote_addr

    @property
    def opened(self) -> bool:
        """True from registration until the connection is closed."""
        return self._opened

    @property
    def tls(self) -> TLSInfo | None:
        """The TLS session's facts (version, cipher, ALPN, SNI, peer certificate), or None without TLS.

        Set once the handshake has completed, i.e. from ``on_opened`` on
        (``serve(..., tls=ctx)``, ``Client.dial(..., tls=ctx)``); see
        :class:`reactor.tls.TLSInfo`. Still readable in ``on_closed`` and after.
        None during the handshake too, so also in the ``on_closed`` of a
        connection whose handshake failed (the one ``on_closed`` with no
        ``on_opened`` before it).
        """
        tls = self._tls
        return None if tls is None else tls.info

    # Every loop-only method starts with the same two lines, written out
    # rather than calling a helper: these methods run per frame, and the
    # extra Python call would cost as much as the check itself.

    # --- v1 buffer methods (loop only) ---------------------------------------------------------
    def read(self) -> bytes:
        """All unconsumed inbound bytes, without consuming them (gnet: ``Read``)."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("read")
        if not self._inbound._n:
            return bytes(self._buffer)
        return self._inbound.bytes() + bytes(self._buffer)

    def buffer_length(self) -> int:
        """How many unconsumed inbound bytes there are (gnet: ``BufferLength``)."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("buffer_length")
        return self._inbound._n + len(self._buffer)

    def read_n(self, n: int) -> tuple[int, bytes]:
        """Peek ``n`` bytes without consuming: ``(size, data)`` (gnet: ``ReadN``).

        As in gnet, ``n <= 0`` or more than is buffered returns everything
        buffered, so check ``size``.
        """
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("read_n")
        total = self._inbound._n + len(self._buffer)
        if n <= 0 or n > total:
            n = total
        return n, self._peek(n)

    def shift_n(self, n: int) -> int:
        """Consume ``n`` bytes; return how many were consumed (gnet: ``ShiftN``).

        Deliberate difference (docs/gnet-mapping.md, deliberate change #5): ``shift_n(0)`` consumes
        nothing, where gnet's ``ShiftN(0)`` discards the whole buffer. As in
        gnet, a negative ``n`` or one larger than what is buffered consumes
        everything.
        """
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("shift_n")
        if n == 0:
            return 0
        total = self._inbound._n + len(self._buffer)
        if n < 0 or n >= total:
            self._reset()
            return total
        return self._discard(n)

    def reset_buffer(self) -> None:
        """Discard every unconsumed inbound byte (gnet: ``ResetBuffer``)."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("reset_buffer")
        self._reset()

    # --- v2 conveniences (loop only) -----------------------------------------------------------
    def peek(self, n: int = -1) -> bytes:
        """Up to ``n`` unconsumed bytes (all if ``n`` < 0), not consumed (gnet v2: ``Peek``)."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("peek")
        if not self._inbound._n:
            # Nothing left over from earlier reads (the usual case): the bytes
            # are all in the loop's read buffer. A codec peeks once per frame.
            buffer = self._buffer
            return bytes(buffer if n < 0 or n >= len(buffer) else buffer[:n])
        total = self._inbound._n + len(self._buffer)
        return self._peek(total if n < 0 or n > total else n)

    def next(self, n: int = -1) -> bytes:
        """Up to ``n`` unconsumed bytes (all if ``n`` < 0), consumed (gnet v2: ``Next``)."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("next")
        total = self._inbound._n + len(self._buffer)
        data = self._peek(total if n < 0 or n > total else n)
        self._discard(len(data))
        return data

    def discard(self, n: int = -1) -> int:
        """Consume up to ``n`` bytes (all if ``n`` < 0); return how many (gnet v2: ``Discard``)."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("discard")
        held = self._inbound._n
        total = held + len(self._buffer)
        if n < 0 or n >= total:
            if held:
                self._inbound.reset()
            self._buffer = _EMPTY
            return total
        return self._discard(n)

    def find(self, sub: bytes, start: int = 0) -> int:
        """Offset of ``sub`` in the unconsumed inbound bytes (from ``start``), or -1.

        For codecs: in the common case (nothing left over from earlier reads)
        this searches the loop's read buffer in place, so a decoder looking
        for delimiters costs no copy per frame (``peek(-1)`` per frame would
        copy the rest of the read each time: quadratic in frames per read).
        """
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("find")
        if start < 0:
            start = 0  # an offset into the stream, never Python's from-the-end
        if not self._inbound._n:
            size = len(self._buffer)
            if start > size:
                return -1  # as bytes.find: b"" is found at len(data), not beyond
            base = self._boff
            i = self._loop.buffer.find(sub, base + start, base + size)
            return i if i < 0 else i - base
        if not self._buffer:
            return self._inbound.find(sub, start)  # leftovers only (see feed): searched in place
        return (self._inbound.bytes() + bytes(self._buffer)).find(sub, start)

    def inbound_buffered(self) -> int:
        """Unconsumed inbound bytes (gnet v2: ``InboundBuffered``). Safe from any thread (a snapshot)."""
        return self._inbound._n + len(self._buffer)

    def outbound_buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (gnet v2: ``OutboundBuffered``). Safe from any thread.

        On the io_uring backend, output the ring has taken for its next send
        (at most 64 KiB, or ``socket_send_buffer``) counts too when this is asked on the loop thread,
        where a handler decides whether its answer is out (say, before a
        ``shutdown(SHUT_WR)``). From another thread the snapshot leaves it out:
        the ring's state is the loop's alone, like the socket's own buffer.
        """
        n = len(self._outbound)
        if self._opened and _get_ident() == self._loop.tid:
            n += self._loop.poller.unsent(self.fd)
        return n

    def _peek(self, n: int) -> bytes:
        inbound = self._inbound
        held = inbound._n
        if held == 0:
            return bytes(self._buffer[:n])
        if n <= held:
            return inbound.bytes(n)
        return inbound.bytes() + bytes(self._buffer[: n - held])

    def _discard(self, n: int) -> int:
        inbound = self._inbound
        held = inbound._n
        if n <= held:
            inbound.discard(n)
        else:
            inbound.reset()
            self._buffer = self._buffer[n - held :]
            self._boff += n - held
        return n

    def _reset(self) -> None:
        self._inbound.reset()
        self._buffer = _EMPTY

    # --- writing on the loop ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Encode ``data`` with the codec and write it now, buffering what the kernel does not take.

        gnet v1's internal ``c.write`` (v2: ``Write``). Loop only; from other
        threads use ``async_write``.
        """
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("write")
        if self._opened:
            self._write(data)

    def writev(self, bufs: Sequence[bytes]) -> None:
        """Encode each buffer and write them with one ``writev(2)`` (gnet: ``c.writev``). Loop only."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("writev")
        if self._opened:
            self._writev(bufs)

    def flush(self) -> None:
        """Try to write the outbound buffer now instead of waiting for EPOLLOUT (gnet v2: ``Flush``). Loop only."""
        if _get_ident() != self._loop.tid:
            raise _not_on_loop("flush")
        if self._tls is not None and self._opened:
            self._tls_move_output()  # answers encrypted during this read, not yet queued
        if self._opened and self._outbound._len and self._error is None:
            n = self.flush_some(_FLUSH_MAX)
            if n < 0 and n != -_EAGAIN and n != -_EINTR:
                self._fail(unix.syscall_error("write", -n))
                return
            self.update_interest()

    def _write(self, data: Any) -> None:
        """gnet: ``conn.write``: encode, PreWrite, write or buffer, AfterWrite."""
        loop = self._loop
        encode = loop.encode
        packet = data if encode is None else encode(self, data)
        if loop.pre_write is not None:
            loop.pre_write(self)
        self.write_raw(packet)
        if loop.after_write is not None:
            loop.after_write(self, data)

    def _writev(self, bufs: Sequence[Any]) -> None:
        """gnet: ``conn.writev``: encode each, PreWrite, one writev, buffer the remainder."""
        loop = self._loop
        encode = loop.encode
        packets = [b if encode is None else encode(self, b) for b in bufs]
        for p in packets:
            _check_bytes(p, "each buffer to write")
        packets = [p for p in packets if len(p)]
        if loop.pre_write is not None:
            loop.pre_write(self)
        outbound = self._outbound
        tls = self._tls
        if tls is not None:
            # Encrypted together, sent with one write(2): the batch a read's answers get.
            batching, tls.batching = tls.batching, True
            try:
                for p in packets:
                    self.write_raw(p)
            finally:
                tls.batching = batching
            if not batching:
                self.tls_flush()
        elif outbound._len or len(packets) <= 1 or self._error is not None:
            for p in packets:
                self.write_raw(p)
        else:
            n = loop.writev_nowait(self.fd, packets)
            if n < 0:
                if n != -_EAGAIN and n != -_EINTR:
                    self._fail(unix.syscall_error("writev", -n))
                    return
                n = 0
            # Queue whatever the kernel did not take, from the split point on.
            if outbound is _NO_OUTBOUND and n < sum(map(len, packets)):
                outbound = self._outbound = ListBuffer()
            for p in packets:
                if n >= len(p):
                    n -= len(p)
                    continue
                if n:
                    outbound.push(memoryview(p)[n:])
                    n = 0
                else:
                    outbound.push(p)
            if outbound._len:
                self.update_interest()
        if loop.after_write is not None:
            for b in bufs:
                loop.after_write(self, b)

    # --- the event loop's side (called on the loop thread by reactor.eventloop, never by handlers) ---------
    # These are the only ways the loop changes a connection: it never assigns
    # a Conn field. Where the loop must act next (close, decode held-back
    # frames), the method says so in its result instead of calling the loop.

    def register(self, poller: Poller, edge_triggered: bool) -> None:
        """Add the fd to ``poller``: read interest, or in|out once for good when edge-triggered (gnet: ``AddRead``)."""
        if edge_triggered:
            poller.add_read_write(self.fd, _ET_FLAGS)
            self._interest = READ_WRITE_EVENTS
            self._edge = True
        else:
            poller.add_stream(self.fd)
            self._interest = READ_EVENTS

    def mark_open(self, now: float) -> None:
        """The loop has registered this connection and is about to call ``on_opened`` (gnet: ``c.open``)."""
        self._opened = True
        self._active = now

    def touch(self, now: float) -> None:
        """A complete frame or output progress at loop time ``now``: not idle (``idle_timeout``)."""
        self._active = now

    def feed(self, data: memoryview) -> None:
        """Present ``data``, the start of the loop's read buffer just filled by ``read(2)``, to the codec.

        With bytes left over from earlier reads, ``data`` is appended to them
        at once (one copy of the new bytes), so the codec searches one
        contiguous stream: presenting *ring ‖ read* would make every
        ``find``/``peek`` join the two, re-copying the whole partial frame
        on each read — quadratic in the number of reads a large frame takes.
        """
        if self._inbound._n:
            self._inbound.write(data)
            self._buffer = _EMPTY
        else:
            self._buffer = data
        self._boff = 0

    def has_leftover(self) -> bool:
        """Whether bytes from earlier reads are still waiting to be decoded."""
        return self._inbound._n != 0

    def take_all(self) -> bytes:
        """Everything buffered (leftover ‖ this read), consumed: the built-in codec's one frame."""
        inbound = self._inbound
        if not inbound._n:
            everything = bytes(self._buffer)
        else:
            everything = inbound.bytes() + bytes(self._buffer)
            inbound.reset()
        self._buffer = _EMPTY
        return everything

    def keep_leftover(self) -> None:
        """After decoding: copy the unconsumed tail of the loop's buffer (reused by the next read) into our own ring.

        An idle connection holds no ring at all: once everything is consumed
        the ring's storage goes back.
        """
        if self._buffer:
            inbound = self._inbound
            if inbound is _NO_INBOUND:
                self._inbound = inbound = RingBuffer()
            inbound.write(self._buffer)
            self._buffer = _EMPTY
        elif not self._inbound._n and self._inbound._size:
            self._inbound = _NO_INBOUND

    # --8<-- [start:write-raw]
    def write_raw(self, packet: Any) -> None:
        """Write ``packet`` as it is (no codec, no hooks), or queue it behind pending output.

        On the loop only; handlers use :meth:`write`. A hard write error
        (the peer reset) does not raise into the caller: the connection is
        marked failed and the loop closes it with that error (see ``_fail``).
        """
        if type(packet) is not bytes:
            _check_bytes(packet, "data to write")
            # A bytearray or memoryview answer (rare) becomes bytes once: what
            # is queued must not change under us, and one write path serves all.
            packet = bytes(packet)
        size = len(packet)
        if not size or self._error is not None:
            return
        tls = self._tls
        if tls is not None:
            # TLSSession.write, written out for the common case (one call
            # less per answer): encrypt into the outgoing BIO, and send now
            # unless the loop is batching a read's answers.
            if size > WRITE_SLICE or not tls.writable:
                self._tls_write(packet)  # large, early (mid-handshake) or after a failure
                return
            try:
                tls.encrypt(packet)
            except OSError as e:  # ssl.SSLError: the session failed
                tls.fail()
                self._fail(e)
                return
            if not tls.batching or tls.outgoing.pending >= FLUSH_THRESHOLD:
                self._send_cipher(tls.drain())
            return
        if self._outbound._len:
            # Never write around queued bytes: that would reorder the stream.
            self._outbound.push(packet)
            self.update_interest()
            return
        # write(2) straight through cffi (bytes pass to C without a copy):
        # saves a wrapper call per write.
        n = self._loop.syswrite(self.fd, packet, size)
        if n == size:
            self._active = self._loop.timers.now  # output progress: not idle
        else:
            self.queue_unwritten(packet, n)
    # --8<-- [end:write-raw]

    def queue_unwritten(self, packet: bytes, n: int) -> None:
        """A direct ``write(2)`` of ``packet`` returned ``n``, not all of it: fail, or queue the rest.

        ``n`` < 0 is the C call's -1 (errno says why); EAGAIN/EINTR mean
        nothing was taken. Also called by the loop's direct read path.
        """
        if n < 0:
            err = _ffi.errno
            if err != _EAGAIN and err != _EINTR:
                self._fail(unix.syscall_error("write", err))
                return
            n = 0
        else:
            self._active = self._loop.timers.now  # output progress: not idle
        outbound = self._outbound
        if outbound is _NO_OUTBOUND:
            outbound = self._outbound = ListBuffer()
        outbound.push_view(packet, n)
        self.update_interest()

    def flush_some(self, max_bytes: int) -> int:
        """One ``write(2)``/``writev(2)`` of up to ``max_bytes`` from the head of the outbound queue.

        What the kernel took leaves the queue; returns that count, or the
        negated errno (EAGAIN: the socket buffer is full).
        """
        outbound = self._outbound
        bufs = outbound.peek(max_bytes, _MAX_IOV)
        loop = self._loop
        n: int = loop.write_nowait(self.fd, bufs[0]) if len(bufs) == 1 else loop.writev_nowait(self.fd, bufs)
        if n > 0:
            outbound.discard(n)
            self._active = self._loop.timers.now  # the peer is taking our output: not idle
            rare = self._rare
            if rare is not None and rare.waiters:
                self._notify_writers()
        return n

    # --8<-- [start:update-interest]
    def update_interest(self) -> int:
        """Move the state machine to match the outbound queue; returns 0, DRAINED or RESUMED.

        Level-triggered: read only when nothing is pending, read|write while
        output is pending, write only (paused) while above
        ``write_buffer_cap`` until it drains to half of it. Edge-triggered:
        the registration never changes, only the paused flag does. Changes
        of registration go through the poller (``EPOLL_CTL_MOD``).

        :raises OSError: ``epoll_ctl`` failed (the loop closes the connection).
        """
        pending = self._outbound._len
        loop = self._loop
        if not pending and self._draining:
            # Output the poller took but has not sent yet (io_uring's send
            # buffer) is still owed to the peer: wait for it, as for our queue.
            pending = loop.poller.unsent(self.fd)
        was_paused = self._paused
        result = 0
        if not pending:
            self._paused = False
            if self._draining:
                return DRAINED  # everything owed to a half-closed peer is out
        elif self._draining:
            self._paused = True  # read nothing more from a peer that said EOF
        elif was_paused:
            if pending <= loop.low_water:
                self._paused = False
        elif loop.write_cap and pending > loop.write_cap:
            self._paused = True
        if was_paused and not self._paused and not self._draining:
            result = RESUMED
        if self._edge:
            return result
        if not pending:
            want = READ_EVENTS
        elif self._paused:
            want = WRITE_EVENTS
        else:
            want = READ_WRITE_EVENTS
        if want != self._interest:
            poller = loop.poller
            if want == READ_EVENTS:
                poller.mod_read(self.fd)
            elif want == WRITE_EVENTS:
                poller.mod_write(self.fd)
            else:
                poller.mod_read_write(self.fd)
            self._interest = want
        return result
    # --8<-- [end:update-interest]

    def start_draining(self) -> bool:
        """Read nothing more and close once the outbound queue is empty (peer EOF, ``Action.CLOSE``).

        Unread input is dropped: it will never be processed. Returns True
        when nothing is queued, i.e. the loop may close right away. With
        TLS, our ``close_notify`` is queued first, behind the output, so a
        graceful close tells the peer the stream ended where it did (not a
        truncation).
        """
        if self._tls is not None and self._error is None:
            self._tls_move_output()
            if self._tls.close_notify():
                self._tls_move_output()
        if not self._outbound._len and not self._loop.poller.unsent(self.fd):
            return True
        self._draining = True
        self._inbound.reset()
        self._buffer = _EMPTY
        return self.update_interest() == DRAINED

    def mark_closed(self) -> bool:
        """The loop is closing this connection: False when it was already closed (a stale request).

        Cancels its timer entries (so the heap keeps nothing of a closed
        connection alive) and wakes threads blocked in ``wait_writable``.
        """
        if not self._opened:
            return False
        self._opened = False
        tls = self._tls
        if tls is not None and self._error is None:
            # What flush_residual should still try to send: an alert OpenSSL
            # wrote when the session failed (the peer learns why), and our
            # close_notify if the session is open and none was sent yet.
            tls.close_notify()
            if tls.pending_output():
                if self._outbound is _NO_OUTBOUND:
                    self._outbound = ListBuffer()
                self._outbound.push(tls.take_output())
        if self._idle_timer is not None:
            self._loop.timers.cancel(self._idle_timer)
            self._idle_timer = None
        rare = self._rare
        if rare is not None:
            if rare.deadline_timer is not None:
                self._loop.timers.cancel(rare.deadline_timer)
                rare.deadline_timer = None
            if rare.waiters:
                self._notify_writers()
        return True

    def flush_residual(self) -> str | None:
        """Before close: write what the kernel takes without blocking; the reason the rest was dropped, if any.

        Gives up at the first error, EAGAIN included: a peer that is gone or
        not reading must not stall the loop (gnet looped forever on EAGAIN
        before panjf2000/gnet#341).
        """
        while self._outbound._len and self._error is None:
            n = self.flush_some(1 << 30)
            if n <= 0:
                if n < 0 and n != -_EAGAIN:
                    return os.strerror(-n)
                break
        return None

    def release(self) -> None:
        """After ``on_closed``: drop the buffers and the context (gnet: ``releaseTCP``).

        So a closed connection holds no memory, even if the user keeps the object.
        """
        if self._inbound is not _NO_INBOUND:
            self._inbound.release()  # at once, even if the user keeps the Conn object
        self._inbound = _NO_INBOUND
        self._outbound = _NO_OUTBOUND  # drops the queue
        self._buffer = _EMPTY
        self._ctx = None
        if self._tls is not None:
            self._tls.release()  # the SSLObject and its BIOs; c.tls (the info) stays

    def deadline(self) -> float | None:
        """The loop-clock time ``set_deadline`` armed, or None."""
        rare = self._rare
        return None if rare is None else rare.deadline

    def arm_idle(self, due: float) -> None:
        """Arm the ``idle_timeout`` check at loop time ``due`` (at open, and when it fires with activity since).

        One entry at a time: activity only moves ``_active`` on, and the
        entry re-arms itself from it when it fires (``EventLoop.check_idle``).
        """
        loop = self._loop
        self._idle_timer = loop.timers.schedule(due, loop.check_idle, self)

    def arm_deadline(self) -> None:
        """On the loop: make sure a timer entry fires no later than the deadline.

        A deadline moved later needs nothing: the armed entry fires first and
        re-arms itself at the new time (``deadline_fired``). Only a deadline
        earlier than the armed entry replaces it (the old entry is
        cancelled), so a connection never has more than one live entry,
        however often ``set_deadline`` is called.
        """
        rare = self._rare
        if rare is None:
            return  # no deadline was ever set
        deadline = rare.deadline
        if deadline is None or not self._opened:
            return  # a cleared deadline: the armed entry (if any) drops itself when it fires
        timer = rare.deadline_timer
        timers = self._loop.timers
        if timer is not None:
            if _timer_when(timer) <= deadline:
                return
            timers.cancel(timer)
        rare.deadline_timer = timers.schedule(deadline, self._loop.check_deadline, self)

    def _arm_queued_deadline(self) -> None:
        """The task a cross-thread ``set_deadline`` queued: clear the flag, then arm the latest deadline."""
        self._get_rare().deadline_queued = False  # first: a call after this point queues a new task
        self.arm_deadline()

    def deadline_fired(self, now: float) -> bool:
        """The deadline entry fired at loop time ``now``: True when the deadline has passed (the loop closes us).

        Otherwise the deadline was moved later (re-armed there) or cleared
        (nothing more to do).
        """
        # Forget the entry *before* reading the deadline: a set_deadline on
        # another thread stores the deadline and then looks at the entry;
        # if it still saw this entry, the read below sees its deadline.
        rare = self._get_rare()  # made already: an entry was armed
        rare.deadline_timer = None
        deadline = rare.deadline
        if deadline is None or not self._opened:
            return False
        if deadline <= now:
            return True
        loop = self._loop
        rare.deadline_timer = loop.timers.schedule(deadline, loop.check_deadline, self)
        return False

    def begin_wake(self) -> bool:
        """The loop runs a queued wake: True to call ``react(None, c)`` now, False to hold it while paused.

        A paused connection's peer is not reading: answering wake-ups would
        grow its output without bound (a tick-driven push to a peer that
        never reads). The wake is held, as frames are, until the pause ends.
        """
        rare = self._get_rare()  # made already: a wake was queued
        if self._paused:
            rare.wake_state = _WAKE_HELD
            return False
        rare.wake_state = _WAKE_IDLE
        return True

    def take_held_wake(self) -> bool:
        """A pause ended: True when a wake was held during it (the loop queues it again)."""
        rare = self._rare
        if rare is None or rare.wake_state != _WAKE_HELD:
            return False
        rare.wake_state = _WAKE_QUEUED
        return True

    def async_done(self, n: int) -> None:
        """An ``async_write`` task of ``n`` bytes has run (or was dropped): they are no longer queued."""
        loop = self._loop
        rare = self._get_rare()  # made already by _reserve; fetched before taking the lock
        with loop.async_lock:
            rare.async_pending -= n
            if rare.waiters and rare.async_pending + self._outbound._len <= loop.low_water:
                loop.async_ready.notify_all()

    def _notify_writers(self) -> None:
        """Wake ``wait_writable`` callers if the output has drained to the low-water mark or we are closed."""
        loop = self._loop
        rare = self._get_rare()  # made already: there are waiters; fetched before taking the lock
        with loop.async_lock:
            if not self._opened or rare.async_pending + self._outbound._len <= loop.low_water:
                loop.async_ready.notify_all()

    def _fail(self, err: OSError) -> None:
        """A write failed for good: stop reading and writing, and have the loop close us with ``err``.

        The close is queued as an urgent task rather than done here, so the
        connection never calls back into its loop; it runs at the end of
        this poll round, and until then the connection is draining with
        nothing to drain (its reads and writes are no-ops).
        """
        if self._error is not None or not self._opened:
            return
        self._error = err
        self._draining = True
        self._paused = True
        self._outbound = _NO_OUTBOUND  # drops the queue
        self._inbound.reset()
        self._buffer = _EMPTY
        loop = self._loop
        loop.poller.urgent_trigger(loop.close_conn, self, err)

    # --- TLS, the event loop's side (the state machine is reactor.tls.TLSSession; on the loop thread) ----------
    # With TLS every byte in and out goes through the session: read(2) feeds
    # ciphertext in (tls_receive), the loop decrypts into its own read buffer
    # (tls_decrypt) and hands the plaintext to the codec as it would a read
    # (feed); write_raw encrypts, and the ciphertext takes the plain outbound
    # path (_send_cipher), so ordering, write_buffer_cap and the interest
    # state machine do not change. While the loop processes a read, answers
    # are only encrypted ("batching"); tls_flush sends them in one write(2).

    def start_tls(
        self,
        ctx: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        waiter: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Put a TLS session on this connection, before its handshake starts (the loop's ``register``).

        ``waiter`` is called once, with None or the error, when the handshake ends.
        """
        tls = TLSSession(ctx, server_side, server_hostname)
        tls.waiter = waiter
        self._tls = tls

    def tls_handshaking(self) -> bool:
        """True for a TLS connection whose handshake has not completed (or failed): ``on_opened`` has not run."""
        tls = self._tls
        return tls is not None and tls.info is None

    def tls_begin(self, due: float) -> bool:
        """The handshake starts: it must complete by loop time ``due``; True when this side speaks first (a client).

        The timer is the connection's deadline entry (``set_deadline``'s;
        a handler rarely sees the connection before the handshake ends): one
        entry, cancelled when the handshake completes or the connection
        closes. A ``set_deadline`` made meanwhile (a client dialing from a
        callback) replaces it, and then outlives the handshake.
        """
        self._get_rare().deadline = due
        self.arm_deadline()
        tls = self._tls
        if tls is None:
            return False
        tls.handshake_due = due
        return not tls.server_side

    def tls_receive(self, view: memoryview, n: int) -> int:
        """``view[:n]`` is ciphertext just read: feed it, then handshake or decrypt (see ``tls_decrypt``).

        Starts a batch: answers written until :meth:`tls_flush` wait in the
        outgoing BIO. Returns a plaintext count (the plaintext is at the
        start of ``view``), ``WANT_READ``, ``OPENED`` (the handshake has just
        completed: the loop calls ``on_opened``, then ``tls_decrypt``) or
        ``CLOSE_NOTIFY``.

        :raises ssl.SSLError: the handshake failed, or a record is corrupt.
        """
        tls = self._tls
        assert tls is not None
        return tls.receive(view, n)

    def tls_decrypt(self, view: memoryview) -> int:
        """The next plaintext into ``view``: a count > 0, ``WANT_READ`` (all decrypted) or ``CLOSE_NOTIFY``.

        :raises ssl.SSLError: a corrupt record, an alert from the peer.
        """
        tls = self._tls
        return WANT_READ if tls is None else tls.decrypt_into(view)

    def tls_opened(self) -> None:
        """The handshake has completed: cancel its timer, and encrypt what was written before it ended."""
        tls = self._tls
        rare = self._rare
        # Cleared unless a set_deadline was made meanwhile:
        if tls is not None and rare is not None and rare.deadline == tls.handshake_due:
            rare.deadline = None
            timer = rare.deadline_timer
            if timer is not None:
                self._loop.timers.cancel(timer)
                rare.deadline_timer = None
        if tls is not None and tls.early:
            early, tls.early = tls.early, []
            for packet in early:
                self._tls_write(packet)

    def tls_flush(self) -> None:
        """End the batch: send the ciphertext waiting in the outgoing BIO with one write(2) (or queue it)."""
        tls = self._tls
        if tls is None:
            return
        tls.batching = False
        cipher = tls.drain()
        if not cipher or not self._opened:
            return
        if self._outbound._len or self._error is not None:
            self._send_cipher(cipher)
            return
        size = len(cipher)  # _send_cipher, written out: once per read
        n = self._loop.syswrite(self.fd, cipher, size)
        if n == size:
            self._active = self._loop.timers.now
        else:
            self.queue_unwritten(cipher, n)

    def tls_eof(self) -> BaseException | None:
        """read(2) returned 0: the error for ``on_closed`` (``ssl.SSLEOFError`` without close_notify), or None.

        See :meth:`reactor.tls.TLSSession.end_of_input`.
        """
        tls = self._tls
        return None if tls is None else tls.end_of_input()

    def closing_error(self) -> BaseException | None:
        """The error ``on_closed`` gets once a draining connection has drained: a TLS peer's ragged EOF, or None."""
        tls = self._tls
        return None if tls is None else tls.eof_error

    def tls_settled(self, err: BaseException | None) -> None:
        """The handshake ended (``err`` None: it completed): tell the waiter ``start_tls`` was given, once."""
        tls = self._tls
        if tls is None or tls.waiter is None:
            return
        waiter, tls.waiter = tls.waiter, None
        waiter(err)

    def tls_received_any(self) -> bool:
        """Whether the peer has sent any bytes at all on this TLS connection."""
        tls = self._tls
        return tls is not None and tls.received

    def _tls_write(self, packet: Any) -> None:
        """``write_raw`` with TLS for any size (small ones take the inline path in ``write_raw``).

        A large write goes a slice at a time: the outgoing BIO never holds
        more than a slice or two; the ciphertext waits in the outbound queue,
        where ``write_buffer_cap`` sees it. Sent now, or at the end of the
        batch (``tls_flush``).
        """
        tls = self._tls
        assert tls is not None
        try:
            view = memoryview(packet)
            for off in range(0, len(view), WRITE_SLICE):
                cipher = tls.write(view[off : off + WRITE_SLICE])
                if cipher:
                    self._send_cipher(cipher)
        except OSError as e:  # ssl.SSLError
            self._fail(e)

    def _tls_move_output(self) -> None:
        """Whatever ciphertext waits in the outgoing BIO, into the outbound path now."""
        tls = self._tls
        if tls is not None and tls.pending_output():
            self._send_cipher(tls.take_output())

    def _send_cipher(self, data: bytes) -> None:
        """Ciphertext to the socket: ``write_raw``'s plain path (write now, or queue behind pending output)."""
        size = len(data)
        if not size or self._error is not None:
            return
        if self._outbound._len:
            self._outbound.push(data)
            self.update_interest()
            return
        n = self._loop.syswrite(self.fd, data, size)
        if n == size:
            self._active = self._loop.timers.now
        else:
            self.queue_unwritten(data, n)

    # --- thread-safe methods ------------------------------------------------------------------------
    def async_write(self, data: bytes) -> bool:
        """Write ``data`` (encoded) from any thread (gnet: ``AsyncWrite``); False: slow down.

        Queued as a task on the connection's loop; writes queued from one
        thread reach the peer in the order they were queued. Dropped
        silently if the connection is closed by the time the task runs (as
        gnet). Mutable buffers are copied now, so the caller may reuse them.

        Back-pressure (new; asyncio's ``pause_writing``, gnet v2's
        ``AsyncWrite`` callback): the result says whether this connection's
        waiting output (outbound buffer plus queued ``async_write`` bytes) is
        still within ``write_buffer_cap`` after this call. False means the
        peer is not keeping up: stop producing for it, e.g. block in
        :meth:`wait_writable` on a producer thread, or skip it and check
        ``wait_writable(0)`` later from a ticker. A producer that ignores
        the signal is refused past ``async_write_limit``. The push pattern::

            for chunk in source:                      # a producer thread
                if not c.async_write(chunk):          # over the high-water mark
                    if not c.wait_writable(timeout=30):
                        c.close()                     # stalled for 30 s, or closed
                        break

        :raises reactor.WriteBufferFullError: the output waiting for this
            connection would pass ``async_write_limit``; nothing was queued
            and the connection stays open. (A single write larger than the
            limit is accepted when nothing is waiting, so it can be sent.)
        :raises reactor.ServerInShutdownError: the loop has stopped.
        """
        _check_bytes(data, "async_write() data")
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        below = self._reserve(n)
        loop = self._loop
        try:
            loop.poller.trigger(loop.async_write, self, data)
        except BaseException:
            self.async_done(n)
            raise
        return below

    def async_writev(self, bufs: Sequence[bytes]) -> bool:
        """Write several buffers (each encoded) with one ``writev`` from any thread (gnet: ``AsyncWritev``).

        Counted, limited and answered as one :meth:`async_write` of their total size.
        """
        for b in bufs:
            _check_bytes(b, "each async_writev() buffer")
        frozen = [b if type(b) is bytes else bytes(b) for b in bufs]
        n = sum(len(b) for b in frozen)
        below = self._reserve(n)
        loop = self._loop
        try:
            loop.poller.trigger(loop.async_writev, self, frozen)
        except BaseException:
            self.async_done(n)
            raise
        return below

    def _reserve(self, n: int) -> bool:
        """Count ``n`` more queued bytes, or refuse them past the limit; True while within ``write_buffer_cap``."""
        loop = self._loop
        rare = self._get_rare()  # before taking the lock: _get_rare may take it
        with loop.async_lock:
            pending = rare.async_pending + self._outbound._len
            limit = loop.async_limit
            if limit and pending and pending + n > limit:
                raise WriteBufferFullError(
                    f"async_write() of {n} bytes refused: {pending} bytes are already waiting for {self!r} "
                    f"and async_write_limit is {limit}; when async_write() returns False, stop and "
                    f"wait_writable() before writing more"
                )
            rare.async_pending += n
        cap = loop.write_cap
        return not cap or pending + n <= cap

    def wait_writable(self, timeout: float | None = None) -> bool:
        """Block the calling thread until this connection can take more output; False on timeout or close.

        "Can take more": its waiting output (outbound buffer plus queued
        ``async_write`` bytes) has drained to half of ``write_buffer_cap``
        (the same low-water mark at which a paused connection is read
        again), or to nothing when the cap is 0. ``timeout=0`` only checks.
        Returns False when ``timeout`` seconds pass first or the connection
        is closed (``c.opened`` tells which). For producer threads; on the
        loop thread it would wait for the loop itself, so it raises
        ``RuntimeError`` there.
        """
        loop = self._loop
        if _get_ident() == loop.tid:
            raise RuntimeError(
                "Conn.wait_writable() blocks: call it from a producer thread, never on the event loop "
                "(inside callbacks, check async_write()'s result instead)"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        ready = loop.async_ready
        rare = self._get_rare()  # before taking the lock: _get_rare may take it
        with ready:
            rare.waiters += 1
            try:
                while True:
                    if not self._opened:
                        return False
                    if rare.async_pending + self._outbound._len <= loop.low_water:
                        return True
                    if deadline is None:
                        ready.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        ready.wait(remaining)
            finally:
                rare.waiters -= 1

    def wake(self) -> None:
        """Call ``react(None, c)`` on the loop soon, from any thread (gnet: ``Wake``, urgent priority).

        Bounded (new): wake-ups not yet run are merged into one, so a
        thread calling ``wake`` in a loop queues one task, not millions;
        one called from the loop itself (inside ``react``) is queued at
        normal priority, so ``react(None)`` waking itself again cannot keep
        the loop from polling (urgent tasks run until their queue is
        empty); and while the connection is paused by ``write_buffer_cap``
        the wake is held until its peer reads again.
        """
        rare = self._rare
        if rare is None:
            rare = self._get_rare()
        if rare.wake_state != _WAKE_IDLE:
            return  # merged into the wake already queued (or held)
        rare.wake_state = _WAKE_QUEUED
        loop = self._loop
        try:
            if _get_ident() == loop.tid:
                loop.poller.trigger(loop.wake, self)
            else:
                loop.poller.urgent_trigger(loop.wake, self)
        except BaseException:
            rare.wake_state = _WAKE_IDLE
            raise

    def set_deadline(self, seconds: float | None) -> None:
        """Close the connection ``seconds`` from now unless a later call moves or clears it (None).

        Safe from any thread. When it fires, ``on_closed`` receives a
        ``TimeoutError``. Implemented with the loop's timer heap (see
        ``reactor.internal.timers``), not a thread per connection. gnet v2 declares
        ``SetDeadline`` but returns ``ErrUnsupportedOp``; its users asked for
        this for years. A typical use is a per-request deadline: set it in
        ``on_opened``, push it on in ``react`` after each complete request.
        That is cheap and bounded: a deadline moved later is one attribute
        store, and a connection holds at most one live timer entry however
        often this is called (a 1M-request pipeline calling it per request
        used to leave 1M entries in the heap).
        """
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
                raise ValueError(f"set_deadline() takes seconds >= 0 or None, got {seconds!r}")
        deadline = None if seconds is None else time.monotonic() + seconds
        rare = self._rare
        if rare is None:
            if deadline is None:
                return  # no deadline was ever set: nothing to clear
            rare = self._get_rare()
        # One store, atomic under the GIL: the latest call wins, from whichever thread.
        rare.deadline = deadline
        if deadline is None:
            return  # the armed entry, if any, finds None when it fires and drops itself
        loop = self._loop
        if _get_ident() == loop.tid:
            self.arm_deadline()
            return
        timer = rare.deadline_timer  # read *after* the store: see deadline_fired
        if timer is not None and _timer_when(timer) <= deadline:
            return  # moved later: the armed entry re-arms itself when it fires
        if rare.deadline_queued:
            return  # the queued task reads the deadline when it runs: it will see this one
        rare.deadline_queued = True
        try:
            loop.poller.urgent_trigger(self._arm_queued_deadline)
        except BaseException:
            rare.deadline_queued = False
            raise

    def close(self) -> None:
        """Close the connection from any thread; ``on_closed(c, None)`` follows (gnet: ``Close``).

        Pending output is flushed first as far as the kernel takes it without
        blocking. Calls made while a close is already queued are merged into
        it, so a thread calling ``close`` in a loop queues one task.
        """
        rare = self._rare
        if rare is None:
            rare = self._get_rare()
        if rare.close_queued:
            return
        rare.close_queued = True
        loop = self._loop
        try:
            loop.poller.trigger(loop.close_conn, self, None)
        except BaseException:
            rare.close_queued = False
            raise


class UDPConn(Conn):
    """A UDP peer (gnet: ``conn`` built by ``newUDPConn``).

    On a server, one is made per datagram: ``remote_addr`` is its sender,
    ``read()``/``peek()`` see the datagram, and the object is not reused
    (gnet does the same; its Context does not persist between datagrams
    either). A client's connected UDP socket has one for its lifetime.

    Writing sends one datagram to ``remote_addr`` right away with
    ``sendto(2)`` on the calling thread: a datagram is sent whole or not at
    all, so there is no outbound buffer to order, and ``send_to``,
    ``async_write`` and ``write`` are all safe from any thread. No codec is
    applied (gnet never encodes UDP).
    """

    __slots__ = ("_family", "_connected")

    def __init__(
        self,
        fd: int,
        loop: EventLoop,
        local_addr: unix.Address,
        remote_addr: unix.Address,
        family: int,
        connected: bool = False,
    ) -> None:
        super().__init__(fd, loop, local_addr, remote_addr)
        self._family = family
        self._connected = connected

    def __repr__(self) -> str:
        return f"<UDPConn fd={self.fd} local={self._local_addr!r} remote={self._remote_addr!r}>"

    def register(self, poller: Poller, edge_triggered: bool) -> None:
        """Read interest as readiness (``add_read``): datagrams are read with ``recvfrom(2)`` by the loop,
        on either backend (a stream's ``add_stream`` would have the io_uring poller receive them)."""
        poller.add_read(self.fd)
        self._interest = READ_EVENTS

    @property
    def connected(self) -> bool:
        """True for a client's connected UDP socket (one UDPConn for its lifetime); False for a server's datagram."""
        return self._connected

    def send_to(self, data: bytes) -> None:
        """Send ``data`` as one datagram to the peer, from any thread (gnet: ``SendTo``).

        :raises OSError: what ``sendto(2)`` reports (e.g. EMSGSIZE for a
            datagram over the path's limit, ECONNREFUSED on a connected socket
            whose peer is not listening).
        """
        _check_bytes(data, "send_to() data")
        loop = self._loop
        if loop.pre_write is not None:
            loop.pre_write(self)
        if self._connected:
            unix.write(self.fd, data)
        else:
            unix.sendto(self.fd, data, 0, self._family, self._remote_addr)
        if loop.after_write is not None:
            loop.after_write(self, data)

    def write(self, data: bytes) -> None:
        """Send one datagram to the peer (same as :meth:`send_to`)."""
        self.send_to(data)

    def writev(self, bufs: Sequence[bytes]) -> None:
        """Send the buffers joined as one datagram."""
        self.send_to(b"".join(bufs))

    def async_write(self, data: bytes) -> bool:
        """Send one datagram (same as :meth:`send_to`: sendto is already thread-safe); always True: nothing waits."""
        self.send_to(data)
        return True

    def async_writev(self, bufs: Sequence[bytes]) -> bool:
        """Send the buffers joined as one datagram, at once (nothing is queued for UDP)."""
        self.send_to(b"".join(bufs))
        return True

    def wait_writable(self, timeout: float | None = None) -> bool:
        """Nothing is ever buffered for a datagram: True while the socket is open."""
        return self._opened

    def flush(self) -> None:
        """Nothing to flush: datagrams are never buffered."""

    def _write(self, data: Any) -> None:
        self.send_to(data)

    def wake(self) -> None:
        """``react(None, c)`` on the loop; only for a client's connected UDP socket."""
        if not self._connected:
            raise RuntimeError("wake() is for connected UDP sockets; a server datagram's conn is not kept")
        super().wake()

    def close(self) -> None:
        """Close a client's connected UDP socket; a server datagram's conn has nothing to close."""
        if self._connected:
            super().close()
