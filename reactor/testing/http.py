"""The HTTP/1.1 test server: :class:`HTTPHandler`, the requests it records, and its response writer.

* :class:`HTTPRequest`: one request as the handler parsed it.
* :data:`Body`, :data:`HeadersLike`, :data:`RouteValue`: what a route may answer.
* :class:`HTTPHandler`: a route table answering HTTP/1.1 (pipelining,
  Content-Length and chunked bodies), recording each request.

Requests are parsed by :mod:`reactor.http`'s :class:`~reactor.http.RequestParser`,
the parser of the example server too, so the fixture accepts and refuses
exactly what the example does (docs/http.md).
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias

from ..connection import Conn
from ..handler import Action, EventServer
from ..http import CONTINUE, ByteBuffer, Limits, Request, RequestParser, connection_header, error_response, reason
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

#: What the fixture accepts: generous limits (a test may upload a lot), bodies kept.
_LIMITS = Limits(max_header_size=64 * 1024, max_body_size=16 * 1024 * 1024, buffer_body=True)


class _HTTPState:
    """One connection's bytes not yet parsed, and its parser."""

    __slots__ = ("buf", "parser")

    def __init__(self) -> None:
        self.buf = ByteBuffer()
        self.parser = RequestParser(_LIMITS)


def _response(status: int, headers: HeadersLike, body: Body, request: Request) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    names = {k.lower() for k, _ in items}
    lines = [f"HTTP/1.1 {status} {reason(status).decode()}"]
    lines += [f"{k}: {v}" for k, v in items]
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if "content-type" not in names and body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    if "connection" not in names:
        head += connection_header(request)  # close, or keep-alive for an HTTP/1.0 client that asked
    head += b"\r\n"
    # HEAD: the headers of the GET answer, Content-Length included, no body.
    return head if request.method == "HEAD" else head + bytes(body)


class HTTPHandler(Waiting, EventServer):
    """A tiny HTTP/1.1 server: a route table, a 404 for the rest, every request recorded.

    Routes map ``(METHOD, path)`` to ``(status, headers, body)`` (or just a
    body, for 200), or to a function of the :class:`HTTPRequest` returning
    either. The path is matched without its query string. ``HEAD`` falls
    back to the ``GET`` route, without the body. Pipelined requests are
    answered in order, in one write; bodies may come with ``Content-Length``
    or chunked (decoded; up to 16 MiB). ``Expect: 100-continue`` is
    honoured, HTTP/1.0 keep-alive acknowledged, and what :mod:`reactor.http`
    refuses gets its status and a close. Use it with the default codec (it
    buffers partial requests itself) or with ``reactor.http.HTTPCodec()``.

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

    def react(self, frame: Any, c: Conn) -> tuple[bytes | None, Action]:
        """Answer every complete request, in order, in one write.

        ``frame`` is what a read brought (the built-in codec), or the list of
        requests :class:`reactor.http.HTTPCodec` framed: both work.
        """
        if frame is None:
            return None, Action.NONE
        if isinstance(frame, list):
            return self._answer_all(frame, [])
        st = self._states.get(c)
        if st is None:
            st = self._states[c] = _HTTPState()
        parser = st.parser
        if parser.closed:
            return None, Action.NONE  # nothing after an error or the last request is parsed
        st.buf.write(frame)
        out: list[bytes] = []
        while True:
            batch = parser.parse(st.buf)
            if parser.continue_due:
                parser.continue_due = False
                out.append(CONTINUE)
            if not batch:
                return (b"".join(out) or None), Action.NONE
            answer, action = self._answer_all(batch, out)
            if action == Action.CLOSE:
                return answer, action
            out = [answer] if answer else []

    def _answer_all(self, batch: list[Request], out: list[bytes]) -> tuple[bytes | None, Action]:
        """The answers to ``batch`` after ``out``; CLOSE after an error or a request that ends the connection."""
        for req in batch:
            if req.error is not None:
                out.append(error_response(req.error, server=None))
                return b"".join(out), Action.CLOSE
            request = HTTPRequest(req.method, req.path, req.query, req.version, req.headers, req.body)
            with self._cond:
                self._requests.append(request)
                self._cond.notify_all()
            out.append(self._answer(request, req))
        return (b"".join(out) or None), (Action.NONE if batch[-1].keep_alive else Action.CLOSE)

    def _answer(self, request: HTTPRequest, req: Request) -> bytes:
        value = self.routes.get((request.method, request.path))
        if value is None and request.method == "HEAD":
            value = self.routes.get(("GET", request.path))
        if value is None:
            status, headers, body = self.default
            return _response(status, headers, body, req)
        if callable(value):
            value = value(request)
        if isinstance(value, (bytes, bytearray, memoryview, str)):
            status, headers, body = 200, None, value
        else:
            status, headers, body = value
        return _response(status, headers, bytes(body) if not isinstance(body, str) else body, req)
