"""reactor.testing: the background server and the ready-made handlers, through real sockets.

No mocks: every test starts a real server with ``serve_in_background`` (or
the plugin's fixtures) and talks to it with stdlib sockets, every socket
has a timeout and every wait is bounded. The autouse ``no_leaks`` fixture
of conftest.py checks that stopping joined every thread and closed every fd.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from importlib.metadata import entry_points
from typing import Any

import pytest

import reactor
from netsupport import has_ipv6_loopback, recv_until_eof
from reactor import Action
from reactor.testing import (
    DEFAULT_GARBAGE,
    BackgroundServer,
    EchoHandler,
    Event,
    FaultHandler,
    HTTPHandler,
    HTTPRequest,
    RecordingHandler,
    ScriptedHandler,
    WaitTimeout,
    serve_in_background,
)

# The fixtures at the end of this file come from the plugin. Once the pytest11
# entry point is installed pytest loads it by itself, and registering the same
# module a second time under another name would be an error.
if not any(ep.value == "reactor.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["reactor.pytest_plugin"]

T = 2.0  # socket timeout


@pytest.fixture(autouse=True)
def _quiet_reactor_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Handler exceptions are logged by the loops (logger.exception) on purpose;
    # keep them in the captured log only.
    caplog.set_level(logging.CRITICAL + 1, logger="reactor")


def connect(srv: BackgroundServer, timeout: float = T) -> socket.socket:
    return socket.create_connection(srv.addr, timeout=timeout)


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"EOF after {data!r}, wanted {n} bytes"
        data += chunk
    return data




# --- serve_in_background ---------------------------------------------------------------------------
def test_context_manager_echo_and_addresses() -> None:
    with serve_in_background(EchoHandler()) as srv:
        assert srv.running
        assert srv.host == "127.0.0.1"
        assert isinstance(srv.port, int) and srv.port > 0
        assert srv.addr == ("127.0.0.1", srv.port)
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.proto_addr == f"tcp://127.0.0.1:{srv.port}"
        assert isinstance(srv.server, reactor.Server)
        assert srv.server.addr == srv.addr
        with connect(srv) as s:
            s.sendall(b"ping")
            assert recv_exactly(s, 4) == b"ping"
        assert "running" in repr(srv)
    assert not srv.running
    assert "stopped" in repr(srv)


def test_start_is_accepting_at_once() -> None:
    """The listener is bound and listening when serve_in_background returns."""
    srv = serve_in_background(EchoHandler())
    try:
        with connect(srv) as s:
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"x"
    finally:
        srv.stop()


def test_usable_without_with_and_stop_idempotent() -> None:
    srv = serve_in_background(EchoHandler(), "tcp://127.0.0.1:0", num_event_loop=2)
    with connect(srv) as s:
        s.sendall(b"abc")
        assert recv_exactly(s, 3) == b"abc"
    srv.stop()
    assert not srv.running
    srv.stop()
    srv.stop(timeout=0.1)
    srv.close()
    with pytest.raises(OSError):
        socket.create_connection(srv.addr, timeout=T).close()


def test_stop_inside_with_then_exit() -> None:
    with serve_in_background(EchoHandler()) as srv:
        srv.stop()
        assert not srv.running
    assert not srv.running


def test_connections_snapshot() -> None:
    with serve_in_background(RecordingHandler()) as srv:
        assert srv.connections == []
        a, b = connect(srv), connect(srv)
        srv.handler.wait_for_connections(2)
        conns = srv.connections
        assert len(conns) == 2 and all(isinstance(c, reactor.Conn) and c.opened for c in conns)
        a.close()
        srv.handler.wait_closed(1)
        assert len(srv.connections) == 1
        b.close()
        srv.handler.wait_closed(2)
        assert srv.connections == []


def test_handler_attributes_are_reachable_through_the_server() -> None:
    with serve_in_background(RecordingHandler()) as srv:
        with connect(srv) as s:
            s.sendall(b"via getattr")
        srv.assert_received(b"via getattr")  # srv.handler.assert_received
        with pytest.raises(AttributeError, match="no_such_thing"):
            srv.no_such_thing  # noqa: B018


class Boom(reactor.EventServer):
    def __init__(self, exc: type[Exception] = ValueError) -> None:
        self.exc = exc

    def react(self, frame: bytes | None, c: reactor.Conn) -> Any:
        raise self.exc(f"boom on {frame!r}")


def test_callback_exception_reraised_on_exit() -> None:
    with pytest.raises(ValueError, match="boom on b'hi'") as info:
        with serve_in_background(Boom()) as srv:
            with connect(srv) as s:
                s.sendall(b"hi")
                assert recv_until_eof(s) == b""  # the loop closed only this connection
            assert srv.running  # ...and the server goes on
            with connect(srv) as s2:
                s2.sendall(b"hi")
                assert recv_until_eof(s2) == b""
    notes = getattr(info.value, "__notes__", [])
    if hasattr(info.value, "add_note"):
        assert any("react()" in n and "reactor-loop-" in n for n in notes), notes
        assert any("1 more callback exception" in n for n in notes), notes
    assert not srv.running


def test_several_exceptions_first_raised_with_a_note() -> None:
    srv = serve_in_background(Boom())
    for i in range(3):
        with connect(srv) as s:
            s.sendall(b"%d" % i)
            assert recv_until_eof(s) == b""
    with pytest.raises(ValueError, match="boom on b'0'") as info:
        srv.stop()
    if hasattr(info.value, "add_note"):
        assert any("2 more callback exception(s)" in n for n in info.value.__notes__)
    srv.stop()  # raised once only


def test_callback_exception_chained_after_the_block_exception() -> None:
    with pytest.raises(ValueError) as info:
        with serve_in_background(Boom()) as srv:
            with connect(srv) as s:
                s.sendall(b"x")
                assert recv_until_eof(s) == b""
            raise KeyError("the test's own failure")
    assert isinstance(info.value.__context__, KeyError)


def test_take_errors_consumes_them() -> None:
    with serve_in_background(Boom(RuntimeError)) as srv:
        with connect(srv) as s:
            s.sendall(b"x")
            assert recv_until_eof(s) == b""
        errors = srv.errors
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert [type(e) for e in srv.take_errors()] == [RuntimeError]
        assert srv.errors == []


class AllCallbacks(reactor.EventServer):
    """Raises from whichever callback is named."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.calls: list[str] = []

    def _maybe(self, name: str) -> None:
        self.calls.append(name)
        if name == self.where:
            raise LookupError(f"from {name}")

    def on_opened(self, c: reactor.Conn) -> Any:
        self._maybe("on_opened")
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Any:
        self._maybe("on_closed")
        return Action.NONE

    def pre_write(self, c: reactor.Conn) -> None:
        self._maybe("pre_write")

    def after_write(self, c: reactor.Conn, data: bytes) -> None:
        self._maybe("after_write")

    def react(self, frame: bytes | None, c: reactor.Conn) -> Any:
        self._maybe("react")
        return frame, Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        self._maybe("on_shutdown")


