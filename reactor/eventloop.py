"""The event loop: one thread, one poller, the connections it owns.

Why this module is long (~800 lines, where the project aims for 500): it
mirrors two gnet files at once, ``eventloop_unix.go`` and
``reactor_default_linux.go``, because a Python loop's body and its event
handlers share one object; and its hot path is written out on purpose
(``_read_direct``, measured in docs/benchmarks.md) rather than split into
calls. Edge-triggered mode already lives apart, in ``eventloop_et.py``.

gnet counterpart (v1.6.7): ``eventloop_unix.go`` (``eventloop``, ``register``,
``open``, ``read``, ``write``, ``closeConn``, ``wake``, ``ticker``,
``handleAction``, ``closeAllSockets``, ``readUDP``) and
``reactor_default_linux.go`` (``run``, ``activateMainReactor``,
``activateSubReactor``). Edge-triggered mode follows gnet v2.

Invariant: every fd in ``self.connections`` is registered with *this* loop's
poller and no other, and only this loop's thread touches the dict (the main
reactor hands new connections over through an urgent task, never directly).

Some facts about the read and write paths
------------------------------------------
* A readable event gets *one* ``read(2)`` of at most ``read_buffer_cap``
  bytes in level-triggered mode (gnet v1): if more is waiting, epoll simply
  reports the fd again next round, and other connections get their turn in
  between. ``read`` returning 0 means the peer closed its side (EOF).
* ``write(2)`` on a non-blocking socket takes what fits in the socket's send
  buffer and returns that count (a *partial write*), or fails with EAGAIN
  when nothing fits. The rest waits in the outbound buffer, and the fd's
  interest becomes read|write; when EPOLLOUT reports room, up to
  MAX_BYTES_TO_WRITE_PER_LOOP bytes are flushed with ``writev``, and once the
  buffer is empty the interest goes back to read only, because a
  level-triggered EPOLLOUT on an idle socket would fire on every round.
* Back-pressure (new, not in gnet): while a connection's outbound buffer is
  above ``write_buffer_cap`` its interest is write only, so a peer that sends
  requests but never reads the answers cannot make the server buffer without
  bound; reading resumes when the buffer has drained to half the cap.
* Edge-triggered mode (gnet v2) is a subclass in ``reactor/eventloop_et.py``,
  as gnet keeps its default and optimised reactors in separate files.

Bounded by construction (issue 17; the table is in docs/reliability.md)
------------------------------------------------------------------------
* User code cannot hold the loop: a ``decode`` that returns frames without
  consuming input is caught after ``MAX_FRAMES_WITHOUT_PROGRESS`` of them and
  its connection closed with a ``CodecError`` naming the codec; a ``wake()``
  from inside ``react`` is queued at normal priority (at most
  MAX_ASYNC_TASKS_AT_ONE_TIME per round, so the loop keeps polling).
* Every log line a peer can trigger (a callback raising on its input, a codec
  error, an oversized datagram, ...) goes through ``self.limited``, a
  :class:`~reactor.internal.ratelimit.LogLimiter`: at most
  ``DEFAULT_PER_PERIOD`` lines of a kind per second per loop, then a count of
  the suppressed ones.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
import threading
from logging import DEBUG, ERROR, INFO, WARNING
from typing import TYPE_CHECKING, Any

from .connection import DRAINED, RESUMED, Conn, UDPConn
from .errors import CodecError, EngineShutdown, ServerInShutdownError
from .handler import Action, output_error, overridden, result_error, tick_result
from .internal import unix
from .internal.netpoll import IN_EVENTS, OUT_EVENTS, Poller
from .internal.ratelimit import LogLimiter
from .internal.timers import TimerQueue
from .tls import OPENED, WANT_READ

if TYPE_CHECKING:
    from .engine import Engine
    from .listener import Listener

__all__ = ["EventLoop", "MAX_BYTES_TO_WRITE_PER_LOOP", "MAX_FRAMES_WITHOUT_PROGRESS", "MAX_IOV_SIZE"]

#: gnet: ``MaxBytesToWritePerLoop``: bytes flushed per writable event.
MAX_BYTES_TO_WRITE_PER_LOOP = 64 * 1024
#: gnet: ``MaxIovSize`` (= IOV_MAX on Linux).
MAX_IOV_SIZE = unix.IOV_MAX
#: Frames in a row that ``decode`` may return while neither it nor ``react``
#: consumes a byte. Each call sees the same input, so past a few it can only
#: be a codec bug that would spin the loop forever; a stateful codec may
#: still emit a handful of synthetic frames.
MAX_FRAMES_WITHOUT_PROGRESS = 16

_EAGAIN = errno.EAGAIN
_EINTR = errno.EINTR
_EMPTY = memoryview(b"")
_MIN_TICK_DELAY = 0.001
_RAISED = object()  # marks "react raised" where None could be a (bad) result
_CLOSE = int(Action.CLOSE)
_SHUTDOWN = int(Action.SHUTDOWN)

_unpack = unix.ffi.unpack
_ffi = unix.ffi


def _name_callback(err: Exception, callback: str, out: Any) -> Exception:
    """A TypeError about ``out`` itself, reworded to name the callback that returned it (see ``output_error``)."""
    named = output_error(callback, out) if isinstance(err, TypeError) else None
    return err if named is None else named


class EventLoop:
    """One reactor thread, level-triggered (gnet: ``eventloop`` with ``reactor_default_linux.go``).

    The read strategy is bound once, in ``__init__``: ``self._read`` is the
    direct path when the built-in codec runs with no encode and no write
    hooks (gnet's default, and an echo server's whole life), the frame path
    otherwise. Edge-triggered loops are a subclass in
    :mod:`reactor.eventloop_et`.
    """

    #: Whether connections are registered edge-triggered (see reactor.eventloop_et).
    edge_triggered = False

    def __init__(self, engine: Engine, poller: Poller, ln: Listener | None) -> None:
        self.idx = 0
        self.engine = engine
        self.poller = poller
        self.ln = ln  # this loop's own listener (reuse_port mode), else the shared one
        #: True in reuse_port/UDP mode, where this loop polls its listener itself.
        self.owns_listener = False
        self.logger: logging.Logger = engine.logger
        opts = engine.opts
        self.connections: dict[int, Conn] = {}
        #: A client's connected UDP sockets (gnet: ``udpSockets``); server UDP
        #: sockets are the loop's listener and are not in either table.
        self.udp_conns: dict[int, UDPConn] = {}
        self._conn_count = 0  # read by other threads (an int read is atomic under the GIL)
        #: Ident of the thread running this loop; loop-only Conn methods compare against it.
        self.tid: int | None = None
        #: The thread running this loop, set by whoever starts it (the engine, the client).
        self.thread: threading.Thread | None = None
        # gnet: el.buffer, one read buffer shared by all this loop's connections.
        self.buffer_cap = opts.read_buffer_cap
        self.buffer = bytearray(self.buffer_cap)
        self._cbuf = unix.ffi.from_buffer(self.buffer)
        #: read(2), or on the io_uring backend the same contract over its recv
        #: completions (``Poller.read``): the read paths below serve both.
        self._sysread: Any = poller.read
        #: write(2), write_nowait and writev_nowait as this loop's poller does them (see Poller.write).
        self.syswrite: Any = poller.write
        self.write_nowait: Any = poller.write_nowait
        self.writev_nowait: Any = poller.writev_nowait
        self._view = memoryview(self.buffer)
        self.write_cap = opts.write_buffer_cap
        self.low_water = opts.write_buffer_cap // 2
        #: The hard limit on a connection's waiting output for ``Conn.async_write`` (0: none).
        self.async_limit = opts.async_write_limit_bytes()
        #: Guards every connection's ``_async_pending``/``_waiters``: producer
        #: threads count queued bytes under it, the loop uncounts them.
        self.async_lock = threading.Lock()
        #: Notified when a connection's output drains to ``low_water`` or it closes (``Conn.wait_writable``).
        self.async_ready = threading.Condition(self.async_lock)
        #: Every log line a peer can trigger goes through this (see the module docstring).
        self.limited = LogLimiter(self.logger)
        #: Deadlines (idle_timeout, Conn.set_deadline) checked once per poll round.
        self.timers = TimerQueue()
        self.idle_timeout = float(getattr(opts, "idle_timeout", 0.0))
        # Handler callbacks, resolved once (the hot path calls them per frame).
        handler = engine.handler
        self.handler = handler
        self._react = handler.react
        self.pre_write = overridden(handler, "pre_write")
        self.after_write = overridden(handler, "after_write")
        codec = engine.codec
        self.codec = codec
        self._decode = codec.decode
        self.encode = None if engine.builtin_codec else codec.encode
        self._builtin = engine.builtin_codec
        raw_write = self.encode is None and self.pre_write is None and self.after_write is None
        no_hooks = self.pre_write is None and self.after_write is None
        # The strategies, bound once instead of re-tested per event:
        # how a frame's answer is written ...
        self._write_answer: Any
        if raw_write:
            self._write_answer = Conn.write_raw  # no codec encode, no write hooks: skip a layer
        elif no_hooks:
            self._write_answer = self._encode_and_write
        else:
            self._write_answer = Conn.write  # encode, hooks, write
        # ... and how a readable connection is read.
        self._read: Any = self._read_direct if (self._builtin and raw_write) else self._read_frames
        #: TLS: the server context accepted connections get a session from
        #: (``serve(tls=...)``; None for a client, whose ``dial`` brings its own).
        self.tls_context: ssl.SSLContext | None = getattr(engine, "tls_context", None)
        self.tls_handshake_timeout = float(getattr(opts, "tls_handshake_timeout", 10.0))
        # How a plain connection is read, kept for loops that read TLS too (a client's).
        self._read_plain: Any = self._read
        # TLS's counterpart of the direct path: each decrypted piece is the frame.
        self._tls_direct = self._builtin and raw_write
        self._tls_reads = False
        if self.tls_context is not None:
            self._use_tls_reads()

    def __repr__(self) -> str:
        return f"<EventLoop {self.idx} conns={self._conn_count}>"

    def count_connections(self) -> int:
        """Connections this loop owns (gnet: ``loadConn``)."""
        return self._conn_count

    @property
    def read_path(self) -> str:
        """The read strategy bound at start: ``"direct"``, ``"frames"``, ``"edge-triggered"``, ``"tls"`` or
        ``"edge-triggered-tls"`` (for tests and docs)."""
        name = getattr(self._read, "__name__", "").removeprefix("_read_")
        return {"et": "edge-triggered", "et_tls": "edge-triggered-tls"}.get(name, name)

    def _use_tls_reads(self) -> None:
        """Read through TLS from now on: bound at start for a TLS server, at the first TLS dial for a client.

        The TLS strategy reads plain connections with the strategy it replaces,
        so a client may dial with and without TLS on one loop.
        """
        if not self._tls_reads:
            self._tls_reads = True
            self._read = self._tls_read_strategy()

    def _tls_read_strategy(self) -> Any:
        return self._read_tls_direct if self._tls_direct else self._read_tls

    # --- loop bodies (gnet: reactor_default_linux.go) ----------------------------------------------
    def _enter(self) -> None:
        self.tid = threading.get_ident()
        if self.engine.opts.lock_os_thread:
            # gnet's LockOSThread pins a goroutine to an OS thread; a Python
            # thread already is one, so the useful equivalent is pinning that
            # thread to a CPU (pid 0 = the calling thread for this syscall).
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cpus[max(self.idx, 0) % len(cpus)]})

    # --8<-- [start:loop-run]
    def run(self) -> None:
        """A loop that polls its own listener: reuse_port and UDP servers (gnet: ``run``).

        Accepting itself lives in ``Engine.accept_on`` (gnet: ``el.accept`` in
        acceptor_unix.go), next to the main reactor's ``Engine.accept``. Since
        ``_on_event`` dispatches every kind of fd, the body is the
        sub-reactor's; the listener stays open until the engine has called
        on_shutdown (which may dup it, as gnet's tests do). gnet closes it here.
        """
        self._poll_until_shutdown(self._on_event, f"event-loop({self.idx})", owns_conns=True)
    # --8<-- [end:loop-run]

    def activate_main_reactor(self) -> None:
        """The main reactor: only accepts, hands connections to sub-reactors (gnet: ``activateMainReactor``)."""
        self._poll_until_shutdown(self.engine.accept, "main reactor", owns_conns=False)

    # --8<-- [start:activate-sub-reactor]
    def activate_sub_reactor(self) -> None:
        """A sub-reactor: serves the connections the main reactor hands it (gnet: ``activateSubReactor``)."""
        self._poll_until_shutdown(self._on_event, f"event-loop({self.idx})", owns_conns=True)
    # --8<-- [end:activate-sub-reactor]

    # --8<-- [start:poll-until-shutdown]
    def _poll_until_shutdown(self, callback: Any, name: str, owns_conns: bool) -> None:
        """The body all three loop kinds share: poll until shutdown, then close and tell the engine."""
        self._enter()
        try:
            self.poller.polling(callback, self.timers)
        except EngineShutdown:
            self.logger.debug("%s is exiting on request", name)
        except BaseException:
            self.logger.exception("%s is exiting due to an error", name)
        finally:
            if owns_conns:
                self.close_all_conns()
            self.engine.signal_shutdown()
    # --8<-- [end:poll-until-shutdown]

    def _on_other_event(self, fd: int) -> None:
        """An fd that is not a stream connection: this loop's listener, a client's UDP socket, or stale."""
        ln = self.ln
        if ln is not None and fd == ln.fd and self.owns_listener:
            if ln.is_udp:
                self._read_udp(fd, None)
            else:
                self.engine.accept_on(self, fd)
            return
        udp = self.udp_conns.get(fd)
        if udp is not None:
            self._read_udp(fd, udp)
        # Otherwise: a stale event for an fd closed earlier in this batch.

    # --8<-- [start:on-event]
    def _on_event(self, fd: int, ev: int) -> None:
        """Dispatch one ready fd (the closure passed to ``Polling`` in gnet; one for every loop kind)."""
        c = self.connections.get(fd)
        if c is None:
            self._on_other_event(fd)
            return
        # gnet's order, kept on purpose: flush pending output first (an error
        # event must still try to deliver what is queued), and while output
        # is pending, let EPOLLOUT take precedence over reading more requests.
        # (Reads of c's state here and in _read_direct are the hot path's
        # only look inside a Conn; every change goes through its methods.)
        if ev & OUT_EVENTS:
            if c._outbound._len:
                self._write(c)
                if not c._opened:
                    return
            elif c._draining:
                # Our queue is empty and the poller's own output (io_uring's
                # send buffer) has gone: a draining connection may close now.
                self._after_flush(c)
                return
        if ev & IN_EVENTS and (not ev & OUT_EVENTS or not c._outbound._len):
            self._read(c)
    # --8<-- [end:on-event]

    # --- registration (gnet: register, open) -------------------------------------------------------------
    # --8<-- [start:register]
    def register(self, c: Conn) -> None:
        """Add ``c`` to this loop's epoll set and open it (gnet: ``register``; an urgent task)."""
        try:
            c.register(self.poller, self.edge_triggered)
        except OSError:
            self.limited.log("register failed", ERROR, "cannot register fd %d with event-loop(%d)", c.fd, self.idx,
                             exc_info=True)
            unix.close(c.fd)
            return
        self.connections[c.fd] = c
        if self.tls_context is not None:
            try:
                c.start_tls(self.tls_context, server_side=True)
            except (ssl.SSLError, MemoryError) as e:
                self.limited.log("tls failed", ERROR, "cannot start TLS on %r: %s", c, e)
                c.mark_open(self.timers.now)
                # A handshake that could not even start: on_closed gets e (no
                # on_opened), as for any failed one. Without a session, close_conn
                # takes c for an announced connection and counts it out: count it in.
                self._conn_count += 1
                self.close_conn(c, e)
                return
        if c.tls_handshaking():
            self._tls_start(c)
        else:
            self.open(c)
    # --8<-- [end:register]

    # --8<-- [start:open]
    def open(self, c: Conn) -> None:
        """Mark ``c`` open and call ``on_opened`` (gnet: ``open``)."""
        c.mark_open(self.timers.now)
        self._conn_count += 1
        if self.idle_timeout:
            c.arm_idle(self.timers.now + self.idle_timeout)
        # gnet writes OnOpened output raw (not encoded). gnet v1 then issues a
        # second EPOLL_CTL_ADD if output was left over, which fails with
        # EEXIST (docs/gnet-mapping.md, deliberate change #1); Conn's
        # update_interest uses MOD.
        self._run_callback(c, "on_opened", self.handler.on_opened, (c,), self._write_hooked_raw)
    # --8<-- [end:open]

    # --- applying a callback's result: the one cold-path way ---------------------------------------
    def _run_callback(self, c: Conn, name: str, callback: Any, args: tuple[Any, ...], write: Any) -> bool:
        """Call ``callback(*args)``, check its ``(out, action)``, write ``out`` with ``write``, apply the action.

        gnet: what ``open``, ``read`` and ``wake`` each do after calling the
        handler, ending in ``handleAction``. Used by every path except the
        direct read path, which has its own measured copy (``_read_direct``).
        Returns False when ``c`` is closed (or closing) afterwards.
        """
        try:
            result = callback(*args)
        except Exception as e:
            self.limited.log(name + " raised", ERROR, "%s() raised for %r; closing it", name, c, exc_info=True)
            self.close_conn(c, e)
            return False
        # The rule lives in reactor.handler.result_error (reactor.testing checks it too).
        err = result_error(name, result)
        if err is not None:
            self.limited.log("bad result", ERROR, "%s; closing %r", err, c)
            self.close_conn(c, err)
            return False
        out, action = result
        if out is not None:
            try:
                write(c, out)
            except Exception as e:
                e = _name_callback(e, name, out)
                self.limited.log(
                    "write failed", ERROR, "writing %s() output failed for %r; closing it", name, c, exc_info=True
                )
                self.close_conn(c, e)
                return False
        if action:
            if action == _CLOSE:
                self.close_after_flush(c)
                return False
            if action == _SHUTDOWN:
                raise EngineShutdown
        return c._opened and not c._draining

    def _write_hooked_raw(self, c: Conn, out: Any) -> None:
        """on_opened's output: not encoded (as gnet), but the write hooks still run."""
        if self.pre_write is not None:
            self.pre_write(c)
        c.write_raw(out)
        if self.after_write is not None:
            self.after_write(c, out)

    def _encode_and_write(self, c: Conn, out: Any) -> None:
        c.write_raw(self.encode(c, out))  # type: ignore[misc]

    def _react_frame(self, frame: bytes | None, c: Conn) -> bool:
        """``react`` one frame (or a wake's None) and apply its result; False when ``c`` is closed."""
        if self.idle_timeout:
            c.touch(self.timers.now)  # a complete frame is activity
        return self._run_callback(c, "react", self._react, (frame, c), self._write_answer)

    # --- reading (gnet: read) ------------------------------------------------------------------------------
    def _read_direct(self, c: Conn) -> None:
        """One ``read(2)``, and the whole read is the frame: the built-in codec with no encode and no hooks.

        ``_react_frame`` and ``Conn.write_raw``, written out: this runs once
        per readable event, and those two Python calls cost ~10 % of a
        64-byte echo's CPU time (docs/benchmarks.md). A change to
        ``_run_callback`` belongs here too.
        """
        # read(2) straight through cffi: the wrapper's extra Python call
        # costs as much as the errno check.
        n = self._sysread(c.fd, self._cbuf, self.buffer_cap)
        if n <= 0:
            self._read_failed(c, n)
            return
        if c._inbound._n:
            c.feed(self._view[:n])  # bytes left over from a pause: the general path
            self._process(c)
            return
        if self.idle_timeout:
            c.touch(self.timers.now)  # a complete frame is activity
        try:
            # ffi.unpack builds the bytes straight from the C buffer: one
            # call instead of a memoryview slice plus bytes().
            result = self._react(_unpack(self._cbuf, n), c)
        except Exception as e:
            self.limited.log("react raised", ERROR, "%s() raised for %r; closing it", "react", c, exc_info=True)
            self.close_conn(c, e)
            return
        if type(result) is not tuple or len(result) != 2:  # result_error's rule, inline on this path
            err = result_error("react", result)
            self.limited.log("bad result", ERROR, "%s; closing %r", err, c)
            self.close_conn(c, err)
            return
        out, action = result
        if out is not None:
            if type(out) is bytes and out and not c._outbound._len:
                size = len(out)
                written = self.syswrite(c.fd, out, size)
                if written != size:
                    c.queue_unwritten(out, written)
            else:
                try:
                    c.write_raw(out)
                except Exception as e:
                    e = _name_callback(e, "react", out)
                    self.limited.log(
                        "write failed", ERROR, "writing %s() output failed for %r; closing it", "react", c,
                        exc_info=True,
                    )
                    self.close_conn(c, e)
                    return
        if action:
            if action == _CLOSE:
                self.close_after_flush(c)
            elif action == _SHUTDOWN:
                raise EngineShutdown

    # --8<-- [start:read-frames]
    def _read_frames(self, c: Conn) -> None:
        """One ``read(2)`` into the loop buffer, then frames to ``react`` (gnet: ``read``)."""
        n = self._sysread(c.fd, self._cbuf, self.buffer_cap)
        if n <= 0:
            self._read_failed(c, n)
            return
        c.feed(self._view[:n])
        self._process(c)
    # --8<-- [end:read-frames]

    # --- TLS (reactor.tls; the connection owns the session, the loop moves the bytes) --------------------
    def _tls_start(self, c: Conn) -> None:
        """A TLS connection is registered: start its handshake timer and, on a client, send the ClientHello.

        ``on_opened`` waits for the handshake (``_tls_input``, ``OPENED``).
        Until then the connection is open for I/O but not for the handler,
        and not counted by ``count_connections``. If the handshake fails
        (an ``ssl.SSLError``: not TLS, a certificate that does not verify, a
        truncated record, the peer leaving: ``ssl.SSLEOFError``) or times out
        (``TimeoutError``), only this connection closes, the failure is logged
        once through the rate limiter (at DEBUG for a peer that left without
        a byte: a port scan, a TCP health check), and ``on_closed`` gets the
        error with no ``on_opened`` before it and ``c.tls`` None
        (``close_conn``). asyncio calls neither ``connection_made`` nor
        ``connection_lost`` then; reactor tells the handler, so that a server
        can count or log refused peers and a client that dialed from a
        callback learns the outcome.
        """
        self._use_tls_reads()
        c.mark_open(self.timers.now)
        if c.tls_begin(self.timers.now + self.tls_handshake_timeout):
            self._tls_input(c, 0)  # the client speaks first: its ClientHello goes out before any read

    def _read_tls(self, c: Conn) -> None:
        """One ``read(2)`` of ciphertext, then decrypt and decode (the TLS read strategy; no direct path)."""
        if c._tls is None:
            self._read_plain(c)  # a client's plain connection
            return
        n = self._sysread(c.fd, self._cbuf, self.buffer_cap)
        if n <= 0:
            if n == 0:
                self._tls_eof(c)
                return
            err = _ffi.errno
            if err != _EAGAIN and err != _EINTR:
                self._tls_error(c, unix.syscall_error("read", err))
            return
        try:
            k = c.tls_receive(self._view, n)  # _tls_input, written out
        except ssl.SSLError as e:
            c.tls_flush()
            self._tls_error(c, e)
            return
        self._tls_chunks(c, k)

    def _read_tls_direct(self, c: Conn) -> None:
        """``_read_tls`` for the direct case (built-in codec, no encode, no hooks): each record is the frame.

        ``_tls_input`` and ``_react_plaintext`` written out for the usual
        read (an open session, nothing held back): this runs once per
        readable event, and the two calls it saves are a tenth of the
        Python time a 4 KiB TLS echo costs. Anything else goes the general
        way (``_tls_input``, ``_tls_chunks``).
        """
        tls = c._tls
        if tls is None:
            self._read_plain(c)  # a client's plain connection
            return
        n = self._sysread(c.fd, self._cbuf, self.buffer_cap)
        if n <= 0:
            if n == 0:
                self._tls_eof(c)
                return
            err = _ffi.errno
            if err != _EAGAIN and err != _EINTR:
                self._tls_error(c, unix.syscall_error("read", err))
            return
        if not tls.writable or c._paused or c._inbound._n:
            self._tls_input(c, n)  # mid-handshake, failed, or frames held back
            return
        view = self._view
        try:
            k = c.tls_receive(view, n)
            while k > 0 and not c._paused:
                if self.idle_timeout:
                    c.touch(self.timers.now)
                try:
                    result = self._react(_unpack(self._cbuf, k), c)
                except Exception as e:
                    self.limited.log("react raised", ERROR, "%s() raised for %r; closing it", "react", c,
                                     exc_info=True)
                    self.close_conn(c, e)
                    return
                if type(result) is not tuple or len(result) != 2:  # result_error's rule, inline
                    err = result_error("react", result)
                    self.limited.log("bad result", ERROR, "%s; closing %r", err, c)
                    self.close_conn(c, err)
                    return
                out, action = result
                if out is not None:
                    try:
                        c.write_raw(out)
                    except Exception as e:
                        e = _name_callback(e, "react", out)
                        self.limited.log("write failed", ERROR, "writing %s() output failed for %r; closing it",
                                         "react", c, exc_info=True)
                        self.close_conn(c, e)
                        return
                if action:
                    if action == _CLOSE:
                        self.close_after_flush(c)
                        return
                    if action == _SHUTDOWN:
                        c.tls_flush()
                        raise EngineShutdown
                if not tls.more:  # a read, not a call: nothing more without a read(2)
                    k = WANT_READ
                    break
                k = c.tls_decrypt(view)
            if k != WANT_READ and c._opened and not c._draining:
                self._tls_chunks(c, k)  # close_notify, or a piece that came while paused
                return
        except ssl.SSLError as e:
            c.tls_flush()  # the alert OpenSSL wrote, so the peer learns why
            self._tls_error(c, e)
            return
        c.tls_flush()

    def _tls_input(self, c: Conn, n: int) -> None:
        """``n`` bytes of ciphertext at the start of the loop buffer: handshake, decrypt, decode, answer, flush.

        The plaintext is decrypted into the loop buffer itself (the
        ciphertext was copied into the incoming BIO first), one record at a
        time, and each piece goes to the codec exactly as a plain read's
        bytes would. Answers are encrypted as ``react`` returns them and sent
        together at the end, with one write(2): the batch.
        """
        try:
            k = c.tls_receive(self._view, n)
        except ssl.SSLError as e:
            c.tls_flush()  # the alert OpenSSL wrote, so the peer learns why
            self._tls_error(c, e)
            return
        self._tls_chunks(c, k)

    def _tls_chunks(self, c: Conn, k: int) -> None:
        """Act on ``k`` (what ``Conn.tls_receive``/``tls_decrypt`` returned), decrypt on until ``WANT_READ``, flush."""
        view = self._view
        direct = self._tls_direct
        tls = c._tls
        assert tls is not None
        try:
            while True:
                if k > 0:
                    if direct and not c._paused and not c._inbound._n:
                        if not self._react_plaintext(c, k):
                            break
                        if not tls.more:  # a read, not a call: nothing more without a read(2)
                            break
                        k = c.tls_decrypt(view)
                        continue
                    c.feed(view[:k])
                    if c._paused:
                        # Over write_buffer_cap: keep the plaintext (bounded by
                        # this read) for _resume_inbound, decrypt the rest too,
                        # so no ciphertext stays behind in the BIO.
                        c.keep_leftover()
                    else:
                        self._process(c)
                        if not c._opened or c._draining:
                            break
                    if not tls.more:
                        break
                elif k == WANT_READ:
                    break
                elif k == OPENED:
                    self._tls_opened(c)
                    if not c._opened or c._draining:
                        break
                else:  # CLOSE_NOTIFY: the peer's orderly end of stream, an EOF
                    self._on_eof(c)
                    break
                k = c.tls_decrypt(view)
        except ssl.SSLError as e:
            c.tls_flush()  # the alert OpenSSL wrote, so the peer learns why
            self._tls_error(c, e)
            return
        c.tls_flush()

    def _react_plaintext(self, c: Conn, k: int) -> bool:
        """The TLS direct path: ``k`` decrypted bytes at the start of the loop buffer are the frame.

        The built-in codec with no encode and no write hooks, as for
        ``_read_direct``: ``_run_callback`` written out, without the feed,
        decode and copy steps around it (per record, they cost as much as
        the Python half of the TLS work). Returns False when ``c`` is closed
        or closing afterwards.
        """
        if self.idle_timeout:
            c.touch(self.timers.now)
        try:
            result = self._react(_unpack(self._cbuf, k), c)
        except Exception as e:
            self.limited.log("react raised", ERROR, "%s() raised for %r; closing it", "react", c, exc_info=True)
            self.close_conn(c, e)
            return False
        if type(result) is not tuple or len(result) != 2:  # result_error's rule, inline on this path
            err = result_error("react", result)
            self.limited.log("bad result", ERROR, "%s; closing %r", err, c)
            self.close_conn(c, err)
            return False
        out, action = result
        if out is not None:
            try:
                c.write_raw(out)
            except Exception as e:
                e = _name_callback(e, "react", out)
                self.limited.log("write failed", ERROR, "writing %s() output failed for %r; closing it", "react", c,
                                 exc_info=True)
                self.close_conn(c, e)
                return False
        if action:
            if action == _CLOSE:
                self.close_after_flush(c)
                return False
            if action == _SHUTDOWN:
                raise EngineShutdown
        return c._opened and not c._draining

    def _tls_opened(self, c: Conn) -> None:
        """The handshake completed: now the handler sees the connection (``on_opened``), and a dialer returns."""
        c.tls_opened()
        self.open(c)
        c.tls_settled(None)

    def _tls_eof(self, c: Conn) -> None:
        """read(2) returned 0 on a TLS connection.

        During the handshake: a failed handshake. After it: an EOF, as for
        plain TCP (queued output is delivered, then the connection closes);
        ``on_closed`` gets None after the peer's ``close_notify``, else the
        ``ssl.SSLEOFError`` of a ragged EOF or a truncated record.
        """
        if c.tls_handshaking():
            self._tls_error(c, ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "the peer closed the connection during the "
                                                                  "TLS handshake"))
            return
        self.close_after_flush(c, c.tls_eof())

    def _tls_error(self, c: Conn, err: BaseException) -> None:
        """Close ``c`` for a TLS failure (or a read error), logging it once (rate-limited); the loop goes on."""
        if c.tls_handshaking():
            if c.tls_received_any() or not isinstance(err, ssl.SSLEOFError):
                self.limited.log("tls handshake failed", WARNING, "TLS handshake with %r failed: %s", c.remote_addr,
                                 err)
            else:  # connected and left without a byte: a port scan, a TCP health check
                self.limited.log("tls handshake failed", DEBUG, "TLS peer %r left before its ClientHello",
                                 c.remote_addr)
        elif isinstance(err, ssl.SSLError):
            self.limited.log("tls error", WARNING, "closing %r: %s", c, err)
        self.close_conn(c, err)

    def _read_failed(self, c: Conn, n: int) -> None:
        """``read(2)`` returned ``n`` <= 0: EOF, a transient error, or a real one."""
        if n == 0:
            self._on_eof(c)  # the peer closed (or shut down) its side
            return
        err = _ffi.errno
        if err != _EAGAIN and err != _EINTR:
            self.close_conn(c, unix.syscall_error("read", err))

    def _resume_inbound(self, c: Conn) -> None:
        """Decode the frames left in ``c``'s inbound buffer when a back-pressure pause ended."""
        if c._opened and not c._paused and not c._draining and c.has_leftover() and self.connections.get(c.fd) is c:
            c.feed(_EMPTY)
            self._process(c)

    def _on_eof(self, c: Conn) -> None:
        """``read`` returned 0: the peer will send nothing more.

        gnet v1 closes at once, dropping any output still queued; a client
        that sends a request and then ``shutdown(SHUT_WR)`` would lose the
        tail of a large answer. Here (as gnet v2 does for EOF) the
        connection stays until its queued output is delivered, reading
        nothing more, and then closes with ``on_closed(c, None)``.
        """
        self.close_after_flush(c)

    def close_after_flush(self, c: Conn, err: BaseException | None = None) -> None:
        """Close ``c`` once its queued output has reached the kernel; read nothing more meanwhile.

        Used for the peer's EOF and for Action.CLOSE. gnet closes at once
        and flushes only what the kernel takes without blocking, so a large
        answer returned with Close is cut short. A peer that stops reading
        keeps such a connection until ``idle_timeout`` (if set) closes it,
        or until the peer goes away (the write then fails). ``err`` is what
        ``on_closed`` gets (a TLS peer's ragged EOF; see ``Conn.closing_error``).
        """
        if not c._opened:
            return
        try:
            done = c.start_draining()
        except OSError as e:
            self.close_conn(c, e)
            return
        if done:
            self.close_conn(c, err)

    # --8<-- [start:process]
    def _process(self, c: Conn) -> None:
        """Decode frames from ``c``'s input and react to each; keep the rest (gnet: the loop in ``read``)."""
        if self._builtin:
            # BuiltInFrameCodec.decode returns everything buffered and then
            # None; this is the same thing without four method calls.
            self._react_frame(c.take_all(), c)
            return
        decode = self._decode
        frame: bytes | None
        left = c.inbound_buffered()
        stalled = 0
        while True:
            try:
                frame = decode(c)
            except Exception as e:
                if not isinstance(e, CodecError):
                    self.limited.log("decode raised", ERROR, "codec decode() raised for %r; closing it", c,
                                     exc_info=True)
                else:
                    self.limited.log("codec error", WARNING, "closing %r: %s", c, e)
                self.close_conn(c, e)
                return
            if frame is None:
                break
            if not self._react_frame(frame, c):
                return
            now_left = c.inbound_buffered()
            if not now_left:
                break  # nothing left: decode() could only answer "incomplete"
            if now_left != left:
                left = now_left
                stalled = 0
            else:
                # A frame, and not one byte consumed: the next decode() sees
                # the very same input. Past a few, it is a livelock.
                stalled += 1
                if stalled >= MAX_FRAMES_WITHOUT_PROGRESS:
                    self._codec_stalled(c, stalled)
                    return
            if c._paused:
                # Over write_buffer_cap: answering the rest of this read now
                # would queue without bound (100 pipelined requests in one
                # read). Keep them; _resume_inbound decodes them once the
                # output has drained.
                break
        # The loop buffer is about to be reused: keep the unconsumed tail.
        c.keep_leftover()
    # --8<-- [end:process]

    def _codec_stalled(self, c: Conn, frames: int) -> None:
        """``decode`` returned ``frames`` frames in a row without consuming input: close ``c`` (not the loop)."""
        name = type(self.codec).__name__
        err = CodecError(
            f"{name}.decode() returned {frames} frames in a row without consuming any input "
            f"(a codec must consume the bytes of each frame it returns, e.g. with c.next(n) or c.discard(n))"
        )
        self.limited.log("codec stalled", WARNING, "closing %r: %s", c, err)
        self.close_conn(c, err)

    # --- UDP (gnet: readUDP) --------------------------------------------------------------------------
    def _read_udp(self, fd: int, conn: UDPConn | None) -> None:
        """One datagram → one ``react`` (gnet: ``readUDP``).

        ``conn`` is None for the server's socket: each datagram then gets a
        fresh :class:`UDPConn` whose ``remote_addr`` is its sender, and what
        ``react`` returns is sent back to that sender.

        MSG_TRUNC makes ``recvfrom`` return a datagram's real length even
        when it did not fit in the read buffer; such a datagram was cut by
        the kernel, so it is dropped and logged instead of being handed to
        ``react`` as if whole (raise ``read_buffer_cap`` to accept it).
        """
        try:
            n, sender = unix.recvfrom_into(fd, self.buffer, unix.MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            # E.g. ECONNREFUSED on a connected socket after an ICMP
            # port-unreachable: report it and keep the socket.
            self.limited.log("recvfrom failed", WARNING, "recvfrom on fd %d failed: %s", fd, e)
            return
        if n > self.buffer_cap:
            self.limited.log(
                "datagram too large",
                WARNING,
                "dropped a %d-byte datagram from %r: larger than read_buffer_cap=%d, the kernel truncated it",
                n,
                sender,
                self.buffer_cap,
            )
            return
        if conn is None:
            assert self.ln is not None
            c = UDPConn(fd, self, self.ln.addr, sender if sender is not None else "", self.ln.family)
            c.mark_open(self.timers.now)
        else:
            c = conn
        c.feed(self._view[:n])
        try:
            result = self._react(bytes(self._view[:n]), c)
        except Exception:
            self.limited.log("react raised", ERROR, "react() raised for a datagram from %r", c.remote_addr,
                             exc_info=True)
            result = _RAISED
        finally:
            c.feed(_EMPTY)
            if conn is None:
                c.mark_closed()  # a server datagram's conn lives for one react
        if result is _RAISED:
            return
        if type(result) is not tuple or len(result) != 2:
            self.limited.log("bad result", ERROR, "%s", result_error("react", result))
            return
        out, action = result
        if out is not None:
            try:
                c.send_to(out)
            except OSError as e:
                self.limited.log("sendto failed", WARNING, "sending a datagram to %r failed: %s", c.remote_addr, e)
            except Exception:
                self.limited.log("write failed", ERROR, "cannot send react()'s output to %r", c.remote_addr,
                                 exc_info=True)
        if action == _SHUTDOWN:
            raise EngineShutdown
        if action == _CLOSE and conn is not None:
            self.close_conn(conn, None)

    def register_udp(self, c: UDPConn) -> None:
        """Add a client's connected UDP socket to this loop (gnet: ``register`` for UDP; no on_opened)."""
        try:
            c.register(self.poller, False)
        except OSError:
            self.logger.exception("cannot register UDP fd %d with event-loop(%d)", c.fd, self.idx)
            unix.close(c.fd)
            raise
        c.mark_open(self.timers.now)
        self.udp_conns[c.fd] = c

    # --- writing (gnet: write) --------------------------------------------------------------------------------
    # --8<-- [start:loop-write]
    def _write(self, c: Conn) -> None:
        """Flush up to MAX_BYTES_TO_WRITE_PER_LOOP of pending output (gnet: ``el.write``)."""
        if self.pre_write is not None:
            try:
                self.pre_write(c)
            except Exception as e:
                self.limited.log("pre_write raised", ERROR, "pre_write() raised for %r; closing it", c, exc_info=True)
                self.close_conn(c, e)
                return
        n = c.flush_some(MAX_BYTES_TO_WRITE_PER_LOOP)
        if n < 0:
            if n != -_EAGAIN and n != -_EINTR:
                self.close_conn(c, unix.syscall_error("write", -n))
            return
        self._after_flush(c)
    # --8<-- [end:loop-write]

    def _after_flush(self, c: Conn) -> None:
        """Output left the queue: move ``c``'s interest on, and act on what that says."""
        try:
            moved = c.update_interest()
        except OSError as e:
            self.close_conn(c, e)
            return
        if moved == DRAINED:
            self.close_conn(c, c.closing_error())  # everything owed to a half-closed peer is out
        elif moved == RESUMED:
            self._resumed(c)

    def _resumed(self, c: Conn) -> None:
        """A back-pressure pause ended: frames read before it and a wake held during it are still waiting.

        No readable event will come for the frames (they were read already),
        and the wake's task has run: queue both again, frames first.
        """
        if c.has_leftover():
            self.poller.trigger(self._resume_inbound, c)
        if c.take_held_wake():
            self.poller.trigger(self.wake, c)

    # --- tasks queued by Conn's thread-safe methods ------------------------------------------------------
    def async_write(self, c: Conn, data: bytes) -> None:
        """gnet: ``asyncWrite``: write if ``c`` is still open (and not already closing)."""
        try:
            if not c._opened or c._draining:
                return
            try:
                c.write(data)
            except Exception as e:
                self.limited.log("async_write failed", ERROR, "async_write failed for %r; closing it", c,
                                 exc_info=True)
                self.close_conn(c, e)
        finally:
            # After the write: the bytes are in the outbound buffer (or the
            # kernel) before they stop counting as queued, so a producer
            # never sees less waiting than there is.
            c.async_done(len(data))

    def async_writev(self, c: Conn, bufs: list[bytes]) -> None:
        """gnet: ``asyncWritev``."""
        try:
            if not c._opened or c._draining:
                return
            try:
                c.writev(bufs)
            except Exception as e:
                self.limited.log("async_write failed", ERROR, "async_writev failed for %r; closing it", c,
                                 exc_info=True)
                self.close_conn(c, e)
        finally:
            c.async_done(sum(len(b) for b in bufs))

    def wake(self, c: Conn) -> None:
        """``react(None, c)`` for a still-registered ``c`` (gnet: ``wake``); stale wakes are ignored.

        A paused connection holds the wake until its pause ends (see ``Conn.begin_wake``).
        """
        if self.connections.get(c.fd) is not c and self.udp_conns.get(c.fd) is not c:
            return
        if c._draining:
            return  # closing: it will not be served again
        if c.begin_wake():
            self._react_frame(None, c)

    # --- ticker (gnet: el.ticker) -----------------------------------------------------------------------
    # --8<-- [start:ticker]
    def ticker(self, cancel: threading.Event) -> None:
        """Call the handler's ``tick`` until ``cancel`` is set (gnet: ``ticker``); runs on its own thread.

        As in gnet, ``tick`` runs concurrently with the loops, so ``tick``
        may block without stalling I/O, but state it shares with callbacks
        needs a lock. SHUTDOWN queues an urgent shutdown task on this loop.
        Differences: a delay <= 0 made gnet spin; here the next tick waits at
        least 1 ms. An exception or a malformed result is logged (the
        exception with its traceback) and the next tick comes 1 s later.
        """
        tick = self.handler.tick
        while not cancel.is_set():
            delay, action = 1.0, Action.NONE
            try:
                result = tick()
            except Exception:
                self.logger.exception("tick() raised; ticking again in 1 s")
            else:
                try:
                    delay, action = tick_result(result)
                except (TypeError, ValueError) as e:
                    self.logger.error("%s; ticking again in 1 s", e)
                    delay, action = 1.0, Action.NONE
            if action == _SHUTDOWN:
                try:
                    self.poller.urgent_trigger(shutdown_task)
                except ServerInShutdownError:
                    pass
                self.engine.signal_shutdown()
                return
            cancel.wait(max(delay, _MIN_TICK_DELAY))
    # --8<-- [end:ticker]

    # --- deadlines (reactor's addition; see reactor/internal/timers.py) -----------------------------------
    def check_deadline(self, c: Conn) -> None:
        """``c``'s deadline entry fired: close it if the deadline has passed (else it re-armed)."""
        if c.deadline_fired(self.timers.now) and self.connections.get(c.fd) is c:
            if c.tls_handshaking():
                # The same timer entry bounds a TLS handshake (Conn.tls_begin).
                self._tls_error(c, TimeoutError(
                    f"TLS handshake not completed within {self.tls_handshake_timeout:g} s"))
                return
            self.limited.log("deadline", INFO, "closing %r: its deadline passed", c)
            self.close_conn(c, TimeoutError("connection deadline exceeded"))

    def check_idle(self, c: Conn) -> None:
        """``c``'s idle entry fired: close it if idle for ``idle_timeout``, else re-arm from its last activity."""
        if not c._opened or self.connections.get(c.fd) is not c:
            return
        due = c._active + self.idle_timeout
        if due <= self.timers.now:
            self.limited.log("idle", INFO, "closing %r: idle for %.3g s", c, self.idle_timeout)
            self.close_conn(c, TimeoutError(f"connection idle for more than {self.idle_timeout:g} s"))
        else:
            c.arm_idle(due)  # activity moved it on: re-arm

    # --- closing (gnet: closeConn, closeAllSockets) ------------------------------------------------------
    # --8<-- [start:close-conn]
    def close_conn(self, c: Conn, err: BaseException | None) -> None:
        """Flush what can be flushed, deregister, close, then ``on_closed`` (gnet: ``closeConn``).

        A TLS connection whose handshake never completed (it failed, timed
        out, or was cut short by ``close()`` or a stop) was never announced:
        no ``on_opened``, not counted by ``count_connections``. It still gets
        ``on_closed``, with the error (``ssl.SSLError``, ``TimeoutError``; a
        ``ConnectionAbortedError`` when closed locally), never None, and
        ``c.tls`` is None then: the only ``on_closed`` without an ``on_opened``
        before it. A dialer waiting for the handshake is told after that
        ``on_closed`` has run (``Conn.tls_settled``).
        """
        announced = not c.tls_handshaking()
        if not c.mark_closed():
            return  # stale: already closed
        dropped = c.flush_residual()
        if dropped is not None:
            self.limited.log("residual dropped", DEBUG, "closing %r: residual output dropped: %s", c, dropped)
        try:
            self.poller.delete(c.fd)
        except OSError:
            self.limited.log("epoll_ctl failed", ERROR, "cannot remove fd %d from event-loop(%d)", c.fd, self.idx,
                             exc_info=True)
        try:
            unix.close(c.fd)
        except OSError:
            self.limited.log("close failed", ERROR, "cannot close fd %d in event-loop(%d)", c.fd, self.idx,
                             exc_info=True)
        if self.connections.get(c.fd) is c:
            del self.connections[c.fd]
            if announced:
                self._conn_count -= 1
        elif self.udp_conns.get(c.fd) is c:
            del self.udp_conns[c.fd]
        if not announced and err is None:
            # Closed locally mid-handshake: on_closed still says why it never opened.
            err = ConnectionAbortedError("closed during the TLS handshake")
        try:
            action = self.handler.on_closed(c, err)
        except Exception:
            self.limited.log("on_closed raised", ERROR, "on_closed() raised for %r", c, exc_info=True)
            action = None
        if not announced:
            # After on_closed, so that when Client.dial raises, the handler has already seen the error.
            c.tls_settled(err)
        c.release()
        if action == _SHUTDOWN:
            raise EngineShutdown
    # --8<-- [end:close-conn]

    # --8<-- [start:close-all-conns]
    def close_all_conns(self) -> None:
        """Close every connection this loop owns, each getting ``on_closed`` (gnet: ``closeAllSockets``)."""
        for c in [*self.connections.values(), *self.udp_conns.values()]:
            try:
                self.close_conn(c, None)
            except EngineShutdown:
                pass  # already shutting down
            except Exception:
                self.logger.exception("error while closing %r", c)
    # --8<-- [end:close-all-conns]

    def discard_pending_registrations(self) -> None:
        """After the loop has stopped: close fds of connections handed over but never registered."""
        for fn, args in self.poller.drain_tasks():
            if getattr(fn, "__func__", None) is EventLoop.register and args:
                conn = args[0]
                try:
                    unix.close(conn.fd)
                except OSError:
                    pass


def shutdown_task() -> None:
    """A task that unwinds the loop running it (gnet: the closure returning ErrServerShutdown)."""
    raise EngineShutdown
