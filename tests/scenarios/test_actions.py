"""Actions returned by callbacks, and closing a connection from another thread.

gnet counterparts: TestCloseActionError, TestShutdownActionError (from
react), TestCloseActionOnOpen, TestShutdownActionOnOpen (from on_opened, with
DupFd in OnShutdown), TestCloseConnection (``c.close()`` from another thread).
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import time
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
    read_until_closed,
)


# --- actions from react (gnet: TestCloseActionError, TestShutdownActionError) ------------------------
class CloseAfterEcho(Recorder):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.CLOSE


def test_close_action_delivers_the_echo_first(start_server: Any, clients: Clients) -> None:
    h = CloseAfterEcho()
    bg = start_server(h)
    sock = clients.connect(bg.addr)
    sock.sendall(b"hello, close")
    assert read_until_closed(sock) == (b"hello, close", "eof")
    h.wait_closed(1)
    assert h.closed[0][1] is None
    assert bg.running, "CLOSE must close the connection only, not the server"
    echo_round_trip(clients.connect(bg.addr))
    bg.stop()


class ShutdownAfterEcho(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.read_n: list[Any] = []

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        self.read_n.append(c.read_n(-1))  # gnet's test calls ReadN(-1) here
        return frame, Action.SHUTDOWN


def test_shutdown_action_delivers_the_echo(start_server: Any, clients: Clients) -> None:
    h = ShutdownAfterEcho()
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    sock.sendall(b"hello, shutdown")
    assert read_until_closed(sock) == (b"hello, shutdown", "eof")
    bg.join(WAIT)
    assert len(h.read_n) == 1
    size, data = h.read_n[0]
    # The built-in codec hands react the whole buffer and consumes it.
    assert (size, data) == (len(data), data) and data in (b"", b"hello, shutdown")
    assert h.shutdowns == [1]


# --- actions from on_opened (gnet: TestCloseActionOnOpen, TestShutdownActionOnOpen) -------------------
class CloseOnOpen(Recorder):
    def __init__(self, greeting: bytes | None) -> None:
        super().__init__()
        self.greeting = greeting
        self.reacted = False

    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return self.greeting, Action.CLOSE

    def after_close(self, c: reactor.Conn, err: BaseException | None) -> Action:
        return Action.SHUTDOWN

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        self.reacted = True
        return None, Action.NONE


@pytest.mark.parametrize("greeting", [None, b"bye"], ids=["no-output", "with-output"])
def test_close_from_on_opened_then_shutdown_from_on_closed(
    greeting: bytes | None, start_server: Any, clients: Clients
) -> None:
    h = CloseOnOpen(greeting)
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    assert read_until_closed(sock) == (greeting or b"", "eof")
    bg.join(WAIT)
    assert len(h.opened) == 1 and h.closed == [(h.opened[0], None)]
    assert not h.reacted
    assert h.shutdowns == [1]


class ShutdownOnOpen(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.dup_result: Any = None

    def after_open(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return None, Action.SHUTDOWN

    def on_shutdown(self, server: reactor.Server) -> None:
        super().on_shutdown(server)
        self.dup_result = describe_dup(server)  # gnet's test calls DupFd() in OnShutdown


def describe_dup(server: reactor.Server) -> Any:
    """Dup the listener, describe the duplicate, close it; the exception if dup_fd fails."""
    try:
        fd = server.dup_fd()
    except Exception as e:
        return e
    try:
        mode = os.fstat(fd).st_mode
        cloexec = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        try:
            with socket.socket(fileno=os.dup(fd)) as s:
                name = s.getsockname()
                listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError as e:
            name, listening = e, 0
        return {"fd": fd, "is_socket": stat.S_ISSOCK(mode), "cloexec": cloexec, "name": name, "listening": listening}
    finally:
        os.close(fd)


def test_shutdown_from_on_opened(start_server: Any, clients: Clients) -> None:
    h = ShutdownOnOpen()
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    assert read_until_closed(sock) == (b"", "eof")
    bg.join(WAIT)
    assert h.closed == [(h.opened[0], None)]
    assert h.shutdowns == [1]


def test_dup_fd_while_running(start_server: Any) -> None:
    h = Recorder()
    bg = start_server(h)
    info = describe_dup(bg.server)
    assert not isinstance(info, Exception), info
    assert info["is_socket"] and info["cloexec"] and info["listening"] == 1
    assert info["name"] == bg.addr
    bg.stop()


def test_dup_fd_in_on_shutdown(start_server: Any, clients: Clients) -> None:
    h = ShutdownOnOpen()
    bg = start_server(h, num_event_loop=2)
    addr = bg.addr
    sock = clients.connect(addr)
    assert read_until_closed(sock) == (b"", "eof")
    bg.join(WAIT)
    info = h.dup_result
    assert not isinstance(info, Exception), f"dup_fd() in on_shutdown raised {info!r}"
    assert info["is_socket"] and info["cloexec"] and info["name"] == addr


# --- close from another thread (gnet: TestCloseConnection) -----------------------------------------
class CloseLater(Recorder):
    def __init__(self, jobs: Jobs) -> None:
        super().__init__()
        self.jobs = jobs

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        def close_soon() -> None:
            time.sleep(0.1)
            c.close()
            c.close()  # a second close is a no-op: on_closed still runs once

        self.jobs.spawn(close_soon, name="closer")
        return frame, Action.NONE


def test_close_from_another_thread(start_server: Any, clients: Clients, jobs: Jobs) -> None:
    h = CloseLater(jobs)
    bg = start_server(h, num_event_loop=2)
    sock = clients.connect(bg.addr)
    t0 = time.monotonic()
    echo_round_trip(sock, b"close me later")
    assert read_until_closed(sock) == (b"", "eof")
    assert time.monotonic() - t0 >= 0.09
    jobs.join_all()
    assert all(j.error is None for j in jobs.jobs), [j.error for j in jobs.jobs]
    h.wait_closed(1)
    time.sleep(0.05)
    assert h.closed == [(h.opened[0], None)]
    assert bg.server.count_connections() == 0
    bg.stop()
