"""The benchmark driver: ``python -m bench`` (or ``python bench/run.py``) from the repository root.

What one *run* is: start one peer's server pinned to the server CPU, wait
until it listens, warm it up, then drive one workload for ``--duration``
seconds from the load CPU while reading the server's CPU time and the
machine's steal time before and after; stop the server (SIGTERM, then
SIGKILL), always.

How runs are ordered, and why: ``for round: for workload: for peer``.  Peers
are interleaved (A B C A B C ...) and rounds spread over the whole session,
so slow drifts of this noisy shared machine (a neighbour VM busy for a
minute, another process on our CPUs) hit every peer alike instead of
whichever one happened to run then.  Each cell reports the **median** over
rounds, plus the min-max spread so the noise stays visible.

Steal and foreign load: a run whose server or load CPU lost more than
``--max-steal`` (10 %) of its time to the hypervisor, or more than
``--max-foreign`` (10 %) to other processes of this machine, is repeated, at
most ``--retries`` times; if every attempt was disturbed, the least disturbed
one is kept and flagged (see bench/system.py for how both are measured).

Outputs (``--out``, default docs/benchmarks/, or bench/.build/quick/ with
``--quick`` so a smoke run never overwrites published results):
results.md (tables + machine description), results.json (every run's raw
numbers) and chart.png.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import build, report, system
from bench.peers import Peer, all_peers
from bench.workloads import WORKLOADS, LoadError, Workload, check_http, run_load, warm_up

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
QUICK_WORKLOADS = ["http", "http-pipe", "echo-64", "conns-10k"]

# Time bounds (seconds) of the steps of one run; they make the whole session bounded.
SERVER_START_LIMIT = 20.0
SETTLE_LIMIT = 2.0
STOP_GRACE = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    peers = all_peers()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark reactor against asyncio, uvloop, selectors and a C epoll server.",
        epilog="See docs/benchmarks.md for how to read the results.",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 round, 2 s runs, no warm-up, no repeats, workloads {','.join(QUICK_WORKLOADS)} "
                        "(output to bench/.build/quick/ unless --out)")
    add_session_options(p)
    p.add_argument("--workloads", help=f"comma-separated subset of: {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--peers", help=f"comma-separated subset of: {','.join(peers)} "
                                   f"(default: {','.join(n for n, x in peers.items() if x.default)})")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default 0)")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU the load generators are pinned to (default 1)")
    p.add_argument("--max-foreign", type=float, default=0.10,
                   help="repeat a run in which other processes took more than this fraction of the server's "
                        "or the load generator's CPU (default 0.10)")
    p.add_argument("--out", type=Path, help="directory for results.md, results.json, chart.png")
    args = p.parse_args(argv)
    if args.quick:
        # A smoke run reports disturbed runs (marked †) instead of repeating them: it must stay short.
        session_defaults(p, args, rounds=1, duration=2, warmup=0.0, retries=0)
        args.workloads = args.workloads or ",".join(QUICK_WORKLOADS)
        args.out = args.out or REPO / "bench" / ".build" / "quick"
    else:
        session_defaults(p, args)
        args.out = args.out or REPO / "docs" / "benchmarks"
    args.workload_list = _pick(p, args.workloads, list(WORKLOADS), "workload")
    args.peer_list = _pick(p, args.peers, [n for n, x in peers.items() if x.default], "peer", known=list(peers))
    return args


def add_session_options(p: argparse.ArgumentParser) -> None:
    """The options ``python -m bench`` and ``python -m bench.multicore`` share: how long, how often, how noisy.

    Their defaults are None here, so that --quick can tell an option not given
    from one given; :func:`session_defaults` fills them in after parsing.
    """
    p.add_argument("--rounds", type=int, help="rounds; every cell is the median over them (default 3)")
    p.add_argument("--duration", type=int, help="seconds of load per run (default 5; wrk takes whole seconds)")
    p.add_argument("--warmup", type=float, help="seconds of unmeasured load before each run (default 1)")
    p.add_argument("--max-steal", type=float, default=0.10,
                   help="repeat a run that lost more than this fraction of a CPU to steal (default 0.10)")
    p.add_argument("--retries", type=int, help="repeats of a disturbed run at most (default 2)")


def session_defaults(p: argparse.ArgumentParser, args: argparse.Namespace, rounds: int = 3, duration: int = 5,
                     warmup: float = 1.0, retries: int = 2) -> None:
    """Give the options of :func:`add_session_options` left out their defaults, and check them."""
    for name, default in (("rounds", rounds), ("duration", duration), ("warmup", warmup), ("retries", retries)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.rounds < 1 or args.duration < 1 or args.retries < 0:
        p.error("--rounds and --duration must be >= 1, --retries >= 0")


def _pick(p: argparse.ArgumentParser, value: str | None, default: list[str], what: str,
          known: list[str] | None = None) -> list[str]:
    if not value:
        return default
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in (known or default)]
    if bad:
        p.error(f"unknown {what}(s) {', '.join(bad)}; known: {', '.join(known or default)}")
    return names


# --- progress ----------------------------------------------------------------------------------------


def _say(msg: str, end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


def _fmt_secs(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _fmt_num(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def _estimate(w: Workload, args: argparse.Namespace) -> tuple[float, float]:
    """(typical, worst-case) seconds for one attempt of one run of ``w``.

    Typical: measured on the 2-vCPU dev VM (server start ~0.3 s, settling and
    stopping ~0.3 s).  Worst case: every step at its time limit.
    """
    overhead = 0.6
    if w.kind == "conns":
        warm = max(args.warmup, 0.0)
        typical = overhead + (warm + 0.1 if warm else 0) + 1.5
        worst_warm = warm + 30 if warm else 0
        return typical, SERVER_START_LIMIT + worst_warm + 180 + 2 * SETTLE_LIMIT + STOP_GRACE + 5
    warm = 0.0 if args.warmup <= 0 else (max(1, round(args.warmup)) if w.kind == "wrk" else args.warmup)
    typical = overhead + (warm + 0.1 if warm else 0) + args.duration + 0.1
    worst_load = args.duration + (30 if w.kind == "wrk" else 32)
    worst_warm = warm + 32 if warm else 0
    return typical, SERVER_START_LIMIT + 5 + worst_warm + worst_load + 2 * SETTLE_LIMIT + STOP_GRACE + 5


# --- one run -----------------------------------------------------------------------------------------


def run_once(peer: Peer, w: Workload, args: argparse.Namespace, binaries: dict[str, Path]) -> dict[str, Any]:
    """Start ``peer``, drive ``w`` once, stop ``peer``; the run's measurements (errors included)."""
    port = system.free_port(HOST)
    res: dict[str, Any] = {"peer": peer.name, "workload": w.name, "port": port}
    cmd = peer.command(w.mode, HOST, port, binaries)
    if w.tls:
        files = build.tls_files()
        assert files is not None  # the plan skips TLS workloads without them
        cmd += ["--tls-cert", str(files[0]), "--tls-key", str(files[1])]
    with tempfile.TemporaryFile() as log:
        server = system.spawn(cmd, cpu=args.server_cpu, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        res["server_pid"] = server.pid
        kids: list[int] = []
        try:
            system.wait_listening(server, HOST, port, SERVER_START_LIMIT)
            # wrk only checks that responses parse; this checks their bytes and order once per run.
            checks = check_http(port, tls=w.tls) if w.mode == "http" else []
            werr, wdetails = warm_up(w, port=port, seconds=args.warmup, cpu=args.load_cpu, binaries=binaries)
            werr, wdetails = werr + len(checks), checks + [f"warm-up: {d}" for d in wdetails]
            system.wait_cpu_settled(server.pid, limit=SETTLE_LIMIT)
            # The whole process tree: a server started with workers=N forks N processes.
            kids = system.descendants(server.pid)
            res["server_processes"] = 1 + len(kids)
            (u0, s0), st0, t0 = system.tree_cpu_split(server.pid), system.cpu_times(), time.monotonic()
            cpu0 = u0 + s0
            # The load generator is our child: its CPU time arrives in RUSAGE_CHILDREN when it is reaped.
            ch0, me0 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
            res.update(run_load(w, port=port, seconds=args.duration, cpu=args.load_cpu, binaries=binaries,
                                server_pid=server.pid))
            if server.poll() is None:
                system.wait_cpu_settled(server.pid, limit=SETTLE_LIMIT)
                u1, s1 = system.tree_cpu_split(server.pid)
                cpu1 = u1 + s1
            else:
                # Died during the run: the CPU reading is lost (reported as an error below).
                u1, cpu1 = u0, cpu0
            st1, t1 = system.cpu_times(), time.monotonic()
            ch1, me1 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
            if werr:
                res["errors"] += werr
                res["error_details"] = wdetails + res["error_details"]
            res["server_cpu_s"] = cpu1 - cpu0
            res["window_s"] = t1 - t0
            # Why CPU µs per op: see bench/system.py.  ops_total includes the in-flight
            # operations answered after the timed window, which also cost server CPU.
            res["cpu_us_per_op"] = (cpu1 - cpu0) * 1e6 / res["ops_total"] if res["ops_total"] else None
            # Of which in user mode: the peer's own code (the rest is the kernel's).
            res["user_us_per_op"] = (u1 - u0) * 1e6 / res["ops_total"] if res["ops_total"] else None
            res["server_cpu_util"] = (cpu1 - cpu0) / (t1 - t0) if t1 > t0 else 0.0
            load_cpu_s = _cpu_s(ch1) - _cpu_s(ch0) + _cpu_s(me1) - _cpu_s(me0)  # client + this driver
            res["load_cpu_util"] = load_cpu_s / (t1 - t0) if t1 > t0 else 0.0
            # Time the hypervisor (steal) or other processes (foreign) took from our two CPUs.
            sc, lc = args.server_cpu, args.load_cpu
            res["steal_server_cpu"] = system.cpu_share(st0, st1, sc, "steal")
            res["steal_load_cpu"] = system.cpu_share(st0, st1, lc, "steal")
            res["steal"] = max(res["steal_server_cpu"], res["steal_load_cpu"])
            if sc is None:
                # An unpinned server (bench.multicore) runs on every CPU: other processes' share
                # is what all CPUs did minus the server and the load, in CPUs.
                busy = sum(system.cpu_share(st0, st1, cpu, "task") for cpu in st1)
                res["foreign"] = max(0.0, busy - res["server_cpu_util"] - res["load_cpu_util"])
                res["steal"] = max(system.cpu_share(st0, st1, cpu, "steal") for cpu in st1)
                # Not in "task": loopback TCP's softirq work, partly charged to the processes' stime too,
                # which is why "foreign" is a lower bound.
                res["irq_cpus"] = sum(system.cpu_share(st0, st1, cpu, "irq") for cpu in st1)
            else:
                res["foreign_server_cpu"] = max(0.0, system.cpu_share(st0, st1, sc, "task") - res["server_cpu_util"])
                res["foreign_load_cpu"] = max(0.0, system.cpu_share(st0, st1, lc, "task") - res["load_cpu_util"])
                res["foreign"] = max(res["foreign_server_cpu"], res["foreign_load_cpu"])
            res["irq_server_cpu"] = system.cpu_share(st0, st1, sc, "irq")
        except (LoadError, RuntimeError, OSError, ValueError, KeyError) as e:
            res["failed"] = f"{type(e).__name__}: {e}"
        finally:
            alive = server.poll() is None
            rc = system.stop(server, grace=STOP_GRACE)
            res["server_exit"] = rc
            if not alive and "failed" not in res:
                res["failed"] = f"server exited during the run with status {rc}"
            elif alive and rc not in (0, -signal.SIGTERM):
                res.setdefault("notes", []).append(f"server exit status {rc} after SIGTERM")
            left = system.reap_leftovers(kids)
            if left and "failed" not in res:
                res["failed"] = f"the server left {len(left)} process(es) running after it exited: {left} (killed)"
            log.seek(0)
            text = log.read().decode(errors="replace").strip()
            if text:
                # A quiet server prints nothing: whatever it printed (tracebacks, warnings) is reported.
                lines = text.splitlines()
                res["server_output_lines"] = len(lines)
                res["server_output_tail"] = lines[-20:]
    return res


def _cpu_s(ru: resource.struct_rusage) -> float:
    return ru.ru_utime + ru.ru_stime


def _disturbed(res: dict[str, Any], args: argparse.Namespace) -> bool:
    return bool(res.get("steal", 0.0) > args.max_steal or res.get("foreign", 0.0) > args.max_foreign)


def run_cell(peer: Peer, w: Workload, args: argparse.Namespace, binaries: dict[str, Path],
             label: str, retry_until: float) -> dict[str, Any]:
    """Repeat while steal or foreign load is over its threshold; keep the least disturbed attempt.

    Bounded twice: at most ``args.retries`` repeats, and none once the
    session has passed ``retry_until`` (monotonic time), so a machine that
    stays busy for the whole session costs at most that much extra time.
    """
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, args.retries + 2):
        res = run_once(peer, w, args, binaries)
        res["attempt"] = attempt
        attempts.append(res)
        if "failed" in res or not _disturbed(res, args):
            break
        if attempt <= args.retries and time.monotonic() < retry_until:
            _say(f"steal {res['steal']:.0%}, foreign load {res['foreign']:.0%}: repeating")
            # Disturbances come in bursts (a neighbour's test suite, a busy host): give it a moment.
            time.sleep(2.0 * attempt)
            _say(label + " ...", end=" ")
    least = min(attempts, key=lambda r: (_disturbed(r, args), r.get("steal", 0.0) + r.get("foreign", 0.0)))
    best: dict[str, Any] = dict(least)
    best["attempts"] = len(attempts)
    best["disturbed"] = _disturbed(best, args)
    if len(attempts) > 1:
        best["discarded"] = [{"steal": a.get("steal"), "foreign": a.get("foreign")}
                             for a in attempts if a["attempt"] != best["attempt"]]
    return best


