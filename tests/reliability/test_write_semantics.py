"""Write semantics at the edges: close, drain, back-pressure and resets with output still on its way.

What the rest of the suite already pins (not repeated here): a peer's EOF
after a request with an 8 MiB answer (test_rel_peer_faults.py,
``test_half_close_after_request_still_gets_the_full_response``), an RST in
the middle of a 32 MiB answer on a connection that is not closing
(``test_rst_in_the_middle_of_a_large_response``), a small answer with
``Action.CLOSE`` (tests/scenarios/test_actions.py, tests/unit/test_direct_path.py),
a short greeting from ``on_opened`` with ``Action.CLOSE``, ``close()`` from
another thread after the answer was read, and 8 threads of small
``async_write`` messages (test_rel_integrity.py).

This file adds the cases where the bytes are still *between* the handler and
the kernel when the connection changes state: large answers drained by
``Action.CLOSE`` to a slow reader, many writes (``write``, ``writev``, the
returned answer) in one callback, ``close()`` right behind writes that were
made in the same loop iteration, ``async_write`` of mixed sizes against
back-pressure, and resets of peers whose answer is being drained or is in
flight while fds are reused. Each test says in its docstring which mistake
makes it fail; every byte is checked (content depends on the offset, so a
lost, duplicated or reordered piece shows), every wait is bounded.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from typing import Any

import pytest

import reactor
from reactor import Action
from reliability_support import (
    SOCK_TIMEOUT,
    WAIT,
    Recorder,
    Worker,
    echo_round_trip,
    pattern,
    read_until_closed,
    recv_exact,
    reset,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
SMALL_BUF = 16 * KiB


# --- helpers ---------------------------------------------------------------------------------------
def check_bytes(got: bytes, want: bytes, what: str) -> None:
    """``got == want``, failing with the length and the first differing offset (not a diff of megabytes)."""
    if got == want:
        return
    n = min(len(got), len(want))
    at = next((i for i in range(n) if got[i] != want[i]), n)
    raise AssertionError(
        f"{what}: got {len(got)} bytes, expected {len(want)}; first difference at offset {at}: "
        f"got {got[at:at + 24]!r}, expected {want[at:at + 24]!r}"
    )


def read_slowly_then_to_eof(sock: socket.socket, slow_bytes: int, step: int = 4 * KiB,
                            pause: float = 0.002) -> tuple[bytes, str]:
    """Read ``slow_bytes`` in ``step``-byte recvs with a pause after each, then everything until the close.

    Returns ``(data, "eof" | "reset")``; a recv that blocks longer than the
    socket's timeout raises (the server neither sent nor closed).
    """
    buf = bytearray()
    deadline = time.monotonic() + 4 * SOCK_TIMEOUT
    while len(buf) < slow_bytes:
        assert time.monotonic() < deadline, f"slow phase: {len(buf)} of {slow_bytes} bytes"
        try:
            chunk = sock.recv(step)
        except ConnectionResetError:
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
        time.sleep(pause)
    rest, how = read_until_closed(sock)
    return bytes(buf) + rest, how


def nothing_more(sock: socket.socket, wait: float = 0.2) -> None:
    """No further byte arrives within ``wait`` seconds (nothing duplicated late), and no close."""
    sock.settimeout(wait)
    try:
        extra = sock.recv(1)
    except TimeoutError:
        return
    finally:
        sock.settimeout(SOCK_TIMEOUT)
    raise AssertionError(f"unexpected {'EOF' if not extra else repr(extra)} after the expected bytes")


# --- 1. Action.CLOSE after a large answer, slow reader --------------------------------------------------
BIG = pattern(8 * MiB)
SPLIT = 3 * MiB  # written with c.write() before react returns the rest


class BigThenClose(Recorder):
    """``GO`` is answered with BIG (its head by ``c.write``, the rest returned) and ``Action.CLOSE``."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame != b"GO":
            return frame, Action.NONE
        c.write(BIG[:SPLIT])
        return BIG[SPLIT:], Action.CLOSE


