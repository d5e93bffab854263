"""The asyncio and uvloop peers: ``asyncio.Protocol`` servers (the fast asyncio API, not streams).

    python -m bench.servers.asyncio_server --mode echo|http --port P [--loop asyncio|uvloop]
        [--tls-cert CERT --tls-key KEY]

With --tls-cert: ``create_server(ssl=ctx)``, i.e. asyncio's ``SSLProtocol``
(Lib/asyncio/sslproto.py) or uvloop's (sslproto.pyx), between the socket and
the same Protocol.

Why the Protocol API: it is the layer uvloop's own benchmarks use and the
closest asyncio counterpart of reactor's callbacks (``data_received`` ~
``react``); streams add a coroutine switch per read and would measure
asyncio's slowest path instead of its best.  Both loops set TCP_NODELAY on
accepted TCP sockets by themselves, like reactor.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .common import HTTPSession, parse_args, server_context


class EchoProtocol(asyncio.Protocol):
    """Write back whatever arrives."""

    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class HTTPProtocol(asyncio.Protocol):
    """Answer every complete request in the bytes received so far (see common.HTTPSession)."""

    __slots__ = ("transport", "session")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.session = HTTPSession()

    def data_received(self, data: bytes) -> None:
        out, close = self.session.feed(data)
        if out:
            self.transport.write(out)
        if close:
            self.transport.close()


def main() -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop implementation")
    args = parse_args("python -m bench.servers.asyncio_server", __doc__.split("\n")[0], extra)
    loop: asyncio.AbstractEventLoop
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    factory = EchoProtocol if args.mode == "echo" else HTTPProtocol
    # backlog: the same request as every other peer (the kernel caps it at somaxconn).
    server: asyncio.AbstractServer = loop.run_until_complete(
        loop.create_server(factory, args.host, args.port, backlog=4096, ssl=server_context(args))
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
