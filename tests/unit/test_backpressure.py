"""Conn.async_write's back-pressure: its result, the hard limit, wait_writable, and what they count.

Real sockets on 127.0.0.1: a peer with a small receive buffer that reads
only when told to, and output pushed from the test thread.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

import reactor
from netsupport import recv_exact
from reactor import Action

KiB = 1024
CAP = 256 * KiB
LIMIT = 1024 * KiB


class Quiet(reactor.EventServer):
    """Never answers; remembers its connections; react() runs probes sent by the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conns: list[reactor.Conn] = []
        self.probe_result: list[Any] = []

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.conns.append(c)
        return None, Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame == b"wait_writable on the loop":
            try:
                c.wait_writable(0)
            except RuntimeError as e:
                self.probe_result.append(e)
        return None, Action.NONE

    def conn(self) -> reactor.Conn:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.lock:
                if self.conns:
                    return self.conns[-1]
            time.sleep(0.005)
        raise AssertionError("no connection opened")


@pytest.fixture
def pushed(start_server: Any) -> Any:
    h = Quiet()
    bg = start_server(h, write_buffer_cap=CAP, async_write_limit=LIMIT, socket_send_buffer=8 * KiB)
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * KiB)
    peer.settimeout(10)
    peer.connect(bg.addr)
    yield h, peer, h.conn()
    peer.close()


def drain(peer: socket.socket, n: int) -> bytes:
    return recv_exact(peer, n, timeout=10)


def test_async_write_says_when_to_slow_down_and_refuses_past_the_limit(pushed: Any) -> None:
    h, peer, c = pushed
    chunk = b"x" * (64 * KiB)
    results = []
    refused = None
    for _ in range(64):
        try:
            results.append(c.async_write(chunk))
        except reactor.WriteBufferFullError as e:
            refused = e
            break
    assert refused is not None, "4 MiB pushed at a non-reader and never refused"
    assert results[0] is True and results[-1] is False
    first_false = results.index(False)
    assert first_false * len(chunk) <= CAP < (first_false + 1) * len(chunk), first_false
    assert all(r is False for r in results[first_false:]), "once over the mark it stays False"
    assert len(results) * len(chunk) <= LIMIT
    assert "async_write_limit" in str(refused) and "wait_writable" in str(refused)
    assert c.opened
    # What was accepted arrives, and then the connection takes writes again.
    assert drain(peer, len(results) * len(chunk)) == chunk * len(results)
    assert c.wait_writable(timeout=5)
    assert c.async_write(b"again") is True
    assert drain(peer, 5) == b"again"


def test_a_single_write_larger_than_the_limit_is_accepted_when_nothing_waits(pushed: Any) -> None:
    h, peer, c = pushed
    big = b"y" * (LIMIT + 1)
    assert c.async_write(big) is False  # accepted, but over the high-water mark
    with pytest.raises(reactor.WriteBufferFullError):
        c.async_write(b"m" * CAP)  # the kernel took at most a few KiB of the big one
    assert drain(peer, len(big)) == big


def test_async_writev_counts_its_total(pushed: Any) -> None:
    h, peer, c = pushed
    assert c.async_writev([b"c", b"d"]) is True
    assert c.async_writev([b"a" * (CAP // 2), b"b" * (CAP // 2 + 1)]) is False  # the total passes the cap
    assert drain(peer, CAP + 3) == b"cd" + b"a" * (CAP // 2) + b"b" * (CAP // 2 + 1)


def test_wait_writable_returns_when_the_peer_reads(pushed: Any) -> None:
    h, peer, c = pushed
    while c.async_write(b"z" * (64 * KiB)):
        pass
    assert c.wait_writable(0) is False, "timeout=0 only checks"
    assert c.wait_writable(0.05) is False
    got = bytearray()

    def reader() -> None:
        time.sleep(0.1)
        while True:
            chunk = peer.recv(1 << 20)
            if not chunk:
                return
            got.extend(chunk)
            if len(got) >= CAP:
                return

    t = threading.Thread(target=reader)
    t.start()
    t0 = time.monotonic()
    assert c.wait_writable(timeout=5) is True
    assert time.monotonic() - t0 >= 0.09, "returned before the peer read anything"
    assert c.outbound_buffered() <= CAP // 2
    t.join(5)


def test_wait_writable_returns_false_when_the_connection_closes(pushed: Any) -> None:
    h, peer, c = pushed
    while c.async_write(b"z" * (64 * KiB)):
        pass
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(c.wait_writable(timeout=10)))
    waiter.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    c.close()
    waiter.join(5)
    assert result == [False] and not c.opened
    assert time.monotonic() - t0 < 1


def test_wait_writable_on_the_loop_raises(pushed: Any) -> None:
    h, peer, c = pushed
    peer.sendall(b"wait_writable on the loop")
    deadline = time.monotonic() + 5
    while not h.probe_result and time.monotonic() < deadline:
        time.sleep(0.005)
    assert h.probe_result and isinstance(h.probe_result[0], RuntimeError)
    assert "producer thread" in str(h.probe_result[0])


def test_writes_queued_for_a_closed_connection_stop_counting(pushed: Any) -> None:
    h, peer, c = pushed
    peer.close()  # the server sees EOF and closes; queued writes are then dropped
    deadline = time.monotonic() + 5
    while c.opened and time.monotonic() < deadline:
        try:
            c.async_write(b"q" * 1000)
        except reactor.WriteBufferFullError:
            pass
        time.sleep(0.001)
    assert not c.opened
    time.sleep(0.05)
    assert c._async_pending == 0, "dropped writes must not stay counted"


def test_udp_conns_never_wait(start_server: Any) -> None:
    class Echo(reactor.EventServer):
        def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
            assert c.async_write(b"async:" + (frame or b"")) is True
            assert c.wait_writable(0) is True
            return None, Action.NONE

    bg = start_server(Echo(), "udp://127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"hi", bg.addr)
        assert s.recvfrom(64)[0] == b"async:hi"


def test_wake_and_close_calls_from_a_thread_queue_one_task_each(start_server: Any) -> None:
    """A thread calling wake() or close() in a loop queues one task, not one per call."""
    woken = threading.Event()

    class Counting(Quiet):
        def __init__(self) -> None:
            super().__init__()
            self.wakes = 0

        def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
            if frame is None:
                self.wakes += 1
                woken.wait(5)  # hold the loop while the test thread calls wake() 10,000 times
            return None, Action.NONE

    h = Counting()
    bg = start_server(h)
    with socket.create_connection(bg.addr, timeout=5) as s:
        c = h.conn()
        poller = c._loop.poller
        c.wake()
        deadline = time.monotonic() + 5
        while h.wakes == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        for _ in range(10_000):
            c.wake()
            c.close()
        queued = len(poller._urgent) + len(poller._normal)
        woken.set()
        assert queued <= 2, f"{queued} tasks queued by 10,000 wake() and close() calls"
        assert s.recv(16) == b""  # the one close did its job
    deadline = time.monotonic() + 5
    while c.opened and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not c.opened and h.wakes == 2, h.wakes  # the first wake, then the 10,000 merged into one
