"""reactor.listener and reactor.internal.sockets: address parsing, resolution, listening sockets.

Everything runs against the real kernel: sockets are bound on loopback or
in ``tmp_path`` and checked with stdlib clients. Every fd a test opens is
closed (the autouse leak check in conftest.py holds).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
import uuid
from collections.abc import Iterator

import pytest

from reactor.errors import InvalidNetworkAddressError, UnsupportedProtocolError
from reactor.internal import unix
from reactor.internal.sockets import (
    SockOpt,
    max_listener_backlog,
    resolve_tcp_addr,
    set_keepalive,
    set_linger,
    set_no_delay,
    set_recv_buffer,
    set_reuse_addr,
    set_reuseport,
    set_send_buffer,
    split_host_port,
    tcp_socket,
    unix_socket,
)
from reactor.listener import Listener, init_listener, parse_proto_addr
from reactor.options import Options

WAIT_S = 1.0


@pytest.fixture
def raw_fds() -> Iterator[list[int]]:
    """Raw fds a test registers here are closed at the end, whatever happens."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    """Listeners a test registers here are closed at the end."""
    lns: list[Listener] = []
    yield lns
    for ln in lns:
        ln.close()


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def sockopt(fd: int, level: int, option: int) -> int:
    value = unix.getsockopt(fd, level, option)
    assert isinstance(value, int)
    return value


def assert_listening_socket(fd: int) -> None:
    """``fd`` is a non-blocking, close-on-exec, listening stream socket."""
    assert os.get_blocking(fd) is False
    assert os.get_inheritable(fd) is False  # FD_CLOEXEC set
    assert unix.fcntl(fd, unix.F_GETFD) & unix.FD_CLOEXEC
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN) == 1
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_TYPE) == unix.SOCK_STREAM


def accept_one(fd: int) -> int:
    """Wait (bounded) for a pending connection on listening ``fd`` and accept it."""
    readable, _, _ = select.select([fd], [], [], WAIT_S)
    assert readable, "no connection arrived"
    nfd, _ = unix.accept4(fd)
    return nfd


# --- parse_proto_addr ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("proto_addr", "expected"),
    [
        ("tcp://127.0.0.1:9000", ("tcp", "127.0.0.1:9000")),
        ("tcp4://:9000", ("tcp4", ":9000")),
        ("tcp6://[::1]:9000", ("tcp6", "[::1]:9000")),
        ("127.0.0.1:9000", ("tcp", "127.0.0.1:9000")),
        (":9000", ("tcp", ":9000")),
        ("tcp://", ("tcp", "")),
        ("unix:///tmp/MiXeD.sock", ("unix", "/tmp/MiXeD.sock")),
        ("unix://relative/Path.sock", ("unix", "relative/Path.sock")),
        ("tcp://LocalHost:80", ("tcp", "LocalHost:80")),
    ],
)
def test_parse_proto_addr(proto_addr: str, expected: tuple[str, str]) -> None:
    """The scheme and address are split as given (no scheme means tcp; case is kept)."""
    assert parse_proto_addr(proto_addr) == expected


@pytest.mark.parametrize(
    "proto_addr",
    ["tulip://howdy", "http://127.0.0.1:80", "ip://x", "://x"],
)
def test_parse_proto_addr_unsupported_protocol(proto_addr: str) -> None:
    """Unknown schemes raise UnsupportedProtocolError."""
    with pytest.raises(UnsupportedProtocolError):
        parse_proto_addr(proto_addr)


@pytest.mark.parametrize(
    "proto_addr",
    [
        "unix://",
        "tcp://h:1/path",
        "tcp://127.0.0.1:80/",
        "tcp4://a/b:1",
        "tcp://127.0.0.1:80\n",
        "unix:///tmp/a\0b",
        "tcp://\t:80",
        "unix:///tmp/x\x7f",
    ],
)
def test_parse_proto_addr_invalid_address(proto_addr: str) -> None:
    """An empty unix path, a path after a TCP address or control characters raise InvalidNetworkAddressError."""
    with pytest.raises(InvalidNetworkAddressError):
        parse_proto_addr(proto_addr)


def test_parse_proto_addr_rejects_non_str() -> None:
    """A non-str address raises InvalidNetworkAddressError (a ValueError)."""
    with pytest.raises(InvalidNetworkAddressError):
        parse_proto_addr(b"tcp://:80")  # type: ignore[arg-type]
    assert issubclass(InvalidNetworkAddressError, ValueError)
    assert issubclass(UnsupportedProtocolError, ValueError)


# --- split_host_port -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("h:80", ("h", 80)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:80", ("::1", 80)),
        ("[fe80::1%lo]:443", ("fe80::1%lo", 443)),
        (":80", ("", 80)),
        ("[]:80", ("", 80)),
        ("", ("", 0)),
        ("h:65535", ("h", 65535)),
        ("h:", ("h", 0)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    """host:port, [v6]:port and :port split as Go's net.SplitHostPort does; "" means ":0"."""
    assert split_host_port(address) == expected


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("h", "missing port"),
        ("howdy", "missing port"),
        ("h:http", "bad port"),
        ("h:-1", "bad port"),
        ("h:65536", "bad port"),
        ("h: 80", "bad port"),
        ("::1:80", "brackets"),
        ("::1", "brackets"),
        ("[::1]", r"\[host\]:port"),
        ("[::1]80", r"\[host\]:port"),
        ("[::1:80", r"\[host\]:port"),
    ],
)
def test_split_host_port_errors(address: str, why: str) -> None:
    """A missing or bad port, or an unbracketed IPv6 host, raises InvalidNetworkAddressError."""
    with pytest.raises(InvalidNetworkAddressError, match=why):
        split_host_port(address)


