"""Bounded by construction (issue 17): every queue, timer and loop has a limit, and an attack proves it.

Each test plays the attacker through real sockets on 127.0.0.1 and measures
what the attack costs the server: its timer heap, its RSS, how long a
neighbour on the same loop waits, how many log lines it writes. Every attack
is itself bounded (a count, a deadline, or a safety valve in the hostile
handler), so a regression fails the test instead of hanging the run.

The rows of docs/reliability.md's "What is bounded" table name these tests.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

import pytest

import reactor
from reactor import Action
from reliability_support import (
    FULL,
    SOCK_TIMEOUT,
    Recorder,
    Sampler,
    Worker,
    echo_round_trip,
    recv_exact,
    rss_bytes,
    settled_rss,
    wait_until,
)

KiB = 1024
MiB = 1024 * 1024
NONE = Action.NONE

edge_modes = pytest.mark.parametrize("edge_triggered", [False, True], ids=["level-triggered", "edge-triggered"])


# --- 1. timers: O(1) entries per connection ------------------------------------------------------------
PIPELINE = 1_000_000  # set_deadline calls, one per pipelined request


class DeadlinePerRequest(reactor.EventServer):
    """What Conn.set_deadline's docstring suggests: push the deadline on after each request.

    Samples the loop's timer heap on the loop thread (exact, no race) after
    each call.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.max_heap = 0
        self.last: Any = None

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        self.last = c
        return None, NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        c.set_deadline(60)
        self.frames += 1
        n = len(c._loop.timers)  # the test reads the heap; the library never reaches in like this
        if n > self.max_heap:
            self.max_heap = n
        if frame == b"end":
            return b"done", NONE
        return None, NONE


@pytest.mark.timeout(180)
def test_set_deadline_on_every_pipelined_request_keeps_the_timer_heap_small(start_server: Any, socks: Any,
                                                                           record_property: Any) -> None:
    """1M pipelined requests each push the deadline on: the heap holds a few entries, not 1M (+272 MiB)."""
    h = DeadlinePerRequest()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec(), idle_timeout=60)
    s = socks.connect(bg.addr, timeout=150)
    s.sendall(b"end\n")  # warm-up: the connection and its first entries exist before measuring
    assert recv_exact(s, 5) == b"done\n"
    before = settled_rss()
    s.sendall(b"r\n" * PIPELINE + b"end\n")
    assert recv_exact(s, 5) == b"done\n"
    grown = settled_rss() - before
    record_property("max_heap", h.max_heap)
    record_property("rss_grown_mib", round(grown / MiB, 1))
    assert h.frames == PIPELINE + 2
    # One deadline entry and one idle entry per connection (two while a
    # deadline moved earlier waits to be compacted away).
    assert h.max_heap <= 4 and grown < 32 * MiB, (
        f"{h.max_heap} timer entries for one connection after {PIPELINE} set_deadline calls; "
        f"RSS grew {grown / MiB:.0f} MiB"
    )


class DeadlineEarlier(DeadlinePerRequest):
    """Each request moves the deadline *earlier*: the case a lazy re-arm cannot absorb."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        c.set_deadline(600 - self.frames * 0.001)
        self.frames += 1
        n = len(c._loop.timers)
        if n > self.max_heap:
            self.max_heap = n
        return (b"done", NONE) if frame == b"end" else (None, NONE)


@pytest.mark.timeout(120)
def test_deadlines_moved_earlier_or_from_other_threads_keep_the_timer_heap_small(start_server: Any, socks: Any,
                                                                                 record_property: Any) -> None:
    """100k earlier deadlines from react, then 100k from another thread: still a few dozen entries at most."""
    h = DeadlineEarlier()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec())
    s = socks.connect(bg.addr, timeout=60)
    n = 100_000
    s.sendall(b"r\n" * n + b"end\n")
    assert recv_exact(s, 5) == b"done\n"
    # Cancelled entries are compacted away once they are over half the heap.
    record_property("max_heap_earlier", h.max_heap)
    assert h.max_heap <= 2 + 64, f"{h.max_heap} timer entries for one connection"
    conn = h.last
    timers = conn._loop.timers
    with Sampler(lambda: len(timers), interval=0.001) as heap:
        for i in range(n):  # later and earlier in turn, from a thread that is not the loop
            conn.set_deadline(600 + (i % 2) * 10 - i * 0.0001)
        time.sleep(0.05)
    record_property("max_heap_other_thread", heap.peak)
    assert heap.peak <= 2 + 64, f"{heap.peak} timer entries after {n} set_deadline calls from another thread"
    s.sendall(b"end\n")  # still served, and not closed by any of those deadlines
    assert recv_exact(s, 5) == b"done\n"


class WeakOpens(reactor.EventServer):
    """Keeps only weak references to its connections, so whatever else keeps one alive shows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refs: list[weakref.ref[reactor.Conn]] = []
        self.closed = 0
        self.timers: Any = None

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        c.set_deadline(300)  # both purposes: the idle entry and a deadline entry
        with self.lock:
            self.refs.append(weakref.ref(c))
            self.timers = c._loop.timers
        return None, NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        with self.lock:
            self.closed += 1
        return NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, NONE


