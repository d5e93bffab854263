"""The HTTP/1.1 test server: :class:`HTTPHandler`, the requests it records, and its response writer.

* :class:`HTTPRequest`: one request as the handler parsed it.
* :data:`Body`, :data:`HeadersLike`, :data:`RouteValue`: what a route may answer.
* :class:`HTTPHandler`: HTTP/1.1 (pipelining, Content-Length and chunked
  bodies) answering from expectations in pytest-httpserver's style
  (:mod:`reactor.testing.expectations`) and from a route table, recording
  each request and response.

Requests are parsed by :mod:`reactor.http`'s :class:`~reactor.http.RequestParser`,
the parser of the example server too, so the fixture accepts and refuses
exactly what the example does (docs/http.md).
"""

from __future__ import annotations

import contextlib
import json as _json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeAlias

from ..connection import Conn
from ..handler import Action, EventServer
from ..http import CONTINUE, ByteBuffer, Limits, Request, RequestParser, connection_header, error_response, reason
from .expectations import (
    METHOD_ALL,
    UNDEFINED,
    BakedExpectations,
    Expectation,
    HandlerType,
    HeaderMatcherFunc,
    HTTPResponse,
    QueryMatcher,
    RequestMatcher,
    URIPattern,
    WaitResult,
    as_matcher,
    form_pairs,
)
from .waiting import DEFAULT_TIMEOUT, Waiting

__all__ = ["Body", "HTTPHandler", "HTTPRequest", "HeadersLike", "RouteValue"]


class _Headers(dict[str, str]):
    """Request headers: a dict with lower-cased names, read case-insensitively (``h["Content-Type"]``)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class HTTPRequest(NamedTuple):
    """One request an :class:`HTTPHandler` received.

    Header names are lower-cased, and ``headers`` is read case-insensitively
    (``headers["Content-Type"]`` works). For code ported from
    pytest-httpserver (werkzeug's ``Request``): ``data``, ``get_data()``,
    ``json``, ``args``, ``form``.
    """

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

    @property
    def data(self) -> bytes:
        """The body (werkzeug's name)."""
        return self.body

    def get_data(self, as_text: bool = False) -> Any:
        """The body: bytes, or a str decoded as UTF-8 with ``as_text=True``."""
        return self.body.decode("utf-8", "replace") if as_text else self.body

    @property
    def json(self) -> Any:
        """The body parsed as JSON; None if it is empty or not JSON."""
        try:
            return _json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def args(self) -> dict[str, str]:
        """The query parameters, percent-decoded: the first value of each name."""
        pairs = urllib.parse.parse_qsl(self.query, keep_blank_values=True)
        return {k: v for k, v in reversed(pairs)}

    @property
    def form(self) -> dict[str, str]:
        """The form fields of a urlencoded or multipart body: the first value of each name."""
        return {k: v for k, v in reversed(form_pairs(self))}

    def describe(self) -> str:
        """One line for messages: ``GET /a?b (headers: {...}, body: b'...')``."""
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"{self.method} {self.target} (headers: {dict(self.headers)!r}, body: {body!r})"


#: A response body; ``str`` is sent UTF-8 encoded.
Body: TypeAlias = bytes | str
#: Response headers: a mapping or ``(name, value)`` pairs (None: none).
HeadersLike: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]] | None
#: What a route answers: a body (status 200), ``(status, headers, body)``,
#: or a function of the request returning either.
RouteValue: TypeAlias = Body | tuple[int, HeadersLike, Body] | Callable[[HTTPRequest], Any]
#: A URI as expectations take it.
URI: TypeAlias = str | URIPattern | re.Pattern[str]

#: What the fixture accepts: generous limits (a test may upload a lot), bodies kept.
_LIMITS = Limits(max_header_size=64 * 1024, max_body_size=16 * 1024 * 1024, buffer_body=True)
_NOT_FOUND: tuple[int, HeadersLike, Body] = (404, None, b"Not Found")


class _HTTPState:
    """One connection's bytes not yet parsed, and its parser."""

    __slots__ = ("buf", "parser")

    def __init__(self) -> None:
        self.buf = ByteBuffer()
        self.parser = RequestParser(_LIMITS)