def test_split_host_port_superscript_digit_port() -> None:
    """A port made of a non-ASCII 'digit' int() cannot parse raises InvalidNetworkAddressError."""
    with pytest.raises(InvalidNetworkAddressError):
        split_host_port("h:\u00b2")


def test_split_host_port_rejects_non_ascii_digits() -> None:
    """A port written with Arabic-Indic digits is not a port."""
    with pytest.raises(InvalidNetworkAddressError):
        split_host_port("h:\u0668\u0660")


# --- resolve_tcp_addr --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("network", "address", "expected"),
    [
        ("tcp", ":0", (unix.AF_INET, ("0.0.0.0", 0))),
        ("tcp", "", (unix.AF_INET, ("0.0.0.0", 0))),
        ("tcp4", ":8080", (unix.AF_INET, ("0.0.0.0", 8080))),
        ("tcp6", ":0", (unix.AF_INET6, ("::", 0, 0, 0))),
        ("tcp", "127.0.0.1:9000", (unix.AF_INET, ("127.0.0.1", 9000))),
        ("tcp", "[::1]:9000", (unix.AF_INET6, ("::1", 9000, 0, 0))),
        ("tcp6", "[::]:1", (unix.AF_INET6, ("::", 1, 0, 0))),
    ],
)
def test_resolve_tcp_addr(network: str, address: str, expected: tuple[int, object]) -> None:
    """Wildcards and literals resolve to the stdlib-shaped address of the right family."""
    assert resolve_tcp_addr(network, address) == expected


def test_resolve_tcp_addr_localhost() -> None:
    """A host name resolves through getaddrinfo to a loopback address with the given port."""
    family, addr = resolve_tcp_addr("tcp", "localhost:0")
    assert family in (unix.AF_INET, unix.AF_INET6)
    assert addr[0] in ("127.0.0.1", "::1")
    assert addr[1] == 0
    family4, addr4 = resolve_tcp_addr("tcp4", "localhost:81")
    assert (family4, addr4) == (unix.AF_INET, ("127.0.0.1", 81))


@pytest.mark.parametrize(
    ("network", "address"),
    [
        ("tcp4", "[::1]:0"),  # IPv6 literal on an IPv4-only network
        ("tcp6", "127.0.0.1:0"),  # IPv4 literal on an IPv6-only network
        ("tcp", "no-such-host.invalid:0"),
        ("tcp", "bad..name:0"),
        ("tcp", "127.0.0.1"),  # no port
    ],
)
def test_resolve_tcp_addr_errors(network: str, address: str) -> None:
    """Unresolvable hosts, family mismatches and missing ports raise InvalidNetworkAddressError."""
    with pytest.raises(InvalidNetworkAddressError):
        resolve_tcp_addr(network, address)