SHORT_CONNS = 20_000 if FULL else 2_000


@pytest.mark.timeout(120)
def test_closed_connections_are_not_kept_alive_by_their_timers(start_server: Any, record_property: Any) -> None:
    """idle_timeout=300 and a 300 s deadline, then short connections: none of them outlives its close."""
    h = WeakOpens()
    bg = start_server(h, idle_timeout=300)
    batch = 100
    for done in range(batch, SHORT_CONNS + 1, batch):
        conns = [socket.create_connection(bg.addr, timeout=SOCK_TIMEOUT) for _ in range(batch)]
        for s in conns:
            s.close()
        wait_until(lambda n=done: h.closed >= n, what=f"{done} on_closed")  # type: ignore[misc]
    gc.collect()
    with h.lock:
        alive = sum(r() is not None for r in h.refs)
        heap = len(h.timers)
    record_property("alive", alive)
    record_property("heap", heap)
    # At most the last one: the poller's loop keeps its last task's arguments
    # (the register task of the last connection) in a local until the next task.
    assert alive <= 1, f"{alive} of {SHORT_CONNS} closed connections are still alive"
    assert heap <= 64, f"{heap} timer entries left behind by {SHORT_CONNS} closed connections"


# --- 2. async_write: back-pressure for producers ---------------------------------------------------------
CAP = 1 * MiB  # write_buffer_cap in these tests
LIMIT = 16 * MiB  # the default async_write_limit for that cap (4 x the cap, but at least 16 MiB)
CHUNK = 64 * KiB


