"""Codec unit and property tests (gnet: codec_test.go, plus reactor's own decisions).

Pure encode/decode tests drive the codecs through ``FakeConn``: a plain
bytearray implementing the read-side ``Conn`` methods the codecs use, with
the semantics ``Conn`` documents (no kernel is involved in framing, so this is
a data structure, not a mock of the kernel). ``test_fake_conn_matches_real_conn``
checks, through a real server and a real socket, that ``FakeConn`` answers
exactly as a real ``Conn`` does, including the path where bytes left over from
an earlier read sit in the connection's inbound ring.

A few tests then run the codecs on real connections with the input arriving
one byte per read, so delimiters and length fields are split across reads.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactor
from netsupport import connect_nodelay, recv_up_to
from reactor import (
    Action,
    BuiltInFrameCodec,
    CodecError,
    DecoderConfig,
    DelimiterBasedFrameCodec,
    EncoderConfig,
    FixedLengthFrameCodec,
    FrameTooLongError,
    InvalidFixedLengthError,
    LengthFieldBasedFrameCodec,
    LineBasedFrameCodec,
    TooLessLengthError,
    UnsupportedLengthError,
)

SOCK_TIMEOUT = 3.0
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- FakeConn: Conn's read side over a bytearray --------------------------------------------------
class FakeConn:
    """The read-side buffer methods of :class:`reactor.Conn`, over a bytearray.

    Semantics copied from ``Conn``'s docstrings: ``read_n`` with n <= 0 or
    n > buffered returns everything; ``shift_n(0)`` consumes nothing,
    negative or too large consumes everything; ``peek``/``next``/``discard``
    with n < 0 mean "all"; ``find`` returns -1 when absent.
    """

    def __init__(self, data: bytes = b"") -> None:
        self.buf = bytearray(data)

    def feed(self, data: bytes) -> None:
        self.buf += data

    # v1
    def read(self) -> bytes:
        return bytes(self.buf)

    def buffer_length(self) -> int:
        return len(self.buf)

    def read_n(self, n: int) -> tuple[int, bytes]:
        total = len(self.buf)
        if n <= 0 or n > total:
            n = total
        return n, bytes(self.buf[:n])

    def shift_n(self, n: int) -> int:
        if n == 0:
            return 0
        total = len(self.buf)
        if n < 0 or n >= total:
            self.buf.clear()
            return total
        del self.buf[:n]
        return n

    def reset_buffer(self) -> None:
        self.buf.clear()

    # v2
    def peek(self, n: int = -1) -> bytes:
        total = len(self.buf)
        return bytes(self.buf[: total if n < 0 or n > total else n])

    def next(self, n: int = -1) -> bytes:
        data = self.peek(n)
        del self.buf[: len(data)]
        return data

    def discard(self, n: int = -1) -> int:
        total = len(self.buf)
        if n < 0 or n >= total:
            self.buf.clear()
            return total
        del self.buf[:n]
        return n

    def find(self, sub: bytes, start: int = 0) -> int:
        return self.buf.find(sub, max(start, 0))

    def inbound_buffered(self) -> int:
        return len(self.buf)


def drain(codec: Any, c: FakeConn, limit: int = 100_000) -> list[bytes]:
    """Call decode until it returns None (bounded)."""
    frames = []
    for _ in range(limit):
        frame = codec.decode(c)
        if frame is None:
            return frames
        assert isinstance(frame, bytes), f"decode returned {type(frame).__name__}, not bytes"
        frames.append(frame)
    raise AssertionError(f"decode did not return None within {limit} calls")


def feed_and_decode(codec: Any, chunks: list[bytes]) -> tuple[list[bytes], FakeConn]:
    c = FakeConn()
    frames: list[bytes] = []
    for chunk in chunks:
        c.feed(chunk)
        frames.extend(drain(codec, c))
    return frames, c


# --- splits of an encoded stream -----------------------------------------------------------------
@st.composite
def splits(draw: Any, data: bytes) -> list[bytes]:
    """``data`` cut into chunks: whole, one byte at a time, or at random points."""
    if not data:
        return [b""]
    mode = draw(st.sampled_from(["whole", "bytes", "random"]))
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=min(40, len(data)))))
    out, prev = [], 0
    for cut in cuts:
        if prev < cut < len(data):
            out.append(data[prev:cut])
            prev = cut
    out.append(data[prev:])
    return out


def chunked(draw: Any, data: bytes) -> list[bytes]:
    chunks = draw.draw(splits(data), label="chunks")
    assert b"".join(chunks) == data
    return chunks


# --- property tests ----------------------------------------------------------------------------------
def _frames_without(forbidden: bytes, max_size: int = 64, max_frames: int = 20) -> st.SearchStrategy[list[bytes]]:
    frame = st.binary(max_size=max_size).filter(lambda b: forbidden not in b)
    return st.lists(frame, max_size=max_frames)


@PROPERTY
@given(data=st.data(), frames=_frames_without(b"\n"))
def test_line_codec_round_trip_any_split(data: Any, frames: list[bytes]) -> None:
    codec = LineBasedFrameCodec()
    stream = b"".join(codec.encode(None, f) for f in frames)  # type: ignore[arg-type]
    assert stream == b"".join(f + b"\n" for f in frames)
    got, c = feed_and_decode(codec, chunked(data, stream))
    assert got == frames
    assert c.inbound_buffered() == 0


@PROPERTY
@given(data=st.data(), delimiter=st.sampled_from([b"\r\n", b"|"]), raw=st.data())
def test_delimiter_codec_round_trip_any_split(data: Any, delimiter: bytes, raw: Any) -> None:
    # Frames may hold lone b"\r" / b"\n" (even end with b"\r": b"x\r" + b"\r\n"
    # first matches at the real delimiter), only never the delimiter itself.
    frames = raw.draw(_frames_without(delimiter), label="frames")
    codec = DelimiterBasedFrameCodec(delimiter)
    stream = b"".join(codec.encode(None, f) for f in frames)  # type: ignore[arg-type]
    assert stream == b"".join(f + delimiter for f in frames)
    got, c = feed_and_decode(codec, chunked(data, stream))
    assert got == frames
    assert c.inbound_buffered() == 0


@PROPERTY
@given(
    data=st.data(),
    frame_length=st.sampled_from([1, 3, 8, 64]),
    counts=st.lists(st.integers(0, 4), max_size=10),
)
def test_fixed_length_codec_round_trip_any_split(data: Any, frame_length: int, counts: list[int]) -> None:
    codec = FixedLengthFrameCodec(frame_length)
    # Each encode call may carry several frames at once (a multiple of the length).
    blobs = [data.draw(st.binary(min_size=n * frame_length, max_size=n * frame_length)) for n in counts]
    stream = b"".join(codec.encode(None, b) for b in blobs)  # type: ignore[arg-type]
    assert stream == b"".join(blobs)
    expected = [stream[i : i + frame_length] for i in range(0, len(stream), frame_length)]
    got, c = feed_and_decode(codec, chunked(data, stream))
    assert got == expected
    assert c.inbound_buffered() == 0


# How the length field's value relates to the message (Netty's examples):
#   "payload": value = len(msg)
#   "plus_field": value = field_len + len(msg) (encoder: length_includes_length_field_length)
#   "whole_frame": value = offset + field_len + len(msg)
#   "bias": value = len(msg) + 7 (encoder: length_adjustment=7)
LENGTH_MODES = ["payload", "plus_field", "whole_frame", "bias"]


def _length_value(mode: str, offset: int, field_len: int, msg_len: int) -> tuple[int, int]:
    """(value written in the field, decoder length_adjustment)."""
    if mode == "payload":
        return msg_len, 0
    if mode == "plus_field":
        return field_len + msg_len, -field_len
    if mode == "whole_frame":
        return offset + field_len + msg_len, -(offset + field_len)
    if mode == "bias":
        return msg_len + 7, -7
    raise AssertionError(mode)


@pytest.mark.parametrize("order", ["big", "little"])
@pytest.mark.parametrize("field_len", [1, 2, 3, 4, 8])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    offset=st.sampled_from([0, 2]),
    mode=st.sampled_from(LENGTH_MODES),
    strip=st.sampled_from(["none", "header", "header+field"]),
    messages=st.lists(st.binary(max_size=200), max_size=12),
)
def test_length_field_codec_round_trip_any_split(
    data: Any, field_len: int, order: str, offset: int, mode: str, strip: str, messages: list[bytes]
) -> None:
    strip_n = {"none": 0, "header": offset, "header+field": offset + field_len}[strip]
    _, adjustment = _length_value(mode, offset, field_len, 0)
    codec = LengthFieldBasedFrameCodec(
        EncoderConfig(
            byte_order=order,
            length_field_length=field_len,
            length_adjustment=7 if mode == "bias" else 0,
            length_includes_length_field_length=mode == "plus_field",
        ),
        DecoderConfig(
            byte_order=order,
            length_field_offset=offset,
            length_field_length=field_len,
            length_adjustment=adjustment,
            initial_bytes_to_strip=strip_n,
        ),
    )
    frames = []
    for msg in messages:
        header = data.draw(st.binary(min_size=offset, max_size=offset))
        value, _ = _length_value(mode, offset, field_len, len(msg))
        field = value.to_bytes(field_len, order)  # type: ignore[arg-type]
        if offset == 0 and mode != "whole_frame":
            # The encoder writes no header: with offset 0 its output is the frame.
            assert codec.encode(None, msg) == field + msg  # type: ignore[arg-type]
        frames.append(header + field + msg)
    stream = b"".join(frames)
    got, c = feed_and_decode(codec, chunked(data, stream))
    assert got == [f[strip_n:] for f in frames]
    if strip == "header+field":
        assert got == messages  # the original payloads
    assert c.inbound_buffered() == 0


@PROPERTY
@given(data=st.data(), chunks_data=st.binary(max_size=300))
def test_builtin_codec_returns_everything_buffered(data: Any, chunks_data: bytes) -> None:
    codec = BuiltInFrameCodec()
    assert codec.encode(None, chunks_data) == chunks_data  # type: ignore[arg-type]
    got, c = feed_and_decode(codec, chunked(data, chunks_data))
    assert b"".join(got) == chunks_data
    assert all(got), "the built-in codec returned an empty frame"
    assert c.inbound_buffered() == 0


# --- gnet's codec unit tests ---------------------------------------------------------------------------
def _lf(field_len: int, order: str = "big", strip: int | None = None, **dec: Any) -> LengthFieldBasedFrameCodec:
    return LengthFieldBasedFrameCodec(
        EncoderConfig(byte_order=order, length_field_length=field_len),
        DecoderConfig(
            byte_order=order,
            length_field_length=field_len,
            initial_bytes_to_strip=field_len if strip is None else strip,
            **dec,
        ),
    )


@pytest.mark.parametrize(
    ("field_len", "too_big"),
    [(1, 256), (2, 65536), (3, 16777216)],
)
def test_length_field_encode_rejects_payload_too_big_for_field(field_len: int, too_big: int) -> None:
    codec = _lf(field_len)
    fits = codec.encode(None, bytes(too_big - 1))  # type: ignore[arg-type]
    assert fits[:field_len] == (too_big - 1).to_bytes(field_len, "big")
    assert len(fits) == field_len + too_big - 1
    with pytest.raises(CodecError):
        codec.encode(None, bytes(too_big))  # type: ignore[arg-type]


@pytest.mark.parametrize("field_len", [4, 8])
def test_length_field_encode_checks_4_and_8_byte_fields_too(field_len: int) -> None:
    # gnet truncates silently; reactor refuses (an adjustment stands in for a 4 GiB payload).
    too_far = 1 << (8 * field_len)
    codec = LengthFieldBasedFrameCodec(EncoderConfig(length_field_length=field_len, length_adjustment=too_far))
    with pytest.raises(CodecError):
        codec.encode(None, b"")  # type: ignore[arg-type]
    ok = LengthFieldBasedFrameCodec(EncoderConfig(length_field_length=field_len, length_adjustment=too_far - 2))
    assert ok.encode(None, b"x") == b"\xff" * field_len + b"x"  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["big", "little"])
@pytest.mark.parametrize("field_len", [1, 2, 3, 4, 8])
def test_length_field_round_trip_each_field_size_and_order(field_len: int, order: str) -> None:
    codec = _lf(field_len, order)
    payload = bytes(range(200))
    encoded = codec.encode(None, payload)  # type: ignore[arg-type]
    assert encoded == len(payload).to_bytes(field_len, order) + payload  # type: ignore[arg-type]
    if field_len > 1:
        # The byte order really is applied: 200 = 0x00c8 differs between orders.
        other = "little" if order == "big" else "big"
        assert encoded[:field_len] != len(payload).to_bytes(field_len, other)  # type: ignore[arg-type]
    c = FakeConn(encoded + encoded)
    assert drain(codec, c) == [payload, payload]
    assert c.inbound_buffered() == 0


def test_length_field_8_byte_little_endian_large_value_round_trip() -> None:
    codec = LengthFieldBasedFrameCodec(
        EncoderConfig(byte_order="little", length_field_length=8, length_adjustment=0x0102030405060000),
        DecoderConfig(byte_order="little", length_field_length=8, length_adjustment=-0x0102030405060000,
                      initial_bytes_to_strip=8),
        max_frame_length=1 << 62,
    )
    encoded = codec.encode(None, b"abc")  # type: ignore[arg-type]
    assert encoded[:8] == bytes([3, 0, 6, 5, 4, 3, 2, 1])
    assert drain(codec, FakeConn(encoded)) == [b"abc"]


@pytest.mark.parametrize("field_len", [1, 2, 3, 4, 8])
def test_length_field_zero_length_payload_round_trip(field_len: int) -> None:
    codec = _lf(field_len)
    encoded = codec.encode(None, b"")  # type: ignore[arg-type]
    assert encoded == bytes(field_len)
    c = FakeConn(encoded * 3)
    assert drain(codec, c) == [b"", b"", b""]
    assert c.inbound_buffered() == 0


def test_fixed_length_encode_rejects_non_multiple() -> None:
    codec = FixedLengthFrameCodec(8)
    with pytest.raises(InvalidFixedLengthError):
        codec.encode(None, bytes(15))  # type: ignore[arg-type]
    assert codec.encode(None, bytes(16)) == bytes(16)  # type: ignore[arg-type]
    assert codec.encode(None, b"") == b""  # type: ignore[arg-type]


def test_fixed_length_decode_waits_for_a_whole_frame() -> None:
    codec = FixedLengthFrameCodec(4)
    c = FakeConn(b"abc")
    assert codec.decode(c) is None
    assert c.inbound_buffered() == 3
    c.feed(b"defgh")
    assert drain(codec, c) == [b"abcd", b"efgh"]
    assert c.inbound_buffered() == 0


# --- reactor's decisions ------------------------------------------------------------------------------------
def test_empty_line_is_a_frame_and_decoding_continues_after_it() -> None:
    codec = LineBasedFrameCodec()
    c = FakeConn(b"\n\nabc\n\n")
    assert codec.decode(c) == b""
    # The next frame in the same buffer is decoded too (gnet's nil frame
    # would end the decode loop here).
    assert codec.decode(c) == b""
    assert codec.decode(c) == b"abc"
    assert codec.decode(c) == b""
    assert codec.decode(c) is None


def test_empty_frame_with_multi_byte_delimiter() -> None:
    codec = DelimiterBasedFrameCodec(b"\r\n")
    assert drain(codec, FakeConn(b"\r\n\r\nx\r\n")) == [b"", b"", b"x"]


def test_line_codec_keeps_carriage_return() -> None:
    codec = LineBasedFrameCodec()
    assert drain(codec, FakeConn(b"GET\r\n\r\n")) == [b"GET\r", b"\r"]
    assert codec.encode(None, b"GET\r") == b"GET\r\n"  # type: ignore[arg-type]


def test_delimiter_codec_accepts_a_single_int_byte_like_gnet() -> None:
    codec = DelimiterBasedFrameCodec(ord("|"))  # type: ignore[arg-type]
    assert codec.delimiter == b"|"
    assert drain(codec, FakeConn(b"a|b|")) == [b"a", b"b"]


def test_multi_byte_delimiter_split_across_feeds() -> None:
    codec = DelimiterBasedFrameCodec(b"\r\n", max_frame_length=4)
    c = FakeConn(b"abcd\r")
    # 5 bytes without the full delimiter, but the b"\r" may start it: wait.
    assert codec.decode(c) is None
    c.feed(b"\nxy")
    assert codec.decode(c) == b"abcd"
    assert codec.decode(c) is None
    assert c.peek() == b"xy"


def test_negative_adjusted_length_raises_too_less_length() -> None:
    codec = LengthFieldBasedFrameCodec(decoder_config=DecoderConfig(length_field_length=2, length_adjustment=-10))
    c = FakeConn(b"\x00\x09" + b"x" * 20)
    with pytest.raises(TooLessLengthError):
        codec.decode(c)
    # Exactly zero is fine.
    assert drain(codec, FakeConn(b"\x00\x0a")) == [b"\x00\x0a"]


def test_encode_negative_adjusted_length_raises_too_less_length() -> None:
    codec = LengthFieldBasedFrameCodec(EncoderConfig(length_field_length=2, length_adjustment=-5))
    with pytest.raises(TooLessLengthError):
        codec.encode(None, b"abc")  # type: ignore[arg-type]
    assert codec.encode(None, b"abcde") == b"\x00\x00abcde"  # type: ignore[arg-type]


def test_4gib_announced_length_is_refused_before_buffering() -> None:
    codec = LengthFieldBasedFrameCodec()  # 4-byte big-endian field, default max 16 MiB
    c = FakeConn(b"\xff\xff\xff\xff")  # only the header: nothing of the frame yet
    with pytest.raises(FrameTooLongError):
        codec.decode(c)


def test_length_field_max_frame_length_boundary_counts_the_header() -> None:
    codec = LengthFieldBasedFrameCodec(
        decoder_config=DecoderConfig(length_field_length=2), max_frame_length=10
    )
    assert drain(codec, FakeConn(b"\x00\x08" + b"y" * 8)) == [b"\x00\x08" + b"y" * 8]  # total 10
    with pytest.raises(FrameTooLongError):
        codec.decode(FakeConn(b"\x00\x09"))  # total 11


@pytest.mark.parametrize("codec_factory", [
    lambda: LineBasedFrameCodec(max_frame_length=8),
    lambda: DelimiterBasedFrameCodec(b"|", max_frame_length=8),
])
def test_delimiter_max_frame_length_boundary(codec_factory: Any) -> None:
    codec = codec_factory()
    d = codec.delimiter
    assert drain(codec, FakeConn(b"12345678" + d)) == [b"12345678"]
    c = FakeConn(b"12345678")  # at the limit, no delimiter yet: wait for it
    assert codec.decode(c) is None
    c.feed(b"9")  # beyond the limit without a delimiter
    with pytest.raises(FrameTooLongError):
        codec.decode(c)
    with pytest.raises(FrameTooLongError):
        codec.decode(FakeConn(b"123456789" + d))  # delimited, but too long


def test_line_without_newline_beyond_default_max_frame_length() -> None:
    codec = LineBasedFrameCodec()
    c = FakeConn(bytes(1024 * 1024))
    assert codec.decode(c) is None
    c.feed(b"x")
    with pytest.raises(FrameTooLongError):
        codec.decode(c)


def test_initial_bytes_to_strip_larger_than_frame() -> None:
    codec = LengthFieldBasedFrameCodec(
        decoder_config=DecoderConfig(length_field_length=1, initial_bytes_to_strip=5)
    )
    with pytest.raises(CodecError):
        codec.decode(FakeConn(b"\x02ab"))  # frame of 3 bytes, strip 5
    # Strip exactly the frame: an empty frame, not an error.
    codec3 = LengthFieldBasedFrameCodec(
        decoder_config=DecoderConfig(length_field_length=1, initial_bytes_to_strip=3)
    )
    assert drain(codec3, FakeConn(b"\x02ab")) == [b""]


def test_length_field_with_header_offset_and_partial_input() -> None:
    codec = LengthFieldBasedFrameCodec(
        decoder_config=DecoderConfig(length_field_offset=2, length_field_length=3, initial_bytes_to_strip=5)
    )
    c = FakeConn(b"HD\x00\x00")
    assert codec.decode(c) is None  # field not complete
    c.feed(b"\x04ab")
    assert codec.decode(c) is None  # message not complete
    assert c.inbound_buffered() == 7  # nothing consumed while waiting
    c.feed(b"cdHD\x00\x00\x00")
    assert drain(codec, c) == [b"abcd", b""]


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        LengthFieldBasedFrameCodec(EncoderConfig(byte_order="middle"))
    with pytest.raises(ValueError):
        LengthFieldBasedFrameCodec(decoder_config=DecoderConfig(byte_order="network"))
    with pytest.raises(UnsupportedLengthError):
        LengthFieldBasedFrameCodec(EncoderConfig(length_field_length=5))
    with pytest.raises(UnsupportedLengthError):
        LengthFieldBasedFrameCodec(decoder_config=DecoderConfig(length_field_length=5))
    with pytest.raises(UnsupportedLengthError):
        LengthFieldBasedFrameCodec(decoder_config=DecoderConfig(length_field_length=0))
    with pytest.raises(ValueError):
        LengthFieldBasedFrameCodec(decoder_config=DecoderConfig(length_field_offset=-1))
    with pytest.raises(ValueError):
        LengthFieldBasedFrameCodec(decoder_config=DecoderConfig(initial_bytes_to_strip=-1))
    with pytest.raises(ValueError):
        LengthFieldBasedFrameCodec(max_frame_length=0)
    with pytest.raises(ValueError):
        DelimiterBasedFrameCodec(b"")
    with pytest.raises(ValueError):
        DelimiterBasedFrameCodec("|")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DelimiterBasedFrameCodec(b"|", max_frame_length=0)
    with pytest.raises(ValueError):
        LineBasedFrameCodec(max_frame_length=-1)
    with pytest.raises(ValueError):
        FixedLengthFrameCodec(0)
    # Valid ones construct, and they satisfy the protocol.
    for codec in (
        LengthFieldBasedFrameCodec(),
        LineBasedFrameCodec(),
        DelimiterBasedFrameCodec(b"\r\n"),
        FixedLengthFrameCodec(1),
        BuiltInFrameCodec(),
    ):
        assert isinstance(codec, reactor.ICodec)


def test_codec_errors_are_a_hierarchy() -> None:
    for cls in (FrameTooLongError, InvalidFixedLengthError, TooLessLengthError, UnsupportedLengthError):
        assert issubclass(cls, CodecError)
    assert issubclass(CodecError, reactor.ReactorError)


# --- through real connections -----------------------------------------------------------------------------------
class RecordingServer(reactor.EventServer):
    """Records decoded frames and on_closed errors; echoes each frame (encoded by the codec)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[bytes] = []
        self.closed: list[BaseException | None] = []
        self.got = threading.Condition(self.lock)

    def react(self, frame: bytes | None, c: reactor.Conn) -> tuple[bytes | None, Action]:
        with self.got:
            self.frames.append(frame)  # type: ignore[arg-type]
            self.got.notify_all()
        return frame, Action.NONE

    def on_closed(self, c: reactor.Conn, err: BaseException | None) -> Action:
        with self.got:
            self.closed.append(err)
            self.got.notify_all()
        return Action.NONE

    def wait_frames(self, n: int, timeout: float = SOCK_TIMEOUT) -> list[bytes]:
        with self.got:
            self.got.wait_for(lambda: len(self.frames) >= n, timeout)
            return list(self.frames)


