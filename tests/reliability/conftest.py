"""Fixtures of the reliability suite (plain helpers are in reliability_support.py).

tests/conftest.py applies here too: its autouse ``no_leaks`` fails a test that
leaves an fd open or a thread running, and ``start_server`` starts a
:class:`BackgroundServer` that is stopped and joined at teardown.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from reliability_support import SOCK_TIMEOUT, Address, connect


class Sockets:
    """Client sockets that are closed at teardown, whatever the test did with them."""

    def __init__(self) -> None:
        self._open: list[socket.socket] = []

    def connect(self, addr: Address, **kw: Any) -> socket.socket:
        s = connect(addr, **kw)
        self._open.append(s)
        return s

    def adopt(self, s: socket.socket) -> socket.socket:
        self._open.append(s)
        return s

    def close_all(self) -> None:
        for s in self._open:
            s.close()
        self._open.clear()


@pytest.fixture
def socks() -> Iterator[Sockets]:
    s = Sockets()
    yield s
    s.close_all()


class Processes:
    """Subprocesses that are killed (if still running) and reaped at teardown, pipes closed."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(args, **kw)
        self._procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=SOCK_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()
        self._procs.clear()


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    yield p
    p.cleanup()
