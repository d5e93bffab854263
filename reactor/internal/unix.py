"""Thin wrappers over the Linux syscalls declared in ``build_ffi.py``.

gnet counterpart: ``golang.org/x/sys/unix`` plus gnet's
``internal/netpoll/syscall_epoll_linux.go``. Names are the C names, exactly as
``os`` does it, so a reader can match every call with its man page and with
``strace`` output.

Length: about 700 lines, and meant to stay one module: one short wrapper per
syscall plus the constants and address conversions they share, read
side by side with the syscall table in docs/gnet-mapping.md. Policy (which
signals threads block, parent-death signals) lives in
:mod:`reactor.internal.threads`, not here.

Some facts about talking to the kernel through CFFI
----------------------------------------------------
* errno. A failing syscall returns -1 and sets ``errno``; cffi saves it into
  the thread-local ``ffi.errno`` right after the call. A *successful* call does
  not clear it, so the rule is: test the return value first, then read
  ``ffi.errno`` at once, before any other C call on this thread.
* Errors are raised as ``OSError(errno, strerror)``, never as a subclass: the
  OSError constructor itself maps the errno to ``BlockingIOError`` (EAGAIN),
  ``ConnectionResetError`` (ECONNRESET), ``ConnectionRefusedError``,
  ``BrokenPipeError``, ``InterruptedError``... exactly as the stdlib ``socket``
  module does. The syscall name is attached as a note (``add_note``; on 3.10,
  where notes do not exist, it goes into ``__notes__`` all the same), the way
  Go's ``os.NewSyscallError`` prefixes it.
* EINTR. cffi does not retry interrupted calls (the stdlib does since PEP 475),
  so each wrapper of a call that can block (accept4, read, write, writev,
  recvfrom, sendto, fcntl, eventfd reads/writes) loops on EINTR itself; the
  others (socket, bind, listen, setsockopt, epoll_ctl, ...) never sleep and
  so are never interrupted. Looping in Python lets CPython run any
  pending signal handler between attempts, which is PEP 475's behaviour.
  Three deliberate exceptions, each documented on the function:
  ``epoll_wait`` (the caller must recompute its timeout: it returns an empty
  result instead), ``close`` (on Linux the fd is released even when close
  reports EINTR, so retrying could close somebody else's new fd) and
  ``connect`` (an interrupted connect goes on asynchronously, like
  EINPROGRESS).
* The GIL. cffi releases the GIL around every call into C, so a loop thread
  blocked in ``epoll_wait`` lets every other thread run.
* Addresses use the stdlib ``socket`` module's tuple shapes: ``(host, port)``
  for AF_INET, ``(host, port, flowinfo, scope_id)`` for AF_INET6, and a ``str``
  path (or ``bytes`` for the Linux abstract namespace, first byte NUL) for
  AF_UNIX. Host strings are numeric; name resolution belongs to the caller.
"""

from __future__ import annotations

import errno
import os
import socket as _socket
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

try:
    # "as": an explicit re-export (mypy --strict), since the hot paths call lib directly.
    from .._sys import ffi as ffi  # noqa: PLC0414
    from .._sys import lib as lib
except ImportError as _e:  # pragma: no cover - exercised by tests/unit/test_build.py in a subprocess
    # A source checkout has no compiled extension until it is built; say how,
    # instead of failing later with an obscure AttributeError.
    raise ImportError(
        "reactor's compiled CFFI module reactor._sys is missing (a source tree that was never built?). "
        "Install the package, e.g. `pip install -e .` from the repository root (it builds reactor/_sys in "
        "place), or build it there with `python build_ffi.py`."
    ) from _e

__all__ = [
    "Address",
    "accept4",
    "bind",
    "close",
    "connect",
    "dup",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "eventfd",
    "eventfd_read",
    "eventfd_write",
    "fcntl",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "read",
    "read_nowait",
    "readinto",
    "recvfrom",
    "recvfrom_into",
    "sendto",
    "setsockopt",
    "shutdown",
    "sockaddr",
    "sockaddr_to_address",
    "socket",
    "syscall_error",
    "write",
    "write_nowait",
    "writev",
    "writev_nowait",
    "EpollEvents",
]