def _send_byte_by_byte(s: socket.socket, data: bytes, pause: float = 0.003) -> None:
    # With TCP_NODELAY and a pause, each byte arrives in its own read(2)
    # most of the time, so frames, delimiters and fields straddle reads.
    for i in range(len(data)):
        s.sendall(data[i : i + 1])
        time.sleep(pause)


LF3 = LengthFieldBasedFrameCodec(
    EncoderConfig(length_field_length=3, byte_order="little"),
    DecoderConfig(length_field_length=3, byte_order="little", length_field_offset=1, initial_bytes_to_strip=4),
)


@pytest.mark.parametrize(
    ("codec", "stream", "frames", "echo"),
    [
        (LineBasedFrameCodec(), b"ab\n\nc\r\n", [b"ab", b"", b"c\r"], b"ab\n\nc\r\n"),
        (DelimiterBasedFrameCodec(b"\r\n"), b"x\r\r\n\r\nyz\r\n", [b"x\r", b"", b"yz"], b"x\r\r\n\r\nyz\r\n"),
        (FixedLengthFrameCodec(3), b"abcdefghi", [b"abc", b"def", b"ghi"], b"abcdefghi"),
        # Offset 1 header byte ("H"), little-endian 3-byte field; the echo is
        # re-encoded without the header byte (the encoder writes none).
        (LF3, b"H\x02\x00\x00hiH\x00\x00\x00", [b"hi", b""], b"\x02\x00\x00hi\x00\x00\x00"),
    ],
    ids=["line", "crlf", "fixed", "length-field"],
)
def test_codec_on_real_conn_one_byte_per_read(
    start_server: Any, codec: Any, stream: bytes, frames: list[bytes], echo: bytes
) -> None:
    handler = RecordingServer()
    bg = start_server(handler, codec=codec)
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
        _send_byte_by_byte(s, stream)
        assert handler.wait_frames(len(frames)) == frames
        assert recv_up_to(s, len(echo)) == echo
    assert handler.frames == frames