@pytest.mark.parametrize("where", ["on_opened", "on_closed", "pre_write", "after_write", "react", "on_shutdown"])
def test_every_callback_is_watched(where: str) -> None:
    handler = AllCallbacks(where)
    with pytest.raises(LookupError, match=f"from {where}") as info:
        with serve_in_background(handler) as srv:
            with connect(srv) as s:
                s.sendall(b"x")
                try:
                    s.recv(1)
                except OSError:
                    pass
            handler_done = time.monotonic() + T
            while "on_closed" not in handler.calls and time.monotonic() < handler_done:
                time.sleep(0.005)
    if hasattr(info.value, "add_note"):
        assert any(f"{where}()" in n for n in info.value.__notes__)


def test_tick_exception_is_recorded() -> None:
    class BadTick(reactor.EventServer):
        def __init__(self) -> None:
            self.ticked = threading.Event()

        def tick(self) -> Any:
            self.ticked.set()
            raise OSError("tick failed")

    handler = BadTick()
    with pytest.raises(OSError, match="tick failed"):
        with serve_in_background(handler, ticker=True):
            assert handler.ticked.wait(T)


def test_pre_write_after_write_only_forwarded_when_defined() -> None:
    """The proxy keeps the engine's fast path: no pre_write/after_write unless the handler has them."""
    with serve_in_background(EchoHandler()) as srv:
        with connect(srv) as s:  # once a connection is served, the loops exist
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"x"
        loop = srv.server._engine.lb.event_loops[0]
        assert loop.pre_write is None and loop.after_write is None
    handler = AllCallbacks("none")
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"x"
    assert "pre_write" in handler.calls and "after_write" in handler.calls


