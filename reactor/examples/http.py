"""The seed program: an HTTP/1.1 server with pipelining, on reactor.

Run it::

    python -m reactor.examples.http --port 8080 [--loops N] [--reuse-port]
    curl -i 127.0.0.1:8080

It mirrors the gnet v1 HTTP example the project started from (walked
through in docs/tutorial.md): a custom codec whose
``decode`` parses every complete request in the connection's buffer (HTTP
pipelining: a client may send many requests before reading any answer) and
produces the answers for all of them at once, so one ``write(2)`` carries a
whole pipeline's responses; ``react`` passes them on. Every request gets
``200 OK`` with ``Server``, ``Date`` and ``Content-Length`` headers and the
body ``Hello World!\\r\\n``.

Differences from the seed, on purpose:

* The seed's decoder calls ``ResetBuffer()`` before parsing, so a request
  split across two reads loses its first half. Here only complete requests
  are consumed; a partial one stays buffered for the next read.
* Malformed input gets an answer and a close: 400 for a bad request line or
  header, 413 for a body larger than MAX_BODY (a Content-Length of 2**63
  included), 431 for a header block larger than MAX_HEADER, 501 for chunked
  request bodies. Answers to the valid requests before it go out first.
* ``Connection: close`` (and HTTP/1.0 without keep-alive) closes after the answer.

The parser works with ``bytes.find`` and slicing only, never a Python loop
per character, which is what keeps it cheap in CPython.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import reactor
from reactor import Action, Conn
from reactor.examples._cli import ExampleServer, example_parser, run_example

__all__ = ["HTTPCodec", "HTTPServer", "ResponseCache", "main", "parse_requests", "response"]

#: Largest request line + header block accepted (like common servers' 8 KiB).
MAX_HEADER = 8 * 1024
#: Largest request body accepted (the example answers without reading bodies' content).
MAX_BODY = 1024 * 1024

BODY = b"Hello World!\r\n"
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}


class HTTPError(Exception):
    """A request that cannot be served; ``status`` is the answer to send before closing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _http_date() -> bytes:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()


class ResponseCache:
    """The 200 response, rebuilt once per second (its Date header changes each second)."""

    def __init__(self) -> None:
        self._second = -1
        self._ok = b""

    def ok(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._ok = response(200, BODY)
        return self._ok


def response(status: int, body: bytes, close: bool = False) -> bytes:
    """One complete HTTP/1.1 response (the seed's ``appendResp``)."""
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
        b"Server: reactor\r\n",
        b"Date: " + _http_date() + b"\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + body


_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-_")


def parse_requests(data: bytes) -> tuple[int, int, bool, Optional[HTTPError]]:
    """Find the complete requests at the start of ``data``.

    :returns: ``(count, end, close, error)``: how many complete, valid
        requests; the offset just past the last of them (what follows is an
        incomplete request, or the bad one); whether the last asked to close
        the connection; and the error that stopped parsing, if any (the
        ``count`` requests before it still deserve their answers).
    """
    count = 0
    pos = 0
    size = len(data)
    while pos < size:
        hdr_end = data.find(b"\r\n\r\n", pos, pos + MAX_HEADER + 4)
        if hdr_end < 0:
            if size - pos > MAX_HEADER:
                return count, pos, False, HTTPError(431, "request header block too large")
            break  # incomplete: wait for more bytes
        line_end = data.find(b"\r\n", pos, hdr_end + 2)
        parts = data[pos:line_end].split(b" ")
        if (
            len(parts) != 3
            or not parts[0]
            or not _METHOD_CHARS.issuperset(parts[0])
            or not parts[1]
            or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")
        ):
            return count, pos, False, HTTPError(400, f"malformed request line {data[pos:line_end][:80]!r}")
        headers = data[line_end : hdr_end + 2].lower()  # starts and ends with \r\n
        if b"\n " in headers or b"\n\t" in headers:
            return count, pos, False, HTTPError(400, "obsolete header line folding")
        body_len = 0
        i = headers.find(b"\r\ncontent-length:")
        if i >= 0:
            value = headers[i + 17 : headers.find(b"\r\n", i + 2)].strip()
            if not value.isdigit():
                return count, pos, False, HTTPError(400, f"bad Content-Length {value[:40]!r}")
            if len(value) > 9 or int(value) > MAX_BODY:
                return count, pos, False, HTTPError(413, f"a body of {value[:40].decode()} bytes is over {MAX_BODY}")
            body_len = int(value)
        if b"\r\ntransfer-encoding:" in headers:
            return count, pos, False, HTTPError(501, "Transfer-Encoding request bodies are not supported")
        end = hdr_end + 4 + body_len
        if end > size:
            break  # the body has not fully arrived
        if parts[2] == b"HTTP/1.0":
            close = b"\r\nconnection: keep-alive\r\n" not in headers
        else:
            close = b"\r\nconnection: close\r\n" in headers
        count += 1
        pos = end
        if close:
            # Anything pipelined after "Connection: close" is not served.
            return count, pos, True, None
    return count, pos, False, None


class _Closing:
    """Connection context once the connection must close after its answers."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[HTTPError]) -> None:
        self.error = error


class HTTPCodec:
    """Frames the byte stream into *batches of answers* (the seed's ``httpCodec``)."""

    def __init__(self) -> None:
        self._cache = ResponseCache()

    def encode(self, c: Conn, data: bytes) -> bytes:
        return data

    def decode(self, c: Conn) -> Optional[bytes]:
        if isinstance(c.context, _Closing):
            return None  # closing: ignore whatever else arrives
        data = c.peek(-1)
        if not data:
            return None
        count, end, close, error = parse_requests(data)
        if error is not None or close:
            c.discard(-1)
            c.context = _Closing(error)
            return self._cache.ok() * count  # react adds the error answer and closes
        if count == 0:
            return None
        c.discard(end)
        return self._cache.ok() * count


class HTTPServer(ExampleServer):
    """The seed's ``httpServer``: ``react`` writes what the codec produced."""

    name = "HTTP server"

    def listening_on(self, server: reactor.Server) -> str:
        host, port = server.addr[0], server.addr[1]  # type: ignore[index]
        return f"http://{host}:{port}"

    def react(self, frame: Optional[bytes], c: Conn) -> tuple[Optional[bytes], Action]:
        closing = c.context
        if closing is None:
            return frame, Action.NONE
        # A bad request (or Connection: close): answer, then close.
        out = frame or b""
        if closing.error is not None:
            err = closing.error
            out += response(err.status, f"{_REASONS[err.status].decode()}: {err}\r\n".encode(), close=True)
        return out, Action.CLOSE


def main(argv: Optional[list[str]] = None) -> int:
    parser = example_parser("python -m reactor.examples.http", __doc__.split("\n")[0], 8080)
    args = parser.parse_args(argv)
    return run_example(HTTPServer(quiet=args.quiet), f"tcp://{args.host}:{args.port}", args, codec=HTTPCodec())


if __name__ == "__main__":
    sys.exit(main())
