"""Socket helpers: create, configure, bind and listen (gnet: ``internal/socket``).

gnet counterpart: ``internal/socket/socket.go``, ``tcp_socket.go``,
``udp_socket.go``, ``unix_socket.go``, ``sockopts_posix.go`` and
``sock_linux.go`` (v1.6.7: ``TCPSocket``, ``UDPSocket``, ``UnixSocket``,
``SetNoDelay``, ``SetKeepAlive``, ``SetReuseport``, ``maxListenerBacklog``).

Every socket is created with SOCK_NONBLOCK|SOCK_CLOEXEC in the ``socket(2)``
call itself: non-blocking because the event loop must never sleep in a
syscall other than ``epoll_wait``, close-on-exec so a subprocess started by
user code never inherits (and keeps open) a listener or a connection.
"""

from __future__ import annotations

import errno
import socket as _socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidNetworkAddressError
from . import unix

__all__ = [
    "SockOpt",
    "max_listener_backlog",
    "set_keepalive",
    "set_linger",
    "set_no_delay",
    "set_recv_buffer",
    "set_reuse_addr",
    "set_reuseport",
    "set_send_buffer",
    "resolve_tcp_addr",
    "resolve_udp_addr",
    "tcp_socket",
    "udp_socket",
    "unix_socket",
]

NONBLOCK_CLOEXEC: Final = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC


def set_no_delay(fd: int, on: int) -> None:
    """TCP_NODELAY: send small segments at once instead of coalescing them (Nagle off)."""
    unix.setsockopt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, on)


def set_reuseport(fd: int, on: int) -> None:
    """SO_REUSEPORT: several sockets may bind the same address; Linux hashes
    incoming connections (by 4-tuple) across the listening ones."""
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, on)


def set_reuse_addr(fd: int, on: int) -> None:
    """SO_REUSEADDR: bind even while old connections on the port sit in TIME_WAIT."""
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, on)


def set_recv_buffer(fd: int, size: int) -> None:
    """SO_RCVBUF (the kernel doubles the value for its bookkeeping)."""
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)


def set_send_buffer(fd: int, size: int) -> None:
    """SO_SNDBUF (the kernel doubles the value for its bookkeeping)."""
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)


def set_keepalive(fd: int, secs: int) -> None:
    """SO_KEEPALIVE on, first probe after ``secs`` idle seconds, then every ``secs`` (gnet: ``SetKeepAlive``)."""
    if secs <= 0:
        raise ValueError("keep-alive period must be at least 1 second")
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
    unix.setsockopt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs)
    unix.setsockopt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs)


def set_linger(fd: int, secs: int) -> None:
    """SO_LINGER: ``secs`` < 0 turns it off; 0 makes close() send RST and drop unsent data."""
    import struct

    onoff = 0 if secs < 0 else 1
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, struct.pack("ii", onoff, max(secs, 0)))


@dataclass(frozen=True)
class SockOpt:
    """One option to apply before bind (gnet: ``socket.Option``)."""

    set_sock_opt: Callable[[int, int], None]
    opt: int


_somaxconn: int | None = None


def max_listener_backlog() -> int:
    """The listen backlog: the kernel's somaxconn (gnet: ``maxListenerBacklog``).

    Reading /proc/sys/net/core/somaxconn once, as Go does; the kernel caps
    any larger value to it silently, and the field is 16 bits wide before
    Linux 4.1, hence the 65535 ceiling.
    """
    global _somaxconn
    if _somaxconn is None:
        try:
            with open("/proc/sys/net/core/somaxconn") as f:
                n = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            n = unix.SOMAXCONN
        _somaxconn = max(1, min(n, 65535))
    return _somaxconn


def resolve_tcp_addr(network: str, address: str, passive: bool = True) -> tuple[int, unix.Address]:
    """``host:port`` → (family, stdlib-shaped address) for TCP (gnet: ``GetTCPSockAddr``).

    An empty host means the wildcard address when binding: IPv4 (0.0.0.0)
    for ``tcp``/``tcp4`` and IPv6 for ``tcp6``. gnet v1 binds a dual-stack
    ``::`` for ``tcp``; reactor keeps IPv4 there so that ``server.addr`` has
    the familiar ``(host, port)`` shape; when dialing it means this host's loopback, as Go's
    ``net.Dial`` does. Names are resolved with ``getaddrinfo``; the first
    result of the wanted family wins.

    :raises InvalidNetworkAddressError: no port, a bad port, or an unresolvable host.
    """
    return _resolve(network, address, passive, _socket.SOCK_STREAM)


def resolve_udp_addr(network: str, address: str, passive: bool = True) -> tuple[int, unix.Address]:
    """The same for ``udp``/``udp4``/``udp6`` (gnet: ``GetUDPSockAddr``)."""
    return _resolve(network, address, passive, _socket.SOCK_DGRAM)


def _resolve(network: str, address: str, passive: bool, socktype: int) -> tuple[int, unix.Address]:
    host, port = split_host_port(address)
    if network.endswith("6"):
        family = _socket.AF_INET6
    elif network.endswith("4"):
        family = _socket.AF_INET
    else:
        family = _socket.AF_UNSPEC
    if host == "":
        v6 = family == _socket.AF_INET6
        if passive:
            return (unix.AF_INET6, ("::", port, 0, 0)) if v6 else (unix.AF_INET, ("0.0.0.0", port))
        return (unix.AF_INET6, ("::1", port, 0, 0)) if v6 else (unix.AF_INET, ("127.0.0.1", port))
    try:
        infos = _socket.getaddrinfo(host, port, family, socktype, 0, _socket.AI_PASSIVE if passive else 0)
    except (_socket.gaierror, UnicodeError) as e:
        raise InvalidNetworkAddressError(f"cannot resolve {address!r} for {network}: {e}") from e
    for fam, _type, _proto, _name, sockaddr in infos:
        if fam == _socket.AF_INET:
            return unix.AF_INET, (str(sockaddr[0]), int(sockaddr[1]))
        if fam == _socket.AF_INET6:
            host6, port6, flowinfo, scope_id = sockaddr  # type: ignore[misc]
            return unix.AF_INET6, (str(host6), int(port6), int(flowinfo), int(scope_id))
    raise InvalidNetworkAddressError(f"no usable address for {address!r} ({network})")


