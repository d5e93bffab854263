"""The io_uring poller: the same interface as the epoll one, completions underneath.

gnet has no counterpart (it is epoll/kqueue only); this is reactor's second
backend, chosen with ``serve(..., backend="io_uring")`` (or ``"auto"``).
The C half is ``csrc/rx_uring.c``; read its header comment first.

Readiness and completion
------------------------
epoll is a *readiness* interface (a reactor): the kernel says "fd 7 is
readable", and the loop then calls ``read(2)``, one syscall per read.
io_uring is a *completion* interface (a proactor): the loop asks in advance
"receive on fd 7 into a buffer of your choosing", and the kernel answers
"done: 64 bytes in buffer 3". The requests of a whole loop iteration go in,
and its completions come out, through one ``io_uring_enter`` and two rings
of shared memory, so the per-read syscall disappears.

This poller keeps the readiness *interface*, so that the event loop, the
connection's state machine and every handler run unchanged on both
backends: interest is still set with ``add_read``/``mod_read_write``/...,
and ``polling`` still calls ``callback(fd, events)``. What changes:

* A stream connection (``add_stream``) with read interest has an
  ``IORING_OP_RECV`` in flight, with ``IOSQE_BUFFER_SELECT``: the kernel
  picks a buffer from a provided-buffer ring when bytes arrive (so 10,000
  idle connections pin no memory). It is single-shot, re-armed with the
  next iteration's submit (no syscall of its own): one completion per
  iteration, as one ``read(2)`` per event on epoll. (A multishot recv was
  built and measured: no gain here, and it drains the socket as fast as the
  peer sends, which defeats TCP's flow control; see docs/benchmarks.md.)
  Its completion is reported as EPOLLIN,
  and the loop's ``read`` (``Poller.read``, which is ``read(2)`` on epoll)
  is here ``rx_uring_read``: it copies the completion's bytes into the
  loop's buffer and returns the buffer to the ring. EOF and errors come
  back exactly as ``read(2)`` reports them.
* Large reads go epoll's way ("bulk mode"): after a recv that brought
  16 KiB or more, the connection's read interest is a one-shot POLLIN poll
  instead, and ``rx_uring_read`` makes one ``recv(2)`` straight into the
  loop's buffer. Copying a large read out of a provided buffer costs more
  than the syscall saved (echo-64k: +2.5 µs user and +5 µs kernel time per
  echo against epoll, the rotating buffers missing the cache). Four small
  reads in a row bring the connection back to the ring's recv.
* Writes go through the ring too. The loop's ``write`` (``Poller.write``,
  which is ``write(2)`` on epoll) is here ``rx_uring_send``: it copies the
  bytes into the connection's send buffer in C, with write(2)'s contract,
  and the next round's ``io_uring_enter`` (the one that waits) submits an
  ``IORING_OP_SEND`` for them beside the round's recvs: one syscall for the
  whole round's output instead of one ``write(2)`` per answer. While a send
  is in flight (the socket buffer was full) it takes nothing more (EAGAIN),
  so the connection queues its output and asks for write interest exactly
  as after a partial ``write(2)``; a connection with write interest is
  reported writable when its send has completed. A partial send is re-armed
  for the rest. ``unsent(fd)`` counts what was taken but not yet confirmed
  sent: a connection closing after a flush (peer EOF, ``Action.CLOSE``)
  waits for it to be 0, as it waits for its own queue on epoll.
* A listening stream socket (``add_listener``) has up to 32
  ``IORING_OP_ACCEPT`` requests in flight, each with its own address
  buffer: the kernel accepts connections as they arrive, with no syscall of
  ours, and each waits in its slot until the acceptor's ``accept4``
  (``Poller.accept4``, accept4(2) on epoll) takes it; the slot is re-armed
  with the next round's enter. The listener is reported readable while
  connections wait; beyond 32, they wait in the kernel's backlog, as with
  epoll. An accept's error (EMFILE at fd exhaustion) is reported by the
  next ``accept4``, and the acceptor's triage (shed on the spare fd, back
  off) runs as on epoll. Not one multishot accept: it has a single address
  buffer for every connection, and ``getpeername(2)`` afterwards fails for
  a connection its peer reset while it waited, which ``accept4(2)`` still
  hands over (test_uring.py's fd-reuse test lost 27 of 483 such
  connections that way).
* Every other fd (UDP socket, this poller's eventfd) gets a one-
  shot ``IORING_OP_POLL_ADD``, re-armed after each report: level-triggered
  readiness, as with epoll; write interest on such an fd is a one-shot
  POLLOUT poll, and its writes (UDP ``sendto``) stay syscalls.
* Back-pressure: when read interest goes off while a recv is in flight,
  its result is held (one buffer at most) and reported when read interest
  comes back, before anything newer; no recv is armed meanwhile. So no
  bytes reach a paused connection, as with epoll, where they would wait in
  the socket. A result the loop did not read is held the same way: the
  poller never drops a byte of a live connection.
* ``delete`` cancels the fd's requests and submits the cancellation at
  once: an in-flight recv holds a reference to the socket, so without it a
  closed connection's peer would not see the FIN. Output taken but not yet
  submitted is sent first with one non-blocking ``send(2)`` (what epoll's
  ``write(2)`` would have done already); a send in flight is cancelled
  (the socket was full: epoll's close drops such output too).

Edge-triggered mode does not apply (a completion is neither level nor
edge); with this backend the engine uses the level-triggered loop.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from typing import Any

from . import unix
from .netpoll import Poller

__all__ = ["BACKENDS", "IoUringUnavailable", "UringPoller", "probe", "resolve_backend"]

#: The values of the ``backend`` option (also in reactor.options, which may not import this layer's users).
BACKENDS = ("epoll", "io_uring", "auto")

#: Submission-queue entries (the completion queue gets 8 times as many, so
#: that a burst of completions rarely overflows; the kernel keeps overflow
#: anyway, IORING_FEAT_NODROP).
RING_ENTRIES = 256
#: Provided receive buffers per loop (a power of two). Buffers return to the
#: ring as soon as the loop has copied their bytes out, so this bounds how
#: many connections can complete a recv in one iteration, not how many exist.
RING_BUFFERS = 64

_OP_ADD, _OP_MOD, _OP_DEL = 0, 1, 2
_R, _W, _STREAM, _ACCEPT = unix.lib.RXU_READ, unix.lib.RXU_WRITE, unix.lib.RXU_STREAM, unix.lib.RXU_ACCEPT


class IoUringUnavailable(OSError):
    """The kernel refused io_uring (too old, ``kernel.io_uring_disabled``, a seccomp profile, ...)."""


_probed: tuple[bool, str] | None = None
_fallback_logged = False


def probe() -> tuple[bool, str]:
    """Whether this process can use the io_uring backend, and if not why (tried once, then remembered)."""
    global _probed
    if _probed is None:
        ring = unix.lib.rx_uring_open(4, 1, 4096, 0)
        if ring == unix.ffi.NULL:
            err = unix.ffi.errno
            _probed = (False, _why(err))
        else:
            unix.lib.rx_uring_close(ring)
            _probed = (True, "")
    return _probed


def _why(err: int) -> str:
    reason = f"{errno.errorcode.get(err, err)}: {os.strerror(err)}"
    hint = {
        errno.ENOSYS: "the kernel has no io_uring (before 5.1, or built without it)",
        errno.EPERM: "io_uring is disabled (sysctl kernel.io_uring_disabled) or blocked by a seccomp profile",
        errno.EACCES: "io_uring is disabled for this user (sysctl kernel.io_uring_disabled)",
        errno.EINVAL: "the kernel's io_uring lacks a feature reactor needs (provided-buffer rings: 5.19+)",
        errno.EOPNOTSUPP: "the kernel's io_uring lacks a feature reactor needs (timeouts in io_uring_enter: 5.11+)",
    }.get(err, "")
    return f"io_uring_setup failed ({reason}){': ' + hint if hint else ''}"


def resolve_backend(backend: str, logger: logging.Logger | None = None) -> str:
    """``"auto"`` becomes ``"io_uring"`` where the kernel allows it, else ``"epoll"`` (logged once).

    :raises IoUringUnavailable: ``backend="io_uring"`` and the kernel refuses it.
    :raises ValueError: an unknown backend name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"option backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "epoll":
        return backend
    ok, why = probe()
    if ok:
        return "io_uring"
    if backend == "io_uring":
        raise IoUringUnavailable(errno.EPERM, f"backend='io_uring' is not available here: {why}; "
                                              f"use backend='epoll' or 'auto'")
    global _fallback_logged
    if not _fallback_logged:  # once per process: the reason cannot change, and serve() may resolve twice
        _fallback_logged = True
        (logger or logging.getLogger("reactor")).info("backend='auto': using epoll, since %s", why)
    return "epoll"


