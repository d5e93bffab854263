"""gnet's scenario tests (gnet.md §6.1), one test each, plus reactor's own contracts.

Wake, tick, shutdown from tick / react / on_opened, close from react /
on_opened / another thread, ``reactor.stop``, closed wake-up, bad addresses,
options, connection counting, exceptions in callbacks, loop-only methods,
write_buffer_cap back-pressure, Unix socket files, reuse_port listeners.

Real sockets on 127.0.0.1 and in tmp_path, no mocks. Every client socket has a
timeout, every wait is bounded, every thread a test starts is joined, and the
autouse ``no_leaks`` fixture checks fds and threads after each test. Checks
made inside callbacks (on loop threads) are recorded and asserted by the test
thread, so a failed check there cannot be mistaken for a server error.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import socket
import stat
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Optional

import pytest

import reactor
from reactor import Action, LoadBalancing

import netsupport
from netsupport import free_port

SOCK_TIMEOUT = 5.0
WAIT = 5.0  # upper bound for "this should happen soon"


# --- helpers ---------------------------------------------------------------------------------
#: Exactly n bytes (each recv bounded by the socket timeout, the whole read by four); raises on EOF.
recv_exact = functools.partial(netsupport.recv_exact, timeout=4 * SOCK_TIMEOUT)
#: Everything until the server closes: (data, "eof" | "reset"); at most 1 MiB.
read_until_closed = functools.partial(netsupport.read_until_closed, limit=1 << 20)


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("reactor")]


def loop_name() -> str:
    return threading.current_thread().name


class Clients:
    """Client sockets owned by one test; all closed at teardown."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def connect(self, addr: Any, *, rcvbuf: int = 0, sndbuf: int = 0) -> socket.socket:
        family = socket.AF_UNIX if isinstance(addr, (str, os.PathLike)) else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        self.socks.append(s)
        s.settimeout(SOCK_TIMEOUT)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.connect(addr if family == socket.AF_INET else os.fspath(addr))
        return s

    def close_all(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    c = Clients()
    yield c
    c.close_all()


class Job:
    """A function run on a thread; ``value``/``error`` once joined."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], name: str) -> None:
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), name=name, daemon=True)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.value = fn(*args)
        except BaseException as e:
            self.error = e

    def join(self, timeout: float = WAIT) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not finish"
        return self.value

    def result(self, timeout: float = WAIT) -> Any:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.value


class Jobs:
    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._lock = threading.Lock()

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str = "test-job") -> Job:
        job = Job(fn, args, name)
        with self._lock:
            self.jobs.append(job)
        job.thread.start()
        return job

    def join_all(self) -> None:
        for job in list(self.jobs):
            job.thread.join(WAIT)
        hung = [j.thread.name for j in self.jobs if j.thread.is_alive()]
        assert not hung, f"threads did not finish: {hung}"


@pytest.fixture
def jobs() -> Iterator[Jobs]:
    j = Jobs()
    yield j
    j.join_all()


class Recorder(reactor.EventServer):
    """Records opens and closes (under one condition variable); echoes by default.

    Subclasses change behaviour through ``after_open`` / ``after_close`` /
    ``react``; checks made on loop threads go to ``problems``.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.opened: list[reactor.Conn] = []
        self.closed: list[tuple[reactor.Conn, Optional[BaseException]]] = []
        self.shutdowns: list[int] = []  # len(self.closed) when on_shutdown ran
        self.problems: list[str] = []
        self.server: Optional[reactor.Server] = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        return Action.NONE

    def on_opened(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        with self.cond:
            self.opened.append(c)
            self.cond.notify_all()
        return self.after_open(c)

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: Optional[BaseException]) -> Action:
        with self.cond:
            self.closed.append((c, err))
            self.cond.notify_all()
        return self.after_close(c, err)

    def after_close(self, c: reactor.Conn, err: Optional[BaseException]) -> Action:
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        with self.cond:
            self.shutdowns.append(len(self.closed))
            self.cond.notify_all()

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return frame, Action.NONE

    def problem(self, msg: str) -> None:
        with self.cond:
            self.problems.append(msg)

    def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"timed out waiting for {what}"

    def wait_opened(self, n: int) -> None:
        self.wait_until(lambda: len(self.opened) >= n, f"{n} opened connection(s)")

    def wait_closed(self, n: int) -> None:
        self.wait_until(lambda: len(self.closed) >= n, f"{n} closed connection(s)")


def echo_round_trip(sock: socket.socket, data: bytes = b"ping") -> None:
    sock.sendall(data)
    assert recv_exact(sock, len(data)) == data


# --- wake (gnet: TestWakeConn) -----------------------------------------------------------------
class WakeServer(Recorder):
    def __init__(self, via_tick: bool) -> None:
        super().__init__()
        self.via_tick = via_tick
        self.wakes_wanted = 0  # tick: how many wakes still to send
        self.reacts: list[tuple[Optional[bytes], str]] = []

    def tick(self) -> tuple[float, Action]:
        with self.cond:
            c = self.opened[0] if self.opened else None
            send = c is not None and self.wakes_wanted > 0
            if send:
                self.wakes_wanted -= 1
        if send:
            assert c is not None
            c.wake()
        return 0.01, Action.NONE

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Any]:
        with self.cond:
            self.reacts.append((frame, loop_name()))
        if frame is None:
            return b"Waking up.", -1  # an invalid action: must be treated as NONE
        return None, Action.NONE