class ProbeCodec:
    """A codec that compares a real Conn's buffer methods with FakeConn's on the same bytes.

    ``decode`` never returns a frame; once ``consume_at`` bytes are buffered it
    consumes some with each consuming method, in lockstep on both.
    """

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.calls = 0
        self.saw_leftover = False  # a decode where bytes from an earlier read were buffered
        self.done = threading.Event()

    def encode(self, c: Any, data: bytes) -> bytes:
        return data

    def _cmp(self, what: str, real: Any, fake: Any) -> None:
        if real != fake:
            self.mismatches.append(f"{what}: real {real!r} != fake {fake!r}")

    def decode(self, c: reactor.Conn) -> bytes | None:
        self.calls += 1
        if c.has_leftover():
            self.saw_leftover = True
        fake = FakeConn(c.peek(-1))
        self._cmp("read", c.read(), fake.read())
        self._cmp("buffer_length", c.buffer_length(), fake.buffer_length())
        self._cmp("inbound_buffered", c.inbound_buffered(), fake.inbound_buffered())
        total = c.inbound_buffered()
        for n in (-1, 0, 1, 3, total - 1, total, total + 1):
            self._cmp(f"read_n({n})", c.read_n(n), fake.read_n(n))
            self._cmp(f"peek({n})", c.peek(n), fake.peek(n))
        for sub in (b"|", b"||", b"ab", b"b|c", b"zz", b"\x00"):
            for start in (0, 1, 5, total):
                self._cmp(f"find({sub!r}, {start})", c.find(sub, start), fake.find(sub, start))
        if total >= 30:
            self._cmp("shift_n(0)", c.shift_n(0), fake.shift_n(0))
            self._cmp("discard(2)", c.discard(2), fake.discard(2))
            self._cmp("next(3)", c.next(3), fake.next(3))
            self._cmp("shift_n(4)", c.shift_n(4), fake.shift_n(4))
            self._cmp("find after consuming", c.find(b"|"), fake.find(b"|"))
            self._cmp("read after consuming", c.read(), fake.read())
            self._cmp("next(-1)", c.next(-1), fake.next(-1))
            self._cmp("empty read", c.read(), fake.read())
            self._cmp("empty buffer_length", c.buffer_length(), fake.buffer_length())
            self._cmp("empty discard", c.discard(5), fake.discard(5))
            self.done.set()
        return None


