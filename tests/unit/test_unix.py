"""reactor.internal.unix against real kernel objects: no mocks.

Every test talks to the kernel through loopback TCP/UDP on 127.0.0.1 and ::1,
AF_UNIX sockets in ``tmp_path`` or the abstract namespace, eventfds and epoll
instances. Where the stdlib can do the same thing, its result is the
reference (address shapes, option values, exception classes).

Every fd a test opens is closed by a fixture (``fds`` for raw fds, ``stack``
for stdlib socket objects), so the autouse leak check in conftest.py holds.
Every wait is bounded by a short timeout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from netsupport import free_port
from reactor.internal import unix

WAIT_S = 1.0  # upper bound for any "this should be ready now" wait
NB_CLOEXEC = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC


# --- fixtures and helpers -------------------------------------------------------
class Fds:
    """Raw fds owned by one test; whatever is still open at the end is closed."""

    def __init__(self) -> None:
        self._open: list[int] = []

    def add(self, fd: int) -> int:
        assert isinstance(fd, int) and fd >= 0
        self._open.append(fd)
        return fd

    def close(self, fd: int) -> None:
        """Close ``fd`` now (through the wrapper under test)."""
        self._open.remove(fd)
        unix.close(fd)

    def close_all(self) -> None:
        while self._open:
            with contextlib.suppress(OSError):
                os.close(self._open.pop())


@pytest.fixture
def fds() -> Iterator[Fds]:
    owner = Fds()
    try:
        yield owner
    finally:
        owner.close_all()


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Closes the stdlib sockets (and anything else) a test enters into it."""
    with contextlib.ExitStack() as es:
        yield es


def wait_for(fd: int, events: int = select.POLLIN, timeout: float = WAIT_S) -> int:
    """Block (bounded, with the stdlib poller) until ``fd`` reports ``events``."""
    poller = select.poll()
    poller.register(fd, events)
    ready = poller.poll(timeout * 1000)
    assert ready, f"fd {fd} not ready for {events:#x} within {timeout} s"
    return ready[0][1]


def host_for(family: int) -> str:
    return "::1" if family == unix.AF_INET6 else "127.0.0.1"


def listener(fds: Fds, family: int = unix.AF_INET, flags: int = NB_CLOEXEC) -> tuple[int, object]:
    """A TCP listening socket made entirely with reactor.internal.unix; returns (fd, address)."""
    fd = fds.add(unix.socket(family, unix.SOCK_STREAM | flags))
    unix.bind(fd, family, (host_for(family), 0))
    unix.listen(fd, 16)
    return fd, unix.getsockname(fd)


def connected(
    fds: Fds, stack: contextlib.ExitStack, family: int = unix.AF_INET
) -> tuple[int, socket.socket]:
    """(server fd accepted by unix.accept4, stdlib client socket), on loopback."""
    lfd, addr = listener(fds, family)
    client = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
    client.settimeout(WAIT_S)
    client.connect(addr)
    wait_for(lfd)
    sfd, _ = unix.accept4(lfd)
    fds.add(sfd)
    return sfd, client


def socketpair(stack: contextlib.ExitStack, blocking: bool = False) -> tuple[socket.socket, socket.socket]:
    """A connected AF_UNIX stream pair (writes land in the peer's queue synchronously)."""
    a, b = socket.socketpair()
    stack.enter_context(a)
    stack.enter_context(b)
    a.setblocking(blocking)
    b.setblocking(blocking)
    return a, b


def assert_os_error(exc: BaseException, err: int, syscall: str) -> None:
    """The wrapper raised exactly what ``OSError(err, strerror)`` builds (the
    stdlib errno -> subclass mapping, no custom subclass), with the syscall
    named in a note."""
    assert type(exc) is type(OSError(err, os.strerror(err)))
    assert exc.errno == err, (errno.errorcode.get(exc.errno), errno.errorcode[err])
    assert exc.strerror == os.strerror(err)
    notes = getattr(exc, "__notes__", [])
    assert any(note.startswith(f"in syscall {syscall}(") for note in notes), notes


def raises_os_error(err: int, syscall: str, fn: Callable[..., object], *args: object) -> OSError:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert_os_error(info.value, err, syscall)
    return info.value


def flags_of(fd: int) -> tuple[bool, bool]:
    """(O_NONBLOCK set, FD_CLOEXEC set), read with the wrapper's fcntl."""
    nonblock = bool(unix.fcntl(fd, unix.F_GETFL) & unix.O_NONBLOCK)
    cloexec = bool(unix.fcntl(fd, unix.F_GETFD) & unix.FD_CLOEXEC)
    return nonblock, cloexec


def link_local_address() -> tuple[str, int] | None:
    """(fe80:: address, interface index) of some interface, if the host has one."""
    try:
        with open("/proc/net/if_inet6") as f:
            lines = f.read().split()
    except OSError:
        return None
    for i in range(0, len(lines), 6):
        raw, index, _, scope = lines[i : i + 4]
        if int(scope, 16) == 0x20 and raw.startswith("fe80"):  # IPV6_ADDR_LINKLOCAL
            packed = bytes.fromhex(raw)
            return socket.inet_ntop(socket.AF_INET6, packed), int(index, 16)
    return None


@contextlib.contextmanager
def interrupt_main_thread_after(
    delay: float, action: Callable[[], object] | None = None
) -> Iterator[list[int]]:
    """Deliver SIGUSR1 to this (main) thread after ``delay`` seconds, with a
    Python handler that returns normally, so a blocking syscall fails with
    EINTR. The handler records the signal in the yielded list, then runs
    ``action`` if given.

    A helper thread sends it with pthread_kill (thread-directed, so the signal
    cannot land on the helper instead); SIGALRM is left alone because
    pytest-timeout uses it.
    """
    assert threading.current_thread() is threading.main_thread()
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)
        if action is not None:
            action()

    old = signal.signal(signal.SIGUSR1, handler)
    main_id = threading.get_ident()
    timer = threading.Timer(delay, signal.pthread_kill, (main_id, signal.SIGUSR1))
    timer.start()
    try:
        yield calls
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, old)


