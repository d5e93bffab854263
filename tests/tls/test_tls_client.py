"""``Client.dial(..., tls=ctx)``: against a reactor TLS server and against the stdlib's ``ssl`` server; and
the up-front checks of ``tls=`` on ``serve``, ``Client`` and ``dial``."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import reactor
from reactor import Action, Conn
from reactor.testing import EchoHandler, TLSCertificates, serve_in_background
from tls_support import TIMEOUT, TLSRecorder, recv_exactly, tls_connect, wait_until


class Collect(reactor.EventServer):
    """A client handler: says hello in on_opened, collects what comes back."""

    def __init__(self) -> None:
        self.data = b""
        self.infos: list[Any] = []
        self.closed: list[BaseException | None] = []
        self.lock = threading.Lock()

    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        self.infos.append(c.tls)
        return b"hello from the client", Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.data += frame or b""
        return None, Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        self.closed.append(err)
        return Action.NONE


def test_dial_a_reactor_tls_server(tls_certificates: TLSCertificates) -> None:
    h = Collect()
    with serve_in_background(EchoHandler(), tls=tls_certificates.server_context()) as srv:
        with reactor.Client(h) as client:
            c = client.dial(srv.proto_addr, tls=tls_certificates.client_context())
            # dial returned after the handshake and on_opened: c.tls is there already.
            assert c.tls is not None and c.tls.server_hostname == "127.0.0.1"
            assert c.tls.peer_certificate is not None  # the server's, verified
            wait_until(lambda: h.data == b"hello from the client", what="the echo")
            c.async_write(b" and more")
            wait_until(lambda: h.data.endswith(b" and more"), what="the second echo")
            c.close()
            wait_until(lambda: len(h.closed) == 1, what="on_closed")
    assert h.closed == [None] and len(h.infos) == 1


def test_dial_forms_and_the_client_default(tls_certificates: TLSCertificates) -> None:
    """(host, port) and gnet's two arguments; Client(tls=ctx) for every dial; server_hostname=localhost."""
    with serve_in_background(EchoHandler(), tls=tls_certificates.server_context()) as srv:
        with reactor.Client(tls=tls_certificates.client_context()) as client:
            assert client.request(srv.addr, b"tuple form") == b"tuple form"
            assert client.request(f"127.0.0.1:{srv.port}", b"host:port") == b"host:port"
            with client.connect(srv.addr, server_hostname="localhost") as conn:
                assert conn.request(b"sni localhost") == b"sni localhost"
                assert conn.conn.tls is not None and conn.conn.tls.server_hostname == "localhost"
        h = Collect()
        with reactor.Client(h) as client:
            client.dial("tcp", f"127.0.0.1:{srv.port}", tls=tls_certificates.client_context())
            wait_until(lambda: h.data == b"hello from the client", what="the echo")


def test_dial_over_unix(tls_certificates: TLSCertificates, tmp_path: Any) -> None:
    path = str(tmp_path / "s.sock")
    with serve_in_background(EchoHandler(), f"unix://{path}", tls=tls_certificates.server_context()):
        with reactor.Client() as client:
            with pytest.raises(ValueError, match="server_hostname"):
                client.request(f"unix://{path}", b"x", tls=tls_certificates.client_context())
            assert client.request(f"unix://{path}", b"over unix", tls=tls_certificates.client_context(),
                                  server_hostname="localhost") == b"over unix"


def test_dial_raises_the_handshake_error(tls_certificates: TLSCertificates) -> None:
    """A certificate that does not verify: dial raises ssl.SSLCertVerificationError; nothing is left open.

    The handler's on_closed has had the same error by the time dial raises
    (no on_opened before it), so a handler sees every connection end.
    """
    h = Collect()
    with TLSCertificates() as other, serve_in_background(EchoHandler(), tls=tls_certificates.server_context()) as srv:
        with reactor.Client(h) as client:
            with pytest.raises(ssl.SSLCertVerificationError) as unknown_ca:
                client.dial(srv.proto_addr, tls=other.client_context())
            assert h.closed == [unknown_ca.value]  # already: on_closed runs before dial is told
            with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match") as mismatch:
                client.dial(srv.addr, tls=tls_certificates.client_context(), server_hostname="wrong.test")
            assert h.closed == [unknown_ca.value, mismatch.value]
            assert client._loop is not None and client._loop.count_connections() == 0
            # The client goes on: a good dial works.
            client.dial(srv.addr, tls=tls_certificates.client_context())
            wait_until(lambda: h.data == b"hello from the client", what="the echo")
    assert len(h.infos) == 1  # the failed dials never reached on_opened, only on_closed
    assert len(h.closed) == 3 and h.closed[2] is None


