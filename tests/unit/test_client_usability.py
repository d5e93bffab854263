"""reactor.Client for a new user (issue 14): start it, address it like serve(), get an answer back.

* Used before ``start()`` it raises ``ClientNotStartedError``, a
  ``RuntimeError`` (and still the ``ServerInShutdownError`` it was).
* ``dial``/``connect`` take ``serve()``'s ``proto://addr`` form, ``(host, port)``
  tuples and gnet's ``dial(network, address)`` (even with ``tcp://`` in the
  address, which used to fail with "IPv6 hosts need [brackets]").
* ``Client()`` without a handler gives blocking connections:
  ``connect(addr).request(data)`` and ``client.request(addr, data)``.
* Wrong types are refused up front with a ``TypeError`` saying what to pass.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import reactor
from netsupport import has_ipv6_loopback
from reactor import Action, Conn
from reactor.testing import EchoHandler, FaultHandler, RecordingHandler, serve_in_background

T = 3.0


class Quiet(reactor.EventServer):
    """A client handler that does nothing."""


def test_not_started_is_a_runtime_error_saying_what_to_do() -> None:
    with serve_in_background(EchoHandler()) as srv:
        client = reactor.Client(Quiet())
        with pytest.raises(reactor.ClientNotStartedError, match=r"call client.start\(\) first") as info:
            client.dial("tcp", f"127.0.0.1:{srv.port}")  # the README's old one-liner
        assert isinstance(info.value, RuntimeError)
        assert isinstance(info.value, reactor.ServerInShutdownError)  # caught as before
        with reactor.Client(Quiet()) as started:  # the context manager starts it
            c = started.dial(srv.proto_addr)
            assert c.opened


def test_every_address_form_reaches_the_server() -> None:
    with serve_in_background(EchoHandler()) as srv, reactor.Client() as client:
        forms: list[Any] = [
            srv.proto_addr,  # "tcp://127.0.0.1:port", serve()'s form
            f"127.0.0.1:{srv.port}",  # no scheme: tcp, as serve()
            (srv.host, srv.port),
            srv.addr,  # what the socket module uses
            f"tcp4://127.0.0.1:{srv.port}",
        ]
        for form in forms:
            with client.connect(form) as conn:
                assert conn.request(b"ping %r" % (form,)) == b"ping %r" % (form,)
        # gnet's two-argument form, plain and with the scheme repeated
        for c in (client.dial("tcp", f"127.0.0.1:{srv.port}"), client.dial("tcp", srv.proto_addr),
                  client.dial("tcp", (srv.host, srv.port))):
            assert c.opened
            c.close()


def test_unix_and_udp_addresses(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    with serve_in_background(EchoHandler(), f"unix://{path}") as unix_srv, \
            serve_in_background(EchoHandler(), "udp://127.0.0.1:0") as udp_srv, reactor.Client() as client:
        assert client.request(f"unix://{path}", b"over unix") == b"over unix"
        with client.connect(udp_srv.proto_addr) as conn:
            assert conn.request(b"datagram") == b"datagram"
        assert unix_srv.running and udp_srv.running


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_tuple_and_url() -> None:
    with serve_in_background(EchoHandler(), "tcp6://[::1]:0") as srv, reactor.Client() as client:
        assert client.request(srv.addr, b"six") == b"six"  # ("::1", port, 0, 0)
        assert client.request(f"tcp6://[::1]:{srv.port}", b"six") == b"six"


def test_request_with_a_codec() -> None:
    class Upper(reactor.EventServer):
        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            return (frame or b"").upper(), Action.NONE

    with serve_in_background(Upper(), codec=reactor.LineBasedFrameCodec()) as srv:
        with reactor.Client(codec=reactor.LineBasedFrameCodec()) as client:
            assert client.request(srv.proto_addr, b"hello") == b"HELLO"
            with client.connect(srv.addr) as conn:
                conn.send(b"one")
                conn.send(b"two")
                assert [conn.recv(), conn.recv()] == [b"ONE", b"TWO"]


def test_blocking_conn_timeout_eof_and_reset() -> None:
    with serve_in_background(RecordingHandler()) as silent, reactor.Client() as client:
        with client.connect(silent.addr, timeout=0.05) as conn:
            with pytest.raises(TimeoutError):
                conn.recv()
    with serve_in_background(FaultHandler.close_after(4)) as closing, reactor.Client() as client:
        conn = client.connect(closing.addr)
        conn.send(b"hello world")
        data = b""
        with pytest.raises(EOFError):
            while True:
                data += conn.recv()
        assert data == b"hell" and conn.closed
        with pytest.raises(EOFError):
            conn.send(b"more")
    with serve_in_background(FaultHandler.reset()) as resetting, reactor.Client() as client:
        conn = client.connect(resetting.addr)
        conn.send(b"hello")
        with pytest.raises(ConnectionResetError):
            conn.recv()


def test_dial_errors_say_what_is_wrong() -> None:
    with reactor.Client(Quiet()) as client:
        with pytest.raises(reactor.UnsupportedProtocolError, match="the address says 'tcp'"):
            client.dial("udp", "tcp://127.0.0.1:9")
        with pytest.raises(TypeError, match="needs an address"):
            client.dial("tcp")
        with pytest.raises(TypeError, match=r"\(host, port\) tuple"):
            client.dial(9000)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="built without a handler"):
            client.connect("tcp://127.0.0.1:9")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda: reactor.Client(Quiet), r"pass Quiet\(\) instead of Quiet", id="handler-class"),
        pytest.param(lambda: reactor.Client(object()), "implements none of the callbacks", id="not-a-handler"),
        pytest.param(lambda: reactor.Client(Quiet(), codec=reactor.LineBasedFrameCodec),
                     r"pass codec=LineBasedFrameCodec\(\)", id="codec-class"),
    ],
)
def test_client_refuses_wrong_types(make: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        make()


def test_connect_refused_is_prompt() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connect is refused
        with reactor.Client() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port), timeout=T)
