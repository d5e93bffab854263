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
import threading
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


@pytest.mark.parametrize("edge_triggered", [False, True], ids=["level", "edge"])
def test_bulk_echo_is_byte_exact(tls_certificates: TLSCertificates, edge_triggered: bool) -> None:
    size = MIB << 20
    data = pattern(size, 13)
    rng = random.Random(7)
    received = hashlib.sha256()
    got = 0
    errors: list[BaseException] = []
    with serve_in_background(ChoppyEcho(11), tls=tls_certificates.server_context(),
                             edge_triggered=edge_triggered) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context(), timeout=60) as s:
            def writer() -> None:
                try:
                    view = memoryview(data)
                    while view:
                        n = min(len(view), rng.choice((1, 7, 100, 1500, 16384, 65536, 200_000, 1 << 20)))
                        s.sendall(view[:n])
                        view = view[n:]
                except BaseException as e:  # reported by the test thread
                    errors.append(e)

            t = threading.Thread(target=writer, name="tls-bulk-writer")
            t0 = time.monotonic()
            t.start()
            try:
                while got < size:
                    chunk = s.recv(1 << 20)
                    assert chunk, f"EOF after {got} of {size} bytes"
                    received.update(chunk)
                    got += len(chunk)
            finally:
                t.join(60)
            elapsed = time.monotonic() - t0
    assert not errors, errors
    assert got == size
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()
    print(f"{MIB} MiB each way through TLS in {elapsed:.2f} s")
