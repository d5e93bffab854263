"""Options as ``serve`` applies them (validated before binding, num_event_loop,
read_buffer_cap), and count_connections across loops with each load balancer.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import reactor
from reactor import Action, LoadBalancing
from scenario_support import (
    WAIT,
    Clients,
    LoopRecorder,
    NeverStarts,
    Recorder,
    echo_round_trip,
    recv_exact,
)


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
        ("log_level", "nope"),
        ("multicore", "yes"),
        ("edge_triggered_io_chunk", 0),
        ("logger", "reactor"),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
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


class NoCallbacks:
    """Implements none of the callbacks."""


WRONG_TYPES = [
    pytest.param(lambda addr: reactor.serve(NeverStarts, addr), r"pass NeverStarts\(\) instead of NeverStarts",
                 id="handler-class"),
    pytest.param(lambda addr: reactor.serve(NoCallbacks(), addr), "implements none of the callbacks",
                 id="handler-without-callbacks"),
    pytest.param(lambda addr: reactor.serve(NeverStarts(), addr, codec=reactor.LineBasedFrameCodec),
                 r"pass codec=LineBasedFrameCodec\(\) instead of codec=LineBasedFrameCodec", id="codec-class"),
    pytest.param(lambda addr: reactor.serve(NeverStarts(), addr, codec=object()),
                 r"codec must have encode\(c, data\) and decode\(c\) methods", id="codec-object"),
    pytest.param(lambda addr: reactor.serve(NeverStarts(), addr, options={"multicore": True}),
                 "options must be a reactor.Options", id="options-dict"),
    pytest.param(lambda addr: reactor.serve(NeverStarts(), 9000), "proto_addr must be a str", id="address-int"),
]


@pytest.mark.parametrize(("call", "match"), WRONG_TYPES)
def test_wrong_types_raise_type_error_before_binding(call: Any, match: str, busy_port: int) -> None:
    """Each says what to pass, before anything is bound (the busy port would raise OSError)."""
    with pytest.raises(TypeError, match=match):
        call(f"tcp://127.0.0.1:{busy_port}")


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

    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        # Hold the loop until the client has sent everything (or 0.5 s), so
        # reads find a full socket buffer and are limited only by the cap.
        self.gate.wait(0.5)
        return None, Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
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
