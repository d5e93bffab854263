"""The reactor peer: echo and HTTP on reactor's public API, one event loop by default.

    python -m bench.servers.reactor_server --mode echo|http --port P [--loops N]
        [--reuse-port] [--edge-triggered] [--tls-cert CERT --tls-key KEY]

echo: an ``EventServer`` whose ``react`` returns the frame it got (with the
built-in codec a frame is everything one read produced): gnet's echo server.
http: ``reactor.examples.http``'s ``HTTPCodec`` and ``HTTPServer``, exactly the
seed program (``python -m reactor.examples.http``), with the same options.

Options are reactor's defaults except where flags say otherwise, so the
numbers describe reactor as a user gets it.  ``--reuse-port`` (one loop that
accepts on its own listener, no main-reactor thread) and ``--edge-triggered``
exist for the optional peers ``reactor-rp`` and ``reactor-et``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import reactor
from reactor import Action, Conn
from reactor.examples.http import HTTPCodec, HTTPServer

from .common import parse_args, server_context


class EchoServer(reactor.EventServer):
    """gnet's echo server: every frame goes straight back."""

    def __init__(self) -> None:
        self.server: reactor.Server | None = None

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.server = server
        return Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


def main() -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--loops", type=int, default=1, help="event loops (default 1)")
    extra.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: each loop accepts for itself")
    extra.add_argument("--edge-triggered", action="store_true", help="EPOLLET registration (gnet v2 mode)")
    extra.add_argument("--backend", choices=("epoll", "io_uring", "auto"), default="epoll",
                       help="the kernel interface (default epoll, whatever $REACTOR_BACKEND says)")
    args = parse_args("python -m bench.servers.reactor_server", __doc__.split("\n")[0], extra)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    handler: Any
    opts: dict[str, Any] = {}
    if args.mode == "echo":
        handler = EchoServer()
    else:
        handler = HTTPServer(quiet=True)
        opts["codec"] = HTTPCodec()

    def stop(signum: int, frame: object) -> None:
        if handler.server is not None:
            handler.server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        reactor.serve(
            handler,
            f"tcp://{args.host}:{args.port}",
            num_event_loop=args.loops,
            reuse_port=args.reuse_port,
            edge_triggered=args.edge_triggered,
            backend=args.backend,
            tls=server_context(args),
            **opts,
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
