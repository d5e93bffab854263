"""TLS end to end with real handshakes over loopback: versions, ALPN, SNI, mutual TLS, close_notify, c.tls.

The clients are the stdlib's ``ssl`` sockets (and a memory-BIO client where
the test must see the records); the servers are real ``reactor.serve`` runs.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import pytest

import reactor
from reactor import Action, Conn
from reactor.testing import TLSCertificates, serve_in_background
from tls_support import (
    TIMEOUT,
    MemoryTLSClient,
    TLSRecorder,
    read_to_eof,
    recv_exactly,
    tls_connect,
    tls_versions,
    wait_until,
)


@pytest.mark.parametrize("version", tls_versions(), ids=lambda v: v.name)
def test_echo_over_each_version(tls_certificates: TLSCertificates, version: ssl.TLSVersion) -> None:
    """Forced TLS 1.2 and 1.3: the handler sees plaintext, and c.tls says what was negotiated."""
    server_ctx = tls_certificates.server_context()
    server_ctx.minimum_version = server_ctx.maximum_version = version
    h = TLSRecorder()
    with serve_in_background(h, tls=server_ctx) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            for payload in (b"ping", b"x" * 100_000):
                s.sendall(payload)
                assert recv_exactly(s, len(payload)) == payload
            assert s.version() == version.name.replace("_", ".")
        wait_until(lambda: h.closed_count == 1, what="on_closed")
    (info,) = h.infos
    assert info.version == version.name.replace("_", ".")
    assert info.cipher[1] in ("TLSv1.2", "TLSv1.3") and info.cipher[2] >= 128
    assert info.server_side and info.server_hostname == "localhost"
    assert info.peer_certificate is None and info.peer_certificate_der is None  # no client certificate asked for
    assert h.frames and b"".join(h.frames) == b"ping" + b"x" * 100_000


def test_on_opened_runs_after_the_handshake_and_c_tls_is_none_without_tls(
    tls_certificates: TLSCertificates,
) -> None:
    """on_opened's output is encrypted (it runs after the handshake); a plain server's c.tls is None."""
    seen: list[Any] = []

    class Greeter(reactor.EventServer):
        def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
            seen.append(c.tls)
            return b"hello\n", Action.NONE

    with serve_in_background(Greeter(), tls=tls_certificates.server_context()) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            assert recv_exactly(s, 6) == b"hello\n"
    with serve_in_background(Greeter()) as srv:
        with socket.create_connection(srv.addr, timeout=TIMEOUT) as s:
            assert recv_exactly(s, 6) == b"hello\n"
    assert seen[0] is not None and seen[0].version and seen[1] is None


def test_alpn_http11(tls_certificates: TLSCertificates) -> None:
    server_ctx = tls_certificates.server_context()
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client_ctx = tls_certificates.client_context()
    client_ctx.set_alpn_protocols(["http/1.1"])
    h = TLSRecorder()
    with serve_in_background(h, tls=server_ctx) as srv:
        with tls_connect(srv.addr, client_ctx) as s:
            assert s.selected_alpn_protocol() == "http/1.1"
            s.sendall(b"x")
            recv_exactly(s, 1)
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:  # a client that offers none
            s.sendall(b"y")
            recv_exactly(s, 1)
    assert [i.alpn_protocol for i in h.infos] == ["http/1.1", None]


def test_sni_selects_the_certificate(tls_certificates: TLSCertificates) -> None:
    """The context's sni_callback switches ssl_object.context; c.tls.server_hostname is the name asked for."""
    alpha = tls_certificates.server_context(tls_certificates.issue("alpha.test"))
    beta = tls_certificates.server_context(tls_certificates.issue("beta.test"))
    asked: list[str | None] = []

    def pick(ssl_object: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        asked.append(name)
        if name == "beta.test":
            ssl_object.context = beta

    alpha.sni_callback = pick
    h = TLSRecorder()
    with serve_in_background(h, tls=alpha) as srv:
        for name in ("alpha.test", "beta.test"):
            # check_hostname verifies the certificate that came back is for this very name.
            with tls_connect(srv.addr, tls_certificates.client_context(), server_hostname=name) as s:
                cert = s.getpeercert()
                assert ("DNS", name) in cert["subjectAltName"]
                s.sendall(b"!")
                recv_exactly(s, 1)
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(srv.addr, tls_certificates.client_context(), server_hostname="gamma.test")
    assert asked[:2] == ["alpha.test", "beta.test"]
    assert [i.server_hostname for i in h.infos] == ["alpha.test", "beta.test"]


def test_mutual_tls(tls_certificates: TLSCertificates) -> None:
    """CERT_REQUIRED: a client certificate from the CA is accepted and shown in c.tls; none is refused."""
    server_ctx = tls_certificates.server_context()
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    tls_certificates.ca.configure_trust(server_ctx)
    client_cert = tls_certificates.issue("client.test")
    h = TLSRecorder()
    with serve_in_background(h, tls=server_ctx) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context(client_cert)) as s:
            s.sendall(b"mtls")
            assert recv_exactly(s, 4) == b"mtls"
        # Without a certificate: TLS 1.3 reports the server's refusal on the first read.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with tls_connect(srv.addr, tls_certificates.client_context()) as s:
                s.sendall(b"no cert")
                s.recv(10)
        wait_until(lambda: h.closed_count == 2, what="both on_closed")
        assert srv.server is not None and srv.server.count_connections() == 0
    (info,) = h.infos  # the refused client never reached on_opened, only on_closed, with the reason
    ((err, tls),) = h.failed
    assert isinstance(err, ssl.SSLError) and "CERTIFICATE" in str(err) and tls is None
    assert info.peer_certificate is not None
    assert ("DNS", "client.test") in info.peer_certificate["subjectAltName"]
    assert isinstance(info.peer_certificate_der, bytes) and len(info.peer_certificate_der) > 100


