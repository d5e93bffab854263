"""Accepting connections: ``accept4``, gnet's error triage, and what reactor does at EMFILE.

gnet counterpart (v1.6.7): ``acceptor_unix.go``: ``svr.accept`` (the main
reactor accepts and hands each connection to a sub-reactor) is
:meth:`Acceptor.accept`; ``el.accept`` (a reuse_port loop accepts on its own
listener and registers the connection itself) is :meth:`Acceptor.accept_on`.

Who calls what: the engine owns one :class:`Acceptor` (``Engine.acceptor``)
and the event loops reach it through the engine, with the signatures the
poller gives them: the main reactor polls with ``Engine.accept(fd, ev)`` and
a reuse_port loop calls ``Engine.accept_on(el, fd)``; both delegate here.
Several reuse_port loops may call ``accept_on`` at once, each on its own
thread and listener; the only shared state is the spare fd (locked) and the
log throttle (a float, written racily on purpose: at worst one more line).

Deliberate differences from gnet v1 (docs/gnet-mapping.md lists them):

* ``accept4(SOCK_NONBLOCK|SOCK_CLOEXEC)`` instead of ``accept`` + ``fcntl``
  (#3), up to MAX_ACCEPTS_PER_EVENT per readiness report instead of one.
* EMFILE/ENFILE from ``accept4`` do not shut the server down (#2): the
  connection at the head of the backlog is accepted on a reserved fd and
  closed at once (libuv's trick), so the peer learns immediately instead of
  hanging, the listener stops reporting readiness for it, and accepting
  resumes by itself once fds are free again. The error is logged, at most
  once a second. With no spare either, the listener is left unpolled for
  ACCEPT_BACKOFF seconds rather than spun on.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import TYPE_CHECKING

from .connection import Conn
from .errors import ServerInShutdownError
from .internal import sockets, unix
from .internal.ratelimit import LogLimiter
from .load_balancer import LoadBalancer
from .options import Options

if TYPE_CHECKING:
    from .eventloop import EventLoop
    from .listener import Listener

__all__ = ["ACCEPT_BACKOFF", "MAX_ACCEPTS_PER_EVENT", "Acceptor", "ReserveFd"]

#: Accepts per readiness report: v2 drains until EAGAIN; a bound keeps a
#: connect storm from starving a reuse_port loop's established connections.
MAX_ACCEPTS_PER_EVENT = 128
#: How long a listener is left unpolled when fd exhaustion leaves no way to
#: shed a pending connection (see Acceptor.accept_one).
ACCEPT_BACKOFF = 0.1

#: accept4 errors meaning the peer gave up while in the backlog (or a firewall said no).
_PEER_GONE = frozenset({errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM})
#: accept4 errors meaning the process or system is out of fds or memory.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ReserveFd:
    """A spare fd held open so that accept can still make progress at EMFILE (libuv's trick)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._fd = self._open()

    @staticmethod
    def _open() -> int:
        try:
            return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1

    def missing(self) -> bool:
        """True while the spare is lost (and the reserve not closed); read without the lock.

        A stale answer is harmless: ``restore`` and ``adopt`` check again
        under the lock.
        """
        return self._fd < 0 and not self._closed

    def shed(self, listen_fd: int) -> bool:
        """Accept one pending connection on the spare fd and close it; True if one was shed."""
        with self._lock:
            if self._closed:
                return False
            if self._fd < 0:
                self._fd = self._open()
                if self._fd < 0:
                    return False
            # -1 before the close: a sibling loop whose accept4 gets this
            # number must then see the spare missing and adopt its fd (see
            # adopt; Acceptor.accept_one asks missing() after accept4).
            spare, self._fd = self._fd, -1
            unix.close(spare)
            shed = False
            try:
                nfd, _ = unix.accept4(listen_fd)
            except OSError:
                pass
            else:
                unix.close(nfd)
                shed = True
            self._fd = self._open()
            return shed

    def restore(self) -> None:
        """Reopen the spare if it is missing."""
        with self._lock:
            if self._fd < 0 and not self._closed:
                self._fd = self._open()

    def adopt(self, nfd: int, listen_fd: int) -> bool:
        """Turn a just-accepted ``nfd`` into the spare if the spare is missing; True if it was.

        ``restore`` before ``accept4`` leaves a window: an fd another loop frees
        in between goes to the connection, and the spare stays missing for as
        long as the process is at its limit (every later accept4 fails with
        EMFILE and nothing can be shed). ``dup2`` closes the connection and
        puts a duplicate of the listener in the same slot in one step, so no
        other thread can take the number in between; the peer sees the close
        that shedding means. The duplicate is as good a spare as /dev/null:
        only its number matters, and closing it leaves the listener open.
        """
        with self._lock:
            if self._fd >= 0 or self._closed:
                return False
            os.dup2(listen_fd, nfd, inheritable=False)
            self._fd = nfd
            return True

    def close(self) -> None:
        """Release the spare for good (the server is stopping); shedding stops too."""
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                unix.close(self._fd)
                self._fd = -1


class Acceptor:
    """Accepts on the server's listeners for the engine's loops (gnet: ``acceptor_unix.go``)."""

    def __init__(
        self,
        ln: Listener,
        lb: LoadBalancer[EventLoop],
        opts: Options,
        logger: logging.Logger,
        proto_addr: str,
    ) -> None:
        #: The server's first listener: its network decides TCP keep-alive.
        self.ln = ln
        #: Picks the sub-reactor for each connection in main-reactor mode.
        self.lb = lb
        self.opts = opts
        self.logger = logger
        self.proto_addr = proto_addr
        #: The spare fd for EMFILE, opened now, while fds are plentiful.
        self.reserve = ReserveFd()
        #: Accept errors repeat once per pending connection: rate-limited.
        self.limited = LogLimiter(logger)

    # --8<-- [start:accept-main]
    def accept(self, main: EventLoop, fd: int) -> None:
        """Main reactor: accept on ``fd`` and hand each connection to a sub-reactor (gnet: ``svr.accept``).

        ``main`` is the loop polling ``fd`` (the one paused at fd exhaustion).
        """
        for _ in range(MAX_ACCEPTS_PER_EVENT):
            accepted = self.accept_one(main, fd)
            if accepted is None:
                return
            nfd, remote = accepted
            el = self.lb.next(remote)
            c = Conn(nfd, el, self.ln.addr, remote)
            try:
                # Registration must happen on the owning loop's thread: only
                # it touches its connection table and epoll interest.
                el.poller.urgent_trigger(el.register, c)
            except ServerInShutdownError:
                unix.close(nfd)
                return
    # --8<-- [end:accept-main]

    # --8<-- [start:accept-on]
    def accept_on(self, el: EventLoop, fd: int) -> None:
        """reuse_port loop: accept on its own listener and register right here (gnet: ``el.accept``)."""
        assert el.ln is not None
        for _ in range(MAX_ACCEPTS_PER_EVENT):
            accepted = self.accept_one(el, fd)
            if accepted is None:
                return
            nfd, remote = accepted
            el.register(Conn(nfd, el, el.ln.addr, remote))
    # --8<-- [end:accept-on]

    # --8<-- [start:accept-one]
    def accept_one(self, el: EventLoop, fd: int) -> tuple[int, unix.Address] | None:
        """One accept4 and its errno triage; None: nothing (more) to accept.

        gnet v1 skips only EINTR, EAGAIN and ECONNABORTED and stops the whole
        server on any other error (docs/gnet-mapping.md, deliberate change
        #2); here no accept error stops the server: a peer that gave up is
        skipped, exhaustion sheds on the spare fd, anything else is logged.
        """
        reserve = self.reserve
        if reserve.missing():
            # The spare was lost to another thread during a shed. A freed fd
            # must go back to it before accept4 takes it for the next
            # pending connection, or at the limit every freed fd is handed to
            # one more connection and the rest wait in the backlog unshed.
            reserve.restore()
        try:
            nfd, remote = el.poller.accept4(fd)  # accept4(2), or a connection io_uring's accepts brought
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in _PEER_GONE:
                # Nothing to serve: try the next one on the next event.
                return None
            if e.errno in _EXHAUSTED:
                # Every pending connection would log this, once per event:
                # one line a second says it all.
                self.limited.log(
                    "emfile",
                    logging.ERROR,
                    "accept4 on %s failed: %s; shedding pending connections until fds are free",
                    self.proto_addr,
                    e,
                    per_period=1,
                )
                if not reserve.shed(fd):
                    # No spare fd either (another thread took the number):
                    # the listener stays readable, and a level-triggered
                    # poll would spin on it. Stop watching it for a while.
                    self.pause(el, fd)
                return None
            self.limited.log("accept failed", logging.ERROR, "accept4 on %s failed: %s", self.proto_addr, e)
            return None
        if reserve.missing() and reserve.adopt(nfd, fd):
            # Lost the race described in ReserveFd.adopt: this connection is
            # shed so that the next EMFILE can shed the rest of the backlog.
            return None
        if self.opts.tcp_keepalive > 0 and self.ln.network.startswith("tcp"):
            try:
                sockets.set_keepalive(nfd, int(self.opts.tcp_keepalive))
            except OSError as e:
                self.limited.log("keepalive failed", logging.ERROR, "cannot set TCP keep-alive on fd %d: %s", nfd, e)
        return nfd, remote
    # --8<-- [end:accept-one]

    def pause(self, el: EventLoop, fd: int) -> None:
        """Stop polling listener ``fd`` on ``el`` for ACCEPT_BACKOFF seconds (fd exhaustion)."""
        try:
            el.poller.delete(fd)
        except OSError:
            return
        el.timers.schedule(el.timers.now + ACCEPT_BACKOFF, self.resume, el, fd)

    def resume(self, el: EventLoop, fd: int) -> None:
        """Poll listener ``fd`` on ``el`` again (the timer ``pause`` set)."""
        try:
            el.poller.add_listener(fd)
        except OSError as e:
            self.limited.log("resume failed", logging.ERROR, "cannot resume accepting on fd %d: %s", fd, e)

    def close(self) -> None:
        """Release the spare fd (once the listeners are closed)."""
        self.reserve.close()
