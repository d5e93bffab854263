"""Bulk data through TLS, byte-exact both ways, with random write sizes on both sides.

The size is ``TLS_BULK_MIB`` MiB each way, 64 by default (about 1.3 s
per run on the 2-CPU development VM; lower it on a slower machine). The
client writes random-sized pieces from one thread and reads from another;
the server answers each frame with the same bytes cut into random-sized
writes (``c.write`` several times per ``react``), so records and batches
fall at arbitrary offsets.
"""

from __future__ import annotations

import hashlib
import os
import random
import selectors
import ssl
import time

import pytest

import reactor
from reactor import Action, Conn
from reactor.testing import TLSCertificates, serve_in_background
from tls_support import tls_connect

MIB = int(os.environ.get("TLS_BULK_MIB", "64"))


class ChoppyEcho(reactor.EventServer):
    """Echo every frame back as several writes of random sizes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        if not frame:
            return None, Action.NONE
        view = memoryview(frame)
        while len(view) > 1:
            cut = self.rng.randint(1, len(view) - 1)
            c.write(bytes(view[:cut]))
            view = view[cut:]
        return bytes(view), Action.NONE


def pattern(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)
    return (block * (size // len(block) + 1))[:size]


def pump(s: ssl.SSLSocket, data: bytes, rng: random.Random, timeout: float) -> tuple[int, str]:
    """Send ``data`` in random-sized pieces while reading the echo, on one thread; ``(received, sha256)``.

    One thread, a non-blocking socket and a selector: an ``ssl`` socket must
    not be read and written from two threads at once (OpenSSL's SSL object
    is not thread-safe, and CPython releases the GIL around SSL_read and
    SSL_write: "[SSL] internal error").
    """
    s.setblocking(False)
    digest = hashlib.sha256()
    view = memoryview(data)
    got = n = 0
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while got < len(data):
            assert time.monotonic() < deadline, f"{got} of {len(data)} bytes echoed within {timeout} s"
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if view else 0)
            sel.modify(s, want)
            sel.select(1.0)
            while view:  # write what the socket takes
                if not n:
                    n = min(len(view), rng.choice((1, 7, 100, 1500, 16384, 65536, 200_000)))
                try:
                    sent = s.send(view[:n])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    break  # OpenSSL wants the same write retried, at least as long: n is kept
                view = view[sent:]
                n = 0
            while True:  # read everything decrypted so far (a record may wait inside OpenSSL)
                try:
                    chunk = s.recv(1 << 20)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                assert chunk, f"EOF after {got} of {len(data)} bytes"
                digest.update(chunk)
                got += len(chunk)
    return got, digest.hexdigest()


@pytest.mark.parametrize("edge_triggered", [False, True], ids=["level", "edge"])
def test_bulk_echo_is_byte_exact(tls_certificates: TLSCertificates, edge_triggered: bool) -> None:
    size = MIB << 20
    data = pattern(size, 13)
    with serve_in_background(ChoppyEcho(11), tls=tls_certificates.server_context(),
                             edge_triggered=edge_triggered) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context(), timeout=60) as s:
            t0 = time.monotonic()
            got, digest = pump(s, data, random.Random(7), timeout=120)
            elapsed = time.monotonic() - t0
    assert got == size
    assert digest == hashlib.sha256(data).hexdigest()
    print(f"{MIB} MiB each way through TLS in {elapsed:.2f} s")
