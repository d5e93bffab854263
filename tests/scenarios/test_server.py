"""gnet's TestServe matrix: echo of random megabytes through every engine shape.

Shapes: {main reactor, reuse_port} x {tcp, tcp-async_write, tcp-async_writev,
unix, unix-async_write} x {1 loop, 4 loops}; the load balancers only matter
with a main reactor and several loops, so they are varied only there; plus
edge-triggered tcp on 1 and 4 loops.

Each cell: the handler greets every connection with ``"sweetness\\r\\n"`` from
``on_opened`` (as gnet's harness does); CLIENTS clients read the greeting, then
each streams PAYLOAD random bytes in random-sized chunks from one thread while
another thread reads the echo back, and the echo must be byte-exact and in
order. Sync cells echo from ``react``; async cells copy the frame and write it
back from a worker thread with ``async_write`` (or ``async_writev`` of two
halves). A worker per shard of connections keeps each connection's writes in
order. Some cells use small socket buffers, a small read buffer and a small
write_buffer_cap, so partial writes, EAGAIN and the back-pressure pause all
happen during the echo.

Real sockets on 127.0.0.1 and in tmp_path, no mocks; every socket has a
timeout and every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import random
import socket
import threading
import time
from typing import Any

import pytest

import reactor
from reactor import Action, LoadBalancing

GREETING = b"sweetness\r\n"
CLIENTS = 4
PAYLOAD = 1024 * 1024  # bytes each client streams (gnet: 1 MiB blocks)
MAX_CHUNK = 64 * 1024
SOCK_TIMEOUT = 5.0
CELL_DEADLINE = 30.0  # whole-cell bound for the client threads


# --- the handler -----------------------------------------------------------------------------
class EchoServer(reactor.EventServer):
    """gnet's testServer: greet on open, echo sync or through a worker pool."""

    def __init__(self, mode: str, workers: int = 2) -> None:
        assert mode in ("sync", "async_write", "async_writev")
        self.mode = mode
        self.lock = threading.Lock()
        self.opened: list[reactor.Conn] = []
        self.closed: list[tuple[reactor.Conn, BaseException | None]] = []
        self.problems: list[str] = []  # checks made on the loop threads, asserted by the test
        self.shutdown_calls = 0
        self._queues: list[queue.Queue[Any]] = []
        self._workers: list[threading.Thread] = []
        if mode != "sync":
            for i in range(workers):
                q: queue.Queue[Any] = queue.Queue()
                t = threading.Thread(target=self._work, args=(q,), name=f"echo-worker-{i}", daemon=True)
                self._queues.append(q)
                self._workers.append(t)
                t.start()

    # callbacks
    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        c.context = c
        if c.local_addr is None or c.remote_addr is None:
            self._problem(f"on_opened: missing address on {c!r}")
        if not threading.current_thread().name.startswith("reactor-loop-"):
            self._problem(f"on_opened ran on {threading.current_thread().name}")
        with self.lock:
            self.opened.append(c)
        return GREETING, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        if c.context is not c:
            self._problem(f"on_closed: context of {c!r} is {c.context!r}")
        if c.opened:
            self._problem(f"on_closed: {c!r} still reports opened")
        with self.lock:
            self.closed.append((c, err))
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        with self.lock:
            self.shutdown_calls += 1
        self.close_workers()

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            self._problem("react(None) without a wake()")
            return None, Action.NONE
        if self.mode == "sync":
            return frame, Action.NONE
        data = bytes(frame)  # gnet: append([]byte{}, frame...)
        # gnet's async handler pokes the (already consumed) buffer on the loop.
        if c.buffer_length() != 0:
            self._problem(f"buffer_length() = {c.buffer_length()} after the built-in codec consumed the frame")
        c.shift_n(1)
        self._queues[c.fd % len(self._queues)].put((c, data))
        return None, Action.NONE

    # helpers
    def _problem(self, msg: str) -> None:
        with self.lock:
            self.problems.append(msg)

    def _work(self, q: queue.Queue[Any]) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            c, data = item
            try:
                if self.mode == "async_writev":
                    half = len(data) // 2
                    c.async_writev([data[:half], data[half:]])
                else:
                    c.async_write(data)
            except reactor.ServerInShutdownError:
                pass  # the loop stopped after this frame arrived
            except Exception as e:  # pragma: no cover - reported by the test
                self._problem(f"async write raised {e!r}")

    def close_workers(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._workers:
            t.join(10)
        self._queues = []
        self._workers = []


# --- clients ---------------------------------------------------------------------------------
def recv_exact(sock: socket.socket, n: int, deadline: float, hiccup: random.Random | None = None) -> bytes:
    """Exactly ``n`` bytes; raises on EOF, on a recv timeout, or past ``deadline``.

    With ``hiccup``, about one recv in 16 is preceded by a 1 ms pause (a slow reader).
    """
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if hiccup is not None and hiccup.random() < 1 / 16:
            time.sleep(0.001)
        if time.monotonic() > deadline:
            raise TimeoutError(f"received {got} of {n} bytes before the deadline")
        k = sock.recv_into(view[got:], min(n - got, 256 * 1024))
        if k == 0:
            raise ConnectionError(f"EOF after {got} of {n} bytes")
        got += k
    return bytes(buf)


def first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class EchoClient:
    """One client: connect, check the greeting, wait for ``go``, stream and verify the echo."""

    def __init__(
        self,
        family: int,
        addr: Any,
        seed: int,
        greeted: threading.Semaphore,
        go: threading.Event,
        small_buffers: bool = False,
    ) -> None:
        self.family = family
        self.small_buffers = small_buffers
        self.addr = addr
        self.rng = random.Random(seed)
        self.payload = os.urandom(PAYLOAD)
        self.greeted = greeted
        self.go = go
        self.error: BaseException | None = None
        self.greeting: bytes = b""
        self.echo_ok = False
        self.thread = threading.Thread(target=self._run, name=f"client-{seed}", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + CELL_DEADLINE
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sender: threading.Thread | None = None
        send_error: list[BaseException] = []
        try:
            sock.settimeout(SOCK_TIMEOUT)
            if self.small_buffers:
                # A small receive window on the client's side too: loopback
                # hands data straight to the peer's queue, so only a full
                # peer queue makes the server's writes partial (EAGAIN).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            sock.connect(self.addr)
            self.greeting = recv_exact(sock, len(GREETING), deadline)
            self.greeted.release()
            if not self.go.wait(SOCK_TIMEOUT):
                raise TimeoutError("the test never said go")

            head_start = threading.Event()

            def send() -> None:
                try:
                    off = 0
                    while off < PAYLOAD:
                        size = self.rng.randint(1, MAX_CHUNK)
                        sock.sendall(self.payload[off : off + size])
                        off += size
                        if off >= PAYLOAD // 4:
                            head_start.set()
                except BaseException as e:  # reported through the reader
                    send_error.append(e)
                finally:
                    head_start.set()

            sender = threading.Thread(target=send, name=f"{self.thread.name}-send", daemon=True)
            sender.start()
            if self.small_buffers:
                # A slow reader: let the server's output pile up (partial
                # writes, EAGAIN, the write_buffer_cap pause with the sender
                # blocked) before reading, then read with small hiccups.
                head_start.wait(0.1)
                echo = recv_exact(sock, PAYLOAD, deadline, hiccup=self.rng)
            else:
                echo = recv_exact(sock, PAYLOAD, deadline)
            sender.join(SOCK_TIMEOUT)
            assert not sender.is_alive(), "sender did not finish"
            if send_error:
                raise send_error[0]
            if echo != self.payload:
                at = first_difference(echo, self.payload)
                raise AssertionError(f"echo differs from the payload at byte {at} of {PAYLOAD}")
            self.echo_ok = True
        except BaseException as e:
            self.error = e
            self.greeted.release()  # never leave the test waiting for this client
        finally:
            if sender is not None and sender.is_alive():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sender.join(SOCK_TIMEOUT)
            sock.close()


# --- the matrix ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Cell:
    network: str  # "tcp" or "unix"
    mode: str  # "sync", "async_write", "async_writev"
    reuse_port: bool
    loops: int
    lb: LoadBalancing = LoadBalancing.ROUND_ROBIN
    small_buffers: bool = False
    edge_triggered: bool = False

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "reuse_port": self.reuse_port,
            "num_event_loop": self.loops,
            "lb": self.lb,
            "edge_triggered": self.edge_triggered,
        }
        if self.network == "tcp":
            opts["tcp_keepalive"] = 60  # gnet: keepalive 1 min
        if self.mode != "sync" and self.loops > 1:
            opts["lock_os_thread"] = True  # gnet: LockOSThread in async runs
        if self.small_buffers:
            # gnet TestCodecServe: 8 KiB read buffer and socket buffers; plus a
            # small outbound high-water mark so reading pauses and resumes.
            opts.update(
                read_buffer_cap=8192,
                socket_recv_buffer=8192,
                socket_send_buffer=8192,
                write_buffer_cap=64 * 1024,
            )
        if self.edge_triggered and self.loops > 1:
            opts["edge_triggered_io_chunk"] = 16 * 1024  # resume through the task queue often
        return opts


_LB_IDS = {
    LoadBalancing.ROUND_ROBIN: "round_robin",
    LoadBalancing.LEAST_CONNECTIONS: "least_connections",
    LoadBalancing.SOURCE_ADDR_HASH: "source_addr_hash",
}
_PROTOS = [
    ("tcp", "sync"),
    ("tcp", "async_write"),
    ("tcp", "async_writev"),
    ("unix", "sync"),
    ("unix", "async_write"),
]


def _cells() -> list[Any]:
    cells = []
    for reuse_port in (False, True):
        mode_id = "reuse_port" if reuse_port else "main-reactor"
        for network, mode in _PROTOS:
            proto_id = network if mode == "sync" else f"{network}-{mode}"
            # 1 loop: small buffers everywhere (one loop is the cheapest place for them).
            cell = Cell(network, mode, reuse_port, 1, small_buffers=True)
            cells.append(pytest.param(cell, id=f"{mode_id}-{proto_id}-1loop-smallbuf"))
            lbs = list(LoadBalancing) if not reuse_port else [LoadBalancing.ROUND_ROBIN]
            for lb in lbs:
                small = lb == LoadBalancing.SOURCE_ADDR_HASH
                cell = Cell(network, mode, reuse_port, 4, lb=lb, small_buffers=small)
                lb_id = f"-{_LB_IDS[lb]}" if not reuse_port else ""
                cells.append(
                    pytest.param(cell, id=f"{mode_id}-{proto_id}-4loops{lb_id}{'-smallbuf' if small else ''}")
                )
    cells.append(
        pytest.param(Cell("tcp", "sync", False, 1, edge_triggered=True), id="main-reactor-tcp-1loop-edge_triggered")
    )
    cells.append(
        pytest.param(
            Cell("tcp", "sync", False, 4, small_buffers=True, edge_triggered=True),
            id="main-reactor-tcp-4loops-edge_triggered-smallbuf-chunk16k",
        )
    )
    return cells


@pytest.mark.parametrize("cell", _cells())
def test_serve(cell: Cell, start_server: Any, tmp_path: Any) -> None:
    handler = EchoServer(cell.mode)
    try:
        if cell.network == "unix":
            path = str(tmp_path / "echo.sock")
            bg = start_server(handler, f"unix://{path}", **cell.options())
            family, addr = socket.AF_UNIX, path
        else:
            bg = start_server(handler, "tcp://127.0.0.1:0", **cell.options())
            family, addr = socket.AF_INET, bg.addr
        server = bg.server
        assert server.num_event_loop == cell.loops
        assert server.reuse_port is cell.reuse_port
        if cell.network == "unix":
            assert server.addr == path
        else:
            assert server.addr[0] == "127.0.0.1" and server.addr[1] > 0

        greeted = threading.Semaphore(0)
        go = threading.Event()
        clients = [EchoClient(family, addr, seed, greeted, go, cell.small_buffers) for seed in range(CLIENTS)]
        for cl in clients:
            cl.thread.start()
        try:
            for _ in clients:
                assert greeted.acquire(timeout=10), "a client never got its greeting"
            failed = [cl.error for cl in clients if cl.error is not None]
            assert not failed, f"clients failed before streaming: {failed!r}"
            # Every client is connected and greeted, none has closed: the
            # counters of all loops must add up to exactly the clients.
            assert server.count_connections() == CLIENTS
            with handler.lock:
                assert len(handler.opened) == CLIENTS
        finally:
            go.set()
            for cl in clients:
                cl.thread.join(CELL_DEADLINE + 10)
        assert not any(cl.thread.is_alive() for cl in clients), "a client thread hung"
        errors = [(cl.thread.name, cl.error) for cl in clients if cl.error is not None]
        assert not errors, f"clients failed: {errors!r}"
        assert all(cl.greeting == GREETING for cl in clients)
        assert all(cl.echo_ok for cl in clients)

        # The clients closed after their echo: the server sees every EOF.
        deadline = time.monotonic() + 5
        while server.count_connections() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.count_connections() == 0

        bg.stop()
        assert not bg.running, "serve() has not returned after stop"
    finally:
        handler.close_workers()

    assert handler.shutdown_calls == 1
    with handler.lock:
        opened = list(handler.opened)
        closed = list(handler.closed)
        problems = list(handler.problems)
    assert not problems, problems
    assert len(opened) == CLIENTS
    # on_closed exactly once per opened connection, each with a clean EOF.
    assert sorted(map(id, (c for c, _ in closed))) == sorted(map(id, opened))
    assert [err for _, err in closed] == [None] * CLIENTS
    assert all(c.context is None and not c.opened for c in opened)
