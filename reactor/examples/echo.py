"""An echo server: every byte received is sent back, in order.

Run it::

    python -m reactor.examples.echo --port 9000 [--loops N] [--reuse-port] [--tls-cert CERT.pem --tls-key KEY.pem]

gnet counterpart: the echo server of gnet's examples and benchmarks.
"""

from __future__ import annotations

import sys

from reactor import Action, Conn
from reactor.examples._cli import ExampleServer, example_parser, run_example

__all__ = ["EchoServer", "main"]


class EchoServer(ExampleServer):
    """``react`` returns each frame as it came (with the built-in codec: all bytes read)."""

    name = "echo server"

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


def main(argv: list[str] | None = None) -> int:
    parser = example_parser("python -m reactor.examples.echo", __doc__.split("\n")[0], 9000)
    parser.add_argument("--unix", default="", help="serve on this Unix socket path instead of TCP")
    args = parser.parse_args(argv)
    addr = f"unix://{args.unix}" if args.unix else f"tcp://{args.host}:{args.port}"
    return run_example(EchoServer(quiet=args.quiet), addr, args)


if __name__ == "__main__":
    sys.exit(main())
