"""Multi-core: one process with 1 or 2 event loops, or 2 worker processes? ``python -m bench.multicore``

The seed HTTP server (``python -m reactor.examples.http``) in these
configurations, each under the suite's wrk workloads (``http``: 64
connections, one request at a time; ``http-pipe``: 16 pipelined requests per
write):

==============  ==========================================================================
configuration   what runs
==============  ==========================================================================
1p-1loop        1 process, 1 loop: reactor's default (main reactor: an accepting thread + 1 loop)
1p-1loop-rp     1 process, 1 loop, ``reuse_port=True`` (the loop accepts itself): what each worker runs
1p-2loops       1 process, 2 loops, main reactor (``num_event_loop=2``)
1p-2loops-rp    1 process, 2 loops, ``reuse_port=True``: one listener per loop
2w-1loop        ``workers=2``: 2 processes x 1 loop, one SO_REUSEPORT listener each
uvloop          the suite's uvloop peer (asyncio Protocol, same HTTP code), 1 process, for reference
==============  ==========================================================================

How it differs from ``python -m bench``: the *server is not pinned* -- a
one-core pin would make "2 workers" meaningless -- so its threads and
processes may run on every CPU, while wrk (``-t1``) stays pinned to the load
CPU. On a 2-CPU machine wrk therefore competes with the server for one of the
two CPUs: the server gets one CPU for itself and whatever wrk leaves of the
other. That is the point of the two workloads: plain ``http`` costs wrk about
as much CPU per request as the server, so wrk is the limit; ``http-pipe``
costs wrk little per request, so the server is. Server CPU is summed over the
whole process tree (parent and workers: ``bench.system.tree_cpu_split``);
"server CPUs" is that CPU time divided by the run's wall time, i.e. how many
CPUs the server kept busy. Other processes' CPU use ("foreign", in CPUs) is
what all CPUs did in the run minus the server and the load generator.

Everything else is the suite's, reused as it is: a run is
:func:`bench.run.run_once` (start, wait until listening, byte-exact HTTP
check, warm-up, measured wrk run, stop -- and, new there, a check that no
worker process outlives the server), repeated by :func:`bench.run.run_cell`
when steal or foreign load is over its threshold; rounds interleave the
configurations; each cell is the median over rounds
(:func:`bench.report.aggregate`).

Writes ``multicore.json`` (every run) and ``multicore.md`` (the table) to
``--out`` (default docs/benchmarks/); docs/multicore.md discusses them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/multicore.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, run, system
from bench.peers import Peer, all_peers
from bench.workloads import WORKLOADS

REPO = Path(__file__).resolve().parent.parent
#: The reference the "×1p-1loop" columns divide by.
REFERENCE = "1p-1loop"


def _http(*extra: str) -> Callable[[str, str, int, dict[str, Path]], list[str]]:
    def command(mode: str, host: str, port: int, binaries: dict[str, Path]) -> list[str]:
        if mode != "http":
            raise ValueError(f"bench.multicore runs the HTTP example only, not {mode!r}")
        return [sys.executable, "-m", "reactor.examples.http", "--host", host, "--port", str(port), "--quiet",
                *extra]

    return command


def configs() -> dict[str, Peer]:
    """Every configuration, in the order they run within a round."""
    uvloop = all_peers()["uvloop"]
    items = [
        Peer("1p-1loop", "1 process x 1 loop, main reactor (reactor's default: an accepting thread + 1 loop)",
             _http("--loops", "1")),
        Peer("1p-1loop-rp", "1 process x 1 loop, reuse_port=True (the loop accepts itself; what each worker runs)",
             _http("--loops", "1", "--reuse-port")),
        Peer("1p-2loops", "1 process x 2 loops, main reactor (num_event_loop=2)", _http("--loops", "2")),
        Peer("1p-2loops-rp", "1 process x 2 loops, reuse_port=True (one listener per loop)",
             _http("--loops", "2", "--reuse-port")),
        Peer("2w-1loop", "workers=2: 2 processes x 1 loop, one SO_REUSEPORT listener each", _http("--workers", "2")),
        Peer("uvloop", "uvloop, 1 process (bench/servers/asyncio_server.py, the same HTTP code), for reference",
             uvloop.command, unavailable=uvloop.unavailable),
    ]
    return {c.name: c for c in items}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    known = configs()
    p = argparse.ArgumentParser(
        prog="python -m bench.multicore",
        description="reactor's HTTP example: 1 process with 1 or 2 loops vs 2 worker processes (server unpinned).",
        epilog="See docs/multicore.md for the results and how to read them.",
    )
    run.add_session_options(p)
    p.add_argument("--workloads", default="http,http-pipe", help="comma-separated: http, http-pipe (default both)")
    p.add_argument("--configs", help=f"comma-separated subset of: {','.join(known)} (default: all)")
    p.add_argument("--load-cpu", type=int, default=1,
                   help="CPU wrk is pinned to (default 1; -1: unpinned too). The server is never pinned.")
    p.add_argument("--max-foreign", type=float, default=0.15,
                   help="repeat a run in which other processes used more than this many CPUs (default 0.15)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks",
                   help="directory for multicore.json and multicore.md (default docs/benchmarks)")
    args = p.parse_args(argv)
    run.session_defaults(p, args)
    args.workload_list = run._pick(p, args.workloads, ["http", "http-pipe"], "workload")
    args.config_list = run._pick(p, args.configs, list(known), "configuration")
    args.server_cpu = None  # run_once's spawn leaves the affinity alone: every CPU
    if args.load_cpu < 0:
        args.load_cpu = None
    elif args.load_cpu not in os.sched_getaffinity(0):
        p.error(f"--load-cpu {args.load_cpu} is not one of this process's CPUs {sorted(os.sched_getaffinity(0))}")
    return args


# --- the table ---------------------------------------------------------------------------------------


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]], cells: list[dict[str, Any]]) -> str:
    """The results as Markdown: one table, then what it was measured on and how, the noise and the errors."""
    out = [
        "# Multi-core: loops or workers (measured)",
        "",
        f"Generated by `{meta['command']}` on {meta['started']} ({meta['wall_s'] / 60:.1f} min). "
        "What it means: [../multicore.md](../multicore.md).",
        "",
        "| workload | configuration | req/s | ×1p-1loop | p50 | p99 | server CPU µs/req | user µs/req "
        "| server CPUs | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    ref = {c["workload"]: c for c in cells if c["peer"] == REFERENCE}
    for c in cells:
        r = ref.get(c["workload"])
        speedup = c["throughput"] / r["throughput"] if r and r["throughput"] and c["throughput"] else None
        out.append(f"| {c['workload']} " + report.row(
            c, report._ranged(c, "throughput", report._ops), report._ratio(speedup), report._lat(c["p50_us"]),
            report._lat(c["p99_us"]), report._ranged(c, "cpu_us_per_op", report._cpu),
            report._cpu(c["user_us_per_op"]), report._n(c["server_cpu_util"], 2)))
    load = "unpinned" if meta["load_cpu"] is None else f"pinned to CPU {meta['load_cpu']}"
    out += [
        "",
        f"Each cell: median of {meta['rounds']} run(s) of {meta['duration_s']} s after {meta['warmup_s']:g} s of "
        "warm-up (min–max in parentheses), configurations interleaved within each round. The server is "
        f"unpinned (all {meta['machine'].get('cpus_online', '?')} CPUs); wrk runs with one thread, {load}. "
        "Server CPU is summed over the parent and its workers. Server CPUs: server CPU time / wall time. "
        f"Runs with more than {meta['max_steal']:.0%} steal or {meta['max_foreign']:.2f} CPUs of foreign load "
        f"were repeated up to {meta['retries']} times; † marks a cell that kept such a run.",
        "",
        "| machine | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in meta["machine"].items()]
    ok = [r for r in runs if "failed" not in r]
    if ok:
        out += [
            "",
            f"Noise: {len(runs)} runs, {sum(1 for r in runs if r.get('attempts', 1) > 1)} repeated; foreign load "
            f"per kept run median {statistics.median(r.get('foreign', 0.0) for r in ok):.2f} CPUs, max "
            f"{max(r.get('foreign', 0.0) for r in ok):.2f}; steal max {max(r.get('steal', 0.0) for r in ok):.1%}.",
        ]
    bad = [f"- round {r.get('round')}, {r['workload']}, {r['peer']}: {r.get('failed') or r.get('error_details')}"
           for r in runs if "failed" in r or r.get("errors")]
    if bad:
        out += ["", "Errors:", "", *bad]
    out.append("")
    return "\n".join(out)


def write(out: Path, meta: dict[str, Any], runs: list[dict[str, Any]]) -> list[Path]:
    """multicore.json (every run) and multicore.md (the table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cells = report.aggregate(meta, runs)
    paths = [out / "multicore.json", out / "multicore.md"]
    paths[0].write_text(json.dumps({"meta": meta, "cells": cells, "runs": runs}, indent=1) + "\n")
    paths[1].write_text(markdown(meta, runs, cells))
    return paths


# --- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, run._raise_interrupt)  # a kill of the run still stops its servers
    known = configs()
    skipped = {}
    chosen = []
    for name in args.config_list:
        if known[name].unavailable:
            skipped[name] = known[name].unavailable
            run._say(f"bench.multicore: skipping {name}: {known[name].unavailable}")
        else:
            chosen.append(known[name])
    workloads = [WORKLOADS[n] for n in args.workload_list]
    plan = [(r, w, c) for r in range(args.rounds) for w in workloads for c in chosen]
    typical = sum(run._estimate(w, args)[0] for _, w, _ in plan)
    run._say(f"bench.multicore: {len(plan)} runs ({args.rounds} round(s) x {len(workloads)} workload(s) x "
             f"{len(chosen)} configuration(s)), {args.duration} s each; expected {run._fmt_secs(typical)}; "
             f"server unpinned, wrk {'unpinned' if args.load_cpu is None else f'on CPU {args.load_cpu}'}")
    machine = system.machine_info(REPO)
    started = time.time()
    retry_until = time.monotonic() + 2 * typical
    runs: list[dict[str, Any]] = []
    try:
        for i, (r, w, c) in enumerate(plan, 1):
            label = f"[{i:>{len(str(len(plan)))}}/{len(plan)} round {r + 1}/{args.rounds}] {w.name:<9} {c.name:<12}"
            run._say(label + " ...", end=" ")
            res = run.run_cell(c, w, args, {}, label, retry_until)
            res["round"] = r + 1
            runs.append(res)
            extra = f", {res['server_cpu_util']:.2f} CPUs" if "server_cpu_util" in res else ""
            run._say(run._progress_result(res) + extra)
    except KeyboardInterrupt:
        run._say("\nbench.multicore: interrupted; servers stopped")
        return 130
    finally:
        system.kill_all()
    meta = run.session_meta("python -m bench.multicore", argv, started, args, chosen, skipped, workloads, machine)
    paths = write(args.out, meta, runs)
    run._say(f"bench.multicore: done in {run._fmt_secs(meta['wall_s'])}; wrote " + ", ".join(map(str, paths)))
    print(paths[1].read_text())
    failed = sum(1 for r in runs if "failed" in r or r.get("errors"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
