"""How fast is a throwaway test server? Start-to-accepting and stop, over many cycles.

Usage::

    python bench/fixture_startstop.py [--cycles 200] [--warmup 10] [--network tcp|unix|udp]

For each cycle it times ``reactor.testing.serve_in_background(EchoHandler())``
until it returns (the listener is bound and accepting), then ``stop()``
(every thread joined, every fd closed), and prints the median and p90 of
start, stop and their sum, in milliseconds. ``--roundtrip`` also times one
connect + echo + close per cycle (not counted in start or stop).

If pytest-httpserver is importable, its ``HTTPServer(port=0).start()`` /
``stop()`` are measured the same way for comparison (it is not installed by
this project; the script says so when it is missing).

The issue's target: start + stop under 10 ms (median of 200 cycles).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

TARGET_MS = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    i = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[i]


def report(name: str, starts: list[float], stops: list[float], extra: dict[str, list[float]] | None = None) -> float:
    totals = [a + b for a, b in zip(starts, stops)]
    rows = {"start": starts, "stop": stops, "total": totals, **(extra or {})}
    print(f"\n{name} ({len(starts)} cycles), milliseconds:")
    print(f"  {'':10} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}")
    for label, values in rows.items():
        ms = [v * 1e3 for v in values]
        print(
            f"  {label:10} {statistics.median(ms):9.3f} {percentile(ms, 0.9):9.3f} {min(ms):9.3f} {max(ms):9.3f}"
        )
    return statistics.median(totals) * 1e3


def cycle(start: Callable[[], Any], stop: Callable[[Any], None], n: int, warmup: int,
          between: Callable[[Any], None] | None = None) -> tuple[list[float], list[float], list[float]]:
    starts: list[float] = []
    stops: list[float] = []
    middles: list[float] = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        srv = start()
        t1 = time.perf_counter()
        if between is not None:
            between(srv)
        t2 = time.perf_counter()
        stop(srv)
        t3 = time.perf_counter()
        if i >= warmup:
            starts.append(t1 - t0)
            middles.append(t2 - t1)
            stops.append(t3 - t2)
    return starts, stops, middles


def bench_reactor(args: argparse.Namespace) -> float:
    from reactor.testing import EchoHandler, serve_in_background

    tmp = tempfile.mkdtemp(prefix="reactor-bench-")
    addr = {
        "tcp": "tcp://127.0.0.1:0",
        "udp": "udp://127.0.0.1:0",
        "unix": f"unix://{tmp}/bench.sock",
    }[args.network]

    def roundtrip(srv: Any) -> None:
        if args.network == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(b"x", srv.addr)
                assert s.recv(1) == b"x"
            return
        family = socket.AF_UNIX if args.network == "unix" else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(srv.addr)
            s.sendall(b"x")
            assert s.recv(1) == b"x"

    starts, stops, middles = cycle(
        lambda: serve_in_background(EchoHandler(), addr),
        lambda srv: srv.stop(),
        args.cycles,
        args.warmup,
        roundtrip if args.roundtrip else None,
    )
    os.rmdir(tmp)
    extra = {"roundtrip": middles} if args.roundtrip else None
    return report(f"reactor.testing.serve_in_background ({args.network})", starts, stops, extra)


def bench_pytest_httpserver(args: argparse.Namespace) -> None:
    try:
        from pytest_httpserver import HTTPServer
    except ImportError:
        print("\npytest-httpserver: not installed (pip install pytest-httpserver to compare)")
        return

    def start() -> Any:
        server = HTTPServer(host="127.0.0.1", port=0)
        server.start()
        return server

    def stop(server: Any) -> None:
        server.stop()

    n = min(args.cycles, args.httpserver_cycles)
    starts, stops, _ = cycle(start, stop, n, min(args.warmup, 2))
    report("pytest_httpserver.HTTPServer start()/stop()", starts, stops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--network", choices=("tcp", "unix", "udp"), default="tcp")
    parser.add_argument("--roundtrip", action="store_true", help="also time one echo round trip per cycle")
    parser.add_argument(
        "--httpserver-cycles",
        type=int,
        default=200,
        help="cycles for pytest-httpserver (its stop() may wait for a 0.5 s poll interval)",
    )
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]} on {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs")
    median_total = bench_reactor(args)
    verdict = "OK" if median_total < TARGET_MS else "OVER"
    print(f"  target: median total < {TARGET_MS:.0f} ms -> {median_total:.3f} ms {verdict}")
    bench_pytest_httpserver(args)
    return 0 if median_total < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
