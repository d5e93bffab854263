"""HTTP/1.1 for reactor servers: one request parser, its codec, and response helpers.

gnet counterpart: none in the library; the seed program (gnet's HTTP
example: ``httpCodec``, ``parseReq``, ``appendResp``) carries its own.
Every HTTP server of this project uses this package: the example
(``python -m reactor.examples.http``), the test fixture
(``reactor.testing.HTTPHandler``) and the benchmark peers.

::

    import reactor
    from reactor.http import HTTPCodec, error_response, response

    class Hello(reactor.EventServer):
        def react(self, frame, c):            # frame: list[Request]
            out = []
            for req in frame:
                if req.error is not None:
                    out.append(error_response(req.error))
                    return b"".join(out), reactor.Action.CLOSE
                out.append(response(200, b"hi\\r\\n", request=req))
            return b"".join(out), (reactor.Action.NONE if frame[-1].keep_alive else reactor.Action.CLOSE)

    reactor.serve(Hello(), "tcp://:8080", codec=HTTPCodec(header_timeout=10), idle_timeout=60)

See docs/http.md for what the parser accepts and refuses, and why.
"""

from .codec import HTTPCodec
from .parser import ByteBuffer, Limits, RequestParser
from .request import HTTPError, Request
from .response import (
    CONTINUE,
    connection_header,
    error_response,
    http_date,
    reason,
    response,
)

__all__ = [
    "CONTINUE",
    "ByteBuffer",
    "HTTPCodec",
    "HTTPError",
    "Limits",
    "Request",
    "RequestParser",
    "connection_header",
    "error_response",
    "http_date",
    "reason",
    "response",
]
