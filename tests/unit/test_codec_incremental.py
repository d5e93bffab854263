"""The delimiter codecs search a partial frame once, not once per read (reactor/codec.py).

Driven through ``reactor.http.ByteBuffer``, a plain byte buffer with the
``Conn`` read-side API, wrapped to count the bytes each ``find`` looks at.
The same property on real connections and real CPU time is in
tests/scenarios/test_fragmented_input.py.
"""

from __future__ import annotations

import pytest

from reactor import DelimiterBasedFrameCodec, LineBasedFrameCodec
from reactor.http import ByteBuffer


class CountingConn(ByteBuffer):
    """A connection's read side that counts how many bytes ``find`` examines."""

    __slots__ = ("scanned", "opened")

    def __init__(self) -> None:
        super().__init__()
        self.scanned = 0
        self.opened = True

    def find(self, sub: bytes, start: int = 0) -> int:
        self.scanned += max(0, self.inbound_buffered() - max(start, 0))
        return super().find(sub, start)


def feed(codec: LineBasedFrameCodec | DelimiterBasedFrameCodec, c: CountingConn, data: bytes, step: int) -> list[bytes]:
    frames = []
    for i in range(0, len(data), step):
        c.write(data[i : i + step])
        while (frame := codec.decode(c)) is not None:  # type: ignore[arg-type]
            frames.append(frame)
    return frames


@pytest.mark.parametrize("step", [1, 7, 100])
def test_a_long_line_in_small_pieces_is_scanned_once(step: int) -> None:
    codec = LineBasedFrameCodec()
    c = CountingConn()
    line = b"x" * 100_000
    assert feed(codec, c, line + b"\nnext\n", step) == [line, b"next"]
    # Linear: each byte about once (plus the few bytes a multi-byte delimiter
    # needs again). Searching from the start each read would be ~len²/(2*step).
    assert c.scanned < 2 * len(line)


def test_a_multi_byte_delimiter_split_across_reads_is_found() -> None:
    codec = DelimiterBasedFrameCodec(b"\r\n")
    c = CountingConn()
    assert feed(codec, c, b"abc\r\ndef\r\n" * 50, 1) == [b"abc", b"def"] * 50
    assert c.scanned < 4 * 500


def test_state_is_per_connection() -> None:
    codec = LineBasedFrameCodec()
    a, b = CountingConn(), CountingConn()
    a.write(b"aaaa")
    b.write(b"bb")
    assert codec.decode(a) is None and codec.decode(b) is None  # type: ignore[arg-type]
    a.write(b"a\n")
    b.write(b"\n")
    assert codec.decode(b) == b"bb"  # type: ignore[arg-type]
    assert codec.decode(a) == b"aaaaa"  # type: ignore[arg-type]


def test_bytes_consumed_behind_the_codec_reset_its_offset() -> None:
    """A handler that discards buffered input (e.g. reset_buffer on wake) must not make the codec skip a delimiter."""
    codec = LineBasedFrameCodec()
    c = CountingConn()
    c.write(b"garbage without newline")
    assert codec.decode(c) is None  # type: ignore[arg-type]
    c.discard(-1)
    c.write(b"ok\n")
    assert codec.decode(c) == b"ok"  # type: ignore[arg-type]


def test_closed_connections_do_not_accumulate() -> None:
    codec = LineBasedFrameCodec()
    conns = []
    for _ in range(300):
        c = CountingConn()
        c.write(b"partial")
        assert codec.decode(c) is None  # type: ignore[arg-type]
        c.opened = False
        conns.append(c)
    assert len(codec._partial) < 130  # swept whenever the table doubles