#: What the address helpers accept and return (stdlib ``socket`` shapes).
Address = tuple[str, int] | tuple[str, int, int, int] | str | bytes

# --- constants, straight from the C headers through build_ffi.py -------------
AF_UNSPEC: Final[int] = lib.AF_UNSPEC
AF_INET: Final[int] = lib.AF_INET
AF_INET6: Final[int] = lib.AF_INET6
AF_UNIX: Final[int] = lib.AF_UNIX
SOCK_STREAM: Final[int] = lib.SOCK_STREAM
SOCK_DGRAM: Final[int] = lib.SOCK_DGRAM
SOCK_NONBLOCK: Final[int] = lib.SOCK_NONBLOCK
SOCK_CLOEXEC: Final[int] = lib.SOCK_CLOEXEC
SOL_SOCKET: Final[int] = lib.SOL_SOCKET
SO_REUSEADDR: Final[int] = lib.SO_REUSEADDR
SO_REUSEPORT: Final[int] = lib.SO_REUSEPORT
SO_KEEPALIVE: Final[int] = lib.SO_KEEPALIVE
SO_RCVBUF: Final[int] = lib.SO_RCVBUF
SO_SNDBUF: Final[int] = lib.SO_SNDBUF
SO_ERROR: Final[int] = lib.SO_ERROR
SO_LINGER: Final[int] = lib.SO_LINGER
SO_TYPE: Final[int] = lib.SO_TYPE
SO_DOMAIN: Final[int] = lib.SO_DOMAIN
SO_ACCEPTCONN: Final[int] = lib.SO_ACCEPTCONN
IPPROTO_IP: Final[int] = lib.IPPROTO_IP
IPPROTO_TCP: Final[int] = lib.IPPROTO_TCP
IPPROTO_UDP: Final[int] = lib.IPPROTO_UDP
IPPROTO_IPV6: Final[int] = lib.IPPROTO_IPV6
IPV6_V6ONLY: Final[int] = lib.IPV6_V6ONLY
TCP_NODELAY: Final[int] = lib.TCP_NODELAY
TCP_KEEPIDLE: Final[int] = lib.TCP_KEEPIDLE
TCP_KEEPINTVL: Final[int] = lib.TCP_KEEPINTVL
TCP_KEEPCNT: Final[int] = lib.TCP_KEEPCNT
SHUT_RD: Final[int] = lib.SHUT_RD
SHUT_WR: Final[int] = lib.SHUT_WR
SHUT_RDWR: Final[int] = lib.SHUT_RDWR
SOMAXCONN: Final[int] = lib.SOMAXCONN
MSG_TRUNC: Final[int] = lib.MSG_TRUNC
MSG_DONTWAIT: Final[int] = lib.MSG_DONTWAIT
MSG_NOSIGNAL: Final[int] = lib.MSG_NOSIGNAL
MSG_PEEK: Final[int] = lib.MSG_PEEK
F_GETFL: Final[int] = lib.F_GETFL
F_SETFL: Final[int] = lib.F_SETFL
F_GETFD: Final[int] = lib.F_GETFD
F_SETFD: Final[int] = lib.F_SETFD
F_DUPFD_CLOEXEC: Final[int] = lib.F_DUPFD_CLOEXEC
FD_CLOEXEC: Final[int] = lib.FD_CLOEXEC
O_NONBLOCK: Final[int] = lib.O_NONBLOCK
O_CLOEXEC: Final[int] = lib.O_CLOEXEC
EPOLL_CLOEXEC: Final[int] = lib.EPOLL_CLOEXEC
EPOLL_CTL_ADD: Final[int] = lib.EPOLL_CTL_ADD
EPOLL_CTL_MOD: Final[int] = lib.EPOLL_CTL_MOD
EPOLL_CTL_DEL: Final[int] = lib.EPOLL_CTL_DEL
EPOLLIN: Final[int] = lib.EPOLLIN
EPOLLOUT: Final[int] = lib.EPOLLOUT
EPOLLPRI: Final[int] = lib.EPOLLPRI
EPOLLERR: Final[int] = lib.EPOLLERR
EPOLLHUP: Final[int] = lib.EPOLLHUP
EPOLLRDHUP: Final[int] = lib.EPOLLRDHUP
EPOLLET: Final[int] = lib.EPOLLET
EPOLLONESHOT: Final[int] = lib.EPOLLONESHOT
EPOLLEXCLUSIVE: Final[int] = lib.EPOLLEXCLUSIVE
EFD_NONBLOCK: Final[int] = lib.EFD_NONBLOCK
EFD_CLOEXEC: Final[int] = lib.EFD_CLOEXEC
EFD_SEMAPHORE: Final[int] = lib.EFD_SEMAPHORE
IOV_MAX: Final[int] = lib.IOV_MAX

