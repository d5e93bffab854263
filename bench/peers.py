"""The servers compared: each serves "echo" and "http" with the same application logic.

=============  =================================================================  ============
peer           what runs                                                          default set
=============  =================================================================  ============
reactor        bench/servers/reactor_server.py: reactor.serve, 1 event loop       yes
reactor-uring  the same with backend="io_uring"                                   yes, if the kernel allows
asyncio        bench/servers/asyncio_server.py: asyncio.Protocol, stock loop      yes
uvloop         same file with uvloop's loop (``pip install -e .[bench]``)         yes, if importable
selectors      bench/servers/selectors_server.py: stdlib selectors (epoll)        yes
c-epoll        bench/c/epoll_server.c: one thread, level-triggered epoll          yes
reactor-rp     reactor, 1 loop with SO_REUSEPORT (the loop accepts itself)        no (opt-in)
reactor-et     reactor, 1 loop, edge-triggered (gnet v2 mode)                     no (opt-in)
reactor-base   bench/servers/reactor_server.py of another checkout (A/B runs)     no (opt-in)
=============  =================================================================  ============

TLS workloads (tls-echo-4k, https-pipe) run on the peers with ``tls=True``:
reactor (``serve(tls=ctx)``), asyncio and uvloop (``create_server(ssl=ctx)``:
asyncio's sslproto.py and uvloop's sslproto.pyx) and the reactor variants.
The C server and the selectors server have no TLS layer and are skipped for
them (a C server on OpenSSL would measure OpenSSL's own record layer, not an
event loop's; the comparison that matters is between the Python I/O layers).

``reactor-base`` measures a change against the tree before it, interleaved in
the same run (the only fair comparison on a noisy machine): set
``REACTOR_BASELINE_TREE`` to the baseline checkout and
``REACTOR_BASELINE_PYTHON`` to an interpreter that has *that* tree's reactor
installed (``python -m venv /tmp/base && /tmp/base/bin/pip install TREE``).

Every server is single-threaded in its I/O (reactor's default main-reactor
mode has one accepting thread besides the loop; both are pinned to the same
core), binds 127.0.0.1 on a port the suite chooses, and asks for a listen
backlog of 4096 (capped by the kernel's somaxconn).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Peer:
    """A server under test."""

    name: str
    #: One line for the results.
    description: str
    #: ``command(mode, host, port, binaries)``: the argv that starts it.
    command: Callable[[str, str, int, dict[str, Path]], list[str]]
    #: Part of the default set.
    default: bool = True
    #: None if it can run here, else why not (the peer is then skipped with this note).
    unavailable: str | None = None
    #: Serves TLS when given --tls-cert/--tls-key (the TLS workloads skip the others).
    tls: bool = False


def _python(module: str, *extra: str) -> Callable[[str, str, int, dict[str, Path]], list[str]]:
    def command(mode: str, host: str, port: int, binaries: dict[str, Path]) -> list[str]:
        # -m from the repository root (the suite's cwd): bench.servers is importable,
        # reactor comes from the installed (editable) package.
        return [sys.executable, "-m", module, "--mode", mode, "--host", host, "--port", str(port), *extra]

    return command


def _baseline(mode: str, host: str, port: int, binaries: dict[str, Path]) -> list[str]:
    tree, python = os.environ["REACTOR_BASELINE_TREE"], os.environ["REACTOR_BASELINE_PYTHON"]
    # -P keeps this checkout (the suite's cwd) off sys.path, so reactor comes
    # from the baseline interpreter and bench.servers from the baseline tree.
    run = (
        f"import runpy, sys; sys.path.insert(0, {tree!r}); "
        "runpy.run_module('bench.servers.reactor_server', run_name='__main__')"
    )
    return [python, "-P", "-c", run, "--mode", mode, "--host", host, "--port", str(port)]


def _baseline_missing() -> str | None:
    if not os.environ.get("REACTOR_BASELINE_TREE") or not os.environ.get("REACTOR_BASELINE_PYTHON"):
        return "set REACTOR_BASELINE_TREE and REACTOR_BASELINE_PYTHON to compare with another checkout"
    return None


def _c_epoll(mode: str, host: str, port: int, binaries: dict[str, Path]) -> list[str]:
    return [str(binaries["epoll_server"]), "--mode", mode, "--host", host, "--port", str(port)]


def _uvloop_missing() -> str | None:
    if importlib.util.find_spec("uvloop") is None:
        return "uvloop is not importable (install the optional dependencies: pip install -e '.[bench]')"
    return None


def _uring_missing() -> str | None:
    from reactor.internal.uring import probe

    ok, why = probe()
    return None if ok else why


def all_peers() -> dict[str, Peer]:
    """Every known peer, in the order they run within a round (the default set first)."""
    peers = [
        Peer("reactor", "reactor 1 loop (reactor.serve, default options)", _python("bench.servers.reactor_server"),
             tls=True),
        Peer(
            "asyncio",
            "asyncio Protocol, stock event loop",
            _python("bench.servers.asyncio_server", "--loop", "asyncio"),
            tls=True,
        ),
        Peer(
            "uvloop",
            "asyncio Protocol on uvloop",
            _python("bench.servers.asyncio_server", "--loop", "uvloop"),
            unavailable=_uvloop_missing(),
            tls=True,
        ),
        Peer(
            "reactor-uring",
            "reactor 1 loop, backend='io_uring' (recv completions instead of read(2))",
            _python("bench.servers.reactor_server", "--backend", "io_uring"),
            unavailable=_uring_missing(),
            tls=True,
        ),
        Peer("selectors", "stdlib selectors (epoll), hand-written loop", _python("bench.servers.selectors_server")),
        Peer("c-epoll", "C, single-threaded level-triggered epoll (one-core limit)", _c_epoll),
        Peer(
            "reactor-rp",
            "reactor 1 loop, reuse_port=True (no separate acceptor thread)",
            _python("bench.servers.reactor_server", "--reuse-port"),
            default=False,
            tls=True,
        ),
        Peer(
            "reactor-et",
            "reactor 1 loop, edge_triggered=True",
            _python("bench.servers.reactor_server", "--edge-triggered"),
            default=False,
            tls=True,
        ),
        Peer(
            "reactor-base",
            "reactor 1 loop, from the baseline checkout (A/B)",
            _baseline,
            default=False,
            unavailable=_baseline_missing(),
        ),
    ]
    return {p.name: p for p in peers}


#: The peer every other peer's CPU/op is divided by in the tables (falls back to asyncio).
BASELINE = "uvloop"
