"""What the suite reads from the kernel, and how it starts and always stops processes.

Why each reading exists:

* **Server CPU time** (``utime + stime`` of ``/proc/PID/stat``, all threads,
  summed over the server's worker processes if it forks any):
  on a 2-core box the load generator is often the bottleneck, so requests
  per second mostly measure the *client*.  The server's CPU seconds divided
  by the operations it served do not depend on who was the bottleneck: a
  server that needs 20 µs of CPU per request needs it whether it served
  10k or 50k requests per second.  This is the number to compare.
* **Hypervisor steal** (``/proc/stat``, per CPU): on a shared VM the host can
  take a CPU away from us; a run that lost more than a few percent of its
  time that way measured the neighbours.  Such runs are repeated.
* **Foreign load** on the server's and the load generator's CPU (the CPU's
  user+system time minus our own processes' on it): other processes in this
  VM (someone's test suite) compete with the server or the client on their
  core, and halve a throughput number just as steal does.  Counted like
  steal: a run that lost too much to either is repeated.  Interrupt time is
  left out: loopback TCP does much of its work in softirq context on both
  CPUs, and that is our traffic, not someone else's.
* **VmRSS** (``/proc/PID/status``, read by bench/c/echo_load.c): memory per connection in the
  10k test.

Processes: every server runs in its own session (so a Ctrl-C of the suite
does not reach it first, and the whole group can be killed), is stopped
with SIGTERM and then SIGKILL after a grace period, always in a ``finally``;
:func:`kill_all` is registered with ``atexit`` as a last resort.  Every
wait is bounded.
"""

from __future__ import annotations

import atexit
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: What servers and load generators get as RLIMIT_NOFILE: 10,000 connections plus slack.
NOFILE = 65536

# --- /proc readers -----------------------------------------------------------------------------------


def _stat(pid: int) -> list[bytes]:
    """The fields of ``/proc/PID/stat`` after the command name: ``[0]`` is field 3 of proc(5), the state."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(b")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """The children of ``pid``, their children, and so on (``/proc/PID/task/TID/children``)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # gone meanwhile
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """``(user, system)`` CPU seconds of ``pid`` and all its descendants (``serve(..., workers=N)``).

    All threads count (``utime``, ``stime`` of ``/proc/PID/stat``). Each
    process counts its own time plus ``cutime``/``cstime``, the time of
    children it has already reaped, so the sum does not drop when a worker
    exits between two readings (a server without children has no reaped time).

    The split tells the peers' own code (user) from the kernel's work on
    their behalf (system: the same read/write/epoll_wait calls for every
    peer). The kernel attributes each tick to one or the other by where
    the CPU was when it fired, so the split is a sample, good over seconds.
    The resolution is one clock tick (1/CLK_TCK s, usually 10 ms): fine for
    runs of seconds, which is why runs are seconds long.
    """
    user = system = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            fields = _stat(p)
        except OSError:
            if p == pid:
                raise
            continue  # a descendant reaped since the listing: its time is in its parent's cutime now
        # utime, stime, cutime, cstime: fields 14-17 of proc(5)
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        user += (utime + cutime) / CLK_TCK
        system += (stime + cstime) / CLK_TCK
    return user, system


@dataclass(frozen=True)
class CpuTimes:
    """Jiffies of one CPU from ``/proc/stat``."""

    #: user + nice + system: time spent running processes (ours and others').
    task: int
    #: irq + softirq: interrupt work (for us mostly the loopback network stack).
    irq: int
    steal: int
    total: int


def cpu_times() -> dict[int, CpuTimes]:
    """Per-CPU busy, steal and total jiffies (``/proc/stat`` lines ``cpuN``)."""
    out: dict[int, CpuTimes] = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]] + [0] * max(0, 8 - len(vals))
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            # guest time is already included in user/nice (proc(5)), so it is not added again.
            out[int(name[3:])] = CpuTimes(
                task=user + nice + system,
                irq=irq + softirq,
                steal=steal,
                total=user + nice + system + idle + iowait + irq + softirq + steal,
            )
    return out


def cpu_share(before: dict[int, CpuTimes], after: dict[int, CpuTimes], cpu: int, what: str) -> float:
    """Fraction (0..1) of ``cpu``'s time between two readings spent in ``what`` ("task", "irq" or "steal")."""
    if cpu not in before or cpu not in after:
        return 0.0
    total = after[cpu].total - before[cpu].total
    if total <= 0:
        return 0.0
    return float(getattr(after[cpu], what) - getattr(before[cpu], what)) / total