_EINTR: Final[int] = errno.EINTR


# --- errors -------------------------------------------------------------------
def _error(call: str, err: int | None = None) -> OSError:
    """Build the OSError for the errno saved by the last cffi call on this thread."""
    if err is None:
        err = ffi.errno
    exc = OSError(err, os.strerror(err))
    note = f"in syscall {call}"
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10: no add_note, keep the note where 3.11 would put it
        exc.__notes__ = [note]
    return exc


def syscall_error(call: str, err: int) -> OSError:
    """``OSError(err, strerror)`` with the note ``in syscall <call>``, for a
    ``-errno`` that a ``*_nowait`` function returned."""
    return _error(call, err)


def _raise(call: str) -> NoReturn:
    raise _error(call)


# --- socket addresses -------------------------------------------------------
_SUN_PATH_OFFSET: Final[int] = ffi.offsetof("struct sockaddr_un", "sun_path")
_SUN_PATH_MAX: Final[int] = ffi.sizeof("struct sockaddr_un") - _SUN_PATH_OFFSET
_SOCKADDR_STORAGE_SIZE: Final[int] = ffi.sizeof("struct sockaddr_storage")


def sockaddr(family: int, address: Address) -> tuple[Any, int]:
    """Convert a stdlib-shaped address into ``(struct sockaddr *, length)``.

    AF_INET takes ``(host, port)``; ``""`` means INADDR_ANY as in the stdlib.
    AF_INET6 takes ``(host, port[, flowinfo[, scope_id]])``; a ``%ifname``
    suffix on the host sets the scope id. AF_UNIX takes a ``str`` or ``bytes``
    path; a leading NUL selects the Linux abstract namespace, where the name
    is not NUL-terminated and its length is part of the address.

    :raises ValueError: for a malformed address, as the stdlib raises
        ``OSError``/``TypeError``; here the message says which part is wrong.
    """
    if family == AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise ValueError(f"AF_INET address must be (host, port), got {address!r}")
        host, port = address
        buf = bytearray(ffi.sizeof("struct sockaddr_in"))
        sin = ffi.from_buffer("struct sockaddr_in *", buf)
        sin.sin_family = AF_INET
        sin.sin_port = _socket.htons(_check_port(port))
        packed = _socket.inet_pton(_socket.AF_INET, host or "0.0.0.0")
        # s_addr is stored in network byte order: copy the 4 bytes as they are.
        ffi.memmove(ffi.addressof(sin.sin_addr), packed, 4)
        return _as_sockaddr(buf)
    if family == AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise ValueError(
                f"AF_INET6 address must be (host, port[, flowinfo[, scope_id]]), got {address!r}"
            )
        host6 = str(address[0]) or "::"
        port6 = _check_port(address[1])
        flowinfo = int(address[2]) if len(address) > 2 else 0
        scope_id = int(address[3]) if len(address) > 3 else 0
        if "%" in host6:
            host6, _, ifname = host6.partition("%")
            scope_id = int(ifname) if ifname.isdigit() else _socket.if_nametoindex(ifname)
        if not 0 <= flowinfo <= 0xFFFFF:
            raise OverflowError("flowinfo must be 0-1048575.")
        buf = bytearray(ffi.sizeof("struct sockaddr_in6"))
        sin6 = ffi.from_buffer("struct sockaddr_in6 *", buf)
        sin6.sin6_family = AF_INET6
        sin6.sin6_port = _socket.htons(port6)
        sin6.sin6_flowinfo = _socket.htonl(flowinfo)
        ffi.memmove(sin6.sin6_addr.s6_addr, _socket.inet_pton(_socket.AF_INET6, host6), 16)
        sin6.sin6_scope_id = scope_id
        return _as_sockaddr(buf)
    if family == AF_UNIX:
        if isinstance(address, str):
            path = os.fsencode(address)
        elif isinstance(address, (bytes, bytearray)):
            path = bytes(address)
        else:
            raise ValueError(f"AF_UNIX address must be str or bytes, got {address!r}")
        abstract = path[:1] == b"\0"
        # A filesystem path needs room for its terminating NUL; an abstract
        # name is counted exactly (the kernel uses addrlen, not a NUL).
        limit = _SUN_PATH_MAX if abstract else _SUN_PATH_MAX - 1
        if len(path) > limit:
            kind = "abstract name" if abstract else "path"
            raise ValueError(f"AF_UNIX {kind} too long ({len(path)} bytes, max {limit})")
        buf = bytearray(ffi.sizeof("struct sockaddr_un"))
        sun = ffi.from_buffer("struct sockaddr_un *", buf)
        sun.sun_family = AF_UNIX
        ffi.memmove(sun.sun_path, path, len(path))
        length = _SUN_PATH_OFFSET + len(path) + (0 if abstract else 1)
        return _as_sockaddr(buf)[0], length
    raise ValueError(f"unsupported address family {family}")


