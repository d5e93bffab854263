"""A handler bug fails the test that triggered it (issue 14).

The engine logs and closes the connection when a callback returns what it
cannot use: not a ``(out, action)`` tuple, ``out`` that cannot be written,
a ``tick`` result that is not ``(delay, action)``, a codec's ``encode``
returning no bytes. :mod:`reactor.testing` checks the same rules
(:func:`reactor.handler.result_error` and friends, which the loops use
too) and records the ``TypeError``; ``stop()`` re-raises it in the test,
like a callback's exception. Before, ``take_errors()`` returned ``[]`` and
the test passed.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

import reactor
from reactor import Action, Conn
from reactor.testing import BackgroundServer, serve_in_background

T = 3.0

pytest_plugins = ["pytester"]


class BareBytes(reactor.EventServer):
    def react(self, frame: bytes | None, c: Conn) -> Any:
        return frame  # forgot the Action


class ThreeItems(reactor.EventServer):
    def react(self, frame: bytes | None, c: Conn) -> Any:
        return frame, Action.NONE, None


class StrOnOpened(reactor.EventServer):
    def on_opened(self, c: Conn) -> Any:
        return "hello"


class StrOut(reactor.EventServer):
    def react(self, frame: bytes | None, c: Conn) -> Any:
        return "text", Action.NONE


class StrGreeting(reactor.EventServer):
    def on_opened(self, c: Conn) -> Any:
        return "hello", Action.NONE


class FloatTick(reactor.EventServer):
    def tick(self) -> Any:
        return 0.01


class StrEncoder(reactor.LineBasedFrameCodec):
    def encode(self, c: Conn, data: bytes) -> Any:
        return data.decode() + "\n"


class Echo(reactor.EventServer):
    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


def poke(srv: BackgroundServer[Any], data: bytes = b"hi\n") -> None:
    """Connect, send, and read until the server closes (or resets) the connection."""
    with socket.create_connection(srv.addr, timeout=T) as s:
        try:
            s.sendall(data)
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass


def wait_for_errors(srv: BackgroundServer[Any], n: int = 1) -> None:
    deadline = time.monotonic() + T
    while len(srv.errors) < n and time.monotonic() < deadline:
        time.sleep(0.005)


CASES = [
    pytest.param(
        BareBytes(), {}, r"react\(\) must return a tuple \(bytes \| None, Action\), got bytes", id="react-bytes"
    ),
    pytest.param(ThreeItems(), {}, r"react\(\) must return a tuple .* got tuple", id="react-3-tuple"),
    pytest.param(StrOnOpened(), {}, r"on_opened\(\) must return a tuple .* got str 'hello'", id="on_opened-str"),
    pytest.param(StrOut(), {}, r"react\(\) returned data of type str", id="react-str-out"),
    pytest.param(StrGreeting(), {}, r"on_opened\(\) returned data of type str", id="on_opened-str-out"),
    pytest.param(Echo(), {"codec": StrEncoder()}, r"StrEncoder.encode\(\) returned str", id="encode-str"),
]


@pytest.mark.parametrize(("handler", "options", "match"), CASES)
def test_a_refused_result_fails_the_test(handler: Any, options: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match) as info:
        with serve_in_background(handler, **options) as srv:
            poke(srv)
            wait_for_errors(srv)
    notes = getattr(info.value, "__notes__", [""])
    assert "returned by" in notes[0] and srv.proto_addr in notes[0], notes


def test_a_tick_returning_a_float_fails_the_test() -> None:
    with pytest.raises(TypeError, match=r"tick\(\) must return a tuple \(delay_seconds, Action\), got float"):
        with serve_in_background(FloatTick(), ticker=True) as srv:
            wait_for_errors(srv)


def test_the_engine_still_closes_the_connection_and_goes_on() -> None:
    """Recording changes nothing for the server: the connection is closed, the next one served."""
    with serve_in_background(BareBytes()) as srv:
        for _ in range(2):
            with socket.create_connection(srv.addr, timeout=T) as s:
                s.sendall(b"x")
                assert s.recv(16) == b""
        wait_for_errors(srv, 2)
        errors = srv.take_errors()  # expected here: consumed, so leaving the block raises nothing
    assert [type(e) for e in errors] == [TypeError, TypeError]


def test_raise_errors_false_keeps_them_for_the_test() -> None:
    srv = serve_in_background(StrOut(), raise_errors=False)
    try:
        assert not srv.raises_errors
        poke(srv)
        wait_for_errors(srv)
    finally:
        srv.stop()  # raises nothing
    assert [str(e) for e in srv.errors] == ["react() returned data of type str; it must be bytes-like or None"]


def test_a_good_handler_records_nothing() -> None:
    """The checks do not fire on valid results (bytes, bytearray, memoryview, None; any action)."""

    class Valid(reactor.EventServer):
        def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
            return bytearray(b"hi "), Action.NONE

        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            assert frame is not None
            return memoryview(frame), Action.CLOSE if frame.endswith(b"!") else Action.NONE

    with serve_in_background(Valid(), ticker=False) as srv:
        with socket.create_connection(srv.addr, timeout=T) as s:
            s.sendall(b"bye!")
            data = b""
            while chunk := s.recv(64):
                data += chunk
        assert data == b"hi bye!"
        assert srv.errors == []


def test_the_loops_and_the_proxies_share_one_rule() -> None:
    """The engine's loops check results with the same functions reactor.testing uses (no copy of the rule)."""
    from reactor import eventloop, handler
    from reactor.testing import proxies

    for name in ("result_error", "output_error", "tick_result"):
        assert getattr(eventloop, name) is getattr(handler, name), name
        assert getattr(proxies, name) is getattr(handler, name), name
    assert handler.result_error("react", (b"x", Action.NONE)) is None
    assert isinstance(handler.result_error("react", b"x"), TypeError)
    assert handler.output_error("react", "x") is not None and handler.output_error("react", None) is None
    assert handler.tick_result((1, Action.NONE)) == (1.0, Action.NONE)
    with pytest.raises(TypeError, match="not a number"):
        handler.tick_result(("soon", Action.NONE))


def test_a_refused_result_fails_a_plugin_test(pytester: pytest.Pytester) -> None:
    """Through the plugin's fixtures: the test that provoked it is reported failed, with the TypeError."""
    from importlib.metadata import entry_points

    installed = any(ep.value == "reactor.pytest_plugin" for ep in entry_points(group="pytest11"))
    pytester.makepyfile(
        """
        import socket

        import reactor


        class Forgetful(reactor.EventServer):
            def react(self, frame, c):
                return frame.upper()


        def test_forgetful(reactor_server):
            srv = reactor_server(Forgetful())
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"hi")
                assert s.recv(8) == b""
        """
    )
    args = () if installed else ("-p", "reactor.pytest_plugin")
    result = pytester.runpytest(*args, "-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TypeError: react() must return a tuple (bytes | None, Action), got bytes b'HI'*"])
