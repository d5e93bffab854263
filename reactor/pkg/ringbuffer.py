"""An elastic ring buffer: a connection's inbound bytes that no frame has consumed yet.

gnet counterpart: ``pkg/ringbuffer/ring_buffer.go`` (v1.6.7). Same model: one
byte array, a read index ``r`` and a write index ``w``; ``peek`` hands out up
to two zero-copy views (the part up to the end of the array, then the
wrapped-around part from the start). ``r == w`` means *empty or full*; gnet
keeps an ``isEmpty`` flag to tell them apart, this one keeps the byte count
``_n``, which also makes ``len()`` an attribute read: the connection asks for
it several times per read event.

Invariant: ``0 <= r, w < size`` whenever ``size > 0``, ``0 <= _n <= size``,
and ``w == (r + _n) % size``; the readable bytes are ``buf[r:r + _n]``,
wrapping around the end of the array.

Differences from gnet, on purpose:

* Storage is allocated lazily (size 0 until the first write). A connection
  whose ring drains after a spike swaps it for a shared empty one, and
  :meth:`release` drops the storage of a closed connection's ring at once:
  idle and closed connections hold no buffer at all (gnet v1.6 kept it,
  panjf2000/gnet#306; v2.6.2 fixed the same).
* :meth:`find` searches the readable bytes in place; a wrapped ring is
  first made contiguous (:meth:`_linearize`), once per wrap, so a codec that
  searches a growing partial frame on every read does linear work, not
  quadratic.
* Sizes are not forced to powers of two after growth, so indices wrap with a
  comparison instead of a mask.
"""

from __future__ import annotations

import builtins

__all__ = ["RingBuffer"]

_MIN_SIZE = 1024
# The storage of every ring that has none yet: never written to (a write
# first grows the ring, which allocates its own), so sharing it is safe.
_NO_STORAGE = bytearray()
_DOUBLE_BELOW = 4096


class RingBuffer:
    """A growable byte ring (gnet: ``ringbuffer.RingBuffer``)."""

    __slots__ = ("_buf", "_size", "_r", "_w", "_n")

    def __init__(self, size: int = 0) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        if size:
            size = 1 << (size - 1).bit_length()
        self._buf = bytearray(size) if size else _NO_STORAGE
        self._size = size
        self._r = 0
        self._w = 0
        self._n = 0

    # --- sizes -------------------------------------------------------------------
    def __len__(self) -> int:
        """Readable bytes (gnet: ``Length``)."""
        return self._n

    length = __len__

    def cap(self) -> int:
        """Bytes of storage (gnet: ``Cap``)."""
        return self._size

    def free(self) -> int:
        """Bytes that can be written without growing (gnet: ``Free``)."""
        return self._size - self._n

    def is_empty(self) -> bool:
        return self._n == 0

    def is_full(self) -> bool:
        return self._n == self._size and self._size > 0

    # --- reading -------------------------------------------------------------------
    def peek(self, n: int = -1) -> tuple[memoryview, memoryview]:
        """Up to ``n`` readable bytes (all if ``n`` < 0) as (head, tail) views, without consuming.

        The views point into the ring: they are valid until the next write,
        discard or release.
        """
        length = self._n
        if length == 0 or n == 0:
            return memoryview(b""), memoryview(b"")
        if n < 0 or n > length:
            n = length
        mv = memoryview(self._buf)
        r = self._r
        if r + n <= self._size:
            return mv[r : r + n], memoryview(b"")
        head = self._size - r
        return mv[r:], mv[: n - head]

    def bytes(self, n: int = -1) -> builtins.bytes:
        """A copy of up to ``n`` readable bytes (all if ``n`` < 0), not consumed (gnet: ``ByteBuffer``)."""
        head, tail = self.peek(n)
        if not tail:
            return bytes(head)
        return b"".join((head, tail))

    def discard(self, n: int) -> int:
        """Consume up to ``n`` bytes (all if ``n`` < 0); return how many were dropped."""
        length = self._n
        if n < 0 or n >= length:
            self.reset()
            return length
        self._r = (self._r + n) % self._size
        self._n = length - n
        return n

    def read(self, n: int = -1) -> builtins.bytes:
        """Copy out and consume up to ``n`` bytes (all if ``n`` < 0)."""
        data = self.bytes(n)
        self.discard(len(data))
        return data

    def find(self, sub: builtins.bytes, start: int = 0, end: int = -1) -> int:
        """Offset of ``sub`` in the readable bytes ``[start, end)`` (end < 0: all), or -1, as ``bytes.find``.

        No copy while the readable bytes are contiguous; otherwise they are
        made so first (the next wrap is then at least a buffer's worth of
        writes away).
        """
        length = self._n
        if end < 0 or end > length:
            end = length
        if start < 0:
            start = 0
        if start > end:
            return -1
        if self._r + length > self._size:
            self._linearize()
        r = self._r
        i = self._buf.find(sub, r + start, r + end)
        return i if i < 0 else i - r

    def _linearize(self) -> None:
        """Move the readable bytes to the start of the storage, unwrapped."""
        data = self.bytes()
        self._buf[: len(data)] = data
        self._r = 0
        self._w = len(data) % self._size

    # --- writing -------------------------------------------------------------------
    def write(self, data: builtins.bytes | bytearray | memoryview) -> int:
        """Append ``data``, growing the storage if needed; return ``len(data)``."""
        n = len(data)
        if n == 0:
            return 0
        if n > self._size - self._n:
            self._grow(self._n + n)
        size, w = self._size, self._w
        first = min(n, size - w)
        buf = self._buf
        buf[w : w + first] = data[:first] if first < n else data
        if first < n:
            buf[: n - first] = data[first:]
        self._w = (w + n) % size
        self._n += n
        return n

    def _grow(self, need: int) -> None:
        """gnet's growth policy: double while small, then 1.25x steps; a big jump is taken as asked."""
        size = self._size
        if size == 0:
            new = max(_MIN_SIZE, 1 << (need - 1).bit_length())
        elif need > 2 * size:
            new = need
        else:
            new = size
            while new < need:
                new = new * 2 if new < _DOUBLE_BELOW else new + new // 4
        data = self.bytes()
        self._buf = bytearray(new)
        self._buf[: len(data)] = data
        self._size = new
        self._r = 0
        self._w = len(data) % new
        self._n = len(data)

    def reset(self) -> None:
        """Drop all readable bytes, keeping the storage (gnet: ``Reset``)."""
        self._r = self._w = 0
        self._n = 0

    def release(self) -> None:
        """Drop all bytes *and* the storage, so an idle connection holds no buffer."""
        self._buf = _NO_STORAGE
        self._size = 0
        self.reset()