def _as_sockaddr(buf: bytearray) -> tuple[Any, int]:
    """``(struct sockaddr *, len(buf))`` over ``buf``, keeping ``buf`` alive as long as the pointer.

    Why not ``ffi.cast("struct sockaddr *", ffi.new(...))``: a cast pointer
    does not own its target, so the ``ffi.new`` memory is freed when this
    module's function returns and ``bind``/``connect``/``sendto`` read freed
    memory. With pymalloc the bytes usually survive until the call; with
    ``PYTHONMALLOC=malloc`` or ``malloc_debug`` the allocator reuses or
    poisons them and the kernel sees a garbage family (EAFNOSUPPORT).
    ``ffi.from_buffer`` pointers hold a reference to their buffer.
    """
    return ffi.from_buffer("struct sockaddr *", buf), len(buf)


def _check_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool):
        raise ValueError(f"port must be an int, got {port!r}")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("port must be 0-65535.")  # the stdlib's exception and wording
    return port


def sockaddr_to_address(sa: Any, length: int) -> Address:
    """Convert a kernel-filled ``struct sockaddr *`` of ``length`` bytes back to a tuple/path."""
    family = sa.sa_family
    if family == AF_INET:
        sin = ffi.cast("struct sockaddr_in *", sa)
        host = _socket.inet_ntop(_socket.AF_INET, ffi.buffer(ffi.addressof(sin.sin_addr), 4)[:])
        # Interned: a server holds one peer tuple per connection, and its
        # connections mostly come from a few hosts (~60 bytes saved each).
        return (sys.intern(host), _socket.ntohs(sin.sin_port))
    if family == AF_INET6:
        sin6 = ffi.cast("struct sockaddr_in6 *", sa)
        host = sys.intern(_socket.inet_ntop(_socket.AF_INET6, ffi.buffer(sin6.sin6_addr.s6_addr, 16)[:]))
        # Since Python 3.7 (bpo-32221) the stdlib keeps the scope id only in
        # the fourth field and no longer appends "%ifname" to the host.
        return (
            host,
            _socket.ntohs(sin6.sin6_port),
            _socket.ntohl(sin6.sin6_flowinfo),
            sin6.sin6_scope_id,
        )
    if family == AF_UNIX:
        sun = ffi.cast("struct sockaddr_un *", sa)
        n = length - _SUN_PATH_OFFSET
        if n <= 0:
            return ""  # an unnamed socket (socketpair, or a client that never bound)
        raw: bytes = ffi.buffer(sun.sun_path, n)[:]
        if raw[:1] == b"\0":
            return raw  # abstract namespace: bytes, length-exact, like the stdlib
        return os.fsdecode(raw.split(b"\0", 1)[0])
    raise ValueError(f"unsupported address family {family}")


