"""A connection's outbound buffer: the bytes the kernel has not taken yet, in order.

gnet counterpart: ``pkg/listbuffer`` and ``pkg/mixedbuffer`` (v1.6.7). gnet
copies pending output into a 64 KiB ring plus a linked list of pooled byte
slices, and hands ``Peek`` results to ``writev`` as the iovec. Here a queue of
immutable chunks does the same job with fewer copies: a ``bytes`` object that
``react`` returned is queued as it is (it cannot change under us), and only
mutable buffers (``bytearray``, ``memoryview``) are copied once. A partly
written chunk is replaced by a ``memoryview`` of its unwritten tail, so
nothing is copied when the kernel takes a chunk in several pieces.

Invariant: ``self._len == sum(len(c) for c in self._chunks)`` and no chunk is
empty; ``_chunks`` is None while nothing was ever queued (an empty deque costs
~600 bytes, and most connections never queue output: with 10,000 idle
connections that alone was most of the server's memory per connection).
"""

from __future__ import annotations

from collections import deque

__all__ = ["ListBuffer"]

Chunk = bytes | memoryview


class ListBuffer:
    """An ordered queue of pending output (gnet: ``listbuffer.ListBuffer`` / ``mixedbuffer.Buffer``)."""

    __slots__ = ("_chunks", "_len")

    def __init__(self) -> None:
        self._chunks: deque[Chunk] | None = None  # allocated on first push
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len != 0

    def is_empty(self) -> bool:
        return self._len == 0

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` at the back (gnet: ``PushBytesBack``); mutable buffers are copied."""
        n = len(data)
        if n == 0:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._chunks is None:
            self._chunks = deque()
        self._chunks.append(data)
        self._len += n

    def push_view(self, data: bytes, offset: int) -> None:
        """Queue ``data[offset:]`` without copying (``data`` must be immutable ``bytes``)."""
        if offset >= len(data):
            return
        if self._chunks is None:
            self._chunks = deque()
        self._chunks.append(memoryview(data)[offset:] if offset else data)
        self._len += len(data) - offset

    def peek(self, max_bytes: int, max_chunks: int) -> list[Chunk]:
        """Leading chunks holding about ``max_bytes`` (at least one chunk), at most ``max_chunks``."""
        out: list[Chunk] = []
        total = 0
        for chunk in self._chunks or ():
            out.append(chunk)
            total += len(chunk)
            if total >= max_bytes or len(out) >= max_chunks:
                break
        return out

    def discard(self, n: int) -> int:
        """Drop the first ``n`` bytes (all if ``n`` < 0); return how many were dropped."""
        if n < 0 or n >= self._len:
            dropped = self._len
            self._chunks = None  # give the deque's memory back
            self._len = 0
            return dropped
        left = n
        chunks = self._chunks
        assert chunks is not None
        while left:
            head = chunks[0]
            size = len(head)
            if size <= left:
                chunks.popleft()
                left -= size
            else:
                chunks[0] = memoryview(head)[left:]
                left = 0
        self._len -= n
        return n

    def reset(self) -> None:
        """Drop everything (gnet: ``Release``)."""
        self._chunks = None
        self._len = 0
