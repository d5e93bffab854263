"""Application logic shared by the Python peers: the HTTP "session" and the server CLI.

Why the HTTP logic is imported from ``reactor.examples.http`` rather than
rewritten: the benchmark compares I/O layers, so every Python peer must run
*the same* application code per request.  The reactor peer uses
``HTTPCodec``/``HTTPServer`` from that module; the asyncio, uvloop and
selectors peers call the same :func:`reactor.examples.http.parse_requests`
and :func:`reactor.examples.http.response` through :class:`HTTPSession`,
which replays what ``HTTPCodec.decode`` + ``HTTPServer.react`` do:

* buffer the bytes of a connection, find every complete request with
  ``bytes.find`` (``parse_requests``), keep an incomplete one for later;
* answer all complete requests of one read with one write, in order
  (pipelining), using the 200 response cached per second (its Date header
  changes every second);
* on a malformed request or ``Connection: close``: answer, then close.

(The C peer, bench/c/epoll_server.c, does the ``"\\r\\n\\r\\n"`` search
and answers with the same bytes, but without validating the request.)
"""

from __future__ import annotations

import argparse
from typing import Optional

from reactor.examples.http import ResponseCache, parse_requests, response

__all__ = ["HTTPSession", "parse_args"]


_cache = ResponseCache()


class HTTPSession:
    """One connection's HTTP state: feed it bytes, get the bytes to send back and whether to close."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Consume ``data``; return ``(answers, close)`` (answers may be empty)."""
        buf = self._buf + data if self._buf else data
        count, end, close, error = parse_requests(buf)
        if error is not None or close:
            self._buf = b""
            out = _cache.ok() * count
            if error is not None:
                out += response(error.status, f"{error}\r\n".encode(), close=True)
            return out, True
        self._buf = buf[end:] if end < len(buf) else b""
        return (_cache.ok() * count if count else b""), False


def parse_args(prog: str, description: str, extra: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """The command line every Python peer accepts (plus ``extra``'s options, if given)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, parents=[extra] if extra else [])
    parser.add_argument("--mode", choices=("echo", "http"), required=True, help="what to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    return parser.parse_args()
