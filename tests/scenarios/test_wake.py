"""gnet's TestWakeConn and TestClosedWakeUp: ``c.wake()`` from another thread or
from tick, and a wake racing a close of the same connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import reactor
from reactor import Action
from scenario_support import (
    WAIT,
    Clients,
    Jobs,
    Recorder,
    echo_round_trip,
    error_records,
    loop_name,
    read_until_closed,
    recv_exact,
)


# --- wake (gnet: TestWakeConn) -----------------------------------------------------------------
class WakeServer(Recorder):
    def __init__(self, via_tick: bool) -> None:
        super().__init__()
        self.via_tick = via_tick
        self.wakes_wanted = 0  # tick: how many wakes still to send
        self.reacts: list[tuple[bytes | None, str]] = []

    def tick(self) -> tuple[float, Action]:
        with self.cond:
            c = self.opened[0] if self.opened else None
            send = c is not None and self.wakes_wanted > 0
            if send:
                self.wakes_wanted -= 1
        if send:
            assert c is not None
            c.wake()
        return 0.01, Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Any]:
        with self.cond:
            self.reacts.append((frame, loop_name()))
        if frame is None:
            return b"Waking up.", -1  # an invalid action: must be treated as NONE
        return None, Action.NONE


@pytest.mark.parametrize("via_tick", [False, True], ids=["wake-from-test-thread", "wake-from-tick"])
def test_wake(via_tick: bool, start_server: Any, clients: Clients) -> None:
    h = WakeServer(via_tick)
    bg = start_server(h, ticker=via_tick, num_event_loop=2)
    sock = clients.connect(bg.addr)
    h.wait_opened(1)
    c = h.opened[0]
    for _ in range(2):
        # Twice: the invalid action -1 must not have closed the connection.
        if via_tick:
            with h.cond:
                h.wakes_wanted = 1
        else:
            c.wake()
        assert recv_exact(sock, 10) == b"Waking up."
    with h.cond:
        reacts = list(h.reacts)
    assert [f for f, _ in reacts] == [None, None]
    assert all(name.startswith("reactor-loop-") for _, name in reacts), reacts
    assert c.opened and not h.closed
    sock.close()
    h.wait_closed(1)
    assert h.closed == [(c, None)]
    bg.stop()


# --- closed wake-up (gnet: TestClosedWakeUp) --------------------------------------------------
class ClosedWakeUp(Recorder):
    def __init__(self, jobs: Jobs) -> None:
        super().__init__()
        self.jobs = jobs
        self.client_closed = threading.Event()
        self.wakes = 0

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            self.wakes += 1
            return b"woken", Action.NONE
        if not frame.startswith(b"race"):
            return frame, Action.NONE
        barrier = threading.Barrier(2, timeout=WAIT)

        def racer(fn: Callable[[], None]) -> None:
            barrier.wait()
            fn()

        racers = [self.jobs.spawn(racer, c.wake, name="waker"), self.jobs.spawn(racer, c.close, name="closer")]
        for r in racers:
            r.result()  # both only queue a task; they return at once
        if frame == b"race-and-wait":
            # gnet keeps the loop busy until the client has gone, so the
            # queued wake meets a connection that is already closed.
            if not self.client_closed.wait(WAIT):
                self.problem("the client never closed")
            return None, Action.NONE
        return frame, Action.NONE


def test_closed_wake_up(start_server: Any, clients: Clients, jobs: Jobs, caplog: pytest.LogCaptureFixture) -> None:
    h = ClosedWakeUp(jobs)
    bg = start_server(h)  # one loop: the bystander shares it with the racing connections
    bystander = clients.connect(bg.addr)
    echo_round_trip(bystander)
    for i in range(10):
        sock = clients.connect(bg.addr)
        if i % 2:
            sock.sendall(b"race-and-wait")
            time.sleep(0.02)
            sock.close()
            h.client_closed.set()
        else:
            sock.sendall(b"race")
            # The urgent wake runs before the normal-priority close.
            assert read_until_closed(sock) == (b"racewoken", "eof")
        h.wait_closed(i + 1)
        h.client_closed.clear()
        echo_round_trip(bystander, f"still here {i}".encode())
    jobs.join_all()
    assert all(j.error is None for j in jobs.jobs), [j.error for j in jobs.jobs]
    # Even rounds: exactly one wake each. Odd rounds: the client's EOF and the
    # queued tasks usually arrive in one epoll batch, where fd events run
    # first, so the wake meets a closed connection and is dropped.
    assert 5 <= h.wakes <= 10, h.wakes
    assert not h.problems
    assert bg.server.count_connections() == 1
    bystander.close()
    h.wait_closed(11)
    bg.stop()
    assert not error_records(caplog), [r.getMessage() for r in error_records(caplog)]
