"""Callback faults: an exception or a wrong return value in user code hurts only its own connection.

An exception in react, on_opened, on_closed, pre_write/after_write or a
codec's decode/encode is logged on the "reactor" logger with its traceback,
closes only the affected connection (the exception reaches ``on_closed``) and
the loop goes on; tick's exception is logged and ticking continues; a
callback returning the wrong shape gets a TypeError naming the callback.
All on one event loop, so "the loop keeps running" is tested literally: a
bystander connection on the same loop is served before and after.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import pytest

import reactor
from netsupport import open_fds
from reactor import Action
from reliability_support import (
    SOCK_TIMEOUT,
    Recorder,
    echo_round_trip,
    reactor_records,
    read_until_closed,
    wait_until,
)


class Boom(Exception):
    """The fault injected into user code."""


class Faulty(Recorder):
    """Echo handler whose callbacks fail for the victim connections only (matched by the client's port)."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault
        self.victims: set[int] = set()
        self.pre_write_calls: dict[int, int] = {}

    def is_victim(self, c: reactor.Conn) -> bool:
        ra = c.remote_addr
        return isinstance(ra, tuple) and ra[1] in self.victims

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        result = super().on_opened(c)
        if self.is_victim(c):
            if self.fault == "on_opened":
                raise Boom("on_opened failed")
            if self.fault == "on_opened-returns-bytes":
                return b"ab"  # type: ignore[return-value]
            if self.fault == "on_opened-returns-str":
                return "welcome", Action.NONE  # type: ignore[return-value]
        return result

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        victim = self.is_victim(c)
        super().on_closed(c, err)
        if victim and self.fault == "on_closed":
            raise Boom("on_closed failed")
        return Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame == b"big":
            return b"B" * (4 << 20), Action.NONE
        if self.is_victim(c):
            if self.fault == "react":
                raise Boom("react failed")
            if self.fault == "react-returns-bytes":
                return b"ab"  # type: ignore[return-value]
            if self.fault == "react-returns-none":
                return None  # type: ignore[return-value]
            if self.fault == "react-returns-3-tuple":
                return frame, Action.NONE, None  # type: ignore[return-value]
            if self.fault == "react-returns-str":
                return "text", Action.NONE  # type: ignore[return-value]
        return frame, Action.NONE

    def pre_write(self, c: reactor.Conn) -> None:
        n = self.pre_write_calls[id(c)] = self.pre_write_calls.get(id(c), 0) + 1
        if self.is_victim(c):
            if self.fault == "pre_write":
                raise Boom("pre_write failed")
            if self.fault == "pre_write-on-flush" and n >= 2:
                raise Boom("pre_write failed while flushing")

    def after_write(self, c: reactor.Conn, data: bytes) -> None:
        if self.is_victim(c) and self.fault == "after_write":
            raise Boom("after_write failed")


class FaultyLineCodec(reactor.LineBasedFrameCodec):
    """A line codec whose decode/encode fail for the victims."""

    def __init__(self, h: Faulty) -> None:
        super().__init__()
        self.h = h

    def decode(self, c: reactor.Conn) -> bytes | None:
        if self.h.is_victim(c):
            if self.h.fault == "decode":
                raise Boom("decode failed")
            if self.h.fault == "decode-codec-error":
                raise reactor.CodecError("decode refused the input")
        return super().decode(c)

    def encode(self, c: reactor.Conn, data: bytes) -> bytes:
        if self.h.is_victim(c) and self.h.fault == "encode":
            raise Boom("encode failed")
        return super().encode(c, data)


def victim_socket(h: Faulty, addr: Any, rcvbuf: int = 0) -> socket.socket:
    """A client whose port is registered as a victim before it connects (so on_opened already knows)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("127.0.0.1", 0))
    h.victims.add(s.getsockname()[1])
    s.settimeout(SOCK_TIMEOUT)
    s.connect(addr)
    return s


def start(start_server: Any, fault: str, **opts: Any) -> tuple[Any, Faulty]:
    h = Faulty(fault)
    return start_server(h, codec=FaultyLineCodec(h), num_event_loop=1, **opts), h


# fault -> (expected exception type in on_closed, text in the ERROR/WARNING log, message check)
CLOSING_FAULTS = {
    "react": (Boom, "react() raised", "react failed"),
    "on_opened": (Boom, "on_opened() raised", "on_opened failed"),
    "pre_write": (Boom, "react() output failed", "pre_write failed"),
    "after_write": (Boom, "react() output failed", "after_write failed"),
    "decode": (Boom, "decode() raised", "decode failed"),
    "decode-codec-error": (reactor.CodecError, "decode refused the input", "decode refused the input"),
    "encode": (Boom, "react() output failed", "encode failed"),
    "react-returns-bytes": (TypeError, "react() must return", "react()"),
    "react-returns-none": (TypeError, "react() must return", "react()"),
    "react-returns-3-tuple": (TypeError, "react() must return", "react()"),
    "on_opened-returns-bytes": (TypeError, "on_opened() must return", "on_opened()"),
}


@pytest.mark.parametrize("fault", list(CLOSING_FAULTS))
def test_fault_closes_only_the_affected_connection(fault: str, start_server: Any, socks: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="reactor")
    err_type, log_text, message = CLOSING_FAULTS[fault]
    bg, h = start(start_server, fault)
    bystander = socks.connect(bg.addr)
    echo_round_trip(bystander, b"before\n")

    victim = socks.adopt(victim_socket(h, bg.addr))
    vconn = h.conn_for(victim)
    if not fault.startswith("on_opened"):
        victim.sendall(b"trigger\n")
    data, how = read_until_closed(victim)
    # after_write runs once the echo was handed to the kernel: that much is delivered.
    assert how == "eof" and data == (b"trigger\n" if fault == "after_write" else b""), (how, data[:80])

    err = h.error_of(vconn)
    assert isinstance(err, err_type), repr(err)
    assert message in str(err), f"{err!r} does not say {message!r}"
    records = [r for r in reactor_records(caplog, logging.WARNING) if log_text in r.getMessage() or
               (r.exc_info and log_text in str(r.exc_info[1]))]
    assert records, f"nothing logged with {log_text!r}: {[r.getMessage() for r in caplog.records]}"
    if err_type is Boom:
        # Unexpected exceptions are logged with their traceback, at ERROR.
        assert any(r.levelno == logging.ERROR and r.exc_info and r.exc_info[1] is err for r in records)

    # The loop goes on: the bystander (same loop) is served, and new clients too.
    echo_round_trip(bystander, b"after\n")
    fresh = socks.connect(bg.addr)
    echo_round_trip(fresh, b"fresh\n")
    assert bg.server.count_connections() == 2
    assert bystander in socks._open and not vconn.opened


def test_on_closed_raising_is_logged_and_the_loop_goes_on(start_server: Any, socks: Any, caplog: Any) -> None:
    bg, h = start(start_server, "on_closed")
    bystander = socks.connect(bg.addr)
    victim = socks.adopt(victim_socket(h, bg.addr))
    vconn = h.conn_for(victim)
    echo_round_trip(victim, b"fine so far\n")
    victim.close()
    assert h.error_of(vconn) is None
    wait_until(lambda: any("on_closed() raised" in r.getMessage() for r in reactor_records(caplog)),
               what="the on_closed exception to be logged")
    rec = next(r for r in reactor_records(caplog) if "on_closed() raised" in r.getMessage())
    assert rec.exc_info and isinstance(rec.exc_info[1], Boom)
    wait_until(lambda: bg.server.count_connections() == 1, what="count_connections() == 1")
    echo_round_trip(bystander, b"unaffected\n")


class TickFaults(Recorder):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.ticks = 0

    def tick(self) -> tuple[float, Action]:
        self.ticks += 1
        if self.ticks == 1:
            if self.mode == "raises":
                raise Boom("tick failed")
            return "soon", Action.NONE  # type: ignore[return-value]
        return 0.05, Action.NONE


@pytest.mark.parametrize("mode", ["raises", "returns-wrong-type"])
def test_tick_fault_is_logged_and_ticking_goes_on(mode: str, start_server: Any, socks: Any, caplog: Any) -> None:
    h = TickFaults(mode)
    bg = start_server(h, ticker=True)
    client = socks.connect(bg.addr)
    wait_until(lambda: h.ticks >= 3, timeout=5, what="ticking to go on after the fault")
    recs = reactor_records(caplog)
    if mode == "raises":
        assert any("tick() raised" in r.getMessage() and r.exc_info and isinstance(r.exc_info[1], Boom) for r in recs)
    else:
        assert any("tick() must return" in r.getMessage() for r in recs), [r.getMessage() for r in recs]
    echo_round_trip(client, b"served\n")


def test_pre_write_raising_while_flushing_closes_the_connection(start_server: Any, socks: Any,
                                                               caplog: Any) -> None:
    bg, h = start(start_server, "pre_write-on-flush", socket_send_buffer=16 * 1024)
    victim = socks.adopt(victim_socket(h, bg.addr, rcvbuf=16 * 1024))
    vconn = h.conn_for(victim)
    victim.sendall(b"big\n")  # 4 MiB: most of it waits for EPOLLOUT, whose flush calls pre_write again
    victim.settimeout(0.05)
    deadline = time.monotonic() + 1.0
    while vconn.opened and time.monotonic() < deadline:
        try:
            victim.recv(1 << 16)  # make room: EPOLLOUT fires and the flush runs
        except (TimeoutError, ConnectionError):
            pass
    closed = not vconn.opened
    spins = sum(1 for r in caplog.records if "error while handling events" in r.getMessage())
    bg.stop()  # (closes it, whatever happened)
    assert closed, f"still open after 1 s; the same exception was logged {spins} times"


@pytest.mark.parametrize("fault", ["react-returns-str", "on_opened-returns-str"])
def test_wrong_data_type_error_names_the_callback(fault: str, start_server: Any, socks: Any) -> None:
    bg, h = start(start_server, fault)
    victim = socks.adopt(victim_socket(h, bg.addr))
    vconn = h.conn_for(victim)
    if fault.startswith("react"):
        victim.sendall(b"trigger\n")
    read_until_closed(victim)
    err = h.error_of(vconn)
    assert isinstance(err, TypeError), repr(err)
    callback = fault.split("-")[0]
    assert f"{callback}()" in str(err), f"{err!r} does not name {callback}()"


@pytest.mark.allow_leaks  # checked here instead, so that a leak is reported and then cleaned up
def test_on_init_complete_raising_leaks_nothing() -> None:
    """serve() re-raises on_init_complete's exception with nothing left open.

    (Regression: the Engine opens its spare /dev/null fd before on_init_complete
    runs; until b8d5aab an exception there leaked it, one fd per failed start.)
    """
    class FailsAtInit(reactor.EventServer):
        def on_init_complete(self, server: reactor.Server) -> Action:
            raise Boom("init failed")

    before = open_fds()
    with pytest.raises(Boom):
        reactor.serve(FailsAtInit(), "tcp://127.0.0.1:0")
    time.sleep(0.05)
    leaked = {fd: target for fd, target in open_fds().items() if fd not in before}
    for fd in leaked:  # leave the session clean whatever the outcome
        try:
            os.close(fd)
        except OSError:
            pass
    assert leaked == {}, f"fds left open by a serve() whose on_init_complete raised: {leaked}"
