"""An echo server: every byte received is sent back, in order.

Run it::

    python -m reactor.examples.echo --port 9000 [--loops N] [--reuse-port]

gnet counterpart: the echo server of gnet's examples and benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Optional

import reactor
from reactor import Action, Conn

__all__ = ["EchoServer", "main"]


class EchoServer(reactor.EventServer):
    """``react`` returns each frame as it came (with the built-in codec: all bytes read)."""

    def __init__(self, quiet: bool = False) -> None:
        self.server: Optional[reactor.Server] = None
        self.quiet = quiet

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        if not self.quiet:
            print(
                f"echo server is listening on {server.addr!r} (loops: {server.num_event_loop}, "
                f"reuse_port: {server.reuse_port})",
                file=sys.stderr,
                flush=True,
            )
        return Action.NONE

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        return frame, Action.NONE


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reactor.examples.echo", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="", help="address to bind (default: all IPv4 interfaces)")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (default 9000)")
    parser.add_argument("--unix", default="", help="serve on this Unix socket path instead of TCP")
    parser.add_argument("--loops", type=int, default=0, help="event loops (default: 1, or one per CPU with --multicore)")
    parser.add_argument("--multicore", action="store_true", help="one event loop per CPU")
    parser.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: one listener per loop")
    parser.add_argument("--quiet", action="store_true", help="do not print the listening address")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    handler = EchoServer(quiet=args.quiet)

    def stop(signum: int, frame: object) -> None:
        if handler.server is not None:
            handler.server.stop()

    # Both set explicitly: a process started in the background by a
    # non-interactive shell inherits SIGINT as *ignored*, and Python then
    # never turns Ctrl-C into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    addr = f"unix://{args.unix}" if args.unix else f"tcp://{args.host}:{args.port}"
    try:
        reactor.serve(
            handler,
            addr,
            multicore=args.multicore,
            num_event_loop=args.loops,
            reuse_port=args.reuse_port,
            # Restart on the same port at once after a stop, even while the
            # previous run's connections sit in TIME_WAIT.
            reuse_addr=True,
        )
    except KeyboardInterrupt:
        pass  # serve() has already stopped everything before re-raising
    return 0


if __name__ == "__main__":
    sys.exit(main())