def test_codec_errors_are_recorded_but_codec_errors_proper_are_not() -> None:
    class BadCodec:
        def encode(self, c: reactor.Conn, data: bytes) -> bytes:
            return data

        def decode(self, c: reactor.Conn) -> bytes | None:
            data = c.next(-1)
            if data == b"bad":
                raise reactor.CodecError("malformed frame: a protocol error, not a bug")
            if data == b"bug":
                raise IndexError("codec bug")
            return data or None

    with pytest.raises(IndexError, match="codec bug"):
        with serve_in_background(EchoHandler(), codec=BadCodec()) as srv:
            with connect(srv) as s:
                s.sendall(b"ok")
                assert recv_exactly(s, 2) == b"ok"
                s.sendall(b"bad")
                assert recv_until_eof(s) == b""
            assert srv.errors == []
            with connect(srv) as s:
                s.sendall(b"bug")
                assert recv_until_eof(s) == b""


def test_stop_from_a_callback_only_signals() -> None:
    class Quitter(reactor.EventServer):
        srv: BackgroundServer | None = None

        def react(self, frame: bytes | None, c: reactor.Conn) -> Any:
            assert self.srv is not None
            self.srv.stop()  # on a loop thread: must not join itself
            return b"bye", Action.NONE

    handler = Quitter()
    with serve_in_background(handler) as srv:
        handler.srv = srv
        with connect(srv) as s:
            s.sendall(b"quit")
            assert recv_until_eof(s) == b"bye"
        deadline = time.monotonic() + T
        while srv.running and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not srv.running


def test_bind_failure_raises_at_start() -> None:
    with serve_in_background(EchoHandler()) as first:
        with pytest.raises(OSError) as info:
            serve_in_background(EchoHandler(), first.proto_addr)
        assert info.value.errno == errno.EADDRINUSE


class BadInit(reactor.EventServer):
    def on_init_complete(self, server: reactor.Server) -> Any:
        raise RuntimeError("cannot init")


# serve() leaks one fd (the engine's reserve fd on /dev/null) when on_init_complete
# raises: see test_on_init_complete_exception_leaks_no_fd.
@pytest.mark.allow_leaks
def test_on_init_complete_exception_raises_at_start() -> None:
    with pytest.raises(RuntimeError, match="cannot init"):
        serve_in_background(BadInit())
    # No thread is left behind, whatever happens to that fd.
    assert not [t for t in threading.enumerate() if t.name.startswith(("reactor-", "reactor-testing"))]