class Silent(Recorder):
    """Never answers: all output is pushed from another thread."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return None, NONE


def _push_server(start_server: Any, socks: Any) -> tuple[Silent, socket.socket, reactor.Conn]:
    h = Silent()
    bg = start_server(h, write_buffer_cap=CAP, socket_send_buffer=16 * KiB)
    peer = socks.connect(bg.addr, rcvbuf=16 * KiB)  # connects and never reads (until told to)
    return h, peer, h.conn_for(peer)


@pytest.mark.timeout(60)
def test_async_write_to_a_peer_that_never_reads_is_refused_past_the_limit(start_server: Any, socks: Any,
                                                                          record_property: Any) -> None:
    """A producer that ignores every signal pushes 128 MiB at a non-reader: the server holds the limit, no more.

    Default options but the cap, so the default limit is what is tested.
    """
    h, peer, c = _push_server(start_server, socks)
    block = os.urandom(CHUNK)
    baseline = settled_rss()
    accepted = refused = 0
    with Sampler(rss_bytes, interval=0.005) as rss:
        for _ in range(2048):  # 128 MiB offered
            try:
                c.async_write(bytearray(block))  # a fresh copy each time, as real data would be
                accepted += 1
            except reactor.WriteBufferFullError:
                refused += 1
        time.sleep(0.3)  # let the loop run every queued task
    grown = rss.peak - baseline
    record_property("rss_grown_mib", round(grown / MiB, 1))
    record_property("accepted_refused", f"{accepted}/{refused}")
    assert grown < LIMIT + 8 * MiB, f"RSS grew {grown / MiB:.0f} MiB for a peer that reads nothing"
    assert refused > 0 and accepted * CHUNK <= LIMIT, (accepted, refused)
    assert c.opened, "refusing a write must not close the connection"
    # Everything that was accepted arrives, whole and in order, once the peer reads.
    for i in range(accepted):
        assert recv_exact(peer, CHUNK) == block, f"chunk {i} of {accepted} is wrong"


@pytest.mark.timeout(60)
def test_documented_push_pattern_holds_memory_at_the_cap(start_server: Any, socks: Any, record_property: Any) -> None:
    """async_write's bool plus wait_writable(): 32 MiB reach a slow reader while the server holds about the cap."""
    h, peer, c = _push_server(start_server, socks)
    block = os.urandom(CHUNK)
    total = 32 * MiB // CHUNK
    baseline = settled_rss()
    peak_pending = 0

    def produce() -> int:  # the pattern from Conn.async_write's docstring
        nonlocal peak_pending
        for _ in range(total):
            if not c.async_write(bytearray(block)):  # over the high-water mark
                peak_pending = max(peak_pending, c.outbound_buffered())
                if not c.wait_writable(timeout=5):
                    raise AssertionError("the peer stopped reading or went away")
        return total

    with Sampler(rss_bytes, interval=0.005) as rss:
        producer = Worker(produce, "rel-producer")
        time.sleep(0.5)  # the peer reads nothing for a while: the producer must wait
        stalled_rss = rss.peak - baseline
        for i in range(total):
            assert recv_exact(peer, CHUNK) == block, f"chunk {i} is wrong"
        assert producer.result() == total
    grown = rss.peak - baseline
    record_property("rss_stalled_mib", round(stalled_rss / MiB, 1))
    record_property("rss_grown_mib", round(grown / MiB, 1))
    record_property("peak_pending_kib", peak_pending // KiB)
    assert stalled_rss < CAP + 6 * MiB, f"RSS grew {stalled_rss / MiB:.1f} MiB while the peer read nothing"
    assert grown < CAP + 6 * MiB, f"RSS grew {grown / MiB:.1f} MiB pushing 32 MiB with cap {CAP >> 20} MiB"
    assert peak_pending <= CAP + 2 * CHUNK, peak_pending


# --- 3. no livelock from user code ----------------------------------------------------------------------
SPIN_VALVE = 3.0  # the hostile code gives up by itself after this long, so a regression cannot hang the run


class NonConsumingCodec(reactor.LineBasedFrameCodec):
    """A codec bug: for input starting with b"SPIN" it returns a frame and consumes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.spin_started: float | None = None

    def decode(self, c: reactor.Conn) -> bytes | None:
        if c.peek(4) == b"SPIN":
            now = time.monotonic()
            if self.spin_started is None:
                self.spin_started = now
            elif now - self.spin_started > SPIN_VALVE:
                raise reactor.CodecError("safety valve: the loop never stopped calling decode()")
            return b""
        return super().decode(c)


@edge_modes
def test_codec_returning_frames_without_consuming_closes_only_its_connection(
    edge_triggered: bool, start_server: Any, socks: Any, caplog: Any, record_property: Any
) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    h = Recorder()
    bg = start_server(h, codec=NonConsumingCodec(), edge_triggered=edge_triggered)  # one loop for both
    neighbour = socks.connect(bg.addr)
    echo_round_trip(neighbour, b"hello\n")
    victim = socks.connect(bg.addr)
    victim_conn = h.conn_for(victim)
    victim.sendall(b"SPIN\n")
    time.sleep(0.01)  # the victim's read reaches the loop first
    t0 = time.monotonic()
    neighbour.settimeout(SPIN_VALVE + 2)
    echo_round_trip(neighbour, b"are you there\n")
    waited = time.monotonic() - t0
    record_property("neighbour_ms", round(waited * 1000, 1))
    assert waited < 0.1, f"the neighbour waited {waited * 1000:.0f} ms behind a spinning codec"
    err = h.error_of(victim_conn, timeout=1)
    assert isinstance(err, reactor.CodecError) and "NonConsumingCodec" in str(err), repr(err)
    assert "safety valve" not in str(err)
    spins = [r for r in caplog.records if r.name == "reactor" and "NonConsumingCodec" in r.getMessage()]
    assert len(spins) == 1, [r.getMessage() for r in spins]
    echo_round_trip(neighbour, b"still served\n")


class SelfWaking(Recorder):
    """react(None) asks for another wake every time: a busy loop written in user code."""

    def __init__(self) -> None:
        super().__init__()
        self.wakes = 0
        self.first: float | None = None

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            self.wakes += 1
            now = time.monotonic()
            if self.first is None:
                self.first = now
            if now - self.first < SPIN_VALVE:  # the valve: a regression must not hang the run
                c.wake()
            return None, NONE
        return frame, NONE


def test_react_waking_itself_does_not_starve_the_loop(start_server: Any, socks: Any, record_property: Any) -> None:
    h = SelfWaking()
    bg = start_server(h)  # one loop for both connections
    neighbour = socks.connect(bg.addr)
    echo_round_trip(neighbour)
    busy = socks.connect(bg.addr)
    h.conn_for(busy).wake()
    wait_until(lambda: h.wakes > 100, what="the self-waking connection to spin")
    neighbour.settimeout(SPIN_VALVE + 2)
    for i in range(5):
        t0 = time.monotonic()
        echo_round_trip(neighbour, b"ping %d" % i)
        waited = time.monotonic() - t0
        record_property(f"neighbour_ms_{i}", round(waited * 1000, 1))
        # Not 100 ms: the self-waking connection really keeps its loop busy
        # (the user asked for that), and this test's client shares the GIL
        # with that busy thread, waiting up to a switch interval per socket
        # call. Starved, the neighbour would wait for the valve (3 s). The
        # bound sits between the two: 1 s was met by 0.1-0.9 s waits but once
        # missed with 1.34 s on this 2-core VM under steal (CI, 2026-12-07).
        assert waited < SPIN_VALVE * 2 / 3, (
            f"the neighbour waited {waited * 1000:.0f} ms behind a self-waking connection"
        )


class WakePusher(Recorder):
    """Answers every wake with 64 KiB, whether or not the peer reads (a tick-driven push)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0  # loop thread only

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            self.answered += 1
            return b"w" * CHUNK, NONE
        return None, NONE


@edge_modes
def test_wakes_do_not_grow_the_output_of_a_paused_connection(edge_triggered: bool, start_server: Any,
                                                             socks: Any, record_property: Any) -> None:
    """2,000 wakes each answered with 64 KiB to a peer that never reads: output stays near the cap."""
    h = WakePusher()
    bg = start_server(h, write_buffer_cap=CAP, socket_send_buffer=16 * KiB, edge_triggered=edge_triggered)
    peer = socks.connect(bg.addr, rcvbuf=16 * KiB)
    c = h.conn_for(peer)
    with Sampler(c.outbound_buffered, interval=0.001) as out:
        for i in range(2000):
            c.wake()
            if i % 50 == 0:
                time.sleep(0.001)  # let the loop run the wakes
        time.sleep(0.2)
    record_property("peak_outbound_kib", out.peak // KiB)
    assert out.peak <= CAP + CHUNK, f"{out.peak / MiB:.0f} MiB queued for a peer that reads nothing"
    # Once the peer reads, the wakes held back meanwhile are answered (as one:
    # wakes not yet run are merged), and everything answered arrives.
    answered_while_paused = h.answered
    got = 0
    peer.settimeout(0.5)
    try:
        while True:
            chunk = peer.recv(1 << 20)
            assert chunk, "closed"
            got += len(chunk)
    except TimeoutError:
        pass
    assert h.answered == answered_while_paused + 1, (answered_while_paused, h.answered)
    assert got == h.answered * CHUNK


# --- 4. logging a peer can trigger is rate-limited ------------------------------------------------------
@pytest.mark.timeout(60)
def test_oversized_datagrams_log_a_bounded_number_of_lines(start_server: Any, caplog: Any,
                                                           record_property: Any) -> None:
    caplog.set_level(logging.WARNING, logger="reactor")
    h = Recorder()
    bg = start_server(h, "udp://127.0.0.1:0", read_buffer_cap=1024)
    host, port = bg.addr[0], bg.addr[1]
    big = b"x" * 2000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        t0 = time.monotonic()
        for _ in range(5000):
            s.sendto(big, (host, port))
        time.sleep(0.2)
        elapsed = time.monotonic() - t0
        lines = [r for r in caplog.records if r.name == "reactor" and "datagram" in r.getMessage()]
        record_property("lines", len(lines))
        record_property("elapsed_s", round(elapsed, 2))
        assert 0 < len(lines) <= 10 * (elapsed + 1), f"{len(lines)} log lines from 5,000 oversized datagrams"
        # Once the window has passed, the next line says how many were suppressed.
        time.sleep(1.1)
        s.sendto(big, (host, port))
        wait_until(lambda: any("suppressed" in r.getMessage() for r in caplog.records), timeout=2,
                   what="a line counting the suppressed messages")
    assert any(r.getMessage().endswith("similar messages suppressed)") for r in caplog.records)
    # The datagrams that fit are still served.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(SOCK_TIMEOUT)
        s.sendto(b"small", (host, port))
        assert s.recvfrom(64)[0] == b"small"


class RaisesOnBoom(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is not None and frame.startswith(b"boom"):
            raise ValueError("the peer found a bug")
        return frame, NONE


@pytest.mark.timeout(60)
def test_a_peer_making_react_raise_logs_a_bounded_number_of_tracebacks(start_server: Any, caplog: Any,
                                                                       record_property: Any) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    h = RaisesOnBoom()
    bg = start_server(h)
    t0 = time.monotonic()
    n = 300
    for _ in range(n):
        with socket.create_connection(bg.addr, timeout=SOCK_TIMEOUT) as s:
            s.sendall(b"boom")
            assert s.recv(16) == b""  # closed for it
    elapsed = time.monotonic() - t0
    h.wait_closed(n)
    lines = [r for r in caplog.records if r.name == "reactor" and "react() raised" in r.getMessage()]
    record_property("lines", len(lines))
    record_property("elapsed_s", round(elapsed, 2))
    assert 0 < len(lines) <= 10 * (elapsed + 1), f"{len(lines)} tracebacks logged for {n} hostile requests"
    assert all(isinstance(e, ValueError) for _, e in h.closed), "every on_closed still gets the exception"


# --- suite gaps: resuming held-back requests; an idle server stays off the CPU -----------------------------
class Answers256K(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        assert frame is not None
        return answer(int(frame))[:-1], NONE  # the codec adds the newline


def answer(i: int) -> bytes:
    return bytes([65 + i]) * (256 * KiB - 1) + b"\n"


@edge_modes
def test_pipelined_requests_held_back_by_the_cap_are_all_answered(edge_triggered: bool, start_server: Any,
                                                                  socks: Any) -> None:
    """20 pipelined requests x 256 KiB over a 1 MiB cap: reading pauses, and every held request is answered.

    The requests arrive in one read, so once the cap pauses the connection
    no readable event will come for the ones held back: only the resume
    (EventLoop._resumed, from the RESUMED state change) can get them decoded.
    """
    h = Answers256K()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec(), write_buffer_cap=CAP, socket_send_buffer=16 * KiB,
                      edge_triggered=edge_triggered)
    s = socks.connect(bg.addr, rcvbuf=16 * KiB)
    c = h.conn_for(s)
    s.sendall(b"".join(b"%d\n" % i for i in range(20)))
    wait_until(lambda: c.outbound_buffered() > CAP, what="the cap to pause the connection")
    s.settimeout(3)
    for i in range(20):
        got = b""
        for _ in range(8):  # slowly at first, then at full speed
            got += recv_exact(s, 32 * KiB)
            if i < 2:
                time.sleep(0.01)
        assert got == answer(i), f"answer {i} is wrong"
    assert c.opened


def _thread_cpu_seconds(native_ids: list[int]) -> float:
    """utime + stime of these threads of this process, from /proc/self/task/<tid>/stat."""
    ticks = 0
    for tid in native_ids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after "pid (comm)"
    return ticks / os.sysconf("SC_CLK_TCK")


class Ticking(Recorder):
    def tick(self) -> tuple[float, Action]:
        return 0.05, NONE


@pytest.mark.parametrize("idle_timeout", [0, 30], ids=["no-idle-timeout", "idle-timeout"])
@pytest.mark.parametrize("ticker", [False, True], ids=["no-ticker", "ticker"])
def test_an_idle_server_stays_off_the_cpu(idle_timeout: float, ticker: bool, start_server: Any, socks: Any,
                                          record_property: Any) -> None:
    before = set(threading.enumerate())
    h = Ticking()
    bg = start_server(h, num_event_loop=2, idle_timeout=idle_timeout, ticker=ticker)
    held = [socks.connect(bg.addr) for _ in range(10)]
    for s in held:
        echo_round_trip(s)
    for c in h.wait_opened(len(held)):
        c.set_deadline(30)  # a deadline far away on each, too
    server_threads = [t.native_id for t in threading.enumerate() if t not in before and t.native_id is not None]
    assert len(server_threads) >= 2
    time.sleep(0.1)
    cpu0, t0 = _thread_cpu_seconds(server_threads), time.monotonic()
    time.sleep(1.0)
    cpu, wall = _thread_cpu_seconds(server_threads) - cpu0, time.monotonic() - t0
    record_property("cpu_ms", round(cpu * 1000))
    assert cpu < 0.05 * wall, f"an idle server used {cpu * 1000:.0f} ms of CPU in {wall:.2f} s"
    for s in held:
        echo_round_trip(s)