# --- tcp_socket / unix_socket ---------------------------------------------------------------
def test_tcp_socket_binds_and_listens(raw_fds: list[int]) -> None:
    """tcp_socket(":0") listens on the real ephemeral port; a stdlib client connects."""
    fd, addr, family = tcp_socket("tcp", "127.0.0.1:0", True)
    raw_fds.append(fd)
    assert family == unix.AF_INET
    assert addr[0] == "127.0.0.1"
    assert addr[1] != 0
    assert addr == unix.getsockname(fd)
    assert_listening_socket(fd)
    with socket.create_connection(addr, timeout=WAIT_S) as client:
        nfd = accept_one(fd)
        raw_fds.append(nfd)
        assert unix.getpeername(nfd) == client.getsockname()


def test_tcp_socket_applies_sock_opts(raw_fds: list[int]) -> None:
    """SockOpts are applied to the listening socket."""
    opts = [
        SockOpt(set_reuse_addr, 1),
        SockOpt(set_reuseport, 1),
        SockOpt(set_no_delay, 1),
        SockOpt(set_recv_buffer, 65536),
    ]
    fd, _, _ = tcp_socket("tcp4", "127.0.0.1:0", True, opts)
    raw_fds.append(fd)
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR) == 1
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT) == 1
    assert sockopt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY) == 1
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF) >= 65536


def test_tcp6_socket_is_v6only(raw_fds: list[int]) -> None:
    """tcp6 sets IPV6_V6ONLY: an IPv4 client cannot reach a tcp6 wildcard listener."""
    fd6, addr6, family6 = tcp_socket("tcp6", "[::]:0", True)
    raw_fds.append(fd6)
    assert family6 == unix.AF_INET6
    assert addr6[0] == "::" and addr6[1] != 0
    assert sockopt(fd6, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) == 1
    assert_listening_socket(fd6)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", addr6[1]), timeout=WAIT_S).close()
    with socket.create_connection(("::1", addr6[1]), timeout=WAIT_S):
        os.close(accept_one(fd6))


def test_tcp_socket_on_ipv6_wildcard_is_dual_stack(raw_fds: list[int]) -> None:
    """Plain tcp on "[::]" keeps the kernel's dual-stack default: IPv4 clients get through."""
    fd, addr, family = tcp_socket("tcp", "[::]:0", True)
    raw_fds.append(fd)
    assert family == unix.AF_INET6
    assert sockopt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) == 0
    with socket.create_connection(("127.0.0.1", addr[1]), timeout=WAIT_S):
        os.close(accept_one(fd))


def test_tcp_socket_bind_failure_closes_the_socket(raw_fds: list[int]) -> None:
    """A bind that fails (EADDRINUSE) raises OSError and leaves no fd behind."""
    fd, addr, _ = tcp_socket("tcp", "127.0.0.1:0", True)
    raw_fds.append(fd)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as info:
        tcp_socket("tcp", f"127.0.0.1:{addr[1]}", True)
    assert info.value.errno == errno.EADDRINUSE
    assert set(os.listdir("/proc/self/fd")) <= before


def test_tcp_socket_active_connects(raw_fds: list[int]) -> None:
    """passive=False starts a non-blocking connect that completes against a listener."""
    lfd, laddr, _ = tcp_socket("tcp", "127.0.0.1:0", True)
    raw_fds.append(lfd)
    cfd, caddr, family = tcp_socket("tcp", f"127.0.0.1:{laddr[1]}", False)
    raw_fds.append(cfd)
    assert family == unix.AF_INET
    assert os.get_blocking(cfd) is False
    _, writable, _ = select.select([], [cfd], [], WAIT_S)
    assert writable
    assert sockopt(cfd, unix.SOL_SOCKET, unix.SO_ERROR) == 0
    nfd = accept_one(lfd)
    raw_fds.append(nfd)
    assert unix.getpeername(nfd) == unix.getsockname(cfd) == caddr


