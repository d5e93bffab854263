"""FaultHandler's close and reset modes are deterministic: 500 clients, 500 identical outcomes.

The kernel's rules (tcp(7), RFC 2525 section 2.17): ``close(2)`` on a TCP
socket with unread data in its receive buffer sends a RST instead of a FIN,
and a segment arriving on a fully closed socket is answered with a RST. So a
server that closes "on connect" while the client's first bytes are already
in flight resets some connections and FINs others (issue 14: 26 EOF, 24
resets out of 50). ``close_after(n)`` therefore sends its ``n`` bytes, then
``shutdown(SHUT_WR)`` (a FIN after the data), and reads and discards until
the client closes: it never closes with unread data. ``reset()`` sets
SO_LINGER {on, 0} and closes: a RST, always.

Each test runs its 500 connections 25 at a time on threads, every socket
with a timeout, so it is bounded and takes well under a few seconds.
"""

from __future__ import annotations

import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from reactor.testing import FaultHandler, serve_in_background

RUNS = 500
PARALLEL = 25
T = 5.0


def read_to_end(s: socket.socket) -> tuple[str, bytes]:
    """("eof", data) when the peer's FIN ends the stream, ("reset", data) on ECONNRESET."""
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except ConnectionResetError:
        return "reset", data
    return "eof", data


def outcomes(addr: Any, client: Any) -> Counter[tuple[str, bytes]]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        return Counter(pool.map(lambda _: client(addr), range(RUNS)))


def send_then_read(payload: bytes) -> Any:
    def client(addr: Any) -> tuple[str, bytes]:
        with socket.create_connection(addr, timeout=T) as s:
            try:
                s.sendall(payload)  # at once: the bytes race the server's close
            except (ConnectionResetError, BrokenPipeError):
                return "reset", b""
            return read_to_end(s)

    return client


@pytest.mark.parametrize("n", [0, 4])
def test_close_after_gives_eof_after_exactly_n_bytes_every_time(n: int) -> None:
    with serve_in_background(FaultHandler.close_after(n)) as srv:
        seen = outcomes(srv.addr, send_then_read(b"hello world"))
    assert seen == Counter({("eof", b"hello world"[:n]): RUNS})


def test_close_after_in_pieces_and_data_after_the_end() -> None:
    """The answer's budget spans several chunks; what the client sends after EOF is read and dropped (no RST)."""

    def client(addr: Any) -> tuple[str, bytes]:
        with socket.create_connection(addr, timeout=T) as s:
            s.sendall(b"abc")
            first = s.recv(3)
            s.sendall(b"defgh")
            kind, rest = read_to_end(s)
            s.sendall(b"after the end")  # the server is still reading: no RST comes back
            return kind, first + rest

    with serve_in_background(FaultHandler.close_after(5)) as srv:
        seen = outcomes(srv.addr, client)
    assert seen == Counter({("eof", b"abcde"): RUNS})


def test_reset_gives_rst_every_time() -> None:
    with serve_in_background(FaultHandler.reset()) as srv:
        seen = outcomes(srv.addr, send_then_read(b"hello"))
    assert seen == Counter({("reset", b""): RUNS})
