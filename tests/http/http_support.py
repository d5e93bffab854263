"""Helpers of the HTTP suites (tests/http/): the servers under test and raw-socket exchanges.

Two servers speak reactor.http: the example (``reactor.examples.http``:
``HTTPServer`` + its ``HTTPCodec``, bodies discarded) and the test fixture
(``reactor.testing.HTTPHandler``, bodies kept). Both answer ``GET /`` and
``POST /`` with ``200`` and ``Hello World!\\r\\n``, so one suite runs against
both. Everything goes through real sockets on 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Any

BODY = b"Hello World!\r\n"
TIMEOUT = 5.0
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


@dataclass
class Target:
    """A running server under test."""

    kind: str  # "example" or "fixture"
    host: str
    port: int
    server: Any  # the BackgroundServer

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass
class Response:
    status_line: bytes
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def connect(target: Target, timeout: float = TIMEOUT) -> socket.socket:
    s = socket.create_connection(target.addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(sock: socket.socket, buf: bytearray, head_only: bool = False, timeout: float = TIMEOUT) -> Response:
    """One response from ``sock`` (``buf`` holds bytes already read and keeps what follows it).

    Framed by Content-Length (no body for a HEAD answer when ``head_only``).
    Raises ConnectionError on EOF before a whole response.
    """
    deadline = time.monotonic() + timeout

    def fill() -> None:
        assert time.monotonic() < deadline, f"no complete response within {timeout} s: {bytes(buf[:200])!r}"
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF inside a response: {bytes(buf[:200])!r}")
        buf.extend(chunk)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    length = 0 if head_only else int(headers.get(b"content-length", b"0"))
    while len(buf) < end + 4 + length:
        fill()
    body = bytes(buf[end + 4 : end + 4 + length])
    del buf[: end + 4 + length]
    status_line = lines[0]
    return Response(status_line, int(status_line.split(b" ")[1]), headers, body)


def read_until_closed(sock: socket.socket, timeout: float = TIMEOUT, limit: int = 1 << 20) -> tuple[bytes, str]:
    """Everything until the server closes: ``(data, "eof" | "reset")``; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) <= limit:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the server did not close within {timeout} s; got {bytes(data[:300])!r}"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data), "reset"
        except TimeoutError:
            raise AssertionError(f"the server did not close within {timeout} s; got {bytes(data[:300])!r}") from None
        if not chunk:
            return bytes(data), "eof"
        data += chunk
    raise AssertionError(f"more than {limit} bytes before the close")


def status_lines(data: bytes) -> list[bytes]:
    """The status lines of the responses in ``data`` (each at the start of ``data`` or right after a body)."""
    found = []
    buf = bytearray(data)
    while buf:
        m = _STATUS_LINE.match(buf)
        assert m is not None, f"not a response: {bytes(buf[:200])!r}"
        found.append(m.group(0)[:-2])
        assert read_response_from(buf), f"a response cut short: {bytes(buf[:200])!r}"
    return found


def read_response_from(buf: bytearray) -> bool:
    """Drop one complete Content-Length-framed response from the front of ``buf``; False if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", bytes(buf[: end + 2]).lower())
    length = int(m.group(1)) if m else 0
    if len(buf) < end + 4 + length:
        return False
    del buf[: end + 4 + length]
    return True


def exchange(target: Target, data: bytes, timeout: float = TIMEOUT) -> tuple[bytes, str]:
    """Send ``data`` on a new connection; everything the server sends until it closes, and how."""
    with connect(target, timeout) as s:
        s.sendall(data)
        return read_until_closed(s, timeout)


def get_ok(target: Target) -> None:
    """A fresh client still gets ``200`` and the body (the server survived what the test did)."""
    with connect(target) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = read_response(s, bytearray())
    assert (resp.status, resp.body) == (200, BODY), resp
