"""Slow peers: idle_timeout and Conn.set_deadline, scaled down so each case takes about a second.

``idle_timeout`` closes a connection that for that long has produced no
decoded frame *and* made no output progress; ``set_deadline(s)`` closes it s
seconds from the call, whatever it does, unless moved or cleared (None).
Both close with ``on_closed(c, TimeoutError)`` and log the reason at INFO.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest

import reactor
from reactor import Action
from reliability_support import (
    SOCK_TIMEOUT,
    Recorder,
    echo_round_trip,
    pattern,
    read_until_closed,
    recv_exact,
    wait_until,
)

IDLE = 0.5
TICK = 0.1
MiB = 1024 * 1024


def closed_by_server(sock: socket.socket, timeout: float = 3.0) -> str:
    """Wait until the server closes ``sock``: "eof" or "reset" (fails on a timeout)."""
    sock.settimeout(timeout)
    try:
        _, how = read_until_closed(sock)
    finally:
        sock.settimeout(SOCK_TIMEOUT)
    return how


# --- slowloris vs. idle_timeout -----------------------------------------------------------------
@pytest.mark.parametrize("edge_triggered", [False, True], ids=["level-triggered", "edge-triggered"])
def test_slowloris_is_closed_by_idle_timeout_but_an_active_client_is_not(
    edge_triggered: bool, start_server: Any, socks: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    h = Recorder()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec(), idle_timeout=IDLE, edge_triggered=edge_triggered)
    slow = socks.connect(bg.addr)
    active = socks.connect(bg.addr)
    slow_conn, active_conn = h.conn_for(slow), h.conn_for(active)

    t0 = time.monotonic()
    n = 0
    slow_alive = True
    while time.monotonic() - t0 < 1.6:
        if slow_alive:
            try:
                slow.send(b"a")  # one byte per tick, never a newline: never a frame
            except OSError:
                slow_alive = False
            if not slow_conn.opened:
                slow_alive = False
        echo_round_trip(active, b"frame %d\n" % n)  # a complete frame per tick
        n += 1
        time.sleep(TICK)

    err = h.error_of(slow_conn, timeout=0.1)
    assert isinstance(err, TimeoutError), repr(err)
    lived = h.lifetime(slow_conn)
    assert IDLE <= lived < IDLE + 1.0, f"slowloris lived {lived:.2f} s with idle_timeout={IDLE}"
    assert closed_by_server(slow) in ("eof", "reset")
    # The active client went on for the whole period and is still open.
    assert active_conn.opened and n >= 10
    echo_round_trip(active, b"still here\n")
    assert any("idle" in r.getMessage() for r in caplog.records if r.name == "reactor"), "no log of the idle close"
    bg.stop()
    assert h.error_of(active_conn) is None


# --- set_deadline ------------------------------------------------------------------------------------
class DeadlineCommands(Recorder):
    """Line protocol: ``deadline S`` arms a deadline in S seconds, ``clear`` cancels it, anything else echoes."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        assert frame is not None
        if frame.startswith(b"deadline "):
            c.set_deadline(float(frame.split()[1]))
            return b"armed", Action.NONE
        if frame == b"clear":
            c.set_deadline(None)
            return b"cleared", Action.NONE
        return frame, Action.NONE


@pytest.fixture
def deadline_server(start_server: Any) -> tuple[Any, DeadlineCommands]:
    h = DeadlineCommands()
    return start_server(h, codec=reactor.LineBasedFrameCodec()), h


def test_set_deadline_from_react_closes_with_timeout_error(deadline_server: Any, socks: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    bg, h = deadline_server
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    t0 = time.monotonic()
    s.sendall(b"deadline 0.3\n")
    assert recv_exact(s, 6) == b"armed\n"
    assert closed_by_server(s) in ("eof", "reset")
    took = time.monotonic() - t0
    assert 0.3 <= took < 1.0, took
    err = h.error_of(conn)
    assert isinstance(err, TimeoutError) and "deadline" in str(err)
    assert any("deadline" in r.getMessage() for r in caplog.records if r.name == "reactor")


def test_set_deadline_closes_even_an_active_connection(deadline_server: Any, socks: Any) -> None:
    """Unlike idle_timeout, a deadline is absolute: activity does not push it on."""
    bg, h = deadline_server
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    s.sendall(b"deadline 0.4\n")
    assert recv_exact(s, 6) == b"armed\n"
    t0 = time.monotonic()
    while conn.opened and time.monotonic() - t0 < 2:
        try:
            echo_round_trip(s, b"busy\n")
        except (ConnectionError, AssertionError):
            break
        time.sleep(0.05)
    assert isinstance(h.error_of(conn, timeout=1), TimeoutError)
    assert 0.35 <= h.lifetime(conn) < 1.2


def test_set_deadline_from_another_thread(deadline_server: Any, socks: Any) -> None:
    bg, h = deadline_server
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    echo_round_trip(s, b"hello\n")
    t0 = time.monotonic()
    setter = threading.Thread(target=conn.set_deadline, args=(0.3,), name="rel-deadline-setter")
    setter.start()
    setter.join(SOCK_TIMEOUT)
    assert closed_by_server(s) in ("eof", "reset")
    assert 0.3 <= time.monotonic() - t0 < 1.0
    assert isinstance(h.error_of(conn), TimeoutError)


@pytest.mark.parametrize("where", ["react", "other-thread"])
def test_set_deadline_none_cancels(where: str, deadline_server: Any, socks: Any) -> None:
    bg, h = deadline_server
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    s.sendall(b"deadline 0.3\n")
    assert recv_exact(s, 6) == b"armed\n"
    time.sleep(0.1)
    if where == "react":
        s.sendall(b"clear\n")
        assert recv_exact(s, 8) == b"cleared\n"
    else:
        conn.set_deadline(None)
    time.sleep(0.6)  # well past the cancelled deadline
    assert conn.opened
    echo_round_trip(s, b"alive\n")
    s.close()
    assert h.error_of(conn) is None


def test_set_deadline_moved_later_from_another_thread(deadline_server: Any, socks: Any) -> None:
    bg, h = deadline_server
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    t0 = time.monotonic()
    s.sendall(b"deadline 0.2\n")
    assert recv_exact(s, 6) == b"armed\n"
    conn.set_deadline(0.7)  # replaces the first one
    time.sleep(0.4)
    assert conn.opened, "closed at the replaced deadline"
    assert closed_by_server(s) in ("eof", "reset")
    assert 0.7 <= time.monotonic() - t0 < 1.5
    assert isinstance(h.error_of(conn), TimeoutError)


def test_set_deadline_rejects_bad_values(deadline_server: Any, socks: Any) -> None:
    bg, h = deadline_server
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError):
            conn.set_deadline(bad)
    echo_round_trip(s, b"unharmed\n")


