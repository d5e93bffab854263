"""Hostile input: malformed HTTP, oversized headers and bodies, frames announcing gigabytes.

Against the HTTP example (reactor.examples.http: HTTPServer + HTTPCodec) and
the built-in codecs. Each hostile connection must get its error (a 4xx/5xx
answer, or a CodecError in ``on_closed``) and be closed promptly, the server
must buffer only a bounded amount for it, and a well-behaved client on the
same server is served byte-exact throughout.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

import reactor
from reactor import Action
from reactor.examples.http import BODY, MAX_HEADER, HTTPCodec, HTTPServer
from reliability_support import (
    Recorder,
    Sampler,
    Worker,
    read_until_closed,
    recv_exact,
    rss_bytes,
    settled_rss,
)

MiB = 1024 * 1024
READ_CAP = 64 * 1024  # the default read_buffer_cap: the most one read adds


def send_until_refused(sock: socket.socket, chunk: bytes, total: int, prefix: bytes = b"") -> tuple[int, str | None]:
    """Send ``prefix``, then ``chunk`` again and again up to ``total`` bytes, until the server cuts the
    connection: ``(bytes of chunk sent, the error's class name)``, or ``(sent, None)`` if all of it went."""
    sent = 0
    try:
        sock.sendall(prefix)
        while sent < total:
            sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError) as e:
        return sent, type(e).__name__
    return sent, None


