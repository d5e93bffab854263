"""Lifecycle: serve/stop many times, stop under load, stop from every kind of thread, SIGTERM.

* 500 serve/stop cycles in one process, each with a connection mid-transfer
  when stop() is called, spread over tcp/unix and 1/2 loops (and reuse_port):
  afterwards the process has the same fds and threads as before, and its RSS
  grew by less than a few MiB after a warm-up.
* stop() while 64 MiB are in flight returns within 2 s and every connection
  got on_closed.
* stop from inside a callback (react), from tick, and from another thread.
* SIGTERM to the example servers run as processes: exit code 0, no child
  left, the port free.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Any

import pytest

import reactor
from netsupport import children_of, free_port
from reactor import Action
from reliability_support import (
    FULL,
    SOCK_TIMEOUT,
    PRNGStream,
    Recorder,
    ServerThread,
    Worker,
    connect,
    echo_round_trip,
    fd_count,
    port_is_free,
    read_until_closed,
    recv_exact,
    rss_bytes,
    wait_until,
)

MiB = 1024 * 1024


# --- 500 serve/stop cycles -----------------------------------------------------------------------
VARIANTS = [
    ("tcp", {"num_event_loop": 1}),
    ("tcp", {"num_event_loop": 2}),
    ("tcp", {"num_event_loop": 2, "reuse_port": True}),
    ("unix", {"num_event_loop": 1}),
    ("unix", {"num_event_loop": 2}),
]
CYCLES = 2500 if FULL else 500  # RELIABILITY_FULL=1: five times as many
WARMUP = 50
CHUNK = b"c" * (64 * 1024)


def one_cycle(network: str, opts: dict, unix_path: str) -> None:
    """Start a server, get a connection mid-transfer, stop the server, check the books."""
    h = Recorder()
    proto_addr = f"unix://{unix_path}" if network == "unix" else "tcp://127.0.0.1:0"
    st = ServerThread(h, proto_addr, **opts).start()
    try:
        client = connect(st.addr, timeout=SOCK_TIMEOUT)
    except BaseException:
        st.stop()
        raise
    try:
        client.sendall(CHUNK)
        recv_exact(client, 1024)  # it is open and echoing
        client.sendall(CHUNK)  # in flight: the server is still echoing this when it is stopped
        st.stop()
    finally:
        client.close()
    assert h.n_opened() == h.n_closed() == 1, (h.n_opened(), h.n_closed())


@pytest.mark.timeout(240)
def test_500_serve_stop_cycles_leave_nothing_behind(tmp_path: Any) -> None:
    """No fd, thread or memory growth over hundreds of serve/stop cycles with traffic in flight.

    Memory is checked three ways. tracemalloc (Python allocations still
    alive) and the gc object count catch a Python-level leak precisely (a
    few KiB of drift over thousands of cycles is normal). RSS, sampled every
    50 cycles, catches native leaks (a leaked 64 KiB loop read buffer per
    cycle would add ~28 MiB here). It wanders by a few MiB without a trend,
    because of glibc's per-thread malloc arenas: so the check is on the trend
    (median of the last third of the samples minus median of the first third),
    plus a looser peak bound.
    """
    unix_path = str(tmp_path / "cycle.sock")
    schedule = [VARIANTS[i % len(VARIANTS)] for i in range(CYCLES)]
    t0 = time.monotonic()
    for network, opts in schedule[:WARMUP]:
        one_cycle(network, opts, unix_path)
    gc.collect()
    fds0, threads0, objects0 = fd_count(), threading.active_count(), len(gc.get_objects())
    tracemalloc.start()
    try:
        traced0 = tracemalloc.get_traced_memory()[0]
        rss0 = rss_bytes()
        rss_samples = []
        for i, (network, opts) in enumerate(schedule[WARMUP:], 1):
            one_cycle(network, opts, unix_path)
            if i % 50 == 0:
                gc.collect()
                rss_samples.append(rss_bytes())
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced0
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - t0
    fds1, threads1, objects1 = fd_count(), threading.active_count(), len(gc.get_objects())
    third = max(3, len(rss_samples) // 3)
    trend = statistics.median(rss_samples[-third:]) - statistics.median(rss_samples[:third])
    peak = max(rss_samples) - rss0
    print(f"\n{CYCLES} serve/stop cycles in {elapsed:.1f} s ({1000 * elapsed / CYCLES:.1f} ms each); "
          f"RSS trend {trend / MiB:+.1f} MiB, peak {peak / MiB:+.1f} MiB; traced Python memory "
          f"{traced / 1024:+.0f} KiB; gc objects {objects1 - objects0:+d}")
    assert fds1 == fds0, f"fds: {fds0} after warm-up, {fds1} after {CYCLES - WARMUP} more cycles"
    assert threads1 == threads0, f"threads: {threads0} -> {threads1}"
    assert traced < 64 * 1024, f"{traced / 1024:.0f} KiB of Python allocations kept over {CYCLES - WARMUP} cycles"
    assert objects1 - objects0 < 200, f"{objects1 - objects0} more gc-tracked objects"
    assert trend < 4 * MiB, f"RSS grew by {trend / MiB:.1f} MiB from the first to the last third of the samples"
    assert peak < 8 * MiB, f"RSS peaked {peak / MiB:.1f} MiB above its post-warm-up level"
    assert not os.path.exists(unix_path), "the last server left its socket file behind"


# --- stop() under load ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("reuse_port", [False, True], ids=["main-reactor-2loops", "reuse-port-2loops"])
def test_stop_during_a_64_mib_transfer_is_prompt(reuse_port: bool, start_server: Any) -> None:
    h = Recorder()
    bg = start_server(h, num_event_loop=2, reuse_port=reuse_port, socket_recv_buffer=64 * 1024,
                      socket_send_buffer=64 * 1024)
    n, size = 4, 16 * MiB  # 64 MiB in all, each way
    socks = [connect(bg.addr) for _ in range(n)]
    received = [0] * n
    # One more client sends and never reads: the server holds output it cannot deliver.
    hog = connect(bg.addr, rcvbuf=16 * 1024)

    def sender(i: int) -> str | None:
        stream = PRNGStream(i, size)
        try:
            while True:
                chunk = stream.peek(64 * 1024)
                if not chunk:
                    return None
                socks[i].sendall(chunk)
                stream.advance(len(chunk))
        except OSError as e:
            return type(e).__name__

    def receiver(i: int) -> str | None:
        stream = PRNGStream(i, size)
        try:
            while received[i] < size:
                data = socks[i].recv(1 << 18)
                if not data:
                    return "eof"
                view = memoryview(data)
                while view:
                    expected = stream.peek(len(view))
                    assert view[: len(expected)] == expected, f"client {i}: wrong byte near {received[i]}"
                    stream.advance(len(expected))
                    received[i] += len(expected)
                    view = view[len(expected):]
            return None
        except OSError as e:
            return type(e).__name__

    def hog_sender() -> str | None:
        try:
            for _ in range(64):
                hog.sendall(b"h" * (128 * 1024))
        except OSError as e:
            return type(e).__name__
        return None

    workers = [Worker(lambda i=i: sender(i), f"rel-send-{i}") for i in range(n)]
    workers += [Worker(lambda i=i: receiver(i), f"rel-recv-{i}") for i in range(n)]
    workers.append(Worker(hog_sender, "rel-hog"))
    try:
        wait_until(lambda: sum(received) >= n * size // 4, timeout=30, what="a quarter of the transfer")
        assert sum(received) < n * size, "the transfer finished before stop(): nothing was in flight"
        assert h.n_opened() == n + 1
        t0 = time.monotonic()
        bg.server.stop()
        bg.join(timeout=5)
        took = time.monotonic() - t0
        outcomes = [w.result(timeout=15) for w in workers]
    finally:
        for s in socks + [hog]:
            s.close()
    assert took < 2.0, f"stop() took {took:.2f} s with 64 MiB in flight"
    assert h.n_closed() == h.n_opened() == n + 1, "a connection did not get on_closed"
    # Every client learned: no receiver finished a transfer that was cut.
    assert all(o is not None for o in outcomes[n: 2 * n]), outcomes
    print(f"\nstop() with {sum(received) >> 20} of {n * size >> 20} MiB echoed: {took * 1000:.0f} ms")


# --- stop from inside --------------------------------------------------------------------------------
class StopOn(Recorder):
    """Stops the server from react (on ``stop``) or from tick, the way it is told to."""

    def __init__(self, how: str, proto_addr: str) -> None:
        super().__init__()
        self.how = how
        self.proto_addr = proto_addr
        self.ticks = 0
        self.stop_returned = threading.Event()

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame == b"stop":
            if self.how == "react-reactor.stop":
                reactor.stop(self.proto_addr)  # from the server's own thread: only signals
            elif self.how == "react-server.stop":
                assert self.server is not None
                self.server.stop()
            self.stop_returned.set()
            return b"stopping", Action.NONE
        return frame, Action.NONE

    def tick(self) -> tuple[float, Action]:
        self.ticks += 1
        if self.how == "tick" and self.ticks == 3:
            reactor.stop(self.proto_addr)
            self.stop_returned.set()
        return 0.02, Action.NONE


@pytest.mark.parametrize("how", ["react-reactor.stop", "react-server.stop", "tick"])
def test_stop_from_inside_a_callback_or_tick(how: str, tmp_path: Any, start_server: Any, socks: Any) -> None:
    proto_addr = f"unix://{tmp_path / 'inside.sock'}"
    h = StopOn(how, proto_addr)
    bg = start_server(h, proto_addr, num_event_loop=2, ticker=(how == "tick"))
    clients = [socks.connect(bg.addr) for _ in range(3)]
    for c in clients:
        echo_round_trip(c)
    if how != "tick":
        clients[0].sendall(b"stop")
    assert h.stop_returned.wait(5), "the stop call did not return (waiting for itself?)"
    bg.join(timeout=5)
    assert h.n_closed() == h.n_opened() == 3
    for c in clients:
        _, how_closed = read_until_closed(c)
        assert how_closed in ("eof", "reset")
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop(proto_addr)


def test_stop_from_another_thread_waits_until_stopped(start_server: Any, socks: Any) -> None:
    proto_addr = f"tcp://127.0.0.1:{free_port()}"
    h = Recorder()
    bg = start_server(h, proto_addr, num_event_loop=2)
    clients = [socks.connect(bg.addr) for _ in range(4)]
    for c in clients:
        echo_round_trip(c)
    stopper = Worker(lambda: reactor.stop(proto_addr, timeout=5), "rel-stopper")
    stopper.result(timeout=10)  # returns only once the server has fully stopped...
    assert h.n_closed() == 4  # ...so every on_closed already ran
    bg.join(timeout=2)
    with pytest.raises(reactor.ServerInShutdownError):
        reactor.stop(proto_addr, timeout=1)
    assert port_is_free(bg.addr[1])


# --- SIGTERM to the examples --------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("reactor.examples.http", []),
        ("reactor.examples.http", ["--loops", "2", "--reuse-port"]),
        ("reactor.examples.echo", []),
        ("reactor.examples.echo", ["--loops", "2"]),
    ],
    ids=["http", "http-2loops-reuseport", "echo", "echo-2loops"],
)
def test_sigterm_to_an_example_exits_0_and_leaves_nothing(module: str, extra: list[str], procs: Any) -> None:
    port = free_port()
    proc = procs.start(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert b"listening" in line, line
    conns = []
    try:
        # A few clients, one of them mid-transfer when the signal comes.
        for _ in range(3):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT))
        if module.endswith("http"):
            conns[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert recv_exact(conns[0], 17) == b"HTTP/1.1 200 OK\r\n"
        else:
            echo_round_trip(conns[0])
            conns[1].sendall(random.Random(1).randbytes(4 * MiB))  # only partly echoed when the signal comes
        assert children_of(proc.pid) == [], "the example started child processes"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        for c in conns:
            c.close()
    err = proc.stderr.read().decode(errors="replace")
    assert code == 0, err[-2000:]
    assert took < 3.0, f"exit took {took:.2f} s after SIGTERM"
    assert "Traceback" not in err, err[-2000:]
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing left in its process group
    assert port_is_free(port)



@pytest.mark.timeout(60)
@pytest.mark.parametrize("module", ["reactor.examples.http", "reactor.examples.echo"], ids=["http", "echo"])
def test_example_restarts_on_the_same_port_right_after_sigterm(module: str, procs: Any) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]
    first = procs.start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert first.stderr is not None and b"listening" in first.stderr.readline()
    with socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT) as c:
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        c.sendall(request)
        if module.endswith("http"):
            got = b""
            while not got.endswith(b"Hello World!\r\n"):
                chunk = c.recv(4096)
                assert chunk, got
                got += chunk
        else:
            assert recv_exact(c, len(request)) == request
        # A well-behaved client with nothing unread: the server closes first (SIGTERM), the
        # client reads the EOF and closes too, so the server's side ends in TIME_WAIT.
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
        assert c.recv(1) == b""
    second = procs.start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert second.stderr is not None
    line = second.stderr.readline()
    if b"listening" in line:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    else:
        second.wait(timeout=10)
        line += second.stderr.read()[-300:]
    assert b"listening" in line, f"the restarted example failed: {line[-300:]!r}"
