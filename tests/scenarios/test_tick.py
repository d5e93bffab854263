"""gnet's TestTick and TestShutdown: the ticker, and SHUTDOWN from tick while
clients are blocked reading.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from reactor import Action
from scenario_support import (
    WAIT,
    Clients,
    Jobs,
    Recorder,
    loop_name,
    read_until_closed,
)


# --- tick (gnet: TestTick) ---------------------------------------------------------------------
class TickServer(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.thread_names: set[str] = set()

    def tick(self) -> tuple[float, Action]:
        self.ticks += 1
        self.thread_names.add(loop_name())
        return 0.01, Action.SHUTDOWN if self.ticks == 25 else Action.NONE


@pytest.mark.parametrize("reuse_port", [False, True], ids=["main-reactor", "reuse_port"])
def test_tick(reuse_port: bool, start_server: Any) -> None:
    h = TickServer()
    t0 = time.monotonic()
    bg = start_server(h, ticker=True, num_event_loop=2, reuse_port=reuse_port)
    bg.join(WAIT)  # SHUTDOWN from the 25th tick stops the server by itself
    elapsed = time.monotonic() - t0
    assert h.ticks == 25
    time.sleep(0.05)
    assert h.ticks == 25, "tick() was called after the SHUTDOWN"
    # 24 delays of 10 ms between the 25 calls.
    assert 0.2 <= elapsed < 3.0, elapsed
    assert len(h.thread_names) == 1, h.thread_names
    (name,) = h.thread_names
    assert not name.startswith("reactor-loop-") and name != "reactor-main", name
    assert h.shutdowns == [0]


# --- shutdown from tick with blocked clients (gnet: TestShutdown) -----------------------------------
class ShutdownFromTick(Recorder):
    N = 10

    def tick(self) -> tuple[float, Action]:
        with self.cond:
            done = len(self.opened) == self.N
        return 0.01, Action.SHUTDOWN if done else Action.NONE


def test_shutdown_from_tick_closes_blocked_clients(start_server: Any, clients: Clients, jobs: Jobs) -> None:
    h = ShutdownFromTick()
    bg = start_server(h, ticker=True, num_event_loop=4)
    socks = [clients.connect(bg.addr) for _ in range(h.N)]
    readers = [jobs.spawn(read_until_closed, s, name=f"blocked-reader-{i}") for i, s in enumerate(socks)]
    bg.join(WAIT)
    for r in readers:
        data, how = r.result()
        assert data == b"" and how in ("eof", "reset")
    with h.cond:
        assert len(h.opened) == h.N
        assert sorted(map(id, (c for c, _ in h.closed))) == sorted(map(id, h.opened))
        assert [e for _, e in h.closed] == [None] * h.N
        # on_shutdown ran once, after every on_closed.
        assert h.shutdowns == [h.N]