def test_close_notify_both_ways(tls_certificates: TLSCertificates) -> None:
    """The client's close_notify is an EOF (on_closed gets None) and is answered; Action.CLOSE sends one."""
    class CloseOnBye(TLSRecorder):
        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            super().react(frame, c)
            if frame and frame.endswith(b"bye"):
                return b"big" * 100_000, Action.CLOSE  # queued output first, then close_notify
            return frame, Action.NONE

    h = CloseOnBye()
    with serve_in_background(h, tls=tls_certificates.server_context()) as srv:
        # 1. the client ends with close_notify; unwrap() returns once the server's comes back.
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            s.sendall(b"a")
            recv_exactly(s, 1)
            plain = s.unwrap()
            plain.close()
        wait_until(lambda: h.closed_count == 1, what="on_closed after close_notify")
        assert h.closed == [None]
        # 2. the server closes: every byte, then its close_notify (not a ragged EOF).
        with MemoryTLSClient(srv.addr, tls_certificates.client_context()) as m:
            m.handshake()
            m.send(b"bye")
            data, how = m.read_until_closed()
        assert data == b"big" * 100_000 and how == "close_notify"
        wait_until(lambda: h.closed_count == 2, what="on_closed after Action.CLOSE")


def test_ragged_eof_reaches_on_closed_as_ssl_eof_error(tls_certificates: TLSCertificates) -> None:
    """A peer that closes TCP without close_notify: an EOF, with ssl.SSLEOFError passed to on_closed."""
    h = TLSRecorder()
    with serve_in_background(h, tls=tls_certificates.server_context()) as srv:
        with MemoryTLSClient(srv.addr, tls_certificates.client_context()) as m:
            m.handshake()
            m.send(b"last words")
            assert m.recv(10) == b"last words"
        wait_until(lambda: h.closed_count == 1, what="on_closed")
    (err,) = h.closed
    assert isinstance(err, ssl.SSLEOFError)


def test_count_connections_follows_on_opened(tls_certificates: TLSCertificates) -> None:
    """A connection mid-handshake is not counted; it is from on_opened to on_closed."""
    h = TLSRecorder()
    with serve_in_background(h, tls=tls_certificates.server_context()) as srv:
        assert srv.server is not None
        with socket.create_connection(srv.addr, timeout=TIMEOUT):  # TCP only: never says ClientHello
            with tls_connect(srv.addr, tls_certificates.client_context()) as s:
                s.sendall(b"1")
                recv_exactly(s, 1)
                assert srv.server.count_connections() == 1
        wait_until(lambda: srv.server is not None and srv.server.count_connections() == 0, what="count 0")
        assert h.opened_count == 1