@pytest.mark.parametrize("edge_triggered", [False, True], ids=["LT", "ET"])
@pytest.mark.parametrize("codec", [None, "line"], ids=["built-in-codec", "line-codec"])
def test_close_action_after_a_large_answer_reaches_a_slow_reader_whole(
    codec: str | None, edge_triggered: bool, start_server: Any, socks: Any
) -> None:
    """8 MiB then Action.CLOSE, small buffers, a reader slow at first: every byte in order, then EOF.

    Fails if: the drain closes while bytes are still on their way, resends/skips after a partial send, or never ends.
    """
    h = BigThenClose()
    opts: dict[str, Any] = {"codec": reactor.LineBasedFrameCodec()} if codec else {}
    bg = start_server(h, socket_send_buffer=SMALL_BUF, edge_triggered=edge_triggered, **opts)
    bystander = socks.connect(bg.addr)
    s = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
    conn = h.conn_for(s)
    s.sendall(b"GO\n" if codec else b"GO")
    want = BIG[:SPLIT] + b"\n" + BIG[SPLIT:] + b"\n" if codec else BIG
    data, how = read_slowly_then_to_eof(s, slow_bytes=512 * KiB)
    check_bytes(data, want, "the answer before the close")
    assert how == "eof", "the server reset the connection instead of finishing the answer"
    assert h.error_of(conn) is None
    # The same loop still serves others.
    echo_round_trip(bystander, b"after the drain\n")
    bystander.close()
    wait_until(lambda: bg.server.count_connections() == 0, what="count_connections() == 0")
    assert h.n_opened() == h.n_closed() == 2
    bg.stop()


# --- 2. a large greeting from on_opened with Action.CLOSE ---------------------------------------------
GREETING_HEAD = b"HELLO " * 100
GREETING = pattern(2 * MiB, salt=5)


class GreetAndClose(Recorder):
    """on_opened writes a head with ``c.write``, returns a 2 MiB greeting and ``Action.CLOSE``."""

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        super().on_opened(c)
        c.write(GREETING_HEAD)
        return GREETING, Action.CLOSE


def test_greeting_larger_than_the_socket_buffers_with_close_from_on_opened(start_server: Any, socks: Any) -> None:
    """A 2 MiB greeting returned with Action.CLOSE from on_opened (after a c.write there) arrives whole, then EOF.

    Fails if: on_opened's output (before any read was armed) is lost or reordered, or its drain closes too early.
    """
    h = GreetAndClose()
    bg = start_server(h, socket_send_buffer=SMALL_BUF)
    s = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
    data, how = read_slowly_then_to_eof(s, slow_bytes=256 * KiB)
    check_bytes(data, GREETING_HEAD + GREETING, "the greeting")
    assert how == "eof"
    (conn,) = h.wait_opened(1)
    assert h.error_of(conn) is None
    wait_until(lambda: bg.server.count_connections() == 0, what="count_connections() == 0")
    bg.stop()


# --- 3. many small writes in one callback --------------------------------------------------------------
N_SMALL = 1000


def numbered(i: int) -> bytes:
    return b"%09d\n" % i  # 10 bytes


ALL_NUMBERED = b"".join(numbered(i) for i in range(N_SMALL))


class ManyWrites(Recorder):
    """``GO``: 1,000 ``c.write`` of 10 bytes each, then ends as ``self.ending`` says; anything else echoes."""

    def __init__(self, ending: str) -> None:
        super().__init__()
        self.ending = ending

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame != b"GO":
            return frame, Action.NONE
        for i in range(N_SMALL - 1):
            c.write(numbered(i))
        last = numbered(N_SMALL - 1)
        if self.ending == "close-action":
            return last, Action.CLOSE
        if self.ending == "close-call":
            c.write(last)
            c.close()  # queued: runs after this callback, in the same loop iteration at the latest
            return None, Action.NONE
        return last, Action.NONE


@pytest.mark.parametrize("ending", ["none", "close-action", "close-call"])
def test_a_thousand_small_writes_in_one_react_arrive_in_order(ending: str, start_server: Any, socks: Any) -> None:
    """1,000 numbered 10-byte c.write() calls in one react: all arrive, in order; with a close, then EOF.

    Fails if: writes batched into one submission are dropped or reordered, or a close right behind them loses them.

    10,000 bytes fit the kernel's buffers, so even ``close()``, which sends
    only what the kernel takes without blocking, owes all of them.
    """
    h = ManyWrites(ending)
    bg = start_server(h)
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    s.sendall(b"GO")
    if ending == "none":
        check_bytes(recv_exact(s, len(ALL_NUMBERED)), ALL_NUMBERED, "the numbered writes")
        nothing_more(s)
        echo_round_trip(s, b"and then an echo")
        s.close()
    else:
        data, how = read_until_closed(s)
        check_bytes(data, ALL_NUMBERED, "the numbered writes before the close")
        assert how == "eof"
    assert h.error_of(conn) is None
    bg.stop()


