"""reactor.Client: outbound connections served by an event loop.

gnet counterparts: TestServeWithGnetClient / TestCodecServeWithGnetClient
(v1) and TestClient (v2): a client dials tcp / unix / udp and exchanges
request/response through ``react``, both "sync" (``react`` returns the next
request) and with ``async_write`` from the test thread; against reactor
servers and against plain stdlib servers. Then the client's own contract:
``dial`` returns after ``on_opened``, its errors (refused, timeout,
unsupported network, not running), ``enroll``, ``stop`` ordering, peer close,
context manager, ticker, a client codec and ``async_write`` from threads.
"""

from __future__ import annotations

import errno
import queue
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import reactor
from netsupport import has_ipv6_loopback, wait_for
from reactor import Action

SOCK_TIMEOUT = 3.0
WAIT = 3.0


# --- servers ----------------------------------------------------------------------------------------------------------
class ServerEcho(reactor.EventServer):
    """A reactor echo server."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


class StdlibEcho:
    """A plain stdlib echo server (tcp, unix or udp) on one selector thread."""

    def __init__(self, network: str, tmp_path: Path) -> None:
        self.network = network
        if network == "udp":
            self.ln = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.ln.bind(("127.0.0.1", 0))
            self.address = "{}:{}".format(*self.ln.getsockname())
        elif network == "tcp":
            self.ln = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.ln.bind(("127.0.0.1", 0))
            self.ln.listen(16)
            self.address = "{}:{}".format(*self.ln.getsockname())
        else:
            path = str(tmp_path / "stdlib.sock")
            self.ln = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.ln.bind(path)
            self.ln.listen(16)
            self.address = path
        self.ln.setblocking(False)
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stdlib-{network}-echo", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.ln, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self.ln and self.network == "udp":
                        try:
                            data, peer = sock.recvfrom(65536)
                        except BlockingIOError:
                            continue
                        sock.sendto(data, peer)
                    elif sock is self.ln:
                        try:
                            conn, _ = sock.accept()
                        except BlockingIOError:
                            continue
                        conn.settimeout(SOCK_TIMEOUT)
                        self.conns.append(conn)
                        self.accepted += 1
                        sel.register(conn, selectors.EVENT_READ)
                    else:
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            data = b""
                        if data:
                            sock.sendall(data)
                        else:
                            sel.unregister(sock)
                            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
        for c in self.conns:
            c.close()
        self.ln.close()


@pytest.fixture
def echo_servers(start_server: Any, tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """``get(kind, network)`` → the address of a running echo server (kind: reactor | stdlib)."""
    stdlib: list[StdlibEcho] = []

    def get(kind: str, network: str) -> str:
        if kind == "stdlib":
            s = StdlibEcho(network, tmp_path)
            stdlib.append(s)
            return s.address
        if network == "unix":
            path = str(tmp_path / f"reactor-{random.randrange(1 << 30)}.sock")
            start_server(ServerEcho(), f"unix://{path}")
            return path
        bg = start_server(ServerEcho(), f"{network}://127.0.0.1:0")
        return "{}:{}".format(*bg.addr)

    yield get
    for s in stdlib:
        s.close()


# --- the client's handler ---------------------------------------------------------------------------------------------
class Session:
    """Per-connection request/response state, kept in ``c.context``."""

    def __init__(self, requests: list[bytes]) -> None:
        self.requests = list(requests)
        self.current: bytes | None = None
        self.buf = bytearray()

    def next_request(self) -> bytes | None:
        self.current = self.requests.pop(0) if self.requests else None
        return self.current


class ClientHandler(reactor.EventServer):
    def __init__(self, opened_delay: float = 0.0) -> None:
        self.opened_delay = opened_delay
        self.lock = threading.Lock()
        self.events: list[tuple[Any, ...]] = []
        self.frames: queue.Queue[tuple[reactor.Conn, bytes | None]] = queue.Queue()
        self.responses: queue.Queue[tuple[reactor.Conn, bytes]] = queue.Queue()
        self.opened_flag = threading.Event()
        self.closed_event = threading.Event()
        self.ticks = 0
        self.threads: set[str] = set()
        self.init_server: Any = None
        self.problems: list[str] = []

    def _event(self, *ev: Any) -> None:
        with self.lock:
            self.events.append(ev)

    def on_init_complete(self, server: reactor.Server) -> Action:
        self.init_server = server
        self._event("init")
        return Action.NONE

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.threads.add(threading.current_thread().name)
        if self.opened_delay:
            time.sleep(self.opened_delay)  # dial must still wait for us
        self._event("opened", c)
        self.opened_flag.set()
        return None, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        self._event("closed", c, err)
        self.closed_event.set()
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        self._event("shutdown")

    def tick(self) -> tuple[float, Action]:
        with self.lock:
            self.ticks += 1
        return 0.01, Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.lock:
            self.threads.add(threading.current_thread().name)
        session = c.context
        if not isinstance(session, Session):
            # Plain mode: hand every frame to the test.
            self.frames.put((c, frame))
            return None, Action.NONE
        # Sync request/response: react drives the exchange (gnet's client React).
        if frame is None:  # c.wake(): start
            return session.next_request(), Action.NONE
        session.buf += frame
        assert session.current is not None
        if len(session.buf) > len(session.current):
            with self.lock:
                self.problems.append(f"{len(session.buf)} bytes for a {len(session.current)}-byte request")
        if len(session.buf) >= len(session.current):
            self.responses.put((c, bytes(session.buf)))
            session.buf.clear()
            return session.next_request(), Action.NONE
        return None, Action.NONE

    def closed(self) -> list[tuple[Any, ...]]:
        with self.lock:
            return [e for e in self.events if e[0] == "closed"]


def collect(handler: ClientHandler, c: reactor.Conn, n: int, timeout: float = WAIT) -> bytes:
    """Bytes the plain-mode handler received on ``c`` until ``n`` (bounded)."""
    buf = bytearray()
    end = time.monotonic() + timeout
    while len(buf) < n:
        left = end - time.monotonic()
        assert left > 0, f"got {len(buf)} of {n} bytes"
        try:
            conn, frame = handler.frames.get(timeout=left)
        except queue.Empty:
            continue
        assert conn is c, f"a frame for {conn!r}, expected {c!r}"
        assert frame is not None
        buf += frame
    return bytes(buf)


def requests_for(network: str, rng: random.Random, n: int) -> list[bytes]:
    hi = 1000 if network == "udp" else 4000
    return [rng.randbytes(rng.randint(1, hi)) for _ in range(n)]


# --- request/response matrix ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async_write"])
@pytest.mark.parametrize("network", ["tcp", "unix", "udp"])
@pytest.mark.parametrize("kind", ["reactor", "stdlib"])
def test_client_request_response(echo_servers: Any, kind: str, network: str, mode: str) -> None:
    address = echo_servers(kind, network)
    rng = random.Random(f"{kind}{network}{mode}")
    handler = ClientHandler()
    rounds = 20
    with reactor.Client(handler) as client:
        conns = [client.dial(network, address, timeout=2.0) for _ in range(2)]
        for c in conns:
            assert c.opened
            assert isinstance(c, reactor.UDPConn) == (network == "udp")
        if mode == "sync":
            sent: dict[int, list[bytes]] = {}
            for c in conns:
                reqs = requests_for(network, rng, rounds)
                sent[id(c)] = reqs
                c.context = Session(reqs)
            for c in conns:
                # The first request from here; then each response makes react return the next.
                c.async_write(c.context.next_request())
            got: dict[int, list[bytes]] = {id(c): [] for c in conns}
            for _ in range(rounds * len(conns)):
                c, resp = handler.responses.get(timeout=WAIT)
                got[id(c)].append(resp)
            assert got == sent
        else:
            for c in conns:
                for _ in range(rounds):
                    req = requests_for(network, rng, 1)[0]
                    c.async_write(req)
                    assert collect(handler, c, len(req)) == req
    assert handler.problems == []
    assert handler.threads == {"reactor-client-loop"}
    opened = [e for e in handler.events if e[0] == "opened"]
    # UDP has no on_opened (as gnet); streams have one per dial.
    assert len(opened) == (0 if network == "udp" else 2)


def test_several_connections_on_one_client(echo_servers: Any) -> None:
    targets = [("tcp", echo_servers("reactor", "tcp")), ("tcp", echo_servers("stdlib", "tcp")),
               ("unix", echo_servers("reactor", "unix")), ("udp", echo_servers("reactor", "udp")),
               ("udp", echo_servers("stdlib", "udp"))]
    rng = random.Random(7)
    handler = ClientHandler()
    with reactor.Client(handler) as client:
        conns = [client.dial(network, address) for network, address in targets]
        assert len({c.fd for c in conns}) == len(conns)
        sent = {}
        for c, (network, _) in zip(conns, targets):
            reqs = requests_for(network, rng, 10)
            sent[id(c)] = reqs
            c.context = Session(reqs)
        for c in conns:
            c.async_write(c.context.next_request())
        got: dict[int, list[bytes]] = {id(c): [] for c in conns}
        for _ in range(10 * len(conns)):
            c, resp = handler.responses.get(timeout=WAIT)
            got[id(c)].append(resp)
        assert got == sent
    assert handler.problems == []


# --- dial -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("network", ["tcp", "unix"])
def test_dial_returns_after_on_opened_ran(echo_servers: Any, network: str) -> None:
    address = echo_servers("reactor", network)
    handler = ClientHandler(opened_delay=0.2)
    with reactor.Client(handler) as client:
        c = client.dial(network, address)
        # on_opened sleeps 0.2 s before setting the flag: a dial that did not
        # wait for it would get here first.
        assert handler.opened_flag.is_set()
        assert handler.events[-1] == ("opened", c)
        assert c.opened
        assert handler.threads == {"reactor-client-loop"}
        assert c.remote_addr == (address if network == "unix" else (address.split(":")[0], int(address.split(":")[1])))


def test_dial_from_inside_a_callback(echo_servers: Any) -> None:
    address = echo_servers("reactor", "tcp")
    dialed: queue.Queue[Any] = queue.Queue()
    client_box: list[reactor.Client] = []

    class Dialer(ClientHandler):
        def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
            if frame is None:  # woken: dial a second connection from the loop thread
                try:
                    c2 = client_box[0].dial("tcp", address, timeout=1.0)
                    dialed.put((c2, self.opened_flag.is_set(), c2.opened))
                except BaseException as e:
                    dialed.put(e)
                return None, Action.NONE
            return super().react(frame, c)

    handler = Dialer()
    with reactor.Client(handler) as client:
        client_box.append(client)
        first = client.dial("tcp", address)
        assert handler.opened_flag.is_set()
        handler.opened_flag.clear()
        first.wake()
        result = dialed.get(timeout=WAIT)
        assert not isinstance(result, BaseException), result
        c2, opened_ran, is_open = result
        assert opened_ran and is_open
        c2.async_write(b"from the loop")
        assert collect(handler, c2, 13) == b"from the loop"


def test_dial_refused_promptly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connects are refused
        with reactor.Client(ClientHandler()) as client:
            t0 = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                client.dial("tcp", f"127.0.0.1:{port}", timeout=5.0)
            assert time.monotonic() - t0 < 1.0


def test_dial_unix_missing_path(tmp_path: Path) -> None:
    with reactor.Client(ClientHandler()) as client:
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            client.dial("unix", str(tmp_path / "nobody-here.sock"), timeout=1.0)


def test_dial_timeout_against_full_backlog() -> None:
    handler = ClientHandler()
    ln = socket.socket()
    fillers: list[socket.socket] = []
    try:
        ln.bind(("127.0.0.1", 0))
        ln.listen(0)
        addr = ln.getsockname()
        # Fill the accept queue: once it is full, Linux drops further SYNs,
        # so a connect neither succeeds nor fails until it gives up.
        full = False
        for _ in range(6):
            s = socket.socket()
            fillers.append(s)
            s.settimeout(0.2)
            try:
                s.connect(addr)
            except TimeoutError:
                full = True
                break
        if not full:
            pytest.skip("could not fill the listen backlog on this kernel (SYNs are not dropped)")
        with reactor.Client(handler) as client:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                client.dial("tcp", "{}:{}".format(*addr), timeout=0.3)
            elapsed = time.monotonic() - t0
            assert 0.25 <= elapsed < 1.5, elapsed
    finally:
        for s in fillers:
            s.close()
        ln.close()
    assert handler.closed() == []  # the timed-out fd was never a connection


def test_dial_unix_full_backlog_reports_eagain_or_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "full.sock")
    ln = socket.socket(socket.AF_UNIX)
    fillers: list[socket.socket] = []
    try:
        ln.bind(path)
        ln.listen(0)
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX)
            fillers.append(s)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                break
        else:
            pytest.skip("could not fill the unix listen backlog")
        with reactor.Client(ClientHandler()) as client:
            with pytest.raises((BlockingIOError, TimeoutError)) as info:
                client.dial("unix", path, timeout=0.3)
            assert info.value.errno in (errno.EAGAIN, errno.ETIMEDOUT)
    finally:
        for s in fillers:
            s.close()
        ln.close()


def test_dial_unsupported_network() -> None:
    with reactor.Client(ClientHandler()) as client:
        with pytest.raises(reactor.UnsupportedProtocolError):
            client.dial("tulip", "127.0.0.1:80")
        with pytest.raises(reactor.UnsupportedProtocolError):
            client.dial("ip", "127.0.0.1")


def test_dial_and_enroll_when_not_running(echo_servers: Any) -> None:
    address = echo_servers("reactor", "tcp")
    client = reactor.Client(ClientHandler())
    with pytest.raises(reactor.ServerInShutdownError):
        client.dial("tcp", address)
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(reactor.ServerInShutdownError):
            client.enroll(a)
        assert a.fileno() != -1  # refused: the socket still owns its fd
        client.start()
        client.stop()
        with pytest.raises(reactor.ServerInShutdownError):
            client.dial("tcp", address)
        with pytest.raises(reactor.ServerInShutdownError):
            client.enroll(a)
        assert a.fileno() != -1
    client.stop()  # a second stop is a no-op


# --- enroll -----------------------------------------------------------------------------------------------------------
def test_enroll_socketpair_both_ways() -> None:
    handler = ClientHandler()
    a, b = socket.socketpair()
    b.settimeout(SOCK_TIMEOUT)
    with b, reactor.Client(handler) as client:
        c = client.enroll(a)
        assert a.fileno() == -1  # detached: the client owns the fd now
        assert handler.opened_flag.is_set()
        b.sendall(b"ping")
        assert collect(handler, c, 4) == b"ping"
        c.async_write(b"pong")
        assert b.recv(4) == b"pong"
    a.close()  # closing the detached object must not close the client's (already closed) fd


def test_enroll_connected_tcp_socket() -> None:
    handler = ClientHandler()
    with socket.socket() as ln:
        ln.bind(("127.0.0.1", 0))
        ln.listen(1)
        ln.settimeout(SOCK_TIMEOUT)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # small, so 1 MiB cannot fit
        sock.settimeout(SOCK_TIMEOUT)  # a blocking stdlib socket
        sock.connect(ln.getsockname())
        peer, _ = ln.accept()
        peer.settimeout(SOCK_TIMEOUT)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        with peer, reactor.Client(handler) as client:
            local = sock.getsockname()
            c = client.enroll(sock)
            assert sock.fileno() == -1
            assert c.local_addr == local and c.remote_addr == ln.getsockname()
            c.async_write(b"hello")
            assert peer.recv(5) == b"hello"
            peer.sendall(b"world")
            assert collect(handler, c, 5) == b"world"
            # A write the kernel cannot take at once (16 KiB buffers) is
            # buffered without stalling the loop, which keeps reading.
            c.async_write(b"x" * (1 << 20))
            c.async_write(b"!")
            peer.sendall(b"still alive")
            assert collect(handler, c, 11) == b"still alive"
            got = bytearray()
            while len(got) < (1 << 20) + 1:
                chunk = peer.recv(1 << 20)
                assert chunk, "EOF before the whole write arrived"
                got += chunk
            assert got == b"x" * (1 << 20) + b"!"
        sock.close()


# --- lifecycle --------------------------------------------------------------------------------------------------------
def test_stop_closes_every_connection_then_on_shutdown(echo_servers: Any) -> None:
    handler = ClientHandler()
    client = reactor.Client(handler)
    client.start()
    a, b = socket.socketpair()
    b.settimeout(SOCK_TIMEOUT)
    try:
        conns = [
            client.dial("tcp", echo_servers("reactor", "tcp")),
            client.dial("unix", echo_servers("stdlib", "unix")),
            client.enroll(a),
        ]
    finally:
        client.stop()
    with b:
        assert b.recv(16) == b""  # the peer sees EOF
    closed = handler.closed()
    assert sorted(id(e[1]) for e in closed) == sorted(id(c) for c in conns)
    assert all(e[2] is None for e in closed)
    assert not any(c.opened for c in conns)
    kinds = [e[0] for e in handler.events]
    assert kinds[0] == "init" and kinds[-1] == "shutdown" and kinds.count("shutdown") == 1
    assert kinds.index("shutdown") > max(i for i, k in enumerate(kinds) if k == "closed")
    assert handler.init_server.addr is None
    a.close()


def test_peer_close_calls_on_closed_with_none() -> None:
    handler = ClientHandler()
    a, b = socket.socketpair()
    with reactor.Client(handler) as client:
        c = client.enroll(a)
        b.sendall(b"bye")
        b.close()
        assert handler.closed_event.wait(WAIT)
        assert handler.closed() == [("closed", c, None)]
        assert not c.opened
        assert collect(handler, c, 3) == b"bye"  # delivered before the close
    a.close()


def test_local_close_calls_on_closed_with_none() -> None:
    handler = ClientHandler()
    a, b = socket.socketpair()
    b.settimeout(SOCK_TIMEOUT)
    with b, reactor.Client(handler) as client:
        c = client.enroll(a)
        c.async_write(b"last")
        c.close()
        assert handler.closed_event.wait(WAIT)
        assert handler.closed() == [("closed", c, None)]
        data = b""
        while True:
            chunk = b.recv(16)
            if not chunk:
                break
            data += chunk
        assert data == b"last"  # pending output is flushed before the close
    a.close()


def test_client_as_context_manager(echo_servers: Any) -> None:
    handler = ClientHandler()
    with reactor.Client(handler) as client:
        assert isinstance(client, reactor.Client)
        c = client.dial("tcp", echo_servers("reactor", "tcp"))
        c.async_write(b"ctx")
        assert collect(handler, c, 3) == b"ctx"
        assert "shutdown" not in [e[0] for e in handler.events]
    assert [e[0] for e in handler.events][-2:] == ["closed", "shutdown"]
    assert not [t for t in threading.enumerate() if t.name.startswith("reactor-client")]


def test_client_ticker_calls_tick() -> None:
    handler = ClientHandler()
    with reactor.Client(handler, ticker=True):
        assert wait_for(lambda: handler.ticks >= 5, 2.0), handler.ticks
    ticks = handler.ticks
    time.sleep(0.05)
    assert handler.ticks == ticks  # the ticker stopped with the client
    assert not [t for t in threading.enumerate() if t.name == "reactor-client-ticker"]


def test_client_without_ticker_never_ticks() -> None:
    handler = ClientHandler()
    with reactor.Client(handler):
        time.sleep(0.05)
    assert handler.ticks == 0


# --- codec and async_write --------------------------------------------------------------------------------------------
class Greeter(reactor.EventServer):
    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return b"sweetness\r\n", Action.NONE

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        return frame, Action.NONE


def test_client_codec_frames_what_the_server_sends(start_server: Any) -> None:
    bg = start_server(Greeter(), codec=reactor.LineBasedFrameCodec())
    handler = ClientHandler()
    with reactor.Client(handler, codec=reactor.LineBasedFrameCodec()) as client:
        c = client.dial("tcp", "{}:{}".format(*bg.addr))
        assert handler.frames.get(timeout=WAIT) == (c, b"sweetness\r")
        # The client encodes too: the server decodes "hi" and echoes "hi\n".
        for msg in (b"hi", b"", b"there"):
            c.async_write(msg)
            assert handler.frames.get(timeout=WAIT) == (c, msg)


def test_client_codec_reassembles_frames_split_across_reads() -> None:
    handler = ClientHandler()
    a, b = socket.socketpair()
    b.settimeout(SOCK_TIMEOUT)
    with b, reactor.Client(handler, codec=reactor.LineBasedFrameCodec()) as client:
        c = client.enroll(a)
        b.sendall(b"one\ntwo\nthr")
        time.sleep(0.05)  # a separate read: "thr" waits in the inbound buffer
        b.sendall(b"ee\n\nfour\n")
        got = [handler.frames.get(timeout=WAIT) for _ in range(5)]
        assert got == [(c, b"one"), (c, b"two"), (c, b"three"), (c, b""), (c, b"four")]
        c.async_write(b"encoded")
        assert b.recv(8) == b"encoded\n"
    a.close()


def test_async_write_from_other_threads_keeps_each_threads_order(echo_servers: Any) -> None:
    handler = ClientHandler()
    with reactor.Client(handler, codec=reactor.LineBasedFrameCodec()) as client:
        c = client.dial("tcp", echo_servers("stdlib", "tcp"))
        with pytest.raises(RuntimeError):
            c.write(b"not from this thread")  # loop-only method

        def writer(tag: int) -> None:
            for i in range(100):
                c.async_write(b"%d:%d" % (tag, i))

        threads = [threading.Thread(target=writer, args=(t,), name=f"writer-{t}") for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
        lines = [handler.frames.get(timeout=WAIT)[1] for _ in range(300)]
    for tag in range(3):
        mine = [line for line in lines if line.startswith(b"%d:" % tag)]
        assert mine == [b"%d:%d" % (tag, i) for i in range(100)]


class Waker(ClientHandler):
    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            self.frames.put((c, None))
            return b"woken", Action.NONE  # written by the loop (encoded: no codec here)
        return super().react(frame, c)


@pytest.mark.parametrize("network", ["tcp", "unix"])
def test_wake_on_client_stream_conn(echo_servers: Any, network: str) -> None:
    handler = Waker()
    with reactor.Client(handler) as client:
        c = client.dial(network, echo_servers("reactor", network))
        c.wake()
        assert handler.frames.get(timeout=WAIT) == (c, None)
        assert collect(handler, c, 5) == b"woken"  # react(None)'s output reached the server and came back


def test_wake_on_client_udp_conn(echo_servers: Any) -> None:
    handler = Waker()
    with reactor.Client(handler) as client:
        c = client.dial("udp", echo_servers("reactor", "udp"))
        c.wake()  # documented: "react(None, c) on the loop; only for a client's connected UDP socket"
        try:
            got = handler.frames.get(timeout=1.0)
        except queue.Empty:
            got = None
        assert got == (c, None), "react(None, c) never ran after wake()"


def test_udp_client_conn_is_closed_on_stop(echo_servers: Any) -> None:
    handler = ClientHandler()
    with reactor.Client(handler) as client:
        c = client.dial("udp", echo_servers("reactor", "udp"))
        c.async_write(b"dgram")
        assert collect(handler, c, 5) == b"dgram"
        assert handler.events == [("init",)]  # no on_opened for UDP
    assert not c.opened


# --- more dial / enroll shapes ----------------------------------------------------------------------------------------
def test_enroll_connected_udp_socket(echo_servers: Any) -> None:
    host, port = echo_servers("reactor", "udp").split(":")
    handler = ClientHandler()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, int(port)))
    with reactor.Client(handler) as client:
        c = client.enroll(s)
        assert s.fileno() == -1
        assert isinstance(c, reactor.UDPConn)
        for msg in (b"one", b"two"):
            c.async_write(msg)
            assert collect(handler, c, len(msg)) == msg
    s.close()


def test_enroll_refuses_unconnected_socket() -> None:
    with reactor.Client(ClientHandler()) as client, socket.socket() as s:
        with pytest.raises(ValueError):
            client.enroll(s)
        assert s.fileno() != -1  # not taken over




@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
def test_dial_tcp6(start_server: Any) -> None:
    bg = start_server(ServerEcho(), "tcp6://[::1]:0")
    handler = ClientHandler()
    with reactor.Client(handler) as client:
        c = client.dial("tcp6", f"[::1]:{bg.addr[1]}")
        assert c.remote_addr[:2] == ("::1", bg.addr[1])
        c.async_write(b"six")
        assert collect(handler, c, 3) == b"six"


def test_dial_empty_host_means_loopback(start_server: Any) -> None:
    bg = start_server(ServerEcho(), "tcp://127.0.0.1:0")
    handler = ClientHandler()
    with reactor.Client(handler) as client:
        c = client.dial("tcp", f":{bg.addr[1]}")  # Go's net.Dial: empty host = this host
        assert c.remote_addr == ("127.0.0.1", bg.addr[1])
        c.async_write(b"lo")
        assert collect(handler, c, 2) == b"lo"


# --- shutting down from inside ----------------------------------------------------------------------------------------
class TickShutdown(ClientHandler):
    def tick(self) -> tuple[float, Action]:
        with self.lock:
            self.ticks += 1
            n = self.ticks
        return 0.01, Action.SHUTDOWN if n >= 3 else Action.NONE


def test_client_tick_shutdown_stops_the_loop(echo_servers: Any) -> None:
    handler = TickShutdown()
    client = reactor.Client(handler, ticker=True)
    client.start()
    try:
        c = client.dial("tcp", echo_servers("reactor", "tcp"))
        assert handler.closed_event.wait(WAIT), "the connection was not closed after tick() returned SHUTDOWN"
        assert handler.closed() == [("closed", c, None)]
        assert handler.ticks == 3
        assert wait_for(lambda: not client._loop.thread.is_alive())  # type: ignore[union-attr]
        with pytest.raises(reactor.ServerInShutdownError):
            client.dial("tcp", echo_servers("reactor", "tcp"))
    finally:
        client.stop()
    assert [e[0] for e in handler.events][-1] == "shutdown"


def test_client_stop_from_inside_react(caplog: pytest.LogCaptureFixture) -> None:
    box: list[reactor.Client] = []

    class Stopper(ClientHandler):
        def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
            self._event("react", frame)
            box[0].stop()
            return None, Action.NONE

    handler = Stopper()
    client = reactor.Client(handler)
    client.start()
    box.append(client)
    a, b = socket.socketpair()
    with b:
        c = client.enroll(a)
        b.sendall(b"stop")
        assert wait_for(lambda: not client._loop.thread.is_alive())  # type: ignore[union-attr]
        a.close()
    client.stop()
    kinds = [e[0] for e in handler.events]
    errors = [r.getMessage() for r in caplog.records if r.name == "reactor" and r.levelno >= 40]
    assert kinds == ["init", "opened", "react", "closed", "shutdown"] and errors == [], (kinds, errors)
    assert not c.opened


def test_client_on_init_complete_shutdown_means_not_started(echo_servers: Any) -> None:
    class Refuse(ClientHandler):
        def on_init_complete(self, server: reactor.Server) -> Action:
            super().on_init_complete(server)
            return Action.SHUTDOWN

    handler = Refuse()
    client = reactor.Client(handler)
    client.start()
    try:
        assert not [t for t in threading.enumerate() if t.name.startswith("reactor-client")]
        with pytest.raises(reactor.ServerInShutdownError):
            client.dial("tcp", echo_servers("reactor", "tcp"))
    finally:
        client.stop()
    assert [e[0] for e in handler.events] == ["init"]


def test_dial_abstract_unix_socket(start_server: Any) -> None:
    name = f"@reactor-client-test-{random.randrange(1 << 40)}"
    start_server(ServerEcho(), f"unix://{name}")
    handler = ClientHandler()
    with reactor.Client(handler) as client:
        c = client.dial("unix", name)
        c.async_write(b"abstract")
        assert collect(handler, c, 8) == b"abstract"