# --- socket / listen / accept4 ---------------------------------------------------
@pytest.mark.parametrize("family", [unix.AF_INET, unix.AF_INET6], ids=["ipv4", "ipv6"])
def test_accept4_peer_address_and_default_flags(fds: Fds, stack, family: int) -> None:
    """A socket built with unix.socket/bind/listen is a real listener
    (SO_ACCEPTCONN), accept4 takes a stdlib client's connection, reports the
    client's own address in the stdlib shape, and the new fd is non-blocking
    and close-on-exec (the default SOCK_NONBLOCK|SOCK_CLOEXEC flags)."""
    lfd, addr = listener(fds, family)
    assert unix.getsockopt(lfd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN) == 1
    assert unix.getsockopt(lfd, unix.SOL_SOCKET, unix.SO_DOMAIN) == family
    assert unix.getsockopt(lfd, unix.SOL_SOCKET, unix.SO_TYPE) == unix.SOCK_STREAM
    client = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
    client.settimeout(WAIT_S)
    client.connect(addr)
    wait_for(lfd)
    sfd, peer = unix.accept4(lfd)
    fds.add(sfd)
    assert peer == client.getsockname()
    assert unix.getpeername(sfd) == client.getsockname()
    assert unix.getsockname(sfd) == client.getpeername()
    assert flags_of(sfd) == (True, True)


def test_accept4_flags_zero_sets_neither(fds: Fds, stack) -> None:
    """accept4(flags=0) leaves the new fd blocking and inheritable, even though
    the listening fd itself is non-blocking (flags are not inherited)."""
    lfd, addr = listener(fds)
    assert flags_of(lfd) == (True, True)
    client = stack.enter_context(socket.create_connection(addr, timeout=WAIT_S))
    wait_for(lfd)
    sfd, peer = unix.accept4(lfd, 0)
    fds.add(sfd)
    assert peer == client.getsockname()
    assert flags_of(sfd) == (False, False)
    assert os.get_blocking(sfd) and os.get_inheritable(sfd)  # the stdlib agrees


def test_accept4_unix_socket_unnamed_peer(fds: Fds, stack, tmp_path) -> None:
    """Over AF_UNIX, a client that never bound has no name: accept4 reports it
    as "", exactly as the stdlib's getsockname does for that client."""
    path = str(tmp_path / "l.sock")
    lfd = fds.add(unix.socket(unix.AF_UNIX, unix.SOCK_STREAM | NB_CLOEXEC))
    unix.bind(lfd, unix.AF_UNIX, path)
    unix.listen(lfd, 4)
    client = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    client.settimeout(WAIT_S)
    client.connect(path)
    wait_for(lfd)
    sfd, peer = unix.accept4(lfd)
    fds.add(sfd)
    assert peer == client.getsockname() == ""
    assert unix.getsockname(sfd) == path == client.getpeername()


# --- read / readinto / write / writev -------------------------------------------
def test_write_and_read_round_trip(fds: Fds, stack) -> None:
    """write hands bytes to the kernel and returns the count; read returns at
    most n bytes and leaves the rest queued for the next read."""
    sfd, client = connected(fds, stack)
    assert unix.write(sfd, b"hello") == 5
    assert client.recv(100) == b"hello"
    client.sendall(b"abcdefgh")
    wait_for(sfd)
    assert unix.read(sfd, 3) == b"abc"
    assert unix.read(sfd, 100) == b"defgh"


def test_readinto_fills_caller_buffer(stack) -> None:
    """readinto writes straight into a bytearray or a memoryview slice of one,
    honours n, and leaves the bytes after the count untouched."""
    a, b = socketpair(stack)
    b.sendall(b"0123456789")
    buf = bytearray(b"." * 8)
    assert unix.readinto(a.fileno(), buf, 3) == 3
    assert buf == b"012....."
    view = memoryview(buf)[4:]  # 4 bytes of room, at offset 4
    assert unix.readinto(a.fileno(), view) == 4
    assert buf == b"012.3456"
    assert unix.readinto(a.fileno(), buf, 100) == 3  # n above len(buf) is clipped
    assert buf == b"789.3456"
    b.sendall(b"!")
    frozen = b"read-only"
    with pytest.raises(BufferError):  # cffi's refusal (the stdlib raises TypeError)
        unix.readinto(a.fileno(), frozen)  # type: ignore[arg-type]
    assert frozen == b"read-only"
    assert unix.read(a.fileno(), 10) == b"!"  # refused before any read(2)


def test_writev_mixed_buffer_types(stack) -> None:
    """writev gathers bytes, bytearray and memoryview (a slice: offset kept)
    into one write, in order; an empty list writes nothing."""
    a, b = socketpair(stack)
    parts = [b"ab", bytearray(b"cd"), memoryview(b"XefX")[1:3], b"", memoryview(bytearray(b"g"))]
    assert unix.writev(a.fileno(), parts) == 7
    assert b.recv(100) == b"abcdefg"
    assert unix.writev(a.fileno(), []) == 0
    with pytest.raises(BlockingIOError):
        b.recv(100)


def test_writev_more_than_iov_max_is_a_short_write(stack) -> None:
    """With more than IOV_MAX buffers writev passes only the first IOV_MAX
    (the kernel would refuse more with EINVAL) and returns that short count."""
    a, b = socketpair(stack)
    buffers = [bytes([i % 251]) for i in range(unix.IOV_MAX + 5)]
    assert unix.writev(a.fileno(), buffers) == unix.IOV_MAX
    got = b""
    while len(got) < unix.IOV_MAX:
        wait_for(b.fileno())
        got += b.recv(unix.IOV_MAX)
    assert got == b"".join(buffers[: unix.IOV_MAX])
    with pytest.raises(BlockingIOError):
        b.recv(100)  # nothing beyond the first IOV_MAX buffers was sent


def test_large_write_is_partial_then_eagain(stack) -> None:
    """On a non-blocking socket a write larger than the send buffer takes
    only part of the data, and once the buffer is full write raises
    BlockingIOError (EAGAIN); the bytes taken are the payload's prefix."""
    a, b = socketpair(stack)
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)  # 8 MiB
    view = memoryview(payload)
    first = unix.write(a.fileno(), view)
    assert 0 < first < len(payload)
    total = first
    for _ in range(1000):  # a full buffer is reached within a few writes
        try:
            total += unix.write(a.fileno(), view[total:])
        except BlockingIOError as exc:
            assert_os_error(exc, errno.EAGAIN, "write")
            break
    else:
        pytest.fail("write never raised BlockingIOError")
    assert total < len(payload)
    received = bytearray()
    while len(received) < total:
        wait_for(b.fileno())
        received += b.recv(1 << 20)
    assert received == payload[:total]