def _storage() -> tuple[Any, Any]:
    ss = ffi.new("struct sockaddr_storage *")
    length = ffi.new("socklen_t *", _SOCKADDR_STORAGE_SIZE)
    return ss, length


# --- sockets ------------------------------------------------------------------
def socket(family: int, type: int, protocol: int = 0) -> int:
    """socket(2): return a new fd. Pass SOCK_NONBLOCK|SOCK_CLOEXEC in ``type``."""
    fd: int = lib.socket(family, type, protocol)
    if fd < 0:
        _raise(f"socket(family={family}, type={type:#x})")
    return fd


def setsockopt(fd: int, level: int, option: int, value: int | bytes) -> None:
    """setsockopt(2) with an ``int`` value, or raw ``bytes`` for a struct option (e.g. SO_LINGER)."""
    if isinstance(value, int):
        buf = ffi.new("int *", value)
        size = ffi.sizeof("int")
    else:
        buf = ffi.from_buffer(value)
        size = len(value)
    if lib.setsockopt(fd, level, option, buf, size) < 0:
        _raise(f"setsockopt(fd={fd}, level={level}, option={option})")


def getsockopt(fd: int, level: int, option: int, buflen: int = 0) -> int | bytes:
    """getsockopt(2): an ``int`` value, or ``buflen`` raw bytes when ``buflen`` > 0 (as the stdlib)."""
    if buflen <= 0:
        ival = ffi.new("int *")
        size = ffi.new("socklen_t *", ffi.sizeof("int"))
        if lib.getsockopt(fd, level, option, ival, size) < 0:
            _raise(f"getsockopt(fd={fd}, level={level}, option={option})")
        return int(ival[0])
    raw = ffi.new("char[]", buflen)
    size = ffi.new("socklen_t *", buflen)
    if lib.getsockopt(fd, level, option, raw, size) < 0:
        _raise(f"getsockopt(fd={fd}, level={level}, option={option})")
    value: bytes = ffi.buffer(raw, size[0])[:]
    return value


def bind(fd: int, family: int, address: Address) -> None:
    """bind(2) ``fd`` to ``address`` (converted for ``family``)."""
    sa, length = sockaddr(family, address)
    if lib.bind(fd, sa, length) < 0:
        _raise(f"bind(fd={fd}, {address!r})")


def listen(fd: int, backlog: int) -> None:
    """listen(2)."""
    if lib.listen(fd, backlog) < 0:
        _raise(f"listen(fd={fd}, backlog={backlog})")


def accept4(fd: int, flags: int = SOCK_NONBLOCK | SOCK_CLOEXEC, accept: Any = lib.accept4) -> tuple[int, Address]:
    """accept4(2) (or ``accept``, a C function with its contract): return ``(new_fd, peer_address)``.

    The flags are applied atomically to the new fd: no window in which a
    concurrent fork/exec inherits it (gnet v1 used plain accept + a separate
    fcntl; v2 switched to accept4 for this reason).

    :raises BlockingIOError: EAGAIN, the backlog is empty.
    :raises OSError: EMFILE/ENFILE (fd exhaustion), ECONNABORTED, ...
    """
    ss, length = _storage()
    sa = ffi.cast("struct sockaddr *", ss)
    while True:
        nfd: int = accept(fd, sa, length, flags)
        if nfd >= 0:
            return nfd, sockaddr_to_address(sa, length[0])
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"accept4(fd={fd})", err)


