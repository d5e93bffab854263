"""The io_uring backend (issue 15): the option, the fallback where the kernel refuses io_uring, and the data path.

Everything here goes through real sockets on 127.0.0.1, with timeouts and
bounded loops. Most tests run on both backends (the session parameter
``reactor_backend`` of tests/conftest.py); the ones that choose their own
backend (the option tests, the seccomp and strace ones) run once
(:func:`run_once`).

* The kernel refusing io_uring is made real with a seccomp filter
  (tests/unit/uring_seccomp.py) in a subprocess: ``io_uring_setup`` fails
  with EPERM there, as under a container runtime's default profile.
* That the data path really is io_uring is checked by counting system calls
  with ``strace -c``: the same echo traffic costs one ``read(2)`` per round
  trip on epoll and none on io_uring.
* The other tests aim at what a completion-based poller can get wrong: a
  recv completing while back-pressure has paused reading (csrc/rx_uring.c's
  held result), completions for a closed fd whose number a new connection
  already has, requests still in flight at stop, the edge_triggered
  option (the level-triggered loop serves it on io_uring), and a burst on
  more idle connections than the ring has receive buffers (the recvs that
  found none are re-armed within a budget per round, in csrc/rx_uring.c).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import reactor
from netsupport import (
    children_of,
    connect_nodelay,
    free_port,
    process_with_stderr,
    read_until_closed,
    recv_exact,
    wait_for,
)
from reactor import Action
from reactor.eventloop import EventLoop
from reactor.eventloop_et import EdgeTriggeredEventLoop
from reactor.internal import uring
from reactor.internal.uring import IoUringUnavailable, probe
from reactor.options import BACKEND_ENV
from reactor.testing import serve_in_background

SOCK_TIMEOUT = 10.0
HERE = pathlib.Path(__file__).resolve().parent
SECCOMP_HELPER = HERE / "uring_seccomp.py"
#: uring_seccomp.py's exit status when the filter cannot be installed here.
CANNOT_FILTER = 77
SUBPROCESS_TIMEOUT = 60


def run_once(reactor_backend: str) -> None:
    """Skip all but the first backend session: for a test that chooses its own backend(s),
    so that running it again under the other session's REACTOR_BACKEND would only repeat it."""
    # tests/conftest.py's BACKENDS, read the way it does ("from conftest import"
    # would find whichever conftest module pytest imported under that name first).
    backends = [b for b in os.environ.get("REACTOR_TEST_BACKENDS", "epoll,io_uring").split(",") if b]
    BACKENDS = backends or ["epoll"]
    if reactor_backend != BACKENDS[0]:
        pytest.skip(f"chooses its own backend; already run in the [{BACKENDS[0]}] session")


def needs_io_uring() -> None:
    ok, why = probe()
    if not ok:
        pytest.skip(f"the io_uring backend is not available here: {why}")


def event_loops(srv: Any) -> list[Any]:
    """A running server's event loops (they are built just after ``on_init_complete``: wait for them)."""
    n = srv.server.num_event_loop
    assert wait_for(lambda: len(list(srv.server._engine.lb)) == n, SOCK_TIMEOUT), "the event loops did not start"
    return list(srv.server._engine.lb)


def loop_backends(srv: Any) -> list[str]:
    """The backend of each event loop's poller of a running server."""
    return [el.poller.backend for el in event_loops(srv)]


def loop_types(srv: Any) -> list[type]:
    return [type(el) for el in event_loops(srv)]


class Echo(reactor.EventServer):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


def echo_check(addr: Any, payload: bytes = b"hello io_uring") -> None:
    with connect_nodelay(addr, SOCK_TIMEOUT) as s:
        s.sendall(payload)
        assert recv_exact(s, len(payload), SOCK_TIMEOUT) == payload


# --- 1. the option ------------------------------------------------------------------------------------
def test_unknown_backend_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="backend") as info:
        reactor.Options(backend="bogus").validate()  # type: ignore[arg-type]
    message = str(info.value)
    for name in ("epoll", "io_uring", "auto", "bogus"):
        assert name in message, message


def test_serve_with_an_unknown_backend_raises_before_binding() -> None:
    # The port is taken by a listener of ours: had serve() tried to bind
    # before validating, it would raise EADDRINUSE (an OSError), not ValueError.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match="backend"):
            reactor.serve(Echo(), f"tcp://127.0.0.1:{port}", backend="bogus")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="backend"):
            serve_in_background(Echo(), f"tcp://127.0.0.1:{port}", backend="bogus")  # type: ignore[arg-type]