# --- 4. writev mixed with write --------------------------------------------------------------------------
PIECES = [
    pattern(100, salt=1),  # c.write
    pattern(200, salt=2),  # writev[0]
    pattern(300, salt=3),  # writev[1] (a bytearray)
    pattern(1 * MiB + 7, salt=4),  # writev[2] (a memoryview): larger than the buffers, the writev is cut short
    pattern(400, salt=5),  # writev[3]
    pattern(500, salt=6),  # c.write after the writev: queued behind its remainder
    pattern(600, salt=7),  # c.writev of one buffer
    pattern(700, salt=8),  # the answer react returns
]


class WritevMix(Recorder):
    def __init__(self, close: bool) -> None:
        super().__init__()
        self.close = close

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame != b"GO":
            return frame, Action.NONE
        p = PIECES
        c.write(p[0])
        c.writev([p[1], bytearray(p[2]), memoryview(p[3]), p[4]])
        c.write(p[5])
        c.writev([p[6]])
        return p[7], (Action.CLOSE if self.close else Action.NONE)


@pytest.mark.parametrize("close", [False, True], ids=["then-none", "then-close-action"])
def test_writev_mixed_with_write_keeps_the_order(close: bool, start_server: Any, socks: Any) -> None:
    """write, a 4-buffer writev with 1 MiB in the middle, write, writev, returned answer: in order, whole.

    Fails if: later writes overtake a writev's unsent remainder, or a partial writev drops/reorders its buffers.
    """
    h = WritevMix(close)
    bg = start_server(h, socket_send_buffer=SMALL_BUF)
    s = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
    conn = h.conn_for(s)
    s.sendall(b"GO")
    want = b"".join(PIECES)
    if close:
        data, how = read_slowly_then_to_eof(s, slow_bytes=128 * KiB)
        check_bytes(data, want, "write/writev output before the close")
        assert how == "eof"
    else:
        time.sleep(0.1)  # the server's writes stay cut short for a while
        check_bytes(recv_exact(s, len(want)), want, "write/writev output")
        nothing_more(s)
        echo_round_trip(s, b"still in step")
        s.close()
    assert h.error_of(conn) is None
    bg.stop()


# --- 5. async_write of mixed sizes against back-pressure ---------------------------------------------
N_CHUNKS = 2000
HEADER = struct.Struct(">II")  # sequence number, payload length


def chunk_sizes() -> list[int]:
    """Log-uniform sizes from 16 B to 64 KiB (mostly small, some large: about 15 MiB in all)."""
    rng = random.Random(20240611)
    return [int(16 * 4096 ** rng.random()) for _ in range(N_CHUNKS)]


def chunk_payload(seq: int, n: int) -> bytes:
    return pattern(n, salt=seq % 251)


