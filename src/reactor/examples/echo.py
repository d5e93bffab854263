"""An echo server: every byte received is sent back, in order.

Run it::

    python -m reactor.examples.echo --port 9000 [--loops N] [--reuse-port]

gnet counterpart: the echo server of gnet's examples and benchmarks.
"""

from __future__ import annotations

import sys
from typing import Optional

import reactor
from reactor import Action, Conn
from reactor.examples._cli import example_parser, run_example

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
    parser = example_parser("python -m reactor.examples.echo", __doc__.split("\n")[0], 9000)
    parser.add_argument("--unix", default="", help="serve on this Unix socket path instead of TCP")
    args = parser.parse_args(argv)
    addr = f"unix://{args.unix}" if args.unix else f"tcp://{args.host}:{args.port}"
    return run_example(EchoServer(quiet=args.quiet), addr, args)


if __name__ == "__main__":
    sys.exit(main())