# --- machine description -----------------------------------------------------------------------------


def _run_text(cmd: Sequence[str], timeout: float = 10) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (r.stdout or r.stderr).strip()


def machine_info(repo: Path) -> dict[str, str]:
    """CPU model, cores, kernel, Python, library and tool versions, and the source revision."""
    from importlib import metadata

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": model or platform.processor() or "unknown",
        "cpus_online": str(os.cpu_count()),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for dist in ("reactor-cffi", "cffi", "uvloop", "matplotlib"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "not installed"
    info["wrk"] = _run_text(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else "not installed"
    info["gcc"] = _run_text(["gcc", "--version"]).splitlines()[0] if shutil.which("gcc") else "not installed"
    rev = _run_text(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    if rev:
        dirty = _run_text(["git", "-C", str(repo), "status", "--porcelain", "--", "src"])
        info["revision"] = rev + (" + uncommitted changes in src/" if dirty else "")
    info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split(" ")[0] if Path("/proc/loadavg").exists() else ""
    return info


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


# --- processes ---------------------------------------------------------------------------------------

_live: set[subprocess.Popen[bytes]] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def preexec(cpu: int | None) -> Callable[[], None]:
    """A ``preexec_fn``: pin to ``cpu`` (None: leave the affinity alone) and raise RLIMIT_NOFILE.

    Pinning: the server on one core and the load generator on the other, so
    they never take turns on the same core (which would make the numbers
    depend on the scheduler's mood), and the server gets exactly one core:
    "reactor with 1 loop" and the C server are both single-core designs.
    """

    def fn() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(hard, NOFILE)))
        except (ValueError, OSError):  # not root: as far as the hard limit goes
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return fn


def spawn(cmd: Sequence[str], *, cpu: int | None, cwd: Path, stdout: int | IO[bytes] | None,
          stderr: int | IO[bytes] | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session, pinned to ``cpu``; it is tracked until :func:`stop` reaps it."""
    p = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=preexec(cpu),
        start_new_session=True,
        env=env,
    )
    _live.add(p)
    return p


def stop(p: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """Stop a process started by :func:`spawn`: SIGTERM, wait ``grace`` s, then SIGKILL its group.

    Returns its exit status (negative: killed by that signal), or None if
    even SIGKILL did not reap it within 5 s (should never happen).
    """
    try:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is None and not _kill(p):
            return None
        return p.returncode
    finally:
        if p.returncode is not None:
            _live.discard(p)


def _kill(p: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the process group of ``p`` and reap ``p``; False if it is still there 5 s later."""
    try:
        os.killpg(p.pid, signal.SIGKILL)  # its own session: pgid == pid
    except ProcessLookupError:
        pass
    except PermissionError:
        p.kill()
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return True


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return _stat(pid)[0] not in (b"Z", b"X")
    except OSError:
        return False


def reap_leftovers(pids: Sequence[int], wait: float = 2.0) -> list[int]:
    """After a server stopped: which of its former descendants ``pids`` still run after ``wait`` s.

    A server with worker processes must not leave any behind; those that
    remain are SIGKILLed (they are no children of ours, so the pid could be
    reused only after they are gone, and they are checked just before).
    """
    deadline = time.monotonic() + wait
    left = [p for p in pids if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _running(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return left


def kill_all() -> None:
    """Last resort at exit: SIGKILL every process this suite started that is still tracked."""
    for p in list(_live):
        if p.poll() is None and not _kill(p):
            print(f"bench: process {p.pid} did not die", file=sys.stderr)
        _live.discard(p)


atexit.register(kill_all)


def wait_listening(p: subprocess.Popen[bytes], host: str, port: int, timeout: float) -> None:
    """Wait until ``port`` accepts connections; raise if ``p`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"server exited with status {p.returncode} before listening on port {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not listening on port {port} after {timeout:.0f} s")
        time.sleep(0.02)


def wait_cpu_settled(pid: int, quiet: float = 0.1, limit: float = 2.0) -> None:
    """Wait (at most ``limit`` s) until the server's CPU time stops growing for ``quiet`` s.

    After the load generator exits, the server may still be working through
    what was in flight and closing connections; that work belongs to the run.
    The server's worker processes, if any, count too (:func:`tree_cpu_split`).
    """
    deadline = time.monotonic() + limit
    last = sum(tree_cpu_split(pid))
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = sum(tree_cpu_split(pid))
        if now == last:
            return
        last = now