def test_read_returns_empty_bytes_at_eof(fds: Fds, stack) -> None:
    """After the peer closes, read returns b"" (and readinto 0), every time."""
    sfd, client = connected(fds, stack)
    client.sendall(b"last")
    client.close()
    wait_for(sfd)
    assert unix.read(sfd, 100) == b"last"
    assert unix.read(sfd, 100) == b""
    assert unix.read(sfd, 100) == b""
    assert unix.readinto(sfd, bytearray(4)) == 0


# --- recvfrom / sendto --------------------------------------------------------
@pytest.mark.parametrize("family", [unix.AF_INET, unix.AF_INET6], ids=["ipv4", "ipv6"])
def test_udp_sendto_recvfrom(fds: Fds, stack, family: int) -> None:
    """Datagrams go both ways between a reactor.internal.unix UDP socket and a stdlib
    one; each side sees the other's address in the stdlib shape."""
    host = host_for(family)
    fd = fds.add(unix.socket(family, unix.SOCK_DGRAM | NB_CLOEXEC))
    unix.bind(fd, family, (host, 0))
    ours = unix.getsockname(fd)
    theirs = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
    theirs.settimeout(WAIT_S)
    theirs.bind((host, 0))

    assert unix.sendto(fd, b"ping", 0, family, theirs.getsockname()) == 4
    data, sender = theirs.recvfrom(100)
    assert (data, sender) == (b"ping", ours)

    theirs.sendto(b"pong!", ours)
    wait_for(fd)
    data, sender = unix.recvfrom(fd, 100)
    assert (data, sender) == (b"pong!", theirs.getsockname())
    assert type(sender) is tuple and len(sender) == (4 if family == unix.AF_INET6 else 2)


def test_recvfrom_truncated_datagram_is_clipped(fds: Fds, stack) -> None:
    """A datagram longer than n comes back clipped to its first n bytes and
    the rest of that datagram is discarded by the kernel. MSG_PEEK leaves the
    datagram queued. recvfrom_into with MSG_TRUNC reports the datagram's real
    length, which is how truncation is detected."""
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_DGRAM | NB_CLOEXEC))
    unix.bind(fd, unix.AF_INET, ("127.0.0.1", 0))
    addr = unix.getsockname(fd)
    sender = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sender.bind(("127.0.0.1", 0))
    payload = bytes(range(100))

    sender.sendto(payload, addr)
    wait_for(fd)
    assert unix.recvfrom(fd, 10, unix.MSG_PEEK) == (payload[:10], sender.getsockname())
    buf = bytearray(10)
    assert unix.recvfrom_into(fd, buf, unix.MSG_TRUNC) == (100, sender.getsockname())
    assert buf == payload[:10]
    with pytest.raises(BlockingIOError):
        unix.recvfrom(fd, 100)  # the other 90 bytes went with the datagram

    sender.sendto(payload, addr)
    wait_for(fd)
    assert unix.recvfrom(fd, 10) == (payload[:10], sender.getsockname())
    with pytest.raises(BlockingIOError):
        unix.recvfrom(fd, 100)

    sender.sendto(payload[:7], addr)
    wait_for(fd)
    buf = bytearray(10)
    assert unix.recvfrom_into(fd, buf, unix.MSG_TRUNC) == (7, sender.getsockname())


def test_recvfrom_on_stream_socket_has_no_sender(stack) -> None:
    """On a connected stream socket the kernel fills in no source address:
    recvfrom returns None for it, like the stdlib's recvfrom on AF_UNIX."""
    a, b = socketpair(stack)
    b.sendall(b"data")
    assert unix.recvfrom(a.fileno(), 100) == (b"data", None)


# --- address conversion ---------------------------------------------------------
def test_ipv4_bind_addresses_round_trip(fds: Fds, stack) -> None:
    """("127.0.0.1", port) and ("", 0) (INADDR_ANY) bind, and getsockname
    reports them as the stdlib does for the same socket kind."""
    for host, expected_host in (("127.0.0.1", "127.0.0.1"), ("", "0.0.0.0")):
        fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_DGRAM))
        unix.bind(fd, unix.AF_INET, (host, 0))
        ref = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        ref.bind((host, 0))
        got = unix.getsockname(fd)
        assert got[0] == ref.getsockname()[0] == expected_host
        assert isinstance(got[1], int) and got[1] > 0
        assert len(got) == len(ref.getsockname()) == 2
        # The port it reports is the port it is bound to: rebinding it fails.
        other = fds.add(unix.socket(unix.AF_INET, unix.SOCK_DGRAM))
        raises_os_error(errno.EADDRINUSE, "bind", unix.bind, other, unix.AF_INET, got)


def test_ipv6_bind_address_round_trip(fds: Fds, stack) -> None:
    """("::1", port, 0, 0) binds, and getsockname reports the stdlib's
    4-tuple (host, port, flowinfo, scope_id) for the same socket kind; a
    2-tuple and "::" (in6addr_any) are accepted too."""
    fd = fds.add(unix.socket(unix.AF_INET6, unix.SOCK_DGRAM))
    unix.bind(fd, unix.AF_INET6, ("::1", 0, 0, 0))
    ref = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    ref.bind(("::1", 0, 0, 0))
    got, want = unix.getsockname(fd), ref.getsockname()
    assert got[0] == want[0] == "::1"
    assert got[2:] == want[2:] == (0, 0)
    assert [type(x) for x in got] == [type(x) for x in want] == [str, int, int, int]
    assert got[1] > 0

    fd2 = fds.add(unix.socket(unix.AF_INET6, unix.SOCK_DGRAM))
    unix.bind(fd2, unix.AF_INET6, ("", 0))
    assert unix.getsockname(fd2)[0] == "::"


def test_ipv6_sockaddr_flowinfo_and_scope_encoding() -> None:
    """sockaddr stores port and flowinfo in network byte order and scope_id in
    host order (as the kernel expects), a "%ifname" suffix selects the
    scope id, and sockaddr_to_address decodes all four fields back."""
    lo = socket.if_nametoindex("lo")
    sa, length = unix.sockaddr(unix.AF_INET6, ("::1", 0x1234, 0xABCDE, 7))
    assert length == unix.ffi.sizeof("struct sockaddr_in6")
    raw = unix.ffi.buffer(sa, length)[:]
    assert raw[2:4] == b"\x12\x34"  # sin6_port, big-endian
    assert raw[4:8] == struct.pack("!I", 0xABCDE)  # sin6_flowinfo, big-endian
    assert raw[8:24] == socket.inet_pton(socket.AF_INET6, "::1")
    assert unix.sockaddr_to_address(sa, length) == ("::1", 0x1234, 0xABCDE, 7)

    sa, length = unix.sockaddr(unix.AF_INET6, ("::1%lo", 80))
    assert unix.sockaddr_to_address(sa, length) == ("::1", 80, 0, lo)
    with pytest.raises(OverflowError):
        unix.sockaddr(unix.AF_INET6, ("::1", 80, 0x100000, 0))