def test_fake_conn_matches_real_conn(start_server: Any) -> None:
    probe = ProbeCodec()
    bg = start_server(reactor.EventServer(), codec=probe)
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
        # Two sends with pauses: the second read finds the first one's bytes
        # left over in the inbound ring, and b"b|c" straddles the two reads.
        s.sendall(b"ab|ab|zzab|")
        time.sleep(0.1)
        s.sendall(b"b|c||x\x00yab|ab|ab|ab|abc|")
        assert probe.done.wait(SOCK_TIMEOUT), f"probe never saw 30 bytes ({probe.calls} decode calls)"
    assert probe.saw_leftover, "the second read did not see leftover bytes: the inbound path was not exercised"
    assert probe.mismatches == []


class FindProbe:
    """Records ``c.find(b"x", -1)`` on each decode; never returns a frame."""

    def __init__(self) -> None:
        self.results: list[tuple[bool, bytes, int]] = []
        self.second = threading.Event()

    def encode(self, c: Any, data: bytes) -> bytes:
        return data

    def decode(self, c: reactor.Conn) -> bytes | None:
        leftover = bool(c._inbound)  # type: ignore[attr-defined]
        self.results.append((leftover, c.peek(-1), c.find(b"x", -1)))
        if leftover:
            self.second.set()
        return None


def test_conn_find_negative_start_does_not_depend_on_leftover_bytes(start_server: Any) -> None:
    probe = FindProbe()
    bg = start_server(reactor.EventServer(), codec=probe)
    with connect_nodelay(bg.addr, SOCK_TIMEOUT) as s:
        s.sendall(b"xa")
        time.sleep(0.1)
        s.sendall(b"b")
        assert probe.second.wait(SOCK_TIMEOUT)
    (first_leftover, first_data, first), *_, (last_leftover, last_data, last) = probe.results
    assert not first_leftover and first_data == b"xa"
    assert last_leftover and last_data == b"xab"
    # The same call on a buffer starting with the same bytes: the answer may
    # not depend on how the bytes were split between reads.
    assert first == last, f"find(b'x', -1): {first} on {first_data!r} (in place) but {last} on {last_data!r} (leftover)"
