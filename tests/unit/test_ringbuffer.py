"""reactor.pkg.ringbuffer.RingBuffer: the inbound byte ring.

The first tests port the scenarios of gnet v1.6.7's
``pkg/ringbuffer/ring_buffer_test.go`` (Write, Read, grow, zero-size ring,
ByteBuffer, and the IsFull/IsEmpty/Free/Length invariants) under similar
names; the rest cover what reactor adds (lazy storage, ``release``) and a
randomized comparison with a plain ``bytearray`` model.
"""

from __future__ import annotations

import random

import pytest

from reactor.pkg.ringbuffer import RingBuffer


def check(rb: RingBuffer, expected: bytes) -> None:
    """Every size accessor agrees with the bytes the ring should hold."""
    n = len(expected)
    assert len(rb) == n
    assert rb.length() == n
    assert rb.free() == rb.cap() - n
    assert rb.is_empty() == (n == 0)
    assert rb.is_full() == (n > 0 and n == rb.cap())
    head, tail = rb.peek()
    assert bytes(head) + bytes(tail) == expected
    assert rb.bytes() == expected


def wrapped(rb: RingBuffer) -> bool:
    """True when the readable bytes run past the end of the storage (peek gives two views)."""
    head, tail = rb.peek()
    return len(tail) > 0


# --- gnet's ring buffer scenarios ---------------------------------------------------
def test_ring_buffer_new_rounds_to_power_of_two() -> None:
    """An explicit size is rounded up to a power of two; a negative one is refused."""
    assert RingBuffer(64).cap() == 64
    assert RingBuffer(100).cap() == 128
    assert RingBuffer(1).cap() == 1
    with pytest.raises(ValueError):
        RingBuffer(-1)


def test_zero_ring_buffer() -> None:
    """A zero-size ring is empty, peeks nothing, and allocates on its first write."""
    rb = RingBuffer()
    assert rb.cap() == 0
    check(rb, b"")
    assert rb.is_full() is False
    head, tail = rb.peek(10)
    assert (bytes(head), bytes(tail)) == (b"", b"")
    assert rb.read() == b""
    assert rb.discard(5) == 0

    assert rb.write(b"abcd") == 4
    assert rb.cap() == 1024
    check(rb, b"abcd")


