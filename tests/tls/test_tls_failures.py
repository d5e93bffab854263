"""TLS failures are contained: each closes only its own connection, is logged once, and the loop serves on.

The rule for handlers (docs/architecture.md, "TLS"): a connection whose
handshake never completed gets no ``on_opened`` and is never in
``count_connections``, but ``on_closed`` gets its ``ssl.SSLError`` (or
``TimeoutError``), with ``c.tls`` None: the one ``on_closed`` without an
``on_opened`` before it. A failure after the handshake (a corrupt or
truncated record) reaches ``on_closed`` with the ``ssl.SSLError`` as well.
"""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
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


def failed_handshakes(handler: TLSRecorder, n: int = 1) -> list[BaseException | None]:
    """Wait for ``n`` on_closed calls with no on_opened before them; their errors (``c.tls`` was None in each)."""
    wait_until(lambda: handler.failed_count >= n, what=f"{n} on_closed for failed handshakes")
    with handler.lock:
        failed = list(handler.failed)
    assert len(failed) == n, failed
    assert all(tls is None for _, tls in failed), failed
    return [err for err, _ in failed]


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
    (err,) = failed_handshakes(srv.handler)
    assert isinstance(err, TimeoutError) and "TLS handshake not completed within 0.5 s" in str(err)
    still_serving(srv, tls_certificates)
    wait_until(lambda: srv.handler.closed_count == 2, what="the good client's on_closed")
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
    (err,) = failed_handshakes(srv.handler)
    assert isinstance(err, TimeoutError)
    still_serving(srv, tls_certificates)


def test_plaintext_http_to_a_tls_port(server: tuple[BackgroundServer[TLSRecorder], LogCapture],
                                      tls_certificates: TLSCertificates) -> None:
    srv, log = server
    with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        closed_by_server(s)
    (line,) = failures(log, "http request")
    assert "TLS handshake with" in line and "HTTP_REQUEST" in line
    (err,) = failed_handshakes(srv.handler)
    assert isinstance(err, ssl.SSLError) and "HTTP_REQUEST" in str(err)
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
    (err,) = failed_handshakes(srv.handler)
    assert isinstance(err, ssl.SSLError)
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
            (err,) = failed_handshakes(srv.handler)
            assert isinstance(err, ssl.SSLCertVerificationError) and "CERTIFICATE_VERIFY_FAILED" in str(err)
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
            (err,) = failed_handshakes(srv.handler)  # the same alert, in on_closed
            assert isinstance(err, ssl.SSLError) and "CERTIFICATE_EXPIRED" in str(err)
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
            (err,) = failed_handshakes(srv.handler)
            assert isinstance(err, ssl.SSLCertVerificationError) and "expired" in str(err)
            good = tls_certificates.client_context(tls_certificates.issue("client.test"))
            with tls_connect(srv.addr, good) as s:
                s.sendall(b"y")
                assert recv_exactly(s, 1) == b"y"


def test_a_peer_that_leaves_before_its_client_hello_is_not_a_warning(
    server: tuple[BackgroundServer[TLSRecorder], LogCapture], tls_certificates: TLSCertificates
) -> None:
    """TCP health checks and port scans connect and close: logged at DEBUG only; on_closed gets ssl.SSLEOFError."""
    srv, log = server
    for _ in range(3):
        socket.create_connection(srv.addr, timeout=TIMEOUT).close()
    wait_until(lambda: sum("left before its ClientHello" in m for m in log.messages()) == 3, what="3 debug lines")
    assert not [m for m in log.messages(logging.WARNING) if "TLS" in m]
    errors = failed_handshakes(srv.handler, 3)
    assert all(type(e) is ssl.SSLEOFError for e in errors), errors
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
    errors = failed_handshakes(srv.handler, 200)  # the log is limited, on_closed is not
    assert all(isinstance(e, ssl.SSLError) for e in errors), {type(e) for e in errors}
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
        errors = failed_handshakes(srv.handler, 100)
        assert all(isinstance(e, TimeoutError) for e in errors), {type(e) for e in errors}
    assert max(closed_in) < 5


# --- every handshake failure, one at a time, beside a connection that is being served ------------------------------
EXPIRED_NAME = "expired.test"  # the server's one virtual host with an expired certificate (chosen by SNI)


