"""200 TLS serve/stop cycles, each with real handshakes: no fd, thread or Python-memory growth.

Each cycle starts a TLS server (tcp or unix, level- or edge-triggered),
completes a handshake and an echo, leaves a second connection mid-handshake
(a TCP connect that never sends its ClientHello) for the shutdown to close,
and stops the server. What the connections held (SSLObjects, memory BIOs,
timer entries) must be gone with them: the fd and thread counts after the
warm-up equal those at the end, and the traced Python allocations and gc
objects do not grow (tests/reliability/test_rel_lifecycle.py's method).
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from reactor.testing import EchoHandler, TLSCertificates, serve_in_background
from tls_support import TIMEOUT, recv_exactly, tls_connect

CYCLES = 200
WARMUP = 10
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("tcp", {}),
    ("unix", {}),
    ("tcp", {"edge_triggered": True}),
    ("tcp", {"num_event_loop": 2}),
]


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own fd


def one_cycle(certs: TLSCertificates, network: str, opts: dict[str, Any], unix_path: str) -> None:
    addr = f"unix://{unix_path}" if network == "unix" else "tcp://127.0.0.1:0"
    with serve_in_background(EchoHandler(), addr, tls=certs.server_context(), **opts) as srv:
        family = socket.AF_UNIX if network == "unix" else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as idle:
            idle.settimeout(TIMEOUT)
            idle.connect(srv.addr)  # mid-handshake at shutdown
            with tls_connect(srv.addr, certs.client_context()) as s:
                s.sendall(b"cycle")
                assert recv_exactly(s, 5) == b"cycle"


def test_tls_serve_stop_cycles(tls_certificates: TLSCertificates, tmp_path: Path) -> None:
    unix_path = str(tmp_path / "cycle.sock")
    schedule = [VARIANTS[i % len(VARIANTS)] for i in range(CYCLES)]
    t0 = time.monotonic()
    for network, opts in schedule[:WARMUP]:
        one_cycle(tls_certificates, network, opts, unix_path)
    gc.collect()
    fds0, threads0, objects0 = fd_count(), threading.active_count(), len(gc.get_objects())
    tracemalloc.start()
    try:
        traced0 = tracemalloc.get_traced_memory()[0]
        for network, opts in schedule[WARMUP:]:
            one_cycle(tls_certificates, network, opts, unix_path)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced0
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - t0
    fds1, threads1, objects1 = fd_count(), threading.active_count(), len(gc.get_objects())
    print(f"\n{CYCLES} TLS serve/stop cycles in {elapsed:.1f} s; traced Python memory {traced / 1024:+.0f} KiB; "
          f"gc objects {objects1 - objects0:+d}")
    assert fds1 == fds0, f"fds: {fds0} after warm-up, {fds1} after {CYCLES - WARMUP} more cycles"
    assert threads1 == threads0, f"threads: {threads0} -> {threads1}"
    assert traced < 64 * 1024, f"{traced / 1024:.0f} KiB of Python allocations kept over {CYCLES - WARMUP} cycles"
    assert objects1 - objects0 < 200, f"{objects1 - objects0} more gc-tracked objects"
    assert not os.path.exists(unix_path), "the last server left its socket file behind"
