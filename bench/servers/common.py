"""Application logic shared by the Python peers: the HTTP "session" and the server CLI.

Why the HTTP logic is imported rather than rewritten: the benchmark
compares I/O layers, so every Python peer must run *the same* application
code per request. The reactor peer serves ``reactor.examples.http``'s
``HTTPServer`` through its ``HTTPCodec``; the asyncio, uvloop and selectors
peers run the same :class:`reactor.http.RequestParser` (on a
:class:`reactor.http.ByteBuffer` instead of the connection) and the same
``HTTPServer.react`` through :class:`HTTPSession`:

* buffer the bytes of a connection only while a request is partial, find
  every complete request with ``bytes.find``, discard bodies as they arrive;
* answer all complete requests of one read with one write, in order
  (pipelining), using the 200 response cached per second (its Date header
  changes every second);
* on a malformed request or ``Connection: close``: answer, then close.

(The C peer, bench/c/epoll_server.c, does the ``"\\r\\n\\r\\n"`` search
and answers with the same bytes, but without validating the request.)
"""

from __future__ import annotations

import argparse
import ssl

from reactor import Action
from reactor.examples.http import MAX_BODY, MAX_HEADER, HTTPServer
from reactor.http import CONTINUE, ByteBuffer, Limits, RequestParser

__all__ = ["HTTPSession", "parse_args", "server_context"]


_server = HTTPServer(quiet=True)
_limits = Limits(max_header_size=MAX_HEADER, max_body_size=MAX_BODY, buffer_body=False)


class HTTPSession:
    """One connection's HTTP state: feed it bytes, get the bytes to send back and whether to close."""

    __slots__ = ("_buf", "_parser")

    def __init__(self) -> None:
        self._buf = ByteBuffer()
        self._parser = RequestParser(_limits)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Consume ``data``; return ``(answers, close)`` (answers may be empty)."""
        buf = self._buf
        parser = self._parser
        buf.write(data)
        batch = parser.parse(buf)
        if not parser.continue_due and (not batch or not buf.inbound_buffered()):
            if not batch:
                return b"", False
            out, action = _server.react(batch, None)  # type: ignore[arg-type]
            return out or b"", action == Action.CLOSE
        answers = []
        while True:  # a batch limit or a 100 Continue after earlier answers
            if parser.continue_due:
                parser.continue_due = False
                answers.append(CONTINUE)
            if not batch:
                return b"".join(answers), False
            out, action = _server.react(batch, None)  # type: ignore[arg-type]
            answers.append(out or b"")
            if action == Action.CLOSE:
                return b"".join(answers), True
            batch = parser.parse(buf)


def parse_args(prog: str, description: str, extra: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The command line every Python peer accepts (plus ``extra``'s options, if given)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, parents=[extra] if extra else [])
    parser.add_argument("--mode", choices=("echo", "http"), required=True, help="what to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    parser.add_argument("--tls-cert", help="serve TLS with this certificate (PEM; the TLS workloads)")
    parser.add_argument("--tls-key", help="the private key for --tls-cert (PEM)")
    return parser.parse_args()


def server_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context every peer serves with (None without --tls-cert): the stdlib's server defaults.

    The same function for every Python peer, so they negotiate the same
    protocol and cipher and differ only in their I/O layer.
    """
    if not args.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx
