"""The seed's HTTP server (reactor.examples.http): pipelining, split requests, bad input, signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

import reactor
from netsupport import free_port, listening_line, process_with_stderr, recv_until_eof
from reactor.examples.http import MAX_BODY, MAX_HEADER, HTTPCodec, HTTPServer

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def read_responses(sock: socket.socket, n: int, deadline: float = 5.0) -> list[bytes]:
    """Read exactly ``n`` complete responses (Content-Length framed)."""
    buf = b""
    out: list[bytes] = []
    end = time.monotonic() + deadline
    while len(out) < n:
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = buf[: i + 4]
            cl = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(buf) < i + 4 + cl:
                break
            out.append(buf[: i + 4 + cl])
            buf = buf[i + 4 + cl :]
            if len(out) == n:
                return out
        assert time.monotonic() < end, f"only {len(out)} of {n} responses arrived"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} of {n} responses"
        buf += chunk
    return out


@pytest.fixture
def http_server(start_server):  # type: ignore[no-untyped-def]
    return start_server(HTTPServer(quiet=True), "tcp://127.0.0.1:0", codec=HTTPCodec())


def connect(bg) -> socket.socket:  # type: ignore[no-untyped-def]
    s = socket.create_connection(bg.addr, timeout=5)
    return s


def test_single_request_gets_the_seed_response(http_server) -> None:  # type: ignore[no-untyped-def]
    """200 OK with Server, Date and Content-Length headers and the 'Hello World!' body."""
    with connect(http_server) as s:
        s.sendall(GET)
        (resp,) = read_responses(s, 1)
    head, body = resp.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    names = {line.split(b":", 1)[0].lower() for line in lines[1:]}
    assert {b"server", b"date", b"content-length"} <= names
    assert body == b"Hello World!\r\n"
    assert b"Content-Length: 14" in head


def test_pipelined_requests_in_one_write_are_all_answered_in_order(http_server) -> None:  # type: ignore[no-untyped-def]
    """100 requests sent in one write get 100 responses, nothing more."""
    with connect(http_server) as s:
        reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(100))
        s.sendall(reqs)
        resps = read_responses(s, 100)
        assert all(r.startswith(b"HTTP/1.1 200 OK\r\n") for r in resps)
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.recv(1)  # no extra response


def test_request_split_across_reads_is_not_lost(http_server) -> None:  # type: ignore[no-untyped-def]
    """A request arriving byte by byte is answered once it is complete (the seed lost it)."""
    with connect(http_server) as s:
        for i in range(len(GET)):
            s.sendall(GET[i : i + 1])
            time.sleep(0.002)
        (resp,) = read_responses(s, 1)
        assert resp.startswith(b"HTTP/1.1 200 OK")


def test_request_with_body_across_reads(http_server) -> None:  # type: ignore[no-untyped-def]
    """A POST body is consumed with its request: the next pipelined request is answered too."""
    req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
    with connect(http_server) as s:
        s.sendall(req[:-4])
        time.sleep(0.05)
        s.sendall(req[-4:] + GET)
        resps = read_responses(s, 2)
        assert len(resps) == 2


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"BAD\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2**63), 413),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEADER + 10), 431),
    ],
    ids=["garbage", "no-version", "no-host", "http2", "bad-length", "length-2**63", "too-big", "gzip-te",
         "expectation", "huge-header"],
)
def test_malformed_request_gets_an_error_answer_and_close(http_server, request_bytes: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    """Bad input: the good requests before it are answered, then the error status, then EOF."""
    with connect(http_server) as s:
        s.sendall(GET + request_bytes)
        data = recv_until_eof(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", data) == [b"200", b"%d" % status]
    # The server keeps serving others.
    with connect(http_server) as s2:
        s2.sendall(GET)
        assert read_responses(s2, 1)[0].startswith(b"HTTP/1.1 200 OK")


def test_connection_close_and_http10(http_server) -> None:  # type: ignore[no-untyped-def]
    """'Connection: close' and HTTP/1.0 get their answer and then EOF; requests after it are ignored."""
    with connect(http_server) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET)
        data = recv_until_eof(s)
    assert data.count(b"HTTP/1.1 200 OK") == 1
    with connect(http_server) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert recv_until_eof(s).count(b"200 OK") == 1
    with connect(http_server) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        assert len(read_responses(s, 2)) == 2


def _writes_of(pid: int) -> int:
    """write(2)-family syscalls the process has made (``syscw`` in /proc/PID/io, all its threads)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw:"))


@pytest.mark.timeout(30)
@pytest.mark.epoll_only("counts write(2) calls in /proc/PID/io, and io_uring sends through the ring without them "
                        "(where a round's answers to one connection always leave as one send)")
@pytest.mark.parametrize("depth", [1, 16])
def test_a_pipeline_read_at_once_is_answered_with_one_write(depth: int) -> None:
    """The seed's property: the answers to every request one read brought go out in one write(2).

    The example runs as a process so its write syscalls can be counted
    (/proc/PID/io); the pipeline (under 1 KB) goes out in one send, so it
    arrives as one segment and is read at once.
    """
    port = free_port()
    with process_with_stderr(
        [sys.executable, "-m", "reactor.examples.http", "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    ) as proc:
        listening_line(proc)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(GET)
            read_responses(s, 1)  # the connection is accepted and served once
            time.sleep(0.1)
            before = _writes_of(proc.pid)
            s.sendall(GET * depth)
            assert len(read_responses(s, depth)) == depth
            time.sleep(0.1)
            assert _writes_of(proc.pid) - before == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    "extra", [[], ["--loops", "2"], ["--loops", "2", "--reuse-port"]], ids=["1", "2", "2-reuseport"]
)
def test_example_process_serves_and_exits_0_on_sigterm(extra: list[str]) -> None:
    """The README's main command: serves the seed response, SIGTERM stops it cleanly with exit code 0."""
    port = free_port()
    with process_with_stderr(
        [sys.executable, "-m", "reactor.examples.http", "--port", str(port), "--host", "127.0.0.1", *extra],
        stdout=subprocess.DEVNULL,
    ) as proc:
        listening_line(proc)  # "listening on ..." once bound
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(GET * 4)
            assert len(read_responses(s, 4)) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_example_process_exits_0_on_sigint(inherited: str) -> None:
    """Ctrl-C (SIGINT) stops the example cleanly too, even when started by a
    non-interactive shell in the background (SIGINT inherited as ignored)."""
    port = free_port()
    with process_with_stderr(
        [sys.executable, "-m", "reactor.examples.http", "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        preexec_fn=_ignore_sigint if inherited == "ignored" else None,
    ) as proc:
        listening_line(proc)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) == 0


@pytest.mark.timeout(20)  # without the fix serve() never returns
def test_example_honours_a_stop_asked_for_before_its_server_existed(capsys) -> None:  # type: ignore[no-untyped-def]
    """A SIGTERM that reaches the example after run_example installed its handlers but before
    on_init_complete (or, with --workers, before the parent registered the address) found
    nothing to stop and was lost: the process served on. The handlers now also set
    ``stop_requested``, which on_init_complete turns into Action.SHUTDOWN (forked workers
    inherit it). The window is well under a millisecond, so this drives that state directly.
    """
    handler = HTTPServer()
    handler.stop_requested = True  # what the signal handler does when handler.server is None
    started = time.monotonic()
    reactor.serve(handler, "tcp://127.0.0.1:0", codec=HTTPCodec())
    assert time.monotonic() - started < 5
    assert handler.server is not None  # set before the check, so a later signal can stop it
    assert "listening" not in capsys.readouterr().err  # it never announced itself as serving