@pytest.mark.parametrize(
    ("first_write", "expected_cap"),
    [(1, 1024), (1024, 1024), (1025, 2048), (1500, 2048), (5000, 8192)],
)
def test_zero_ring_buffer_first_growth(first_write: int, expected_cap: int) -> None:
    """The first write grows a zero-size ring to max(1 KiB, next power of two)."""
    rb = RingBuffer()
    data = bytes(range(256)) * (first_write // 256) + bytes(first_write % 256)
    rb.write(data)
    assert rb.cap() == expected_cap
    check(rb, data)


def test_ring_buffer_write() -> None:
    """Writes fill the ring up to full, then grow it; sizes stay consistent throughout."""
    rb = RingBuffer(64)
    check(rb, b"")

    rb.write(b"abcd" * 4)
    check(rb, b"abcd" * 4)
    assert rb.free() == 48

    rb.write(b"abcd" * 12)
    check(rb, b"abcd" * 16)
    assert rb.is_full()
    assert rb.free() == 0
    assert rb.cap() == 64

    rb.write(b"1234")
    assert rb.cap() == 128
    check(rb, b"abcd" * 16 + b"1234")
    assert not rb.is_full()

    assert rb.write(b"") == 0
    check(rb, b"abcd" * 16 + b"1234")


def test_ring_buffer_write_accepts_bytearray_and_memoryview() -> None:
    """write() takes any contiguous byte buffer and copies it (later mutation does not leak in)."""
    rb = RingBuffer(16)
    src = bytearray(b"hello")
    rb.write(src)
    rb.write(memoryview(b"--world--")[2:7])
    src[:] = b"XXXXX"
    check(rb, b"helloworld")


def test_ring_buffer_read() -> None:
    """read(n) copies out and consumes n bytes; read() takes the rest."""
    rb = RingBuffer(64)
    rb.write(b"abcd" * 4)
    assert rb.read(8) == b"abcdabcd"
    check(rb, b"abcd" * 2)
    assert rb.read(100) == b"abcdabcd"
    check(rb, b"")
    assert rb.read() == b""

    rb.write(b"0123456789")
    assert rb.read(-1) == b"0123456789"
    check(rb, b"")


def test_ring_buffer_peek_does_not_consume() -> None:
    """peek(n) returns at most n bytes as views and leaves them readable."""
    rb = RingBuffer(16)
    rb.write(b"abcdefgh")
    head, tail = rb.peek(3)
    assert (bytes(head), bytes(tail)) == (b"abc", b"")
    head, tail = rb.peek(0)
    assert (bytes(head), bytes(tail)) == (b"", b"")
    head, tail = rb.peek(100)
    assert bytes(head) + bytes(tail) == b"abcdefgh"
    assert rb.bytes(5) == b"abcde"
    check(rb, b"abcdefgh")


def test_ring_buffer_peek_views_are_zero_copy() -> None:
    """peek's views point into the ring's storage (a later write into that slot shows through)."""
    rb = RingBuffer(8)
    rb.write(b"abcdefgh")
    head, _ = rb.peek(2)
    rb.discard(8)  # reset: r = w = 0, storage kept
    rb.write(b"XY")
    assert bytes(head) == b"XY"


def test_ring_buffer_wrap_around() -> None:
    """Write, discard part, write past the end: peek returns two views in the right order."""
    rb = RingBuffer(16)
    rb.write(b"0123456789ab")  # w = 12
    assert rb.discard(10) == 10  # r = 10, readable "ab"
    check(rb, b"ab")
    rb.write(b"cdefghij")  # 4 bytes to the end, 4 wrapped to the front
    assert rb.cap() == 16
    head, tail = rb.peek()
    assert bytes(head) == b"abcdef"
    assert bytes(tail) == b"ghij"
    check(rb, b"abcdefghij")

    head, tail = rb.peek(7)
    assert (bytes(head), bytes(tail)) == (b"abcdef", b"g")
    head, tail = rb.peek(4)
    assert (bytes(head), bytes(tail)) == (b"abcd", b"")

    assert rb.read(8) == b"abcdefgh"  # read across the seam
    check(rb, b"ij")
    assert not wrapped(rb)


def test_ring_buffer_full_while_wrapped() -> None:
    """A ring filled with r == w != 0 is full, not empty, and returns everything in order."""
    rb = RingBuffer(8)
    rb.write(b"abcde")
    rb.discard(3)
    rb.write(b"fghijk")  # 2 + 6 = 8 bytes, r == w == 3
    assert rb.is_full()
    assert not rb.is_empty()
    assert rb.free() == 0
    check(rb, b"defghijk")
    assert wrapped(rb)


def test_ring_buffer_discard() -> None:
    """discard(n) drops n bytes; discard(-1) and discard(n > len) empty the ring and report len."""
    rb = RingBuffer(32)
    rb.write(b"0123456789")
    assert rb.discard(0) == 0
    check(rb, b"0123456789")
    assert rb.discard(3) == 3
    check(rb, b"3456789")
    assert rb.discard(100) == 7
    check(rb, b"")
    assert rb.cap() == 32

    rb.write(b"abc")
    assert rb.discard(-1) == 3
    check(rb, b"")
    rb.write(b"xyz")
    assert rb.discard(3) == 3
    check(rb, b"")


def test_ring_buffer_reset_keeps_storage() -> None:
    """reset() empties the ring but keeps its capacity."""
    rb = RingBuffer(32)
    rb.write(b"hello")
    rb.reset()
    check(rb, b"")
    assert rb.cap() == 32
    rb.write(b"again")
    check(rb, b"again")


def test_ring_buffer_byte_buffer() -> None:
    """bytes() (gnet: ByteBuffer) returns an independent copy of the readable bytes, wrapped or not."""
    rb = RingBuffer(8)
    rb.write(b"abcdef")
    rb.discard(4)
    rb.write(b"ghij")  # wraps
    assert wrapped(rb)
    copy = rb.bytes()
    assert isinstance(copy, bytes)
    assert copy == b"efghij"
    rb.discard(-1)
    rb.write(b"ZZZZZZZZ")
    assert copy == b"efghij"
    assert rb.bytes(3) == b"ZZZ"


# --- growth ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "need", "expected"),
    [
        (1024, 1025, 2048),  # doubles below 4 KiB
        (1024, 2048, 2048),
        (2048, 3000, 4096),
        (2048, 4097, 4097),  # more than twice the size: taken as asked
        (4096, 4097, 5120),  # 1.25x steps from 4 KiB on
        (4096, 6000, 6400),  # two 1.25x steps
        (8192, 10241, 12800),
        (4096, 8192, 10000),  # exactly 2x: 1.25x steps 5120, 6400, 8000, 10000
        (4096, 9000, 9000),  # big jump
    ],
)
def test_ring_buffer_grow_policy(size: int, need: int, expected: int) -> None:
    """Growth doubles below 4 KiB, steps by 1.25x above, and takes a > 2x request as is."""
    rb = RingBuffer(size)
    rb.write(b"\x01" * size)
    assert rb.is_full()
    extra = need - size
    rb.write(b"\x02" * extra)
    assert rb.cap() == expected
    check(rb, b"\x01" * size + b"\x02" * extra)