def _encode(response: HTTPResponse, request: Request) -> bytes:
    items = response.headers.items()
    names = {k.lower() for k, _ in items}
    # 1xx, 204 and 304 answers end with their headers: no body, no Content-Length (RFC 9110 §6.4.1, §8.6).
    bodiless = response.status < 200 or response.status in (204, 304)
    body = b"" if bodiless else response.body
    lines = [f"HTTP/1.1 {response.status} {reason(response.status).decode()}"]
    lines += [f"{k}: {v}" for k, v in items]
    if "content-length" not in names and not bodiless:
        lines.append(f"Content-Length: {len(body)}")
    if "content-type" not in names and body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    if "connection" not in names:
        head += connection_header(request)  # close, or keep-alive for an HTTP/1.0 client that asked
    head += b"\r\n"
    # HEAD: the headers of the GET answer, Content-Length included, no body.
    return head if request.method == "HEAD" else head + body


def _route_response(value: Any) -> HTTPResponse:
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return HTTPResponse.raw(200, None, value)
    status, headers, body = value
    return HTTPResponse.raw(status, headers, body)


class HTTPHandler(Waiting, EventServer):
    """A tiny HTTP/1.1 server: expectations (pytest-httpserver's API) and a route table, every request logged.

    **Expectations** (docs/testing.md compares them with pytest-httpserver):
    ``expect_request(uri, method=, query_string=, headers=, data=, json=,
    data_form=)`` returns an :class:`~reactor.testing.Expectation`; say what
    it answers with ``respond_with_data``, ``respond_with_json``,
    ``respond_with_response`` or ``respond_with_handler``.
    ``expect_oneshot_request`` is met once; ``expect_ordered_request``\\ s
    must come in the order given. Once a handler has an expectation it is
    strict: a request that nothing answers gets ``no_handler_status_code``
    (500) and is recorded in ``assertions``; ``BackgroundServer.stop()`` (so
    the fixtures' teardown) raises an ``AssertionError`` naming it, unless
    ``check_assertions()`` took it, ``clear()`` dropped it, or
    ``fail_at_stop`` is False. ``log`` lists ``(request, response)`` pairs;
    ``assert_request_made(matcher, count=1)`` counts in it.

    **Routes** map ``(METHOD, path)`` to ``(status, headers, body)`` (or just a
    body, for 200), or to a function of the :class:`HTTPRequest` returning
    either; the path is matched without its query, ``HEAD`` falls back to the
    ``GET`` route. They are consulted after the expectations. Without any
    expectation, the rest gets ``default`` (404): nothing fails.

    HTTP: pipelined requests are answered in order, in one write; bodies may
    come with ``Content-Length`` or chunked (decoded; up to 16 MiB).
    ``Expect: 100-continue`` is honoured, HTTP/1.0 keep-alive acknowledged,
    and what :mod:`reactor.http` refuses gets its status and a close. Use it
    with the default codec (it buffers partial requests itself) or with
    ``reactor.http.HTTPCodec()``.

    ::

        h = HTTPHandler({("GET", "/"): (200, {"X-A": "1"}, b"hi")})
        h.route("POST", "/items", status=201, json={"id": 1})
        h.expect_request("/api", method="POST", json={"a": 1}).respond_with_json({"ok": True})

    :param default: the answer to a request nothing else answers, as
        ``(status, headers, body)``. Given, it is used even with
        expectations, and such requests are not failures.
    :param no_handler_status_code: the status of an unexpected request's answer.
    :param fail_at_stop: False: failed expectations do not fail
        ``BackgroundServer.stop()``; they stay in ``assertions`` and
        ``handler_errors`` for ``check()``.
    """

    def __init__(
        self,
        routes: Mapping[tuple[str, str], RouteValue] | None = None,
        *,
        default: tuple[int, HeadersLike, Body] | None = None,
        no_handler_status_code: int = 500,
        fail_at_stop: bool = True,
    ) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], RouteValue] = {}
        for (method, path), value in (routes or {}).items():
            self.routes[(method.upper(), path)] = value
        self.default = default if default is not None else _NOT_FOUND
        self._default_given = default is not None
        self.no_handler_status_code = no_handler_status_code
        self._no_handler_status_code = no_handler_status_code
        self.fail_at_stop = fail_at_stop
        #: Permanent expectations, in the order given (pytest-httpserver's name).
        self.handlers: list[Expectation] = []
        #: Oneshot expectations not met yet.
        self.oneshot_handlers: list[Expectation] = []
        #: Ordered expectations not met yet; the first one is next.
        self.ordered_handlers: list[Expectation] = []
        #: An ordered expectation was not met: every request fails from then on.
        self.permanently_failed = False
        #: Failed expectations not yet raised: unexpected requests (their
        #: descriptions) and ``AssertionError``\\ s of response handlers.
        self.assertions: list[str | AssertionError] = []
        #: Other exceptions response handlers raised.
        self.handler_errors: list[Exception] = []
        self._strict = False
        self._unexpected = 0
        self._requests: list[HTTPRequest] = []
        self._log: list[tuple[HTTPRequest, HTTPResponse]] = []
        self._states: dict[Conn, _HTTPState] = {}

    # --- routes ---------------------------------------------------------------------------------------------
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

    # --- expectations ---------------------------------------------------------------------------------------
    def create_matcher(self, *args: Any, **kwargs: Any) -> RequestMatcher:
        """The :class:`~reactor.testing.RequestMatcher` ``expect_request`` uses; override it for your own."""
        return RequestMatcher(*args, **kwargs)

    def expect(self, matcher: RequestMatcher, handler_type: HandlerType = HandlerType.PERMANENT) -> Expectation:
        """Register an expectation for ``matcher`` (a :class:`~reactor.testing.RequestMatcher` or a subclass).

        Returns it: tell it what to answer (``respond_with_data``...).
        Safe to call while the server runs.
        """
        expectation = Expectation(matcher, handler_type)
        with self._cond:
            self._strict = True
            if handler_type is HandlerType.ONESHOT:
                self.oneshot_handlers.append(expectation)
            elif handler_type is HandlerType.ORDERED:
                self.ordered_handlers.append(expectation)
            else:
                self.handlers.append(expectation)
        return expectation

    def expect_request(
        self,
        uri: URI,
        method: str = METHOD_ALL,
        data: str | bytes | None = None,
        data_encoding: str = "utf-8",
        headers: Mapping[str, str] | None = None,
        query_string: QueryMatcher | str | bytes | Mapping[str, Any] | None = None,
        header_value_matcher: HeaderMatcherFunc | None = None,
        handler_type: HandlerType = HandlerType.PERMANENT,
        json: Any = UNDEFINED,
        data_form: Mapping[str, Any] | None = None,
    ) -> Expectation:
        """Expect requests like this (all of them, by default); returns the :class:`~reactor.testing.Expectation`.

        The criteria are :class:`~reactor.testing.RequestMatcher`'s: ``uri``
        is the path without the query (``"/foo"``, ``re.compile("^/foo")``
        or a :class:`~reactor.testing.URIPattern`); ``method`` any by
        default; ``query_string`` a str compared as sent, or a dict of
        decoded parameters in any order; ``headers`` names case-insensitive;
        ``data`` the exact body, ``json`` the body parsed, ``data_form`` the
        form fields. Ordered expectations come first, then oneshot ones,
        then permanent ones in the order given, then routes.
        """
        matcher = self.create_matcher(
            uri,
            method=method,
            data=data,
            data_encoding=data_encoding,
            headers=headers,
            query_string=query_string,
            header_value_matcher=header_value_matcher,
            json=json,
            data_form=data_form,
        )
        return self.expect(matcher, handler_type)

    def expect_oneshot_request(
        self,
        uri: URI,
        method: str = METHOD_ALL,
        data: str | bytes | None = None,
        data_encoding: str = "utf-8",
        headers: Mapping[str, str] | None = None,
        query_string: QueryMatcher | str | bytes | Mapping[str, Any] | None = None,
        header_value_matcher: HeaderMatcherFunc | None = None,
        json: Any = UNDEFINED,
        data_form: Mapping[str, Any] | None = None,
    ) -> Expectation:
        """:meth:`expect_request` for one request only: a second matching request is unexpected."""
        return self.expect_request(
            uri, method, data, data_encoding, headers, query_string, header_value_matcher,
            HandlerType.ONESHOT, json, data_form,
        )

    def expect_ordered_request(
        self,
        uri: URI,
        method: str = METHOD_ALL,
        data: str | bytes | None = None,
        data_encoding: str = "utf-8",
        headers: Mapping[str, str] | None = None,
        query_string: QueryMatcher | str | bytes | Mapping[str, Any] | None = None,
        header_value_matcher: HeaderMatcherFunc | None = None,
        json: Any = UNDEFINED,
        data_form: Mapping[str, Any] | None = None,
    ) -> Expectation:
        """:meth:`expect_request` for one request, in order: while ordered expectations remain, the next
        request must meet the first of them, or it and every later request fail (500)."""
        return self.expect_request(
            uri, method, data, data_encoding, headers, query_string, header_value_matcher,
            HandlerType.ORDERED, json, data_form,
        )

    def bake(self, **kwargs: Any) -> BakedExpectations:
        """An object whose ``expect_*`` methods take ``kwargs`` as defaults (the call's own arguments win)."""
        return BakedExpectations(self, **kwargs)

    def format_matchers(self) -> str:
        """The expectations left, and the routes, as text (for messages)."""

        def block(title: str, items: list[Any]) -> list[str]:
            return [title, *(f"    {item!r}" for item in items)] if items else [title, "    none"]

        with self._cond:
            lines = block("Ordered matchers:", [e.matcher for e in self.ordered_handlers])
            lines += ["", *block("Oneshot matchers:", [e.matcher for e in self.oneshot_handlers])]
            lines += ["", *block("Persistent matchers:", [e.matcher for e in self.handlers])]
            if self.routes:
                lines += ["", "Routes:", *(f"    {m} {p}" for m, p in self.routes)]
        return "\n".join(lines)

    # --- errors ---------------------------------------------------------------------------------------------
    def add_assertion(self, obj: str | AssertionError) -> None:
        """Record a failure for :meth:`check_assertions` (and for ``stop()``)."""
        with self._cond:
            self.assertions.append(obj)
            self._cond.notify_all()

    def check_assertions(self) -> None:
        """Raise the first recorded failure (an unexpected request, an assertion in a handler) and forget it.

        :raises AssertionError: there is one.
        """
        with self._cond:
            if not self.assertions:
                return
            first = self.assertions.pop(0)
        raise first if isinstance(first, AssertionError) else AssertionError(first)

    def check_handler_errors(self) -> None:
        """Raise the first exception (other than AssertionError) a response handler raised, and forget it."""
        with self._cond:
            if not self.handler_errors:
                return
            first = self.handler_errors.pop(0)
        raise first

    def check(self) -> None:
        """:meth:`check_assertions`, then :meth:`check_handler_errors`."""
        self.check_assertions()
        self.check_handler_errors()

    @contextlib.contextmanager
    def with_check(self) -> Iterator[HTTPHandler]:
        """A block after which :meth:`check` runs (if it ends without an exception)."""
        yield self
        self.check()

    def check_at_stop(self) -> None:
        """What ``BackgroundServer.stop()`` calls once the server stopped: fail on what nobody checked.

        :raises AssertionError: naming every unexpected request and failed
            assertion still in ``assertions`` (with ``fail_at_stop``, the default).
        :raises Exception: the first of ``handler_errors``, when there is no assertion.
        """
        with self._cond:
            assertions, errors = list(self.assertions), list(self.handler_errors)
        if not self.fail_at_stop or not (assertions or errors):
            return
        if not assertions:
            first = errors[0]
            first.add_note(f"raised by a response handler of {self!r}; {len(errors)} handler error(s) in all")
            raise first
        texts = [str(a) or repr(a) for a in assertions]
        message = f"{len(texts)} failed HTTP expectation(s) (set fail_at_stop=False to allow): " + texts[0]
        if len(texts) > 1:
            message += "\n\nand:\n" + "\n".join(f"* {t.splitlines()[0]}" for t in texts[1:])
        error = AssertionError(message)
        if errors:
            error.add_note(f"response handlers also raised: {errors!r}")
        raise error

    # --- state ----------------------------------------------------------------------------------------------
    def clear_assertions(self) -> None:
        """Forget the recorded failures."""
        with self._cond:
            self.assertions = []

    def clear_handler_errors(self) -> None:
        """Forget the exceptions response handlers raised."""
        with self._cond:
            self.handler_errors = []

    def clear_log(self) -> None:
        """Forget the requests and responses seen so far (``log`` and ``requests``)."""
        with self._cond:
            self._log = []
            self._requests = []

    def clear_all_handlers(self) -> None:
        """Drop every expectation (permanent, oneshot, ordered); the routes stay."""
        with self._cond:
            self.handlers = []
            self.oneshot_handlers = []
            self.ordered_handlers = []

    def clear(self) -> None:
        """Back to a fresh state: no expectations, failures, errors or log, ``no_handler_status_code`` as given.

        The routes stay, and so does strictness (a request nothing answers stays unexpected).
        """
        with self._cond:
            self.clear_assertions()
            self.clear_handler_errors()
            self.clear_log()
            self.clear_all_handlers()
            self.permanently_failed = False
            self.no_handler_status_code = self._no_handler_status_code

    @property
    def requests(self) -> list[HTTPRequest]:
        """Every request received so far, in arrival order (a snapshot)."""
        with self._cond:
            return list(self._requests)

    @property
    def log(self) -> list[tuple[HTTPRequest, HTTPResponse]]:
        """``(request, response)`` for every request answered so far, in order (a snapshot); bodies included."""
        with self._cond:
            return list(self._log)

    def wait_for_requests(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> list[HTTPRequest]:
        """Wait until at least ``n`` requests have arrived; return them all."""
        self.wait_for(lambda: len(self._requests) >= n, timeout, f"{n} HTTP request(s) received")
        return self.requests

    def _describe(self) -> str:
        return f"requests so far: {[f'{r.method} {r.target}' for r in self._requests]}"

    # --- the log --------------------------------------------------------------------------------------------
    def iter_matching_requests(
        self, matcher: RequestMatcher | URI
    ) -> Iterator[tuple[HTTPRequest, HTTPResponse]]:
        """The ``(request, response)`` pairs of the log whose request ``matcher`` matches (a URI: any request there)."""
        m = as_matcher(matcher)
        for request, response in self.log:
            if m.match(request):
                yield request, response

    def get_matching_requests_count(self, matcher: RequestMatcher | URI) -> int:
        """How many logged requests ``matcher`` matches."""
        return sum(1 for _ in self.iter_matching_requests(matcher))

    def assert_request_made(self, matcher: RequestMatcher | URI, *, count: int = 1) -> None:
        """Assert that exactly ``count`` logged requests match (0: none did).

        :raises AssertionError: another number did; the message lists the
            requests to the same URI and how each differs from ``matcher``.
        """
        m = as_matcher(matcher)
        found = self.get_matching_requests_count(m)
        if found == count:
            return
        lines = [f"Matching request found {found} times but expected {count} times.", f"Expected request: {m!r}"]
        similar = [r for r, _ in self.log if m.match_uri(r)]
        if similar:
            lines.append(f"Found {len(similar)} similar request(s) (same URI):")
            for r in similar:
                diff = m.difference(r)
                what = "; ".join(f"{field}: got {got!r}, expected {want!r}" for field, got, want in diff)
                lines.append(f"    {r.describe()}" + (f"\n        differs in {what}" if diff else " (matches)"))
        else:
            lines.append("No similar requests found.")
        raise AssertionError("\n".join(lines))

    @contextlib.contextmanager
    def wait(
        self,
        raise_assertions: bool | None = None,
        stop_on_nohandler: bool | None = None,
        timeout: float | None = None,
    ) -> Iterator[WaitResult]:
        """A block after which this waits until every oneshot and ordered expectation is met.

        The outcome is the :class:`~reactor.testing.expectations.WaitResult`
        the block receives (``.result``, ``.elapsed_time``). With
        ``stop_on_nohandler`` (default True) an unexpected request during the
        block ends the wait with ``result`` False. With ``raise_assertions``
        (default True) a timeout (``timeout``, default 5 s) raises an
        ``AssertionError``, and a False result raises the first failure.
        """
        raise_assertions = True if raise_assertions is None else raise_assertions
        stop_on_nohandler = True if stop_on_nohandler is None else stop_on_nohandler
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        with self._cond:
            unexpected_before = self._unexpected
        waiting = WaitResult()
        yield waiting

        def outcome() -> str | None:
            if stop_on_nohandler and self._unexpected > unexpected_before:
                return "unexpected"
            if not self.oneshot_handlers and not self.ordered_handlers:
                return "met"
            return None

        with self._cond:
            result = self._cond.wait_for(outcome, timeout)
        waiting.complete(result == "met")
        if raise_assertions and result is None:
            raise AssertionError(f"wait(): not met within {timeout} s; expectations left:\n{self.format_matchers()}")
        if raise_assertions and not waiting.result:
            self.check_assertions()

    # --- answering ------------------------------------------------------------------------------------------
    def respond_nohandler(self, request: HTTPRequest, extra_message: str = "") -> HTTPResponse:
        """Record ``request`` as unexpected (in ``assertions``) and return its answer (``no_handler_status_code``)."""
        text = f"No handler found for request {request.describe()}.\n{self.format_matchers()}{extra_message}"
        with self._cond:
            self._unexpected += 1
            self.assertions.append(text)
            self._cond.notify_all()
        return HTTPResponse(text, self.no_handler_status_code)

    def respond_permanent_failure(self, request: HTTPRequest) -> HTTPResponse:
        """Record ``request`` as failed because an ordered expectation was not met earlier; its 500 answer."""
        text = (f"No handler found for request {request.describe()}: every request fails "
                "since an ordered expectation was not met")
        with self._cond:
            self._unexpected += 1
            self.assertions.append(text)
            self._cond.notify_all()
        return HTTPResponse(text, 500)

    def _route_answer(self, request: HTTPRequest) -> HTTPResponse | None:
        value = self.routes.get((request.method, request.path))
        if value is None and request.method == "HEAD":
            value = self.routes.get(("GET", request.path))
        if value is None:
            return None
        if callable(value):
            value = value(request)
        return _route_response(value)

    def dispatch(self, request: HTTPRequest) -> HTTPResponse:
        """The answer to ``request``: from an expectation, a route, ``default``, or as unexpected.

        Runs on an event-loop thread. An exception a route function raises
        propagates (the connection is closed and ``stop()`` re-raises it);
        one a response handler raises is recorded and answered with a 500.
        """
        expectation: Expectation | None = None
        with self._cond:
            if self.permanently_failed:
                return self.respond_permanent_failure(request)
            if self.ordered_handlers:
                if not self.ordered_handlers[0].matcher.match(request):
                    self.permanently_failed = True
                    return self.respond_nohandler(request)
                expectation = self.ordered_handlers.pop(0)
            if expectation is None:
                expectation = next((e for e in self.oneshot_handlers if e.matcher.match(request)), None)
                if expectation is not None:
                    self.oneshot_handlers.remove(expectation)
            if expectation is None:
                expectation = next((e for e in self.handlers if e.matcher.match(request)), None)
            strict = self._strict and not self._default_given
        if expectation is not None:
            try:
                return expectation.respond(request)
            except AssertionError as e:
                self.add_assertion(e)
                return HTTPResponse(f"AssertionError in the response handler: {e}", 500)
            except Exception as e:
                with self._cond:
                    self.handler_errors.append(e)
                return HTTPResponse(f"{type(e).__name__} in the response handler: {e}", 500)
        answer = self._route_answer(request)
        if answer is not None:
            return answer
        if strict:
            return self.respond_nohandler(request)
        return _route_response(self.default)

    # --- callbacks ------------------------------------------------------------------------------------------
    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """Forget the connection's parser and unparsed bytes."""
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
            request = HTTPRequest(req.method, req.path, req.query, req.version, _Headers(req.headers), req.body)
            with self._cond:
                self._requests.append(request)
                self._cond.notify_all()
            response = self.dispatch(request)
            with self._cond:
                self._log.append((request, response))
                self._cond.notify_all()
            out.append(_encode(response, req))
        return (b"".join(out) or None), (Action.NONE if batch[-1].keep_alive else Action.CLOSE)