def split_host_port(address: str) -> tuple[str, int]:
    """Go's ``net.SplitHostPort`` plus port parsing: ``"h:p"``, ``"[v6]:p"``, ``":p"``; ``""`` is ``":0"``."""
    if address == "":
        return "", 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or address[end + 1 : end + 2] != ":":
            raise InvalidNetworkAddressError(f"invalid address {address!r}: expected [host]:port")
        host, port_s = address[1:end], address[end + 2 :]
    else:
        host, sep, port_s = address.rpartition(":")
        if not sep:
            raise InvalidNetworkAddressError(f"invalid address {address!r}: missing port")
        if ":" in host:
            raise InvalidNetworkAddressError(f"invalid address {address!r}: IPv6 hosts need [brackets]")
    if port_s == "":
        return host, 0  # Go resolves "host:" to port 0
    # isascii(): str.isdigit() also accepts "²" and other Unicode digits.
    if not (port_s.isascii() and port_s.isdigit()) or not 0 <= int(port_s) <= 65535:
        raise InvalidNetworkAddressError(f"invalid address {address!r}: bad port {port_s!r}")
    return host, int(port_s)


def _connect_nonblocking(fd: int, family: int, sockaddr: unix.Address) -> None:
    """Start a connect; EINPROGRESS (the handshake goes on) is the only "wait" answer.

    Anything else is raised, EAGAIN included: for AF_UNIX it means the
    listener's backlog is full, and nothing is in progress to wait for.
    """
    try:
        unix.connect(fd, family, sockaddr)
    except BlockingIOError as e:
        if e.errno != errno.EINPROGRESS:
            raise


def _apply(fd: int, sock_opts: Sequence[SockOpt]) -> None:
    for o in sock_opts:
        o.set_sock_opt(fd, o.opt)


# --8<-- [start:tcp-socket]
def tcp_socket(
    network: str, address: str, passive: bool, sock_opts: Sequence[SockOpt] = ()
) -> tuple[int, unix.Address, int]:
    """A non-blocking TCP socket, bound and listening when ``passive`` (gnet: ``TCPSocket``).

    :returns: ``(fd, bound address, family)``; the address is the real one,
        so ``:0`` comes back with the ephemeral port the kernel chose.
    """
    family, sockaddr = resolve_tcp_addr(network, address, passive)
    fd = unix.socket(family, unix.SOCK_STREAM | NONBLOCK_CLOEXEC, unix.IPPROTO_TCP)
    try:
        if family == unix.AF_INET6 and network == "tcp6":
            # tcp6 means IPv6 only; plain "tcp" on "::" keeps the kernel's
            # dual-stack default, as Go does.
            unix.setsockopt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
        _apply(fd, sock_opts)
        if passive:
            unix.bind(fd, family, sockaddr)
            unix.listen(fd, max_listener_backlog())
        else:
            _connect_nonblocking(fd, family, sockaddr)
        return fd, unix.getsockname(fd), family
    except BaseException:
        unix.close(fd)
        raise
# --8<-- [end:tcp-socket]


def unix_socket(address: str, passive: bool, sock_opts: Sequence[SockOpt] = ()) -> tuple[int, unix.Address, int]:
    """A non-blocking AF_UNIX stream socket, bound and listening when ``passive`` (gnet: ``UnixSocket``)."""
    fd = unix.socket(unix.AF_UNIX, unix.SOCK_STREAM | NONBLOCK_CLOEXEC, 0)
    try:
        _apply(fd, sock_opts)
        if passive:
            unix.bind(fd, unix.AF_UNIX, address)
            unix.listen(fd, max_listener_backlog())
        else:
            _connect_nonblocking(fd, unix.AF_UNIX, address)
        return fd, unix.getsockname(fd), unix.AF_UNIX
    except BaseException:
        unix.close(fd)
        raise


def udp_socket(
    network: str, address: str, connect: bool, sock_opts: Sequence[SockOpt] = ()
) -> tuple[int, unix.Address, int]:
    """A non-blocking UDP socket, bound to ``address`` or connected to it (gnet: ``UDPSocket``).

    A bound socket receives from anyone (the server side); a connected one
    exchanges datagrams with one peer only and may use plain ``send``.

    :returns: ``(fd, local address, family)``.
    """
    family, sockaddr = resolve_udp_addr(network, address, passive=not connect)
    fd = unix.socket(family, unix.SOCK_DGRAM | NONBLOCK_CLOEXEC, unix.IPPROTO_UDP)
    try:
        if family == unix.AF_INET6 and network == "udp6":
            unix.setsockopt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
        _apply(fd, sock_opts)
        if connect:
            unix.connect(fd, family, sockaddr)  # a UDP connect never blocks: it only sets the peer
        else:
            unix.bind(fd, family, sockaddr)
        return fd, unix.getsockname(fd), family
    except BaseException:
        unix.close(fd)
        raise
