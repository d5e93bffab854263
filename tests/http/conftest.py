"""Fixtures of the HTTP suites: ``http_target`` runs each test against the example and the fixture.

A server is started once per module and per kind (both are stateless
between connections); tests/conftest.py's leak check still applies to
each test's own sockets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from http_support import BODY, Target, get_ok
from reactor.examples.http import HTTPCodec, HTTPServer
from reactor.testing import HTTPHandler, serve_in_background


def start_example() -> Target:
    srv = serve_in_background(HTTPServer(quiet=True), "tcp://127.0.0.1:0", codec=HTTPCodec(), idle_timeout=60)
    return Target("example", srv.host or "127.0.0.1", int(srv.port or 0), srv)


def start_fixture() -> Target:
    handler = HTTPHandler({("GET", "/"): BODY, ("POST", "/"): BODY})
    srv = serve_in_background(handler, "tcp://127.0.0.1:0")
    return Target("fixture", srv.host or "127.0.0.1", int(srv.port or 0), srv)


KINDS = ["example", "fixture"]
STARTERS = {"example": start_example, "fixture": start_fixture}


@pytest.fixture(scope="module", params=KINDS)
def http_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    target = STARTERS[request.param]()
    with target.server:
        # Served once before any test: the loops' own fds exist before the
        # first test's leak check takes its snapshot.
        get_ok(target)
        yield target
