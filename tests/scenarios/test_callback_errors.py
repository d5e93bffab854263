"""reactor's own contracts: an exception or a wrong return type in a callback
closes only that connection and is logged; loop-only Conn methods refuse
other threads.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

import reactor
from reactor import Action
from scenario_support import (
    SOCK_TIMEOUT,
    WAIT,
    Clients,
    Recorder,
    echo_round_trip,
    error_records,
    read_until_closed,
    recv_exact,
)


# --- exceptions in callbacks ------------------------------------------------------------------
class Faulty(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.raised: list[BaseException] = []
        self.bad_result: Any = None

    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return b"hi", Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> Any:
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

    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
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
    def after_close(self, c: reactor.Conn, err: BaseException | None) -> Action:
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