def test_on_init_complete_exception_leaks_no_fd() -> None:
    import os

    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError):
        serve_in_background(BadInit())
    leaked = {fd for fd in set(os.listdir("/proc/self/fd")) - before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, [os.readlink(f"/proc/self/fd/{fd}") for fd in leaked]


def test_shutdown_from_on_init_complete() -> None:
    class NoThanks(reactor.EventServer):
        def on_init_complete(self, server: reactor.Server) -> Any:
            return Action.SHUTDOWN

    srv = serve_in_background(NoThanks())
    srv.stop()
    assert not srv.running


def test_handler_without_callbacks_is_refused() -> None:
    with pytest.raises(TypeError, match="implements none of the callbacks"):
        serve_in_background(object())


def test_duck_typed_handler_gets_defaults() -> None:
    class OnlyReact:
        def react(self, frame: bytes | None, c: reactor.Conn) -> Any:
            return frame[::-1] if frame else None, Action.NONE

    with serve_in_background(OnlyReact()) as srv:
        with connect(srv) as s:
            s.sendall(b"abc")
            assert recv_exactly(s, 3) == b"cba"


def test_unix_variant(tmp_path: Any) -> None:
    path = str(tmp_path / "t.sock")
    with serve_in_background(EchoHandler(), f"unix://{path}") as srv:
        assert srv.addr == path
        for name in ("host", "port", "url"):  # typed str/int/str: a Unix server has none, and says so
            with pytest.raises(ValueError, match="Unix socket server"):
                getattr(srv, name)
        assert srv.proto_addr == f"unix://{path}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(T)
            s.connect(srv.addr)
            s.sendall(b"over unix")
            assert recv_exactly(s, 9) == b"over unix"


def test_udp_variant() -> None:
    with serve_in_background(EchoHandler(), "udp://127.0.0.1:0") as srv:
        assert srv.port and srv.host == "127.0.0.1"
        with pytest.raises(ValueError, match="UDP server"):
            _ = srv.url
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(T)
            s.sendto(b"dgram", srv.addr)
            assert s.recvfrom(64) == (b"dgram", srv.addr)
        assert srv.connections == []  # UDP has no connections


def test_udp_recording_by_sender() -> None:
    with serve_in_background(RecordingHandler(), "udp://127.0.0.1:0") as srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM
        ) as b:
            a.sendto(b"a1", srv.addr)
            srv.handler.wait_for(lambda: srv.handler.received(0) == b"a1")
            b.sendto(b"b1", srv.addr)
            srv.handler.wait_for(lambda: srv.handler.received(1) == b"b1")
            a.sendto(b"a2", srv.addr)
            srv.handler.wait_for(lambda: srv.handler.received(0) == b"a1a2")
        assert srv.handler.received_by_connection() == [b"a1a2", b"b1"]


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_tcp6_variant() -> None:
    with serve_in_background(EchoHandler(), "tcp6://[::1]:0") as srv:
        assert srv.host == "::1"
        assert srv.url == f"http://[::1]:{srv.port}"
        assert srv.proto_addr == f"tcp6://[::1]:{srv.port}"
        with socket.create_connection((srv.host, srv.port), timeout=T) as s:
            s.sendall(b"v6")
            assert recv_exactly(s, 2) == b"v6"


# --- RecordingHandler ----------------------------------------------------------------------------
def test_recording_handler_records_everything() -> None:
    handler = RecordingHandler()
    with serve_in_background(handler) as srv:
        with connect(srv) as a:
            a.sendall(b"hello ")
            handler.wait_for(lambda: handler.received(0) == b"hello ")
            with connect(srv) as b:
                b.sendall(b"world")
                handler.wait_for(lambda: handler.received(1) == b"world")
            a.sendall(b"again")
            handler.assert_received(b"hello againworld")
        handler.wait_closed(2)
    assert handler.received(0) == b"hello again"
    assert handler.received(1) == b"world"
    assert handler.received(5) == b""
    assert handler.opened == 2 and handler.closed == 2 and handler.open_connections == 0
    events = handler.events
    assert events[0] == Event("opened", 0)
    assert [e.kind for e in events if e.conn == 1] == ["opened", "data", "closed"]
    assert b"".join(e.data for e in events if e.conn == 0) == b"hello again"


