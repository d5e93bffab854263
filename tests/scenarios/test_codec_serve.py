"""gnet's TestCodecServe: every codec echoing through real servers.

Matrix: {main reactor, reuse_port} x {sync echo, async echo from a worker
thread with ``c.async_write``} x {1 loop, 2 loops} x {LineBased,
DelimiterBased(b"|"), FixedLength(1024), LengthFieldBased (field length
cycling 1, 2, 3, 4, 8 across cells, big-endian, strip = field length)}.

Options as gnet's: 8 KiB read buffer, 8 KiB SO_RCVBUF/SO_SNDBUF. The handler
greets each connection with the raw ``b"sweetness\\r\\n"`` from ``on_opened``
(not encoded). CLIENTS clients per cell send pipelined batches of
random-sized frames encoded by hand in this file (not with the codec object,
so the codec is tested against an independent encoding) and read back the
encoded echo, which must be byte-exact.

Then: a codec error closes only the offending connection, with the
CodecError subclass instance in ``on_closed``, while another client on the
same server keeps being served; and empty frames in the middle of a stream
are echoed.
"""

from __future__ import annotations

import itertools
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import reactor
from netsupport import connect_nodelay, recv_up_to
from reactor import (
    Action,
    CodecError,
    DecoderConfig,
    DelimiterBasedFrameCodec,
    EncoderConfig,
    FixedLengthFrameCodec,
    FrameTooLongError,
    LengthFieldBasedFrameCodec,
    LineBasedFrameCodec,
    TooLessLengthError,
)

GREETING = b"sweetness\r\n"
CLIENTS = 4
ROUNDS = 4
FRAMES_PER_ROUND = 32
SOCK_TIMEOUT = 5.0
CELL_DEADLINE = 20.0
OPTIONS = dict(read_buffer_cap=8192, socket_recv_buffer=8192, socket_send_buffer=8192)


# --- handler ------------------------------------------------------------------------------------------------
class CodecEchoServer(reactor.EventServer):
    def __init__(self, mode: str = "sync") -> None:
        assert mode in ("sync", "async")
        self.mode = mode
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.opened = 0
        self.closed: list[tuple[reactor.Conn, BaseException | None]] = []
        self.frames: list[bytes] = []
        self.problems: list[str] = []
        self._q: queue.Queue[Any] = queue.Queue()
        self._worker: threading.Thread | None = None
        if mode == "async":
            self._worker = threading.Thread(target=self._work, name="codec-echo-worker", daemon=True)
            self._worker.start()

    def on_opened(self, c: reactor.Conn) -> tuple[bytes | None, Action]:
        c.context = c
        with self.cond:
            self.opened += 1
        return GREETING, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        with self.cond:
            if c.context is not c:
                self.problems.append(f"on_closed: context of {c!r} is {c.context!r}")
            self.closed.append((c, err))
            self.cond.notify_all()
        return Action.NONE

    def on_shutdown(self, server: reactor.Server) -> None:
        self.stop_worker()

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        if frame is None:
            with self.lock:
                self.problems.append("react(None) without wake()")
            return None, Action.NONE
        if not isinstance(frame, bytes):
            with self.lock:
                self.problems.append(f"frame of type {type(frame).__name__}")
        with self.lock:
            self.frames.append(frame)
        if self.mode == "sync":
            return frame, Action.NONE
        self._q.put((c, bytes(frame)))
        return None, Action.NONE

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            c, data = item
            try:
                c.async_write(data)
            except reactor.ServerInShutdownError:
                pass
            except Exception as e:  # pragma: no cover - reported by the test
                with self.lock:
                    self.problems.append(f"async_write raised {e!r}")

    def stop_worker(self) -> None:
        if self._worker is not None:
            self._q.put(None)
            self._worker.join(5)
            self._worker = None

    def wait_closed(self, n: int, timeout: float = SOCK_TIMEOUT) -> list[tuple[reactor.Conn, BaseException | None]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.closed) >= n, timeout)
            return list(self.closed)


# --- hand-made encodings (independent of reactor.codec) -----------------------------------------------------
class Framing:
    """How a cell's frames look on the wire, written out by hand."""

    def __init__(
        self, name: str, codec: Any, encode: Callable[[bytes], bytes], payload: Callable[[random.Random], bytes]
    ) -> None:
        self.name = name
        self.codec = codec
        self.encode = encode
        self.payload = payload


def _no_byte(rng: random.Random, forbidden: bytes, lo: int, hi: int) -> bytes:
    data = rng.randbytes(rng.randint(lo, hi)).replace(forbidden, b"_")
    assert forbidden not in data
    return data