def test_a_dial_from_a_callback_learns_of_its_failed_handshake_in_on_closed(tls_certificates: TLSCertificates) -> None:
    """dial() from one of the client's callbacks returns mid-handshake; on_closed (with no on_opened) tells it
    the handshake failed, with the error and c.tls None, and the client's other connection is served on."""

    class Redialer(reactor.EventServer):
        def __init__(self) -> None:
            self.client: reactor.Client | None = None
            self.lock = threading.Lock()
            self.opened: list[Conn] = []
            self.dialed: list[Conn] = []
            self.closed: list[tuple[Conn, BaseException | None, Any]] = []
            self.echoes = 0

        def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
            with self.lock:
                self.opened.append(c)
            return b"go", Action.NONE

        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            assert self.client is not None
            with self.lock:
                self.echoes += 1
                first = not self.dialed
            if first:  # on the loop: dial cannot wait, it returns during the handshake
                bad = self.client.dial(srv.addr, tls=stranger.client_context())
                with self.lock:
                    self.dialed.append(bad)
            return None, Action.NONE

        def on_closed(self, c: Conn, err: BaseException | None) -> Action:
            with self.lock:
                self.closed.append((c, err, c.tls))
            return Action.NONE

    h = Redialer()
    server_ctx = tls_certificates.server_context()
    with TLSCertificates() as stranger, serve_in_background(EchoHandler(), tls=server_ctx) as srv:
        with reactor.Client(h) as client:
            h.client = client
            good = client.dial(srv.addr, tls=tls_certificates.client_context())
            wait_until(lambda: len(h.closed) == 1, what="the failed dial's on_closed")
            ((c, err, tls),) = h.closed
            assert c is h.dialed[0] and c is not good
            assert isinstance(err, ssl.SSLCertVerificationError) and tls is None
            assert h.opened == [good]  # the failed one never reached on_opened
            good.async_write(b"still")
            wait_until(lambda: h.echoes >= 2, what="the good connection's second echo")


