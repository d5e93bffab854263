"""The HTTP/1.1 test server: :class:`HTTPHandler`, the requests it records, and its response writer.

* :class:`HTTPRequest`: one request as the handler parsed it.
* :data:`Body`, :data:`HeadersLike`, :data:`RouteValue`: what a route may answer.
* :class:`HTTPHandler`: a route table answering HTTP/1.1 (pipelining,
  Content-Length bodies), recording each request.

The request parsing here (``HTTPHandler._parse_one``) is this handler's own;
it is kept as it is until a shared HTTP/1.1 parser replaces it.
"""

from __future__ import annotations

import http
import json as _json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias

from ..connection import Conn
from ..handler import Action, EventServer
from .waiting import DEFAULT_TIMEOUT, Waiting

__all__ = ["Body", "HTTPHandler", "HTTPRequest", "HeadersLike", "RouteValue"]


class HTTPRequest(NamedTuple):
    """One request an :class:`HTTPHandler` received. Header names are lower-cased."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        """The request target as sent (``path?query``)."""
        return f"{self.path}?{self.query}" if self.query else self.path


#: A response body; ``str`` is sent UTF-8 encoded.
Body: TypeAlias = bytes | str
#: Response headers: a mapping or ``(name, value)`` pairs (None: none).
HeadersLike: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]] | None
#: What a route answers: a body (status 200), ``(status, headers, body)``,
#: or a function of the request returning either.
RouteValue: TypeAlias = Body | tuple[int, HeadersLike, Body] | Callable[[HTTPRequest], Any]

_MAX_HEADER = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class _HTTPBad(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HTTPState:
    __slots__ = ("buf", "closing", "continued")

    def __init__(self) -> None:
        self.buf = b""
        self.continued = False  # 100 Continue sent for the request at the head of buf
        self.closing = False


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _response(status: int, headers: HeadersLike, body: Body, *, head: bool = False, close: bool = False) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    names = {k.lower() for k, _ in items}
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines += [f"{k}: {v}" for k, v in items]
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if "content-type" not in names and body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    if close and "connection" not in names:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else bytes(body))


class HTTPHandler(Waiting, EventServer):
    """A tiny HTTP/1.1 server: a route table, a 404 for the rest, every request recorded.

    Routes map ``(METHOD, path)`` to ``(status, headers, body)`` (or just a
    body, for 200), or to a function of the :class:`HTTPRequest` returning
    either. The path is matched without its query string. ``HEAD`` falls
    back to the ``GET`` route, without the body. Pipelined requests are
    answered in order, in one write; request bodies need ``Content-Length``
    (chunked request bodies get 501). ``Expect: 100-continue`` is honoured.
    Use it with the default codec (it buffers partial requests itself).

    ::

        h = HTTPHandler({("GET", "/"): (200, {"X-A": "1"}, b"hi")})
        h.route("POST", "/items", status=201, json={"id": 1})
    """

    def __init__(
        self,
        routes: Mapping[tuple[str, str], RouteValue] | None = None,
        *,
        default: tuple[int, HeadersLike, Body] = (404, None, b"Not Found"),
    ) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], RouteValue] = {}
        for (method, path), value in (routes or {}).items():
            self.routes[(method.upper(), path)] = value
        self.default = default
        self._requests: list[HTTPRequest] = []
        self._states: dict[Conn, _HTTPState] = {}

    def route(
        self,
        method: str,
        path: str,
        body: Body | Callable[[HTTPRequest], Any] = b"",
        *,
        status: int = 200,
        headers: HeadersLike = None,
        json: Any = None,
    ) -> HTTPHandler:
        """Answer ``method path`` with ``status``, ``headers`` and ``body`` (or ``json``, serialised).

        ``body`` may be a function of the :class:`HTTPRequest` returning a
        body or ``(status, headers, body)``. Returns the handler (chainable).
        Safe to call while the server runs.
        """
        if json is not None:
            hdrs = dict(headers.items()) if isinstance(headers, Mapping) else dict(headers or ())
            hdrs.setdefault("Content-Type", "application/json")
            self.routes[(method.upper(), path)] = (status, hdrs, _json.dumps(json).encode())
        elif callable(body):
            self.routes[(method.upper(), path)] = body
        else:
            self.routes[(method.upper(), path)] = (status, headers, body)
        return self

    @property
    def requests(self) -> list[HTTPRequest]:
        """Every request received so far, in arrival order (a snapshot)."""
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> list[HTTPRequest]:
        """Wait until at least ``n`` requests have arrived; return them all."""
        self.wait_for(lambda: len(self._requests) >= n, timeout, f"{n} HTTP request(s) received")
        return self.requests

    def _describe(self) -> str:
        return f"requests so far: {[f'{r.method} {r.target}' for r in self._requests]}"

    # callbacks
    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        self._states.pop(c, None)
        return Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            return None, Action.NONE
        st = self._states.get(c)
        if st is None:
            st = self._states[c] = _HTTPState()
        if st.closing:
            return None, Action.NONE
        st.buf += frame
        out: list[bytes] = []
        while st.buf:
            try:
                parsed = self._parse_one(st, out)
            except _HTTPBad as e:
                out.append(_response(e.status, None, f"{_reason(e.status)}: {e}\n", close=True))
                st.closing = True
                break
            if parsed is None:
                break
            request, close = parsed
            with self._cond:
                self._requests.append(request)
                self._cond.notify_all()
            out.append(self._answer(request, close))
            if close:
                st.closing = True
                break
        return (b"".join(out) or None), (Action.CLOSE if st.closing else Action.NONE)

    def _parse_one(self, st: _HTTPState, out: list[bytes]) -> tuple[HTTPRequest, bool] | None:
        buf = st.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEADER:
                raise _HTTPBad(431, "request header block too large")
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith("HTTP/1."):
            raise _HTTPBad(400, f"malformed request line {lines[0][:80]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _HTTPBad(400, f"malformed header line {line[:80]!r}")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "transfer-encoding" in headers:
            raise _HTTPBad(501, "Transfer-Encoding request bodies are not supported")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise _HTTPBad(400, f"bad Content-Length {length[:40]!r}")
        n = int(length)
        if n > _MAX_BODY:
            raise _HTTPBad(413, f"body of {n} bytes is too large")
        total = end + 4 + n
        if len(buf) < total:
            if headers.get("expect", "").lower() == "100-continue" and not st.continued:
                st.continued = True
                out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        st.buf = buf[total:]
        st.continued = False
        path, _, query = target.partition("?")
        request = HTTPRequest(method.upper(), path, query, version, headers, bytes(buf[end + 4 : total]))
        conn_hdr = headers.get("connection", "").lower()
        close = "close" in conn_hdr or (version == "HTTP/1.0" and "keep-alive" not in conn_hdr)
        return request, close

    def _answer(self, request: HTTPRequest, close: bool) -> bytes:
        head = request.method == "HEAD"
        value = self.routes.get((request.method, request.path))
        if value is None and head:
            value = self.routes.get(("GET", request.path))
        if value is None:
            status, headers, body = self.default
            return _response(status, headers, body, head=head, close=close)
        if callable(value):
            value = value(request)
        if isinstance(value, (bytes, bytearray, memoryview, str)):
            status, headers, body = 200, None, value
        else:
            status, headers, body = value
        return _response(status, headers, bytes(body) if not isinstance(body, str) else body, head=head, close=close)