def test_recording_handler_echo_and_reply() -> None:
    with serve_in_background(RecordingHandler(echo=True)) as srv:
        with connect(srv) as s:
            s.sendall(b"echo me")
            assert recv_exactly(s, 7) == b"echo me"
    with serve_in_background(RecordingHandler(reply=b"ack")) as srv:
        with connect(srv) as s:
            s.sendall(b"x")
            assert recv_exactly(s, 3) == b"ack"


def test_recording_wait_for_timeout_is_clear() -> None:
    handler = RecordingHandler()
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"partial")
            handler.assert_received(b"partial")

            def everything_arrived() -> bool:
                return handler.received() == b"partial and more"

            started = time.monotonic()
            with pytest.raises(WaitTimeout) as info:
                handler.wait_for(everything_arrived, timeout=0.1)
            assert time.monotonic() - started < 1.0
            assert isinstance(info.value, AssertionError) and isinstance(info.value, TimeoutError)
            message = str(info.value)
            assert "everything_arrived" in message and "0.1 s" in message and "b'partial'" in message
            with pytest.raises(TimeoutError, match="2 connection"):
                handler.wait_for_connections(2, timeout=0.05)


def test_recording_assert_received_mismatch() -> None:
    handler = RecordingHandler()
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"actual bytes")
            with pytest.raises(AssertionError, match=r"expected the server to receive b'other'.*b'actual bytes'"):
                handler.assert_received(b"other", timeout=0.5)
            with pytest.raises(AssertionError, match="it received b'actual bytes'"):
                handler.assert_received(b"actual bytes and more", timeout=0.05)


def test_wait_for_returns_the_predicate_value() -> None:
    handler = RecordingHandler()
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"xyz")
            assert handler.wait_for(lambda: handler.received() or None) == b"xyz"


# --- ScriptedHandler ----------------------------------------------------------------------------------
SCRIPT = [(b"HELLO\r\n", b"HI\r\n"), (b"GET key\r\n", b"VALUE 42\r\n"), (b"BYE\r\n", b"")]


def test_scripted_success_with_split_input() -> None:
    handler = ScriptedHandler(SCRIPT, greeting=b"READY\r\n")
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            assert recv_exactly(s, 7) == b"READY\r\n"
            for piece in (b"HEL", b"LO", b"\r\nGET k"):
                s.sendall(piece)
                time.sleep(0.01)
            assert recv_exactly(s, 4) == b"HI\r\n"
            s.sendall(b"ey\r\nBYE\r\n")
            assert recv_exactly(s, 10) == b"VALUE 42\r\n"
            handler.wait_complete(1)
        with connect(srv) as s2:  # every connection walks the script from the start
            assert recv_exactly(s2, 7) == b"READY\r\n"
            s2.sendall(b"".join(step for step, _ in SCRIPT))
            assert recv_exactly(s2, 14) == b"HI\r\nVALUE 42\r\n"
            handler.wait_complete(2)
    assert handler.completed == 2 and handler.errors == []


def test_scripted_close_when_done() -> None:
    with serve_in_background(ScriptedHandler([(b"ping", b"pong")], close_when_done=True)) as srv:
        with connect(srv) as s:
            s.sendall(b"ping")
            assert recv_until_eof(s) == b"pong"


def test_scripted_mismatch_surfaces_and_closes() -> None:
    handler = ScriptedHandler(SCRIPT)
    with pytest.raises(AssertionError, match=r"connection 0, step 1: expected b'GET key\\r\\n', got b'GET kex") as info:
        with serve_in_background(handler) as srv:
            with connect(srv) as s:
                s.sendall(b"HELLO\r\n")
                assert recv_exactly(s, 4) == b"HI\r\n"
                s.sendall(b"GET kex\r\n")
                assert recv_until_eof(s) == b""  # closed by the loop
    assert handler.errors == [info.value]