def test_unix_socket(tls_certificates: TLSCertificates, tmp_path: Any) -> None:
    h = TLSRecorder()
    path = str(tmp_path / "tls.sock")
    with serve_in_background(h, f"unix://{path}", tls=tls_certificates.server_context()) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            s.sendall(b"over unix")
            assert recv_exactly(s, 9) == b"over unix"


@pytest.mark.parametrize("variant", ["edge_triggered", "reuse_port", "multicore"])
def test_echo_variants(tls_certificates: TLSCertificates, variant: str) -> None:
    """edge_triggered=True, reuse_port, several loops: the same TLS echo (workers=2: test_tls_examples.py)."""
    opts: dict[str, Any] = {
        "edge_triggered": {"edge_triggered": True},
        "reuse_port": {"reuse_port": True, "num_event_loop": 2},
        "multicore": {"num_event_loop": 2},
    }[variant]
    with serve_in_background(reactor.testing.EchoHandler(), tls=tls_certificates.server_context(), **opts) as srv:
        for _ in range(4):  # spread over the loops / processes
            with tls_connect(srv.addr, tls_certificates.client_context()) as s:
                payload = b"%s" % variant.encode() * 50_000
                s.sendall(payload)
                assert recv_exactly(s, len(payload)) == payload


def test_codec_async_write_wake_deadline_and_idle(tls_certificates: TLSCertificates) -> None:
    """Codecs, async_write from a thread, wake, set_deadline and idle_timeout work as without TLS."""
    class Lines(reactor.EventServer):
        def __init__(self) -> None:
            self.conn: Conn | None = None
            self.closed: list[BaseException | None] = []

        def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
            self.conn = c
            return None, Action.NONE

        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            if frame is None:
                return b"woken", Action.NONE
            if frame == b"deadline":
                c.set_deadline(0.2)
            return frame.upper(), Action.NONE

        def on_closed(self, c: Conn, err: BaseException | None) -> Action:
            self.closed.append(err)
            return Action.NONE

    h = Lines()
    with serve_in_background(h, tls=tls_certificates.server_context(), codec=reactor.LineBasedFrameCodec(),
                             idle_timeout=0.5) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            s.sendall(b"one\ntw")
            assert recv_exactly(s, 4) == b"ONE\n"
            s.sendall(b"o\n")
            assert recv_exactly(s, 4) == b"TWO\n"
            conn = h.conn
            assert conn is not None
            threading.Thread(target=conn.async_write, args=(b"from a thread",)).start()
            assert recv_exactly(s, 14) == b"from a thread\n"
            conn.wake()
            assert recv_exactly(s, 6) == b"woken\n"
            s.sendall(b"deadline\n")
            assert recv_exactly(s, 9) == b"DEADLINE\n"
            assert read_to_eof(s) == b""  # the deadline closed it, with close_notify
        wait_until(lambda: len(h.closed) == 1, what="deadline close")
        assert isinstance(h.closed[0], TimeoutError)
        # idle_timeout: a quiet TLS connection is closed after 0.5 s.
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            t0 = time.monotonic()
            assert read_to_eof(s) == b""
            assert 0.3 < time.monotonic() - t0 < 5
        wait_until(lambda: len(h.closed) == 2, what="idle close")
        assert isinstance(h.closed[1], TimeoutError)