def test_sockaddr_pointer_owns_its_memory() -> None:
    """The pointer sockaddr returns keeps its bytes alive: with the allocator
    poisoning freed memory (PYTHONMALLOC=malloc_debug) every family still
    reads back intact and binds. (It used to be an ffi.cast of an ffi.new that
    was freed on return: bind failed with EAFNOSUPPORT under PYTHONMALLOC=malloc.)"""
    import subprocess
    import sys
    import tempfile

    code = """
import gc, os, sys
from reactor.internal import unix
path = os.path.join(sys.argv[1], "s")
for family, address in ((unix.AF_INET, ("127.0.0.1", 0)), (unix.AF_INET6, ("::1", 0)), (unix.AF_UNIX, path)):
    sa, length = unix.sockaddr(family, address)
    gc.collect()
    junk = [bytes(length) for _ in range(64)]  # reuse whatever was freed
    assert sa.sa_family == family, (family, sa.sa_family)
    fd = unix.socket(family, unix.SOCK_STREAM, 0)
    try:
        unix.bind(fd, family, address)
    except OSError as e:
        if family != unix.AF_INET6 or e.errno != 99:  # EADDRNOTAVAIL: no IPv6 loopback here
            raise
    finally:
        unix.close(fd)
print("ok")
"""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONMALLOC="malloc_debug")
        out = subprocess.run([sys.executable, "-c", code, tmp], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_ipv6_link_local_address_matches_stdlib(fds: Fds, stack) -> None:
    """A link-local (fe80::) bind reports the same tuple as the stdlib's
    getsockname for the same kind of socket."""
    found = link_local_address()
    if found is None:
        pytest.skip("no link-local IPv6 address on this host")
    host, index = found
    ref = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    ref.bind((host, 0, 0, index))
    fd = fds.add(unix.socket(unix.AF_INET6, unix.SOCK_DGRAM))
    unix.bind(fd, unix.AF_INET6, (host, 0, 0, index))
    got, want = unix.getsockname(fd), ref.getsockname()
    assert got[2:] == want[2:] == (0, index)
    assert got[0] == want[0]


def test_unix_filesystem_path_round_trip(fds: Fds, stack, tmp_path) -> None:
    """A str path binds (creating the socket file) and getsockname returns the
    same str, as the stdlib does; a bytes path is accepted too and reported
    as str, also like the stdlib; unix.connect reaches a stdlib listener by
    path."""
    path = str(tmp_path / "a.sock")
    fd = fds.add(unix.socket(unix.AF_UNIX, unix.SOCK_STREAM))
    unix.bind(fd, unix.AF_UNIX, path)
    assert os.path.exists(path)
    ref = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    ref_path = str(tmp_path / "b.sock")
    ref.bind(ref_path)
    assert unix.getsockname(fd) == path
    assert type(unix.getsockname(fd)) is type(ref.getsockname()) is str

    bpath = os.fsencode(tmp_path / "c.sock")
    fd2 = fds.add(unix.socket(unix.AF_UNIX, unix.SOCK_STREAM))
    unix.bind(fd2, unix.AF_UNIX, bpath)
    assert unix.getsockname(fd2) == os.fsdecode(bpath)

    ref.listen(1)
    client = fds.add(unix.socket(unix.AF_UNIX, unix.SOCK_STREAM))
    unix.connect(client, unix.AF_UNIX, ref_path)
    assert unix.getpeername(client) == ref_path


def test_unix_abstract_namespace_round_trip(fds: Fds, stack) -> None:
    """An abstract name (bytes, leading NUL) binds with its exact length: the
    kernel reports it back byte for byte as bytes (the stdlib's shape), and
    a stdlib client reaches it by that name (a stray trailing NUL in the
    encoded length would make it a different name)."""
    name = b"\0reactor-test-" + uuid.uuid4().hex.encode()
    fd = fds.add(unix.socket(unix.AF_UNIX, unix.SOCK_STREAM))
    unix.bind(fd, unix.AF_UNIX, name)
    unix.listen(fd, 1)
    assert unix.getsockname(fd) == name

    ref_name = b"\0reactor-test-" + uuid.uuid4().hex.encode()
    ref = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    ref.bind(ref_name)
    assert ref.getsockname() == ref_name  # same shape from the stdlib

    client = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    client.settimeout(WAIT_S)
    client.connect(name)
    assert client.getpeername() == name


def test_unix_path_length_limits() -> None:
    """sun_path holds 108 bytes: a filesystem path needs one of them for its
    NUL (107 usable), an abstract name may use all 108; longer raises
    ValueError before any syscall."""
    offset = unix.ffi.offsetof("struct sockaddr_un", "sun_path")
    assert unix.sockaddr(unix.AF_UNIX, "x" * 107)[1] == offset + 108
    with pytest.raises(ValueError, match="too long"):
        unix.sockaddr(unix.AF_UNIX, "x" * 108)
    assert unix.sockaddr(unix.AF_UNIX, b"\0" + b"x" * 107)[1] == offset + 108
    with pytest.raises(ValueError, match="too long"):
        unix.sockaddr(unix.AF_UNIX, b"\0" + b"x" * 108)


def test_unix_too_long_path_raises_value_error(fds: Fds) -> None:
    """bind with an over-long path raises ValueError, not an OSError."""
    fd = fds.add(unix.socket(unix.AF_UNIX, unix.SOCK_STREAM))
    with pytest.raises(ValueError, match="too long"):
        unix.bind(fd, unix.AF_UNIX, "/tmp/" + "x" * 200)


@pytest.mark.parametrize("port", [-1, 65536, 1 << 40])
def test_bad_port_raises_overflow_error(fds: Fds, port: int) -> None:
    """An out-of-range port raises OverflowError with the stdlib's wording,
    before any bind(2)."""
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_DGRAM))
    with pytest.raises(OverflowError, match="port must be 0-65535"):
        unix.bind(fd, unix.AF_INET, ("127.0.0.1", port))
    with pytest.raises(OverflowError, match="port must be 0-65535"):
        unix.bind(fd, unix.AF_INET6, ("::1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ref:
        with pytest.raises(OverflowError, match="port must be 0-65535"):
            ref.bind(("127.0.0.1", port))
    assert unix.getsockname(fd) == ("0.0.0.0", 0)  # nothing was bound


def test_malformed_addresses_raise_value_error() -> None:
    """Wrong address shapes are refused with ValueError (documented)."""
    with pytest.raises(ValueError):
        unix.sockaddr(unix.AF_INET, ("127.0.0.1",))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        unix.sockaddr(unix.AF_INET, ("127.0.0.1", "80"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        unix.sockaddr(unix.AF_INET, ("127.0.0.1", True))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        unix.sockaddr(unix.AF_UNIX, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        unix.sockaddr(unix.AF_UNSPEC, ("127.0.0.1", 80))


# --- setsockopt / getsockopt --------------------------------------------------------
def test_int_socket_options(fds: Fds, stack) -> None:
    """int options are set and read back; the stdlib sees the same values on
    the same fd (SO_RCVBUF comes back doubled, as socket(7) says)."""
    sfd, _ = connected(fds, stack)
    ref = stack.enter_context(socket.socket(fileno=os.dup(sfd)))
    for level, option in (
        (unix.SOL_SOCKET, unix.SO_REUSEADDR),
        (unix.IPPROTO_TCP, unix.TCP_NODELAY),
        (unix.SOL_SOCKET, unix.SO_KEEPALIVE),
    ):
        unix.setsockopt(sfd, level, option, 1)
        assert unix.getsockopt(sfd, level, option) == 1 == ref.getsockopt(level, option)
        unix.setsockopt(sfd, level, option, 0)
        assert unix.getsockopt(sfd, level, option) == 0 == ref.getsockopt(level, option)
    unix.setsockopt(sfd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 77)
    assert unix.getsockopt(sfd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE) == 77
    unix.setsockopt(sfd, unix.SOL_SOCKET, unix.SO_RCVBUF, 32768)
    assert unix.getsockopt(sfd, unix.SOL_SOCKET, unix.SO_RCVBUF) == 65536
    assert ref.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 65536
    assert unix.getsockopt(sfd, unix.SOL_SOCKET, unix.SO_ERROR) == 0


def test_bytes_socket_option_linger(fds: Fds) -> None:
    """A struct option (SO_LINGER) is set from bytes and read back as raw
    bytes; a larger buflen returns only the bytes the kernel filled in."""
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))
    assert unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, 8) == struct.pack("ii", 0, 0)
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, struct.pack("ii", 1, 0))
    assert unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, 8) == struct.pack("ii", 1, 0)
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, struct.pack("ii", 1, 5))
    assert unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, 64) == struct.pack("ii", 1, 5)
    with socket.socket(fileno=os.dup(fd)) as ref:
        assert ref.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == struct.pack("ii", 1, 5)