def test_scripted_wrong_prefix_fails_early_and_input_after_the_end_fails() -> None:
    handler = ScriptedHandler([(b"LONG EXPECTED LINE\n", b"ok")])
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"LX")  # wrong before the expected bytes are complete
            assert recv_until_eof(s) == b""
        with connect(srv) as s:
            s.sendall(b"LONG EXPECTED LINE\nextra")
            assert recv_until_eof(s) == b"ok"
        errors = srv.take_errors()
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        "connection 0, step 0: expected b'LONG EXPECTED LINE\\n', got b'LX'",
        "connection 1, step 1: input after the last step: b'extra'",
    ]
    with pytest.raises(ValueError):
        ScriptedHandler([(b"", b"x")])


# --- HTTPHandler --------------------------------------------------------------------------------------
def read_http_responses(s: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    buf = b""
    out = []
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            lines = buf[:end].decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(buf) >= end + 4 + length:
                out.append((status, headers, buf[end + 4 : end + 4 + length]))
                buf = buf[end + 4 + length :]
                continue
        chunk = s.recv(65536)
        assert chunk, f"EOF after {len(out)} responses"
        buf += chunk
    return out


def test_http_routes_404_and_recording() -> None:
    handler = HTTPHandler({("GET", "/"): (200, {"X-Test": "1"}, b"root"), ("get", "/plain"): b"just a body"})
    handler.route("GET", "/text", "unicode \u2713")
    with serve_in_background(handler) as srv:
        with urllib.request.urlopen(srv.url + "/", timeout=T) as r:
            assert (r.status, r.read(), r.headers["X-Test"]) == (200, b"root", "1")
        with urllib.request.urlopen(srv.url + "/plain", timeout=T) as r:
            assert r.read() == b"just a body"
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        with urllib.request.urlopen(srv.url + "/text", timeout=T) as r:
            assert r.read().decode() == "unicode \u2713"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(srv.url + "/nope?x=1", timeout=T)
        assert info.value.code == 404 and info.value.read() == b"Not Found"
        info.value.close()
        body = b"name=value&other=2"
        req = urllib.request.Request(srv.url + "/form", data=body, headers={"X-Custom": "abc"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=T)
        info.value.close()
        requests = handler.wait_for_requests(5)
    assert [(r.method, r.path) for r in requests] == [
        ("GET", "/"),
        ("GET", "/plain"),
        ("GET", "/text"),
        ("GET", "/nope"),
        ("POST", "/form"),
    ]
    nope, post = requests[3], requests[4]
    assert nope.query == "x=1" and nope.target == "/nope?x=1" and nope.body == b""
    assert post.body == body and post.version == "HTTP/1.1"
    assert post.headers["x-custom"] == "abc" and post.headers["content-length"] == str(len(body))
    assert isinstance(post, HTTPRequest)


def test_http_pipelining_in_order() -> None:
    handler = HTTPHandler()
    handler.route("GET", "/a", b"AAA").route("GET", "/b", b"B", status=202, headers=[("X-B", "yes")])
    handler.route("POST", "/echo", lambda req: (200, {"X-Len": str(len(req.body))}, req.body.upper()))
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HT"  # a partial fifth request
            )
            responses = read_http_responses(s, 4)
            assert [(st, body) for st, _, body in responses] == [
                (200, b"AAA"),
                (200, b"HELLO"),
                (404, b"Not Found"),
                (202, b"B"),
            ]
            assert responses[1][1]["x-len"] == "5" and responses[3][1]["x-b"] == "yes"
            s.sendall(b"TP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            rest = recv_until_eof(s)
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nAAA")
            assert b"Connection: close" in rest
    assert len(handler.requests) == 5


def test_http_json_head_continue_and_bad_requests() -> None:
    handler = HTTPHandler(default=(418, {"X-Teapot": "1"}, b"short and stout"))
    handler.route("GET", "/j", json={"a": [1, 2]}, status=201)
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"GET /j HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_http_responses(s, 1)[0]
            assert status == 201 and headers["content-type"] == "application/json"
            assert json.loads(body) == {"a": [1, 2]}
            # HEAD: the GET route's headers, Content-Length included, and no body
            s.sendall(b"HEAD /j HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += s.recv(1)
            assert head.startswith(b"HTTP/1.1 201 Created\r\n") and b"Content-Length: 13\r\n" in head
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_http_responses(s, 1)[0]
            assert (status, headers["x-teapot"], body) == (418, "1", b"short and stout")
            # Expect: 100-continue gets an interim answer before the body is sent
            s.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
            assert recv_exactly(s, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(b"abc")
            assert read_http_responses(s, 1)[0][0] == 418
        for bad, status in [
            (b"NONSENSE\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host (RFC 9112 §3.2)
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        ]:
            with connect(srv) as s:
                s.sendall(bad)
                assert recv_until_eof(s).startswith(b"HTTP/1.1 %d " % status)
    assert handler.requests[-1].path == "/up" and handler.requests[-1].body == b"abc"


def test_http_1_0_closes() -> None:
    with serve_in_background(HTTPHandler({("GET", "/"): b"old"})) as srv:
        with connect(srv) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert recv_until_eof(s).endswith(b"\r\n\r\nold")


def test_http_route_function_exception_surfaces() -> None:
    def broken(req: HTTPRequest) -> bytes:
        raise KeyError("route bug")

    with pytest.raises(KeyError, match="route bug"):
        with serve_in_background(HTTPHandler({("GET", "/"): broken})) as srv:
            with connect(srv) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert recv_until_eof(s) == b""


# --- FaultHandler ---------------------------------------------------------------------------------------
def test_fault_close_after_n_bytes() -> None:
    with serve_in_background(FaultHandler.close_after(5)) as srv:
        with connect(srv) as s:
            s.sendall(b"0123456789")
            assert recv_until_eof(s) == b"01234"
        with connect(srv) as s:  # counted per connection, across several answers
            s.sendall(b"012")
            assert recv_exactly(s, 3) == b"012"
            s.sendall(b"345")
            assert recv_until_eof(s) == b"34"
    with serve_in_background(FaultHandler.close_after(3, response=b"RESPONSE")) as srv:
        with connect(srv) as s:
            s.sendall(b"?")
            assert recv_until_eof(s) == b"RES"
    with serve_in_background(FaultHandler.close_after(0)) as srv:
        with connect(srv) as s:
            assert recv_until_eof(s) == b""


def test_fault_reset() -> None:
    with serve_in_background(FaultHandler.reset()) as srv:
        with connect(srv) as s:
            s.sendall(b"request")
            with pytest.raises(ConnectionResetError):
                while s.recv(64):
                    pass


def test_fault_delay() -> None:
    with serve_in_background(FaultHandler.delay(0.15)) as srv:
        with connect(srv) as s:
            started = time.monotonic()
            s.sendall(b"slow")
            assert recv_exactly(s, 4) == b"slow"
            assert time.monotonic() - started >= 0.15
            # The loop never sleeps: another connection is served meanwhile.
            with serve_in_background(EchoHandler()):
                pass
        with connect(srv) as a, connect(srv) as b:
            started = time.monotonic()
            a.sendall(b"A")
            b.sendall(b"B")
            assert recv_exactly(a, 1) == b"A" and recv_exactly(b, 1) == b"B"
            assert time.monotonic() - started < 0.15 * 2  # delays overlap, not queue up


def test_fault_drip_one_byte_per_recv() -> None:
    with serve_in_background(FaultHandler.drip(interval=0.04, response=b"drip!")) as srv:
        with connect(srv) as s:
            started = time.monotonic()
            s.sendall(b"go")
            chunks = [s.recv(64) for _ in range(5)]
            assert chunks == [b"d", b"r", b"i", b"p", b"!"]
            assert time.monotonic() - started >= 0.04 * 4


def test_fault_never_answer() -> None:
    handler = FaultHandler.never_answer()
    with serve_in_background(handler) as srv:
        with connect(srv, timeout=0.2) as s:
            s.sendall(b"hello?")
            with pytest.raises(socket.timeout):
                s.recv(64)
            assert len(srv.connections) == 1  # still open


def test_fault_garbage() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with serve_in_background(FaultHandler.garbage()) as srv:
        with connect(srv) as s:
            s.sendall(request)
            data = recv_exactly(s, len(DEFAULT_GARBAGE))
            assert data != request and data == DEFAULT_GARBAGE
    with serve_in_background(FaultHandler.garbage(b"\x00\x01")) as srv:
        with connect(srv) as s:
            s.sendall(b"?")
            assert recv_exactly(s, 2) == b"\x00\x01"


def test_fault_handler_validation_and_stop_with_pending_timers() -> None:
    with pytest.raises(ValueError, match="unknown FaultHandler mode"):
        FaultHandler("explode")
    with pytest.raises(ValueError):
        FaultHandler.delay(-1)
    assert "drip" in repr(FaultHandler.drip())
    handler = FaultHandler.delay(30)  # stopping must not wait for the timer
    with serve_in_background(handler) as srv:
        with connect(srv) as s:
            s.sendall(b"x")
            time.sleep(0.02)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    # reusable afterwards
    with serve_in_background(handler.__class__.delay(0.01)) as srv:
        with connect(srv) as s:
            s.sendall(b"y")
            assert recv_exactly(s, 1) == b"y"


# --- the plugin's fixtures, under this repo's conftest (no_leaks) --------------------------------------
def test_fixture_echo(echo_server: BackgroundServer) -> None:
    with connect(echo_server) as s:
        s.sendall(b"hi")
        assert recv_exactly(s, 2) == b"hi"


def test_fixture_recording(recording_server: BackgroundServer) -> None:
    with connect(recording_server) as s:
        s.sendall(b"log line\n")
    recording_server.handler.assert_received(b"log line\n")


def test_fixture_http(http_server: BackgroundServer) -> None:
    http_server.route("GET", "/health", b"ok")
    with urllib.request.urlopen(http_server.url + "/health", timeout=T) as r:
        assert r.read() == b"ok"
    [request] = http_server.handler.requests
    assert request.headers["host"] == f"127.0.0.1:{http_server.port}"


@pytest.mark.parametrize("network", ["tcp", "udp", "unix"] + (["tcp6"] if has_ipv6_loopback() else []))
def test_fixture_reactor_server_networks(reactor_server: Any, network: str, tmp_path: Any) -> None:
    srv = reactor_server(EchoHandler(), network)
    if network == "unix":
        assert srv.addr.startswith(str(tmp_path)) or srv.addr.startswith("/tmp/")
        family, kind = socket.AF_UNIX, socket.SOCK_STREAM
    else:
        family = socket.AF_INET6 if network == "tcp6" else socket.AF_INET
        kind = socket.SOCK_DGRAM if network == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        s.settimeout(T)
        s.connect(srv.addr)
        s.sendall(b"net")
        assert s.recv(16) == b"net"


@pytest.mark.parametrize("echo_server", ["unix"], indirect=True)
def test_fixture_indirect_network(echo_server: BackgroundServer) -> None:
    assert echo_server.network == "unix" and echo_server.proto_addr.startswith("unix://")


def test_fixture_free_port(free_port: int) -> None:
    assert 0 < free_port < 65536
    with serve_in_background(EchoHandler(), f"tcp://127.0.0.1:{free_port}") as srv:
        assert srv.port == free_port


def test_fixture_unknown_network(reactor_server: Any) -> None:
    with pytest.raises(ValueError, match="unknown network 'sctp'"):
        reactor_server(EchoHandler(), "sctp")
    srv = reactor_server(EchoHandler(), "tcp://127.0.0.1:0")
    assert srv.port
