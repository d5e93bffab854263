#!/usr/bin/env python3
"""Regenerate docs/syscalls-trace.txt: the life of one connection, syscall by syscall.

Runs the seed's HTTP server (``python -m reactor.examples.http``) under
``strace -f``, sends it one request from a stdlib socket, stops it with
SIGTERM, and writes the part of the trace that starts with the listening
socket, with each thread and file descriptor named, to docs/syscalls-trace.txt.
docs/syscalls.md explains it line by line.

Requirements: Linux, reactor installed in the running interpreter, and
**strace** (Debian/Ubuntu: ``apt-get install strace``). strace needs ptrace
permission over its own child, which a normal user has unless a container or
``kernel.yama.ptrace_scope=3`` forbids it.

Usage (from the repository root)::

    python scripts/trace_syscalls.py                # writes docs/syscalls-trace.txt
    python scripts/trace_syscalls.py -o /tmp/t.txt  # somewhere else
    python scripts/trace_syscalls.py --raw /tmp/raw.txt  # also keep strace's full output
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "syscalls-trace.txt"

#: The calls that make up a connection's life in reactor, plus openat so that
#: the two files the server opens after binding (/proc/sys/net/core/somaxconn,
#: /dev/null for the spare fd) are named in the trace.
TRACE = "trace=network,epoll_create1,epoll_ctl,epoll_wait,eventfd2,read,write,writev,close,fcntl,openat"
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: trace_syscalls.py\r\n\r\n"

LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<rest>.*)$")
CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*?)(?:\)\s+=\s+(?P<ret>-?\d+).*)?$")
RESUMED = re.compile(r"^<\.\.\. (?P<name>\w+) resumed>.*\)\s+=\s+(?P<ret>-?\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_pid(parent: int, timeout: float = 10.0) -> int:
    """The pid of the process strace started (its only child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise SystemExit("trace_syscalls: strace started no child process")


def capture(raw: Path, port: int) -> None:
    """Run the server under strace, make one request, SIGTERM it."""
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit(
            "trace_syscalls: strace is not installed; it is needed to capture the trace "
            "(Debian/Ubuntu: apt-get install strace)"
        )
    cmd = [
        strace, "-f", "-s", "256", "-o", str(raw), "-e", TRACE,
        sys.executable, "-m", "reactor.examples.http", "--port", str(port),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode(errors="replace")
        if "listening" not in line:
            rest = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
            raise SystemExit(f"trace_syscalls: the server did not start: {line}{rest}")
        server = child_pid(proc.pid)
        time.sleep(0.5)  # let every loop reach epoll_wait, so the trace shows it waiting
        # Pauses between the steps let the loop go back to sleep each time,
        # so every capture shows the same sequence (connect, request, close
        # each wake a sleeping loop) instead of depending on timing.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            time.sleep(0.3)
            s.sendall(REQUEST)
            answer = b""
            while not answer.endswith(b"Hello World!\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            time.sleep(0.3)
        if not answer.startswith(b"HTTP/1.1 200 OK"):
            raise SystemExit(f"trace_syscalls: unexpected answer {answer!r}")
        time.sleep(0.3)  # the server sees our EOF and closes its side
        os.kill(server, signal.SIGTERM)
        if proc.wait(15) != 0:
            raise SystemExit(f"trace_syscalls: strace exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def is_noise_path(path: str) -> bool:
    """Files Python itself opens (lazy imports, shared libraries): not part of the story."""
    return path.endswith((".py", ".pyc", ".so", ".cache")) or "/lib/" in path or "/python3" in path


def merge_resumed(raw_lines: list[str]) -> list[str]:
    """Join each call that ``strace -f`` split in two because another thread made a call meanwhile.

    strace prints ``read(9,  <unfinished ...>`` when another thread's call
    interrupts the line, then ``<... read resumed>"GET ...", 65536) = 66``
    when it returns. Such a pair becomes one line at the place where the call
    returned. A *blocking* ``epoll_wait`` (timeout other than 0) is left split
    on purpose: its ``<unfinished ...>`` line shows where a loop went to
    sleep, the ``resumed`` one where it woke up.
    """
    pending: dict[tuple[int, str], tuple[int, str, str]] = {}  # (pid, call) -> (index, line, head)
    out: list[str | None] = []
    for line in raw_lines:
        m = LINE.match(line)
        if m:
            pid, rest = int(m.group("pid")), m.group("rest")
            unfinished = re.match(r"^(?P<name>\w+)\((?P<head>.*) <unfinished \.\.\.>$", rest)
            if unfinished:
                name = unfinished.group("name")
                pending[(pid, name)] = (len(out), line, f"{name}({unfinished.group('head')}")
                out.append(None)  # decided when the call resumes
                continue
            resumed = re.match(r"^<\.\.\. (?P<name>\w+) resumed>(?P<tail>.*)$", rest)
            if resumed and (pid, resumed.group("name")) in pending:
                index, original, head = pending.pop((pid, resumed.group("name")))
                tail = resumed.group("tail")
                if resumed.group("name") == "epoll_wait" and not re.search(r", 0\)\s+=", tail):
                    out[index] = original  # a loop asleep: keep both halves where they happened
                    out.append(line)
                else:
                    out.append(f"{m.group('pid')}  {head}{tail}")
                continue
        out.append(line)
    # A call still unfinished at the end (the process exited) stays as strace printed it.
    for index, original, _head in pending.values():
        out[index] = original
    return [line for line in out if line is not None]


def annotate(raw_lines: list[str]) -> tuple[list[str], dict[int, str], dict[int, str]]:
    """Keep the lines from the listening socket on; name threads and fds."""
    start = next(
        (i for i, line in enumerate(raw_lines) if re.search(r"\bsocket\(AF_INET6?, SOCK_STREAM", line)), None
    )
    if start is None:
        raise SystemExit("trace_syscalls: no listening socket() in the trace")
    lines = merge_resumed(raw_lines[start:])
    main_pid = int(LINE.match(lines[0]).group("pid"))  # type: ignore[union-attr]

    # First pass: fds and threads.
    fds: dict[int, str] = {}
    noise_fds: set[int] = set()
    pending_epoll: list[int] = []
    epoll_waiter: dict[int, int] = {}  # epoll fd -> tid that waits on it
    acceptor: int | None = None
    tids: list[int] = []
    kept: list[str] = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        pid, rest = int(m.group("pid")), m.group("rest")
        if pid != main_pid and pid not in tids:
            tids.append(pid)
        call = CALL.match(rest)
        name = call.group("name") if call else ""
        ret = int(call.group("ret")) if call and call.group("ret") else None
        resumed = RESUMED.match(rest)
        if resumed:
            name, ret = resumed.group("name"), int(resumed.group("ret"))
        if name == "openat" and call:
            path = re.search(r'"([^"]*)"', rest)
            if path and is_noise_path(path.group(1)):
                if ret is not None and ret >= 0:
                    noise_fds.add(ret)
                continue
            if path and ret is not None and ret >= 0:
                fds[ret] = {"/dev/null": "the spare fd (Engine.acceptor.reserve, for EMFILE)"}.get(
                    path.group(1), f"file {path.group(1)}"
                )
        first_arg = re.match(r"^\w+\((\d+)", rest)
        if first_arg and int(first_arg.group(1)) in noise_fds:
            if name == "close":
                noise_fds.discard(int(first_arg.group(1)))
            continue
        if name == "socket" and ret is not None and ret >= 0 and ret not in fds:
            fds[ret] = "the listening socket"
        elif name == "epoll_create1" and ret is not None and ret >= 0:
            pending_epoll.append(ret)
            fds[ret] = "an epoll instance"
        elif name == "eventfd2" and ret is not None and ret >= 0:
            fds[ret] = "an eventfd"
            if pending_epoll:
                fds[ret] = f"eventfd of epoll {pending_epoll[-1]}"
        elif name == "accept4" and ret is not None and ret >= 0:
            fds[ret] = "the client's connection"
            acceptor = pid
        elif name == "epoll_wait" and first_arg:
            epoll_waiter.setdefault(int(first_arg.group(1)), pid)
        kept.append(line)

    threads: dict[int, str] = {main_pid: "main"}
    loop_tids = [t for t in tids if t != acceptor]
    for i, tid in enumerate(loop_tids):
        threads[tid] = f"loop-{i}"
    if acceptor is not None:
        threads[acceptor] = "accept"
    for epfd, tid in epoll_waiter.items():
        if epfd in fds:
            fds[epfd] = f"epoll instance of thread {threads.get(tid, tid)}"
    for fd, what in list(fds.items()):
        m = re.match(r"eventfd of epoll (\d+)", what)
        if m:
            owner = fds.get(int(m.group(1)), "")
            fds[fd] = "eventfd of " + owner.replace("epoll instance of ", "") if owner else "an eventfd"

    width = max(len(name) for name in threads.values())
    out = []
    for line in kept:
        m = LINE.match(line)
        assert m
        out.append(f"{threads.get(int(m.group('pid')), m.group('pid')):<{width}}  {m.group('rest')}")
    return out, threads, fds


def header(threads: dict[int, str], fds: dict[int, str], port: int) -> list[str]:
    roles = {
        "main": "the thread that called serve(): set-up, then waits for the shutdown event; signals land here",
        "accept": "reactor-main: the main reactor, accepts and hands connections over",
    }
    lines = [
        "# One HTTP request to the seed's server, syscall by syscall.",
        "# Regenerate: python scripts/trace_syscalls.py   (needs strace; see docs/syscalls.md)",
        (
            f"# Captured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on Linux "
            f"{platform.release()} ({platform.machine()}), Python {platform.python_version()}."
        ),
        f"# Server: python -m reactor.examples.http --port {port}   (one event loop, main-reactor mode)",
        f"# Command: strace -f -s 256 -e {TRACE}",
        "# Lines before the listening socket (interpreter start-up, imports) are left out.",
        "#",
        "# Threads (first column):",
    ]
    for tid, name in sorted(threads.items(), key=lambda kv: kv[1]):
        role = roles.get(name) or (f"reactor-{name}: an event loop (sub-reactor)" if name.startswith("loop-") else "")
        lines.append(f"#   {name:<7} tid {tid}: {role}")
    lines.append("# File descriptors:")
    for fd in sorted(fds):
        lines.append(f"#   {fd:>3}  {fds[fd]}")
    lines.append("#")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the trace")
    parser.add_argument("--port", type=int, default=0, help="TCP port for the server (default: a free one)")
    parser.add_argument("--raw", type=Path, help="also keep strace's unfiltered output here")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or Path(tmp) / "raw.txt"
        capture(raw, port)
        lines, threads, fds = annotate(raw.read_text(errors="replace").splitlines())
    text = "\n".join(header(threads, fds, port) + lines) + "\n"
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(lines)} lines of trace)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