def connect(fd: int, family: int, address: Address) -> None:
    """connect(2).

    On a non-blocking socket this raises ``BlockingIOError`` (EINPROGRESS)
    while the handshake runs; wait for EPOLLOUT and read SO_ERROR. EINTR is
    *not* retried: per connect(2) an interrupted connect completes
    asynchronously, and a second connect would report EALREADY; it is
    reported as EINPROGRESS instead, which is what it means.
    """
    sa, length = sockaddr(family, address)
    if lib.connect(fd, sa, length) < 0:
        err = ffi.errno
        raise _error(f"connect(fd={fd}, {address!r})", errno.EINPROGRESS if err == _EINTR else err)


def getsockname(fd: int) -> Address:
    """getsockname(2): the local address, in the stdlib's shape for its family."""
    ss, length = _storage()
    sa = ffi.cast("struct sockaddr *", ss)
    if lib.getsockname(fd, sa, length) < 0:
        _raise(f"getsockname(fd={fd})")
    return sockaddr_to_address(sa, length[0])


def getpeername(fd: int) -> Address:
    """getpeername(2): the peer's address. Raises ENOTCONN once the peer is gone."""
    ss, length = _storage()
    sa = ffi.cast("struct sockaddr *", ss)
    if lib.getpeername(fd, sa, length) < 0:
        _raise(f"getpeername(fd={fd})")
    return sockaddr_to_address(sa, length[0])


def shutdown(fd: int, how: int) -> None:
    """shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR."""
    if lib.shutdown(fd, how) < 0:
        _raise(f"shutdown(fd={fd}, how={how})")


# --- plain I/O ------------------------------------------------------------------
def read(fd: int, n: int) -> bytes:
    """read(2) at most ``n`` bytes; ``b""`` means end of file (the peer closed)."""
    buf = ffi.new("char[]", n)
    while True:
        got: int = lib.read(fd, buf, n)
        if got >= 0:
            data: bytes = ffi.buffer(buf, got)[:]
            return data
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"read(fd={fd}, {n})", err)


def readinto(fd: int, buffer: bytearray | memoryview, n: int = -1) -> int:
    """read(2) into a writable buffer (no copy); return the count, 0 at end of file."""
    cbuf = ffi.from_buffer(buffer, require_writable=True)
    # Sizes are in bytes: len(cbuf) is the byte length even for a
    # memoryview cast to wider items, where len(buffer) counts items.
    size = len(cbuf) if n < 0 else min(n, len(cbuf))
    while True:
        got: int = lib.read(fd, cbuf, size)
        if got >= 0:
            return got
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"read(fd={fd}, {size})", err)


def write(fd: int, data: bytes | bytearray | memoryview) -> int:
    """write(2): return how many bytes the kernel took (may be fewer than ``len(data)``)."""
    cbuf = ffi.from_buffer(data)
    while True:
        sent: int = lib.write(fd, cbuf, len(cbuf))
        if sent >= 0:
            return sent
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"write(fd={fd}, {len(cbuf)})", err)


def writev(fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
    """writev(2) of up to IOV_MAX buffers in one syscall; return the bytes written.

    Only the first IOV_MAX buffers are passed (the kernel refuses more with
    EINVAL); the caller sees a short count and continues, as with any short write.
    """
    count = min(len(buffers), IOV_MAX)
    iov = ffi.new("struct iovec[]", count)
    # The iovec only holds raw pointers: `keep` holds the cdata objects that
    # pin each Python buffer until the syscall has returned.
    keep = []
    for i in range(count):
        cbuf = ffi.from_buffer(buffers[i])
        keep.append(cbuf)
        iov[i].iov_base = cbuf
        iov[i].iov_len = len(cbuf)
    while True:
        sent: int = lib.writev(fd, iov, count)
        if sent >= 0:
            del keep
            return sent
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"writev(fd={fd}, {count} buffers)", err)


def recvfrom(fd: int, n: int, flags: int = 0) -> tuple[bytes, Address | None]:
    """recvfrom(2) at most ``n`` bytes: ``(data, sender)``.

    A datagram longer than ``n`` is cut to ``n`` bytes by the kernel and the
    rest is lost; use :func:`recvfrom_into` with MSG_TRUNC to learn that it
    happened. ``sender`` is None for a stream socket (no address reported).
    """
    buf = bytearray(n)
    got, sender = recvfrom_into(fd, buf, flags & ~MSG_TRUNC)
    return bytes(buf[:got]), sender


