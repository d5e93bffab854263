"""Building HTTP/1.1 responses: status lines, the Date header, the Connection header a request needs.

gnet counterpart: the seed program's ``appendResp`` (status, ``Server``,
``Date``, ``Content-Length``, extra head lines, body).
"""

from __future__ import annotations

import http
import time
from collections.abc import Iterable, Mapping

from .request import HTTPError, Request

__all__ = ["CONTINUE", "connection_header", "error_response", "http_date", "reason", "response"]

#: The interim answer to ``Expect: 100-continue`` (RFC 9110 §15.2.1).
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
# RFC 9110's names, whatever the Python version's http.HTTPStatus says (3.11
# still has RFC 7231's "Request Entity Too Large"): the wire stays the same.
_REASONS.update({
    413: b"Content Too Large",
    414: b"URI Too Long",
    416: b"Range Not Satisfiable",
    422: b"Unprocessable Content",
})
_date_second = -1
_date = b""


def reason(status: int) -> bytes:
    """The standard reason phrase of ``status`` (``b"Unknown"`` for an unregistered code)."""
    return _REASONS.get(status, b"Unknown")


def http_date(now: float | None = None) -> bytes:
    """The IMF-fixdate for ``now`` (default: the current second), as the ``Date`` header wants it.

    The current second's is cached: building it costs more than a response.
    """
    global _date_second, _date
    t = int(time.time() if now is None else now)
    if now is None and t == _date_second:
        return _date
    value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t)).encode()
    if now is None:
        _date_second, _date = t, value
    return value


def connection_header(req: Request) -> bytes:
    """The ``Connection`` line the answer to ``req`` needs (RFC 9112 §9.3), or ``b""``.

    ``close`` when the connection ends after it; ``keep-alive`` for an
    HTTP/1.0 client that asked to keep it (without the acknowledgement it
    would wait for the close that never comes: ``ab -k`` hangs on that).
    """
    if not req.keep_alive:
        return b"Connection: close\r\n"
    if req.http10:
        return b"Connection: keep-alive\r\n"
    return b""


def response(
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    *,
    request: Request | None = None,
    close: bool = False,
    server: bytes | None = b"reactor",
) -> bytes:
    """One complete HTTP/1.1 response (the seed's ``appendResp``).

    Adds ``Server``, ``Date`` and ``Content-Length`` (unless ``headers`` has
    it). With ``request``, the answer fits it: no body for HEAD (the headers,
    ``Content-Length`` included, stay those of the GET answer) and the
    ``Connection`` line it needs; ``close=True`` forces ``Connection: close``.
    """
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    names = {k.lower() for k, _ in items}
    head = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status))]
    if server is not None and "server" not in names:
        head.append(b"Server: " + server + b"\r\n")
    if "date" not in names:
        head.append(b"Date: " + http_date() + b"\r\n")
    head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in items]
    # 1xx and 204 carry no body and no Content-Length (RFC 9110 §8.6).
    if "content-length" not in names and status >= 200 and status != 204:
        head.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        if "connection" not in names:
            head.append(b"Connection: close\r\n")
    elif request is not None and "connection" not in names:
        head.append(connection_header(request))
    head.append(b"\r\n")
    if request is not None and request.method == "HEAD":
        return b"".join(head)
    return b"".join(head) + bytes(body)


def error_response(error: HTTPError, server: bytes | None = b"reactor") -> bytes:
    """The answer to a request that could not be parsed: its status, the reason as text, then close."""
    body = reason(error.status) + b": " + error.reason.encode("utf-8", "replace") + b"\r\n"
    return response(
        error.status, body, [("Content-Type", "text/plain; charset=utf-8")], close=True, server=server
    )
