"""An echo server that runs out of fds: RLIMIT_NOFILE is lowered to 64 before serving.

Run by test_rel_exhaustion.py as a subprocess::

    python emfile_server.py [--loops N] [--reuse-port] [--nofile 64] [--steal-reserve]

Prints ``PORT <n> FDS <open fds at start>`` on stdout once listening, logs the
"reactor" logger to stderr at INFO, and stops cleanly (exit code 0) on SIGTERM.

``--steal-reserve`` replays, deterministically, an interleaving that happens by
chance with ``--reuse-port --loops 2`` (in about a third of the runs of a
128-connection flood): while one loop sheds a connection, it has closed its
spare fd, and before its ``accept4`` another thread (here: the sibling loop's
own ``accept4``) gets that fd number. The replay opens /dev/null at exactly
that point, once, and keeps it, as the sibling's connection would be kept.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
from typing import Optional

import reactor
from reactor import Action


class Echo(reactor.EventServer):
    def __init__(self) -> None:
        self.server: Optional[reactor.Server] = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        print(f"PORT {server.addr[1]} FDS {len(os.listdir('/proc/self/fd')) - 1}", flush=True)
        return Action.NONE

    def react(self, frame: Optional[bytes], c: reactor.Conn) -> tuple[Optional[bytes], Action]:
        return frame, Action.NONE


def install_reserve_thief() -> None:
    """Take the spare fd's number between _ReserveFd.shed's close and its accept4, once."""
    from reactor import server as engine_module
    from reactor import unix

    real_accept4 = unix.accept4
    real_shed = engine_module._ReserveFd.shed
    state = {"in_shed": False, "stolen": []}

    def shed(self: object, listen_fd: int) -> bool:
        state["in_shed"] = True
        try:
            return real_shed(self, listen_fd)
        finally:
            state["in_shed"] = False

    def accept4(fd: int, *args: object) -> object:
        if state["in_shed"] and not state["stolen"]:
            state["stolen"].append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            print("STOLE the spare fd's number", file=sys.stderr, flush=True)
        return real_accept4(fd, *args)

    engine_module._ReserveFd.shed = shed  # type: ignore[method-assign]
    unix.accept4 = accept4  # type: ignore[assignment]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--nofile", type=int, default=64)
    parser.add_argument("--steal-reserve", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    if args.steal_reserve:
        install_reserve_thief()
    handler = Echo()

    def on_term(signum: int, frame: object) -> None:
        if handler.server is not None:
            handler.server.stop()

    signal.signal(signal.SIGTERM, on_term)
    reactor.serve(handler, "tcp://127.0.0.1:0", num_event_loop=args.loops, reuse_port=args.reuse_port)
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