def test_sockopt_errors(fds: Fds) -> None:
    """Option errors come back as OSError with the syscall named: an unknown
    option is ENOPROTOOPT, a too-short struct value is EINVAL."""
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))
    raises_os_error(errno.ENOPROTOOPT, "getsockopt", unix.getsockopt, fd, unix.SOL_SOCKET, 9999)
    raises_os_error(errno.ENOPROTOOPT, "setsockopt", unix.setsockopt, fd, unix.SOL_SOCKET, 9999, 1)
    raises_os_error(
        errno.EINVAL, "setsockopt", unix.setsockopt, fd, unix.SOL_SOCKET, unix.SO_LINGER, b"\1"
    )


# --- shutdown -------------------------------------------------------------------------
def test_shutdown_wr_gives_peer_eof(fds: Fds, stack) -> None:
    """shutdown(SHUT_WR) sends FIN: the peer reads EOF, while the other
    direction still works; writing afterwards fails with EPIPE."""
    sfd, client = connected(fds, stack)
    unix.write(sfd, b"bye")
    unix.shutdown(sfd, unix.SHUT_WR)
    assert client.recv(100) == b"bye"
    assert client.recv(100) == b""
    client.sendall(b"still open")
    wait_for(sfd)
    assert unix.read(sfd, 100) == b"still open"
    raises_os_error(errno.EPIPE, "write", unix.write, sfd, b"x")  # SIGPIPE is ignored by Python


# --- fcntl / dup --------------------------------------------------------------------
def test_fcntl_flags_agree_with_stdlib(fds: Fds) -> None:
    """F_SETFL/F_SETFD change O_NONBLOCK and FD_CLOEXEC, and os.get_blocking /
    os.get_inheritable see the change."""
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))
    assert flags_of(fd) == (False, False)
    assert os.get_blocking(fd) and os.get_inheritable(fd)
    assert unix.fcntl(fd, unix.F_SETFL, unix.fcntl(fd, unix.F_GETFL) | unix.O_NONBLOCK) == 0
    assert unix.fcntl(fd, unix.F_SETFD, unix.FD_CLOEXEC) == 0
    assert flags_of(fd) == (True, True)
    assert not os.get_blocking(fd) and not os.get_inheritable(fd)
    unix.fcntl(fd, unix.F_SETFL, unix.fcntl(fd, unix.F_GETFL) & ~unix.O_NONBLOCK)
    assert flags_of(fd) == (False, True)


def test_dup_is_cloexec_and_same_socket(fds: Fds) -> None:
    """dup returns a new, close-on-exec fd for the same open socket: same
    address, shared file status flags, and it outlives the original fd."""
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))  # no SOCK_CLOEXEC
    unix.bind(fd, unix.AF_INET, ("127.0.0.1", 0))
    new = fds.add(unix.dup(fd))
    assert new != fd
    assert flags_of(fd) == (False, False)
    assert flags_of(new) == (False, True)
    assert unix.getsockname(new) == unix.getsockname(fd)
    unix.fcntl(new, unix.F_SETFL, unix.O_NONBLOCK)  # one open file description
    assert flags_of(fd)[0] is True
    assert os.fstat(new).st_ino == os.fstat(fd).st_ino  # the same socket inode
    name = unix.getsockname(fd)
    fds.close(fd)
    assert unix.getsockname(new) == name


