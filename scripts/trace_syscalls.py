#!/usr/bin/env python3
"""Regenerate the syscall traces the docs show: the life of a connection, syscall by syscall.

Runs the seed's HTTP server (``python -m reactor.examples.http``) under
``strace -f`` in three set-ups, talks to it from a stdlib socket, stops it
with SIGTERM, and writes the part of each trace that starts with the first
listening socket, with each thread and file descriptor named:

* ``main`` → docs/syscalls-trace.txt: one loop, main-reactor mode: an
  accepting thread hands the connection to the loop through its eventfd
  (docs/syscalls.md explains it line by line);
* ``reuse-port`` → docs/traces/reuse-port.txt: two loops with
  ``--reuse-port``, each with its own SO_REUSEPORT listener; the loop the
  kernel picks accepts, reads and writes on one thread, no hand-over;
* ``pipeline`` → docs/traces/pipeline.txt: the seed's own mode (reuse-port),
  one loop, three pipelined requests in one segment: one ``read``, one
  ``write`` carrying the three answers.

docs/walkthrough.md quotes all three. ``tests/docs/test_docs.py`` captures
them again (when strace works) and compares the *sequence* of calls per
thread (see :func:`sequence`) with the committed files, so a change to
reactor that changes its syscalls fails until the traces are regenerated
and the pages that quote them are checked.

Requirements: Linux, reactor installed in the running interpreter, and
**strace** (Debian/Ubuntu: ``apt-get install strace``). strace needs ptrace
permission over its own child, which a normal user has unless a container or
``kernel.yama.ptrace_scope=3`` forbids it.

Usage (from the repository root)::

    python scripts/trace_syscalls.py                        # all three, into docs/
    python scripts/trace_syscalls.py --scenario pipeline    # one of them
    python scripts/trace_syscalls.py --out-dir /tmp/traces  # somewhere else (same relative paths)
    python scripts/trace_syscalls.py --scenario main -o /tmp/t.txt --raw /tmp/raw.txt
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
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Kept for callers of the one-trace version of this script.
DEFAULT_OUTPUT = DOCS / "syscalls-trace.txt"

#: The calls that make up a connection's life in reactor, plus openat so that
#: the two files the server opens after binding (/proc/sys/net/core/somaxconn,
#: /dev/null for the spare fd) are named in the trace.
TRACE = "trace=network,epoll_create1,epoll_ctl,epoll_wait,eventfd2,read,write,writev,close,fcntl,openat"
#: strace's string limit: three pipelined answers (3 x 107 bytes) fit.
STRSIZE = 512
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: trace_syscalls.py\r\n\r\n"
ANSWER_END = b"Hello World!\r\n"


class Scenario(NamedTuple):
    """One traced run: the server's flags, what the client sends, where the trace goes."""

    name: str
    output: str  # relative to docs/
    server_args: tuple[str, ...]
    payload: bytes
    answers: int  # how many "200 OK" the client waits for
    main_reactor: bool  # an accepting thread ("accept") besides the loops
    title: str
    mode: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "main",
            "syscalls-trace.txt",
            ("--loops", "1"),
            REQUEST,
            1,
            True,
            "One HTTP request to the seed's server, syscall by syscall.",
            "one event loop, main-reactor mode",
        ),
        Scenario(
            "reuse-port",
            "traces/reuse-port.txt",
            ("--loops", "2", "--reuse-port"),
            REQUEST,
            1,
            False,
            "One HTTP request in reuse-port mode: two loops, two SO_REUSEPORT listeners, no accepting thread.",
            "two event loops, reuse-port mode",
        ),
        Scenario(
            "pipeline",
            "traces/pipeline.txt",
            ("--loops", "1", "--reuse-port"),
            REQUEST * 3,
            3,
            False,
            "Three pipelined HTTP requests in one segment: one read, one write (the seed's mode: reuse-port).",
            "one event loop, reuse-port mode, as the seed runs",
        ),
    )
}

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


