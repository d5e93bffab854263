"""UDP serving: one SO_REUSEPORT socket per loop, ``react`` once per datagram.

gnet counterparts: the udp cells of TestServe (echo, async echo with
SendTo), TestUDPShutdown; plus reactor's own decisions: a datagram larger
than ``read_buffer_cap`` is dropped and logged rather than handed to
``react`` truncated, and no ``on_opened``/``on_closed`` is called for
datagrams, whose conn (and context) lives for one ``react``.

Loopback UDP does not drop under this load, but each request/response pair
may be retried twice on a timeout so that a scheduling hiccup does not fail
the run; the number of retries is reported in the assertion messages.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import struct
import threading
import time
from typing import Any

import pytest

import reactor
from netsupport import has_ipv6_loopback, wait_for
from reactor import Action

CLIENTS = 4
DATAGRAMS = 200
RECV_TIMEOUT = 0.5
RETRIES = 2
CELL_DEADLINE = 20.0


class UDPEcho(reactor.EventServer):
    """Echo each datagram from ``react`` (sync) or from a worker with ``c.send_to`` (async)."""

    def __init__(self, mode: str = "sync", action: Action = Action.NONE) -> None:
        assert mode in ("sync", "async")
        self.mode = mode
        self.action = action
        self.lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.shutdowns = 0
        self.frames: list[bytes] = []
        self.conns: list[reactor.Conn] = []  # kept alive, so ids stay distinct
        self.remotes: set[Any] = set()
        self.locals: set[Any] = set()
        self.threads: set[str] = set()
        self.problems: list[str] = []
        self._q: queue.Queue[Any] = queue.Queue()
        self._worker: threading.Thread | None = None
        if mode == "async":
            self._worker = threading.Thread(target=self._work, name="udp-echo-worker", daemon=True)
            self._worker.start()

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.opened += 1
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        with self.lock:
            self.closed += 1
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        with self.lock:
            self.shutdowns += 1
        self.stop_worker()

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            if not isinstance(c, reactor.UDPConn):
                self.problems.append(f"react got {c!r}, not a UDPConn")
            if c.context is not None:
                self.problems.append(f"context persisted between datagrams: {c.context!r}")
            c.context = ("seen", len(self.frames))
            self.frames.append(frame)  # type: ignore[arg-type]
            self.conns.append(c)
            self.remotes.add(c.remote_addr)
            self.locals.add(c.local_addr)
            self.threads.add(threading.current_thread().name)
        if self.mode == "sync":
            return frame, self.action
        self._q.put((c, bytes(frame)))  # type: ignore[arg-type]
        return None, self.action

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            c, data = item
            try:
                c.send_to(data)  # from a thread that is not the loop's
            except Exception as e:  # pragma: no cover - reported by the test
                with self.lock:
                    self.problems.append(f"send_to raised {e!r}")

    def stop_worker(self) -> None:
        if self._worker is not None:
            self._q.put(None)
            self._worker.join(5)
            self._worker = None


def start_udp(start_server: Any, handler: UDPEcho, proto_addr: str = "udp://127.0.0.1:0", **opts: Any) -> Any:
    try:
        return start_server(handler, proto_addr, **opts)
    except BaseException:
        handler.stop_worker()
        raise


def udp_client(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(RECV_TIMEOUT)
    s.bind((host, 0))  # a concrete local address, to compare with remote_addr
    return s


def exchange(s: socket.socket, addr: Any, payload: bytes, retries: list[int]) -> bytes:
    """Send ``payload`` and return the matching echo; retry the pair on a timeout at most RETRIES times."""
    for attempt in range(RETRIES + 1):
        s.sendto(payload, addr)
        deadline = time.monotonic() + RECV_TIMEOUT
        while time.monotonic() < deadline:
            try:
                data, sender = s.recvfrom(65536)
            except TimeoutError:
                break
            assert sender[:2] == addr[:2], f"echo from {sender!r}, not the server {addr!r}"
            if data[:6] == payload[:6]:
                return data
            # A late echo of an earlier, retried datagram: skip it.
        retries.append(attempt)
    raise AssertionError(f"no echo after {RETRIES + 1} attempts")


def run_clients(n: int, body: Any) -> list[str]:
    errors: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            body(i)
        except BaseException as e:
            with lock:
                errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=run, args=(i,), name=f"udp-client-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + CELL_DEADLINE
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "UDP clients still running"
    return errors


def sockets_bound_to_udp_port(port: int, table: str = "/proc/net/udp") -> int:
    count = 0
    with open(table) as f:
        next(f)
        for line in f:
            local = line.split()[1]
            if int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("loops", [1, 3])
def test_udp_echo_many_datagrams(start_server: Any, loops: int, mode: str) -> None:
    handler = UDPEcho(mode)
    bg = start_udp(start_server, handler, num_event_loop=loops)
    addr = bg.addr
    assert addr[0] == "127.0.0.1" and addr[1] > 0
    assert bg.server.num_event_loop == loops
    # Every loop has its own socket on the same port (SO_REUSEPORT); the
    # extra ones are bound after on_init_complete, so give them a moment.
    assert wait_for(lambda: sockets_bound_to_udp_port(addr[1]) == loops), sockets_bound_to_udp_port(addr[1])

    client_addrs: list[Any] = [None] * CLIENTS
    retries: list[int] = []

    def client(i: int) -> None:
        rng = random.Random(f"udp{loops}{mode}{i}")
        with udp_client() as s:
            client_addrs[i] = s.getsockname()
            for k in range(DATAGRAMS):
                payload = struct.pack("!HI", i, k) + rng.randbytes(rng.randint(0, 1000))
                echo = exchange(s, addr, payload, retries)
                assert echo == payload, f"datagram {k}: echo of {len(echo)} bytes differs"

    assert run_clients(CLIENTS, client) == []
    assert len(retries) <= 10, f"{len(retries)} retries: loopback UDP should not drop"
    bg.stop()
    assert handler.problems == []
    assert len(handler.frames) >= CLIENTS * DATAGRAMS
    # react saw each client's own address, and the server's address as local.
    assert handler.remotes == set(client_addrs)
    assert handler.locals == {addr}
    assert all(name.startswith("reactor-loop-") for name in handler.threads)
    # A fresh conn per datagram; none was opened or closed.
    assert len({id(c) for c in handler.conns}) == len(handler.conns)
    assert (handler.opened, handler.closed, handler.shutdowns) == (0, 0, 1)




@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_udp6_echo(start_server: Any, mode: str) -> None:
    handler = UDPEcho(mode)
    bg = start_udp(start_server, handler, "udp6://[::1]:0")
    addr = bg.addr
    assert len(addr) == 4 and addr[0] == "::1" and addr[1] > 0
    retries: list[int] = []
    with udp_client(socket.AF_INET6, "::1") as s:
        for k in range(50):
            payload = struct.pack("!HI", 6, k) + bytes(range(k % 256)) * 3
            assert exchange(s, addr, payload, retries) == payload
        mine = s.getsockname()
    bg.stop()
    assert handler.problems == []
    assert handler.remotes == {mine}
    assert len(handler.frames) >= 50


def test_udp_react_sees_sender_address_and_fresh_context(start_server: Any) -> None:
    handler = UDPEcho("sync")
    bg = start_udp(start_server, handler)
    retries: list[int] = []
    with udp_client() as a, udp_client() as b:
        for k in range(5):
            for s, tag in ((a, 1), (b, 2)):
                payload = struct.pack("!HI", tag, k)
                assert exchange(s, bg.addr, payload, retries) == payload
        expected = {a.getsockname(), b.getsockname()}
    bg.stop()
    assert handler.problems == []  # includes: the context never persisted
    assert handler.remotes == expected
    assert len(handler.conns) >= 10
    # Each datagram's conn is released once react returned.
    assert not any(c.opened for c in handler.conns)


@pytest.mark.parametrize("loops", [1, 3])
def test_udp_shutdown_from_react(start_server: Any, loops: int) -> None:
    """gnet TestUDPShutdown: react echoes and returns SHUTDOWN; the echo still arrives and serve returns."""
    handler = UDPEcho("sync", action=Action.SHUTDOWN)
    bg = start_udp(start_server, handler, num_event_loop=loops)
    port = bg.addr[1]
    with udp_client() as s:
        s.settimeout(3.0)
        s.sendto(b"last words", bg.addr)
        data, _ = s.recvfrom(65536)
        assert data == b"last words"
    bg.join(5)
    assert handler.shutdowns == 1
    assert (handler.opened, handler.closed) == (0, 0)
    # Every loop's socket is closed: the port can be bound without SO_REUSEPORT.
    assert sockets_bound_to_udp_port(port) == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))


def test_udp_datagram_larger_than_read_buffer_cap_is_dropped_and_logged(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = UDPEcho("sync")
    caplog.set_level(logging.WARNING, logger="reactor")
    bg = start_udp(start_server, handler, read_buffer_cap=1024)
    with udp_client() as s:
        s.settimeout(3.0)
        s.sendto(b"B" * 4000, bg.addr)
        s.sendto(b"A" * 1024, bg.addr)  # exactly the cap: delivered whole
        s.sendto(b"after", bg.addr)
        first, _ = s.recvfrom(65536)
        second, _ = s.recvfrom(65536)
    assert first == b"A" * 1024, f"first echo was {len(first)} bytes of {first[:1]!r}"
    assert second == b"after"
    bg.stop()
    assert handler.frames == [b"A" * 1024, b"after"]
    warnings = [
        r for r in caplog.records
        if r.name == "reactor" and r.levelno == logging.WARNING and "4000" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert "read_buffer_cap" in message and "truncated" in message


def test_udp_no_open_close_callbacks_and_codec_not_applied(start_server: Any) -> None:
    # A codec configured for the server does not frame datagrams (gnet never encodes UDP).
    handler = UDPEcho("sync")
    bg = start_udp(start_server, handler, codec=reactor.LineBasedFrameCodec())
    with udp_client() as s:
        s.settimeout(3.0)
        for payload in (b"no newline", b"two\nlines\n", b""):
            s.sendto(payload, bg.addr)
            data, _ = s.recvfrom(65536)
            assert data == payload
    bg.stop()
    assert handler.frames == [b"no newline", b"two\nlines\n", b""]
    assert (handler.opened, handler.closed) == (0, 0)


class Faulty(UDPEcho):
    """Raises on b"boom", returns a str (not bytes) on b"text", echoes anything else."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.conns.append(c)
            self.frames.append(frame)  # type: ignore[arg-type]
        if frame == b"boom":
            raise RuntimeError("boom")
        if frame == b"text":
            return "not bytes", Action.NONE  # type: ignore[return-value]
        return frame, Action.NONE


def test_udp_react_errors_are_logged_and_serving_goes_on(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="reactor")
    handler = Faulty()
    bg = start_udp(start_server, handler)
    with udp_client() as s:
        s.settimeout(3.0)
        s.sendto(b"boom", bg.addr)
        s.sendto(b"text", bg.addr)
        s.sendto(b"fine", bg.addr)
        data, _ = s.recvfrom(65536)
        assert data == b"fine"  # nothing was sent for the two failures
    bg.stop()
    assert handler.frames == [b"boom", b"text", b"fine"]
    messages = [r.getMessage() for r in caplog.records if r.name == "reactor" and r.levelno >= logging.ERROR]
    assert len(messages) == 2, messages
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


def test_udp_conn_of_a_raising_react_is_released(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="reactor")
    handler = Faulty()
    bg = start_udp(start_server, handler)
    with udp_client() as s:
        s.settimeout(3.0)
        s.sendto(b"boom", bg.addr)
        s.sendto(b"fine", bg.addr)
        assert s.recvfrom(65536)[0] == b"fine"
    bg.stop()
    boom, fine = handler.conns
    assert not fine.opened  # released after its react, as documented
    assert not boom.opened, "the conn of the datagram whose react raised still reports opened"