def test_dial_handshake_timeout() -> None:
    """A TCP server that never answers the ClientHello: dial raises TimeoutError after tls_handshake_timeout."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        ctx = ssl.create_default_context()
        with reactor.Client(tls_handshake_timeout=0.3) as client:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="TLS handshake"):
                client.dial(lsock.getsockname(), tls=ctx, server_hostname="localhost")
            assert time.monotonic() - t0 < 5
            accepted, _ = lsock.accept()
            accepted.close()


@pytest.fixture
def stdlib_tls_server(tls_certificates: TLSCertificates) -> Iterator[tuple[str, int]]:
    """A blocking stdlib ssl echo server on a thread: one connection at a time, until stopped."""
    ctx = tls_certificates.server_context()
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = lsock.accept()
            except TimeoutError:
                continue
            raw.settimeout(TIMEOUT)
            try:
                with ctx.wrap_socket(raw, server_side=True) as s:
                    while True:
                        data = s.recv(65536)
                        if not data:
                            break
                        s.sendall(data.upper())
            except (OSError, ssl.SSLError):
                pass

    t = threading.Thread(target=serve, name="stdlib-tls-server")
    t.start()
    try:
        yield lsock.getsockname()
    finally:
        stop.set()
        t.join(TIMEOUT)
        lsock.close()


def test_dial_a_stdlib_ssl_server(stdlib_tls_server: tuple[str, int], tls_certificates: TLSCertificates) -> None:
    with reactor.Client(tls=tls_certificates.client_context()) as client:
        with client.connect(stdlib_tls_server) as conn:
            assert conn.request(b"shout") == b"SHOUT"
            big = b"q" * 300_000
            conn.send(big)
            got = b""
            while len(got) < len(big):
                got += conn.recv()
            assert got == big.upper()
            assert conn.conn.tls is not None and conn.conn.tls.version in ("TLSv1.2", "TLSv1.3")


def test_dial_from_a_callback_returns_during_the_handshake(tls_certificates: TLSCertificates) -> None:
    """On the loop thread dial cannot wait: on_opened follows, and writes made before it are sent after it."""
    got: list[bytes] = []
    deadlines: list[float | None] = []
    opened = threading.Event()

    class Dialer(reactor.EventServer):
        def __init__(self) -> None:
            self.client: reactor.Client | None = None
            self.target: Any = None

        def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
            if frame is None and c.context == "trigger":
                assert self.client is not None
                conn = self.client.dial(self.target, tls=tls_certificates.client_context())
                assert conn.tls is None  # still handshaking
                conn.context = "tls"
                conn.write(b"early write")
                conn.set_deadline(30)  # a deadline set during the handshake outlives it
            elif frame is not None and c.context == "tls":
                got.append(frame)
            return None, Action.NONE

        def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
            if c.tls is not None:
                deadlines.append(c.deadline())
                opened.set()
            return None, Action.NONE

    with serve_in_background(EchoHandler(), tls=tls_certificates.server_context()) as srv, \
            serve_in_background(EchoHandler()) as plain:
        h = Dialer()
        with reactor.Client(h) as client:
            h.client, h.target = client, srv.addr
            trigger = client.dial(plain.addr)
            trigger.context = "trigger"
            trigger.wake()
            assert opened.wait(TIMEOUT)
            wait_until(lambda: b"".join(got) == b"early write", what="the early write's echo")
    assert deadlines and deadlines[0] is not None and deadlines[0] > time.monotonic() + 20


# --- up-front checks -----------------------------------------------------------------------------------
def test_serve_checks_tls_before_binding(tls_certificates: TLSCertificates) -> None:
    with pytest.raises(TypeError, match="ssl.SSLContext"):
        reactor.serve(EchoHandler(), "tcp://127.0.0.1:0", tls="cert.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="server-side"):
        reactor.serve(EchoHandler(), "tcp://127.0.0.1:0", tls=tls_certificates.client_context())
    with pytest.raises(ValueError, match="DTLS"):
        reactor.serve(EchoHandler(), "udp://127.0.0.1:0", tls=tls_certificates.server_context())
    with pytest.raises(ValueError, match="tls_handshake_timeout"):
        reactor.serve(EchoHandler(), "tcp://127.0.0.1:0", tls_handshake_timeout=0)
    # Options carries it too, typed ssl.SSLContext | None.
    opts = reactor.Options(tls=tls_certificates.server_context(), tls_handshake_timeout=2.5)
    with serve_in_background(TLSRecorder(), options=opts) as srv:
        assert srv.url.startswith("https://")


def test_client_and_dial_check_tls(tls_certificates: TLSCertificates) -> None:
    with pytest.raises(ValueError, match="client-side"):
        reactor.Client(tls=tls_certificates.server_context())
    with pytest.raises(TypeError, match="ssl.SSLContext"):
        reactor.Client(tls=object())  # type: ignore[arg-type]
    with reactor.Client() as client:
        with pytest.raises(ValueError, match="client-side"):
            client.dial("tcp://127.0.0.1:1", tls=tls_certificates.server_context())
        with pytest.raises(TypeError, match="ssl.SSLContext"):
            client.dial("tcp://127.0.0.1:1", tls=b"pem")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="DTLS"):
            client.dial("udp://127.0.0.1:53", tls=tls_certificates.client_context())
        with pytest.raises(ValueError, match="only meaningful"):
            client.dial("tcp://127.0.0.1:1", server_hostname="x")
    # PROTOCOL_TLS (either side; deprecated, still in use) is accepted on both.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        generic = ssl.SSLContext(ssl.PROTOCOL_TLS)
    reactor.Client(tls=generic)
    with serve_in_background(EchoHandler(), tls=generic) as srv:
        assert srv.running


@pytest.fixture
def connect_proxy() -> Iterator[tuple[str, int]]:
    """A one-connection-at-a-time HTTP CONNECT proxy on a thread: answers 200, then relays bytes both ways."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.1)
    stop = threading.Event()

    def relay(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(TIMEOUT)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                host, _, port = request.split()[1].decode().rpartition(":")
                with socket.create_connection(("127.0.0.1" if host == "localhost" else host, int(port)),
                                              timeout=TIMEOUT) as upstream:
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    back = threading.Thread(target=relay, args=(upstream, conn), daemon=True)
                    back.start()
                    relay(conn, upstream)
                    back.join(TIMEOUT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield lsock.getsockname()
    finally:
        stop.set()
        thread.join(TIMEOUT)
        lsock.close()


def through_proxy(proxy: tuple[str, int], port: int) -> socket.socket:
    """A plain socket connected to 127.0.0.1:``port`` through ``proxy``: the CONNECT exchange done, TLS not begun."""
    raw = socket.create_connection(proxy, timeout=TIMEOUT)
    raw.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = raw.recv(1)  # byte by byte: nothing of the TLS stream may be read here
        assert chunk, "the proxy closed"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return raw


def test_enroll_with_tls_through_a_connect_proxy(tls_certificates: TLSCertificates,
                                                 connect_proxy: tuple[str, int]) -> None:
    """enroll(sock, tls=ctx, server_hostname=...): the handshake runs over the adopted socket, on the loop.

    The socket spoke plaintext to a proxy first, so its peer address is the
    proxy's: the name comes from server_hostname, never from the address.
    A failed handshake raises from enroll, after the handler's on_closed had it.
    """
    h = Collect()
    with serve_in_background(EchoHandler(), tls=tls_certificates.server_context()) as srv:
        with reactor.Client(h) as client:
            raw = through_proxy(connect_proxy, srv.port)
            c = client.enroll(raw, tls=tls_certificates.client_context(), server_hostname="localhost")
            assert raw.fileno() == -1  # detached: the client owns the fd
            assert c.tls is not None and c.tls.server_hostname == "localhost" and c.tls.peer_certificate
            assert c.remote_addr == connect_proxy
            wait_until(lambda: h.data == b"hello from the client", what="the echo through the proxy")
            c.close()
            wait_until(lambda: len(h.closed) == 1, what="on_closed")
            assert h.closed == [None]

            raw = through_proxy(connect_proxy, srv.port)
            with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match") as failed:
                client.enroll(raw, tls=tls_certificates.client_context(), server_hostname="wrong.test")
            assert h.closed == [None, failed.value]  # on_closed had it, with no on_opened
            assert len(h.infos) == 1 and h.infos[0] is not None


def test_enroll_tls_arguments_are_checked_before_the_socket_is_taken(tls_certificates: TLSCertificates) -> None:
    ctx = tls_certificates.client_context()
    with serve_in_background(EchoHandler(), tls=tls_certificates.server_context()) as srv:
        with reactor.Client(Collect()) as client:
            with socket.create_connection(srv.addr, timeout=TIMEOUT) as raw:
                with pytest.raises(ValueError, match="server_hostname"):
                    client.enroll(raw, tls=ctx)  # no name guessed from the address
                with pytest.raises(ValueError, match="only meaningful with tls"):
                    client.enroll(raw, server_hostname="localhost")
                with pytest.raises(TypeError, match="SSLContext"):
                    client.enroll(raw, tls=object(), server_hostname="localhost")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="client-side context"):
                    client.enroll(raw, tls=tls_certificates.server_context(), server_hostname="localhost")
                assert raw.fileno() != -1  # still the caller's
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.connect(srv.addr)
                with pytest.raises(ValueError, match="UDP"):
                    client.enroll(udp, tls=ctx, server_hostname="localhost")
            with tls_connect(srv.addr, ctx) as wrapped:
                with pytest.raises(ValueError, match="SSLSocket"):
                    client.enroll(wrapped)
                wrapped.sendall(b"still mine")
                assert recv_exactly(wrapped, 10) == b"still mine"