def capture(raw: Path, port: int, scenario: Scenario | None = None) -> None:
    """Run the server under strace, send the scenario's bytes on one connection, SIGTERM it."""
    scenario = scenario or SCENARIOS["main"]
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit(
            "trace_syscalls: strace is not installed; it is needed to capture the trace "
            "(Debian/Ubuntu: apt-get install strace)"
        )
    cmd = [
        strace, "-f", "-s", str(STRSIZE), "-o", str(raw), "-e", TRACE,
        sys.executable, "-m", "reactor.examples.http", "--port", str(port), *scenario.server_args,
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
            s.sendall(scenario.payload)  # one send: the pipeline arrives in one segment
            answer = b""
            while answer.count(ANSWER_END) < scenario.answers:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            time.sleep(0.3)
        if answer.count(b"HTTP/1.1 200 OK") != scenario.answers:
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


def annotate(
    raw_lines: list[str], main_reactor: bool = True
) -> tuple[list[str], dict[int, str], dict[int, str]]:
    """Keep the lines from the first listening socket on; name threads and fds.

    Threads are named after the pollers they wait on, in the order the
    engine creates them: the loops' pollers first (``loop-0``, ``loop-1``,
    ...), then, in main-reactor mode, the accepting main reactor's
    (``accept``). The thread that called ``serve`` is ``main``.
    """
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
    epolls: list[int] = []  # in creation order
    eventfd_of: dict[int, int] = {}  # eventfd -> its epoll
    listeners: list[int] = []
    listener_epoll: dict[int, int] = {}  # listener fd -> the epoll it was added to
    epoll_waiter: dict[int, int] = {}  # epoll fd -> tid that waits on it
    kept: list[str] = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        pid, rest = int(m.group("pid")), m.group("rest")
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
        if name == "socket" and ret is not None and ret >= 0 and pid == main_pid:
            listeners.append(ret)
            fds[ret] = "the listening socket"
        elif name == "epoll_create1" and ret is not None and ret >= 0:
            epolls.append(ret)
            fds[ret] = "an epoll instance"
        elif name == "eventfd2" and ret is not None and ret >= 0:
            fds[ret] = "an eventfd"
            if epolls:
                eventfd_of[ret] = epolls[-1]
        elif name == "epoll_ctl" and call:
            ctl = re.match(r"^epoll_ctl\((\d+), EPOLL_CTL_ADD, (\d+),", rest)
            if ctl and int(ctl.group(2)) in listeners:
                listener_epoll[int(ctl.group(2))] = int(ctl.group(1))
        elif name == "accept4" and ret is not None and ret >= 0:
            fds[ret] = "the client's connection"
        elif name == "epoll_wait" and first_arg:
            epoll_waiter.setdefault(int(first_arg.group(1)), pid)
        kept.append(line)

    # Pollers are created loops first, then the main reactor's (Engine.activate_reactors).
    owner: dict[int, str] = {}  # epoll fd -> thread name
    loops = epolls[:-1] if main_reactor and epolls else epolls
    for i, epfd in enumerate(loops):
        owner[epfd] = f"loop-{i}"
    if main_reactor and epolls:
        owner[epolls[-1]] = "accept"
    threads: dict[int, str] = {main_pid: "main"}
    for epfd, tid in epoll_waiter.items():
        if epfd in owner and tid != main_pid:
            threads[tid] = owner[epfd]
    for epfd, name in owner.items():
        fds[epfd] = f"epoll instance of thread {name}"
    for efd, epfd in eventfd_of.items():
        if epfd in owner:
            fds[efd] = f"eventfd of thread {owner[epfd]}"
    if len(listeners) > 1 or not main_reactor:
        for i, fd in enumerate(listeners):
            polled = owner.get(listener_epoll.get(fd, -1))
            fds[fd] = ("the listening socket" if i == 0 else "another listening socket (SO_REUSEPORT)") + (
                f", polled by {polled}" if polled else ""
            )

    width = max(len(name) for name in threads.values())
    out = []
    for line in kept:
        m = LINE.match(line)
        assert m
        out.append(f"{threads.get(int(m.group('pid')), m.group('pid')):<{width}}  {m.group('rest')}")
    return out, threads, fds


def header(
    threads: dict[int, str], fds: dict[int, str], port: int, scenario: Scenario | None = None
) -> list[str]:
    scenario = scenario or SCENARIOS["main"]
    roles = {
        "main": "the thread that called serve(): set-up, then waits for the shutdown event; signals land here",
        "accept": "reactor-main: the main reactor, accepts and hands connections over",
    }
    loop_role = (
        "an event loop (sub-reactor)" if scenario.main_reactor else "an event loop: accepts on its own listener"
    )
    server_args = " ".join(scenario.server_args)
    lines = [
        f"# {scenario.title}",
        f"# Regenerate: python scripts/trace_syscalls.py --scenario {scenario.name}"
        "   (needs strace; see docs/walkthrough.md)",
        (
            f"# Captured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on Linux "
            f"{platform.release()} ({platform.machine()}), Python {platform.python_version()}."
        ),
        f"# Server: python -m reactor.examples.http --port {port} {server_args}   ({scenario.mode})",
        f"# Command: strace -f -s {STRSIZE} -e {TRACE}",
        "# Lines before the listening socket (interpreter start-up, imports) are left out.",
        "#",
        "# Threads (first column):",
    ]
    for tid, name in sorted(threads.items(), key=lambda kv: kv[1]):
        role = roles.get(name) or (f"reactor-{name}: {loop_role}" if name.startswith("loop-") else "")
        lines.append(f"#   {name:<7} tid {tid}: {role}")
    lines.append("# File descriptors:")
    for fd in sorted(fds):
        lines.append(f"#   {fd:>3}  {fds[fd]}")
    lines.append("#")
    return lines


def trace(scenario: Scenario, output: Path, raw: Path | None = None, port: int = 0) -> int:
    """Capture ``scenario`` and write its annotated trace to ``output``; the number of trace lines."""
    port = port or free_port()
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = raw or Path(tmp) / "raw.txt"
        capture(raw_path, port, scenario)
        lines, threads, fds = annotate(raw_path.read_text(errors="replace").splitlines(), scenario.main_reactor)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(header(threads, fds, port, scenario) + lines) + "\n")
    return len(lines)


