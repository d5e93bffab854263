"""reactor.pkg.listbuffer.ListBuffer: a connection's queue of pending output chunks."""

from __future__ import annotations

import random

from reactor.pkg.listbuffer import ListBuffer


def contents(lb: ListBuffer) -> bytes:
    """Everything queued, in order (peek with no byte or chunk limit)."""
    return b"".join(bytes(c) for c in lb.peek(1 << 62, 1 << 30))


def check(lb: ListBuffer, expected: bytes) -> None:
    """len/bool/is_empty and the queued bytes agree with ``expected``; no chunk is empty."""
    assert len(lb) == len(expected)
    assert bool(lb) == (len(expected) > 0)
    assert lb.is_empty() == (len(expected) == 0)
    chunks = lb.peek(1 << 62, 1 << 30)
    assert all(len(c) > 0 for c in chunks)
    assert b"".join(bytes(c) for c in chunks) == expected


def test_new_list_buffer_is_empty() -> None:
    """A new buffer holds nothing and peeks no chunks."""
    lb = ListBuffer()
    check(lb, b"")
    assert lb.peek(100, 10) == []


def test_push_bytes_is_not_copied() -> None:
    """A pushed ``bytes`` object is queued as it is (the very same object)."""
    lb = ListBuffer()
    data = b"immutable payload"
    lb.push(data)
    assert lb.peek(1 << 20, 8)[0] is data
    check(lb, data)


def test_push_bytearray_is_copied() -> None:
    """A pushed bytearray is copied: mutating the original afterwards changes nothing queued."""
    lb = ListBuffer()
    data = bytearray(b"mutable")
    lb.push(data)
    data[:] = b"CHANGED"
    data.extend(b"+more")
    check(lb, b"mutable")
    assert lb.peek(100, 1)[0] is not data


def test_push_memoryview_is_copied() -> None:
    """A pushed memoryview is copied: writes through the underlying buffer do not show."""
    lb = ListBuffer()
    backing = bytearray(b"0123456789")
    lb.push(memoryview(backing)[2:6])
    backing[2:6] = b"XXXX"
    check(lb, b"2345")


def test_push_empty_is_ignored() -> None:
    """Pushing an empty buffer queues no chunk."""
    lb = ListBuffer()
    lb.push(b"")
    lb.push(bytearray())
    lb.push_view(b"abc", 3)
    lb.push_view(b"abc", 10)
    check(lb, b"")
    assert lb.peek(100, 10) == []


def test_push_view_offset() -> None:
    """push_view(data, k) queues data[k:] without copying (offset 0 queues the object itself)."""
    lb = ListBuffer()
    data = b"hello world"
    lb.push_view(data, 6)
    lb.push_view(data, 0)
    chunks = lb.peek(1 << 20, 8)
    assert isinstance(chunks[0], memoryview)
    assert chunks[0].obj is data
    assert bytes(chunks[0]) == b"world"
    assert chunks[1] is data
    check(lb, b"world" + b"hello world")


def test_peek_respects_max_bytes() -> None:
    """peek stops once the chunks reach max_bytes (the chunk that crosses it is included)."""
    lb = ListBuffer()
    for c in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
        lb.push(c)
    assert [bytes(c) for c in lb.peek(8, 100)] == [b"aaaa", b"bbbb"]
    assert [bytes(c) for c in lb.peek(9, 100)] == [b"aaaa", b"bbbb", b"cccc"]
    assert [bytes(c) for c in lb.peek(1, 100)] == [b"aaaa"]
    check(lb, b"aaaabbbbccccdddd")


def test_peek_returns_at_least_one_chunk() -> None:
    """Even with a byte budget smaller than the first chunk (or 0), one chunk is returned."""
    lb = ListBuffer()
    lb.push(b"x" * 1000)
    lb.push(b"y")
    assert [len(c) for c in lb.peek(0, 10)] == [1000]
    assert [len(c) for c in lb.peek(10, 10)] == [1000]


