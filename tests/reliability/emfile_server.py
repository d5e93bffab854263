"""An echo server that runs out of fds: RLIMIT_NOFILE is lowered to 64 before serving.

Run by test_rel_exhaustion.py as a subprocess::

    python emfile_server.py [--loops N] [--reuse-port] [--nofile 64] [--steal-reserve]

Prints ``PORT <n> FDS <open fds at start>`` on stdout once listening, logs the
"reactor" logger to stderr at INFO, and stops cleanly (exit code 0) on SIGTERM.

``--steal-reserve`` replays, deterministically, an interleaving that happens by
chance with ``--reuse-port --loops 2`` (in about a third of the runs of a
128-connection flood): while one loop sheds a connection, it has closed its
spare fd, and before its ``accept4`` another thread gets that fd number and
keeps it. The replay hands the spare's fd to a "thief" at the first shed, once
(see install_reserve_thief).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys

import reactor
from reactor import Action


class Echo(reactor.EventServer):
    def __init__(self) -> None:
        self.server: reactor.Server | None = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        print(f"PORT {server.addr[1]} FDS {len(os.listdir('/proc/self/fd')) - 1}", flush=True)
        return Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


def install_reserve_thief() -> None:
    """At the first shed, hand the spare fd's number to "another thread" that keeps it.

    The natural interleaving is: the shedding loop closes its spare, and before
    its accept4 (or before it reopens the spare) another thread's open/accept4
    gets that number. Replaying it with a real close followed by an open leaves
    a window in which the sibling loop's own accept4 can take the number first
    (which the engine heals by adopting that connection's fd as the spare). So
    the replay does it without a window: the spare fd itself changes owner,
    under the reserve's lock, as if closed and reopened by the thief at once.
    """
    from reactor.acceptor import ReserveFd

    real_shed = ReserveFd.shed
    stolen: list[int] = []

    def shed(self: ReserveFd, listen_fd: int) -> bool:
        if not stolen:
            with self._lock:
                if self._fd >= 0:
                    stolen.append(self._fd)
                    self._fd = -1
                    # EMFILE here may be transient: a sibling loop's accept4
                    # holds an fd number while it finds its queue empty. Take
                    # whatever is free too, so the process really is left at
                    # its limit without a spare, as in the race replayed.
                    while True:
                        try:
                            stolen.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
                        except OSError:
                            break
                    print("STOLE the spare fd's number", file=sys.stderr, flush=True)
                    return False
        return real_shed(self, listen_fd)

    ReserveFd.shed = shed  # type: ignore[method-assign]


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
