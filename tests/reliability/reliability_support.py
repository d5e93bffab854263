"""Plain helpers shared by the reliability suite (fixtures live in conftest.py).

Everything here is bounded: every socket gets a timeout, every wait has a
deadline, every thread started here is joined by whoever started it. Checks
made on loop threads are *recorded* (by :class:`Recorder`) and asserted by the
test thread, so a failing check is never mistaken for a server error.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import netsupport  # tests/netsupport.py: tests/ is on sys.path (tests/conftest.py's folder)
import reactor
from reactor import Action

#: RELIABILITY_FULL=1 runs the full-size variants (see docs/reliability.md).
FULL = os.environ.get("RELIABILITY_FULL", "") not in ("", "0")

SOCK_TIMEOUT = 10.0  # no single recv/send may block longer than this
WAIT = 10.0  # upper bound for "this should happen soon"

Address = tuple | str


# --- waiting -------------------------------------------------------------------------------
def wait_until(pred: Callable[[], Any], timeout: float = WAIT, what: str = "the condition",
               interval: float = 0.005) -> None:
    """Poll ``pred`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- sockets -------------------------------------------------------------------------------
def connect(addr: Address, *, rcvbuf: int = 0, sndbuf: int = 0, timeout: float = SOCK_TIMEOUT,
            bind_port: bool = False) -> socket.socket:
    """A blocking client socket with a timeout, connected to a TCP ``(host, port)`` or a Unix path.

    ``rcvbuf``/``sndbuf`` are set before connecting (so the window is small
    from the handshake on).
    """
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if bind_port and family == socket.AF_INET:
            s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


def set_linger0(sock: socket.socket) -> None:
    """SO_LINGER {on, 0}: ``close()`` then sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reset(sock: socket.socket) -> None:
    """Abort the connection: RST, not FIN."""
    set_linger0(sock)
    sock.close()


#: Exactly ``n`` bytes; raises ConnectionError on EOF, AssertionError past ``timeout`` (default 40 s).
recv_exact = functools.partial(netsupport.recv_exact, timeout=4 * SOCK_TIMEOUT)
#: Everything until the peer closes: ``(data, "eof" | "reset")``; at most ``limit`` (default 64 MiB).
read_until_closed = functools.partial(netsupport.read_until_closed, limit=64 << 20)


def echo_round_trip(sock: socket.socket, data: bytes = b"ping\n") -> None:
    """Send ``data`` and expect it back byte for byte."""
    sock.sendall(data)
    got = recv_exact(sock, len(data))
    assert got == data, f"echo mismatch: sent {data[:40]!r}, got {got[:40]!r}"


def listening_on(port: int) -> bool:
    """Some socket on this host is in LISTEN state on TCP ``port`` (from /proc/net/tcp and tcp6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state = fields[1], fields[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def port_is_free(port: int) -> bool:
    """Nothing listens on TCP ``port`` any more: no LISTEN socket, and a connect is refused.

    (Connections the server closed first stay in TIME_WAIT for a while: that
    is the kernel's, not something the process left behind.)
    """
    if listening_on(port):
        return False
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


# --- deterministic payloads ----------------------------------------------------------------
BLOCK = 64 * 1024


class PRNGStream:
    """A client's byte stream, from a seeded PRNG in 64 KiB blocks, read in any slice sizes.

    The sender and the verifier each own one with the same seed, so neither
    ever holds more than one block (16 MiB per client is never materialised).
    """

    __slots__ = ("_rng", "_left", "_block", "_off")

    def __init__(self, seed: int, total: int) -> None:
        self._rng = random.Random(seed)
        self._left = total
        self._block = b""
        self._off = 0

    def peek(self, n: int) -> memoryview:
        """Up to ``n`` next bytes (fewer at a block edge); empty at the end."""
        if self._off == len(self._block):
            if not self._left:
                return memoryview(b"")
            k = min(BLOCK, self._left)
            self._block = self._rng.randbytes(k)
            self._left -= k
            self._off = 0
        return memoryview(self._block)[self._off : self._off + n]

    def advance(self, n: int) -> None:
        self._off += n


def pattern(n: int, salt: int = 0) -> bytes:
    """``n`` deterministic bytes whose content depends on the offset (a shifted or cut stream shows)."""
    unit = bytes((i * 7 + salt) & 0xFF for i in range(251))  # 251: prime, so no 2^k alignment hides a shift
    reps = -(-n // len(unit))
    return (unit * reps)[:n]


# --- process facts -------------------------------------------------------------------------
def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size from /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own fd


def settled_rss() -> int:
    """RSS after a full collection (what is still referenced, not garbage)."""
    gc.collect()
    return rss_bytes()


# --- server side ---------------------------------------------------------------------------
class Recorder(reactor.EventServer):
    """Records opens and closes (with the error ``on_closed`` got), thread-safely.

    Subclasses override ``react``; the default echoes.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened: list[reactor.Conn] = []
        self.closed: list[tuple[reactor.Conn, BaseException | None]] = []
        self.opened_at: dict[int, float] = {}
        self.closed_at: dict[int, float] = {}
        self.server: reactor.Server | None = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        return Action.NONE

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.opened.append(c)
            self.opened_at[id(c)] = time.monotonic()
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        with self.lock:
            self.closed.append((c, err))
            self.closed_at[id(c)] = time.monotonic()
        return Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE

    # --- test-thread side ---
    def n_opened(self) -> int:
        with self.lock:
            return len(self.opened)

    def n_closed(self) -> int:
        with self.lock:
            return len(self.closed)

    def wait_opened(self, n: int, timeout: float = WAIT) -> list[reactor.Conn]:
        wait_until(lambda: self.n_opened() >= n, timeout, f"{n} on_opened")
        with self.lock:
            return list(self.opened)

    def wait_closed(self, n: int, timeout: float = WAIT) -> list[tuple[reactor.Conn, BaseException | None]]:
        wait_until(lambda: self.n_closed() >= n, timeout, f"{n} on_closed")
        with self.lock:
            return list(self.closed)

    def error_of(self, c: reactor.Conn, timeout: float = WAIT) -> BaseException | None:
        """The error ``c`` was closed with (waits for its ``on_closed``)."""
        def done() -> bool:
            with self.lock:
                return any(cc is c for cc, _ in self.closed)

        wait_until(done, timeout, f"on_closed of {c!r}")
        with self.lock:
            return next(e for cc, e in self.closed if cc is c)

    def lifetime(self, c: reactor.Conn) -> float:
        with self.lock:
            return self.closed_at[id(c)] - self.opened_at[id(c)]

    def conn_for(self, sock: socket.socket, timeout: float = WAIT) -> reactor.Conn:
        """The server-side Conn of a client TCP socket (matched by the client's port)."""
        port = sock.getsockname()[1]

        def find() -> reactor.Conn | None:
            with self.lock:
                for c in self.opened:
                    ra = c.remote_addr
                    if isinstance(ra, tuple) and ra[1] == port:
                        return c
            return None

        wait_until(lambda: find() is not None, timeout, f"the server side of client port {port}")
        found = find()
        assert found is not None
        return found


class ServerThread:
    """``reactor.serve`` on a thread, without the fixture's bookkeeping (for serve/stop cycles).

    Nothing keeps a reference to a stopped server, so cycling many of them
    measures the engine, not the test's own growth.
    """

    def __init__(self, handler: Any, proto_addr: str = "tcp://127.0.0.1:0", **opts: Any) -> None:
        self.handler = handler
        self.proto_addr = proto_addr
        self.opts = opts
        self.server: reactor.Server | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rel-serve", daemon=True)

    def _run(self) -> None:
        handler = self.handler
        original = handler.on_init_complete

        def on_init_complete(server: reactor.Server) -> Action:
            self.server = server
            self._ready.set()
            return original(server)

        handler.on_init_complete = on_init_complete
        try:
            reactor.serve(handler, self.proto_addr, **self.opts)
        except BaseException as e:
            self.error = e
        finally:
            handler.__dict__.pop("on_init_complete", None)  # no cycle handler -> closure -> self
            self._ready.set()

    def start(self, timeout: float = WAIT) -> ServerThread:
        self.thread.start()
        assert self._ready.wait(timeout), "server did not become ready"
        if self.error is not None:
            self.thread.join(timeout)
            raise self.error
        return self

    @property
    def addr(self) -> Any:
        assert self.server is not None
        return self.server.addr

    def join(self, timeout: float = WAIT) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"serve() did not return within {timeout:g} s"
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = WAIT) -> None:
        if self.thread.is_alive() and self.server is not None:
            self.server.stop()
        self.join(timeout)


@contextmanager
def serving(handler: Any, proto_addr: str = "tcp://127.0.0.1:0", **opts: Any) -> Iterator[ServerThread]:
    st = ServerThread(handler, proto_addr, **opts).start()
    try:
        yield st
    finally:
        st.stop()


class Sampler:
    """Samples ``fn()`` every ``interval`` seconds on a thread and keeps the maximum (use as a context manager)."""

    def __init__(self, fn: Callable[[], int], interval: float = 0.002) -> None:
        self.fn = fn
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rel-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self.fn()
            self.samples += 1
            self.peak = max(self.peak, v)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(WAIT)


class Worker:
    """A thread running ``fn()``; ``result()`` joins it and re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any], name: str = "rel-worker") -> None:
        self._fn = fn
        self._value: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as e:
            self._error = e

    def result(self, timeout: float = 4 * WAIT) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not finish within {timeout:g} s"
        if self._error is not None:
            raise self._error
        return self._value


def reactor_records(caplog: Any, level: int = logging.ERROR) -> list[logging.LogRecord]:
    """Records of the "reactor" logger at ``level`` or above."""
    return [r for r in caplog.records if r.levelno >= level and r.name.startswith("reactor")]