def test_the_environment_variable_sets_the_default_backend(
    reactor_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_once(reactor_backend)
    for value in ("epoll", "io_uring", "auto"):
        monkeypatch.setenv(BACKEND_ENV, value)
        assert reactor.Options().backend == value
    monkeypatch.setenv(BACKEND_ENV, "")
    assert reactor.Options().backend == "epoll"
    monkeypatch.delenv(BACKEND_ENV)
    assert reactor.Options().backend == "epoll"
    # An explicit option wins over the variable.
    monkeypatch.setenv(BACKEND_ENV, "io_uring")
    assert reactor.Options(backend="epoll").backend == "epoll"
    # A bad value in the variable is refused like a bad option, before binding.
    monkeypatch.setenv(BACKEND_ENV, "bogus")
    with pytest.raises(ValueError, match="bogus"):
        reactor.serve(Echo(), f"tcp://127.0.0.1:{free_port()}")


@pytest.mark.parametrize("backend", ["epoll", "io_uring"])
def test_the_environment_variable_chooses_the_poller(
    backend: str, reactor_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_once(reactor_backend)
    if backend == "io_uring":
        needs_io_uring()
    monkeypatch.setenv(BACKEND_ENV, backend)
    with serve_in_background(Echo(), num_event_loop=2) as srv:
        assert loop_backends(srv) == [backend, backend]
        echo_check(srv.addr)


def test_auto_serves_on_io_uring_where_the_kernel_allows_it(reactor_backend: str) -> None:
    run_once(reactor_backend)
    expected = "io_uring" if probe()[0] else "epoll"
    with serve_in_background(Echo(), backend="auto") as srv:
        assert loop_backends(srv) == [expected]
        echo_check(srv.addr)
        echo_check(srv.addr, b"x" * 200_000)


# --- 2. io_uring refused by the kernel (a seccomp filter, as container defaults) ----------------------
def run_without_io_uring(args: list[str], timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` under the seccomp filter; skips the test where the filter cannot be installed."""
    proc = subprocess.run(
        [sys.executable, str(SECCOMP_HELPER), *args],
        capture_output=True, text=True, timeout=timeout, cwd=HERE,
    )
    if proc.returncode == CANNOT_FILTER:
        pytest.skip(proc.stderr.strip())
    return proc


def json_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output\nstderr: {proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


IO_URING_REFUSED = textwrap.dedent(
    """
    import json, socket
    import reactor
    from reactor.internal.uring import probe

    class Echo(reactor.EventServer):
        def react(self, frame, c):
            return frame, reactor.Action.NONE

    out = {"probe": list(probe())}
    # A port that is taken: a bind attempted before the backend check would fail with EADDRINUSE.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            reactor.serve(Echo(), f"tcp://127.0.0.1:{port}", backend="io_uring")
            out["raised"] = None
        except reactor.IoUringUnavailable as e:  # the public name users catch
            out.update(
                raised=type(e).__name__,
                is_unavailable=True,
                is_oserror=isinstance(e, OSError),
                errno=e.errno,
                message=str(e),
            )
        except BaseException as e:
            out.update(
                raised=type(e).__name__,
                is_unavailable=False,
                is_oserror=isinstance(e, OSError),
                errno=getattr(e, "errno", None),
                message=str(e),
            )
    print(json.dumps(out))
    """
)


def test_backend_io_uring_raises_a_clear_error_where_seccomp_blocks_it(reactor_backend: str) -> None:
    run_once(reactor_backend)
    out = json_result(run_without_io_uring(["-c", IO_URING_REFUSED]))
    assert out["probe"][0] is False, out
    assert "EPERM" in out["probe"][1], out
    assert out["raised"] == "IoUringUnavailable", out
    assert out["is_unavailable"] and out["is_oserror"], out
    message = out["message"]
    assert "io_uring" in message and "not available" in message, message
    assert "EPERM" in message, message
    assert "seccomp" in message and "io_uring_disabled" in message, message
    assert "epoll" in message and "auto" in message, message
    assert issubclass(IoUringUnavailable, OSError)
    assert reactor.IoUringUnavailable is IoUringUnavailable


AUTO_FALLS_BACK = textwrap.dedent(
    """
    import json, logging, socket, sys, threading, time
    import reactor
    from reactor.testing import serve_in_background

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.name, record.levelname, record.getMessage()))

    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.DEBUG)

    class Echo(reactor.EventServer):
        server = None
        ready = threading.Event()

        def on_init_complete(self, server):
            self.server = server
            self.ready.set()
            return reactor.Action.NONE

        def react(self, frame, c):
            return frame, reactor.Action.NONE

    def loop_backends(server):
        deadline = time.monotonic() + 10
        while len(list(server._engine.lb)) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)  # the loops are built just after on_init_complete
        return [el.poller.backend for el in server._engine.lb]

    def echoes(addr):
        echoed = []
        for i in range(5):
            with socket.create_connection(addr, timeout=10) as s:
                payload = b"auto-%d;" % i * (1 + 3000 * i)
                s.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                echoed.append(got == payload)
        return echoed

    if sys.argv[1] == "serve":
        h = Echo()
        t = threading.Thread(target=reactor.serve, args=(h, "tcp://127.0.0.1:0"),
                             kwargs={"backend": "auto", "num_event_loop": 2})
        t.start()
        assert h.ready.wait(10)
        try:
            backends = loop_backends(h.server)
            echoed = echoes(h.server.addr)
        finally:
            h.server.stop()
            t.join(10)
    else:
        with serve_in_background(Echo(), backend="auto", num_event_loop=2) as srv:
            backends = loop_backends(srv.server)
            echoed = echoes(srv.addr)
    print(json.dumps({"backends": backends, "echoed": echoed, "records": records}))
    """
)


@pytest.mark.parametrize("how", ["serve", "serve_in_background"])
def test_backend_auto_falls_back_to_epoll_with_one_log_line_where_seccomp_blocks_io_uring(
    how: str, reactor_backend: str,
) -> None:
    run_once(reactor_backend)
    out = json_result(run_without_io_uring(["-c", AUTO_FALLS_BACK, how]))
    assert out["backends"] == ["epoll", "epoll"], out
    assert out["echoed"] == [True] * 5, out
    about_backend = [r for r in out["records"] if "epoll" in r[2] or "io_uring" in r[2]]
    assert len(about_backend) == 1, f"expected one log line about the fallback, got {out['records']}"
    name, level, message = about_backend[0]
    assert name == "reactor" or name.startswith("reactor."), about_backend
    assert level in ("INFO", "WARNING"), about_backend
    assert "auto" in message and "epoll" in message and "EPERM" in message, message


def test_example_cli_exits_2_with_one_error_line_where_seccomp_blocks_io_uring(reactor_backend: str) -> None:
    run_once(reactor_backend)
    proc = run_without_io_uring(
        ["-m", "reactor.examples.echo", "--host", "127.0.0.1", "--port", "0", "--backend", "io_uring"]
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr: {proc.stderr}"
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m reactor.examples.echo: error:"), lines[0]
    assert "io_uring" in lines[0] and "EPERM" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_example_cli_backend_auto_serves_where_seccomp_blocks_io_uring(reactor_backend: str) -> None:
    run_once(reactor_backend)
    port = free_port()
    with process_with_stderr(
        [sys.executable, str(SECCOMP_HELPER), "-m", "reactor.examples.echo", "--host", "127.0.0.1",
         "--port", str(port), "--backend", "auto"],
        text=True, cwd=HERE,
    ) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the listening line, or the helper's reason for exiting 77
        if "listening" not in first:
            rc = proc.wait(SUBPROCESS_TIMEOUT)
            if rc == CANNOT_FILTER:
                pytest.skip(first.strip())
            pytest.fail(f"exit {rc}: {first}{proc.stderr.read()}")
        echo_check(("127.0.0.1", port), b"served on epoll, since io_uring is blocked")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(SUBPROCESS_TIMEOUT) == 0


# --- 3. the data path is io_uring: system calls counted by strace -----------------------------------
ROUND_TRIPS = 300

#: One row of strace -c's table: "% time  seconds  usecs/call  calls  [errors]  syscall".
_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+(?:\d+\s+)?(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$")


def parse_strace_summary(text: str) -> dict[str, int]:
    """{syscall: calls} from ``strace -c``'s summary (the "total" row left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        m = _STRACE_ROW.match(line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = calls.get(m.group(2), 0) + int(m.group(1))
    return calls


def test_parse_strace_summary() -> None:
    sample = textwrap.dedent(
        """\
        % time     seconds  usecs/call     calls    errors syscall
        ------ ----------- ----------- --------- --------- ----------------
         48.36    0.021014          60       349           io_uring_enter
          0.58    0.000251           1       239           read
          0.15    0.000012           2         5         2 readlink
          0.00    0.000000           0         1           epoll_create1
        ------ ----------- ----------- --------- --------- ----------------
        100.00    0.043457          15      2806       262 total
        """
    )
    assert parse_strace_summary(sample) == {"io_uring_enter": 349, "read": 239, "readlink": 5, "epoll_create1": 1}


def strace_echo_server(backend: str, tmp_path: pathlib.Path, round_trips: int,
                       sizes: list[int] | None = None) -> dict[str, int]:
    """Run the echo example under ``strace -f -c``, do echoes, stop it: the call counts.

    ``round_trips`` 64-byte echoes, or one of each size in ``sizes``.
    """
    port = free_port()
    summary = tmp_path / f"strace-{backend}-{len(sizes or ())}.txt"
    with process_with_stderr(
        ["strace", "-f", "-c", "-o", str(summary), sys.executable, "-m", "reactor.examples.echo",
         "--host", "127.0.0.1", "--port", str(port), "--backend", backend, "--quiet"],
        stdout=subprocess.DEVNULL,
    ) as proc:
        sock = None
        deadline = time.monotonic() + 30
        while sock is None:
            assert proc.poll() is None, f"strace/echo exited early ({proc.returncode}): {proc.stderr.read()!r}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the echo server under strace did not start listening"
            try:
                sock = connect_nodelay(("127.0.0.1", port), SOCK_TIMEOUT)
            except OSError:
                time.sleep(0.05)
        with sock:
            for i, size in enumerate(sizes or [64] * round_trips):
                message = ((b"%07d;" % i) * (size // 8 + 1))[:size]
                sock.sendall(message)
                assert recv_exact(sock, len(message), SOCK_TIMEOUT) == message
        # strace -o FILE PROG blocks fatal signals in itself: stop the traced program, not strace.
        kids = children_of(proc.pid)
        assert len(kids) == 1, kids
        os.kill(kids[0], signal.SIGINT)
        rc = proc.wait(SUBPROCESS_TIMEOUT)
        assert rc == 0, f"echo under strace exited {rc}: {proc.stderr.read()!r}"  # type: ignore[union-attr]
    return parse_strace_summary(summary.read_text())


def writes(calls: dict[str, int]) -> int:
    """The calls that can send a socket's bytes."""
    return sum(calls.get(name, 0) for name in ("write", "writev", "send", "sendto", "sendmsg"))


def test_io_uring_data_path_makes_no_read_or_write_syscalls(reactor_backend: str, tmp_path: pathlib.Path) -> None:
    """An echo round trip costs a wait, a read(2) and a write(2) on epoll; on io_uring one io_uring_enter.

    Python's start-up alone makes a couple of hundred read(2) calls (imports), the same
    number on both backends, so the data path's reads show as the difference between them.
    """
    run_once(reactor_backend)
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    needs_io_uring()
    n = ROUND_TRIPS
    uring = strace_echo_server("io_uring", tmp_path, n)
    epoll = strace_echo_server("epoll", tmp_path, n)
    report = (f"io_uring run: {dict(sorted(uring.items()))}\n"
              f"epoll run: {dict(sorted(epoll.items()))}")

    def epoll_waits(calls: dict[str, int]) -> int:
        return sum(calls.get(name, 0) for name in ("epoll_wait", "epoll_pwait", "epoll_pwait2"))

    # epoll: a wait, a read and a write per round trip, and no io_uring at all.
    assert epoll_waits(epoll) >= 0.9 * n, report
    assert epoll.get("read", 0) >= n, report
    assert writes(epoll) >= n, report
    assert epoll.get("io_uring_setup", 0) == 0 and epoll.get("io_uring_enter", 0) == 0, report
    # io_uring: the answer's send goes with the re-armed recv in the next
    # io_uring_enter. One or two per round trip: after a round with events the
    # loop submits without waiting (gnet's busy round), and a send's own
    # completion can end a wait; never the three calls of epoll.
    assert 0.5 * n <= uring.get("io_uring_enter", 0) <= 2.2 * n, report
    assert epoll_waits(uring) < 0.1 * n, report
    # ... the bytes come with the completions: the data path makes (almost) no read(2) ...
    data_path_reads = uring.get("read", 0) - (epoll.get("read", 0) - n)  # minus start-up's reads
    assert data_path_reads < n / 10, f"~{data_path_reads} read(2) calls in {n} round trips on io_uring\n{report}"
    # ... and leave with the sends: no write(2) either (start-up's few are the same on both).
    data_path_writes = writes(uring) - (writes(epoll) - n)
    assert data_path_writes < n / 10, f"~{data_path_writes} write calls in {n} round trips on io_uring\n{report}"


def test_io_uring_large_reads_use_recv_and_small_ones_return_to_the_ring(
    reactor_backend: str, tmp_path: pathlib.Path
) -> None:
    """Bulk mode (csrc/rx_uring.c, RXU_BULK_MIN): a 64 KiB message is read with one recv(2), as on epoll.

    Copying a large read out of a provided buffer costs more than the syscall
    it saves, so a connection whose recv brought >= 16 KiB is read by a POLLIN
    poll and recv(2) into the loop's buffer; after a few small reads it goes
    back to the ring's recv. Without bulk mode the large phase makes no
    recv(2); without the way back, every small echo after it makes one.
    """
    run_once(reactor_backend)
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    needs_io_uring()
    large, small = 40, 400
    calls = strace_echo_server("io_uring", tmp_path, 0, [64 * 1024] * large + [64] * small)
    recvs = calls.get("recvfrom", 0) + calls.get("recvmsg", 0)
    # Each 64 KiB message takes at least one recv(2) (the first one's bytes came
    # by the ring), more when the loopback hands it over in parts.
    assert large - 1 <= recvs <= 4 * large + 10, f"{recvs} recv calls for {large} large and {small} small: {calls}"


# --- 4. back-pressure with a recv in flight -----------------------------------------------------------
REQ = 1024
RESP = 256 * 1024
WRITE_CAP = 64 * 1024
CLIENTS = 3
REQUESTS = 32
BURST = 8


def request(tag: int, i: int) -> bytes:
    head = struct.pack(">II", tag, i)
    return head * (REQ // len(head))


def response(tag: int, i: int) -> bytes:
    return struct.pack(">II", tag, i) * (RESP // 8)


class BigAnswers(reactor.EventServer):
    """Answers each REQ-byte request (FixedLengthFrameCodec) with RESP bytes naming it."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.bad: list[str] = []

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        self.opened += 1
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        self.closed += 1
        return Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        assert frame is not None and len(frame) == REQ
        tag, i = struct.unpack_from(">II", frame)
        if frame != request(tag, i):
            self.bad.append(f"garbled request {frame[:16]!r}")
        return response(tag, i), Action.NONE


def test_back_pressure_with_a_recv_in_flight_loses_and_repeats_nothing(reactor_backend: str) -> None:
    """Requests that arrive while back-pressure has paused reading are answered later, once each, in order.

    read_buffer_cap=1 KiB makes each read bring one request, and each answer
    (256 KiB) is past write_buffer_cap (64 KiB): reading pauses after every
    request, with (on io_uring) a recv still in flight whose completion must be
    kept, not lost, not delivered early, and not delivered twice.
    """
    h = BigAnswers()
    with serve_in_background(
        h,
        codec=reactor.FixedLengthFrameCodec(REQ),
        write_buffer_cap=WRITE_CAP,
        read_buffer_cap=REQ,
        socket_send_buffer=64 * 1024,
    ) as srv:
        assert loop_backends(srv) == [reactor_backend]
        socks = []
        try:
            for _ in range(CLIENTS):
                s = socket.create_connection(srv.addr, timeout=SOCK_TIMEOUT)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                socks.append(s)
            assert wait_for(lambda: srv.server.count_connections() == CLIENTS, SOCK_TIMEOUT)
            # Bursts of requests, nobody reading: after the first answer of each
            # connection its reading is paused, and the later bursts arrive then.
            peak = 0
            for burst in range(REQUESTS // BURST):
                for tag, s in enumerate(socks):
                    s.sendall(b"".join(request(tag, i) for i in range(burst * BURST, (burst + 1) * BURST)))
                until = time.monotonic() + 0.03
                while time.monotonic() < until:
                    peak = max([peak, *(c.outbound_buffered() for c in srv.connections)])
                    time.sleep(0.002)
            assert 0 < peak <= WRITE_CAP + RESP, f"peak outbound {peak}: the server kept reading past the cap"
            assert srv.server.count_connections() == CLIENTS
            # Now read everything, one connection after the other (the others stay paused meanwhile).
            for tag, s in enumerate(socks):
                data = recv_exact(s, REQUESTS * RESP, 30)
                for i in range(REQUESTS):
                    part = data[i * RESP : (i + 1) * RESP]
                    if part != response(tag, i):
                        head = struct.unpack_from(">II", part) if len(part) >= 8 else part
                        pytest.fail(f"connection {tag}: answer {i} of {REQUESTS} is wrong (starts as {head})")
                # Nothing more: no answer was duplicated.
                s.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    extra = s.recv(1)
                    pytest.fail(f"connection {tag}: bytes past the last answer: {extra!r}")
                s.settimeout(SOCK_TIMEOUT)
                assert srv.server.count_connections() == CLIENTS
            # Each connection still works after its pauses.
            for tag, s in enumerate(socks):
                s.sendall(request(tag, REQUESTS))
                assert recv_exact(s, RESP, SOCK_TIMEOUT) == response(tag, REQUESTS)
        finally:
            for s in socks:
                s.close()
        assert wait_for(lambda: srv.server.count_connections() == 0, SOCK_TIMEOUT), srv.server.count_connections()
    assert (h.opened, h.closed) == (CLIENTS, CLIENTS)
    assert not h.bad, h.bad[:5]


def test_back_pressure_then_eof_while_paused(reactor_backend: str) -> None:
    """A peer that sends its requests and closes while reading is paused: the held result
    (bytes, then EOF) is delivered once reading resumes, and the connection is closed once."""
    h = BigAnswers()
    with serve_in_background(
        h, codec=reactor.FixedLengthFrameCodec(REQ), write_buffer_cap=WRITE_CAP, read_buffer_cap=REQ,
        socket_send_buffer=64 * 1024,
    ) as srv:
        with socket.create_connection(srv.addr, timeout=SOCK_TIMEOUT) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(b"".join(request(7, i) for i in range(8)))
            time.sleep(0.05)  # reading is paused by now, a recv in flight
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.05)
            assert srv.server.count_connections() == 1
            data, how = read_until_closed(s, 8 * RESP + 1)
        # Whatever the server answered before it saw the EOF is in order and whole.
        assert how == "eof", how
        answered = len(data) // RESP
        assert len(data) == answered * RESP, len(data)
        for i in range(answered):
            assert data[i * RESP : (i + 1) * RESP] == response(7, i), i
        assert wait_for(lambda: h.closed == 1, SOCK_TIMEOUT)
        assert srv.server.count_connections() == 0
    assert (h.opened, h.closed) == (1, 1)
    assert not h.bad


# --- 5. fd numbers reused at once, while stale completions may still come ----------------------------
class TaggedEcho(reactor.EventServer):
    """Echoes, and keeps what each connection received, for the cross-talk check at the end."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.opened = 0

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        self.opened += 1
        c.context = bytearray()
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        self.received.append(bytes(c.context))
        return Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        assert frame is not None
        c.context += frame
        return frame, Action.NONE


def tagged(conn_id: int, length: int) -> bytes:
    unit = b"<%06d>" % conn_id
    return (unit * (length // len(unit) + 1))[:length]


def test_fd_reuse_after_close_gets_no_cross_talk(reactor_backend: str) -> None:
    h = TaggedEcho()
    short_rounds = 240
    with serve_in_background(h, num_event_loop=2) as srv:
        assert loop_backends(srv) == [reactor_backend] * 2
        streamers = [connect_nodelay(srv.addr, SOCK_TIMEOUT) for _ in range(3)]
        payloads: dict[int, bytes] = {}  # conn id -> all it sent (streamers: ids 0-2)
        full_echo: set[int] = set()  # ids whose whole payload the client read back
        try:
            for k in range(3):
                payloads[k] = b""
            next_id = 3
            for r in range(short_rounds):
                # Streamers: a message each, sizes from a few bytes to past one read buffer.
                for k, s in enumerate(streamers):
                    msg = tagged(k, 16 + (r * 7919 + k * 104729) % 90_000)
                    s.sendall(msg)
                    payloads[k] += msg
                # A few short connections, opened together, closed in various ways.
                kind = r % 5
                shorts = []
                for _ in range(1 + r % 3):
                    cid, next_id = next_id, next_id + 1
                    shorts.append((cid, connect_nodelay(srv.addr, SOCK_TIMEOUT)))
                for cid, s in shorts:
                    if kind == 0:  # a normal echo
                        payloads[cid] = tagged(cid, 100 + cid % 2000)
                        s.sendall(payloads[cid])
                    elif kind == 1:  # send and close without reading the answer
                        payloads[cid] = tagged(cid, 50_000)
                        s.sendall(payloads[cid])
                    elif kind == 2:  # open and close at once
                        payloads[cid] = b""
                    elif kind == 3:  # send, then reset (SO_LINGER 0)
                        payloads[cid] = tagged(cid, 3000)
                        s.sendall(payloads[cid])
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:  # half-close after sending: the echo still comes, then EOF
                        payloads[cid] = tagged(cid, 70_000)
                        s.sendall(payloads[cid])
                        s.shutdown(socket.SHUT_WR)
                for cid, s in reversed(shorts) if r % 2 else shorts:
                    if kind in (0, 4):
                        got = recv_exact(s, len(payloads[cid]), SOCK_TIMEOUT)
                        assert got == payloads[cid], f"connection {cid} got someone else's bytes: {got[:32]!r}"
                        if kind == 0:
                            s.shutdown(socket.SHUT_WR)
                        rest, how = read_until_closed(s, 1 << 20)
                        assert rest == b"", f"connection {cid}: {len(rest)} bytes after its echo: {rest[:32]!r}"
                        full_echo.add(cid)
                    s.close()
                # Streamers read their echo of this round.
                for k, s in enumerate(streamers):
                    msg_len = 16 + (r * 7919 + k * 104729) % 90_000
                    got = recv_exact(s, msg_len, SOCK_TIMEOUT)
                    assert got == payloads[k][-msg_len:], f"streamer {k} round {r}: {got[:32]!r}"
            for s in streamers:
                s.shutdown(socket.SHUT_WR)
                rest, _ = read_until_closed(s, 1 << 20)
                assert rest == b""
        finally:
            for s in streamers:
                s.close()
        assert wait_for(lambda: len(h.received) == next_id, SOCK_TIMEOUT), (len(h.received), next_id)
        assert srv.server.count_connections() == 0
    assert h.opened == next_id
    # Server side: each connection received a prefix of its own payload, and nothing of anyone else's.
    seen: set[int] = set()
    for data in h.received:
        if not data:
            continue
        m = re.match(rb"<(\d{6})>", data)
        assert m, f"received bytes with no tag: {data[:32]!r}"
        cid = int(m.group(1))
        assert cid not in seen, f"two server-side connections received connection {cid}'s bytes"
        seen.add(cid)
        assert payloads[cid].startswith(data), f"connection {cid} received foreign bytes: {data[:64]!r}"
        if cid in full_echo:
            assert data == payloads[cid], cid
    assert full_echo <= seen, sorted(full_echo - seen)[:10]


# --- 6. stop with connections (and requests) in flight ------------------------------------------------
def listening_ports() -> set[int]:
    """The local ports of the TCP sockets in LISTEN state, host-wide (/proc/net/tcp, state 0A)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_stop_with_connections_in_flight_frees_the_port_at_once(reactor_backend: str) -> None:
    for cycle in range(3):
        # reuse_addr: the server's own connections (TIME_WAIT now) must not stand in the way of the check below.
        srv = serve_in_background(Echo(), num_event_loop=2, write_buffer_cap=64 * 1024, reuse_addr=True)
        port = srv.port
        assert loop_backends(srv) == [reactor_backend] * 2
        socks: list[socket.socket] = []
        try:
            for i in range(12):
                s = connect_nodelay(srv.addr, SOCK_TIMEOUT)
                socks.append(s)
                if i % 3 == 1:
                    s.sendall(b"unread echo %d" % i)  # its answer waits, unread
                elif i % 3 == 2:
                    s.setblocking(False)  # as much as the buffers take: the server's output is stuck
                    try:
                        for _ in range(64):
                            s.send(b"z" * 65536)
                    except BlockingIOError:
                        pass
                    s.settimeout(SOCK_TIMEOUT)
            assert wait_for(lambda: srv.server.count_connections() == 12, SOCK_TIMEOUT)  # noqa: B023 (called here)
            srv.stop()
            assert port not in listening_ports(), f"cycle {cycle}: port {port} still has a listener after stop()"
            # The listener is gone at once: the port can be listened on again (SO_REUSEADDR
            # for the server side's TIME_WAIT connections; it does not pass a listening socket).
            with socket.socket() as again:
                again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                again.bind(("127.0.0.1", port))
                again.listen()
            # Every client sees its connection closed (an in-flight recv would keep it open).
            for i, s in enumerate(socks):
                s.settimeout(SOCK_TIMEOUT)
                try:
                    _, how = read_until_closed(s, 64 << 20)
                except TimeoutError:
                    pytest.fail(f"cycle {cycle}: connection {i} still open {SOCK_TIMEOUT} s after stop()")
                assert how in ("eof", "reset")
        finally:
            for s in socks:
                s.close()
            srv.stop()
        # And a new server takes the same port right away.
        with serve_in_background(Echo(), f"tcp://127.0.0.1:{port}", reuse_addr=True) as srv2:
            echo_check(srv2.addr, b"same port, cycle %d" % cycle)


def test_stop_right_after_start_and_with_a_connection_mid_accept(reactor_backend: str) -> None:
    """The requests armed at start (the listener's poll, the eventfd's) are cancelled at stop too."""
    for _ in range(10):
        srv = serve_in_background(Echo(), reuse_addr=True)
        port = srv.port
        with socket.create_connection(srv.addr, timeout=SOCK_TIMEOUT) as s:
            srv.stop()
            assert port not in listening_ports()
            s.settimeout(SOCK_TIMEOUT)
            _, how = read_until_closed(s, 1 << 20)
            assert how in ("eof", "reset")
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()


# --- 7. edge_triggered on io_uring --------------------------------------------------------------------
@pytest.mark.parametrize("io_chunk", [1 << 20, 4096])
def test_edge_triggered_option_serves_on_both_backends(reactor_backend: str, io_chunk: int) -> None:
    with serve_in_background(
        Echo(), backend=reactor_backend, edge_triggered=True, edge_triggered_io_chunk=io_chunk,  # type: ignore[arg-type]
        num_event_loop=2,
    ) as srv:
        assert loop_backends(srv) == [reactor_backend] * 2
        # Edge-triggered registration is an epoll notion: io_uring runs the level-triggered loop.
        expected = EdgeTriggeredEventLoop if reactor_backend == "epoll" else EventLoop
        assert loop_types(srv) == [expected, expected]
        conns = [connect_nodelay(srv.addr, SOCK_TIMEOUT) for _ in range(4)]
        try:
            # Pipelined messages, then one large payload, on each connection.
            for k, s in enumerate(conns):
                pipelined = b"".join(tagged(k * 1000 + i, 100 + i) for i in range(100))
                s.sendall(pipelined)
                assert recv_exact(s, len(pipelined), SOCK_TIMEOUT) == pipelined
            big = [tagged(k, 1 << 20) for k in range(len(conns))]
            for s, payload in zip(conns, big):
                s.setblocking(False)
                sent = 0
                # Send what fits, read what came back, until all of it made the round trip.
                got = bytearray()
                deadline = time.monotonic() + 30
                while len(got) < len(payload):
                    assert time.monotonic() < deadline, f"{len(got)} of {len(payload)} bytes echoed"
                    if sent < len(payload):
                        try:
                            sent += s.send(payload[sent : sent + 65536])
                        except BlockingIOError:
                            pass
                    try:
                        chunk = s.recv(1 << 20)
                        assert chunk, "EOF during the echo"
                        got += chunk
                    except BlockingIOError:
                        time.sleep(0.001)
                assert bytes(got) == payload
                s.settimeout(SOCK_TIMEOUT)
        finally:
            for s in conns:
                s.close()


# --- 8. the provided-buffer ring running dry ----------------------------------------------------------
#: Receive buffers of the ring (reactor.internal.uring.RING_BUFFERS, 64 in use) and connections
#: that all receive at once: far more connections than buffers, as bench conns-10k (10,000 and 64).
DRY_BUFFERS = 2
DRY_CONNS = 128
DRY_ROUNDS = 30
#: The pause before each burst, in which every connection's recv is armed again and parks.
DRY_IDLE = 0.02
DRY_ROUND_TIMEOUT = 5.0


def burst_message(conn: int, rnd: int) -> bytes:
    """64 bytes naming the connection and the round (bench conns-10k sends 64 B)."""
    return (b"<%04d/%02d>" % (conn, rnd) * 8)[:64]


def test_a_burst_on_more_idle_connections_than_receive_buffers_gets_every_echo(
    reactor_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection of a burst gets its echo, although the ring has far fewer receive buffers than the burst.

    Idle connections' recvs are parked, waiting for bytes. When bytes arrive
    on all of them at once, only as many recvs as there are free buffers can
    complete; the others fail with ENOBUFS and are re-armed at most RING_BUFFERS
    per round (csrc/rx_uring.c's starved budget), so the loop must not sleep
    while some still wait for their turn: the armed recvs may all be parked on
    sockets that already echoed, and no completion would wake it. Before
    commit 0dd48ac it slept, and the connections left waiting never got their
    echo (bench conns-10k hung so: 10,000 connections, 64 buffers). Here: 2
    buffers, 128 connections, 64 bytes sent on each as fast as one thread can,
    30 such rounds after an idle pause each. Before that commit a round
    stalls in nearly every run, most often one of the first few; with it
    each round takes milliseconds.
    """
    run_once(reactor_backend)
    needs_io_uring()
    monkeypatch.setattr(uring, "RING_BUFFERS", DRY_BUFFERS)  # read when the loop's poller opens its ring
    with serve_in_background(Echo(), backend="io_uring", num_event_loop=1) as srv:
        assert loop_backends(srv) == ["io_uring"]
        socks: list[socket.socket] = []
        try:
            for _ in range(DRY_CONNS):
                socks.append(connect_nodelay(srv.addr, SOCK_TIMEOUT))
            assert wait_for(lambda: srv.server.count_connections() == DRY_CONNS, SOCK_TIMEOUT)
            with selectors.DefaultSelector() as sel:
                for i, s in enumerate(socks):
                    sel.register(s, selectors.EVENT_READ, i)
                for rnd in range(DRY_ROUNDS):
                    time.sleep(DRY_IDLE)
                    sent = [burst_message(i, rnd) for i in range(DRY_CONNS)]
                    for s, message in zip(socks, sent):
                        s.sendall(message)
                    got = [bytearray() for _ in socks]
                    waiting = set(range(DRY_CONNS))
                    deadline = time.monotonic() + DRY_ROUND_TIMEOUT
                    while waiting and time.monotonic() < deadline:
                        for key, _ in sel.select(0.05):
                            i = key.data
                            chunk = socks[i].recv(4096)
                            assert chunk, f"round {rnd}: the server closed connection {i}"
                            got[i] += chunk
                            assert sent[i].startswith(got[i]), f"round {rnd}, connection {i}: got {bytes(got[i])!r}"
                            if len(got[i]) == len(sent[i]):
                                waiting.discard(i)
                    assert not waiting, (
                        f"round {rnd}: {len(waiting)} of {DRY_CONNS} connections got no echo in "
                        f"{DRY_ROUND_TIMEOUT:g} s (recvs that found the buffer ring empty were never re-armed)"
                    )
        finally:
            for s in socks:
                s.close()


# --- 9. bulk mode: large reads by recv(2), small ones by the ring, switching both ways -------------------
#: Sizes around bulk mode's threshold (16 KiB) and its way back (4 small reads in a row), repeated.
BULK_PATTERN = [70_000, 1, 20_000, 5, 5, 5, 5, 5, 100, 16_384, 16_383, 200_000, 7, 64 * 1024, 3, 3, 3, 3, 3, 3]
BULK_REPEATS = 6


def test_every_byte_arrives_in_order_as_reads_switch_between_ring_and_recv(reactor_backend: str) -> None:
    """Pipelined messages of mixed sizes, with back-pressure pausing reads, are echoed byte for byte.

    On io_uring a connection switches to bulk mode (POLLIN poll and recv(2))
    after a large read and back to the ring's recv after small ones; a switch
    must neither lose, repeat nor reorder bytes, also while reading is paused
    (write_buffer_cap 16 KiB: every large echo pauses it). The sender runs in
    its own thread so that both directions flow at once.
    """
    payload = b"".join(((b"[%03d:%06d]" % (i, n)) * (n // 12 + 1))[:n]
                       for i, n in enumerate(BULK_PATTERN * BULK_REPEATS))
    with serve_in_background(Echo(), num_event_loop=1, write_buffer_cap=16 * 1024) as srv, \
            connect_nodelay(srv.addr, SOCK_TIMEOUT) as s:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                s.sendall(payload)
            except OSError as e:
                errors.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got = recv_exact(s, len(payload), SOCK_TIMEOUT * 2)
        sender.join(SOCK_TIMEOUT)
        assert not sender.is_alive() and not errors, errors
        if got != payload:
            at = next(i for i, (a, b) in enumerate(zip(got, payload)) if a != b)
            pytest.fail(f"echo differs at byte {at} of {len(payload)}: {got[at:at + 24]!r} != {payload[at:at + 24]!r}")
