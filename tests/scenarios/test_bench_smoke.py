"""A fast smoke test of the benchmark suite's own code (bench/), not of anyone's speed.

The suite is not part of the tests (a full run took 10 minutes here); this
runs it end to end on one short echo workload, so that a change that breaks
the harness, a peer server, the C programs it compiles or the report fails
here rather than in the next person's benchmark run. It needs gcc (as does
building reactor itself); the HTTP case also needs wrk and is skipped without
it (wrk is a Debian package the README's test command does not install).

Nothing here asserts a speed: on a shared 2-core machine only the suite's
interleaved ratios mean anything, and never in a test (see docs/benchmarks.md).
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
    pytest.mark.skipif(shutil.which("gcc") is None, reason="the suite compiles its C peer and load generator"),
]


def run_bench(out: Path, *args: str) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = cpus[0], cpus[-1]  # the same CPU on a one-CPU machine: slower, still correct
    cmd = [sys.executable, "-m", "bench", "--rounds", "1", "--duration", "1", "--warmup", "0", "--retries", "0",
           "--server-cpu", str(server_cpu), "--load-cpu", str(load_cpu), "--out", str(out), *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    return results


def cells_by_peer(results: dict, workload: str) -> dict[str, dict]:
    return {c["peer"]: c for c in results["cells"] if c["workload"] == workload}


def test_echo_workload_end_to_end(tmp_path: Path) -> None:
    """Build, start each peer, drive echo_load, stop, aggregate, write Markdown: every byte verified."""
    results = run_bench(tmp_path, "--workloads", "echo-64", "--peers", "reactor,asyncio,selectors,c-epoll")
    cells = cells_by_peer(results, "echo-64")
    assert set(cells) == {"reactor", "asyncio", "selectors", "c-epoll"}
    for peer, c in cells.items():
        assert c["failed"] == 0 and c["errors"] == 0, (peer, c)
        assert c["throughput"] and c["throughput"] > 0, (peer, c)
        # CPU per op is server CPU / ops: both real measurements, so positive and finite.
        assert 0 < c["cpu_us_per_op"] < 1e6, (peer, c)
        assert c["user_us_per_op"] is not None and 0 <= c["user_us_per_op"] <= c["cpu_us_per_op"], (peer, c)
    # The ratio column is relative to the baseline peer of this run (asyncio without uvloop).
    base = cells["reactor"]["baseline"]
    assert cells[base]["ratio"] == pytest.approx(1.0)
    md = (tmp_path / "results.md").read_text()
    for peer in cells:
        # " †": a run disturbed by other processes (under pytest -n 2, the other smoke test's load).
        assert f"| echo-64 | {peer} |" in md or f"| echo-64 | {peer} † |" in md
    assert "user µs/op" in md


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian package) is not installed")
def test_http_workload_checks_answers_and_counts_requests(tmp_path: Path) -> None:
    """The wrk path: each run first checks four byte-exact pipelined answers, then counts requests."""
    results = run_bench(tmp_path, "--workloads", "http,http-pipe", "--peers", "reactor,c-epoll")
    for workload in ("http", "http-pipe"):
        for peer, c in cells_by_peer(results, workload).items():
            assert c["failed"] == 0 and c["errors"] == 0, (workload, peer, c)
            assert c["throughput"] > 0 and c["cpu_us_per_op"] > 0, (workload, peer, c)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian package) is not installed")
def test_multicore_sums_the_workers_cpu_and_leaves_no_process(tmp_path: Path) -> None:
    """bench.multicore: the unpinned server, the process-tree CPU of workers=2, no worker left behind."""
    cpus = sorted(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "bench.multicore", "--rounds", "1", "--duration", "1", "--warmup", "0",
           "--retries", "0", "--workloads", "http-pipe", "--configs", "1p-1loop,2w-1loop",
           "--load-cpu", str(cpus[-1]), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    results = json.loads((tmp_path / "multicore.json").read_text())
    runs = {r["peer"]: r for r in results["runs"]}
    assert set(runs) == {"1p-1loop", "2w-1loop"}
    for name, r in runs.items():
        assert "failed" not in r and r["errors"] == 0, (name, r)
        assert r["server_exit"] == 0 and r["throughput"] > 0 and r["cpu_us_per_op"] > 0, (name, r)
    # The parent and its two workers were measured (the parent alone would show ~no CPU).
    assert runs["1p-1loop"]["server_processes"] == 1 and runs["2w-1loop"]["server_processes"] == 3
    assert runs["2w-1loop"]["server_cpu_util"] > 0.2, runs["2w-1loop"]
    md = (tmp_path / "multicore.md").read_text()
    for name in runs:
        assert f"| http-pipe | {name} |" in md or f"| http-pipe | {name} † |" in md