def recvfrom_into(
    fd: int, buffer: bytearray | memoryview, flags: int = 0
) -> tuple[int, Address | None]:
    """recvfrom(2) into ``buffer`` (no copy): ``(nbytes, sender)``.

    With MSG_TRUNC in ``flags`` the kernel returns a datagram's *real*
    length even when it was longer than the buffer, so ``nbytes >
    len(buffer)`` means the datagram was truncated (only ``len(buffer)``
    bytes were stored). This is how the UDP read path detects oversized
    datagrams instead of silently pretending they were whole.
    """
    cbuf = ffi.from_buffer(buffer, require_writable=True)
    ss, length = _storage()
    sa = ffi.cast("struct sockaddr *", ss)
    while True:
        got: int = lib.recvfrom(fd, cbuf, len(cbuf), flags, sa, length)
        if got >= 0:
            sender = sockaddr_to_address(sa, length[0]) if length[0] else None
            return got, sender
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"recvfrom(fd={fd}, {len(cbuf)})", err)


def sendto(fd: int, data: bytes | bytearray | memoryview, flags: int, family: int, address: Address) -> int:
    """sendto(2) one datagram (or stream bytes) to ``address``."""
    sa, length = sockaddr(family, address)
    cbuf = ffi.from_buffer(data)
    while True:
        sent: int = lib.sendto(fd, cbuf, len(cbuf), flags, sa, length)
        if sent >= 0:
            return sent
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"sendto(fd={fd}, {address!r})", err)


def close(fd: int) -> None:
    """close(2). Never retried: on Linux the fd is released even when close
    reports EINTR, and by then another thread may already own that number."""
    if lib.close(fd) < 0:
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"close(fd={fd})", err)


def fcntl(fd: int, cmd: int, arg: int = 0) -> int:
    """fcntl(2) with an int argument (F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_DUPFD_CLOEXEC)."""
    while True:
        rc: int = lib.fcntl(fd, cmd, ffi.cast("int", arg))
        if rc >= 0:
            return rc
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"fcntl(fd={fd}, cmd={cmd})", err)


def dup(fd: int) -> int:
    """Duplicate ``fd`` with close-on-exec set atomically (``fcntl(F_DUPFD_CLOEXEC)``).

    gnet: ``netpoll.Dup`` / ``Server.DupFd``. The caller owns the new fd.
    """
    return fcntl(fd, F_DUPFD_CLOEXEC, 0)


# --- epoll ----------------------------------------------------------------------
def epoll_create1(flags: int = EPOLL_CLOEXEC) -> int:
    """epoll_create1(2): a new epoll instance."""
    fd: int = lib.epoll_create1(flags)
    if fd < 0:
        _raise(f"epoll_create1(flags={flags:#x})")
    return fd


def epoll_ctl(epfd: int, op: int, fd: int, events: int = 0) -> None:
    """epoll_ctl(2): add, modify or delete ``fd``'s interest; ``data.fd`` is set to ``fd``."""
    if lib.rx_epoll_ctl(epfd, op, fd, events) < 0:
        _raise(f"epoll_ctl(epfd={epfd}, op={op}, fd={fd}, events={events:#x})")


class EpollEvents:
    """A reusable result array for :func:`epoll_wait` (gnet: ``eventList``).

    Holds the raw ``struct epoll_event`` array the kernel fills and the two
    plain arrays the C helper copies fds and masks into. Allocate one per loop
    and reuse it: ``ffi.new`` zero-fills, which is not free.
    """

    __slots__ = ("size", "events", "fds", "masks")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("EpollEvents size must be positive")
        self.size = size
        self.events = ffi.new("struct epoll_event[]", size)
        self.fds = ffi.new("int[]", size)
        self.masks = ffi.new("uint32_t[]", size)