def line_framing() -> Framing:
    return Framing("line", LineBasedFrameCodec(), lambda p: p + b"\n", lambda r: _no_byte(r, b"\n", 1, 1024))


def delimiter_framing() -> Framing:
    return Framing(
        "delimiter", DelimiterBasedFrameCodec(b"|"), lambda p: p + b"|", lambda r: _no_byte(r, b"|", 1, 1024)
    )


def fixed_framing() -> Framing:
    return Framing("fixed", FixedLengthFrameCodec(1024), lambda p: p, lambda r: r.randbytes(1024))


def length_field_framing(field_len: int) -> Framing:
    codec = LengthFieldBasedFrameCodec(
        EncoderConfig(byte_order="big", length_field_length=field_len),
        DecoderConfig(byte_order="big", length_field_length=field_len, initial_bytes_to_strip=field_len),
    )
    hi = 255 if field_len == 1 else 1024

    def encode(p: bytes) -> bytes:
        n = len(p)
        header = bytes((n >> (8 * i)) & 0xFF for i in reversed(range(field_len)))  # big-endian, by hand
        return header + p

    return Framing(f"length-field-{field_len}", codec, encode, lambda r: r.randbytes(r.randint(1, hi)))


FIELD_CYCLE = itertools.cycle([1, 2, 3, 4, 8])
CELLS = []
for _engine in ("main-reactor", "reuse-port"):
    for _mode in ("sync", "async"):
        for _loops in (1, 2):
            for _codec in ("line", "delimiter", "fixed", "length-field"):
                _field = next(FIELD_CYCLE) if _codec == "length-field" else 0
                _id = f"{_engine}-{_mode}-{_loops}loop-{_codec}{'-' + str(_field) if _field else ''}"
                CELLS.append(pytest.param(_engine, _mode, _loops, _codec, _field, id=_id))


def make_framing(codec: str, field: int) -> Framing:
    if codec == "line":
        return line_framing()
    if codec == "delimiter":
        return delimiter_framing()
    if codec == "fixed":
        return fixed_framing()
    return length_field_framing(field)


# --- client helpers -----------------------------------------------------------------------------------------
def recv_until_eof(s: socket.socket, limit: int = 1 << 20) -> tuple[bytes, BaseException | None]:
    """Everything until EOF (or a reset, returned as the second item)."""
    buf = bytearray()
    while len(buf) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError as e:
            return bytes(buf), e
        if not chunk:
            return bytes(buf), None
        buf += chunk
    raise AssertionError("no EOF")


def run_clients(n: int, body: Callable[[int], None], deadline: float = CELL_DEADLINE) -> list[str]:
    errors: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            body(i)
        except BaseException as e:  # reported below
            with lock:
                errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=run, args=(i,), name=f"codec-client-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"clients still running after {deadline} s: {alive}"
    return errors


# --- the matrix ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("engine", "mode", "loops", "codec", "field"), CELLS)
def test_codec_serve(start_server: Any, engine: str, mode: str, loops: int, codec: str, field: int) -> None:
    framing = make_framing(codec, field)
    handler = CodecEchoServer(mode)
    try:
        bg = start_server(
            handler,
            "tcp://127.0.0.1:0",
            codec=framing.codec,
            num_event_loop=loops,
            reuse_port=engine == "reuse-port",
            **OPTIONS,
        )
    except BaseException:
        handler.stop_worker()
        raise
    assert bg.server.num_event_loop == loops
    assert bg.server.reuse_port == (engine == "reuse-port")
    sent_payloads: list[list[bytes]] = [[] for _ in range(CLIENTS)]

    def client(i: int) -> None:
        rng = random.Random(f"{engine}{mode}{loops}{codec}{field}{i}")
        with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
            greeting = recv_up_to(s, len(GREETING))
            assert greeting == GREETING, f"greeting {greeting!r}"
            for r in range(ROUNDS):
                payloads = [framing.payload(rng) for _ in range(FRAMES_PER_ROUND)]
                wire = b"".join(framing.encode(p) for p in payloads)
                s.sendall(wire)  # many frames per send: pipelined
                echo = recv_up_to(s, len(wire))
                assert len(echo) == len(wire), f"round {r}: got {len(echo)} of {len(wire)} bytes"
                if echo != wire:
                    at = next(k for k in range(len(wire)) if echo[k] != wire[k])
                    raise AssertionError(f"round {r}: echo differs from byte {at} of {len(wire)}")
                sent_payloads[i].extend(payloads)

    errors = run_clients(CLIENTS, client)
    assert errors == []
    closed = handler.wait_closed(CLIENTS)
    assert len(closed) == CLIENTS
    assert [err for _, err in closed] == [None] * CLIENTS
    assert handler.problems == []
    # react saw exactly the payloads (for the length field: without the header).
    assert sorted(handler.frames) == sorted(p for ps in sent_payloads for p in ps)
    assert handler.opened == CLIENTS


