"""Addresses and listeners: gnet's TestBadAddresses, an address in use, Unix
socket files (stale, live, regular file, case), SO_REUSEPORT listeners.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections import Counter
from typing import Any

import pytest

import reactor
from scenario_support import (
    WAIT,
    Clients,
    LoopRecorder,
    NeverStarts,
    Recorder,
    echo_round_trip,
)


# --- bad addresses (gnet: TestBadAddresses) -----------------------------------------------------
@pytest.mark.parametrize(
    ("proto_addr", "error"),
    [
        ("tulip://howdy", reactor.UnsupportedProtocolError),
        ("howdy", reactor.InvalidNetworkAddressError),
        ("tcp://127.0.0.1:99999", reactor.InvalidNetworkAddressError),
        ("tcp://127.0.0.1:0/path", reactor.InvalidNetworkAddressError),
        ("unix://", reactor.InvalidNetworkAddressError),
        ("sctp://127.0.0.1:0", reactor.UnsupportedProtocolError),
        ("TCP://127.0.0.1:0", reactor.UnsupportedProtocolError),  # not lower-cased (gnet-mapping.md, v1 #6)
        ("tcp://127.0.0.1:0\n", reactor.InvalidNetworkAddressError),
    ],
    ids=lambda v: repr(v).strip("'") if isinstance(v, str) else v.__name__,
)
def test_bad_address(proto_addr: str, error: type) -> None:
    h = NeverStarts()
    with pytest.raises(error):
        reactor.serve(h, proto_addr)
    assert h.init_calls == 0


def test_empty_tcp_address_binds_an_ephemeral_port() -> None:
    h = NeverStarts()
    assert reactor.serve(h, "tcp://") is None  # on_init_complete returns SHUTDOWN
    assert h.init_calls == 1 and h.server is not None
    host, port = h.server.addr
    assert host == "0.0.0.0" and port > 0


def test_address_in_use(start_server: Any, clients: Clients) -> None:
    h = Recorder()
    bg = start_server(h)
    port = bg.addr[1]
    second = NeverStarts()
    with pytest.raises(OSError) as exc:
        reactor.serve(second, f"tcp://127.0.0.1:{port}")
    assert exc.value.errno == errno.EADDRINUSE
    assert second.init_calls == 0
    echo_round_trip(clients.connect(bg.addr))  # the first server is undisturbed
    bg.stop()


# --- Unix socket files --------------------------------------------------------------------------
def test_unix_socket_file_lifecycle(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = tmp_path / "life.sock"
    bg = start_server(Recorder(), f"unix://{path}")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert bg.addr == str(path)
    echo_round_trip(clients.connect(path))
    bg.stop()
    assert not path.exists()


def test_unix_stale_socket_file_is_replaced(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(str(path))  # closed without unlink: a stale socket file
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(str(path))  # nobody listens there
    bg = start_server(Recorder(), f"unix://{path}")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    echo_round_trip(clients.connect(path))
    bg.stop()
    assert not path.exists()


def test_unix_regular_file_is_not_deleted(tmp_path: Any) -> None:
    path = tmp_path / "precious.txt"
    path.write_bytes(b"do not delete me")
    h = NeverStarts()
    with pytest.raises(OSError) as exc:
        reactor.serve(h, f"unix://{path}")
    assert exc.value.errno == errno.EADDRINUSE
    assert path.read_bytes() == b"do not delete me"
    assert h.init_calls == 0


def test_unix_live_socket_is_not_stolen(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = tmp_path / "live.sock"
    first = start_server(Recorder(), f"unix://{path}")
    second: Any = None
    try:
        with pytest.raises(OSError) as exc:
            second = start_server(Recorder(), f"unix://{path}")
        assert exc.value.errno == errno.EADDRINUSE
    finally:
        # Whatever happened, the first server must still be reachable at its path.
        echo_round_trip(clients.connect(path))
        if second is not None:
            second.stop()
        first.stop()


def test_unix_path_keeps_its_case(start_server: Any, clients: Clients, tmp_path: Any) -> None:
    name = "MixedCase-Ünïcödé.sock"
    path = tmp_path / name
    bg = start_server(Recorder(), f"unix://{path}")
    assert os.listdir(tmp_path) == [name]
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    echo_round_trip(clients.connect(path))
    bg.stop()
    assert os.listdir(tmp_path) == []


# --- reuse_port listeners --------------------------------------------------------------------
def listening_sockets_on(port: int) -> int:
    """LISTEN sockets on 127.0.0.1:``port`` according to /proc/net/tcp."""
    want = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                count += 1
    return count


def test_reuse_port_listeners_share_the_port(start_server: Any, clients: Clients) -> None:
    h = LoopRecorder()
    bg = start_server(h, "tcp://127.0.0.1:0", reuse_port=True, num_event_loop=3)
    port = bg.addr[1]
    assert port > 0
    deadline = time.monotonic() + WAIT
    while listening_sockets_on(port) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listening_sockets_on(port) == 3
    socks = [clients.connect(("127.0.0.1", port)) for _ in range(12)]
    for s in socks:
        echo_round_trip(s)
    h.wait_opened(12)
    assert bg.server.count_connections() == 12
    # The kernel spreads connections over the listeners by 4-tuple hash; with
    # 12 connections all landing on one loop has probability 3 * 3**-12.
    assert len({c.context for c in h.opened}) >= 2, Counter(c.context for c in h.opened)
    bg.stop()
    assert listening_sockets_on(port) == 0
