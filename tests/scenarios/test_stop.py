"""gnet's TestStop: ``reactor.stop(proto_addr)`` from the test thread, from
react and from tick, and ``server.stop()`` from react.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

import reactor
from netsupport import free_port
from reactor import Action
from scenario_support import (
    SOCK_TIMEOUT,
    WAIT,
    Clients,
    Jobs,
    Recorder,
    echo_round_trip,
    loop_name,
    read_until_closed,
    recv_exact,
)


# --- reactor.stop (gnet: TestStop) --------------------------------------------------------------
def test_stop_by_address(start_server: Any, clients: Clients, jobs: Jobs) -> None:
    port = free_port()
    proto_addr = f"tcp://127.0.0.1:{port}"
    h = Recorder()
    bg = start_server(h, proto_addr, num_event_loop=2)
    sock = clients.connect(("127.0.0.1", port))
    echo_round_trip(sock)
    # The key is the exact string serve() was given.
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop(f"127.0.0.1:{port}")
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop("tcp://127.0.0.1:9")
    assert bg.running

    blocked = jobs.spawn(read_until_closed, sock, name="blocked-reader")

    def stop_and_look() -> tuple[list[int], bool]:
        stop_by_address(proto_addr, timeout=WAIT)
        # reactor.stop returns only once the server has fully stopped.
        with h.cond:
            shutdowns = list(h.shutdowns)
        refused = False
        with socket.socket() as probe:
            probe.settimeout(SOCK_TIMEOUT)
            try:
                probe.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                refused = True
        return shutdowns, refused

    stopper = jobs.spawn(stop_and_look, name="stopper")
    shutdowns, refused = stopper.result()
    assert shutdowns == [1], "stop() returned before on_shutdown ran"
    assert refused, "the listener still accepts after stop() returned"
    assert blocked.result() == (b"", "eof")
    bg.join(WAIT)
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop(proto_addr)


def stop_by_address(proto_addr: str, **kwargs: Any) -> int:
    """``reactor.stop(proto_addr)``, retried while it says "no running server"; returns the retries.

    The retry works around the registration race exposed by
    test_stop_by_address_from_the_first_tick (serve() makes the address
    known to stop() only after the loops already run); a server that never
    becomes stoppable still fails after 2 s.
    """
    deadline = time.monotonic() + 2
    retries = 0
    while True:
        try:
            reactor.stop(proto_addr, **kwargs)
            return retries
        except reactor.ServerInShutdownError:
            if time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.005)


class StopFromCallback(Recorder):
    def __init__(self, how: str, proto_addr: str) -> None:
        super().__init__()
        self.how = how
        self.proto_addr = proto_addr
        self.stop_calls: list[tuple[str, float, BaseException | None]] = []
        self.early_refusals = 0  # see stop_by_address
        self.echoed = threading.Event()

    def _try_stop(self) -> bool:
        """One stop attempt from this (server) thread; False: refused as not running yet."""
        t0 = time.monotonic()
        err: BaseException | None = None
        try:
            if self.how == "server.stop-in-react":
                assert self.server is not None
                self.server.stop()
            else:
                reactor.stop(self.proto_addr, timeout=WAIT)
        except reactor.ServerInShutdownError:
            self.early_refusals += 1
            return False
        except BaseException as e:
            err = e
        self.stop_calls.append((loop_name(), time.monotonic() - t0, err))
        return True

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if self.how == "reactor.stop-in-tick":
            self.echoed.set()
            return frame, Action.NONE
        if self.stop_calls:
            return b"again", Action.NONE
        return (b"done!" if self._try_stop() else b"retry"), Action.NONE

    def tick(self) -> tuple[float, Action]:
        if self.echoed.is_set() and not self.stop_calls and self.early_refusals < 400:
            self._try_stop()
        return 0.005, Action.NONE


@pytest.mark.parametrize("how", ["server.stop-in-react", "reactor.stop-in-react", "reactor.stop-in-tick"])
def test_stop_from_inside(how: str, start_server: Any, clients: Clients, tmp_path: Any) -> None:
    path = str(tmp_path / "stop.sock")
    proto_addr = f"unix://{path}"  # a unique key for reactor.stop
    h = StopFromCallback(how, proto_addr)
    bg = start_server(h, proto_addr, num_event_loop=2, ticker=how.endswith("tick"))
    sock = clients.connect(path)
    if how.endswith("tick"):
        echo_round_trip(sock)
        deadline = time.monotonic() + WAIT
        while not h.stop_calls and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        for _ in range(200):
            sock.sendall(b"stop!")
            reply = recv_exact(sock, 5)
            if reply != b"retry":
                break
            time.sleep(0.005)
        assert reply == b"done!"
    assert len(h.stop_calls) == 1, f"no stop call went through ({h.early_refusals} refused)"
    name, took, err = h.stop_calls[0]
    assert err is None, err
    assert read_until_closed(sock) == (b"", "eof")
    bg.join(WAIT)
    assert took < 0.5, f"stop from {name} blocked for {took:.2f} s"
    assert name.startswith("reactor-") and name != "test-serve"
    assert h.shutdowns == [1]
    assert not os.path.exists(path)


class StopOnFirstTick(Recorder):
    def __init__(self, proto_addr: str) -> None:
        super().__init__()
        self.proto_addr = proto_addr
        self.ticks = 0
        self.error: BaseException | None = None

    def tick(self) -> tuple[float, Action]:
        self.ticks += 1
        if self.ticks == 1:
            try:
                reactor.stop(self.proto_addr)
            except BaseException as e:
                self.error = e
                return 0.001, Action.SHUTDOWN  # stop it anyway, so the test ends
        return 0.01, Action.NONE


def test_stop_by_address_from_the_first_tick(start_server: Any, tmp_path: Any) -> None:
    proto_addr = f"unix://{tmp_path / 'first-tick.sock'}"
    h = StopOnFirstTick(proto_addr)
    bg = start_server(h, proto_addr, ticker=True)
    bg.join(WAIT)
    assert h.ticks >= 1
    assert h.error is None, repr(h.error)