def test_unix_socket_binds_and_listens(raw_fds: list[int], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """unix_socket binds a socket file at the path and listens; a stdlib client connects."""
    path = str(tmp_path / "s.sock")
    fd, addr, family = unix_socket(path, True)
    raw_fds.append(fd)
    assert family == unix.AF_UNIX
    assert addr == path
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert_listening_socket(fd)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(WAIT_S)
        client.connect(path)
        nfd = accept_one(fd)
        raw_fds.append(nfd)
        unix.write(nfd, b"hi")
        assert client.recv(2) == b"hi"


def test_max_listener_backlog() -> None:
    """The backlog is the kernel's somaxconn, clamped to 1..65535."""
    n = max_listener_backlog()
    assert 1 <= n <= 65535
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            expected = max(1, min(int(f.read()), 65535))
    except OSError:
        pytest.skip("no /proc/sys/net/core/somaxconn")
    assert n == expected


# --- set_* options ------------------------------------------------------------------------
def test_set_socket_options(raw_fds: list[int]) -> None:
    """Each set_* helper sets its option, as getsockopt reads it back."""
    fd = unix.socket(unix.AF_INET, unix.SOCK_STREAM)
    raw_fds.append(fd)
    set_no_delay(fd, 1)
    assert sockopt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY) == 1
    set_no_delay(fd, 0)
    assert sockopt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY) == 0
    set_reuse_addr(fd, 1)
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR) == 1
    set_reuseport(fd, 1)
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT) == 1
    set_send_buffer(fd, 32768)
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF) >= 32768
    set_recv_buffer(fd, 32768)
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF) >= 32768


def test_set_keepalive(raw_fds: list[int]) -> None:
    """set_keepalive turns SO_KEEPALIVE on with idle time and interval both ``secs``; < 1 s is refused."""
    fd = unix.socket(unix.AF_INET, unix.SOCK_STREAM)
    raw_fds.append(fd)
    set_keepalive(fd, 42)
    assert sockopt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE) == 1
    assert sockopt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE) == 42
    assert sockopt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL) == 42
    with pytest.raises(ValueError):
        set_keepalive(fd, 0)


def test_set_linger(raw_fds: list[int]) -> None:
    """set_linger(n) sets SO_LINGER on with n seconds; a negative value turns it off."""
    import struct

    fd = unix.socket(unix.AF_INET, unix.SOCK_STREAM)
    raw_fds.append(fd)
    set_linger(fd, 5)
    raw = unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, 8)
    assert struct.unpack("ii", raw) == (1, 5)
    set_linger(fd, -1)
    raw = unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, 8)
    assert struct.unpack("ii", raw)[0] == 0


# --- Listener ------------------------------------------------------------------------------------
def test_listener_tcp_lifecycle(listeners: list[Listener]) -> None:
    """normalize() binds and listens; close() closes the fd; close() again does nothing."""
    ln = Listener("tcp", "127.0.0.1:0", [])
    listeners.append(ln)
    assert ln.fd == -1
    ln.normalize()
    assert ln.fd >= 0
    assert ln.family == unix.AF_INET
    assert ln.addr[0] == "127.0.0.1" and ln.addr[1] != 0
    assert ln.network == "tcp" and ln.address == "127.0.0.1:0"
    assert_listening_socket(ln.fd)
    with socket.create_connection(ln.addr, timeout=WAIT_S):
        os.close(accept_one(ln.fd))
    fd = ln.fd
    ln.close()
    assert not is_open(fd)


def test_listener_close_twice_does_not_close_a_reused_fd(listeners: list[Listener], raw_fds: list[int]) -> None:
    """A second close() must not close whatever now has the listener's old fd number."""
    ln = Listener("tcp", "127.0.0.1:0", [])
    listeners.append(ln)
    ln.normalize()
    old = ln.fd
    ln.close()
    reused = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    raw_fds.append(reused)
    assert reused == old  # the lowest free number comes back
    ln.close()
    assert is_open(reused)


def test_listener_dup(listeners: list[Listener], raw_fds: list[int]) -> None:
    """dup() returns a new close-on-exec fd for the same listening socket."""
    ln = Listener("tcp", "127.0.0.1:0", [])
    listeners.append(ln)
    ln.normalize()
    d = ln.dup()
    raw_fds.append(d)
    assert d != ln.fd
    assert os.get_inheritable(d) is False
    assert unix.getsockname(d) == ln.addr
    ln.close()
    assert is_open(d)  # the dup is the caller's: closing the listener leaves it
    with socket.create_connection(ln.addr, timeout=WAIT_S):
        os.close(accept_one(d))


def test_listener_tcp6(listeners: list[Listener]) -> None:
    """A tcp6 listener is IPv6-only."""
    ln = Listener("tcp6", "[::1]:0", [])
    listeners.append(ln)
    ln.normalize()
    assert ln.family == unix.AF_INET6
    assert sockopt(ln.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) == 1


