"""The direct read path: built-in codec, no encode, no write hooks (EventLoop._read writes itself).

That path is a second copy of _react_frame + Conn._write_raw written out for
speed, so it gets its own tests of every branch those two have: output types,
empty output, partial writes, output queued behind pending output, actions,
exceptions and bad results, and idle_timeout bookkeeping. Each test first
checks that the server really runs on the direct path (``EventLoop.read_path == "direct"``),
so a change that silently routes it elsewhere fails here instead of passing.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

import reactor
from netsupport import recv_up_to
from reactor import Action, Conn
from reactor.testing import serve_in_background

pytestmark = pytest.mark.timeout(60)

SOCK_TIMEOUT = 10.0


class Handler(reactor.EventServer):
    """Answers by the first byte of each read (each test sends one request per read)."""

    def __init__(self) -> None:
        self.server: reactor.Server | None = None
        self.closed: dict[int, BaseException | None] = {}
        self.lock = threading.Lock()

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        return Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        with self.lock:
            self.closed[c.remote_addr[1]] = err  # type: ignore[index]
        return Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> Any:
        assert frame is not None
        kind, rest = frame[:1], frame[1:]
        if kind == b"A":
            return bytearray(rest), Action.NONE
        if kind == b"M":
            return memoryview(rest), Action.NONE
        if kind == b"E":
            return b"", Action.NONE
        if kind == b"N":
            return None, Action.NONE
        if kind == b"S":
            return rest.decode(), Action.NONE  # wrong type: str
        if kind == b"T":
            return rest  # wrong shape: not a 2-tuple
        if kind == b"R":
            raise RuntimeError("react failed on purpose")
        if kind == b"C":
            return rest, Action.CLOSE
        if kind == b"B":
            return bytes([i % 251 for i in range(int(rest))]), Action.NONE  # a big answer
        return frame, Action.NONE  # echo


def direct(srv: Any) -> None:
    """Assert the server's loops run the direct path (else these tests would test something else)."""
    engine = srv.server._engine
    deadline = time.monotonic() + SOCK_TIMEOUT
    while not list(engine.lb) and time.monotonic() < deadline:
        time.sleep(0.001)  # the loops are created just after on_init_complete returns
    loops = list(engine.lb)
    assert loops and all(el.read_path == "direct" for el in loops), [el.read_path for el in loops]


def connect(srv: Any, rcvbuf: int = 0) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(SOCK_TIMEOUT)
    s.connect(srv.addr)
    return s


def assert_closed_by_server(s: socket.socket) -> None:
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass


def test_bytes_like_answers_and_empty_answers() -> None:
    with serve_in_background(Handler()) as srv:
        direct(srv)
        with connect(srv) as s:
            for request, answer in [(b"xhello", b"xhello"), (b"Abytearray", b"bytearray"), (b"Mview", b"view")]:
                s.sendall(request)
                assert recv_up_to(s, len(answer)) == answer
            # Nothing to write (b"" or None): nothing arrives, the connection stays usable.
            for nothing in (b"E", b"N"):
                s.sendall(nothing)
                time.sleep(0.05)  # one request per read
            s.sendall(b"xafter")
            assert recv_up_to(s, 6) == b"xafter"


def test_big_answer_goes_out_whole_and_in_order_through_partial_writes() -> None:
    """8 MiB against a small receive buffer: write(2) takes part, the rest is queued and flushed;
    a request arriving meanwhile is answered *after* it, never written around it."""
    size = 8 * 1024 * 1024
    expected = bytes([i % 251 for i in range(size)])
    with serve_in_background(Handler(), socket_send_buffer=64 * 1024) as srv:
        direct(srv)
        with connect(srv, rcvbuf=32 * 1024) as s:
            s.sendall(b"B%d" % size)
            time.sleep(0.1)  # let the first write be partial and the rest queue up
            s.sendall(b"xnext")
            got = recv_up_to(s, size + 5)
            assert got[:size] == expected
            assert got[size:] == b"xnext"


@pytest.mark.parametrize("request_bytes,exc_type,words", [
    (b"Sstr", TypeError, "react()"),
    (b"Tnot a tuple", TypeError, "react()"),
    (b"Rboom", RuntimeError, "on purpose"),
])
def test_bad_results_and_exceptions_close_only_that_connection(request_bytes: bytes, exc_type: type,
                                                               words: str) -> None:
    h = Handler()
    srv = serve_in_background(h)
    try:
        direct(srv)
        with connect(srv) as good, connect(srv) as bad:
            good.sendall(b"xbefore")
            assert recv_up_to(good, 7) == b"xbefore"
            bad.sendall(request_bytes)
            assert_closed_by_server(bad)
            deadline = time.monotonic() + SOCK_TIMEOUT
            port = bad.getsockname()[1]
            while port not in h.closed and time.monotonic() < deadline:
                time.sleep(0.01)
            err = h.closed.get(port)
            assert isinstance(err, exc_type) and words in str(err), repr(err)
            good.sendall(b"xafter")
            assert recv_up_to(good, 6) == b"xafter"
        # Deliberate: reactor.testing recorded the same error (an exception, or the
        # TypeError of a refused result); taken, so stop() does not re-raise it.
        assert [type(e) for e in srv.take_errors()] == [exc_type]
    finally:
        srv.stop()


def test_close_action_delivers_the_answer_first() -> None:
    with serve_in_background(Handler()) as srv:
        direct(srv)
        with connect(srv) as s:
            s.sendall(b"Cgoodbye")
            assert recv_up_to(s, 7) == b"goodbye"
            assert_closed_by_server(s)


def test_idle_timeout_counts_direct_path_frames_as_activity() -> None:
    """A client that keeps talking is never idle; one that stops is closed after the timeout.

    The margins are wide (a frame every ~20 ms against a 1 s timeout): on a
    loaded 2-core machine a 0.3 s timeout was once outlasted by a stall.
    """
    h = Handler()
    with serve_in_background(h, idle_timeout=1.0) as srv:
        direct(srv)
        with connect(srv) as busy, connect(srv) as quiet:
            quiet.sendall(b"xonce")
            assert recv_up_to(quiet, 5) == b"xonce"
            end = time.monotonic() + 2.5
            while time.monotonic() < end:  # 2.5 s of traffic, over two idle periods
                busy.sendall(b"xping")
                assert recv_up_to(busy, 5) == b"xping"
                time.sleep(0.02)
            assert_closed_by_server(quiet)
            busy.sendall(b"xstill")
            assert recv_up_to(busy, 6) == b"xstill"