def handshake_refused(s: socket.socket, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> None:
    """Handshake over ``s`` and ask for an echo: the server must refuse (an alert, a reset, or EOF; never data).

    With TLS 1.3 a client finishes its side before the server has checked
    the client's certificate, so the refusal may come at the first read.
    """
    try:
        with ctx.wrap_socket(s, server_hostname=server_hostname) as t:
            t.sendall(b"let me in")
            data = t.recv(100)
    except (ssl.SSLError, ConnectionError):
        return
    assert data == b"", data


def act_plaintext_http(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    closed_by_server(s)


def act_garbage(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    s.sendall(bytes(range(256)) * 4)
    closed_by_server(s)


def act_truncated_client_hello(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    """Half a ClientHello record, then FIN: the record can never be completed."""
    obj = certs.client_context().wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    s.sendall(hello[: len(hello) // 2])
    s.shutdown(socket.SHUT_WR)
    assert closed_by_server(s) == b""


def act_silent(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    """Connect and say nothing: the handshake timer closes it; the other connection is served meanwhile."""
    meanwhile()
    assert closed_by_server(s) == b""


def act_port_scan(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    s.close()


def act_untrusted_client_certificate(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    with TLSCertificates() as stranger:
        handshake_refused(s, certs.client_context(stranger.issue("intruder.test")))


def act_expired_client_certificate(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    handshake_refused(s, certs.client_context(expired(certs, "client.test")))


def act_no_client_certificate(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    handshake_refused(s, certs.client_context())


def act_expired_server_certificate(s: socket.socket, certs: TLSCertificates, meanwhile: Callable[[], None]) -> None:
    """The client refuses the server's expired certificate; the server hears the client's alert."""
    member = certs.client_context(certs.issue("member.test"))
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        member.wrap_socket(s, server_hostname=EXPIRED_NAME)


#: (the peer's misbehaviour, what on_closed gets, a fragment of its message, whether it is only a DEBUG line)
FAILURES: dict[str, tuple[Callable[[socket.socket, TLSCertificates, Callable[[], None]], None],
                          type[BaseException], str, bool]] = {
    "plaintext-http": (act_plaintext_http, ssl.SSLError, "HTTP_REQUEST", False),
    "garbage": (act_garbage, ssl.SSLError, "WRONG_VERSION_NUMBER", False),
    "truncated-client-hello": (act_truncated_client_hello, ssl.SSLEOFError, "during the TLS handshake", False),
    "handshake-timeout": (act_silent, TimeoutError, "TLS handshake not completed within 1 s", False),
    "port-scan": (act_port_scan, ssl.SSLEOFError, "during the TLS handshake", True),
    "untrusted-client-certificate": (act_untrusted_client_certificate, ssl.SSLCertVerificationError,
                                     "unable to get local issuer certificate", False),
    "expired-client-certificate": (act_expired_client_certificate, ssl.SSLCertVerificationError,
                                   "certificate has expired", False),
    "no-client-certificate": (act_no_client_certificate, ssl.SSLError, "CERTIFICATE", False),
    "expired-server-certificate": (act_expired_server_certificate, ssl.SSLError, "CERTIFICATE_EXPIRED", False),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_handshake_reaches_on_closed_and_closes_only_its_connection(
    failure: str, tls_certificates: TLSCertificates
) -> None:
    """Each failure: on_closed(c, err) with no on_opened and c.tls None, one log line, nothing counted, and the
    connection opened before it is served before, during and after, and never closed.

    One server for all: mutual TLS (clients need a certificate from the CA),
    and an expired certificate for the name ``expired.test`` (SNI).
    """
    act, error, fragment, debug_only = FAILURES[failure]
    certs = tls_certificates
    server_ctx = certs.server_context()
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    certs.ca.configure_trust(server_ctx)
    expired_ctx = certs.server_context(expired(certs, EXPIRED_NAME))

    def pick_certificate(obj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        if name == EXPIRED_NAME:
            obj.context = expired_ctx

    server_ctx.sni_callback = pick_certificate
    with LogCapture() as log, serve_in_background(TLSRecorder(), tls=server_ctx, tls_handshake_timeout=1.0) as srv:
        assert srv.server is not None
        with tls_connect(srv.addr, certs.client_context(certs.issue("member.test"))) as member:

            def echo(msg: bytes) -> None:
                member.sendall(msg)
                assert recv_exactly(member, len(msg)) == msg

            echo(b"before")
            with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
                peer = repr(s.getsockname())
                act(s, certs, lambda: echo(b"meanwhile"))
            (err,) = failed_handshakes(srv.handler)
            assert isinstance(err, error), repr(err)
            assert fragment in str(err), repr(err)
            echo(b"after")
            assert srv.handler.opened_count == 1 and srv.handler.closed_count == 1  # the member's open, the failure
            assert srv.server.count_connections() == 1  # the member only
        lines = [m for m in log.messages() if peer in m and "TLS" in m]
        warnings = [m for m in log.messages(logging.WARNING) if peer in m]
        assert len(lines) == 1, lines  # logged once
        assert len(warnings) == (0 if debug_only else 1), warnings
        assert fragment in lines[0] or debug_only, lines
        wait_until(lambda: srv.handler.closed_count == 2, what="the member's on_closed")


class UnstartableContext(ssl.SSLContext):
    """A server context that cannot make a session (as when OpenSSL runs out of memory at accept time)."""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
        raise ssl.SSLError(ssl.SSL_ERROR_SSL, "cannot make a session for this connection")


def test_a_session_that_cannot_start_reaches_on_closed_and_is_not_counted(tls_certificates: TLSCertificates) -> None:
    """The session is made at registration: if that fails, on_closed gets the error and the count stays at 0."""
    ctx = UnstartableContext(ssl.PROTOCOL_TLS_SERVER)
    tls_certificates.server_cert.configure_cert(ctx)
    with LogCapture() as log, serve_in_background(TLSRecorder(), tls=ctx) as srv:
        assert srv.server is not None
        with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
            assert closed_by_server(s) == b""
        (err,) = failed_handshakes(srv.handler)
        assert isinstance(err, ssl.SSLError) and "cannot make a session" in str(err)
        assert srv.server.count_connections() == 0  # not -1: it was never counted in
        assert any("cannot start TLS" in m for m in log.messages(logging.ERROR))