class PushOnly(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return None, Action.NONE  # output comes only from the producer thread


def test_async_write_of_mixed_sizes_against_back_pressure_arrives_whole_in_order(
    start_server: Any, socks: Any
) -> None:
    """2,000 numbered async_write/async_writev chunks (16 B-64 KiB) to a reader that starts late and slow.

    Fails if: chunks queued while a send is in flight are lost/reordered/repeated, or wait_writable() never returns.
    """
    h = PushOnly()
    cap = 256 * KiB
    bg = start_server(h, write_buffer_cap=cap, socket_send_buffer=SMALL_BUF)
    s = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
    conn = h.conn_for(s)
    sizes = chunk_sizes()

    def produce() -> int:
        slowed = 0
        for seq, n in enumerate(sizes):
            payload = chunk_payload(seq, n)
            if seq % 5 == 4:
                below = conn.async_writev([HEADER.pack(seq, n), payload])  # one chunk over two buffers
            else:
                below = conn.async_write(HEADER.pack(seq, n) + payload)
            if not below:
                slowed += 1
                assert conn.wait_writable(timeout=WAIT), f"wait_writable() timed out at chunk {seq}"
        return slowed

    producer = Worker(produce, name="rel-producer")
    time.sleep(0.3)  # the reader starts late: the producer runs into the cap first
    buf = bytearray()
    slow_until = 256 * KiB
    off = 0
    seq = 0
    deadline = time.monotonic() + 4 * SOCK_TIMEOUT
    while seq < N_CHUNKS:
        assert time.monotonic() < deadline, f"only {seq} of {N_CHUNKS} chunks arrived"
        chunk = s.recv(4 * KiB if off + len(buf) < slow_until else 1 * MiB)
        assert chunk, f"EOF after {seq} chunks"
        buf += chunk
        while len(buf) >= HEADER.size:
            got_seq, n = HEADER.unpack_from(buf)
            assert got_seq == seq, f"expected chunk {seq}, got one saying {got_seq} (lost, duplicated or reordered)"
            assert n == sizes[seq], f"chunk {seq}: length {n}, expected {sizes[seq]}"
            if len(buf) < HEADER.size + n:
                break
            check_bytes(bytes(buf[HEADER.size:HEADER.size + n]), chunk_payload(seq, n), f"chunk {seq}")
            del buf[:HEADER.size + n]
            off += HEADER.size + n
            seq += 1
        if off < slow_until:
            time.sleep(0.002)
    slowed = producer.result()
    assert buf == b"", f"{len(buf)} bytes after the last chunk"
    nothing_more(s)
    assert slowed > 0, "async_write never reported back-pressure: the test did not exercise it"
    wait_until(lambda: conn.outbound_buffered() == 0, what="the outbound buffer to drain")
    s.close()
    assert h.error_of(conn) is None
    bg.stop()


# --- 6. a reset while the answer is being drained ------------------------------------------------------
class DrainBig(Recorder):
    """``GO``: BIG and ``Action.CLOSE``; ``HOLD``: BIG (the peer then half-closes); anything else echoes."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame == b"GO":
            return BIG, Action.CLOSE
        if frame == b"HOLD":
            return BIG, Action.NONE
        return frame, Action.NONE


@pytest.mark.parametrize("how", ["close-action", "peer-eof"])
def test_reset_while_draining_closes_with_the_error_and_spares_the_others(
    how: str, start_server: Any, socks: Any
) -> None:
    """The peer resets while its 8 MiB answer is drained (Action.CLOSE, or after its own EOF): on_closed comes soon.

    Fails if: the drain waits forever on a dead peer (or a cancelled send), reports a clean close, or stalls the loop.

    The error must say the peer reset: ``None`` would tell the handler that a
    truncated answer was delivered.
    """
    h = DrainBig()
    # write_buffer_cap=0: the 8 MiB answer never pauses reading, so the peer's EOF is read at once and the
    # connection really is draining (not merely paused) when the reset comes.
    bg = start_server(h, socket_send_buffer=SMALL_BUF, write_buffer_cap=0)
    bystander = socks.connect(bg.addr)
    echo_round_trip(bystander)
    victim = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
    vconn = h.conn_for(victim)
    if how == "close-action":
        victim.sendall(b"GO")
    else:
        victim.sendall(b"HOLD")
        victim.shutdown(socket.SHUT_WR)  # the server drains the answer to a half-closed peer
    check_bytes(recv_exact(victim, 64 * KiB), BIG[:64 * KiB], "the head of the answer")
    time.sleep(0.05)  # the server is blocked on a full socket buffer now, answer in flight
    assert vconn.opened, "closed before the answer was out"
    reset(victim)
    err = h.error_of(vconn, timeout=5)
    assert isinstance(err, (ConnectionResetError, BrokenPipeError)), repr(err)
    echo_round_trip(bystander, b"still served\n")
    bystander.close()
    wait_until(lambda: bg.server.count_connections() == 0, what="count_connections() == 0")
    assert h.n_opened() == h.n_closed() == 2
    bg.stop()


# --- 7. resets with answers in flight, fds reused at once ----------------------------------------------
ANSWER = pattern(4 * MiB, salt=9)


class AnswerOrEcho(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame == b"GO":
            return ANSWER, Action.NONE
        return frame, Action.NONE


def test_resets_with_answers_in_flight_then_fd_reuse_get_no_stale_completions(
    start_server: Any, socks: Any
) -> None:
    """Rounds of: a peer resets with 4 MiB in flight, a new connection (same fd, likely) echoes 256 KiB at once.

    Fails if: a stale (cancelled) send completion on a reused fd is applied to the new connection, or on_closed lags.
    """
    h = AnswerOrEcho()
    bg = start_server(h, socket_send_buffer=SMALL_BUF)
    rounds = 8
    for r in range(rounds):
        victim = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
        victim.sendall(b"GO")
        check_bytes(recv_exact(victim, 32 * KiB), ANSWER[:32 * KiB], f"round {r}: head of the answer")
        reset(victim)
        wait_until(lambda r=r: h.n_closed() >= 2 * r + 1, timeout=5, what=f"round {r}: the reset peer's on_closed")
        fresh = socks.connect(bg.addr, rcvbuf=SMALL_BUF)
        payload = pattern(256 * KiB, salt=r)
        sender = Worker(lambda f=fresh, p=payload: f.sendall(p), name="rel-sender")
        got = recv_exact(fresh, len(payload))
        sender.result()
        check_bytes(got, payload, f"round {r}: the fresh connection's echo")
        nothing_more(fresh, 0.05)
        fresh.close()
        wait_until(lambda r=r: h.n_closed() >= 2 * r + 2, timeout=5, what=f"round {r}: the fresh peer's on_closed")
    with h.lock:
        errs = [e for _, e in h.closed]
    victims, fresh_ones = errs[0::2], errs[1::2]
    assert all(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in victims), victims
    assert fresh_ones == [None] * rounds, fresh_ones
    wait_until(lambda: bg.server.count_connections() == 0, what="count_connections() == 0")
    bg.stop()


# --- 8. writes from on_opened, react and wake, then close() -----------------------------------------
class Staged(Recorder):
    """Writes at every stage: on_opened, react, and react(None) from a wake, which then calls c.close()."""

    def __init__(self) -> None:
        super().__init__()
        self.reacted = threading.Event()

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        super().on_opened(c)
        c.write(b"open-write;")
        return b"open-return;", Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:  # the wake
            c.write(b"wake-write-1;")
            c.writev([b"wake-writev-a;", b"wake-writev-b;"])
            c.close()
            return b"wake-return;", Action.NONE  # written now: the close is queued behind it
        c.write(b"react-write;")
        self.reacted.set()
        return b"react-return;", Action.NONE


STAGED = (b"open-write;open-return;react-write;react-return;"
          b"wake-write-1;wake-writev-a;wake-writev-b;wake-return;")


def test_writes_from_on_opened_react_and_wake_arrive_before_a_close_from_the_wake(
    start_server: Any, socks: Any
) -> None:
    """Bytes written in on_opened, react and a woken react(None) that then calls c.close(): all, in order, then EOF.

    Fails if: close() drops bytes written (not yet submitted) before it, or output of different stages is reordered.
    """
    h = Staged()
    bg = start_server(h)
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    s.sendall(b"go")
    assert h.reacted.wait(WAIT)
    conn.wake()  # the client has read nothing yet: earlier output may still be on its way
    data, how = read_until_closed(s)
    check_bytes(data, STAGED, "the staged output")
    assert how == "eof"
    assert h.error_of(conn) is None
    bg.stop()


class Quiet(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return None, Action.NONE


def test_async_writes_then_close_from_the_same_thread_arrive_before_the_eof(start_server: Any, socks: Any) -> None:
    """async_write, async_writev, then close() at once from another thread: the bytes arrive, then EOF.

    Fails if: the close task loses the async writes queued ahead of it (not yet submitted) or sends them out of order.
    """
    h = Quiet()
    bg = start_server(h)
    conns = []
    sockets = []
    for _ in range(20):  # several connections: the race between the writes' submission and the close varies
        s = socks.connect(bg.addr)
        sockets.append(s)
        conns.append(h.conn_for(s))
    parts = [pattern(3000, salt=i) for i in range(3)]
    for c in conns:
        c.async_write(parts[0])
        c.async_writev([parts[1], parts[2]])
        c.close()
    for i, s in enumerate(sockets):
        data, how = read_until_closed(s)
        check_bytes(data, b"".join(parts), f"connection {i}")
        assert how == "eof"
    for c in conns:
        assert h.error_of(c) is None
    bg.stop()