def _progress_result(res: dict[str, Any]) -> str:
    if "failed" in res:
        return f"FAILED: {res['failed']}"
    parts = []
    if res["workload"].startswith("conns"):
        parts.append(f"accept {res['accept_s']:.2f}s, echo {res['echo_s'] * 1e3:.0f}ms, "
                     f"RSS {res['rss_per_conn_bytes'] / 1024:.1f} KiB/conn")
    else:
        parts.append(f"{_fmt_num(res['throughput'])} ops/s, p50 {res['p50_us']:.0f}µs")
    if res.get("cpu_us_per_op") is not None:
        unit = "conn" if res["workload"].startswith("conns") else "op"
        parts.append(f"CPU {res['cpu_us_per_op']:.2f} µs/{unit}")
    parts.append(f"steal {res['steal']:.0%}, foreign {res['foreign']:.0%}")
    if res["errors"]:
        parts.append(f"ERRORS {res['errors']}")
    if res.get("server_output_lines"):
        parts.append(f"server printed {res['server_output_lines']} line(s)")
    return ", ".join(parts)


# --- main --------------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt



def tls_skips(workloads: list[Workload], peers: list[Peer], binaries: dict[str, Path]) -> dict[str, str]:
    """``{"workload/peer": why}`` for the TLS runs that cannot happen: a peer without TLS, or no TLS tooling."""
    skipped: dict[str, str] = {}
    for w in workloads:
        if not w.tls:
            continue
        missing = None
        if w.kind == "echo" and "tls_echo_load" not in binaries:
            missing = build.MISSING.get("tls_echo_load", "tls_echo_load is not built")
        elif build.tls_files() is None:
            missing = build.MISSING.get("tls", "no TLS certificate")
        for p in peers:
            if missing is not None:
                skipped[f"{w.name}/{p.name}"] = missing
            elif not p.tls:
                skipped[f"{w.name}/{p.name}"] = "this peer has no TLS layer (see bench/peers.py)"
    return skipped