# --- codec errors close only the offending connection -------------------------------------------------------
def _lf_adjusted() -> LengthFieldBasedFrameCodec:
    return LengthFieldBasedFrameCodec(
        EncoderConfig(length_field_length=1, length_adjustment=10),
        DecoderConfig(length_field_length=1, length_adjustment=-10, initial_bytes_to_strip=1),
    )


def _lf_strip4() -> LengthFieldBasedFrameCodec:
    return LengthFieldBasedFrameCodec(
        EncoderConfig(length_field_length=2),
        DecoderConfig(length_field_length=2, initial_bytes_to_strip=4),
    )


ERROR_CASES = [
    # (codec factory, a good exchange (sent, echoed), bad bytes, expected error type, where to split the
    # bad bytes into two reads without triggering the error on the first part)
    pytest.param(lambda: LineBasedFrameCodec(max_frame_length=64), (b"ok\n", b"ok\n"), b"x" * 100,
                 FrameTooLongError, 30, id="line-no-newline-too-long"),
    pytest.param(lambda: DelimiterBasedFrameCodec(b"|", max_frame_length=16), (b"ok|", b"ok|"), b"y" * 40 + b"|",
                 FrameTooLongError, 10, id="delimiter-delimited-too-long"),
    pytest.param(lambda: LengthFieldBasedFrameCodec(), (b"\x00\x00\x00\x02ok", b"\x00\x00\x00\x06\x00\x00\x00\x02ok"),
                 b"\xff\xff\xff\xff", FrameTooLongError, 2, id="length-field-4gib"),
    pytest.param(_lf_adjusted, (b"\x0cok", b"\x0cok"), b"\x03abc", TooLessLengthError, 0, id="length-field-negative"),
    pytest.param(_lf_strip4, (b"\x00\x03okk", b"\x00\x01k"), b"\x00\x01z", CodecError, 1,
                 id="length-field-strip-too-big"),
]


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "two-reads"])
@pytest.mark.parametrize(("factory", "good", "bad", "error", "cut"), ERROR_CASES)
def test_codec_error_closes_only_that_connection(
    start_server: Any, factory: Callable[[], Any], good: tuple[bytes, bytes], bad: bytes, error: type, cut: int,
    split: bool,
) -> None:
    handler = CodecEchoServer("sync")
    bg = start_server(handler, codec=factory(), **OPTIONS)
    sent, echoed = good
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as healthy, connect_nodelay(bg.addr, SOCK_TIMEOUT) as offender:
        assert recv_up_to(healthy, len(GREETING)) == GREETING
        assert recv_up_to(offender, len(GREETING)) == GREETING
        healthy.sendall(sent)
        assert recv_up_to(healthy, len(echoed)) == echoed

        expect_offender = echoed
        if not split:
            # One send: the good frame is served, then the bad bytes close the connection.
            offender.sendall(sent + bad)
        else:
            # The error comes in a later read, with the first part left over in the inbound buffer.
            offender.sendall(sent + bad[:cut])
            assert recv_up_to(offender, len(echoed)) == echoed
            time.sleep(0.05)
            assert handler.closed == [], "the first part alone already closed the connection"
            expect_offender = b""
            offender.sendall(bad[cut:])
        data, reset = recv_until_eof(offender)
        assert data == expect_offender, f"offender got {data!r} (reset: {reset!r})"

        closed = handler.wait_closed(1)
        assert len(closed) == 1
        conn, err = closed[0]
        assert type(err) is error, f"on_closed got {err!r}, expected a {error.__name__}"
        assert not conn.opened

        # The other connection is still served, after the closure.
        for _ in range(3):
            healthy.sendall(sent)
            assert recv_up_to(healthy, len(echoed)) == echoed
        assert bg.server.count_connections() == 1
    closed = handler.wait_closed(2)
    assert len(closed) == 2 and closed[1][1] is None
    assert handler.problems == []