@pytest.mark.parametrize("via_tick", [False, True], ids=["wake-from-test-thread", "wake-from-tick"])
def test_wake(via_tick: bool, start_server: Any, clients: Clients) -> None:
    h = WakeServer(via_tick)
    bg = start_server(h, ticker=via_tick, num_event_loop=2)
    sock = clients.connect(bg.addr)
    h.wait_opened(1)
    c = h.opened[0]
    for _ in range(2):
        # Twice: the invalid action -1 must not have closed the connection.
        if via_tick:
            with h.cond:
                h.wakes_wanted = 1
        else:
            c.wake()
        assert recv_exact(sock, 10) == b"Waking up."
    with h.cond:
        reacts = list(h.reacts)
    assert [f for f, _ in reacts] == [None, None]
    assert all(name.startswith("reactor-loop-") for _, name in reacts), reacts
    assert c.opened and not h.closed
    sock.close()
    h.wait_closed(1)
    assert h.closed == [(c, None)]
    bg.stop()


# --- tick (gnet: TestTick) ---------------------------------------------------------------------
class TickServer(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.thread_names: set[str] = set()

    def tick(self) -> tuple[float, Action]:
        self.ticks += 1
        self.thread_names.add(loop_name())
        return 0.01, Action.SHUTDOWN if self.ticks == 25 else Action.NONE


@pytest.mark.parametrize("reuse_port", [False, True], ids=["main-reactor", "reuse_port"])
def test_tick(reuse_port: bool, start_server: Any) -> None:
    h = TickServer()
    t0 = time.monotonic()
    bg = start_server(h, ticker=True, num_event_loop=2, reuse_port=reuse_port)
    bg.join(WAIT)  # SHUTDOWN from the 25th tick stops the server by itself
    elapsed = time.monotonic() - t0
    assert h.ticks == 25
    time.sleep(0.05)
    assert h.ticks == 25, "tick() was called after the SHUTDOWN"
    # 24 delays of 10 ms between the 25 calls.
    assert 0.2 <= elapsed < 3.0, elapsed
    assert len(h.thread_names) == 1, h.thread_names
    (name,) = h.thread_names
    assert not name.startswith("reactor-loop-") and name != "reactor-main", name
    assert h.shutdowns == [0]


# --- shutdown from tick with blocked clients (gnet: TestShutdown) -----------------------------------
class ShutdownFromTick(Recorder):
    N = 10

    def tick(self) -> tuple[float, Action]:
        with self.cond:
            done = len(self.opened) == self.N
        return 0.01, Action.SHUTDOWN if done else Action.NONE


def test_shutdown_from_tick_closes_blocked_clients(start_server: Any, clients: Clients, jobs: Jobs) -> None:
    h = ShutdownFromTick()
    bg = start_server(h, ticker=True, num_event_loop=4)
    socks = [clients.connect(bg.addr) for _ in range(h.N)]
    readers = [jobs.spawn(read_until_closed, s, name=f"blocked-reader-{i}") for i, s in enumerate(socks)]
    bg.join(WAIT)
    for r in readers:
        data, how = r.result()
        assert data == b"" and how in ("eof", "reset")
    with h.cond:
        assert len(h.opened) == h.N
        assert sorted(map(id, (c for c, _ in h.closed))) == sorted(map(id, h.opened))
        assert [e for _, e in h.closed] == [None] * h.N
        # on_shutdown ran once, after every on_closed.
        assert h.shutdowns == [h.N]


# --- actions from react (gnet: TestCloseActionError, TestShutdownActionError) ------------------------
class CloseAfterEcho(Recorder):
    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return frame, Action.CLOSE


def test_close_action_delivers_the_echo_first(start_server: Any, clients: Clients) -> None:
    h = CloseAfterEcho()
    bg = start_server(h)
    sock = clients.connect(bg.addr)
    sock.sendall(b"hello, close")
    assert read_until_closed(sock) == (b"hello, close", "eof")
    h.wait_closed(1)
    assert h.closed[0][1] is None
    assert bg.running, "CLOSE must close the connection only, not the server"
    echo_round_trip(clients.connect(bg.addr))
    bg.stop()


class ShutdownAfterEcho(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.read_n: list[Any] = []

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        self.read_n.append(c.read_n(-1))  # gnet's test calls ReadN(-1) here
        return frame, Action.SHUTDOWN


def test_shutdown_action_delivers_the_echo(start_server: Any, clients: Clients) -> None:
    h = ShutdownAfterEcho()
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    sock.sendall(b"hello, shutdown")
    assert read_until_closed(sock) == (b"hello, shutdown", "eof")
    bg.join(WAIT)
    assert len(h.read_n) == 1
    size, data = h.read_n[0]
    # The built-in codec hands react the whole buffer and consumes it.
    assert (size, data) == (len(data), data) and data in (b"", b"hello, shutdown")
    assert h.shutdowns == [1]


# --- actions from on_opened (gnet: TestCloseActionOnOpen, TestShutdownActionOnOpen) -------------------
class CloseOnOpen(Recorder):
    def __init__(self, greeting: Optional[bytes]) -> None:
        super().__init__()
        self.greeting = greeting
        self.reacted = False

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return self.greeting, Action.CLOSE

    def after_close(self, c: reactor.Conn, err: Optional[BaseException]) -> Action:
        return Action.SHUTDOWN

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        self.reacted = True
        return None, Action.NONE


@pytest.mark.parametrize("greeting", [None, b"bye"], ids=["no-output", "with-output"])
def test_close_from_on_opened_then_shutdown_from_on_closed(
    greeting: Optional[bytes], start_server: Any, clients: Clients
) -> None:
    h = CloseOnOpen(greeting)
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    assert read_until_closed(sock) == (greeting or b"", "eof")
    bg.join(WAIT)
    assert len(h.opened) == 1 and h.closed == [(h.opened[0], None)]
    assert not h.reacted
    assert h.shutdowns == [1]


class ShutdownOnOpen(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.dup_result: Any = None

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return None, Action.SHUTDOWN

    def on_shutdown(self, server: reactor.Server) -> None:
        super().on_shutdown(server)
        self.dup_result = describe_dup(server)  # gnet's test calls DupFd() in OnShutdown


def describe_dup(server: reactor.Server) -> Any:
    """Dup the listener, describe the duplicate, close it; the exception if dup_fd fails."""
    try:
        fd = server.dup_fd()
    except Exception as e:
        return e
    try:
        mode = os.fstat(fd).st_mode
        cloexec = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        try:
            with socket.socket(fileno=os.dup(fd)) as s:
                name = s.getsockname()
                listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError as e:
            name, listening = e, 0
        return {"fd": fd, "is_socket": stat.S_ISSOCK(mode), "cloexec": cloexec, "name": name, "listening": listening}
    finally:
        os.close(fd)


def test_shutdown_from_on_opened(start_server: Any, clients: Clients) -> None:
    h = ShutdownOnOpen()
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    assert read_until_closed(sock) == (b"", "eof")
    bg.join(WAIT)
    assert h.closed == [(h.opened[0], None)]
    assert h.shutdowns == [1]


def test_dup_fd_while_running(start_server: Any) -> None:
    h = Recorder()
    bg = start_server(h)
    info = describe_dup(bg.server)
    assert not isinstance(info, Exception), info
    assert info["is_socket"] and info["cloexec"] and info["listening"] == 1
    assert info["name"] == bg.addr
    bg.stop()


def test_dup_fd_in_on_shutdown(start_server: Any, clients: Clients) -> None:
    h = ShutdownOnOpen()
    bg = start_server(h, num_event_loop=2)
    addr = bg.addr
    sock = clients.connect(addr)
    assert read_until_closed(sock) == (b"", "eof")
    bg.join(WAIT)
    info = h.dup_result
    assert not isinstance(info, Exception), f"dup_fd() in on_shutdown raised {info!r}"
    assert info["is_socket"] and info["cloexec"] and info["name"] == addr


# --- close from another thread (gnet: TestCloseConnection) -----------------------------------------
class CloseLater(Recorder):
    def __init__(self, jobs: Jobs) -> None:
        super().__init__()
        self.jobs = jobs

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        def close_soon() -> None:
            time.sleep(0.1)
            c.close()
            c.close()  # a second close is a no-op: on_closed still runs once

        self.jobs.spawn(close_soon, name="closer")
        return frame, Action.NONE


def test_close_from_another_thread(start_server: Any, clients: Clients, jobs: Jobs) -> None:
    h = CloseLater(jobs)
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    t0 = time.monotonic()
    echo_round_trip(sock, b"close me later")
    assert read_until_closed(sock) == (b"", "eof")
    assert time.monotonic() - t0 >= 0.09
    jobs.join_all()
    assert all(j.error is None for j in jobs.jobs), [j.error for j in jobs.jobs]
    h.wait_closed(1)
    time.sleep(0.05)
    assert h.closed == [(h.opened[0], None)]
    assert bg.server.count_connections() == 0
    bg.stop()


# --- reactor.stop (gnet: TestStop) --------------------------------------------------------------
def test_stop_by_address(start_server: Any, clients: Clients, jobs: Jobs) -> None:
    port = free_port()
    proto_addr = f"tcp://127.0.0.1:{port}"
    h = Recorder()
    bg = start_server(h, proto_addr, num_event_loop=2)
    sock = clients.connect(("127.0.0.1", port))
    echo_round_trip(sock)
    # The key is the exact string serve() was given.
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop(f"127.0.0.1:{port}")
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop("tcp://127.0.0.1:9")
    assert bg.running

    blocked = jobs.spawn(read_until_closed, sock, name="blocked-reader")

    def stop_and_look() -> tuple[list[int], bool]:
        stop_by_address(proto_addr, timeout=WAIT)
        # reactor.stop returns only once the server has fully stopped.
        with h.cond:
            shutdowns = list(h.shutdowns)
        refused = False
        with socket.socket() as probe:
            probe.settimeout(SOCK_TIMEOUT)
            try:
                probe.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                refused = True
        return shutdowns, refused

    stopper = jobs.spawn(stop_and_look, name="stopper")
    shutdowns, refused = stopper.result()
    assert shutdowns == [1], "stop() returned before on_shutdown ran"
    assert refused, "the listener still accepts after stop() returned"
    assert blocked.result() == (b"", "eof")
    bg.join(WAIT)
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop(proto_addr)


def stop_by_address(proto_addr: str, **kwargs: Any) -> int:
    """``reactor.stop(proto_addr)``, retried while it says "no running server"; returns the retries.

    The retry works around the registration race exposed by
    test_stop_by_address_from_the_first_tick (serve() makes the address
    known to stop() only after the loops already run); a server that never
    becomes stoppable still fails after 2 s.
    """
    deadline = time.monotonic() + 2
    retries = 0
    while True:
        try:
            reactor.stop(proto_addr, **kwargs)
            return retries
        except reactor.ServerInShutdownError:
            if time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.005)


class StopFromCallback(Recorder):
    def __init__(self, how: str, proto_addr: str) -> None:
        super().__init__()
        self.how = how
        self.proto_addr = proto_addr
        self.stop_calls: list[tuple[str, float, Optional[BaseException]]] = []
        self.early_refusals = 0  # see stop_by_address
        self.echoed = threading.Event()

    def _try_stop(self) -> bool:
        """One stop attempt from this (server) thread; False: refused as not running yet."""
        t0 = time.monotonic()
        err: Optional[BaseException] = None
        try:
            if self.how == "server.stop-in-react":
                assert self.server is not None
                self.server.stop()
            else:
                reactor.stop(self.proto_addr, timeout=WAIT)
        except reactor.ServerInShutdownError:
            self.early_refusals += 1
            return False
        except BaseException as e:
            err = e
        self.stop_calls.append((loop_name(), time.monotonic() - t0, err))
        return True

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        if self.how == "reactor.stop-in-tick":
            self.echoed.set()
            return frame, Action.NONE
        if self.stop_calls:
            return b"again", Action.NONE
        return (b"done!" if self._try_stop() else b"retry"), Action.NONE

    def tick(self) -> tuple[float, Action]:
        if self.echoed.is_set() and not self.stop_calls and self.early_refusals < 400:
            self._try_stop()
        return 0.005, Action.NONE


@pytest.mark.parametrize("how", ["server.stop-in-react", "reactor.stop-in-react", "reactor.stop-in-tick"])
def test_stop_from_inside(how: str, start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = str(tmp_path / "stop.sock")
    proto_addr = f"unix://{path}"  # a unique key for reactor.stop
    h = StopFromCallback(how, proto_addr)
    bg = start_server(h, proto_addr, num_event_loop=2, ticker=how.endswith("tick"))
    sock = clients.connect(path)
    if how.endswith("tick"):
        echo_round_trip(sock)
        deadline = time.monotonic() + WAIT
        while not h.stop_calls and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        for _ in range(200):
            sock.sendall(b"stop!")
            reply = recv_exact(sock, 5)
            if reply != b"retry":
                break
            time.sleep(0.005)
        assert reply == b"done!"
    assert len(h.stop_calls) == 1, f"no stop call went through ({h.early_refusals} refused)"
    name, took, err = h.stop_calls[0]
    assert err is None, err
    assert read_until_closed(sock) == (b"", "eof")
    bg.join(WAIT)
    assert took < 0.5, f"stop from {name} blocked for {took:.2f} s"
    assert name.startswith("reactor-") and name != "test-serve"
    assert h.shutdowns == [1]
    assert not os.path.exists(path)


class StopOnFirstTick(Recorder):
    def __init__(self, proto_addr: str) -> None:
        super().__init__()
        self.proto_addr = proto_addr
        self.ticks = 0
        self.error: Optional[BaseException] = None

    def tick(self) -> tuple[float, Action]:
        self.ticks += 1
        if self.ticks == 1:
            try:
                reactor.stop(self.proto_addr)
            except BaseException as e:
                self.error = e
                return 0.001, Action.SHUTDOWN  # stop it anyway, so the test ends
        return 0.01, Action.NONE


def test_stop_by_address_from_the_first_tick(start_server: Any, tmp_path: Any) -> None:
    proto_addr = f"unix://{tmp_path / 'first-tick.sock'}"
    h = StopOnFirstTick(proto_addr)
    bg = start_server(h, proto_addr, ticker=True)
    bg.join(WAIT)
    assert h.ticks >= 1
    assert h.error is None, repr(h.error)


# --- closed wake-up (gnet: TestClosedWakeUp) --------------------------------------------------
class ClosedWakeUp(Recorder):
    def __init__(self, jobs: Jobs) -> None:
        super().__init__()
        self.jobs = jobs
        self.client_closed = threading.Event()
        self.wakes = 0

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        if frame is None:
            self.wakes += 1
            return b"woken", Action.NONE
        if not frame.startswith(b"race"):
            return frame, Action.NONE
        barrier = threading.Barrier(2, timeout=WAIT)

        def racer(fn: Callable[[], None]) -> None:
            barrier.wait()
            fn()

        racers = [self.jobs.spawn(racer, c.wake, name="waker"), self.jobs.spawn(racer, c.close, name="closer")]
        for r in racers:
            r.result()  # both only queue a task; they return at once
        if frame == b"race-and-wait":
            # gnet keeps the loop busy until the client has gone, so the
            # queued wake meets a connection that is already closed.
            if not self.client_closed.wait(WAIT):
                self.problem("the client never closed")
            return None, Action.NONE
        return frame, Action.NONE


def test_closed_wake_up(start_server: Any, clients: Clients, jobs: Jobs, caplog: pytest.LogCaptureFixture) -> None:
    h = ClosedWakeUp(jobs)
    bg = start_server(h)  # one loop: the bystander shares it with the racing connections
    bystander = clients.connect(bg.addr)
    echo_round_trip(bystander)
    for i in range(10):
        sock = clients.connect(bg.addr)
        if i % 2:
            sock.sendall(b"race-and-wait")
            time.sleep(0.02)
            sock.close()
            h.client_closed.set()
        else:
            sock.sendall(b"race")
            # The urgent wake runs before the normal-priority close.
            assert read_until_closed(sock) == (b"racewoken", "eof")
        h.wait_closed(i + 1)
        h.client_closed.clear()
        echo_round_trip(bystander, f"still here {i}".encode())
    jobs.join_all()
    assert all(j.error is None for j in jobs.jobs), [j.error for j in jobs.jobs]
    # Even rounds: exactly one wake each. Odd rounds: the client's EOF and the
    # queued tasks usually arrive in one epoll batch, where fd events run
    # first, so the wake meets a closed connection and is dropped.
    assert 5 <= h.wakes <= 10, h.wakes
    assert not h.problems
    assert bg.server.count_connections() == 1
    bystander.close()
    h.wait_closed(11)
    bg.stop()
    assert not error_records(caplog), [r.getMessage() for r in error_records(caplog)]


# --- bad addresses (gnet: TestBadAddresses) -----------------------------------------------------
class NeverStarts(reactor.EventServer):
    """Shuts down from on_init_complete: serve() returns before any loop starts."""

    def __init__(self) -> None:
        self.init_calls = 0
        self.server: Optional[reactor.Server] = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.init_calls += 1
        self.server = server
        return Action.SHUTDOWN


@pytest.mark.parametrize(
    ("proto_addr", "error"),
    [
        ("tulip://howdy", reactor.UnsupportedProtocolError),
        ("howdy", reactor.InvalidNetworkAddressError),
        ("tcp://127.0.0.1:99999", reactor.InvalidNetworkAddressError),
        ("tcp://127.0.0.1:0/path", reactor.InvalidNetworkAddressError),
        ("unix://", reactor.InvalidNetworkAddressError),
        ("sctp://127.0.0.1:0", reactor.UnsupportedProtocolError),
        ("TCP://127.0.0.1:0", reactor.UnsupportedProtocolError),  # not lower-cased (gnet.md §3.18 #6)
        ("tcp://127.0.0.1:0\n", reactor.InvalidNetworkAddressError),
    ],
    ids=lambda v: repr(v).strip("'") if isinstance(v, str) else v.__name__,
)
def test_bad_address(proto_addr: str, error: type) -> None:
    h = NeverStarts()
    with pytest.raises(error):
        reactor.serve(h, proto_addr)
    assert h.init_calls == 0


def test_empty_tcp_address_binds_an_ephemeral_port() -> None:
    h = NeverStarts()
    assert reactor.serve(h, "tcp://") is None  # on_init_complete returns SHUTDOWN
    assert h.init_calls == 1 and h.server is not None
    host, port = h.server.addr
    assert host == "0.0.0.0" and port > 0


def test_address_in_use(start_server: Any, clients: Clients) -> None:
    h = Recorder()
    bg = start_server(h)
    port = bg.addr[1]
    second = NeverStarts()
    with pytest.raises(OSError) as exc:
        reactor.serve(second, f"tcp://127.0.0.1:{port}")
    assert exc.value.errno == errno.EADDRINUSE
    assert second.init_calls == 0
    echo_round_trip(clients.connect(bg.addr))  # the first server is undisturbed
    bg.stop()


# --- options ---------------------------------------------------------------------------------
@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port a stdlib listener holds: binding it would fail with EADDRINUSE."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("num_event_loop", -1),
        ("num_event_loop", True),
        ("tcp_keepalive", 0.5),
        ("tcp_keepalive", -1),
        ("lb", 7),
        ("read_buffer_cap", "x"),
        ("write_buffer_cap", -1),
        ("socket_recv_buffer", -8192),
        ("codec", object()),
        ("log_level", "nope"),
        ("multicore", "yes"),
        ("edge_triggered_io_chunk", 0),
        ("logger", "reactor"),
    ],
    ids=lambda v: v if isinstance(v, str) else "object()" if type(v) is object else repr(v),
)
def test_invalid_option_raises_before_binding(option: str, value: Any, busy_port: int) -> None:
    h = NeverStarts()
    # Binding the busy port would raise OSError; ValueError proves validation came first.
    with pytest.raises(ValueError) as exc:
        reactor.serve(h, f"tcp://127.0.0.1:{busy_port}", **{option: value})
    assert option in str(exc.value)
    assert h.init_calls == 0


def test_unknown_option_keyword(busy_port: int) -> None:
    with pytest.raises(TypeError) as exc:
        reactor.serve(NeverStarts(), f"tcp://127.0.0.1:{busy_port}", multicores=True)
    msg = str(exc.value)
    assert "multicores" in msg and "valid options" in msg and "multicore" in msg.replace("multicores", "")


def test_too_many_event_loops(busy_port: int) -> None:
    with pytest.raises(reactor.TooManyEventLoopThreadsError):
        reactor.serve(NeverStarts(), f"tcp://127.0.0.1:{busy_port}", num_event_loop=10001, lock_os_thread=True)


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ({}, 1),
        ({"multicore": True}, len(os.sched_getaffinity(0))),
        ({"num_event_loop": 3}, 3),
        ({"multicore": True, "num_event_loop": 2}, 2),
        ({"options": reactor.Options(num_event_loop=5, multicore=True)}, 5),
        ({"options": reactor.Options(num_event_loop=5), "num_event_loop": 4}, 4),
    ],
    ids=["default", "multicore", "num_event_loop=3", "both", "options-object", "keyword-over-options"],
)
def test_num_event_loop_reported(opts: dict[str, Any], expected: int) -> None:
    seen: list[reactor.Server] = []

    class H(reactor.EventServer):
        def on_init_complete(self, server: reactor.Server) -> Action:
            seen.append(server)
            return Action.SHUTDOWN

    reactor.serve(H(), "tcp://127.0.0.1:0", **opts)
    assert len(seen) == 1 and seen[0].num_event_loop == expected


