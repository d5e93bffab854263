"""Helpers shared by the scenario files of tests/scenarios/ (the test groups of gnet v1.6.7's gnet_test.go).

Real sockets on 127.0.0.1 and in tmp_path, no mocks. Every client socket has a
timeout, every wait is bounded, every thread a test starts is joined, and the
autouse ``no_leaks`` fixture checks fds and threads after each test. Checks
made inside callbacks (on loop threads) are recorded and asserted by the test
thread, so a failed check there cannot be mistaken for a server error.

The ``clients`` and ``jobs`` fixtures over :class:`Clients` and :class:`Jobs`
are in tests/scenarios/conftest.py.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

import netsupport
import reactor
from reactor import Action

SOCK_TIMEOUT = 5.0
WAIT = 5.0  # upper bound for "this should happen soon"


# --- helpers ---------------------------------------------------------------------------------
#: Exactly n bytes (each recv bounded by the socket timeout, the whole read by four); raises on EOF.
recv_exact = functools.partial(netsupport.recv_exact, timeout=4 * SOCK_TIMEOUT)
#: Everything until the server closes: (data, "eof" | "reset"); at most 1 MiB.
read_until_closed = functools.partial(netsupport.read_until_closed, limit=1 << 20)


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("reactor")]


def loop_name() -> str:
    return threading.current_thread().name


class Clients:
    """Client sockets owned by one test; all closed at teardown."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def connect(self, addr: Any, *, rcvbuf: int = 0, sndbuf: int = 0) -> socket.socket:
        family = socket.AF_UNIX if isinstance(addr, (str, os.PathLike)) else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        self.socks.append(s)
        s.settimeout(SOCK_TIMEOUT)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.connect(addr if family == socket.AF_INET else os.fspath(addr))
        return s

    def close_all(self) -> None:
        for s in self.socks:
            s.close()


class Job:
    """A function run on a thread; ``value``/``error`` once joined."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], name: str) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), name=name, daemon=True)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.value = fn(*args)
        except BaseException as e:
            self.error = e

    def join(self, timeout: float = WAIT) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not finish"
        return self.value

    def result(self, timeout: float = WAIT) -> Any:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.value


class Jobs:
    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._lock = threading.Lock()

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str = "test-job") -> Job:
        job = Job(fn, args, name)
        with self._lock:
            self.jobs.append(job)
        job.thread.start()
        return job

    def join_all(self) -> None:
        for job in list(self.jobs):
            job.thread.join(WAIT)
        hung = [j.thread.name for j in self.jobs if j.thread.is_alive()]
        assert not hung, f"threads did not finish: {hung}"


class Recorder(reactor.EventServer):
    """Records opens and closes (under one condition variable); echoes by default.

    Subclasses change behaviour through ``after_open`` / ``after_close`` /
    ``react``; checks made on loop threads go to ``problems``.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.opened: list[reactor.Conn] = []
        self.closed: list[tuple[reactor.Conn, BaseException | None]] = []
        self.shutdowns: list[int] = []  # len(self.closed) when on_shutdown ran
        self.problems: list[str] = []
        self.server: reactor.Server | None = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        return Action.NONE

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.cond:
            self.opened.append(c)
            self.cond.notify_all()
        return self.after_open(c)

    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        with self.cond:
            self.closed.append((c, err))
            self.cond.notify_all()
        return self.after_close(c, err)

    def after_close(self, c: reactor.Conn, err: BaseException | None) -> Action:
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        with self.cond:
            self.shutdowns.append(len(self.closed))
            self.cond.notify_all()

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE

    def problem(self, msg: str) -> None:
        with self.cond:
            self.problems.append(msg)

    def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"timed out waiting for {what}"

    def wait_opened(self, n: int) -> None:
        self.wait_until(lambda: len(self.opened) >= n, f"{n} opened connection(s)")

    def wait_closed(self, n: int) -> None:
        self.wait_until(lambda: len(self.closed) >= n, f"{n} closed connection(s)")


def echo_round_trip(sock: socket.socket, data: bytes = b"ping") -> None:
    sock.sendall(data)
    assert recv_exact(sock, len(data)) == data


# --- handlers used by several files -------------------------------------------------------------
class NeverStarts(reactor.EventServer):
    """Shuts down from on_init_complete: serve() returns before any loop starts."""

    def __init__(self) -> None:
        self.init_calls = 0
        self.server: reactor.Server | None = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.init_calls += 1
        self.server = server
        return Action.SHUTDOWN


class LoopRecorder(Recorder):
    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        c.context = loop_name()
        return None, Action.NONE
