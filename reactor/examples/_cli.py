"""What the example servers share: their command line, logging, signals and serve() call."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import ssl
import sys
from typing import Any

import reactor

__all__ = ["ExampleServer", "example_parser", "host_arg", "run_example", "tls_context"]


def host_arg(text: str) -> str:
    """``--host``'s type: an IPv6 literal (``::1``) gets the brackets a ``tcp://host:port`` address needs."""
    if ":" in text and not text.startswith("["):
        return f"[{text}]"
    return text


class ExampleServer(reactor.EventServer):
    """Keeps the ``Server`` (for the signal handlers) and announces where it listens.

    The announcement goes to stderr once the listener is bound, so a script
    or test can wait for that line before connecting.
    """

    #: How the startup line names the server.
    name = "server"
    #: The ALPN protocols offered with ``--tls-cert`` (the HTTP example: ``("http/1.1",)``).
    alpn_protocols: tuple[str, ...] = ()

    def __init__(self, quiet: bool = False) -> None:
        self.server: reactor.Server | None = None
        self.quiet = quiet
        #: Set by run_example's signal handlers: a stop asked for before the
        #: server existed (the handler had nothing to stop yet) is honoured
        #: by on_init_complete. Forked workers inherit it with the handler.
        self.stop_requested = False
        #: Serving TLS (``--tls-cert``): set by run_example before serving.
        self.tls = False

    def listening_on(self, server: reactor.Server) -> str:
        return repr(server.addr)

    def on_init_complete(self, server: reactor.Server) -> reactor.Action:
        self.server = server  # first: a signal from here on finds the server to stop
        if self.stop_requested:
            return reactor.Action.SHUTDOWN
        if not self.quiet:
            print(
                f"{self.name} is listening on {self.listening_on(server)} "
                f"(loops: {server.num_event_loop}, reuse_port: {server.reuse_port}"
                + (f", worker {server.worker_id} of {server.workers})" if server.workers > 1 else ")"),
                file=sys.stderr,
                flush=True,
            )
        return reactor.Action.NONE


def example_parser(prog: str, description: str, default_port: int) -> argparse.ArgumentParser:
    """The options every example takes: address, loops, server mode, worker processes, quiet."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.set_defaults(prog=prog)  # for run_example's one-line errors
    parser.add_argument("--version", action="version", version=f"%(prog)s (reactor-cffi {reactor.__version__})")
    parser.add_argument("--host", type=host_arg, default="",
                        help="address to bind, IPv4 or IPv6 (::1) (default: all IPv4 interfaces)")
    parser.add_argument("--port", type=int, default=default_port, help=f"TCP port (default {default_port})")
    parser.add_argument("--loops", type=int, default=0,
                        help="event loops (default: 1, or one per CPU with --multicore)")
    parser.add_argument("--multicore", action="store_true", help="one event loop per CPU")
    parser.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: one listener per loop")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes, each with its own SO_REUSEPORT listener (default 1)")
    parser.add_argument("--quiet", action="store_true", help="do not print the listening address")
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve TLS with this certificate chain (PEM; the key too, unless --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key for --tls-cert (PEM)")
    parser.add_argument("--backend", choices=("epoll", "io_uring", "auto"), default=None,
                        help="the kernel interface: epoll (gnet's), io_uring, or auto (io_uring where the kernel "
                             "allows it) (default: $REACTOR_BACKEND, else epoll)")
    return parser


def tls_context(args: argparse.Namespace, alpn_protocols: tuple[str, ...] = ()) -> ssl.SSLContext | None:
    """The server-side context ``--tls-cert``/``--tls-key`` ask for, or None without them.

    ``ssl.create_default_context(Purpose.CLIENT_AUTH)``: the stdlib's
    defaults for a server (TLS 1.2 and later, its cipher list), with the
    certificate chain loaded and ``alpn_protocols`` offered.

    :raises ValueError: ``--tls-key`` without ``--tls-cert``.
    :raises OSError: a file that cannot be read, a certificate or key that
        does not load (``ssl.SSLError``), or a key that does not match.
    """
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if not cert:
        if key:
            raise ValueError("--tls-key needs --tls-cert")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key or None)
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    return ctx


def run_example(handler: Any, proto_addr: str, args: argparse.Namespace, **options: Any) -> int:
    """Serve ``handler`` until SIGTERM or Ctrl-C; return the process exit code.

    0 after a stop; 2 when the server cannot start (a port in use or out of
    range, a bad address): one line on stderr, ``PROG: error: ...``, as
    argparse reports bad arguments, instead of a traceback.
    ``handler.server`` must be set by its ``on_init_complete`` so the signal
    handlers can stop it.
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def stop(signum: int, frame: object | None) -> None:
        handler.stop_requested = True
        if handler.server is not None:
            handler.server.stop()
        else:
            # The parent of --workers has no Server of its own (each worker
            # has one); stopping the address stops them all.
            with contextlib.suppress(reactor.ServerInShutdownError):
                reactor.stop(proto_addr)

    # Both set explicitly: a process started in the background by a
    # non-interactive shell inherits SIGINT as *ignored*, and Python then
    # never turns Ctrl-C into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    prog = getattr(args, "prog", "reactor example")
    try:
        tls = tls_context(args, getattr(handler, "alpn_protocols", ()))
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"{prog}: error: cannot load the TLS certificate or key: {reason}", file=sys.stderr)
        return 2
    if tls is not None:
        options["tls"] = tls
        handler.tls = True
    if getattr(args, "backend", None):
        options["backend"] = args.backend
    try:
        reactor.serve(
            handler,
            proto_addr,
            multicore=args.multicore,
            num_event_loop=args.loops,
            reuse_port=args.reuse_port,
            workers=args.workers,
            # Restart on the same port at once after a stop, even while the
            # previous run's connections sit in TIME_WAIT.
            reuse_addr=True,
            **options,
        )
    except KeyboardInterrupt:
        pass  # serve() has already stopped everything before re-raising
    except (OSError, ValueError) as e:  # bind/listen failed; InvalidNetworkAddressError is a ValueError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"{prog}: error: cannot serve on {proto_addr}: {reason}", file=sys.stderr)
        return 2
    return 0