@pytest.mark.parametrize("codec", ["fixed", "builtin"])
def test_write_buffer_cap_pauses_a_peer_that_does_not_read(tls_certificates: TLSCertificates, codec: str) -> None:
    """Back-pressure counts ciphertext in the outbound queue: a non-reading TLS peer stops being read.

    "builtin": the TLS direct path (each record is a frame); "fixed": a codec, one byte per frame.
    """
    class Flood(reactor.EventServer):
        def __init__(self) -> None:
            self.frames = 0
            self.max_outbound = 0

        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            self.frames += 1
            self.max_outbound = max(self.max_outbound, c.outbound_buffered())
            return b"z" * 65536, Action.NONE

    h = Flood()
    cap = 256 * 1024
    opts: dict[str, Any] = {"codec": reactor.FixedLengthFrameCodec(1)} if codec == "fixed" else {}
    with serve_in_background(h, tls=tls_certificates.server_context(), write_buffer_cap=cap, **opts) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context(), rcvbuf=4096) as s:
            sent = 0
            s.settimeout(0.5)
            try:
                for _ in range(2000):  # 2000 one-byte requests, 64 KiB answer each: 128 MiB if unbounded
                    s.send(b"r")
                    sent += 1
            except (TimeoutError, BlockingIOError):
                pass
            time.sleep(0.3)
            frames = h.frames
            assert frames < 200, f"{frames} requests answered while the peer read nothing"
            # Reading resumes the server; everything answered so far arrives intact.
            s.settimeout(TIMEOUT)
            got = recv_exactly(s, frames * 65536)
            assert got == b"z" * len(got)
    assert h.max_outbound <= cap + 2 * 65536 + 512 * 1024  # the cap, plus one batch's FLUSH_THRESHOLD


@pytest.mark.parametrize(
    "codec",
    [reactor.LineBasedFrameCodec(), reactor.DelimiterBasedFrameCodec(b"|"), reactor.FixedLengthFrameCodec(4),
     reactor.LengthFieldBasedFrameCodec(), reactor.BuiltInFrameCodec()],
    ids=lambda c: type(c).__name__,
)
def test_every_codec_sees_what_it_sees_without_tls(tls_certificates: TLSCertificates, codec: Any) -> None:
    """Each of gnet's five codecs, over TLS and over plain TCP, with the same bytes cut the same way:
    the same frames reach react, the same answers come back."""
    class Frames(reactor.EventServer):
        def __init__(self) -> None:
            self.frames: list[bytes] = []

        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            self.frames.append(frame or b"")
            return (frame or b"").upper(), Action.NONE

    wire = b"".join(codec.encode(None, w) for w in (b"abcd", b"efgh", b"ijkl", b"mnop"))
    answer_size = len(b"".join(codec.encode(None, w) for w in (b"ABCD", b"EFGH", b"IJKL", b"MNOP")))
    if isinstance(codec, reactor.BuiltInFrameCodec):
        answer_size = len(wire)  # each read's bytes, upper-cased

    def conversation(tls: bool) -> tuple[list[bytes], bytes]:
        h = Frames()
        opts: dict[str, Any] = {"tls": tls_certificates.server_context()} if tls else {}
        answers = b""
        with serve_in_background(h, codec=codec, **opts) as srv:
            s: socket.socket = (tls_connect(srv.addr, tls_certificates.client_context()) if tls
                                else socket.create_connection(srv.addr, timeout=TIMEOUT))
            with s:
                for cut in (1, 3, len(wire) - 2):  # a frame split over reads/records, then several in one
                    s.sendall(wire[:cut])
                    time.sleep(0.05)
                    s.sendall(wire[cut:])
                    answers += recv_exactly(s, answer_size)
        return h.frames, answers

    plain_frames, plain_answers = conversation(tls=False)
    tls_frames, tls_answers = conversation(tls=True)
    if isinstance(codec, reactor.BuiltInFrameCodec):
        # The built-in codec's frame is "what one read brought": a plain read, a TLS record. The bytes agree.
        assert b"".join(tls_frames) == b"".join(plain_frames) == wire * 3
    else:
        assert tls_frames == plain_frames and len(tls_frames) == 12
    assert tls_answers == plain_answers


def test_records_of_one_read_make_one_frame(tls_certificates: TLSCertificates) -> None:
    """Several records arriving in one read are decrypted together: the codec sees what the read brought, as
    without TLS (the built-in codec: one frame), not one record at a time."""
    h = TLSRecorder()
    with serve_in_background(h, tls=tls_certificates.server_context()) as srv:
        with MemoryTLSClient(srv.addr, tls_certificates.client_context()) as m:
            m.handshake()
            records = b"".join(m.record(part) for part in (b"one ", b"two ", b"three"))
            m.sock.sendall(records)  # one segment on loopback: one read(2)
            assert m.recv(13) == b"one two three"
    assert h.frames == [b"one two three"]
