"""Throwaway reactor servers for tests: start one in about a millisecond, talk to it, stop it.

A minimal test::

    import socket
    from reactor.testing import EchoHandler, serve_in_background

    def test_echo():
        with serve_in_background(EchoHandler()) as srv:
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"ping")
                assert s.recv(4) == b"ping"

:func:`serve_in_background` runs :func:`reactor.serve` on a daemon thread and
returns once the listener is bound (clients can connect). Leaving the
``with`` block (or calling :meth:`BackgroundServer.stop`) stops the server,
joins every thread it started, and re-raises **in the test** the first
exception that any callback raised on a loop thread, or the first result
the engine refused (``react`` returning bare bytes...): an ``assert``
inside ``react`` fails the test that triggered it instead of only being
logged (``raise_errors=False`` or ``take_errors()`` for tests that provoke
errors on purpose).

Ready-made handlers:

* :class:`EchoHandler`: writes back what it reads (TCP, Unix and UDP).
* :class:`RecordingHandler`: records every received byte per connection and
  every open/close event; ``wait_for``, ``assert_received``.
* :class:`ScriptedHandler`: a conversation script (expected input → reply)
  that every connection must follow; a deviation fails the test.
* :class:`HTTPHandler`: HTTP/1.1 (pipelining, Content-Length and chunked
  bodies) answering from expectations in pytest-httpserver's style
  (``expect_request(...).respond_with_json(...)``; an unexpected request
  fails the test when the server stops) and from a route table, logging
  each request and response.
* :class:`FaultHandler`: a misbehaving peer (close after N bytes, reset,
  delay, drip-feed, never answer, garbage).

For TLS (``serve_in_background(..., tls=ctx)``), :class:`TLSCertificates`
makes a throwaway CA and server certificate (with ``trustme``) and the
contexts and PEM files that go with them.

The pytest plugin (``reactor.pytest_plugin``) wraps all of this in fixtures;
see docs/testing.md.

Every name is importable from ``reactor.testing``; where each one lives:

* ``background.py``: :func:`serve_in_background`, :class:`BackgroundServer`
  and :class:`ServerFactory` (the ``reactor_server`` fixture's type).
* ``proxies.py``: the wrappers the engine serves in place of the test's
  handler and codec, recording what they raise (internal).
* ``waiting.py``: :data:`DEFAULT_TIMEOUT`, :class:`WaitTimeout`, and the
  ``Waiting`` mixin giving handlers ``wait_for``.
* ``handlers.py``: :class:`EchoHandler`, :class:`RecordingHandler` (and
  its :class:`Event`), :class:`ScriptedHandler`.
* ``http.py``: :class:`HTTPHandler`, :class:`HTTPRequest` and the route
  types ``Body``, ``HeadersLike``, ``RouteValue``.
* ``expectations.py``: what ``HTTPHandler.expect_request`` builds:
  :class:`RequestMatcher` (with :class:`URIPattern`, :class:`QueryMatcher`,
  :class:`HeaderValueMatcher`), :class:`Expectation`, :class:`HandlerType`,
  :class:`HTTPResponse`, :data:`METHOD_ALL`; ``http_hooks.py``: post hooks
  (``Delay``, ``Garbage``, ``Chain``).
* ``faults.py``: :class:`FaultHandler`, :data:`DEFAULT_GARBAGE` and the
  timer thread behind its delays.
* ``tls.py``: :class:`TLSCertificates` (throwaway certificates for TLS tests).
"""

from __future__ import annotations

from .background import BackgroundServer, ServerFactory, serve_in_background
from .expectations import (
    METHOD_ALL,
    Expectation,
    HandlerType,
    HeaderValueMatcher,
    HTTPResponse,
    QueryMatcher,
    RequestMatcher,
    URIPattern,
)
from .faults import DEFAULT_GARBAGE, FaultHandler
from .handlers import EchoHandler, Event, RecordingHandler, ScriptedHandler
from .http import Body, HeadersLike, HTTPHandler, HTTPRequest, RouteValue
from .tls import TLSCertificates
from .waiting import DEFAULT_TIMEOUT, WaitTimeout

__all__ = [
    "DEFAULT_GARBAGE",
    "DEFAULT_TIMEOUT",
    "METHOD_ALL",
    "BackgroundServer",
    "Body",
    "EchoHandler",
    "Event",
    "Expectation",
    "FaultHandler",
    "HTTPHandler",
    "HTTPRequest",
    "HTTPResponse",
    "HandlerType",
    "HeaderValueMatcher",
    "HeadersLike",
    "QueryMatcher",
    "RecordingHandler",
    "RequestMatcher",
    "RouteValue",
    "ScriptedHandler",
    "ServerFactory",
    "TLSCertificates",
    "URIPattern",
    "WaitTimeout",
    "serve_in_background",
]