# --- eventfd ------------------------------------------------------------------------
def test_eventfd_counts_and_resets(fds: Fds) -> None:
    """eventfd adds up writes (3 + 4), a read returns the sum and resets the
    counter, and an empty counter raises BlockingIOError (EAGAIN). The
    default flags make it non-blocking and close-on-exec."""
    efd = fds.add(unix.eventfd())
    assert flags_of(efd) == (True, True)
    unix.eventfd_write(efd, 3)
    unix.eventfd_write(efd, 4)
    assert unix.eventfd_read(efd) == 7
    with pytest.raises(BlockingIOError) as info:
        unix.eventfd_read(efd)
    assert_os_error(info.value, errno.EAGAIN, "eventfd_read")
    unix.eventfd_write(efd)  # default increment is 1
    assert unix.eventfd_read(efd) == 1


def test_eventfd_initial_value(fds: Fds) -> None:
    """The initial value is the counter's starting value."""
    efd = fds.add(unix.eventfd(5))
    assert unix.eventfd_read(efd) == 5


def test_eventfd_semaphore_mode(fds: Fds) -> None:
    """With EFD_SEMAPHORE each read returns 1 and decrements the counter."""
    efd = fds.add(unix.eventfd(0, unix.EFD_SEMAPHORE | unix.EFD_NONBLOCK | unix.EFD_CLOEXEC))
    unix.eventfd_write(efd, 3)
    assert [unix.eventfd_read(efd) for _ in range(3)] == [1, 1, 1]
    raises_os_error(errno.EAGAIN, "eventfd_read", unix.eventfd_read, efd)


def test_eventfd_overflow(fds: Fds) -> None:
    """The counter maxes out at 2**64 - 2: a write that would pass it raises
    BlockingIOError on a non-blocking eventfd; 2**64 - 1 itself is EINVAL."""
    efd = fds.add(unix.eventfd())
    unix.eventfd_write(efd, 1)
    raises_os_error(errno.EAGAIN, "eventfd_write", unix.eventfd_write, efd, 2**64 - 2)
    raises_os_error(errno.EINVAL, "eventfd_write", unix.eventfd_write, efd, 2**64 - 1)
    assert unix.eventfd_read(efd) == 1  # the refused writes changed nothing


# --- epoll ------------------------------------------------------------------------
@pytest.fixture
def epfd(fds: Fds) -> int:
    return fds.add(unix.epoll_create1())


def test_epoll_create1_is_cloexec(fds: Fds, epfd: int) -> None:
    """epoll_create1() defaults to EPOLL_CLOEXEC; flags=0 gives an inheritable fd."""
    assert flags_of(epfd)[1] is True
    plain = fds.add(unix.epoll_create1(0))
    assert flags_of(plain)[1] is False


def test_epoll_level_triggered_reports_until_drained(stack, epfd: int) -> None:
    """Level-triggered: a readable fd is reported by every epoll_wait while
    data is queued, and no more once it has been read."""
    a, b = socketpair(stack)
    events = unix.EpollEvents(8)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN)
    assert unix.epoll_wait(epfd, events, 0) == []
    b.sendall(b"data")
    for _ in range(3):
        assert unix.epoll_wait(epfd, events, 0) == [(a.fileno(), unix.EPOLLIN)]
    assert unix.read(a.fileno(), 100) == b"data"
    assert unix.epoll_wait(epfd, events, 0) == []


def test_epoll_edge_triggered_reports_once_per_arrival(stack, epfd: int) -> None:
    """EPOLLET: new data is reported once; unread data is not reported again
    until more data arrives."""
    a, b = socketpair(stack)
    events = unix.EpollEvents(8)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN | unix.EPOLLET)
    b.sendall(b"one")
    assert unix.epoll_wait(epfd, events, 0) == [(a.fileno(), unix.EPOLLIN)]
    assert unix.epoll_wait(epfd, events, 0) == []  # "one" is still unread
    b.sendall(b"two")
    assert unix.epoll_wait(epfd, events, 0) == [(a.fileno(), unix.EPOLLIN)]
    assert unix.epoll_wait(epfd, events, 0) == []
    assert unix.read(a.fileno(), 100) == b"onetwo"


def test_epoll_oneshot_needs_rearming(stack, epfd: int) -> None:
    """EPOLLONESHOT: reported once, then silent until EPOLL_CTL_MOD re-arms it."""
    a, b = socketpair(stack)
    events = unix.EpollEvents(8)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN | unix.EPOLLONESHOT)
    b.sendall(b"x")
    assert unix.epoll_wait(epfd, events, 0) == [(a.fileno(), unix.EPOLLIN)]
    b.sendall(b"y")
    assert unix.epoll_wait(epfd, events, 0) == []
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_MOD, a.fileno(), unix.EPOLLIN | unix.EPOLLONESHOT)
    assert unix.epoll_wait(epfd, events, 0) == [(a.fileno(), unix.EPOLLIN)]


def test_epoll_out_on_writable_socket(fds: Fds, stack, epfd: int) -> None:
    """A connected socket with room in its send buffer reports EPOLLOUT alone."""
    sfd, _ = connected(fds, stack)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, sfd, unix.EPOLLOUT)
    assert unix.epoll_wait(epfd, unix.EpollEvents(4), 0) == [(sfd, unix.EPOLLOUT)]


def test_epoll_ctl_mod_changes_interest(stack, epfd: int) -> None:
    """EPOLL_CTL_MOD replaces the interest set: an idle socket watched for
    EPOLLIN is silent, switched to EPOLLOUT it is reported, and back again."""
    a, _ = socketpair(stack)
    fd = a.fileno()
    events = unix.EpollEvents(4)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
    assert unix.epoll_wait(epfd, events, 0) == []
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_MOD, fd, unix.EPOLLOUT)
    assert unix.epoll_wait(epfd, events, 0) == [(fd, unix.EPOLLOUT)]
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_MOD, fd, unix.EPOLLIN | unix.EPOLLOUT)
    assert unix.epoll_wait(epfd, events, 0) == [(fd, unix.EPOLLOUT)]
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_MOD, fd, unix.EPOLLIN)
    assert unix.epoll_wait(epfd, events, 0) == []