def test_listener_unix_lifecycle(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A unix listener creates its socket file, serves it, and close() removes the file."""
    path = str(tmp_path / "MiXeD.sock")
    ln = Listener("unix", path, [])
    listeners.append(ln)
    ln.normalize()
    assert ln.family == unix.AF_UNIX
    assert ln.addr == path
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(WAIT_S)
        client.connect(path)
        os.close(accept_one(ln.fd))
    ln.close()
    assert not os.path.lexists(path)
    ln.close()


def test_listener_unix_close_removes_path_only_once(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A second close() leaves alone a new socket that another listener bound at the same path."""
    path = str(tmp_path / "s.sock")
    first = Listener("unix", path, [])
    listeners.append(first)
    first.normalize()
    first.close()
    second = Listener("unix", path, [])
    listeners.append(second)
    second.normalize()
    first.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    second.close()
    assert not os.path.lexists(path)


def test_listener_unix_close_leaves_a_replaced_path(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """If the socket file was replaced by another file meanwhile, close() does not delete it."""
    path = tmp_path / "s.sock"
    ln = Listener("unix", str(path), [])
    listeners.append(ln)
    ln.normalize()
    path.unlink()
    path.write_text("not mine")
    ln.close()
    assert path.read_text() == "not mine"


def test_listener_unix_replaces_stale_socket(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A stale socket file left by a dead server is replaced, and the new one serves."""
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(path)  # nobody behind the stale file
    ln = Listener("unix", path, [])
    listeners.append(ln)
    ln.normalize()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(WAIT_S)
        client.connect(path)
        os.close(accept_one(ln.fd))


def test_listener_unix_leaves_regular_file_alone(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A regular file at the path is not removed: normalize() raises OSError and leaks no fd."""
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    ln = Listener("unix", str(path), [])
    listeners.append(ln)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as info:
        ln.normalize()
    assert info.value.errno == errno.EADDRINUSE
    assert path.read_text() == "keep me"
    assert set(os.listdir("/proc/self/fd")) <= before


def test_listener_unix_leaves_directory_alone(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A directory at the path (gnet would RemoveAll it) survives a failed normalize()."""
    d = tmp_path / "dir.sock"
    d.mkdir()
    (d / "child").write_text("x")
    ln = Listener("unix", str(d), [])
    listeners.append(ln)
    with pytest.raises(OSError):
        ln.normalize()
    assert (d / "child").read_text() == "x"


def test_listener_unix_abstract(listeners: list[Listener], tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An abstract name ("\\0name", or Go's "@name") binds without creating any file."""
    monkeypatch.chdir(tmp_path)
    name = f"reactor-test-{uuid.uuid4().hex}"
    for address in ("\0" + name, "@" + name + "-at"):
        ln = Listener("unix", address, [])
        listeners.append(ln)
        ln.normalize()
        assert isinstance(ln.addr, bytes) and ln.addr[:1] == b"\0"
        assert ln.addr[1:].decode().startswith(name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(WAIT_S)
            client.connect(ln.addr)
            os.close(accept_one(ln.fd))
        ln.close()
    assert os.listdir(tmp_path) == []


def test_init_listener_applies_options(listeners: list[Listener]) -> None:
    """init_listener turns Options into socket options on the listening socket."""
    ln = init_listener(
        "tcp",
        "127.0.0.1:0",
        Options(reuse_port=True, reuse_addr=True, tcp_no_delay=True, socket_recv_buffer=65536),
    )
    listeners.append(ln)
    assert sockopt(ln.fd, unix.SOL_SOCKET, unix.SO_REUSEPORT) == 1
    assert sockopt(ln.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR) == 1
    assert sockopt(ln.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY) == 1
    assert sockopt(ln.fd, unix.SOL_SOCKET, unix.SO_RCVBUF) >= 65536

    plain = init_listener("tcp", "127.0.0.1:0", Options(tcp_no_delay=False))
    listeners.append(plain)
    assert sockopt(plain.fd, unix.SOL_SOCKET, unix.SO_REUSEPORT) == 0
    assert sockopt(plain.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR) == 0
    assert sockopt(plain.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY) == 0


def test_init_listener_unix_never_sets_reuseport(listeners: list[Listener], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """reuse_port is not applied to AF_UNIX listeners."""
    ln = init_listener("unix", str(tmp_path / "u.sock"), Options(reuse_port=True))
    listeners.append(ln)
    assert sockopt(ln.fd, unix.SOL_SOCKET, unix.SO_REUSEPORT) == 0