def test_ring_buffer_grow_while_wrapped_keeps_order() -> None:
    """Growing a wrapped ring linearises it: data order survives and the seam is gone."""
    rb = RingBuffer(16)
    rb.write(b"ABCDEFGHIJKL")  # w = 12
    rb.discard(8)  # r = 8: "IJKL"
    rb.write(b"MNOPQRSTUVWX")  # 4 to the end, 8 wrapped: full
    assert rb.is_full()
    assert wrapped(rb)
    rb.write(b"YZ")
    assert rb.cap() == 32
    assert not wrapped(rb)
    check(rb, b"IJKLMNOPQRSTUVWXYZ")
    # The grown ring keeps wrapping correctly.
    rb.discard(10)
    rb.write(bytes(range(20)))
    check(rb, b"STUVWXYZ" + bytes(range(20)))


def test_ring_buffer_grow_wrapped_past_4k() -> None:
    """A non-power-of-two size reached by 1.25x growth still wraps correctly."""
    rb = RingBuffer(4096)
    rb.write(b"a" * 4096)
    rb.write(b"b")  # -> 5120
    assert rb.cap() == 5120
    assert rb.discard(4000) == 4000  # r = 4000, 97 bytes left
    model = b"a" * 96 + b"b"
    payload = bytes(range(256)) * 16  # 4096 bytes: wraps past 5120
    rb.write(payload)
    model += payload
    assert rb.cap() == 5120
    assert wrapped(rb)
    check(rb, model)


# --- release (reactor's addition) ---------------------------------------------------------
def test_ring_buffer_release_drops_storage() -> None:
    """release() empties the ring and frees its storage (cap 0); it still works afterwards."""
    rb = RingBuffer()
    rb.write(b"x" * 3000)
    assert rb.cap() == 4096
    rb.release()
    assert rb.cap() == 0
    check(rb, b"")
    assert rb.discard(1) == 0
    rb.write(b"again")
    assert rb.cap() == 1024
    check(rb, b"again")
    rb.release()
    rb.release()
    assert rb.cap() == 0


# --- randomized model test ---------------------------------------------------------------
def test_ring_buffer_random_ops_match_bytearray_model() -> None:
    """Thousands of random writes/reads/peeks/discards/releases agree with a bytearray model."""
    rng = random.Random(0x6E6574)
    rb = RingBuffer()
    model = bytearray()
    pattern = bytes(range(256)) * 40  # slices of it are distinguishable by position
    counter = 0
    for step in range(4000):
        op = rng.random()
        if op < 0.40:
            n = rng.choice((rng.randint(0, 64), rng.randint(0, 2048), rng.randint(0, 9000)))
            data = pattern[counter % 256 : counter % 256 + n]
            counter += n
            cap_before = rb.cap()
            assert rb.write(data) == n
            model += data
            if len(model) <= cap_before:
                assert rb.cap() == cap_before, step  # no growth when it fits
        elif op < 0.60:
            n = rng.randint(-1, 3000)
            got = rb.read(n)
            want = bytes(model) if n < 0 else bytes(model[:n])
            assert got == want, step
            del model[: len(want)]
        elif op < 0.80:
            n = rng.randint(-1, 3000)
            want_n = len(model) if n < 0 else min(n, len(model))
            assert rb.discard(n) == want_n, step
            del model[:want_n]
        elif op < 0.97:
            n = rng.randint(-1, 3000)
            head, tail = rb.peek(n)
            want = bytes(model) if n < 0 else bytes(model[:n])
            assert bytes(head) + bytes(tail) == want, step
            if tail:
                assert len(head) > 0
        else:
            rb.release()
            model.clear()
            assert rb.cap() == 0
        check(rb, bytes(model))


def test_find_matches_bytes_find_contiguous_and_wrapped() -> None:
    """find() answers as bytes.find on the readable bytes, also when they wrap around the end."""
    rb = RingBuffer(16)
    rb.write(b"0123456789abcd")
    rb.discard(10)  # r = 10: the next write wraps
    rb.write(b"efgh|ij|")
    data = rb.bytes()
    assert data == b"abcdefgh|ij|"
    for sub in (b"|", b"ij", b"a", b"zz", b""):
        for start in (0, 3, 9, 12, 13):
            assert rb.find(sub, start) == data.find(sub, start), (sub, start)
    assert rb.find(b"|", 0, 8) == -1 and rb.find(b"|", 0, 9) == 8
    assert rb.bytes() == data  # searching did not change the contents


def test_find_on_a_growing_frame_does_not_copy_per_search() -> None:
    """A codec's search per read on a growing partial frame costs no copy of the frame (linear, not quadratic)."""
    rb = RingBuffer()
    searched_from = 0
    for _ in range(2000):
        rb.write(b"x" * 100)
        assert rb.find(b"\n", searched_from) == -1
        searched_from = len(rb)
        head, tail = rb.peek()
        assert not tail  # never wrapped: r stays 0 while nothing is consumed
