"""A typed test module, written as a user would: ``mypy --strict`` must accept it, and pytest runs it.

What used to need ``assert srv.port is not None`` or ``cast`` (issue 14):
``host``/``port``/``url`` of a TCP server, the handler's own type through
``srv.handler``, the option keywords, the client's ``request``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typed_server import Upper

import reactor
from reactor.testing import (
    BackgroundServer,
    EchoHandler,
    RecordingHandler,
    ServerFactory,
    serve_in_background,
)


def read_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(64)
        if not chunk:
            break
        data += chunk
    return data


def test_upper_through_the_factory(reactor_server: ServerFactory) -> None:
    srv = reactor_server(Upper(), codec=reactor.LineBasedFrameCodec(), num_event_loop=2)
    host: str = srv.host
    port: int = srv.port
    with socket.create_connection((host, port), timeout=2) as s:
        assert read_line(s) == b"ready\n"
        s.sendall(b"hello\n")
        assert read_line(s) == b"HELLO\n"
    handler: Upper = srv.handler  # the handler's own type, not Any
    assert handler.lines == 1


def test_fixtures_are_typed(echo_server: BackgroundServer[EchoHandler]) -> None:
    url: str = echo_server.url
    assert url == f"http://127.0.0.1:{echo_server.port}"
    with socket.create_connection(echo_server.addr, timeout=2) as s:
        s.sendall(b"typed")
        assert s.recv(5) == b"typed"


def test_serve_in_background_keeps_the_handler_type() -> None:
    with serve_in_background(RecordingHandler(), tcp_keepalive=5, raise_errors=True) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=2) as s:
            s.sendall(b"x")
        srv.handler.assert_received(b"x")  # RecordingHandler's own method, type-checked


def test_unix_servers_have_no_port(tmp_path: Path) -> None:
    with serve_in_background(EchoHandler(), f"unix://{tmp_path}/typed.sock") as srv:
        with pytest.raises(ValueError, match="Unix socket server"):
            print(srv.port)


def test_client_request() -> None:
    with serve_in_background(EchoHandler()) as srv, reactor.Client(dial_timeout=2.0) as client:
        answer: bytes = client.request((srv.host, srv.port), b"ping", timeout=2)
        assert answer == b"ping"
        with client.connect(srv.proto_addr) as conn:
            assert conn.request(b"pong") == b"pong"

