"""Helpers for the TLS tests: blocking ssl clients, a raw TLS client for malformed records, a recording handler.

Everything is bounded: sockets get timeouts, waits have deadlines.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import reactor
from reactor import Action, Conn

TIMEOUT = 10.0


def wait_until(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "the condition") -> None:
    """Poll ``pred`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


def tls_connect(addr: Any, ctx: ssl.SSLContext, server_hostname: str | None = "localhost",
                timeout: float = TIMEOUT, rcvbuf: int = 0, **kwargs: Any) -> ssl.SSLSocket:
    """A blocking TLS client socket with a timeout, handshake done.

    ``rcvbuf``: SO_RCVBUF, set before connecting (shrinking it on a connected
    socket stalls loopback TCP for whole retransmission timeouts).
    """
    family = socket.AF_UNIX if isinstance(addr, (str, bytes)) else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        raw.connect(addr)
        return ctx.wrap_socket(raw, server_hostname=server_hostname, **kwargs)
    except BaseException:
        raw.close()
        raise


def recv_exactly(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes (fail on EOF)."""
    chunks, got = [], 0
    while got < n:
        chunk = s.recv(min(n - got, 1 << 20))
        if not chunk:
            raise AssertionError(f"EOF after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_to_eof(s: socket.socket) -> bytes:
    """Everything until the peer's EOF (close_notify for an SSLSocket)."""
    chunks = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class TLSRecorder(reactor.EventServer):
    """Echoes frames and records, thread-safely, what the handler saw of each connection.

    ``infos``: ``c.tls`` at ``on_opened``; ``closed``: the error each
    ``on_closed`` got; ``opened_count``/``closed_count``; ``failed``: the
    ``(error, c.tls)`` of each ``on_closed`` with no ``on_opened`` before it
    (a TLS handshake that did not complete), also counted in ``closed``.
    """

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.lock = threading.Lock()
        self.infos: list[Any] = []
        self.closed: list[BaseException | None] = []
        self.conns: list[Conn] = []
        self.frames: list[bytes] = []
        self.failed: list[tuple[BaseException | None, Any]] = []

    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.infos.append(c.tls)
            self.conns.append(c)
        return None, Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        if frame is not None:
            with self.lock:
                self.frames.append(frame)
        return (frame if self.echo else None), Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        with self.lock:
            self.closed.append(err)
            if not any(known is c for known in self.conns):
                self.failed.append((err, c.tls))
        return Action.NONE

    @property
    def failed_count(self) -> int:
        with self.lock:
            return len(self.failed)

    @property
    def opened_count(self) -> int:
        with self.lock:
            return len(self.infos)

    @property
    def closed_count(self) -> int:
        with self.lock:
            return len(self.closed)


class MemoryTLSClient:
    """A TLS client over a plain socket whose records the test sees and can damage before sending.

    ``ssl.SSLObject`` over memory BIOs, like the server under test, so a
    test can send half a record, flip a byte of one, or close TCP without
    ``close_notify``.
    """

    def __init__(self, addr: Any, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        self.sock = socket.create_connection(addr, timeout=TIMEOUT)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)

    def handshake(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                assert time.monotonic() < deadline, "handshake timed out"
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed during the handshake") from None
                self.incoming.write(data)
        self.sock.sendall(self.outgoing.read())

    def record(self, plaintext: bytes) -> bytes:
        """The ciphertext of ``plaintext`` (not sent)."""
        self.obj.write(plaintext)
        return self.outgoing.read()

    def send(self, plaintext: bytes) -> None:
        self.sock.sendall(self.record(plaintext))

    def recv(self, n: int) -> bytes:
        """``n`` bytes of plaintext (fail on EOF)."""
        out = b""
        while len(out) < n:
            try:
                out += self.obj.read(n - len(out))
                continue
            except ssl.SSLWantReadError:
                pass
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"EOF after {len(out)} of {n} bytes")
            self.incoming.write(data)
        return out

    def read_until_closed(self) -> tuple[bytes, str]:
        """Plaintext until the server ends: ``(data, "close_notify" | "eof" | "reset" | "alert")``.

        "alert": the server sent a fatal alert (its OpenSSL telling ours why it gave up).
        """
        out = b""
        while True:
            try:
                chunk = self.obj.read(65536)
                if not chunk:
                    return out, "close_notify"
                out += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return out, "alert"
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return out, "reset"
            if not data:
                return out, "eof"
            self.incoming.write(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MemoryTLSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LogCapture(logging.Handler):
    """Collects the "reactor" logger's records (thread-safe: loop threads log)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        with self._lock2:
            return [r.getMessage() for r in self.records if r.levelno >= level]

    def __enter__(self) -> LogCapture:
        logger = logging.getLogger("reactor")
        self._previous = logger.level
        logger.addHandler(self)
        if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("reactor")
        logger.removeHandler(self)
        logger.setLevel(self._previous)


def openssl_binary() -> str | None:
    return shutil.which("openssl")


def tls_versions() -> list[ssl.TLSVersion]:
    """The versions the tests force, both supported by this OpenSSL."""
    versions = [ssl.TLSVersion.TLSv1_2]
    if ssl.HAS_TLSv1_3:
        versions.append(ssl.TLSVersion.TLSv1_3)
    return versions
