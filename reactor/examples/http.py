"""The seed program: an HTTP/1.1 server with pipelining, on reactor.

Run it::

    python -m reactor.examples.http --port 8080 [--loops N] [--reuse-port]
        [--header-timeout 10] [--idle-timeout 60] [--max-header-size 8192] [--max-body-size 1048576]
        [--tls-cert CERT.pem --tls-key KEY.pem]
    curl -i 127.0.0.1:8080
    curl -i --cacert CA.pem https://localhost:8443    # with --tls-cert: HTTPS (ALPN http/1.1)

It mirrors the gnet v1 HTTP example the project started from (walked
through in docs/tutorial.md): a codec frames the byte stream into requests,
and ``react`` answers every request with ``200 OK``, ``Server``, ``Date``
and ``Content-Length`` headers and the body ``Hello World!\\r\\n``. A
pipeline (many requests sent before any answer is read) that one read
brought is one frame, so its answers go out joined, in one ``write(2)``.

Differences from the seed, on purpose (docs/http.md has the details):

* The parser is :mod:`reactor.http`'s, shared by every HTTP server of the
  project: a request split across reads is kept, not lost (the seed calls
  ``ResetBuffer`` first); malformed, ambiguous or oversized requests get
  their status (400, 413, 417, 431, 501, 505) and a close, after the answers
  to the valid requests before them; chunked bodies are decoded.
* HEAD gets the GET answer's headers without the body; ``Connection:
  close`` and HTTP/1.0 without ``keep-alive`` close after the answer, and
  HTTP/1.0 with it gets ``Connection: keep-alive`` back.
* Bodies are counted down and discarded as they arrive (this server never
  reads them), and slow clients are bounded: a header block must complete
  within ``--header-timeout`` seconds of its first byte, and a connection
  that completes no request for ``--idle-timeout`` seconds is closed. With
  the defaults, ~1000 slowloris connections against ``ulimit -n 1024`` do
  not lock legitimate clients out for long (tests/http/test_http_slow_clients.py).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import reactor
import reactor.http
from reactor import Action, Conn
from reactor.examples._cli import ExampleServer, example_parser, run_example
from reactor.http import Request, error_response, response

__all__ = ["BODY", "HTTPCodec", "HTTPServer", "ResponseCache", "main"]

#: Largest request line + header block accepted (like common servers' 8 KiB); 431 beyond it.
MAX_HEADER = 8 * 1024
#: Largest request body accepted (it is discarded, never buffered); 413 beyond it.
MAX_BODY = 1024 * 1024
#: Seconds a header block may take from its first byte.
HEADER_TIMEOUT = 10.0
#: Seconds a connection may go without completing a request.
IDLE_TIMEOUT = 60.0

BODY = b"Hello World!\r\n"

_time = time.time


class HTTPCodec(reactor.http.HTTPCodec):
    """:class:`reactor.http.HTTPCodec` with the example's defaults: bodies discarded, a header timeout."""

    def __init__(
        self,
        *,
        max_header_size: int = MAX_HEADER,
        max_body_size: int = MAX_BODY,
        header_timeout: float | None = HEADER_TIMEOUT,
    ) -> None:
        super().__init__(
            max_header_size=max_header_size,
            max_body_size=max_body_size,
            buffer_body=False,
            header_timeout=header_timeout,
        )


class ResponseCache:
    """The answers of the current second (their Date header changes each second).

    ``ok`` answers an HTTP/1.1 keep-alive GET (the hot path); ``get(req)``
    any request: HEAD without the body, the ``Connection`` line it needs.
    """

    __slots__ = ("_variants", "ok", "second")

    def __init__(self) -> None:
        self.second = -1
        self.ok = b""
        self._variants: dict[tuple[bool, bool, bool], bytes] = {}

    def refresh(self, second: int) -> None:
        """Rebuild for ``second`` (``int(time.time())``)."""
        self.second = second
        self.ok = response(200, BODY)
        self._variants = {}

    def get(self, req: Request) -> bytes:
        """The 200 answer for ``req``."""
        key = (req.method == "HEAD", req.keep_alive, req.http10)
        answer = self._variants.get(key)
        if answer is None:
            answer = self._variants[key] = response(200, BODY, request=req)
        return answer


class HTTPServer(ExampleServer):
    """The seed's ``httpServer``: answers every request of a frame, in order, in one write."""

    name = "HTTP server"
    alpn_protocols = ("http/1.1",)  # with --tls-cert: say which HTTP this speaks

    def __init__(self, quiet: bool = False) -> None:
        super().__init__(quiet)
        self.cache = ResponseCache()

    def listening_on(self, server: reactor.Server) -> str:
        host, port = server.addr[0], server.addr[1]  # type: ignore[index]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    # The frame is the codec's list[Request] (EventServer types it as bytes).
    def react(self, frame: Any, c: Conn) -> tuple[bytes | None, Action]:
        if not frame:
            return None, Action.NONE
        cache = self.cache
        second = int(_time())
        if second != cache.second:
            cache.refresh(second)
        if len(frame) == 1:
            req = frame[0]
            if req.keep_alive and not req.http10 and req.method != "HEAD":
                return cache.ok, Action.NONE  # one keep-alive GET: the common case
        out = []
        for req in frame:
            if req.error is not None:
                out.append(error_response(req.error))
                return b"".join(out), Action.CLOSE
            if req.keep_alive and not req.http10 and req.method != "HEAD":
                out.append(cache.ok)
            else:
                out.append(cache.get(req))
        return b"".join(out), (Action.NONE if frame[-1].keep_alive else Action.CLOSE)


def main(argv: list[str] | None = None) -> int:
    parser = example_parser("python -m reactor.examples.http", __doc__.split("\n")[0], 8080)
    parser.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT, metavar="SECONDS",
                        help="close a connection whose request header block is not complete this many seconds "
                             "after its first byte (slowloris); 0: no limit (default %(default)g)")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, metavar="SECONDS",
                        help="close a connection that completes no request for this many seconds (idle keep-alive, "
                             "stalled bodies); 0: never (default %(default)g)")
    parser.add_argument("--max-header-size", type=int, default=MAX_HEADER, metavar="BYTES",
                        help="largest request line + header block; 431 beyond it (default %(default)d)")
    parser.add_argument("--max-body-size", type=int, default=MAX_BODY, metavar="BYTES",
                        help="largest request body (discarded as it arrives); 413 beyond it (default %(default)d)")
    args = parser.parse_args(argv)
    for name in ("header_timeout", "idle_timeout", "max_body_size"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.max_header_size <= 0:
        parser.error("--max-header-size must be positive")
    codec = HTTPCodec(
        max_header_size=args.max_header_size,
        max_body_size=args.max_body_size,
        header_timeout=args.header_timeout,
    )
    handler = HTTPServer(quiet=args.quiet)
    return run_example(handler, f"tcp://{args.host}:{args.port}", args, codec=codec, idle_timeout=args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
