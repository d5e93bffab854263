"""reactor.testing.HTTPHandler on reactor.http's parser: what it records, with either codec.

The suites in this directory run against the fixture as well as the
example; these tests cover what only the fixture does: recording decoded
bodies and trailers-free chunked uploads, and serving frames that
``reactor.http.HTTPCodec`` produced instead of raw reads.
"""

from __future__ import annotations

from typing import Any

import pytest

from http_support import Target, connect, read_response, read_until_closed
from reactor.http import HTTPCodec
from reactor.testing import HTTPHandler, serve_in_background

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED = b"POST /up?a=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("codec", [None, "http"], ids=["raw-reads", "HTTPCodec"])
def test_fixture_records_decoded_bodies_and_acknowledges_http10_keep_alive(codec: str | None) -> None:
    handler = HTTPHandler({("GET", "/"): b"hi", ("POST", "/up"): (201, None, b"stored")})
    options: dict[str, Any] = {"codec": HTTPCodec()} if codec else {}
    with serve_in_background(handler, "tcp://127.0.0.1:0", **options) as srv:
        target = Target("fixture", "127.0.0.1", int(srv.port or 0), srv)
        with connect(target) as s:
            buf = bytearray()
            s.sendall(CHUNKED[:40])
            s.sendall(CHUNKED[40:] + GET)
            assert read_response(s, buf).status == 201
            assert read_response(s, buf).body == b"hi"
            s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            resp = read_response(s, buf)
            assert resp.headers[b"connection"] == b"keep-alive" and resp.body == b"hi"
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data, how = read_until_closed(s)
            assert b"Connection: close\r\n" in data and data.endswith(b"\r\n\r\nhi") and how == "eof"
        up = handler.requests[0]
        assert (up.method, up.path, up.query, up.body) == ("POST", "/up", "a=1", b"abcde")
        assert up.headers["transfer-encoding"] == "chunked"
