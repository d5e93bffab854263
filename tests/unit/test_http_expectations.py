"""HTTPHandler's expectations (pytest-httpserver's API): matchers, lifetimes, answers, failures, the log.

Every test talks HTTP to a real server on 127.0.0.1 (requests, or a raw
socket for pipelining), with timeouts. pytest-httpserver's own documented
examples, ported, are tests/http/test_httpserver_howto.py; the last test here
checks that the comparison table in docs/testing.md names only tests that exist.
"""

from __future__ import annotations

import ast
import re
import socket
import textwrap
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import requests

from reactor.http import Request
from reactor.testing import (
    BackgroundServer,
    Expectation,
    HandlerType,
    HTTPHandler,
    HTTPRequest,
    HTTPResponse,
    QueryMatcher,
    RequestMatcher,
    URIPattern,
    serve_in_background,
)
from reactor.testing.expectations import ResponseHeaders
from reactor.testing.http_hooks import Chain, Delay, Garbage

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
T = 2.0
#: Inner pytest sessions load the plugin through its entry point, or with -p until it is installed.
PLUGIN_ARGS = () if any(ep.value == "reactor.pytest_plugin" for ep in entry_points(group="pytest11")) else (
    "-p", "reactor.pytest_plugin"
)


@pytest.fixture
def srv() -> Iterator[BackgroundServer[HTTPHandler]]:
    """An HTTPHandler server stopped by the test's end; a failure it records fails the test here."""
    with serve_in_background(HTTPHandler()) as server:
        yield server


def get(srv: BackgroundServer[HTTPHandler], target: str, **kwargs: Any) -> requests.Response:
    return requests.get(srv.url_for(target), timeout=T, **kwargs)


def post(srv: BackgroundServer[HTTPHandler], target: str, **kwargs: Any) -> requests.Response:
    return requests.post(srv.url_for(target), timeout=T, **kwargs)


def take_unexpected(srv: BackgroundServer[HTTPHandler], n: int) -> list[str]:
    """The ``n`` recorded failures, taken (so that the stop raises nothing)."""
    failures = [str(a) for a in srv.handler.assertions]
    assert len(failures) == n, failures
    srv.handler.clear_assertions()
    return failures


