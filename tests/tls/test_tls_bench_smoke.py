"""A smoke test of the benchmark's TLS workloads (tls-echo-4k, https-pipe): the harness, not anyone's speed.

Runs ``python -m bench`` for one second per run on reactor and asyncio (uvloop
may be missing) and the C server, which has no TLS and must be skipped with
the reason. Needs gcc and the OpenSSL headers for tls_echo_load (Debian:
libssl-dev; .ci/run installs it), the ``openssl`` command for the bench's
certificate, and wrk for https-pipe; each is a skip reason when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="the suite compiles its load generators"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the bench makes its certificate with openssl"),
]


def tls_load_generator() -> str | None:
    """Why tls_echo_load cannot be built here, or None."""
    sys.path.insert(0, str(REPO))
    try:
        from bench import build
    finally:
        sys.path.pop(0)
    build.build_all()
    return build.MISSING.get("tls_echo_load")


def test_tls_workloads_end_to_end(tmp_path: Path) -> None:
    missing = tls_load_generator()
    if missing:
        pytest.skip(missing)
    workloads = "tls-echo-4k,https-pipe" if shutil.which("wrk") else "tls-echo-4k"
    cpus = sorted(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "bench", "--rounds", "1", "--duration", "1", "--warmup", "0", "--retries", "0",
           "--server-cpu", str(cpus[0]), "--load-cpu", str(cpus[-1]), "--out", str(tmp_path),
           "--workloads", workloads, "--peers", "reactor,asyncio,c-epoll"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    results = json.loads((tmp_path / "results.json").read_text())
    for w in workloads.split(","):
        cells = {c["peer"]: c for c in results["cells"] if c["workload"] == w}
        assert set(cells) == {"reactor", "asyncio"}, cells.keys()  # c-epoll: skipped, no TLS layer
        for peer, c in cells.items():
            assert c["failed"] == 0 and c["errors"] == 0, (w, peer, c)
            assert c["throughput"] > 0 and 0 < c["cpu_us_per_op"] < 1e6, (w, peer, c)
        assert "no TLS layer" in results["meta"]["skipped_cells"][f"{w}/c-epoll"]
    md = (tmp_path / "results.md").read_text()
    assert "## Skipped workloads" in md and "tls-echo-4k/c-epoll" in md