def test_epoll_ctl_del_stops_reports(stack, epfd: int) -> None:
    """After EPOLL_CTL_DEL a ready fd is no longer reported; deleting it again
    is ENOENT (FileNotFoundError), modifying it too."""
    a, b = socketpair(stack)
    fd = a.fileno()
    events = unix.EpollEvents(4)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
    b.sendall(b"x")
    assert unix.epoll_wait(epfd, events, 0) == [(fd, unix.EPOLLIN)]
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_DEL, fd)
    assert unix.epoll_wait(epfd, events, 0) == []
    raises_os_error(errno.ENOENT, "epoll_ctl", unix.epoll_ctl, epfd, unix.EPOLL_CTL_DEL, fd)
    raises_os_error(
        errno.ENOENT, "epoll_ctl", unix.epoll_ctl, epfd, unix.EPOLL_CTL_MOD, fd, unix.EPOLLIN
    )


def test_epoll_peer_close_reports_rdhup_and_hup(stack, epfd: int) -> None:
    """When the peer of a stream socket closes, epoll reports EPOLLIN,
    EPOLLRDHUP and EPOLLHUP together."""
    a, b = socketpair(stack)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN | unix.EPOLLRDHUP)
    b.close()
    [(fd, mask)] = unix.epoll_wait(epfd, unix.EpollEvents(4), 0)
    assert fd == a.fileno()
    assert mask == unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP


def test_epoll_events_size_bounds_the_batch(stack, epfd: int) -> None:
    """epoll_wait returns at most EpollEvents.size ready fds per call; the
    remaining ones come in later calls. A size of 0 is refused."""
    pairs = [socketpair(stack) for _ in range(3)]
    for a, b in pairs:
        unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN)
        b.sendall(b"x")
    events = unix.EpollEvents(2)
    first = unix.epoll_wait(epfd, events, 0)
    second = unix.epoll_wait(epfd, events, 0)
    assert len(first) == 2 and len(second) == 2
    assert {fd for fd, _ in first + second} == {a.fileno() for a, _ in pairs}
    with pytest.raises(ValueError):
        unix.EpollEvents(0)


def test_epoll_wait_timeouts(epfd: int) -> None:
    """With nothing ready, timeout 0 returns [] at once and a 50 ms timeout
    returns [] after about 50 ms."""
    events = unix.EpollEvents(4)
    start = time.monotonic()
    assert unix.epoll_wait(epfd, events, 0) == []
    assert time.monotonic() - start < 0.05
    start = time.monotonic()
    assert unix.epoll_wait(epfd, events, 50) == []
    elapsed = time.monotonic() - start
    assert 0.04 <= elapsed < 1.0


def test_eventfd_from_another_thread_wakes_epoll_wait(fds: Fds, epfd: int) -> None:
    """An epoll_wait blocked (GIL released) with a 3 s timeout wakes as soon
    as another thread writes to a registered eventfd."""
    efd = fds.add(unix.eventfd())
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN)
    wrote = threading.Event()

    def wake() -> None:
        time.sleep(0.05)
        unix.eventfd_write(efd, 1)
        wrote.set()

    thread = threading.Thread(target=wake)
    start = time.monotonic()
    thread.start()
    try:
        ready = unix.epoll_wait(epfd, unix.EpollEvents(4), 3000)
        elapsed = time.monotonic() - start
    finally:
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert ready == [(efd, unix.EPOLLIN)]
    assert wrote.is_set()
    assert elapsed < 1.0
    assert unix.eventfd_read(efd) == 1


# --- EINTR ------------------------------------------------------------------------
def test_epoll_wait_returns_empty_on_eintr(epfd: int) -> None:
    """A signal during epoll_wait makes it return [] early (documented: EINTR
    is not retried, the caller recomputes its timeout), after the Python
    signal handler has run."""
    with interrupt_main_thread_after(0.05) as calls:
        start = time.monotonic()
        assert unix.epoll_wait(epfd, unix.EpollEvents(4), 3000) == []
        elapsed = time.monotonic() - start
        for _ in range(100):  # the handler runs at the next bytecode boundary
            if calls:
                break
            time.sleep(0.01)
    assert calls == [signal.SIGUSR1]
    assert elapsed < 1.0


def test_read_retries_on_eintr(stack) -> None:
    """A blocking read interrupted by a signal is retried (PEP 475 style):
    the Python handler runs between attempts, and here it sends the data
    the retried read then returns, instead of an InterruptedError."""
    a, b = socketpair(stack, blocking=True)
    # Bound the blocking read: without data it fails with EAGAIN after 2 s.
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 2, 0))
    with interrupt_main_thread_after(0.05, lambda: b.send(b"after EINTR")) as calls:
        assert unix.read(a.fileno(), 100) == b"after EINTR"
    assert calls == [signal.SIGUSR1]


# --- error paths ------------------------------------------------------------------
@pytest.fixture
def closed_fd(epfd: int) -> int:
    """An fd number that was just valid and is closed now. It depends on
    ``epfd`` so that the epoll fd is opened first and cannot reuse the number."""
    fd = unix.eventfd()
    unix.close(fd)
    with pytest.raises(OSError):
        os.fstat(fd)
    return fd


EBADF_CALLS = [
    pytest.param("close", lambda fd, epfd: unix.close(fd), id="close"),
    pytest.param("read", lambda fd, epfd: unix.read(fd, 10), id="read"),
    pytest.param("read", lambda fd, epfd: unix.readinto(fd, bytearray(10)), id="readinto"),
    pytest.param("write", lambda fd, epfd: unix.write(fd, b"x"), id="write"),
    pytest.param("writev", lambda fd, epfd: unix.writev(fd, [b"x"]), id="writev"),
    pytest.param(
        "epoll_ctl",
        lambda fd, epfd: unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN),
        id="epoll_ctl-closed-target",
    ),
    pytest.param(
        "epoll_ctl",
        lambda fd, epfd: unix.epoll_ctl(fd, unix.EPOLL_CTL_ADD, epfd, unix.EPOLLIN),
        id="epoll_ctl-closed-epfd",
    ),
    pytest.param("epoll_wait", lambda fd, epfd: unix.epoll_wait(fd, unix.EpollEvents(1), 0), id="epoll_wait"),
    pytest.param("fcntl", lambda fd, epfd: unix.fcntl(fd, unix.F_GETFL), id="fcntl"),
    pytest.param("fcntl", lambda fd, epfd: unix.dup(fd), id="dup"),
    pytest.param("getsockname", lambda fd, epfd: unix.getsockname(fd), id="getsockname"),
    pytest.param(
        "getsockopt",
        lambda fd, epfd: unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_ERROR),
        id="getsockopt",
    ),
    pytest.param("shutdown", lambda fd, epfd: unix.shutdown(fd, unix.SHUT_RDWR), id="shutdown"),
    pytest.param("eventfd_read", lambda fd, epfd: unix.eventfd_read(fd), id="eventfd_read"),
    pytest.param("eventfd_write", lambda fd, epfd: unix.eventfd_write(fd, 1), id="eventfd_write"),
]


