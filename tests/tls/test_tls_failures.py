"""TLS failures are contained: each closes only its own connection, is logged once, and the loop serves on.

The rule for handlers (docs/architecture.md, "TLS"): a connection whose
handshake never completed was never announced, so it gets neither
``on_opened`` nor ``on_closed`` (asyncio: no ``connection_made``, no
``connection_lost``) and is never in ``count_connections``; its failure is
a log line. A failure after the handshake (a corrupt or truncated record)
reaches ``on_closed`` with the ``ssl.SSLError``.
"""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reactor.internal.ratelimit import DEFAULT_PER_PERIOD
from reactor.testing import BackgroundServer, TLSCertificates, serve_in_background
from tls_support import TIMEOUT, LogCapture, MemoryTLSClient, TLSRecorder, recv_exactly, tls_connect, wait_until


@pytest.fixture
def server(tls_certificates: TLSCertificates) -> Iterator[tuple[BackgroundServer[TLSRecorder], LogCapture]]:
    """A TLS echo server (handshake timeout 0.5 s) and the "reactor" log records it writes."""
    with LogCapture() as log:
        with serve_in_background(TLSRecorder(), tls=tls_certificates.server_context(),
                                 tls_handshake_timeout=0.5) as srv:
            yield srv, log


def still_serving(srv: BackgroundServer[TLSRecorder], certs: TLSCertificates) -> None:
    """A good client is served after the failure: the loop goes on."""
    with tls_connect(srv.addr, certs.client_context()) as s:
        s.sendall(b"still here")
        assert recv_exactly(s, 10) == b"still here"


def closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the TCP connection (an alert, if any, comes first)."""
    data = b""
    sock.settimeout(TIMEOUT)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def failures(log: LogCapture, fragment: str) -> list[str]:
    wait_until(lambda: any(fragment in m for m in log.messages(logging.WARNING)), what=f"a log line with {fragment!r}")
    return [m for m in log.messages(logging.WARNING) if "TLS handshake" in m or "closing" in m]


def test_handshake_timeout(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                           tls_certificates: TLSCertificates) -> None:
    """A peer that connects and never says ClientHello is closed after tls_handshake_timeout."""
    srv, log = server
    with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
        t0 = time.monotonic()
        assert closed_by_server(s) == b""
        elapsed = time.monotonic() - t0
    assert 0.3 < elapsed < 5, elapsed
    lines = failures(log, "TLS handshake not completed within 0.5 s")
    assert len(lines) == 1, lines
    still_serving(srv, tls_certificates)
    wait_until(lambda: srv.handler.closed_count == 1, what="the good client's on_closed")
    assert srv.handler.opened_count == 1  # only the good client was ever announced


def test_stalled_handshake_timeout(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                                   tls_certificates: TLSCertificates) -> None:
    """A peer that sends half a ClientHello and stalls is closed after the timeout too."""
    srv, log = server
    client = tls_certificates.client_context()
    obj = client.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
        s.sendall(hello[: len(hello) // 2])
        assert closed_by_server(s) == b""
    failures(log, "TLS handshake not completed")
    still_serving(srv, tls_certificates)


def test_plaintext_http_to_a_tls_port(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                                      tls_certificates: TLSCertificates) -> None:
    srv, log = server
    with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        closed_by_server(s)
    (line,) = failures(log, "http request")
    assert "TLS handshake with" in line and "HTTP_REQUEST" in line
    still_serving(srv, tls_certificates)
    assert srv.handler.opened_count == 1 and srv.server is not None


@pytest.mark.parametrize(
    "garbage",
    [b"\x00" * 100, b"\x16\x03\x01\x00\x05hello", bytes(range(256)) * 4],
    ids=["zeros", "short-handshake-record", "bytes"],
)
def test_garbage(server: tuple[BackgroundServer[TLSRecorder], LogCapture], tls_certificates: TLSCertificates,
                 garbage: bytes) -> None:
    srv, log = server
    with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)  # a short record would otherwise wait for the rest (until the timeout)
        closed_by_server(s)
    lines = failures(log, "TLS handshake with")
    assert len(lines) == 1, lines
    still_serving(srv, tls_certificates)


def test_corrupt_record_after_the_handshake(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                                            tls_certificates: TLSCertificates) -> None:
    """A flipped byte in an application record: on_closed gets the ssl.SSLError (bad record MAC)."""
    srv, log = server
    with MemoryTLSClient(srv.addr, tls_certificates.client_context()) as m:
        m.handshake()
        m.send(b"fine")
        assert m.recv(4) == b"fine"
        record = bytearray(m.record(b"tampered"))
        record[-3] ^= 0xFF
        m.sock.sendall(bytes(record))
        data, how = m.read_until_closed()
    assert data == b"" and how == "alert"  # the server says why before closing
    wait_until(lambda: srv.handler.closed_count == 1, what="on_closed")
    (err,) = srv.handler.closed
    assert isinstance(err, ssl.SSLError) and "BAD_RECORD_MAC" in str(err).upper().replace(" ", "_")
    failures(log, "closing")
    still_serving(srv, tls_certificates)


def test_good_records_before_a_corrupt_one_in_the_same_read_are_delivered(
    server: tuple[BackgroundServer[TLSRecorder], LogCapture], tls_certificates: TLSCertificates
) -> None:
    """Plaintext decrypted before the bad record still reaches react; then the connection closes with the error.

    Its answer cannot go out: OpenSSL encrypts nothing after a fatal error. The alert does.
    """
    srv, _ = server
    with MemoryTLSClient(srv.addr, tls_certificates.client_context()) as m:
        m.handshake()
        good = m.record(b"good")
        bad = bytearray(m.record(b"bad"))
        bad[-2] ^= 0x01
        m.sock.sendall(good + bytes(bad))
        data, how = m.read_until_closed()
    assert data == b"" and how == "alert"
    wait_until(lambda: srv.handler.closed_count == 1, what="on_closed")
    assert srv.handler.frames == [b"good"]
    assert isinstance(srv.handler.closed[0], ssl.SSLError)


def test_truncated_record(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                          tls_certificates: TLSCertificates) -> None:
    """Half a record, then TCP FIN: on_closed gets ssl.SSLEOFError (noted as a truncated record)."""
    srv, _ = server
    with MemoryTLSClient(srv.addr, tls_certificates.client_context()) as m:
        m.handshake()
        record = m.record(b"x" * 1000)
        m.sock.sendall(record[:500])
        m.sock.shutdown(socket.SHUT_WR)
        m.read_until_closed()
    wait_until(lambda: srv.handler.closed_count == 1, what="on_closed")
    (err,) = srv.handler.closed
    assert isinstance(err, ssl.SSLEOFError)
    notes = getattr(err, "__notes__", None)
    if notes is not None:  # Python 3.11+
        assert "truncated record" in notes[0]
    assert srv.handler.frames == []  # nothing of the cut record reached the handler
    still_serving(srv, tls_certificates)


def test_client_certificate_that_fails_verification(tls_certificates: TLSCertificates) -> None:
    """Mutual TLS: a certificate from another CA is refused in the handshake; the server serves on."""
    server_ctx = tls_certificates.server_context()
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    tls_certificates.ca.configure_trust(server_ctx)
    with TLSCertificates() as stranger, LogCapture() as log:
        with serve_in_background(TLSRecorder(), tls=server_ctx) as srv:
            bad = tls_certificates.client_context(stranger.issue("intruder.test"))
            with pytest.raises((ssl.SSLError, ConnectionError)):
                with tls_connect(srv.addr, bad) as s:
                    s.sendall(b"let me in")
                    s.recv(10)
            (line,) = failures(log, "CERTIFICATE_VERIFY_FAILED")
            assert "TLS handshake with" in line
            good = tls_certificates.client_context(tls_certificates.issue("friend.test"))
            with tls_connect(srv.addr, good) as s:
                s.sendall(b"ok")
                assert recv_exactly(s, 2) == b"ok"
            assert srv.handler.opened_count == 1


def expired(certs: TLSCertificates, name: str) -> Any:
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    return certs.issue(name, not_before=past - datetime.timedelta(days=30), not_after=past)


def test_expired_certificates(tls_certificates: TLSCertificates) -> None:
    """An expired server certificate fails the client's check; an expired client certificate the server's."""
    with LogCapture() as log:
        with serve_in_background(TLSRecorder(), tls=tls_certificates.server_context(expired(tls_certificates,
                                                                                            "localhost"))) as srv:
            with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
                tls_connect(srv.addr, tls_certificates.client_context())
            failures(log, "TLS handshake with")  # the client's alert, as the server saw it
            assert srv.handler.opened_count == 0
        server_ctx = tls_certificates.server_context()
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        tls_certificates.ca.configure_trust(server_ctx)
        with serve_in_background(TLSRecorder(), tls=server_ctx) as srv:
            client = tls_certificates.client_context(expired(tls_certificates, "client.test"))
            with pytest.raises((ssl.SSLError, ConnectionError)):
                with tls_connect(srv.addr, client) as s:
                    s.sendall(b"x")
                    s.recv(1)
            wait_until(lambda: any("expired" in m for m in log.messages(logging.WARNING)), what="expired log")
            good = tls_certificates.client_context(tls_certificates.issue("client.test"))
            with tls_connect(srv.addr, good) as s:
                s.sendall(b"y")
                assert recv_exactly(s, 1) == b"y"


def test_a_peer_that_leaves_before_its_client_hello_is_not_a_warning(
    server: tuple[BackgroundServer[TLSRecorder], LogCapture], tls_certificates: TLSCertificates
) -> None:
    """TCP health checks and port scans connect and close: logged at DEBUG only."""
    srv, log = server
    for _ in range(3):
        socket.create_connection(srv.addr, timeout=TIMEOUT).close()
    wait_until(lambda: sum("left before its ClientHello" in m for m in log.messages()) == 3, what="3 debug lines")
    assert not [m for m in log.messages(logging.WARNING) if "TLS" in m]
    still_serving(srv, tls_certificates)


def test_failure_logs_are_rate_limited(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                                       tls_certificates: TLSCertificates) -> None:
    """200 bad handshakes in a burst: at most the limiter's lines per second, and every one still closed."""
    srv, log = server
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(srv.addr, timeout=TIMEOUT)
            s.sendall(b"NOT TLS AT ALL\r\n\r\n")
            socks.append(s)
        for s in socks:
            closed_by_server(s)
    finally:
        for s in socks:
            s.close()
    lines = [m for m in log.messages(logging.WARNING) if "TLS handshake with" in m]
    assert 1 <= len(lines) <= 2 * DEFAULT_PER_PERIOD, len(lines)  # two 1-second windows at most
    still_serving(srv, tls_certificates)


def test_many_handshake_timeouts_at_once(tls_certificates: TLSCertificates) -> None:
    """100 silent peers at once all time out, and a good client is served meanwhile."""
    closed_in: list[float] = []
    with serve_in_background(TLSRecorder(), tls=tls_certificates.server_context(),
                             tls_handshake_timeout=0.5) as srv:
        socks = [socket.create_connection(srv.addr, timeout=TIMEOUT) for _ in range(100)]
        try:
            t0 = time.monotonic()
            still_serving(srv, tls_certificates)
            for s in socks:
                closed_by_server(s)
                closed_in.append(time.monotonic() - t0)
        finally:
            for s in socks:
                s.close()
        assert srv.server is not None and srv.server.count_connections() == 0
    assert max(closed_in) < 5