# --- output progress counts as activity ---------------------------------------------------------------
class BigOnRequest(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        assert frame is not None
        return pattern(int(frame)), Action.NONE


@pytest.mark.parametrize("edge_triggered", [False, True], ids=["level-triggered", "edge-triggered"])
def test_slow_reader_of_a_large_response_is_not_idle(edge_triggered: bool, start_server: Any, socks: Any) -> None:
    h = BigOnRequest()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec(), idle_timeout=IDLE, socket_send_buffer=16 * 1024,
                      edge_triggered=edge_triggered)
    s = socks.connect(bg.addr, rcvbuf=16 * 1024)
    conn = h.conn_for(s)
    size = 1 * MiB
    s.sendall(b"%d\n" % size)
    t0 = time.monotonic()
    got = bytearray()
    while len(got) < size + 1:
        chunk = s.recv(min(32 * 1024, size + 1 - len(got)))
        assert chunk, f"closed after {len(got)} of {size + 1} bytes and {time.monotonic() - t0:.2f} s"
        got += chunk
        time.sleep(0.03)  # ~1 MB/s: the whole answer takes longer than idle_timeout
    took = time.monotonic() - t0
    assert got == pattern(size) + b"\n"
    assert took > 2 * IDLE, f"the read took only {took:.2f} s: not slower than idle_timeout, test is void"
    # Once the peer is idle (nothing left to send, nothing received) it is closed.
    assert closed_by_server(s) in ("eof", "reset")
    assert isinstance(h.error_of(conn), TimeoutError)


@pytest.mark.parametrize("half_closed", [False, True], ids=["stalled", "stalled-after-shutdown"])
def test_stalled_reader_is_closed_by_idle_timeout(half_closed: bool, start_server: Any, socks: Any) -> None:
    """A peer that takes nothing more of a queued answer (even after its own EOF) does not pin the connection."""
    h = BigOnRequest()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec(), idle_timeout=IDLE, socket_send_buffer=16 * 1024)
    s = socks.connect(bg.addr, rcvbuf=16 * 1024)
    conn = h.conn_for(s)
    s.sendall(b"%d\n" % (4 * MiB))
    if half_closed:
        s.shutdown(socket.SHUT_WR)
    wait_until(lambda: not conn.opened, timeout=3, what="the stalled connection to be closed")
    assert isinstance(h.error_of(conn), TimeoutError)
    assert IDLE <= h.lifetime(conn) < IDLE + 1.0
    wait_until(lambda: conn.outbound_buffered() == 0, timeout=2, what="the queued answer to be released")


class Pusher(Recorder):
    """Never answers frames; output comes only from another thread's async_write."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return None, Action.NONE


def test_push_only_connection_with_progressing_output_is_not_idle(start_server: Any, socks: Any) -> None:
    h = Pusher()
    bg = start_server(h, idle_timeout=IDLE)
    s = socks.connect(bg.addr)
    conn = h.conn_for(s)
    t0 = time.monotonic()
    n = 0
    try:
        while time.monotonic() - t0 < 3 * IDLE and conn.opened:
            conn.async_write(b"event %04d\n" % n)
            assert recv_exact(s, 11) == b"event %04d\n" % n  # the peer takes every byte at once
            n += 1
            time.sleep(TICK)
    except (ConnectionError, reactor.ServerInShutdownError):
        pass
    alive = conn.opened
    s.close()
    bg.stop()
    assert alive, f"closed after {n} pushes ({time.monotonic() - t0:.2f} s) with err {h.error_of(conn)!r}"