class UringPoller(Poller):
    """A :class:`~reactor.internal.netpoll.Poller` over io_uring (see the module docstring)."""

    backend = "io_uring"

    def __init__(
        self, logger: logging.Logger | None = None, read_buffer_cap: int = 0, send_buffer_cap: int = 0
    ) -> None:
        self._bufsize = read_buffer_cap or 64 * 1024
        #: What ``write`` takes per connection for the ring's next send (0: 64 KiB).
        self._send_cap = send_buffer_cap
        super().__init__(logger)

    def _open(self) -> None:
        ring = unix.lib.rx_uring_open(RING_ENTRIES, RING_BUFFERS, self._bufsize, self._send_cap)
        if ring == unix.ffi.NULL:
            err = unix.ffi.errno
            raise IoUringUnavailable(err, _why(err))
        try:
            self.efd = unix.eventfd(0, unix.EFD_NONBLOCK | unix.EFD_CLOEXEC)
        except BaseException:
            unix.lib.rx_uring_close(ring)
            raise
        self._ring = ring
        #: The ring's own fd (Poller.fd is the epoll fd on the other backend).
        self.fd = unix.lib.rx_uring_fd(ring)
        self._ctl(_OP_ADD, self.efd, _R)
        # partial: a C-level call, no Python frame between the loop and rx_uring_read.
        self.read = functools.partial(unix.lib.rx_uring_read, ring)
        self.write = functools.partial(unix.lib.rx_uring_send, ring)
        self.write_nowait = functools.partial(unix.write_nowait, write=self.write)
        sendv = functools.partial(unix.lib.rx_uring_sendv, ring)
        self.writev_nowait = functools.partial(unix.writev_nowait, writev=sendv)
        self.accept4 = functools.partial(unix.accept4, accept=functools.partial(unix.lib.rx_uring_accept, ring))
        self._wait_fn = unix.lib.rx_uring_wait
        self._wait_on = ring
        self._wait_name = f"io_uring_enter(fd={self.fd})"

    def _ctl(self, op: int, fd: int, want: int) -> None:
        if unix.lib.rx_uring_ctl(self._ring, op, fd, want) < 0:
            name = ("add", "mod", "del")[op]
            raise unix.syscall_error(f"io_uring interest {name} (fd={fd})", unix.ffi.errno)

    # --- interest: epoll_ctl's counterparts (``extra`` epoll flags have no meaning here) ---------
    def add_read(self, fd: int, extra: int = 0) -> None:
        self._ctl(_OP_ADD, fd, _R)

    def add_stream(self, fd: int) -> None:
        """A stream connection: its reads are recv requests on the ring (see the module docstring)."""
        self._ctl(_OP_ADD, fd, _R | _STREAM)

    def add_listener(self, fd: int) -> None:
        """A listening stream socket: accepted by accept requests on the ring (see the module docstring)."""
        self._ctl(_OP_ADD, fd, _R | _ACCEPT)

    def add_write(self, fd: int, extra: int = 0) -> None:
        self._ctl(_OP_ADD, fd, _W)

    def add_read_write(self, fd: int, extra: int = 0) -> None:
        self._ctl(_OP_ADD, fd, _R | _W)

    def mod_read(self, fd: int, extra: int = 0) -> None:
        self._ctl(_OP_MOD, fd, _R)

    def mod_write(self, fd: int, extra: int = 0) -> None:
        self._ctl(_OP_MOD, fd, _W)

    def mod_read_write(self, fd: int, extra: int = 0) -> None:
        self._ctl(_OP_MOD, fd, _R | _W)

    def delete(self, fd: int) -> None:
        self._ctl(_OP_DEL, fd, 0)

    def unsent(self, fd: int) -> int:
        """Bytes ``write`` took for ``fd`` that the kernel has not confirmed sent yet."""
        n: int = unix.lib.rx_uring_unsent(self._ring, fd)
        return n

    def close(self) -> None:
        """Cancel what is in flight, close the ring (and unmap its buffers), then the eventfd. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ring, self._ring = self._ring, unix.ffi.NULL
            # The loop thread has returned from polling by now (the engine
            # joins it first), so nothing else is inside the ring.
            self.read = self.write = _closed_io
            self.write_nowait = self.writev_nowait = _closed_nowait
            unix.lib.rx_uring_close(ring)
            unix.close(self.efd)


def _closed_io(fd: int, buf: Any, count: int) -> int:
    """read(2)'s and write(2)'s contract on a closed ring: -1, EBADF."""
    unix.ffi.errno = errno.EBADF
    return -1


def _closed_nowait(fd: int, data: Any) -> int:
    return -errno.EBADF
