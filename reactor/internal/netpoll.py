"""The poller: one epoll instance, one eventfd to wake it, two task queues.

gnet counterpart: ``internal/netpoll/epoll_default_poller.go`` and
``epoll_events.go`` (v1.6.7): ``OpenPoller``, ``Trigger``, ``UrgentTrigger``,
``Polling``, ``AddRead``, ``ModReadWrite``, ``Delete``... Every event loop owns
one ``Poller`` and is the only thread that calls ``polling``; any thread may
call ``trigger`` / ``urgent_trigger``.

Some facts about epoll and eventfd that this module relies on
------------------------------------------------------------
* Level-triggered (the default): ``epoll_wait`` reports an fd for as long as
  it is ready, so a handler may read only part of what is there and hear
  about the rest on the next round. Edge-triggered (EPOLLET): the fd is
  reported once per *change*, so its handler must drain it until EAGAIN (or
  remember to come back), or it will never hear of those bytes again.
* EPOLLERR and EPOLLHUP are always reported, whether asked for or not.
* The interest list is keyed by (fd number, open file description). Closing
  an fd removes it from every epoll set only when no other fd (a ``dup``)
  refers to the same description; we always ``EPOLL_CTL_DEL`` before ``close``.
* An eventfd is a 64-bit kernel counter: an 8-byte write adds to it, an
  8-byte read returns it and resets it to 0, and it is readable (EPOLLIN)
  while it is non-zero. Registered level-triggered, one write wakes the
  ``epoll_wait`` and keeps waking it until the loop reads the counter.
* The GIL is released while a thread sits in ``epoll_wait`` (cffi releases
  it around every C call), so N loop threads block in parallel.

Task queues (gnet: ``internal/queue``, a Michael-Scott lock-free queue):
``collections.deque.append`` and ``popleft`` are atomic under the GIL, which
makes a deque a multi-producer, single-consumer FIFO with no lock.

The wake-up protocol (gnet: ``netpollWakeSig``). Invariant: ``_wake_sig`` is True
iff an eventfd write is pending or the loop is about to drain the queues.
Producers append their task *then* signal only if ``_wake_sig`` was False;
the loop clears ``_wake_sig`` after draining and then re-checks the queues,
so a task appended between the drain and the clear still gets a wake-up.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..errors import EngineShutdown, ServerInShutdownError
from . import unix
from .ratelimit import LogLimiter
from .timers import TimerQueue

__all__ = [
    "ERR_EVENTS",
    "IN_EVENTS",
    "INIT_POLL_EVENTS_CAP",
    "MAX_ASYNC_TASKS_AT_ONE_TIME",
    "MAX_POLL_EVENTS_CAP",
    "MIN_POLL_EVENTS_CAP",
    "OUT_EVENTS",
    "Poller",
    "open_poller",
]

#: gnet: ``InitPollEventsCap`` / ``MaxPollEventsCap`` / ``MinPollEventsCap``.
INIT_POLL_EVENTS_CAP: Final = 128
MAX_POLL_EVENTS_CAP: Final = 1024
MIN_POLL_EVENTS_CAP: Final = 32
#: gnet: ``MaxAsyncTasksAtOneTime``: normal-priority tasks run per wake-up, so
#: a flood of async writes cannot starve I/O. Urgent tasks always all run.
MAX_ASYNC_TASKS_AT_ONE_TIME: Final = 256

#: gnet: ``ErrEvents``, ``OutEvents``, ``InEvents`` (error events count as both).
ERR_EVENTS: Final = unix.EPOLLERR | unix.EPOLLHUP | unix.EPOLLRDHUP
OUT_EVENTS: Final = ERR_EVENTS | unix.EPOLLOUT
IN_EVENTS: Final = ERR_EVENTS | unix.EPOLLIN | unix.EPOLLPRI

#: Interest sets (gnet: the masks used by AddRead, ModReadWrite, ...).
READ_EVENTS: Final = unix.EPOLLIN | unix.EPOLLPRI
WRITE_EVENTS: Final = unix.EPOLLOUT
READ_WRITE_EVENTS: Final = READ_EVENTS | WRITE_EVENTS

Task = tuple[Callable[..., Any], tuple[Any, ...]]


class Poller:
    """epoll + eventfd + task queues (gnet: ``netpoll.Poller``)."""

    # --8<-- [start:open-poller]
    def __init__(self, logger: logging.Logger | None = None) -> None:
        """Open the epoll instance and its eventfd (gnet: ``OpenPoller``)."""
        self.logger = logger or logging.getLogger("reactor")
        #: A handler that raises on every event would log on every round: rate-limited.
        self.limited = LogLimiter(self.logger)
        self._open()
        self._urgent: deque[Task] = deque()
        self._normal: deque[Task] = deque()
        self._wake_sig = False
        # Guards the eventfd against a write after close: once closed, its
        # number may be reused by any new fd in the process, and an 8-byte
        # write there would corrupt somebody else's file.
        self._lock = threading.Lock()
        self._closed = False
    # --8<-- [end:open-poller]

    #: Which kernel interface this poller drives ("epoll"; "io_uring" for reactor.internal.uring).
    backend = "epoll"

    def _open(self) -> None:
        """The kernel side: the epoll instance and its eventfd, the eventfd registered for reading."""
        self.fd = unix.epoll_create1(unix.EPOLL_CLOEXEC)
        try:
            self.efd = unix.eventfd(0, unix.EFD_NONBLOCK | unix.EFD_CLOEXEC)
            try:
                unix.epoll_ctl(self.fd, unix.EPOLL_CTL_ADD, self.efd, READ_EVENTS)
            except BaseException:
                unix.close(self.efd)
                raise
        except BaseException:
            unix.close(self.fd)
            raise
        #: ``read(fd, buf, count)`` with read(2)'s contract, for the event
        #: loop's read paths: read(2) itself here; the io_uring poller hands
        #: over the bytes its recv completions brought instead.
        self.read: Callable[[int, Any, int], int] = unix.lib.read
        #: ``write(fd, data, count)`` with write(2)'s contract (the C call:
        #: -1 and errno on failure), and the ``-errno`` wrappers for one
        #: buffer and for several: write(2) and writev(2) here; the io_uring
        #: poller takes the bytes for a send on the ring instead.
        self.write: Callable[[int, Any, int], int] = unix.lib.write
        self.write_nowait: Callable[[int, Any], int] = unix.write_nowait
        self.writev_nowait: Callable[[int, Any], int] = unix.writev_nowait
        #: ``accept4(fd)`` as :func:`reactor.internal.unix.accept4` (raises,
        #: returns ``(fd, address)``) for a listener added with
        #: ``add_listener``: accept4(2) itself here; the io_uring poller hands
        #: over what its accept requests brought.
        self.accept4: Callable[[int], tuple[int, unix.Address]] = unix.accept4
        #: The C function that waits and copies out (fds, masks), and its first argument.
        self._wait_fn: Any = unix.lib.rx_epoll_wait
        self._wait_on: Any = self.fd
        self._wait_name = f"epoll_wait(epfd={self.fd})"

    # --- cross-thread task submission ------------------------------------------------
    # --8<-- [start:urgent-trigger]
    def urgent_trigger(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` as high priority and wake the loop (gnet: ``UrgentTrigger``).

        Used for connection registration, ``wake`` and shutdown.

        :raises ServerInShutdownError: the poller is closed (its loop is gone).
        """
        if self._closed:
            raise ServerInShutdownError("event loop is closed")
        self._urgent.append((fn, args))
        if not self._wake_sig:
            self._wakeup()
    # --8<-- [end:urgent-trigger]

    def trigger(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` as normal priority and wake the loop (gnet: ``Trigger``).

        Used for ``async_write`` and ``close``; at most
        MAX_ASYNC_TASKS_AT_ONE_TIME of these run per loop iteration.
        """
        if self._closed:
            raise ServerInShutdownError("event loop is closed")
        self._normal.append((fn, args))
        if not self._wake_sig:
            self._wakeup()

    def _wakeup(self) -> None:
        with self._lock:
            if self._closed:
                raise ServerInShutdownError("event loop is closed")
            self._wake_sig = True
            try:
                unix.eventfd_write(self.efd, 1)
            except BlockingIOError:
                # The counter is at its maximum: it is certainly non-zero,
                # so the loop is going to wake up anyway.
                pass

    def has_tasks(self) -> bool:
        return bool(self._urgent or self._normal)

    def drain_tasks(self) -> list[Task]:
        """Remove and return every queued task (used once the loop has stopped)."""
        tasks = list(self._urgent) + list(self._normal)
        self._urgent.clear()
        self._normal.clear()
        return tasks

    # --- the loop ----------------------------------------------------------------------------
    # --8<-- [start:polling]
    def polling(self, callback: Callable[[int, int], None], timers: TimerQueue | None = None) -> None:
        """Wait for events and dispatch them until a handler raises EngineShutdown (gnet: ``Polling``).

        ``callback(fd, events)`` runs for every ready fd other than the
        eventfd. After the batch, if the eventfd fired, all urgent tasks run,
        then at most MAX_ASYNC_TASKS_AT_ONE_TIME normal ones. An exception
        from a callback or task is logged and the loop goes on (gnet logs the
        error and continues), except EngineShutdown, which returns.

        As in gnet, after a round with events the next wait uses timeout 0
        (gather whatever became ready meanwhile) and after an empty round it
        blocks (-1). With ``timers`` (reactor's addition), a blocking wait is
        bounded by the earliest deadline, ``timers.now`` is refreshed after
        every wait, and due timers run at the end of each round.
        """
        events = unix.EpollEvents(INIT_POLL_EVENTS_CAP)
        # unix.epoll_wait, inlined: this is the loop's innermost line, and
        # one C call that copies fds and masks out of the packed array plus
        # two ffi.unpack calls is the cheapest way to get them into Python.
        # One C call per round for either backend: rx_epoll_wait, or
        # rx_uring_wait with the same contract (reactor.internal.uring).
        wait_fn, wait_on, unpack, ffi = self._wait_fn, self._wait_on, unix.ffi.unpack, unix.ffi
        efd = self.efd
        urgent, normal = self._urgent, self._normal
        limited = self.limited
        monotonic = time.monotonic
        msec = -1
        while True:
            # After a busy round the wait is 0 whatever the timers say; only a
            # blocking wait needs the earliest deadline.
            wait = msec if msec == 0 or timers is None else timers.timeout_ms()
            n = wait_fn(wait_on, events.events, events.size, wait, events.fds, events.masks)
            if timers is not None and timers.advance(monotonic()):
                self._run_timers(timers)
            if n <= 0:
                if n < 0:
                    err = ffi.errno
                    if err != errno.EINTR:
                        raise unix.syscall_error(self._wait_name, err)
                msec = -1
                continue
            ready = zip(unpack(events.fds, n), unpack(events.masks, n))
            msec = 0
            woken = False
            for fd, ev in ready:
                if fd != efd:
                    try:
                        callback(fd, ev)
                    except EngineShutdown:
                        raise
                    except Exception:
                        msg = "error while handling events %#x on fd %d"
                        limited.log("event error", logging.ERROR, msg, ev, fd, exc_info=True)
                else:
                    woken = True
                    try:
                        unix.eventfd_read(efd)
                    except BlockingIOError:
                        pass
            if woken:
                # gnet drains the urgent queue until empty. Urgent tasks
                # queued meanwhile still run before the normal ones, but at
                # most a batch more than were queued at the start, so an
                # urgent task that queues another cannot keep the loop from
                # ever polling again; the rest run next round.
                budget = len(urgent) + MAX_ASYNC_TASKS_AT_ONE_TIME
                while urgent and budget:
                    budget -= 1
                    fn, args = urgent.popleft()
                    try:
                        fn(*args)
                    except EngineShutdown:
                        raise
                    except Exception:
                        limited.log("urgent task error", logging.ERROR, "error in an urgent task %r", fn, exc_info=True)
                for _ in range(MAX_ASYNC_TASKS_AT_ONE_TIME):
                    if not normal:
                        break
                    fn, args = normal.popleft()
                    try:
                        fn(*args)
                    except EngineShutdown:
                        raise
                    except Exception:
                        limited.log("task error", logging.ERROR, "error in a task %r", fn, exc_info=True)
                # Drop the last task's references: a closed connection must
                # not stay alive in this frame until the next task runs.
                fn = args = None  # type: ignore[assignment]
                self._wake_sig = False
                if (urgent or normal) and not self._wake_sig:
                    self._wakeup()
            if n == events.size and n < MAX_POLL_EVENTS_CAP:
                events = unix.EpollEvents(n * 2)
            elif n < events.size // 2 and events.size > MIN_POLL_EVENTS_CAP:
                events = unix.EpollEvents(events.size // 2)
    # --8<-- [end:polling]

    def _run_timers(self, timers: TimerQueue) -> None:
        while True:
            try:
                timers.run_due()
                return
            except EngineShutdown:
                raise
            except Exception:
                self.limited.log("timer error", logging.ERROR, "error in a timer callback", exc_info=True)

    # --- interest (gnet: AddRead, AddWrite, AddReadWrite, ModRead, ModReadWrite, Delete) ------
    def add_read(self, fd: int, extra: int = 0) -> None:
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_ADD, fd, READ_EVENTS | extra)

    def add_listener(self, fd: int) -> None:
        """A listening stream socket, read interest: as ``add_read`` here (the io_uring poller accepts for the loop)."""
        self.add_read(fd)

    def add_stream(self, fd: int) -> None:
        """A stream connection, read interest: as ``add_read`` here (the io_uring poller reads it for the loop)."""
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_ADD, fd, READ_EVENTS)

    def add_write(self, fd: int, extra: int = 0) -> None:
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_ADD, fd, WRITE_EVENTS | extra)

    def add_read_write(self, fd: int, extra: int = 0) -> None:
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_ADD, fd, READ_WRITE_EVENTS | extra)

    def mod_read(self, fd: int, extra: int = 0) -> None:
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_MOD, fd, READ_EVENTS | extra)

    def mod_write(self, fd: int, extra: int = 0) -> None:
        """Writable interest only: reactor's back-pressure state (no gnet counterpart)."""
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_MOD, fd, WRITE_EVENTS | extra)

    def mod_read_write(self, fd: int, extra: int = 0) -> None:
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_MOD, fd, READ_WRITE_EVENTS | extra)

    def delete(self, fd: int) -> None:
        unix.epoll_ctl(self.fd, unix.EPOLL_CTL_DEL, fd)

    def unsent(self, fd: int) -> int:
        """Bytes ``write`` took that the kernel does not have yet: none here (write(2) hands them over)."""
        return 0

    def close(self) -> None:
        """Close the epoll fd, then the eventfd (gnet: ``Close``). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            unix.close(self.fd)
            unix.close(self.efd)


def open_poller(
    logger: logging.Logger | None = None, backend: str = "epoll", read_buffer_cap: int = 0, send_buffer_cap: int = 0
) -> Poller:
    """A poller on ``backend`` ("epoll" or "io_uring"; gnet: ``netpoll.OpenPoller``, epoll only).

    ``read_buffer_cap`` sizes the io_uring poller's receive buffers (the
    loop's read buffer size: one completion never brings more than one
    ``read(2)`` would), and ``send_buffer_cap`` what it takes per
    connection for a send (the ``socket_send_buffer`` option; 0: 64 KiB).
    Resolve "auto" first, with
    :func:`reactor.internal.uring.resolve_backend`.
    """
    if backend == "epoll":
        return Poller(logger)
    if backend == "io_uring":
        from .uring import UringPoller  # not imported by epoll-only programs

        return UringPoller(logger, read_buffer_cap, send_buffer_cap)
    raise ValueError(f"unknown poller backend {backend!r} (expected 'epoll' or 'io_uring')")
