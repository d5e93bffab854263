"""The workloads, and how each one's load generator is run and its output read.

==============  ======  ===========================================================================
workload        server  load
==============  ======  ===========================================================================
http            http    wrk, 1 thread, 64 connections, one request at a time per connection
http-pipe       http    wrk, 1 thread, 64 connections, 16 pipelined requests per write (pipeline.lua)
echo-64         echo    echo_load: 64 connections x 64 B, ping-pong (one message in flight)
echo-4k         echo    echo_load: 64 connections x 4 KiB, ping-pong
echo-64k        echo    echo_load: 16 connections x 64 KiB, ping-pong
echo-64-p16     echo    echo_load: 64 connections x 64 B, 16 messages in flight per connection
conns-10k       echo    echo_load --mode conns: 10,000 connections (at most 64 opening at a time),
                        one echo each to prove the accept, VmRSS with all idle, then one echo on
                        every connection at once
tls-echo-4k     echo    tls_echo_load (echo_load with OpenSSL): 64 TLS connections x 4 KiB ping-pong
https-pipe      http    wrk https://, 1 thread, 64 TLS connections, 16 pipelined requests per write
==============  ======  ===========================================================================

The TLS workloads (``tls=True``) serve with bench/.build/tls/cert.pem (a
self-signed ECDSA P-256 certificate, :func:`bench.build.tls_files`), loaded
by every peer into ``ssl.create_default_context(Purpose.CLIENT_AUTH)``, so
all negotiate TLS 1.3 with the same cipher; the handshakes happen before the
timed window (64 connections, opened first), so the CPU per op is the record
layer's: decrypt, hand to the application, encrypt, write. Peers without
TLS (the C server, selectors) are skipped for them.

An "op" is one HTTP response (also with pipelining: wrk counts each) or one
message echoed back in full.  Every load generator runs pinned to the load
CPU and is killed if it overruns its time limit.  Both check what comes back:
wrk counts malformed responses, non-2xx statuses and timeouts as errors;
echo_load verifies every byte against a per-connection pattern (see
bench/c/echo_load.c) and describes any mismatch.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import system

HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"
#: Messages in flight per connection for http-pipe (the issue's depth).
PIPELINE_DEPTH = 16


@dataclass(frozen=True)
class Workload:
    """One cell row of the results table."""

    name: str
    #: What the server serves: "echo" or "http".
    mode: str
    #: Which load generator: "wrk", "echo" (echo_load pingpong) or "conns" (echo_load conns).
    kind: str
    conns: int
    size: int = 0
    depth: int = 1
    description: str = ""
    #: Over TLS: the server gets --tls-cert/--tls-key, the load generator speaks TLS.
    tls: bool = False


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("http", "http", "wrk", 64, description="wrk, 64 connections, 1 request in flight each"),
        Workload("http-pipe", "http", "wrk", 64, depth=PIPELINE_DEPTH,
                 description=f"wrk, 64 connections, {PIPELINE_DEPTH} pipelined requests per write"),
        Workload("echo-64", "echo", "echo", 64, 64, description="64 connections x 64 B ping-pong"),
        Workload("echo-4k", "echo", "echo", 64, 4096, description="64 connections x 4 KiB ping-pong"),
        Workload("echo-64k", "echo", "echo", 16, 65536, description="16 connections x 64 KiB ping-pong"),
        Workload("echo-64-p16", "echo", "echo", 64, 64, depth=16,
                 description="64 connections x 64 B, 16 messages in flight each"),
        Workload("conns-10k", "echo", "conns", 10_000, 64,
                 description="10,000 connections: accept all, RSS, one echo on each"),
        Workload("tls-echo-4k", "echo", "echo", 64, 4096, tls=True,
                 description="64 TLS connections x 4 KiB ping-pong (TLS 1.3, OpenSSL client)"),
        Workload("https-pipe", "http", "wrk", 64, depth=PIPELINE_DEPTH, tls=True,
                 description=f"wrk https://, 64 TLS connections, {PIPELINE_DEPTH} pipelined requests per write"),
    )
}


class LoadError(RuntimeError):
    """The load generator failed to run (not: it ran and found errors, which are results)."""


def _run(cmd: list[str], *, cpu: int | None, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a load generator pinned to ``cpu``, at most ``timeout`` s; return its stdout."""
    p = system.spawn(cmd, cpu=cpu, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        system.stop(p, grace=2)
        raise LoadError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s") from None
    finally:
        system.stop(p, grace=2)
    if p.returncode != 0:
        tail = err.decode(errors="replace").strip()[-500:]
        raise LoadError(f"{Path(cmd[0]).name} exited with status {p.returncode}: {tail}")
    return out.decode(errors="replace")


def _last_json(text: str, who: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise LoadError(f"{who} printed no JSON result:\n{text[-500:]}")


def _wrk(w: Workload, port: int, seconds: int, cpu: int | None) -> dict[str, Any]:
    url = f"{'https' if w.tls else 'http'}://127.0.0.1:{port}/"
    cmd = ["wrk", "-t1", f"-c{w.conns}", f"-d{seconds}s"]
    if w.depth > 1:
        # wrk hands the arguments after "--" to the script's init(); they go after the URL.
        cmd += ["-s", str(WRK_DIR / "pipeline.lua"), url, "--", str(w.depth)]
    else:
        cmd += ["-s", str(WRK_DIR / "report.lua"), url]
    env = dict(os.environ, WRK_CONNECTIONS=str(w.conns))  # report.lua needs it to undo wrk's correction
    raw = _last_json(_run(cmd, cpu=cpu, timeout=seconds + 30, env=env), "wrk")
    errors = {k[7:]: v for k, v in raw.items() if k.startswith("errors_") and v}
    dur = raw["duration_us"] / 1e6
    return {
        "ops": raw["requests"],
        "ops_total": raw["requests"],
        "duration_s": dur,
        "throughput": raw["requests"] / dur if dur > 0 else 0.0,
        "p50_us": raw["p50_us"],
        "p99_us": raw["p99_us"],
        "errors": sum(errors.values()),
        "error_details": [f"wrk {k} errors: {v}" for k, v in errors.items()],
        "latency_per": "batch of 16" if w.depth > 1 else "request",
        "latency_raw": raw.get("latency_raw", False),
        "load_raw": raw,
    }


def _echo(w: Workload, port: int, seconds: float, cpu: int | None, binaries: dict[str, Path],
          server_pid: int) -> dict[str, Any]:
    exe = str(binaries["tls_echo_load" if w.tls else "echo_load"])
    if w.kind == "conns":
        cmd = [exe, "--mode", "conns", "--port", str(port), "--conns", str(w.conns), "--size", str(w.size),
               "--window", "64", "--rss-pid", str(server_pid), "--timeout", "150"]
        raw = _last_json(_run(cmd, cpu=cpu, timeout=180), "echo_load")
    else:
        drain = 2.0
        cmd = [exe, "--port", str(port), "--conns", str(w.conns), "--size", str(w.size), "--depth", str(w.depth),
               "--duration", str(seconds), "--drain", str(drain), "--timeout", str(seconds + drain + 20)]
        raw = _last_json(_run(cmd, cpu=cpu, timeout=seconds + drain + 30), "echo_load")
    if raw.get("timed_out"):
        raw["errors"] = raw.get("errors", 0) + 1
        raw.setdefault("error_details", []).append("echo_load hit its time limit")
    result = {
        "ops": raw["ops"],
        "ops_total": raw["ops_total"],
        "duration_s": raw["duration_s"],
        "throughput": raw["ops_per_s"],
        "p50_us": raw["p50_us"],
        "p99_us": raw["p99_us"],
        "errors": raw["errors"],
        "error_details": raw["error_details"],
        "latency_per": "message",
        "load_raw": raw,
    }
    if w.kind == "conns":
        n = raw["conns_open"] or 1
        # CPU is reported per connection here (accept + 2 echoes + close), not per echo.
        result["ops_total"] = raw["conns"]
        result.update(
            accept_s=raw["accept_s"],
            echo_s=raw["echo_s"],
            rss_before_kb=raw["rss_before_kb"],
            rss_idle_kb=raw["rss_idle_kb"],
            rss_after_kb=raw["rss_after_kb"],
            # Per connection, with all of them open and each having echoed twice.
            rss_per_conn_bytes=(raw["rss_after_kb"] - raw["rss_before_kb"]) * 1024 / n,
            conns_open=raw["conns_open"],
        )
    return result


def run_load(w: Workload, *, port: int, seconds: float, cpu: int | None, binaries: dict[str, Path],
             server_pid: int) -> dict[str, Any]:
    """Drive ``w`` against the server on ``port`` for ``seconds``; normalised results.

    Keys: ops (completed in the timed window), ops_total (everything the
    server answered, the CPU/op denominator), duration_s, throughput (ops/s),
    p50_us, p99_us, errors, error_details, and load_raw (the generator's own
    JSON); conns-10k adds accept_s, echo_s, rss_*.
    """
    if w.kind == "wrk":
        return _wrk(w, port, max(1, round(seconds)), cpu)
    return _echo(w, port, seconds, cpu, binaries, server_pid)


#: The one answer every peer gives (only the Date value varies).
_RESPONSE = re.compile(
    rb"HTTP/1\.1 200 OK\r\nServer: reactor\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n"
    rb"Content-Length: 14\r\n\r\nHello World!\r\n"
)
_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def check_http(port: int, timeout: float = 5.0, tls: bool = False) -> list[str]:
    """Check an HTTP peer's answers byte by byte, which wrk does not: what is wrong, if anything.

    Sends three pipelined requests in one write, then one request split in
    two writes 50 ms apart (a request straddling two reads), and expects
    exactly four identical 200 responses, in order, and nothing else.
    ``tls``: over TLS (the certificate is not verified: it is the bench's own).
    """
    problems: list[str] = []
    try:
        with _connect(port, timeout, tls) as s:
            s.sendall(_REQUEST * 3)
            s.sendall(_REQUEST[:10])
            time.sleep(0.05)
            s.sendall(_REQUEST[10:])
            data = b""
            deadline = time.monotonic() + timeout
            while len(_RESPONSE.findall(data)) < 4 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return [f"HTTP check: {type(e).__name__}: {e}"]
    except ssl.SSLError as e:
        return [f"HTTP check over TLS: {e}"]
    rest = _RESPONSE.sub(b"", data)
    count = len(_RESPONSE.findall(data))
    if count != 4:
        problems.append(f"HTTP check: {count} of 4 responses (3 pipelined + 1 split request) came back")
    if rest:
        problems.append(f"HTTP check: unexpected bytes in the answers: {rest[:120]!r}")
    return problems


def _connect(port: int, timeout: float, tls: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if not tls:
        return s
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        return ctx.wrap_socket(s, server_hostname="localhost")
    except BaseException:
        s.close()
        raise


def warm_up(w: Workload, *, port: int, seconds: float, cpu: int | None,
            binaries: dict[str, Path]) -> tuple[int, list[str]]:
    """A short unmeasured load of the same kind, so the timed run does not meet a cold server.

    Returns the errors it saw: a warm-up is still traffic whose answers are checked.
    """
    if seconds <= 0:
        return 0, []
    if w.kind == "wrk":
        r = _wrk(w, port, max(1, round(seconds)), cpu)
        return r["errors"], r["error_details"]
    # The 10k test warms up with ordinary echo traffic: its "before" RSS must be a warm server's.
    conns, size, depth = (w.conns, w.size, w.depth) if w.kind == "echo" else (64, 64, 1)
    exe = str(binaries["tls_echo_load" if w.tls else "echo_load"])
    raw = _last_json(_run([exe, "--port", str(port), "--conns", str(conns), "--size", str(size),
                           "--depth", str(depth), "--duration", str(seconds), "--drain", "2"],
                          cpu=cpu, timeout=seconds + 30), "echo_load")
    return raw["errors"], raw["error_details"]
