"""Client-side helpers and host facts shared by the test files (and the reliability suite).

Plain functions, no fixtures (those are in conftest.py). Test files import
them by module name: ``from netsupport import recv_exact``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any


@functools.cache
def has_ipv6_loopback() -> bool:
    """True if ``::1`` can be bound (containers and some CI hosts have IPv6 disabled)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- ports and fds ------------------------------------------------------------------------
def free_port() -> int:
    """A 127.0.0.1 TCP port that was free a moment ago and has nothing listening now (bind :0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_fds() -> dict[int, str]:
    """The fds this process has open right now, each with what it points to (the listing's own fd excluded)."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the directory handle os.listdir used, already closed
    return out


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, sorted (every thread's ``children`` list in /proc)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(p) for p in f.read().split()]
    return sorted(out)


# --- waiting ------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> bool:
    """Poll ``predicate`` for up to ``timeout`` s; its last answer, as a bool (the caller asserts it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


# --- stream clients -----------------------------------------------------------------------
def connect_nodelay(addr: Any, timeout: float) -> socket.socket:
    """A TCP client with TCP_NODELAY (each small send leaves at once) and a timeout."""
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock: socket.socket, n: int, timeout: float) -> bytes:
    """Exactly ``n`` bytes; raises ConnectionError on EOF, AssertionError past ``timeout`` seconds.

    Each recv is bounded by the socket's own timeout as well.
    """
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        assert time.monotonic() < deadline, f"received {len(buf)} of {n} bytes in {timeout:g} s"
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes: {bytes(buf[:64])!r}")
        buf += chunk
    return bytes(buf)


def recv_up_to(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes, or fewer if the peer closes first (the caller's comparison shows the shortfall)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock: socket.socket) -> bytes:
    """Everything until the peer closes (a recv timeout or a reset propagates)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_until_closed(sock: socket.socket, limit: int) -> tuple[bytes, str]:
    """Everything until the peer closes: ``(data, "eof" | "reset")``.

    A recv timeout propagates (the connection was *not* closed); so does more
    than ``limit`` bytes.
    """
    buf = bytearray()
    while len(buf) <= limit:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
    raise AssertionError(f"more than {limit} bytes before the close")


# --- subprocesses -------------------------------------------------------------------------
@contextlib.contextmanager
def process_with_stderr(args: list[str], **popen_kw: Any) -> Iterator[subprocess.Popen]:
    """``args`` as a subprocess with stderr piped (where the examples say "listening on …").

    At exit it is killed if still running, reaped, and its stderr pipe closed.
    """
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, **popen_kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def listening_line(proc: subprocess.Popen) -> str:
    """The first line the process writes to stderr, which must announce that it listens."""
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening" in line, f"unexpected first line {line!r}"
    return line
