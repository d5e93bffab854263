"""Codecs frame a connection's byte stream into the packets ``react`` receives.

gnet counterpart: ``codec.go`` (v1.6.7: ``ICodec``, ``BuiltInFrameCodec``).
The line, delimiter, fixed-length and length-field codecs arrive with their
own issue; this module holds the protocol and the default.

The contract (gnet's ``ICodec``, with its documented-but-unimplemented error
rule made real):

* ``decode(c)`` looks at the connection's buffered bytes through
  ``c.read()`` / ``c.read_n(n)`` / ``c.peek(n)`` and consumes what it framed
  with ``c.shift_n(n)`` / ``c.discard(n)`` / ``c.reset_buffer()``. It returns
  one frame as ``bytes``, or ``None`` when more bytes are needed. The loop
  calls it again until it returns ``None``; bytes left over stay buffered for
  the next read.
* A frame that can never be valid raises :class:`~reactor.errors.CodecError`
  (or a subclass): the connection is closed and the error reaches
  ``on_closed``. gnet v1 swallows such errors and leaves the connection
  stalled.
* ``encode(c, data)`` turns what ``react`` (or ``write``/``async_write``)
  returned into the bytes to send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .connection import Conn

__all__ = ["BuiltInFrameCodec", "ICodec"]


@runtime_checkable
class ICodec(Protocol):
    """The codec protocol (gnet: ``ICodec``)."""

    def encode(self, c: Conn, data: bytes) -> bytes:
        """Frame ``data`` for the wire."""
        ...

    def decode(self, c: Conn) -> Optional[bytes]:
        """Return the next frame from ``c``'s buffered input, or None if it is incomplete."""
        ...


class BuiltInFrameCodec:
    """Identity codec: a frame is everything read so far (gnet: ``BuiltInFrameCodec``).

    The event loop recognises this class and takes a shortcut with the same
    result (the bytes of the current read, when nothing older is buffered),
    avoiding four method calls per read; see ``EventLoop._read``.
    """

    def encode(self, c: Conn, data: bytes) -> bytes:
        return data

    def decode(self, c: Conn) -> Optional[bytes]:
        if c.buffer_length() == 0:
            return None
        data = c.read()
        c.reset_buffer()
        return data