@pytest.mark.parametrize("reuse_port", [False, True], ids=["main-reactor", "reuse_port"])
def test_loop_threads_match_num_event_loop(reuse_port: bool, start_server: Any) -> None:
    before = {t.name for t in threading.enumerate()}
    bg = start_server(Recorder(), num_event_loop=3, reuse_port=reuse_port)
    deadline = time.monotonic() + WAIT
    expected = {"reactor-loop-0", "reactor-loop-1", "reactor-loop-2"} | (set() if reuse_port else {"reactor-main"})
    while time.monotonic() < deadline:
        names = {t.name for t in threading.enumerate()} - before
        if {n for n in names if n.startswith("reactor-")} == expected:
            break
        time.sleep(0.01)
    assert {n for n in names if n.startswith("reactor-")} == expected
    assert bg.server.num_event_loop == 3 and bg.server.reuse_port is reuse_port
    bg.stop()


class FrameSizes(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.gate = threading.Event()

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        # Hold the loop until the client has sent everything (or 0.5 s), so
        # reads find a full socket buffer and are limited only by the cap.
        self.gate.wait(0.5)
        return None, Action.NONE

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        assert frame is not None
        self.sizes.append(len(frame))
        return frame, Action.NONE


@pytest.mark.parametrize(("cap", "effective"), [(1024, 1024), (1000, 1024), (3000, 4096), (20000, 32768)])
def test_read_buffer_cap_is_normalised(cap: int, effective: int, start_server: Any, clients: Clients) -> None:
    h = FrameSizes()
    bg = start_server(h, read_buffer_cap=cap)
    sock = clients.connect(bg.addr)
    payload = os.urandom(100 * 1024)
    received: list[bytes] = []

    def send() -> None:
        sock.sendall(payload)
        h.gate.set()

    sender = threading.Thread(target=send, name="sender", daemon=True)
    sender.start()
    try:
        received.append(recv_exact(sock, len(payload)))
    finally:
        h.gate.set()
        sender.join(WAIT)
    assert not sender.is_alive()
    assert received[0] == payload
    assert sum(h.sizes) == len(payload)
    assert max(h.sizes) == effective, Counter(h.sizes).most_common(5)
    bg.stop()


# --- count_connections across loops, load balancers ------------------------------------------------
class LoopRecorder(Recorder):
    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        c.context = loop_name()
        return None, Action.NONE


@pytest.mark.parametrize("lb", list(LoadBalancing), ids=lambda lb: lb.name.lower())
def test_count_connections_across_loops(lb: LoadBalancing, start_server: Any, clients: Clients) -> None:
    h = LoopRecorder()
    bg = start_server(h, num_event_loop=3, lb=lb)
    socks = []
    for i in range(6):
        # One at a time: LEAST_CONNECTIONS sees the previous registration.
        socks.append(clients.connect(bg.addr))
        h.wait_opened(i + 1)
    assert bg.server.count_connections() == 6
    loops = {id(c): c.context for c in h.opened}
    if lb == LoadBalancing.SOURCE_ADDR_HASH:
        # gnet: CRC-32 (IEEE) of the peer's "ip:port" modulo the loop count.
        for c in h.opened:
            host, port = c.remote_addr
            assert loops[id(c)] == f"reactor-loop-{zlib.crc32(f'{host}:{port}'.encode()) % 3}"
    else:
        assert [loops[id(c)] for c in h.opened] == [f"reactor-loop-{i % 3}" for i in range(6)]
    for s in socks:
        echo_round_trip(s)
        s.close()
    deadline = time.monotonic() + WAIT
    while bg.server.count_connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bg.server.count_connections() == 0
    bg.stop()
    assert len(h.closed) == 6


# --- exceptions in callbacks ------------------------------------------------------------------
class Faulty(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.raised: list[BaseException] = []
        self.bad_result: Any = None

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return b"hi", Action.NONE

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> Any:
        if frame == b"raise":
            e = ValueError("boom in react")
            self.raised.append(e)
            raise e
        if frame == b"bad-result":
            return self.bad_result
        return frame, Action.NONE


def test_react_raising_closes_only_that_connection(
    start_server: Any, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    h = Faulty()
    bg = start_server(h)  # one loop: both clients share it
    victim = clients.connect(bg.addr)
    bystander = clients.connect(bg.addr)
    assert recv_exact(victim, 2) == b"hi" and recv_exact(bystander, 2) == b"hi"
    victim.sendall(b"raise")
    assert read_until_closed(victim) == (b"", "eof")
    h.wait_closed(1)
    (c, err), = h.closed
    assert err is h.raised[0]
    assert c is h.opened[0]
    echo_round_trip(bystander)
    assert any("react() raised" in r.getMessage() for r in error_records(caplog))
    assert bg.server.count_connections() == 1
    bg.stop()


class RaisingOnOpen(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.raised: list[BaseException] = []

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        if len(self.opened) == 1:
            e = RuntimeError("boom in on_opened")
            self.raised.append(e)
            raise e
        return None, Action.NONE


def test_on_opened_raising_closes_that_connection(start_server: Any, clients: Clients) -> None:
    h = RaisingOnOpen()
    bg = start_server(h)
    victim = clients.connect(bg.addr)
    assert read_until_closed(victim) == (b"", "eof")
    h.wait_closed(1)
    assert h.closed == [(h.opened[0], h.raised[0])]
    echo_round_trip(clients.connect(bg.addr))
    bg.stop()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"x", id="bytes-len1"),
        pytest.param(b"xyz", id="bytes-len3"),
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
        pytest.param((b"a", Action.NONE, 3), id="3-tuple"),
        pytest.param(b"ok", id="bytes-len2"),
    ],
)
def test_react_returning_a_wrong_type(bad: Any, start_server: Any, clients: Clients) -> None:
    h = Faulty()
    h.bad_result = bad
    bg = start_server(h)
    sock = clients.connect(bg.addr)
    assert recv_exact(sock, 2) == b"hi"
    sock.sendall(b"bad-result")
    assert read_until_closed(sock) == (b"", "eof")
    h.wait_closed(1)
    err = h.closed[0][1]
    assert isinstance(err, TypeError), repr(err)
    assert "react" in str(err), str(err)
    echo_round_trip(_greeted(clients, bg.addr))
    bg.stop()


def _greeted(clients: Clients, addr: Any) -> socket.socket:
    s = clients.connect(addr)
    assert recv_exact(s, 2) == b"hi"
    return s


class BadOnOpenResult(Recorder):
    def after_open(self, c: reactor.Conn) -> Any:
        return b"x"


def test_on_opened_returning_a_wrong_type(start_server: Any, clients: Clients) -> None:
    h = BadOnOpenResult()
    bg = start_server(h)
    sock = clients.connect(bg.addr)
    assert read_until_closed(sock) == (b"", "eof")
    h.wait_closed(1)
    err = h.closed[0][1]
    assert isinstance(err, TypeError) and "on_opened" in str(err), repr(err)
    bg.stop()


class RaisingOnClosed(Recorder):
    def after_close(self, c: reactor.Conn, err: Optional[BaseException]) -> Action:
        raise RuntimeError("boom in on_closed")


def test_on_closed_raising_is_logged_and_the_server_continues(
    start_server: Any, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    h = RaisingOnClosed()
    bg = start_server(h)
    first = clients.connect(bg.addr)
    echo_round_trip(first)
    first.close()
    h.wait_closed(1)
    deadline = time.monotonic() + WAIT
    while not error_records(caplog) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any("on_closed() raised" in r.getMessage() for r in error_records(caplog))
    assert bg.server.count_connections() == 0
    second = clients.connect(bg.addr)
    echo_round_trip(second)
    assert bg.running
    bg.stop()


# --- loop-only methods ----------------------------------------------------------------------
LOOP_ONLY = [
    ("read", ()),
    ("buffer_length", ()),
    ("read_n", (1,)),
    ("shift_n", (1,)),
    ("reset_buffer", ()),
    ("peek", ()),
    ("next", ()),
    ("discard", ()),
    ("write", (b"x",)),
    ("writev", ([b"x", b"y"],)),
    ("flush", ()),
]


def test_loop_only_methods_refuse_other_threads(start_server: Any, clients: Clients) -> None:
    h = Recorder()
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    h.wait_opened(1)
    c = h.opened[0]
    for name, args in LOOP_ONLY:
        with pytest.raises(RuntimeError) as exc:
            getattr(c, name)(*args)
        assert "async_write" in str(exc.value), (name, str(exc.value))
    # Nothing was written by the refused calls.
    sock.settimeout(0.1)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(SOCK_TIMEOUT)
    # Snapshots are fine from anywhere.
    assert c.inbound_buffered() == 0 and c.outbound_buffered() == 0
    # The thread-safe writers work from here, in order.
    c.async_write(b"hello ")
    c.async_writev([b"from ", bytearray(b"another "), memoryview(b"thread")])
    assert recv_exact(sock, len(b"hello from another thread")) == b"hello from another thread"
    echo_round_trip(sock)
    bg.stop()


# --- write_buffer_cap back-pressure -----------------------------------------------------------------
REQ = 1024
RESP = 32 * 1024
WRITE_CAP = 64 * 1024


def response(i: int) -> bytes:
    return struct.pack(">I", i) * (RESP // 4)


class Bulk(Recorder):
    """Answers every REQ bytes received with a RESP-byte response."""

    def after_open(self, c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        c.context = [0, 0]  # bytes of a partial request, index of the next response
        return None, Action.NONE

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        assert frame is not None
        st = c.context
        st[0] += len(frame)
        out = []
        while st[0] >= REQ:
            st[0] -= REQ
            out.append(response(st[1]))
            st[1] += 1
        return (b"".join(out) if out else None), Action.NONE


@pytest.mark.parametrize(
    ("edge_triggered", "io_chunk"),
    [(False, 1 << 20), (True, 1 << 20), (True, 4096)],
    ids=["level-triggered", "edge-triggered", "edge-triggered-chunk4k"],
)
def test_write_buffer_cap_bounds_a_peer_that_does_not_read(
    edge_triggered: bool, io_chunk: int, start_server: Any, clients: Clients
) -> None:
    h = Bulk()
    bg = start_server(
        h,
        write_buffer_cap=WRITE_CAP,
        read_buffer_cap=REQ,
        socket_recv_buffer=8192,
        socket_send_buffer=8192,
        edge_triggered=edge_triggered,
        edge_triggered_io_chunk=io_chunk,
    )
    hog = clients.connect(bg.addr, rcvbuf=8192, sndbuf=8192)
    h.wait_opened(1)
    hog_conn = h.opened[0]

    # The hog sends requests and never reads; its sends must end up blocked.
    request_block = b"r" * (16 * REQ)
    hog.settimeout(0.3)
    sent = 0
    blocked = False
    deadline = time.monotonic() + 3
    while sent < 8 * 1024 * 1024 and time.monotonic() < deadline:
        try:
            sent += hog.send(request_block)
        except TimeoutError:
            blocked = True
            break
    assert blocked, f"sent {sent} bytes without blocking: the server kept reading"
    owed = -(-sent // REQ)  # responses for every request, the partial last one included

    # While the hog is stuck, its buffered output stays bounded...
    peak = 0
    until = time.monotonic() + 0.3
    while time.monotonic() < until:
        peak = max(peak, hog_conn.outbound_buffered())
        time.sleep(0.005)
    assert 0 < peak <= WRITE_CAP + RESP, peak
    assert owed * RESP > 10 * peak, "the hog did not ask for much more than the server buffered"

    # ...and the same loop still serves somebody else.
    other = clients.connect(bg.addr)
    for i in range(3):
        other.sendall(b"q" * REQ)
        assert recv_exact(other, RESP) == response(i)

    # Now the hog reads, sending nothing: every complete request it sent is
    # still in the kernel's buffers, so the server must resume reading by
    # itself once its output has drained (edge-triggered: no new edge comes).
    hog.settimeout(SOCK_TIMEOUT)
    complete = sent // REQ
    data = recv_exact(hog, complete * RESP)
    if sent % REQ:
        hog.sendall(b"r" * (REQ - sent % REQ))  # complete the last request
        data += recv_exact(hog, RESP)
    assert len(data) == owed * RESP
    for i in range(owed):
        if data[i * RESP : (i + 1) * RESP] != response(i):
            pytest.fail(f"response {i} of {owed} is wrong")
    deadline = time.monotonic() + WAIT
    while hog_conn.outbound_buffered() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hog_conn.outbound_buffered() == 0
    echo_round_trip_bulk(hog, owed)
    bg.stop()


def echo_round_trip_bulk(sock: socket.socket, index: int) -> None:
    """The connection works normally again after the pause."""
    sock.sendall(b"r" * REQ)
    assert recv_exact(sock, RESP) == response(index)


# --- Unix socket files --------------------------------------------------------------------------
def test_unix_socket_file_lifecycle(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = tmp_path / "life.sock"
    bg = start_server(Recorder(), f"unix://{path}")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert bg.addr == str(path)
    echo_round_trip(clients.connect(path))
    bg.stop()
    assert not path.exists()


def test_unix_stale_socket_file_is_replaced(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(str(path))  # closed without unlink: a stale socket file
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(str(path))  # nobody listens there
    bg = start_server(Recorder(), f"unix://{path}")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    echo_round_trip(clients.connect(path))
    bg.stop()
    assert not path.exists()


def test_unix_regular_file_is_not_deleted(tmp_path: Any) -> None:
    path = tmp_path / "precious.txt"
    path.write_bytes(b"do not delete me")
    h = NeverStarts()
    with pytest.raises(OSError) as exc:
        reactor.serve(h, f"unix://{path}")
    assert exc.value.errno == errno.EADDRINUSE
    assert path.read_bytes() == b"do not delete me"
    assert h.init_calls == 0


def test_unix_live_socket_is_not_stolen(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = tmp_path / "live.sock"
    first = start_server(Recorder(), f"unix://{path}")
    second: Any = None
    try:
        with pytest.raises(OSError) as exc:
            second = start_server(Recorder(), f"unix://{path}")
        assert exc.value.errno == errno.EADDRINUSE
    finally:
        # Whatever happened, the first server must still be reachable at its path.
        echo_round_trip(clients.connect(path))
        if second is not None:
            second.stop()
        first.stop()


def test_unix_path_keeps_its_case(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    name = "MixedCase-Ünïcödé.sock"
    path = tmp_path / name
    bg = start_server(Recorder(), f"unix://{path}")
    assert os.listdir(tmp_path) == [name]
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    echo_round_trip(clients.connect(path))
    bg.stop()
    assert os.listdir(tmp_path) == []


# --- reuse_port listeners --------------------------------------------------------------------
def listening_sockets_on(port: int) -> int:
    """LISTEN sockets on 127.0.0.1:``port`` according to /proc/net/tcp."""
    want = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                count += 1
    return count


def test_reuse_port_listeners_share_the_port(start_server: Any, clients: Clients) -> None:
    h = LoopRecorder()
    bg = start_server(h, "tcp://127.0.0.1:0", reuse_port=True, num_event_loop=3)
    port = bg.addr[1]
    assert port > 0
    deadline = time.monotonic() + WAIT
    while listening_sockets_on(port) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listening_sockets_on(port) == 3
    socks = [clients.connect(("127.0.0.1", port)) for _ in range(12)]
    for s in socks:
        echo_round_trip(s)
    h.wait_opened(12)
    assert bg.server.count_connections() == 12
    # The kernel spreads connections over the listeners by 4-tuple hash; with
    # 12 connections all landing on one loop has probability 3 * 3**-12.
    assert len({c.context for c in h.opened}) >= 2, Counter(c.context for c in h.opened)
    bg.stop()
    assert listening_sockets_on(port) == 0