# --- empty frames -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("codec", "stream", "frames"),
    [
        (LineBasedFrameCodec, b"a\n\n\nb\n\n", [b"a", b"", b"", b"b", b""]),
        (lambda: DelimiterBasedFrameCodec(b"|"), b"|x||y|", [b"", b"x", b"", b"y"]),
    ],
    ids=["line", "delimiter"],
)
def test_empty_frames_mid_stream_are_echoed(
    start_server: Any, mode: str, codec: Any, stream: bytes, frames: list[bytes]
) -> None:
    handler = CodecEchoServer(mode)
    try:
        bg = start_server(handler, codec=codec(), **OPTIONS)
    except BaseException:
        handler.stop_worker()
        raise
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
        assert recv_up_to(s, len(GREETING)) == GREETING
        # One send, nothing after it: every frame must be decoded from this
        # read (gnet's nil empty frame would leave the rest for a later read).
        s.sendall(stream)
        assert recv_up_to(s, len(stream)) == stream
    assert handler.frames == frames


# --- edge-triggered mode, and frames larger than the read buffer --------------------------------------------
@pytest.mark.parametrize("codec", ["line", "delimiter", "fixed", "length-field"])
def test_codec_serve_edge_triggered(start_server: Any, codec: str) -> None:
    framing = make_framing(codec, 3)
    handler = CodecEchoServer("sync")
    bg = start_server(handler, codec=framing.codec, edge_triggered=True, num_event_loop=2,
                      edge_triggered_io_chunk=16384, **OPTIONS)

    def client(i: int) -> None:
        rng = random.Random(f"et{codec}{i}")
        with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
            assert recv_up_to(s, len(GREETING)) == GREETING
            for _ in range(ROUNDS):
                wire = b"".join(framing.encode(framing.payload(rng)) for _ in range(FRAMES_PER_ROUND))
                s.sendall(wire)
                assert recv_up_to(s, len(wire)) == wire

    assert run_clients(CLIENTS, client) == []
    assert handler.problems == []


@pytest.mark.parametrize("edge_triggered", [False, True], ids=["lt", "et"])
@pytest.mark.parametrize("codec", ["line", "length-field"])
def test_frames_larger_than_the_read_buffer(start_server: Any, codec: str, edge_triggered: bool) -> None:
    """Each frame spans many 8 KiB reads: the partial frame accumulates in the inbound buffer."""
    if codec == "line":
        framing = Framing("line", LineBasedFrameCodec(), lambda p: p + b"\n",
                          lambda r: _no_byte(r, b"\n", 20_000, 200_000))
    else:
        framing = Framing(
            "length-field-4",
            LengthFieldBasedFrameCodec(EncoderConfig(length_field_length=4),
                                       DecoderConfig(length_field_length=4, initial_bytes_to_strip=4)),
            lambda p: len(p).to_bytes(4, "big") + p,
            lambda r: r.randbytes(r.randint(20_000, 200_000)),
        )
    handler = CodecEchoServer("sync")
    bg = start_server(handler, codec=framing.codec, edge_triggered=edge_triggered, **OPTIONS)
    rng = random.Random(f"big{codec}{edge_triggered}")
    payloads = [framing.payload(rng) for _ in range(6)]
    wire = b"".join(framing.encode(p) for p in payloads)
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
        assert recv_up_to(s, len(GREETING)) == GREETING
        # Send from a thread while reading here: the echo of ~0.6 MB must not
        # wait for the whole request to be written (8 KiB socket buffers).
        sender = threading.Thread(target=s.sendall, args=(wire,), name="big-sender", daemon=True)
        sender.start()
        try:
            echo = recv_up_to(s, len(wire))
        finally:
            sender.join(SOCK_TIMEOUT)
        assert not sender.is_alive()
    assert echo == wire
    assert handler.frames == payloads


# --- encode errors ------------------------------------------------------------------------------------------
class BadLengthEcho(CodecEchoServer):
    """Answers each 8-byte frame with 15 bytes: FixedLengthFrameCodec(8).encode refuses them."""

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        assert frame is not None
        with self.lock:
            self.frames.append(frame)
        if frame.startswith(b"good"):
            return frame, Action.NONE
        if self.mode == "sync":
            return frame + b"1234567", Action.NONE
        self._q.put((c, frame + b"1234567"))
        return None, Action.NONE


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_encode_error_closes_the_connection(start_server: Any, mode: str) -> None:
    handler = BadLengthEcho(mode)
    try:
        bg = start_server(handler, codec=FixedLengthFrameCodec(8), **OPTIONS)
    except BaseException:
        handler.stop_worker()
        raise
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
        assert recv_up_to(s, len(GREETING)) == GREETING
        s.sendall(b"good0001")
        assert recv_up_to(s, 8) == b"good0001"
        s.sendall(b"bad00001")
        data, _ = recv_until_eof(s)
        assert data == b""  # nothing of the refused answer was written
    closed = handler.wait_closed(1)
    assert len(closed) == 1
    assert type(closed[0][1]) is reactor.InvalidFixedLengthError