@pytest.mark.parametrize("syscall, call", EBADF_CALLS)
def test_ebadf_on_closed_fd(closed_fd: int, epfd: int, syscall: str, call) -> None:
    """Any call on a closed fd fails with EBADF as a plain OSError (EBADF
    has no stdlib subclass), naming the syscall."""
    with pytest.raises(OSError) as info:
        call(closed_fd, epfd)
    assert type(info.value) is OSError
    assert_os_error(info.value, errno.EBADF, syscall)


def test_eagain_on_empty_backlog_and_empty_socket(fds: Fds, stack) -> None:
    """Non-blocking accept4 with an empty backlog and read/recvfrom on an
    empty socket raise BlockingIOError (EAGAIN), as the stdlib does."""
    lfd, _ = listener(fds)
    err = raises_os_error(errno.EAGAIN, "accept4", unix.accept4, lfd)
    assert type(err) is BlockingIOError
    with socket.socket(fileno=os.dup(lfd)) as ref, pytest.raises(BlockingIOError):
        ref.accept()  # the stdlib's verdict on the same listener

    a, _ = socketpair(stack)
    raises_os_error(errno.EAGAIN, "read", unix.read, a.fileno(), 10)
    raises_os_error(errno.EAGAIN, "read", unix.readinto, a.fileno(), bytearray(10))

    udp = fds.add(unix.socket(unix.AF_INET, unix.SOCK_DGRAM | NB_CLOEXEC))
    unix.bind(udp, unix.AF_INET, ("127.0.0.1", 0))
    raises_os_error(errno.EAGAIN, "recvfrom", unix.recvfrom, udp, 10)


def test_eaddrinuse_on_second_bind(fds: Fds) -> None:
    """Binding the port of a listening socket again, without SO_REUSEADDR
    or SO_REUSEPORT, fails with EADDRINUSE (a plain OSError)."""
    _, addr = listener(fds)
    other = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))
    err = raises_os_error(errno.EADDRINUSE, "bind", unix.bind, other, unix.AF_INET, addr)
    assert type(err) is OSError


def test_econnrefused_on_closed_port(fds: Fds) -> None:
    """A blocking connect to a loopback port nobody listens on fails with
    ConnectionRefusedError (ECONNREFUSED), like the stdlib's connect."""
    port = free_port()  # free a moment ago, nothing listening now
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))
    err = raises_os_error(
        errno.ECONNREFUSED, "connect", unix.connect, fd, unix.AF_INET, ("127.0.0.1", port)
    )
    assert type(err) is ConnectionRefusedError
    with socket.socket() as ref, pytest.raises(ConnectionRefusedError):
        ref.connect(("127.0.0.1", port))


def test_nonblocking_connect_einprogress_then_completes(fds: Fds, epfd: int) -> None:
    """A non-blocking TCP connect raises BlockingIOError with errno
    EINPROGRESS; the socket then reports EPOLLOUT, SO_ERROR is 0 and the
    peer is the listener."""
    _, addr = listener(fds)
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM | NB_CLOEXEC))
    err = raises_os_error(errno.EINPROGRESS, "connect", unix.connect, fd, unix.AF_INET, addr)
    assert type(err) is BlockingIOError
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, fd, unix.EPOLLOUT)
    assert unix.epoll_wait(epfd, unix.EpollEvents(4), int(WAIT_S * 1000)) == [(fd, unix.EPOLLOUT)]
    assert unix.getsockopt(fd, unix.SOL_SOCKET, unix.SO_ERROR) == 0
    assert unix.getpeername(fd) == addr


def test_einval_on_bad_flags() -> None:
    """Unknown flag bits are refused by the kernel with EINVAL (plain OSError)."""
    for syscall, call in (
        ("epoll_create1", lambda: unix.epoll_create1(12345678)),
        ("eventfd", lambda: unix.eventfd(0, 12345678)),
        ("socket", lambda: unix.socket(unix.AF_INET, unix.SOCK_STREAM | 0x40000000)),
    ):
        err = raises_os_error(errno.EINVAL, syscall, call)
        assert type(err) is OSError


def test_epoll_ctl_add_twice_is_eexist(stack, epfd: int) -> None:
    """Adding an fd that is already registered fails with FileExistsError (EEXIST)."""
    a, _ = socketpair(stack)
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN)
    err = raises_os_error(
        errno.EEXIST, "epoll_ctl", unix.epoll_ctl, epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN
    )
    assert type(err) is FileExistsError


def test_other_mapped_errors(fds: Fds) -> None:
    """More errno mappings: an unsupported family is EAFNOSUPPORT, the peer
    of an unconnected socket is ENOTCONN, listen on a UDP socket is
    EOPNOTSUPP; each raises what OSError(errno, msg) constructs."""
    raises_os_error(errno.EAFNOSUPPORT, "socket", unix.socket, 12345, unix.SOCK_STREAM)
    fd = fds.add(unix.socket(unix.AF_INET, unix.SOCK_STREAM))
    raises_os_error(errno.ENOTCONN, "getpeername", unix.getpeername, fd)
    raises_os_error(errno.ENOTCONN, "shutdown", unix.shutdown, fd, unix.SHUT_WR)
    udp = fds.add(unix.socket(unix.AF_INET, unix.SOCK_DGRAM))
    raises_os_error(errno.EOPNOTSUPP, "listen", unix.listen, udp, 1)


def test_connection_reset_after_linger_zero_close(fds: Fds, stack) -> None:
    """A peer that sends, then closes with SO_LINGER {1, 0}, resets the
    connection (RST): Linux still delivers the queued data first, then the
    next read raises ConnectionResetError (ECONNRESET) once, and after the
    error has been reported reads return EOF."""
    sfd, client = connected(fds, stack)
    client.sendall(b"data")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    wait_for(sfd, select.POLLHUP)  # the RST has arrived
    assert unix.read(sfd, 100) == b"data"
    err = raises_os_error(errno.ECONNRESET, "read", unix.read, sfd, 100)
    assert type(err) is ConnectionResetError
    assert unix.read(sfd, 100) == b""
