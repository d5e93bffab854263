"""The listening socket, and parsing of ``proto://address``.

gnet counterpart: ``listener_unix.go`` (v1.6.7: ``listener``,
``initListener``, ``normalize``, ``close``, ``dup``) and ``parseProtoAddr`` in
``gnet.go``.

Differences from gnet v1, on purpose:

* The address is **not lower-cased** (docs/gnet-mapping.md, deliberate change #6: gnet v1 lower-cases
  the whole string, which breaks mixed-case Unix socket paths).
* ``unix://`` paths: gnet removes whatever is at the path before binding
  (``os.RemoveAll``, so a typo can delete a directory tree). reactor removes
  only a stale *socket* file there, and after close removes the path only if
  it is still the socket this listener created (same inode).
* SO_REUSEPORT is never set on AF_UNIX listeners (gnet v2 stopped doing it:
  Linux does not balance Unix sockets by port, and each ``initListener``
  would unlink its predecessor's path).
"""

from __future__ import annotations

import errno
import logging
import os
import socket as _socket
import stat
import threading

from .errors import InvalidNetworkAddressError, UnsupportedProtocolError
from .internal import sockets, unix
from .options import Options

__all__ = ["Listener", "init_listener", "parse_proto_addr"]

_NETWORKS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix")


def parse_proto_addr(proto_addr: str) -> tuple[str, str]:
    """Split ``"tcp://127.0.0.1:9000"`` into ``("tcp", "127.0.0.1:9000")`` (gnet: ``parseProtoAddr``).

    Without ``://`` the network is ``tcp``, as in gnet.

    :raises UnsupportedProtocolError: unknown scheme (``tulip://...``).
    :raises InvalidNetworkAddressError: a path after a TCP address, an empty
        Unix path, or control characters.
    """
    if not isinstance(proto_addr, str):
        raise InvalidNetworkAddressError(f"address must be a str like 'tcp://:9000', got {proto_addr!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in proto_addr):
        raise InvalidNetworkAddressError(f"invalid address {proto_addr!r}: control characters")
    network, sep, address = proto_addr.partition("://")
    if not sep:
        network, address = "tcp", proto_addr
    if network not in _NETWORKS:
        raise UnsupportedProtocolError(
            f"unsupported network {network!r} in {proto_addr!r}; use one of {', '.join(_NETWORKS)}"
        )
    if network == "unix":
        if not address:
            raise InvalidNetworkAddressError(f"invalid address {proto_addr!r}: empty unix socket path")
    elif "/" in address:
        raise InvalidNetworkAddressError(f"invalid address {proto_addr!r}: a {network} address has no path")
    return network, address


class Listener:
    """A bound, listening, non-blocking socket (gnet: ``listener``)."""

    def __init__(self, network: str, address: str, sock_opts: list[sockets.SockOpt]) -> None:
        self.network = network  # "tcp"/"tcp4"/"tcp6"/"udp"/"udp4"/"udp6"/"unix" as given
        self.is_udp = network.startswith("udp")
        self.address = address  # as given, not lower-cased
        self.sock_opts = sock_opts
        self.fd = -1
        self.family = unix.AF_UNSPEC
        self.addr: unix.Address = ""
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def normalize(self) -> None:
        """Create, bind and listen (gnet: ``normalize``)."""
        if self.network == "unix":
            if self.address.startswith("@"):
                # Go's spelling of the Linux abstract namespace: "@name" is
                # the name "\0name", which has no file.
                self.fd, self.addr, self.family = sockets.unix_socket("\0" + self.address[1:], True, self.sock_opts)
                return
            self._remove_stale_socket()
            self.fd, self.addr, self.family = sockets.unix_socket(self.address, True, self.sock_opts)
            if not self.address.startswith("\0"):
                st = os.stat(self.address)
                self._inode = (st.st_dev, st.st_ino)
        elif self.network.startswith("udp"):
            self.fd, self.addr, self.family = sockets.udp_socket(self.network, self.address, False, self.sock_opts)
        else:
            self.fd, self.addr, self.family = sockets.tcp_socket(self.network, self.address, True, self.sock_opts)

    def _remove_stale_socket(self) -> None:
        path = self.address
        if path.startswith("\0"):
            return  # abstract namespace: no file
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            return  # not ours to delete: bind() will fail with EADDRINUSE
        # A socket file outlives its server when that server dies without
        # cleaning up. Only such a stale one may be replaced: if something
        # still accepts there, unlinking it would silently steal the path.
        probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            probe.setblocking(False)
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listening: stale
            return
        except BlockingIOError:
            pass  # EAGAIN: listening, backlog full: alive
        except OSError:
            return  # cannot tell; let bind() report it
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, f"unix socket {path!r} is in use by a running server")

    def dup(self) -> int:
        """A close-on-exec duplicate of the listening fd; the caller owns it (gnet: ``dup``).

        :raises OSError: EBADF once the listener is closed (its fd number may
            already belong to an unrelated file by then).
        """
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the listener is closed")
            return unix.dup(self.fd)

    def close(self) -> None:
        """Close the socket and remove its Unix path, once (gnet: ``close``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.fd >= 0:
                try:
                    unix.close(self.fd)
                except OSError:
                    logging.getLogger("reactor").exception("closing listener fd %d", self.fd)
            if self._inode is not None:
                try:
                    st = os.lstat(self.address)
                    if (st.st_dev, st.st_ino) == self._inode:
                        os.unlink(self.address)
                except FileNotFoundError:
                    pass


# --8<-- [start:init-listener]
def init_listener(network: str, address: str, options: Options) -> Listener:
    """Build the socket options and a listening ``Listener`` (gnet: ``initListener``)."""
    sock_opts: list[sockets.SockOpt] = []
    # UDP always gets SO_REUSEPORT (as gnet): every loop owns one socket on
    # the same address and the kernel spreads datagrams by source.
    if (options.reuse_port and network != "unix") or network.startswith("udp"):
        sock_opts.append(sockets.SockOpt(sockets.set_reuseport, 1))
    if options.reuse_addr:
        sock_opts.append(sockets.SockOpt(sockets.set_reuse_addr, 1))
    if options.tcp_no_delay and network.startswith("tcp"):
        sock_opts.append(sockets.SockOpt(sockets.set_no_delay, 1))
    if options.socket_recv_buffer > 0:
        sock_opts.append(sockets.SockOpt(sockets.set_recv_buffer, options.socket_recv_buffer))
    if options.socket_send_buffer > 0:
        sock_opts.append(sockets.SockOpt(sockets.set_send_buffer, options.socket_send_buffer))
    ln = Listener(network, address, sock_opts)
    ln.normalize()
    return ln
# --8<-- [end:init-listener]