def epoll_wait(epfd: int, events: EpollEvents, timeout_ms: int) -> list[tuple[int, int]]:
    """epoll_wait(2): return ``[(fd, mask), ...]`` for up to ``events.size`` ready fds.

    EINTR is *not* retried here: it returns ``[]`` so that the caller can
    recompute its timeout (gnet treats EINTR exactly like ``n == 0``).
    """
    n: int = lib.rx_epoll_wait(epfd, events.events, events.size, timeout_ms, events.fds, events.masks)
    if n <= 0:
        if n < 0:
            err = ffi.errno
            if err == _EINTR:
                return []
            raise _error(f"epoll_wait(epfd={epfd})", err)
        return []
    return list(zip(ffi.unpack(events.fds, n), ffi.unpack(events.masks, n)))


# --- eventfd ----------------------------------------------------------------------
def eventfd(initval: int = 0, flags: int = EFD_NONBLOCK | EFD_CLOEXEC) -> int:
    """eventfd(2): a kernel 64-bit counter, readable while it is non-zero."""
    fd: int = lib.eventfd(initval, flags)
    if fd < 0:
        _raise(f"eventfd(flags={flags:#x})")
    return fd


def eventfd_write(fd: int, value: int = 1) -> None:
    """Add ``value`` to the counter (an 8-byte write). Raises BlockingIOError if it would overflow."""
    while True:
        if lib.rx_eventfd_write(fd, value) == 0:
            return
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"eventfd_write(fd={fd})", err)


def eventfd_read(fd: int) -> int:
    """Read and reset the counter (an 8-byte read); BlockingIOError if it is zero.

    In EFD_SEMAPHORE mode the read returns 1 and decrements the counter instead.
    """
    out = ffi.new("uint64_t *")
    while True:
        if lib.rx_eventfd_read(fd, out) == 0:
            return int(out[0])
        err = ffi.errno
        if err != _EINTR:
            raise _error(f"eventfd_read(fd={fd})", err)


# --- hot-path variants for the event loop -------------------------------------------
# On a non-blocking socket EAGAIN is an ordinary outcome, not an exception:
# raising and catching an OSError costs 1-2 µs, more than the syscall itself.
# These three return the negated errno instead (trio's ``_nowait`` idea) and
# only the event loop uses them. EINTR comes back as -EINTR: the loop treats
# it like EAGAIN-with-more-to-do (level-triggered epoll reports the fd again).
_lib_read = lib.read
_lib_write = lib.write
_lib_writev = lib.writev
_from_buffer = ffi.from_buffer


def read_nowait(fd: int, cbuf: Any, n: int) -> int:
    """read(2) into a cdata buffer: bytes read, 0 at EOF, or ``-errno``."""
    got: int = _lib_read(fd, cbuf, n)
    if got < 0:
        return -int(ffi.errno)
    return got


def write_nowait(fd: int, data: bytes | bytearray | memoryview, write: Any = _lib_write) -> int:
    """write(2) (or ``write``, a C function with its contract): bytes written, or ``-errno``.

    ``bytes`` go to C without a copy or a cdata wrapper.
    """
    if type(data) is bytes:
        sent: int = write(fd, data, len(data))
    else:
        cbuf = _from_buffer(data)
        sent = write(fd, cbuf, len(cbuf))
    if sent < 0:
        return -int(ffi.errno)
    return sent


def writev_nowait(fd: int, buffers: Sequence[bytes | bytearray | memoryview], writev: Any = _lib_writev) -> int:
    """writev(2) (or ``writev``, a C function with its contract) of up to IOV_MAX buffers.

    Returns the bytes written, or ``-errno``.
    """
    count = min(len(buffers), IOV_MAX)
    iov = ffi.new("struct iovec[]", count)
    keep = [_from_buffer(buffers[i]) for i in range(count)]  # pins each buffer until writev returns
    for i in range(count):
        iov[i].iov_base = keep[i]
        iov[i].iov_len = len(keep[i])
    sent: int = writev(fd, iov, count)
    if sent < 0:
        return -int(ffi.errno)
    return sent