def session_meta(prog: str, argv: list[str] | None, started: float, args: argparse.Namespace,
                 peers: list[Any], skipped: dict[str, str | None], workloads: list[Workload],
                 machine: dict[str, Any]) -> dict[str, Any]:
    """What a results file says about the session that produced it (also used by bench.multicore)."""
    return {
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "wall_s": time.time() - started,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "server_cpu": args.server_cpu,
        "load_cpu": args.load_cpu,
        "max_steal": args.max_steal,
        "max_foreign": args.max_foreign,
        "retries": args.retries,
        "peers": [p.name for p in peers],
        "peer_descriptions": {p.name: p.description for p in peers},
        "skipped_peers": skipped,
        "workloads": [w.name for w in workloads],
        "workload_descriptions": {w.name: w.description for w in workloads},
        "machine": machine,
    }

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a kill of the suite still stops its servers

    usable = os.sched_getaffinity(0)
    if not {args.server_cpu, args.load_cpu} <= usable or args.server_cpu == args.load_cpu:
        _say(f"bench: --server-cpu/--load-cpu must be two distinct CPUs of {sorted(usable)}: not pinning")
        args.server_cpu = args.load_cpu = None
    else:
        # The driver itself stays off the server's core too.
        os.sched_setaffinity(0, {args.load_cpu})

    binaries = build.build_all()
    peers = all_peers()
    skipped = {}
    run_peers = []
    for name in args.peer_list:
        if peers[name].unavailable:
            skipped[name] = peers[name].unavailable
            _say(f"bench: skipping peer {name}: {peers[name].unavailable}")
        else:
            run_peers.append(peers[name])
    workloads = [WORKLOADS[n] for n in args.workload_list]
    skipped_cells = tls_skips(workloads, run_peers, binaries)
    for cell, why in skipped_cells.items():
        _say(f"bench: skipping {cell}: {why}")
    plan = [(r, w, p) for r in range(args.rounds) for w in workloads for p in run_peers
            if f"{w.name}/{p.name}" not in skipped_cells]
    typical = sum(_estimate(w, args)[0] for _, w, _ in plan)
    pauses = sum(2.0 * a for a in range(1, args.retries + 1))  # run_cell's sleeps between attempts
    worst = sum(_estimate(w, args)[1] * (args.retries + 1) + pauses for _, w, _ in plan)
    # Repeats stop at 2x the expected time, so a busy machine costs at most about 3x (see run_cell).
    _say(f"bench: {len(plan)} runs ({args.rounds} round(s) x {len(workloads)} workload(s) x {len(run_peers)} "
         f"peer(s)), {args.duration} s each; expected {_fmt_secs(typical)} on a quiet machine, at most about "
         f"{_fmt_secs(3 * typical)} if runs must be repeated (hard bound if every step timed out: "
         f"{_fmt_secs(worst)}); server CPU {args.server_cpu}, load CPU {args.load_cpu}")

    machine = system.machine_info(REPO)
    started = time.time()
    # Repeats for steal/foreign load stop once the session has taken twice its expected time.
    retry_until = time.monotonic() + 2 * typical
    runs: list[dict[str, Any]] = []
    partial = REPO / "bench" / ".build" / "last-run.json"
    interrupted = False
    try:
        for i, (r, w, peer) in enumerate(plan, 1):
            elapsed = time.time() - started
            eta = f", ETA {_fmt_secs(elapsed / (i - 1) * (len(plan) - i + 1))}" if i > 1 else ""
            width = len(str(len(plan)))
            label = f"[{i:>{width}}/{len(plan)} round {r + 1}/{args.rounds}{eta}] {w.name:<11} {peer.name:<10}"
            _say(label + " ...", end=" ")
            res = run_cell(peer, w, args, binaries, label, retry_until)
            res["round"] = r + 1
            runs.append(res)
            _say(_progress_result(res))
            partial.write_text(json.dumps({"runs": runs}, indent=1))
    except KeyboardInterrupt:
        interrupted = True
        _say("\nbench: interrupted; servers stopped. Partial raw results: " + str(partial))
    finally:
        system.kill_all()
    if interrupted:
        return 130

    meta = session_meta("python -m bench", argv, started, args, run_peers, skipped, workloads, machine)
    meta["skipped_cells"] = skipped_cells
    try:
        paths = report.write_all(args.out, meta, runs)
    except Exception:
        traceback.print_exc()
        _say(f"bench: writing the report failed; raw results are in {partial}")
        return 1
    _say(f"bench: done in {_fmt_secs(meta['wall_s'])}; wrote " + ", ".join(str(p) for p in paths))
    errors = sum(r.get("errors", 0) for r in runs) + sum(1 for r in runs if "failed" in r)
    if errors:
        _say(f"bench: {errors} error(s) or failed run(s): see the Errors section of results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