# --- matchers -----------------------------------------------------------------------------------------------
def test_method_matcher(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/m", method="post").respond_with_data("posted")
    assert post(srv, "/m").text == "posted"
    assert get(srv, "/m").status_code == 500
    [failure] = take_unexpected(srv, 1)
    assert failure.startswith("No handler found for request GET /m ")
    assert "method='POST'" in failure  # the expectations are listed


def test_path_exact_regex_and_uripattern(srv: BackgroundServer[HTTPHandler]) -> None:
    class Suffix(URIPattern):
        def match(self, uri: str) -> bool:
            return uri.endswith(".txt")

    srv.handler.expect_request("/exact").respond_with_data("exact")
    srv.handler.expect_request(re.compile(r"^/re/\d+$")).respond_with_data("regexp")
    srv.handler.expect_request(Suffix()).respond_with_data("pattern")
    assert get(srv, "/exact?ignored=query").text == "exact"
    assert get(srv, "/re/42").text == "regexp"
    assert get(srv, "/any/file.txt").text == "pattern"
    assert get(srv, "/exact/").status_code == 500 and get(srv, "/re/x").status_code == 500
    take_unexpected(srv, 2)


def test_uri_with_query_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pass the query as query_string="):
        RequestMatcher("/foo?a=1")


def test_query_string_str_is_compared_as_sent(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/q", query_string=b"a=1&b=x%20y").respond_with_data("bytes")
    assert get(srv, "/q?a=1&b=x%20y").text == "bytes"
    assert get(srv, "/q?b=x%20y&a=1").status_code == 500  # another order: another string
    assert get(srv, "/q?a=1&b=x+y").status_code == 500  # another spelling of the space
    take_unexpected(srv, 2)


def test_query_string_list_values_match_all(srv: BackgroundServer[HTTPHandler]) -> None:
    class MultiDictLike:  # werkzeug's MultiDict, as far as the matcher looks at it
        def keys(self) -> list[str]:
            return ["tag"]

        def getlist(self, key: str) -> list[str]:
            return ["b", "a"]

    srv.handler.expect_request("/all", query_string={"tag": ["a", "b"], "x": "1"}).respond_with_data("list")
    srv.handler.expect_request("/multi", query_string=MultiDictLike()).respond_with_data("multidict")
    srv.handler.expect_request("/first", query_string={"tag": "a"}).respond_with_data("first")
    assert get(srv, "/all?tag=a&x=1&tag=b").text == "list"
    assert get(srv, "/multi?tag=b&tag=a").text == "multidict"
    assert get(srv, "/first?tag=a&tag=z").text == "first"  # a plain value: the first one
    assert get(srv, "/all?tag=a&x=1").status_code == 500
    assert get(srv, "/all?tag=b&tag=a&x=1").status_code == 500  # in order
    assert get(srv, "/first?tag=a&extra=1").status_code == 500  # an extra name
    take_unexpected(srv, 3)


def test_custom_query_matcher(srv: BackgroundServer[HTTPHandler]) -> None:
    class HasPage(QueryMatcher):
        def get_comparing_values(self, request_query_string: bytes) -> tuple[Any, Any]:
            return b"page=" in request_query_string, True

    srv.handler.expect_request("/list", query_string=HasPage()).respond_with_data("paged")
    assert get(srv, "/list?page=3&size=2").text == "paged"
    assert get(srv, "/list?size=2").status_code == 500
    take_unexpected(srv, 1)


def test_headers_case_insensitive_names(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/h", headers={"X-Api-Key": "k1", "accept": "text/csv"}).respond_with_data("ok")
    assert get(srv, "/h", headers={"x-api-key": "k1", "Accept": "text/csv"}).text == "ok"
    assert get(srv, "/h", headers={"X-Api-Key": "K1", "Accept": "text/csv"}).status_code == 500  # values exact
    assert get(srv, "/h", headers={"Accept": "text/csv"}).status_code == 500
    failures = take_unexpected(srv, 2)
    assert "'x-api-key': 'K1'" in failures[0]


def test_authorization_basic_and_params(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/basic", headers={"Authorization": "Basic dXNlcjpwYXNz"}).respond_with_data("b")
    srv.handler.expect_request("/token", headers={"Authorization": 'Custom a="1", b=2'}).respond_with_data("t")
    assert get(srv, "/basic", auth=("user", "pass")).text == "b"
    assert get(srv, "/token", headers={"Authorization": 'custom b="2",a=1'}).text == "t"
    assert get(srv, "/basic", auth=("user", "other")).status_code == 500
    assert get(srv, "/token", headers={"Authorization": "Custom a=1, b=3"}).status_code == 500
    take_unexpected(srv, 2)


def test_body_bytes_and_str(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/b", data=b"\x00\xffraw").respond_with_data("bytes")
    srv.handler.expect_request("/s", data="héllo", data_encoding="latin-1").respond_with_data("str")
    assert post(srv, "/b", data=b"\x00\xffraw").text == "bytes"
    assert post(srv, "/s", data="héllo".encode("latin-1")).text == "str"
    assert post(srv, "/s", data="héllo".encode()).status_code == 500  # UTF-8: other bytes
    assert post(srv, "/b", data=b"\x00\xffraw!").status_code == 500
    take_unexpected(srv, 2)


def test_json_body_matching(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/j", method="PUT", json={"a": [1, 2], "b": None}).respond_with_data("json")
    srv.handler.expect_request("/null", json=None).respond_with_data("null")
    assert requests.put(srv.url_for("/j"), data='{ "b": null,\n "a": [1, 2] }', timeout=T).text == "json"
    assert post(srv, "/null", data=b"null").text == "null"
    assert requests.put(srv.url_for("/j"), json={"a": [2, 1], "b": None}, timeout=T).status_code == 500
    assert requests.put(srv.url_for("/j"), data=b"not json", timeout=T).status_code == 500
    assert post(srv, "/null", data=b"").status_code == 500  # no body is not null
    take_unexpected(srv, 3)


def test_data_form_multipart(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/up", method="POST", data_form={"title": "café", "tags": ["a", "b"]}).respond_with_data(
        "form"
    )
    files = {"attachment": ("a.bin", b"\x00\x01", "application/octet-stream")}  # files are not form fields
    multipart = [("title", "café"), ("tags", "a"), ("tags", "b")]
    assert post(srv, "/up", data=multipart, files=files).text == "form"
    assert post(srv, "/up", data=multipart).text == "form"  # urlencoded
    assert post(srv, "/up", data=[("title", "café"), ("tags", "a")]).status_code == 500
    assert post(srv, "/up", data=b"title=caf%C3%A9&tags=a&tags=b").status_code == 500  # no form Content-Type
    [request, *_] = srv.handler.requests
    assert request.form == {"title": "café", "tags": "a"}
    take_unexpected(srv, 2)


def test_mutually_exclusive_criteria() -> None:
    with pytest.raises(ValueError, match="data and json"):
        RequestMatcher("/", data=b"x", json={})
    with pytest.raises(ValueError, match="data_form"):
        RequestMatcher("/", json={}, data_form={})
    with pytest.raises(TypeError, match="query_string"):
        RequestMatcher("/", query_string=42)  # type: ignore[arg-type]


def test_matcher_works_on_parser_requests_and_explains_differences() -> None:
    req = Request("POST", "/api/items?x=1", headers={"content-type": "application/json"}, body=b'{"n": 1}')
    good = RequestMatcher("/api/items", method="POST", query_string={"x": "1"}, json={"n": 1},
                          headers={"Content-Type": "application/json"})
    assert good.match(req) and good.difference(req) == []
    bad = RequestMatcher("/api/other", method="GET", query_string="x=2", json={"n": 2}, headers={"X-A": "1"})
    fields = {field: (got, want) for field, got, want in bad.difference(req)}
    assert fields == {
        "uri": ("/api/items", "/api/other"),
        "method": ("POST", "GET"),
        "query_string": ("x=1", "x=2"),
        "headers": ({"X-A": None}, {"X-A": "1"}),
        "json": (b'{"n": 1}', {"n": 2}),
    }
    assert "uri='/api/other'" in repr(bad)


# --- lifetimes ----------------------------------------------------------------------------------------------
def test_permanent_expectation_answers_every_time(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/p").respond_with_data("again")
    assert [get(srv, "/p").text for _ in range(3)] == ["again"] * 3
    assert len(srv.handler.handlers) == 1


def test_oneshot_expectation_answers_once(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_oneshot_request("/o").respond_with_data("first")
    srv.handler.expect_oneshot_request("/o").respond_with_data("second")
    assert [get(srv, "/o").text for _ in range(2)] == ["first", "second"]
    assert srv.handler.oneshot_handlers == []
    assert get(srv, "/o").status_code == 500
    take_unexpected(srv, 1)


def test_ordered_out_of_order_fails_permanently(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_ordered_request("/1").respond_with_data("one")
    srv.handler.expect_ordered_request("/2").respond_with_data("two")
    srv.handler.expect_request("/always").respond_with_data("always")
    assert get(srv, "/1").text == "one"
    assert get(srv, "/always").status_code == 500  # ordered expectations come first
    assert get(srv, "/2").status_code == 500  # and after a miss every request fails
    assert srv.handler.permanently_failed
    failures = take_unexpected(srv, 2)
    assert failures[0].startswith("No handler found for request GET /always")
    assert "an ordered expectation was not met" in failures[1]


def test_precedence_ordered_oneshot_permanent_routes(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.route("GET", "/x", b"route")
    srv.handler.expect_request("/x").respond_with_data("permanent")
    srv.handler.expect_oneshot_request("/x").respond_with_data("oneshot")
    srv.handler.expect_ordered_request("/x").respond_with_data("ordered")
    assert [get(srv, "/x").text for _ in range(4)] == ["ordered", "oneshot", "permanent", "permanent"]
    srv.handler.clear_all_handlers()
    assert get(srv, "/x").text == "route"  # routes stay, and answer after the expectations


# --- answers ------------------------------------------------------------------------------------------------
def test_respond_with_data_status_headers_content_type(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/d").respond_with_data(
        b"<p>", status=202, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], mimetype="text/html"
    )
    srv.handler.expect_request("/ct").respond_with_data("x", content_type="application/x-thing")
    srv.handler.expect_request("/empty").respond_with_data(status=204)
    with socket.create_connection(srv.addr, timeout=T) as s:
        s.sendall(b"GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(4096):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" in raw and raw.endswith(b"\r\n\r\n<p>")
    assert b"Content-Type: text/html; charset=utf-8\r\n" in raw
    assert get(srv, "/ct").headers["Content-Type"] == "application/x-thing"
    empty = get(srv, "/empty")
    assert empty.status_code == 204 and "Content-Length" not in empty.headers and empty.content == b""


def test_respond_with_json(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/j").respond_with_json([1, {"a": "é"}], status=418, headers={"X-A": "1"})
    r = get(srv, "/j")
    assert (r.status_code, r.json(), r.headers["X-A"]) == (418, [1, {"a": "é"}], "1")
    assert r.headers["Content-Type"] == "application/json"
    [(_, response)] = srv.handler.log
    assert response.json == [1, {"a": "é"}]


def test_respond_with_response_copies_per_request(srv: BackgroundServer[HTTPHandler]) -> None:
    def shout(request: HTTPRequest, response: HTTPResponse) -> HTTPResponse:
        response.set_data(response.body + b"!")
        return response

    srv.handler.expect_request("/r").with_post_hook(shout).respond_with_response(
        HTTPResponse("hi", 201, {"X-R": "1"})
    )
    assert [get(srv, "/r").text for _ in range(2)] == ["hi!", "hi!"]  # the hook changed a copy each time
    assert get(srv, "/r").headers["X-R"] == "1"


def test_respond_with_response_accepts_a_werkzeug_response(srv: BackgroundServer[HTTPHandler]) -> None:
    werkzeug = pytest.importorskip("werkzeug")
    srv.handler.expect_request("/w").respond_with_response(werkzeug.Response("from werkzeug", 203))
    r = get(srv, "/w")
    assert (r.status_code, r.text) == (203, "from werkzeug")


def test_respond_with_handler_return_types(srv: BackgroundServer[HTTPHandler]) -> None:
    answers: dict[str, Any] = {
        "str": "text",
        "bytes": b"\x00bin",
        "tuple": (201, {"X-T": "1"}, "made"),
        "none": None,
        "response": HTTPResponse("obj", 299),
    }
    srv.handler.expect_request(re.compile("^/")).respond_with_handler(lambda request: answers[request.args["kind"]])
    results = {kind: get(srv, "/", params={"kind": kind}) for kind in answers}
    assert {k: (r.status_code, r.content) for k, r in results.items()} == {
        "str": (200, b"text"),
        "bytes": (200, b"\x00bin"),
        "tuple": (201, b"made"),
        "none": (200, b""),
        "response": (299, b"obj"),
    }
    assert results["tuple"].headers["X-T"] == "1"
    answers["str"] = 3.5  # not a response
    assert get(srv, "/", params={"kind": "str"}).status_code == 500
    with pytest.raises(TypeError, match="returned float"):
        srv.handler.check_handler_errors()


def test_post_hooks_chain_and_garbage(srv: BackgroundServer[HTTPHandler]) -> None:
    def tag(request: HTTPRequest, response: HTTPResponse) -> HTTPResponse:
        response.headers.add("X-Hook", request.method)
        return response

    srv.handler.expect_request("/g").with_post_hook(Chain(tag, Garbage(prefix_size=3, suffix_size=2))).with_post_hook(
        Delay(0.05)
    ).respond_with_data("body")
    started = time.monotonic()
    r = get(srv, "/g")
    assert time.monotonic() - started >= 0.05
    assert len(r.content) == 9 and r.content[3:7] == b"body" and r.headers["X-Hook"] == "GET"
    with pytest.raises(ValueError):
        Garbage(prefix_size=-1)


def test_no_response_defined_is_500_and_a_failure(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/nothing")
    r = get(srv, "/nothing")
    assert r.status_code == 500 and "no response defined" in r.text
    with pytest.raises(AssertionError, match=r"no response defined: GET /nothing"):
        srv.handler.check_assertions()


def test_head_request_to_expectation(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/h", method="HEAD").respond_with_data("sized")
    r = requests.head(srv.url_for("/h"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Length"] == "5" and r.content == b""


def test_pipelined_requests_with_expectations(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_ordered_request("/a").respond_with_data("A")
    srv.handler.expect_ordered_request("/b", method="POST", data=b"xyz").respond_with_data("B")
    srv.handler.expect_ordered_request("/c").respond_with_data("C")
    with socket.create_connection(srv.addr, timeout=T) as s:
        s.sendall(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
            b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := s.recv(4096):
            raw += chunk
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert [part[-1:] for part in raw.split(b"HTTP/1.1 ")[1:]] == [b"A", b"B", b"C"]


# --- failures -----------------------------------------------------------------------------------------------
def test_unexpected_request_gets_500_and_fails_stop() -> None:
    with pytest.raises(AssertionError) as info:
        with serve_in_background(HTTPHandler()) as srv:
            srv.expect_request("/known").respond_with_data("known")
            r = get(srv, "/unknown?x=1", data=b"payload")
            assert r.status_code == 500 and r.text.startswith("No handler found for request GET /unknown?x=1")
            assert get(srv, "/other").status_code == 500
    message = str(info.value)
    assert message.startswith("2 failed HTTP expectation(s)")
    assert "No handler found for request GET /unknown?x=1" in message and "body: b'payload'" in message
    assert "* No handler found for request GET /other" in message
    assert "Persistent matchers:\n    <RequestMatcher uri='/known'" in message


def test_fail_at_stop_false_opt_out() -> None:
    handler = HTTPHandler(fail_at_stop=False)
    with serve_in_background(handler) as srv:
        handler.expect_request("/known").respond_with_data("known")
        assert get(srv, "/unknown").status_code == 500
    assert len(handler.assertions) == 1  # kept for a check, not raised by the stop
    with pytest.raises(AssertionError, match="GET /unknown"):
        handler.check()


def test_check_assertions_consumes() -> None:
    with serve_in_background(HTTPHandler()) as srv:
        srv.expect_request("/known").respond_with_data("known")
        get(srv, "/one")
        get(srv, "/two")
        srv.add_assertion("added by the test")
        with pytest.raises(AssertionError, match="GET /one"):
            srv.check_assertions()
        with pytest.raises(AssertionError, match="GET /two"):
            srv.check_assertions()
        with pytest.raises(AssertionError, match="added by the test"):
            srv.check_assertions()
        srv.check_assertions()  # nothing left: the stop raises nothing either


def test_handler_assertion_error_is_500_and_fails_stop() -> None:
    def handler(request: HTTPRequest) -> str:
        assert request.args.get("n") == "1", f"bad n in {request.target}"
        return "fine"

    with pytest.raises(AssertionError, match=r"bad n in /check\?n=2"):
        with serve_in_background(HTTPHandler()) as srv:
            srv.expect_request("/check").respond_with_handler(handler)
            assert get(srv, "/check?n=1").text == "fine"
            r = get(srv, "/check?n=2")
            assert r.status_code == 500 and "AssertionError" in r.text


def test_handler_exception_is_500_and_fails_stop() -> None:
    def broken(request: HTTPRequest) -> str:
        raise KeyError("handler bug")

    with pytest.raises(KeyError, match="handler bug") as info:
        with serve_in_background(HTTPHandler()) as srv:
            srv.expect_request("/b").respond_with_handler(broken)
            r = get(srv, "/b")
            assert r.status_code == 500 and "KeyError" in r.text
            assert get(srv, "/b").status_code == 500  # the connection and the server live on
    assert "raised by a response handler" in "".join(getattr(info.value, "__notes__", []))


def test_explicit_default_is_not_a_failure() -> None:
    with serve_in_background(HTTPHandler(default=(410, {"X-D": "1"}, b"gone"))) as srv:
        srv.expect_request("/known").respond_with_data("known")
        r = get(srv, "/unknown")
        assert (r.status_code, r.text, r.headers["X-D"]) == (410, "gone", "1")
        assert srv.assertions == []


def test_routes_only_keep_404_without_failure() -> None:
    with serve_in_background(HTTPHandler({("GET", "/r"): b"routed"})) as srv:
        assert get(srv, "/r").text == "routed"
        r = get(srv, "/missing")
        assert (r.status_code, r.text) == (404, "Not Found")
    assert srv.handler.assertions == [] and [req.path for req, _ in srv.handler.log] == ["/r", "/missing"]


def test_no_handler_status_code_via_server_attribute(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.no_handler_status_code = 404  # set on the handler, as reading it reads the handler's
    assert srv.handler.no_handler_status_code == 404 and "no_handler_status_code" not in vars(srv)
    srv.handler.expect_request("/known").respond_with_data("known")
    assert get(srv, "/unknown").status_code == 404
    take_unexpected(srv, 1)  # still unexpected
    srv.extra_attribute = 1  # a name neither has: the server's own
    assert vars(srv)["extra_attribute"] == 1 and not hasattr(srv.handler, "extra_attribute")


def test_fixture_teardown_fails_on_unexpected_request(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import requests


            def test_unexpected(http_server):
                http_server.expect_request("/api").respond_with_data("ok")
                assert requests.get(http_server.url_for("/typo"), timeout=2).status_code == 500


            def test_allowed(http_server):
                http_server.fail_at_stop = False
                http_server.expect_request("/api").respond_with_data("ok")
                assert requests.get(http_server.url_for("/typo"), timeout=2).status_code == 500


            def test_routes_only(http_server):
                http_server.route("GET", "/api", b"ok")
                assert requests.get(http_server.url_for("/typo"), timeout=2).status_code == 404
            """
        )
    )
    result = pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_unexpected*", "*No handler found for request GET /typo*"])


# --- log, queries, state ------------------------------------------------------------------------------------
def test_log_has_requests_and_responses_with_bodies(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/up", method="PUT").respond_with_data(b"stored", status=201)
    requests.put(srv.url_for("/up?v=2"), data=b"\x00payload", headers={"X-Trace": "t"}, timeout=T)
    get(srv, "/nope")
    (req1, resp1), (req2, resp2) = srv.handler.log
    assert (req1.method, req1.path, req1.query, req1.body) == ("PUT", "/up", "v=2", b"\x00payload")
    assert req1.headers["X-Trace"] == "t" and (resp1.status, resp1.body) == (201, b"stored")
    assert req2.path == "/nope" and resp2.status == 500
    assert srv.handler.requests == [req1, req2]
    take_unexpected(srv, 1)


def test_assert_request_made_counts_and_message(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/a").respond_with_data("a")
    get(srv, "/a", params={"x": "1"})
    get(srv, "/a", params={"x": "2"})
    srv.handler.assert_request_made(RequestMatcher("/a"), count=2)
    srv.handler.assert_request_made(RequestMatcher("/a", query_string={"x": "2"}))
    srv.handler.assert_request_made("/b", count=0)
    with pytest.raises(AssertionError) as info:
        srv.handler.assert_request_made(RequestMatcher("/a", method="POST", query_string={"x": "1"}))
    message = str(info.value)
    assert message.startswith("Matching request found 0 times but expected 1 times.")
    assert "Found 2 similar request(s) (same URI):" in message
    assert "differs in method: got 'GET', expected 'POST'" in message
    assert "differs in method: got 'GET', expected 'POST'; query_string: got 'x=2', expected {'x': '1'}" in message
    with pytest.raises(AssertionError, match="No similar requests found"):
        srv.handler.assert_request_made("/zzz")


def test_iter_matching_requests_and_count(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request(re.compile("^/n/")).respond_with_handler(lambda request: request.path[3:])
    for n in "123":
        post(srv, f"/n/{n}", json={"n": int(n)})
    matching = srv.handler.iter_matching_requests(RequestMatcher(re.compile("^/n/[13]")))
    odd = [(r.json["n"], resp.body) for r, resp in matching]
    assert odd == [(1, b"1"), (3, b"3")]
    assert srv.handler.get_matching_requests_count(RequestMatcher("/n/2", json={"n": 2})) == 1
    assert srv.handler.get_matching_requests_count("/n/4") == 0


def test_clear_resets_state(srv: BackgroundServer[HTTPHandler]) -> None:
    h = srv.handler
    h.route("GET", "/route", b"kept")
    h.expect_ordered_request("/first").respond_with_data("1")
    h.expect_oneshot_request("/once").respond_with_data("1")
    h.expect_request("/boom").respond_with_handler(lambda request: 1 / 0)
    h.no_handler_status_code = 503
    assert get(srv, "/wrong").status_code == 503 and get(srv, "/boom").status_code == 500
    assert h.permanently_failed and h.assertions and h.log
    h.clear()
    assert (h.handlers, h.oneshot_handlers, h.ordered_handlers) == ([], [], [])
    assert (h.assertions, h.handler_errors, h.log, h.requests) == ([], [], [], [])
    assert not h.permanently_failed and h.no_handler_status_code == 500
    assert get(srv, "/route").text == "kept"
    assert get(srv, "/wrong").status_code == 500  # still strict
    take_unexpected(srv, 1)


def test_format_matchers(srv: BackgroundServer[HTTPHandler]) -> None:
    h = srv.handler
    empty = "Ordered matchers:\n    none\n\nOneshot matchers:\n    none\n\nPersistent matchers:\n    none"
    assert h.format_matchers() == empty
    h.route("POST", "/r", b"")
    h.expect_ordered_request("/o", method="GET")
    h.expect_request("/p", json={"a": 1})
    text = h.format_matchers()
    assert "Ordered matchers:\n    <RequestMatcher uri='/o' method='GET'" in text
    assert "Persistent matchers:\n    <RequestMatcher uri='/p' method='__ALL' query_string=None headers={} " in text
    assert text.endswith("Routes:\n    POST /r")
    assert "json={'a': 1}" in text


def test_wait_times_out(srv: BackgroundServer[HTTPHandler]) -> None:
    h = srv.handler
    h.expect_oneshot_request("/never").respond_with_data("x")
    with pytest.raises(AssertionError, match=r"wait\(\): not met within 0.05 s; expectations left:\nOrdered"):
        with h.wait(timeout=0.05):
            pass
    with h.wait(raise_assertions=False, timeout=0.05) as waiting:
        pass
    assert not waiting.result and waiting.elapsed_time >= 0.05
    with pytest.raises(AssertionError, match="GET /stray"):
        with h.wait(timeout=T):  # an unexpected request ends the wait at once, and is raised
            get(srv, "/stray")
    h.clear()


def test_bake_layers_defaults(srv: BackgroundServer[HTTPHandler]) -> None:
    api = srv.handler.bake(method="POST").bake(headers={"X-Api": "1"})
    api.expect_request("/a").respond_with_data("a")
    api.expect_oneshot_request("/b", method="PUT").respond_with_data("b")  # the call's own argument wins
    assert post(srv, "/a", headers={"X-Api": "1"}).text == "a"
    assert requests.put(srv.url_for("/b"), headers={"X-Api": "1"}, timeout=T).text == "b"
    assert api.log == srv.handler.log  # everything else is the handler's
    assert post(srv, "/a").status_code == 500  # the baked header is required
    take_unexpected(srv, 1)


def test_with_check_raises_after_the_block(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/ok").respond_with_data("ok")
    with pytest.raises(AssertionError, match="GET /bad"):
        with srv.handler.with_check():
            get(srv, "/bad")


def test_request_view_helpers(srv: BackgroundServer[HTTPHandler]) -> None:
    srv.handler.expect_request("/v").respond_with_data("v")
    post(srv, "/v?a=1&a=2&b=x+y&c", json={"k": [1]}, headers={"X-Mixed-Case": "Yes"})
    [request] = srv.handler.requests
    assert request.args == {"a": "1", "b": "x y", "c": ""}
    assert request.json == {"k": [1]} and request.data == request.body == request.get_data() == b'{"k": [1]}'
    assert request.get_data(as_text=True) == '{"k": [1]}' and request.form == {}
    assert request.headers["x-mixed-case"] == request.headers["X-MIXED-CASE"] == "Yes"
    assert "Content-Type" in request.headers and request.headers.get("CONTENT-LENGTH") == "10"
    assert request.headers == {k.lower(): v for k, v in request.headers.items()}  # still a dict, names lower-cased
    assert HTTPRequest("GET", "/", "", "HTTP/1.1", {}, b"not json").json is None


def test_url_for(srv: BackgroundServer[HTTPHandler]) -> None:
    assert srv.url_for("/a?b=1") == srv.url_for("a?b=1") == f"http://127.0.0.1:{srv.port}/a?b=1"


def test_response_headers_and_response_object() -> None:
    h = ResponseHeaders([("A", "1"), ("b", "2"), ("a", "3")])
    assert (h["a"], h.get_all("A"), "B" in h, len(h), list(h)) == ("1", ["1", "3"], True, 3, ["A", "b", "a"])
    h["A"] = "9"
    assert h.items() == [("A", "9"), ("b", "2")]
    del h["B"]
    assert h == {"A": "9"} and h.setdefault("c", "4") == "4" and h.get("zz") is None
    with pytest.raises(KeyError):
        del h["zz"]
    r = HTTPResponse("x", headers={"Content-Type": "text/csv"})
    assert r.headers["content-type"] == "text/csv" and r.status_code == 200 and r.data == b"x"
    assert HTTPResponse(b"{}", mimetype="application/json").headers["Content-Type"] == "application/json; charset=utf-8"
    raw = HTTPResponse.raw(404, None, "gone")
    assert raw.headers.items() == [] and raw.body == b"gone"
    copy = raw.copy()
    copy.headers["X"] = "1"
    copy.data = "changed"
    assert raw.headers.items() == [] and raw.body == b"gone" and copy.get_data(as_text=True) == "changed"


def test_expectation_types() -> None:
    handler = HTTPHandler()
    e = handler.expect_request("/x", handler_type=HandlerType.ONESHOT)
    assert isinstance(e, Expectation) and handler.oneshot_handlers == [e]
    assert e.respond_with_data("chained") is e
    assert repr(e).startswith("<Expectation oneshot uri='/x'")


# --- the comparison table in docs/testing.md ----------------------------------------------------------------
def test_comparison_table_names_real_tests() -> None:
    text = (ROOT / "docs/testing.md").read_text()
    table = text.split("### Coming from pytest-httpserver", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| feature")]
    assert len(rows) >= 40, rows
    here = {n.name for n in ast.parse(Path(__file__).read_text()).body if isinstance(n, ast.FunctionDef)}
    ported = set(_ported_tests())
    problems = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 4, row
        named = re.findall(r"`(test_\w+)`", cells[3])
        if cells[2].startswith("yes"):
            if not named:
                problems.append(f"a 'yes' without a test: {row}")
            problems += [f"{name}: no such test" for name in named if name not in here | ported]
        elif cells[3] != "—":
            problems += [f"{name}: no such test" for name in named if name not in here | ported]
    assert not problems, "\n".join(problems)


def _ported_tests() -> list[str]:
    """The test functions of docs/testing.md's ported examples (what tests/http/test_httpserver_howto.py collects)."""
    text = (ROOT / "docs/testing.md").read_text()
    names = []
    for block in re.findall(r"```python\n# test_doc_httpserver_\w+\.py\n(.*?)```", text, flags=re.DOTALL):
        names += re.findall(r"^def (test_\w+)", block, flags=re.MULTILINE)
    return names