def test_peek_respects_max_chunks() -> None:
    """peek returns at most max_chunks chunks however large the byte budget."""
    lb = ListBuffer()
    for i in range(10):
        lb.push(bytes([65 + i]))
    assert [bytes(c) for c in lb.peek(1 << 20, 3)] == [b"A", b"B", b"C"]
    assert len(lb.peek(1 << 20, 1)) == 1
    assert len(lb.peek(1 << 20, 10)) == 10
    assert len(lb.peek(1 << 20, 50)) == 10


def test_peek_does_not_consume() -> None:
    """Peeking twice returns the same chunks."""
    lb = ListBuffer()
    lb.push(b"one")
    lb.push(b"two")
    first = lb.peek(100, 10)
    second = lb.peek(100, 10)
    assert [bytes(c) for c in first] == [bytes(c) for c in second] == [b"one", b"two"]
    check(lb, b"onetwo")


def test_discard_partial_chunk_leaves_view_of_tail() -> None:
    """Discarding into a chunk replaces it by a memoryview of its unwritten tail (no copy)."""
    lb = ListBuffer()
    data = b"0123456789"
    lb.push(data)
    lb.push(b"next")
    assert lb.discard(4) == 4
    head = lb.peek(1, 1)[0]
    assert isinstance(head, memoryview)
    assert head.obj is data
    assert bytes(head) == b"456789"
    check(lb, b"456789next")
    assert lb.discard(3) == 3  # a view of a view still reads right
    check(lb, b"789next")


def test_discard_across_chunks() -> None:
    """discard(n) pops whole chunks and cuts into the next one."""
    lb = ListBuffer()
    for c in (b"ab", b"cde", b"fghi"):
        lb.push(c)
    assert lb.discard(2) == 2
    check(lb, b"cdefghi")
    assert lb.discard(4) == 4
    check(lb, b"ghi")
    assert lb.discard(0) == 0
    check(lb, b"ghi")


def test_discard_all() -> None:
    """discard(-1), discard(len) and discard(n > len) empty the buffer and report the length."""
    lb = ListBuffer()
    lb.push(b"abc")
    lb.push(b"de")
    assert lb.discard(-1) == 5
    check(lb, b"")
    lb.push(b"abc")
    assert lb.discard(3) == 3
    check(lb, b"")
    lb.push(b"abc")
    assert lb.discard(99) == 3
    check(lb, b"")
    assert lb.discard(1) == 0


def test_reset() -> None:
    """reset() drops everything; the buffer is reusable afterwards."""
    lb = ListBuffer()
    lb.push(b"abc")
    lb.reset()
    check(lb, b"")
    lb.push(b"z")
    check(lb, b"z")


def test_random_ops_match_bytes_model() -> None:
    """Thousands of random pushes/peeks/discards agree with a bytearray model."""
    rng = random.Random(20240611)
    lb = ListBuffer()
    model = bytearray()
    pattern = bytes(range(256)) * 20
    counter = 0
    for step in range(4000):
        op = rng.random()
        if op < 0.45:
            n = rng.randint(0, 600)
            start = counter % 256
            data = pattern[start : start + n]
            counter += n
            kind = rng.randrange(4)
            if kind == 0:
                lb.push(data)
            elif kind == 1:
                lb.push(bytearray(data))
            elif kind == 2:
                lb.push(memoryview(bytearray(data)))
            else:
                k = rng.randint(0, n + 2)
                lb.push_view(data, k)
                data = data[k:]
            model += data
        elif op < 0.75:
            n = rng.randint(-1, 1500)
            want = len(model) if n < 0 else min(n, len(model))
            assert lb.discard(n) == want, step
            del model[:want]
        elif op < 0.98:
            max_bytes = rng.randint(0, 2000)
            max_chunks = rng.randint(1, 8)
            chunks = lb.peek(max_bytes, max_chunks)
            got = b"".join(bytes(c) for c in chunks)
            assert model.startswith(got), step
            assert len(chunks) <= max_chunks
            if model:
                assert chunks, step
                # Either the budget was reached, the chunk limit was hit, or everything was returned.
                assert len(got) >= max_bytes or len(chunks) == max_chunks or got == model, step
                # No chunk beyond the one that reached the budget.
                assert len(got) - len(chunks[-1]) < max(max_bytes, 1), step
            else:
                assert chunks == []
        else:
            lb.reset()
            model.clear()
        check(lb, bytes(model))
