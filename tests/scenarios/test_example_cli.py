"""The examples' command line, run as a user runs it (issue 14): ``--version``, ``--host ::1``, bad ports.

A port in use or out of range used to print a 27-line traceback, and
``--host ::1`` failed with "IPv6 hosts need [brackets]". Now: one line on
stderr, ``PROG: error: ...`` as argparse reports bad arguments, and exit
status 2; ``::1`` is bracketed for the address.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

import reactor
from netsupport import has_ipv6_loopback, listening_line, process_with_stderr

EXAMPLES = ["echo", "http"]
T = 20.0


def run(example: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"reactor.examples.{example}", *args],
        capture_output=True, text=True, timeout=T, check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("example", EXAMPLES)
def test_version(example: str) -> None:
    result = run(example, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"python -m reactor.examples.{example} (reactor-cffi {reactor.__version__})"


@pytest.mark.parametrize("example", EXAMPLES)
def test_busy_port_is_one_line_and_status_2(example: str, busy_port: int) -> None:
    result = run(example, "--host", "127.0.0.1", "--port", str(busy_port))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"python -m reactor.examples.{example}: error: cannot serve on tcp://127.0.0.1:{busy_port}: "
        "Address already in use\n"
    )


@pytest.mark.parametrize("example", EXAMPLES)
def test_invalid_port_is_one_line_and_status_2(example: str) -> None:
    result = run(example, "--port", "70000")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.fullmatch(
        rf"python -m reactor\.examples\.{example}: error: cannot serve on tcp://:70000: .*bad port '70000'\n",
        result.stderr,
    ), result.stderr


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("example", EXAMPLES)
def test_host_ipv6_literal(example: str) -> None:
    argv = [sys.executable, "-m", f"reactor.examples.{example}", "--host", "::1", "--port", "0"]
    with process_with_stderr(argv) as proc:
        line = listening_line(proc)
        m = re.search(r"(\d+)(?:, 0, 0\)|\s|/|$)", line.split("listening on", 1)[1])
        assert m, line
        port = int(m.group(1))
        with socket.create_connection(("::1", port), timeout=T) as s:
            if example == "echo":
                s.sendall(b"six")
                assert s.recv(3) == b"six"
            else:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(12) == b"HTTP/1.1 200"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(T) == 0