# --------------------------------------------------------------------------------------------------
# comparing traces: the sequence of calls per thread, without fds, addresses, sizes or timings
# --------------------------------------------------------------------------------------------------
#: Calls whose first argument is a file descriptor (epoll_ctl's third is one too).
FD_FIRST = frozenset(
    "read write writev close setsockopt getsockopt bind listen getsockname getpeername accept4 epoll_ctl "
    "epoll_wait fcntl shutdown connect recvfrom sendto".split()
)
#: What a call that returns a new fd makes it.
NEW_FD_ROLE = {"socket": "socket", "epoll_create1": "epoll", "eventfd2": "eventfd", "accept4": "conn"}


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments of a strace call (braces, brackets and strings respected)."""
    out, depth, current, in_str, escape = [], 0, "", False, False
    for ch in args:
        if in_str:
            current += ch
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        out.append(current.strip())
    return out


class _Roles:
    """fd number -> what it is, as the trace goes (numbers are reused after close)."""

    def __init__(self) -> None:
        self.fds: dict[int, str] = {1: "stdout", 2: "stderr"}

    def __call__(self, text: str) -> str:
        return self.fds.get(int(text), "fd?") if text.isdigit() else text

    def returned(self, name: str, args: list[str], result: str) -> None:
        if not re.fullmatch(r"\d+", result.split()[0] if result else ""):
            return
        fd = int(result.split()[0])
        if name == "openat" and len(args) > 1:
            path = args[1].strip('"')
            self.fds[fd] = "spare fd" if path == "/dev/null" else f"file {path}"
        elif name in NEW_FD_ROLE:
            self.fds[fd] = NEW_FD_ROLE[name]


def _token(call: str, roles: _Roles) -> str | None:
    """One trace line (without the thread column) as a comparable token; None: not compared."""
    if call.startswith("---"):
        m = re.match(r"--- (\w+)", call)
        return f"signal {m.group(1)}" if m else None
    if call.startswith("+++"):
        return "exit"
    if call.startswith("<..."):
        return None  # the second half of a blocking epoll_wait: the first half was counted
    m = re.match(r"^(\w+)\((.*)$", call)
    if not m:
        return None
    name, rest = m.group(1), m.group(2)
    if rest.endswith("<unfinished ...>"):
        args_text, result = rest[: -len("<unfinished ...>")].rstrip().rstrip(","), ""
    else:
        r = re.match(r"^(.*)\)\s+=\s+(.*)$", rest)
        args_text, result = (r.group(1), r.group(2)) if r else (rest.rstrip(")"), "")
    args = _split_args(args_text)
    if name == "epoll_wait":
        return "epoll_wait"  # how many rounds, their sizes and timeouts depend on timing: one token per run
    shown: list[str] = []
    for i, arg in enumerate(args):
        if arg.isdigit() and ((i == 0 and name in FD_FIRST) or (name == "epoll_ctl" and i == 2)):
            shown.append(f"<{roles(arg)}>")
        elif arg.startswith('"'):
            if name in ("read", "write") and shown and shown[0].startswith("<file "):
                continue  # a file's contents (the kernel's somaxconn) differ between machines
            literal = arg[1:].split('"', 1)[0]
            prefix = literal[:15].rstrip("\\")
            count = literal.count("HTTP/1.1")
            shown.append(f'"{prefix}"' + (f"x{count}" if count else ""))
        elif arg.startswith("{sa_family"):
            shown.append("{sockaddr}")
        elif arg.startswith(("{", "[")):
            flags = re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", arg)
            shown.append("{" + "|".join(flags) + "}" if flags else "{...}")
        elif re.fullmatch(r"[A-Z][A-Z0-9_|]+", arg) or (name == "setsockopt" and i in (1, 2)):
            shown.append(arg)
    roles.returned(name, args, result)
    outcome = ""
    if result.startswith("-1"):
        err = re.match(r"-1 (\w+)", result)
        outcome = f" = -1 {err.group(1) if err else ''}"
    elif result.split()[:1] == ["0"] and name in ("read", "recvfrom"):
        outcome = " = 0"
    return f"{name}({', '.join(shown)}){outcome}"


def sequence(text: str) -> dict[str, list[str]]:
    """Per thread, the order of the calls an annotated trace shows, as comparable tokens.

    Kept: each call's name, its file descriptors by role (``socket``,
    ``epoll``, ``eventfd``, ``conn``, ``spare fd``, a file's path, as the
    call that created each number said), its flag words
    (``EPOLL_CTL_ADD``, ``SOCK_NONBLOCK``, ``SO_REUSEPORT``, ...), the start
    of a string it passes (``"GET / HTTP/1.1"``, with how many requests or
    answers it holds), and a failure's errno or a read's EOF. Dropped: fd
    numbers, ports, sizes, timings, what a file read returned (the kernel's
    ``somaxconn`` differs between machines), and how many ``epoll_wait``
    rounds ran in a row (a run of them is one token). The loops are keyed
    ``loop-N#k`` in an order that does not depend on their numbers: which
    loop of a reuse-port server gets a connection is up to the kernel.
    """
    roles = _Roles()
    per_thread: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        thread, _, call = line.partition(" ")
        tok = _token(call.strip(), roles)
        if tok is None:
            continue
        seq = per_thread.setdefault(thread, [])
        if tok == "epoll_wait" and seq and seq[-1] == "epoll_wait":
            continue
        seq.append(tok)
    loops = sorted((seq for name, seq in per_thread.items() if name.startswith("loop-")), key=repr)
    out = {name: seq for name, seq in per_thread.items() if not name.startswith("loop-")}
    for i, seq in enumerate(loops):
        out[f"loop-N#{i}"] = seq
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="which trace(s) to capture (default: all)"
    )
    parser.add_argument("--out-dir", type=Path, default=DOCS, help="where the traces go, at their paths under docs/")
    parser.add_argument("-o", "--output", type=Path, help="with one --scenario: write its trace to this file")
    parser.add_argument("--port", type=int, default=0, help="TCP port for the server (default: a free one)")
    parser.add_argument("--raw", type=Path, help="with one --scenario: also keep strace's unfiltered output here")
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    if (args.output or args.raw) and len(names) != 1:
        parser.error("-o and --raw need exactly one --scenario")
    for name in names:
        scenario = SCENARIOS[name]
        output = args.output or args.out_dir / scenario.output
        n = trace(scenario, output, args.raw, args.port)
        print(f"wrote {output} ({n} lines of trace)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