class RecordingHTTP(HTTPServer, Recorder):
    """The example's handler, plus Recorder's bookkeeping of opens and closes."""

    def __init__(self) -> None:
        HTTPServer.__init__(self, quiet=True)
        Recorder.__init__(self)

    def on_init_complete(self, server: reactor.Server) -> Action:
        return HTTPServer.on_init_complete(self, server)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def read_response(sock: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
    """One complete HTTP/1.1 response (status, lower-cased headers, body), byte-exact per Content-Length."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"EOF inside a response head: {head!r}"
        head += chunk
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    body = recv_exact(sock, int(headers[b"content-length"]))
    return status, headers, body


def check_good_client(good: socket.socket, n: int = 3) -> None:
    """The well-behaved keep-alive client: n pipelined requests, n exact 200 answers."""
    good.sendall(GET * n)
    for _ in range(n):
        status, headers, body = read_response(good)
        assert (status, body) == (200, BODY)
        assert headers[b"server"] == b"reactor"
        assert b"connection" not in headers


BAD_REQUESTS = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),  # RFC 9110 §15.6.6: an unsupported major version
    (b"GET  / HTTP/1.1\r\n\r\n", 400),
    (b"\x00\xff\xfe\x01 / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 413),  # 2**63
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),  # chunked is decoded; gzip not
    (b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * (MAX_HEADER + 100) + b"\r\n\r\n", 431),
    (GET + b"BROKEN\r\n\r\n", 400),  # a good request first: its 200 goes out before the 400
]


BAD_REQUEST_IDS = [f"{i}-{s}" for i, (_, s) in enumerate(BAD_REQUESTS)]


@pytest.mark.parametrize(("request_bytes", "status"), BAD_REQUESTS, ids=BAD_REQUEST_IDS)
def test_http_bad_request_gets_its_status_and_a_close(request_bytes: bytes, status: int, start_server: Any,
                                                      socks: Any) -> None:
    h = RecordingHTTP()
    bg = start_server(h, codec=HTTPCodec())
    good = socks.connect(bg.addr)
    check_good_client(good)
    bad = socks.connect(bg.addr)
    bad_conn = h.conn_for(bad)
    t0 = time.monotonic()
    bad.sendall(request_bytes)
    data, how = read_until_closed(bad)
    assert time.monotonic() - t0 < 2.0
    if request_bytes.startswith(GET) and status != 200:
        ok = b"HTTP/1.1 200 OK\r\n"
        assert data.startswith(ok), data[:80]
        data = data[data.index(b"HTTP/1.1", 1):]
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:120]
    assert b"\r\nConnection: close\r\n" in data
    head, _, body = data.partition(b"\r\n\r\n")
    length_line = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    length = int(length_line.split(b":")[1])
    assert len(body) == length, "the error answer was cut short"
    assert how == "eof"
    assert h.error_of(bad_conn) is None  # the example closes on purpose: a clean close
    check_good_client(good)
    bg.stop()


@pytest.mark.timeout(60)
def test_http_10_mib_header_block_gets_431_with_bounded_buffering(start_server: Any, socks: Any) -> None:
    h = RecordingHTTP()
    bg = start_server(h, codec=HTTPCodec(), socket_recv_buffer=64 * 1024)
    good = socks.connect(bg.addr)
    check_good_client(good)
    baseline = settled_rss()
    bad = socks.connect(bg.addr, sndbuf=64 * 1024)
    bad_conn = h.conn_for(bad)
    with Sampler(bad_conn.inbound_buffered) as inbound, Sampler(rss_bytes, 0.005) as rss:
        sender = Worker(lambda: send_until_refused(bad, b"a" * (64 * 1024), 10 * MiB, b"GET / HTTP/1.1\r\nX-Huge: "),
                        "rel-huge-header")
        data, _how = read_until_closed(bad)
        sent, stopped_by = sender.result()
    assert data.startswith(b"HTTP/1.1 431 "), data[:120]
    # Refused after MAX_HEADER, not after 10 MiB: the sender was cut off early.
    assert stopped_by is not None and sent < 4 * MiB, (sent, stopped_by)
    assert inbound.peak <= MAX_HEADER + 4 + READ_CAP, f"buffered {inbound.peak} bytes of a refused header block"
    assert rss.peak - baseline < 16 * MiB, f"RSS grew by {(rss.peak - baseline) >> 20} MiB"
    assert h.error_of(bad_conn) is None
    check_good_client(good)
    bg.stop()


def test_http_content_length_2_pow_63_is_refused_without_waiting_for_the_body(start_server: Any,
                                                                              socks: Any) -> None:
    h = RecordingHTTP()
    bg = start_server(h, codec=HTTPCodec())
    bad = socks.connect(bg.addr)
    bad.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nsome body" % 2**63)
    status, headers, body = read_response(bad)
    assert status == 413 and headers[b"connection"] == b"close"
    assert b"9223372036854775808" in body
    assert bad.recv(1) == b""
    bg.stop()


# --- length-field frames announcing gigabytes ----------------------------------------------------
@pytest.mark.parametrize(
    ("field_length", "header_parts"),
    [
        (4, [b"\xff\xff\xff\xff"]),  # 4 GiB - 1
        (8, [(2**32).to_bytes(8, "big")]),  # exactly 4 GiB
        (4, [b"\xff\xff", b"\xff\xff"]),  # the field split across two reads
    ],
    ids=["4-byte-field", "8-byte-field-4GiB", "split-field"],
)
def test_length_field_announcing_4_gib_is_refused_at_once(field_length: int, header_parts: list[bytes],
                                                          start_server: Any, socks: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="reactor")
    h = Recorder()
    codec = reactor.LengthFieldBasedFrameCodec(
        reactor.EncoderConfig(length_field_length=field_length),
        reactor.DecoderConfig(length_field_length=field_length),
    )
    bg = start_server(h, codec=codec)
    good = socks.connect(bg.addr)
    bad = socks.connect(bg.addr)
    bad_conn = h.conn_for(bad)
    baseline = settled_rss()
    for part in header_parts[:-1]:
        bad.sendall(part)
        time.sleep(0.05)
        assert bad_conn.opened  # half a length field is just incomplete
    t0 = time.monotonic()
    bad.sendall(header_parts[-1] + b"payload")
    err = h.error_of(bad_conn, timeout=2.0)
    took = time.monotonic() - t0
    assert isinstance(err, reactor.FrameTooLongError), repr(err)
    assert took < 1.0, f"refused only after {took:.2f} s"
    assert "max_frame_length" in str(err)
    data, _ = read_until_closed(bad)
    assert data == b""
    assert settled_rss() - baseline < 16 * MiB
    # Logged, naming the connection and the reason.
    msgs = [r.getMessage() for r in caplog.records if r.name == "reactor" and r.levelno >= logging.WARNING]
    assert any("max_frame_length" in m for m in msgs), msgs
    # The other client is served: one framed message each way (the decoded
    # frame keeps its header, initial_bytes_to_strip=0, and the echo encodes it again).
    payload = bytes(range(256)) * 4
    frame = len(payload).to_bytes(field_length, "big") + payload
    good.sendall(frame)
    assert recv_exact(good, field_length + len(frame)) == len(frame).to_bytes(field_length, "big") + frame
    bg.stop()


# --- a line that never ends -------------------------------------------------------------------------
class InboundAtClose(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.inbound_at_close: dict[int, int] = {}

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        self.inbound_at_close[id(c)] = c.inbound_buffered()
        return super().on_closed(c, err)


@pytest.mark.timeout(60)
def test_line_without_newline_is_refused_after_max_frame_length(start_server: Any, socks: Any) -> None:
    h = InboundAtClose()
    bg = start_server(h, codec=reactor.LineBasedFrameCodec(), socket_recv_buffer=64 * 1024)
    good = socks.connect(bg.addr)
    bad = socks.connect(bg.addr, sndbuf=64 * 1024)
    bad_conn = h.conn_for(bad)
    sender = Worker(lambda: send_until_refused(bad, b"x" * (64 * 1024), 10 * MiB), "rel-endless-line")
    err = h.error_of(bad_conn, timeout=20)
    sent, stopped_by = sender.result()
    assert isinstance(err, reactor.FrameTooLongError), repr(err)
    limit = 1024 * 1024  # LineBasedFrameCodec's default max_frame_length
    buffered = h.inbound_at_close[id(bad_conn)]
    assert limit < buffered <= limit + READ_CAP, f"refused with {buffered} bytes buffered"
    assert stopped_by is not None and sent < 3 * MiB, (sent, stopped_by)
    # The other client's lines are unaffected.
    good.sendall(b"line one\nline two\n")
    assert recv_exact(good, 18) == b"line one\nline two\n"
    bg.stop()
