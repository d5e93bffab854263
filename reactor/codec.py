"""Codecs frame a connection's byte stream into the packets ``react`` receives.

gnet counterpart: ``codec.go`` (v1.6.7: ``ICodec``, ``BuiltInFrameCodec``,
``LineBasedFrameCodec``, ``DelimiterBasedFrameCodec``,
``FixedLengthFrameCodec``, ``LengthFieldBasedFrameCodec``). Each codec's
docstring lists where it deliberately differs from gnet.

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

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import (
    CodecError,
    FrameTooLongError,
    InvalidFixedLengthError,
    TooLessLengthError,
    UnsupportedLengthError,
)

if TYPE_CHECKING:
    from .connection import Conn

__all__ = [
    "BuiltInFrameCodec",
    "DecoderConfig",
    "DelimiterBasedFrameCodec",
    "EncoderConfig",
    "FixedLengthFrameCodec",
    "ICodec",
    "LengthFieldBasedFrameCodec",
    "LineBasedFrameCodec",
    "check_codec",
]


@runtime_checkable
class ICodec(Protocol):
    """The codec protocol (gnet: ``ICodec``)."""

    def encode(self, c: Conn, data: bytes) -> bytes:
        """Frame ``data`` for the wire."""
        ...

    def decode(self, c: Conn) -> Any:
        """Return the next frame from ``c``'s buffered input, or None if it is incomplete.

        gnet's frames are bytes, and so are those of the codecs here; a
        codec may return any other object (``reactor.http.HTTPCodec``
        returns a list of requests), which ``react`` receives as it is.
        """
        ...


def check_codec(codec: object) -> None:
    """Refuse, before anything is bound, what cannot be a codec; ``serve`` and ``Client`` call it.

    None (the built-in codec) and any object with callable ``encode`` and
    ``decode`` pass.

    :raises TypeError: a codec class instead of an instance (pass
        ``codec=reactor.LineBasedFrameCodec()``, not the class: its methods
        would get the connection as ``self`` and fail on the first data), or
        an object without ``encode(c, data)`` and ``decode(c)``.
    """
    if codec is None:
        return
    if isinstance(codec, type):
        name = codec.__qualname__
        raise TypeError(f"codec must be an instance, got the class {name}: pass codec={name}() instead of codec={name}")
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise TypeError(
            f"codec must have encode(c, data) and decode(c) methods (e.g. reactor.LineBasedFrameCodec()), "
            f"got {type(codec).__name__} {codec!r:.80}"
        )


class BuiltInFrameCodec:
    """Identity codec: a frame is everything read so far (gnet: ``BuiltInFrameCodec``).

    The event loop recognises this class and takes a shortcut with the same
    result (the bytes of the current read, when nothing older is buffered),
    avoiding four method calls per read; see ``EventLoop._read``.
    """

    def encode(self, c: Conn, data: bytes) -> bytes:
        """``data`` as it is: the built-in codec does not frame."""
        return data

    def decode(self, c: Conn) -> bytes | None:
        """Everything buffered so far (one frame per read), or None when nothing is."""
        if c.buffer_length() == 0:
            return None
        data = c.read()
        c.reset_buffer()
        return data


#: Default ``max_frame_length`` of the delimiter-based codecs: a line longer
#: than this is refused rather than buffered without bound.
DEFAULT_MAX_DELIMITED_FRAME = 1024 * 1024
#: Default ``max_frame_length`` of the length-field codec.
DEFAULT_MAX_LENGTH_FIELD_FRAME = 16 * 1024 * 1024


class DelimiterBasedFrameCodec:
    """Frames end with ``delimiter`` (gnet: ``DelimiterBasedFrameCodec``).

    ``encode`` appends the delimiter; ``decode`` returns the bytes before the
    first delimiter (the delimiter itself is consumed, not returned).

    Decisions, against gnet v1 on purpose:

    * gnet takes one delimiter byte; any non-empty ``bytes`` works here.
    * An empty frame (two delimiters in a row) is a valid frame ``b""``; the
      decode loop goes on to the frames after it (gnet's empty frame is a nil
      slice, which ends its decode loop until the next read event).
    * A frame longer than ``max_frame_length`` bytes, or that many bytes
      buffered without a delimiter, raises :class:`FrameTooLongError`: the
      connection is closed instead of buffering an endless line.
    * A partial frame is searched once: the codec remembers, per connection,
      how far it looked (gnet searches the whole buffer again on each read,
      so a long line sent in small pieces costs time quadratic in its length).
    """

    def __init__(self, delimiter: bytes, max_frame_length: int = DEFAULT_MAX_DELIMITED_FRAME) -> None:
        if isinstance(delimiter, int):
            delimiter = bytes([delimiter])  # gnet's constructor takes a single byte
        if not isinstance(delimiter, (bytes, bytearray)) or not delimiter:
            raise ValueError(f"delimiter must be non-empty bytes, got {delimiter!r}")
        if max_frame_length <= 0:
            raise ValueError("max_frame_length must be positive")
        self.delimiter = bytes(delimiter)
        self.max_frame_length = max_frame_length
        # Connections with a partial frame -> (offset searched up to, bytes
        # buffered then). Only those: a complete frame pops its entry. Kept
        # here, not in c.context, which belongs to the handler.
        self._partial: dict[Conn, tuple[int, int]] = {}
        self._sweep_at = 64

    def encode(self, c: Conn, data: bytes) -> bytes:
        """``data`` followed by the delimiter."""
        return bytes(data) + self.delimiter

    def decode(self, c: Conn) -> bytes | None:
        """The bytes before the next delimiter (consumed too, not returned), or None while there is none.

        :raises reactor.FrameTooLongError: more than ``max_frame_length`` bytes without a delimiter.
        """
        delimiter = self.delimiter
        start = 0
        if self._partial:
            state = self._partial.pop(c, None)
            # Valid unless bytes were consumed since (e.g. reset_buffer in react).
            if state is not None and c.inbound_buffered() >= state[1]:
                start = state[0]
        i = c.find(delimiter, start)
        if i < 0:
            n = c.inbound_buffered()
            if n > self.max_frame_length + len(delimiter) - 1:
                raise FrameTooLongError(
                    f"no {delimiter!r} within {self.max_frame_length} bytes (max_frame_length)"
                )
            if n >= len(delimiter):
                self._remember(c, n - len(delimiter) + 1, n)  # a delimiter may straddle the next read
            return None
        if i > self.max_frame_length:
            raise FrameTooLongError(f"frame of {i} bytes exceeds max_frame_length={self.max_frame_length}")
        frame = c.peek(i) if i else b""
        c.discard(i + len(delimiter))
        return frame

    def _remember(self, c: Conn, searched: int, buffered: int) -> None:
        partial = self._partial
        if len(partial) >= self._sweep_at:
            # Drop closed connections' entries; list() first, as another
            # loop thread may add one meanwhile. Amortised O(1) per call.
            for conn in list(partial):
                if not conn.opened:
                    partial.pop(conn, None)
            self._sweep_at = max(64, 2 * len(partial))
        partial[c] = (searched, buffered)


class LineBasedFrameCodec(DelimiterBasedFrameCodec):
    """Frames end with ``b"\\n"`` (gnet: ``LineBasedFrameCodec``).

    As in gnet, a ``\\r`` before the ``\\n`` is part of the frame (not
    stripped): ``b"GET\\r\\n"`` decodes to ``b"GET\\r"``.
    """

    def __init__(self, max_frame_length: int = DEFAULT_MAX_DELIMITED_FRAME) -> None:
        super().__init__(b"\n", max_frame_length)


class FixedLengthFrameCodec:
    """Every frame is exactly ``frame_length`` bytes (gnet: ``FixedLengthFrameCodec``).

    ``encode`` accepts any multiple of ``frame_length`` (several frames at
    once, as gnet) and raises :class:`InvalidFixedLengthError` otherwise.
    """

    def __init__(self, frame_length: int) -> None:
        if frame_length <= 0:
            raise ValueError("frame_length must be positive")
        self.frame_length = frame_length

    def encode(self, c: Conn, data: bytes) -> bytes:
        """``data`` as it is, which must be a whole number of frames.

        :raises reactor.InvalidFixedLengthError: ``len(data)`` is not a multiple of ``frame_length``.
        """
        if len(data) % self.frame_length != 0:
            raise InvalidFixedLengthError(
                f"{len(data)} bytes is not a multiple of the frame length {self.frame_length}"
            )
        return data

    def decode(self, c: Conn) -> bytes | None:
        """The next ``frame_length`` bytes, or None until that many are buffered."""
        n = self.frame_length
        if c.inbound_buffered() < n:
            return None
        return c.next(n)


_FIELD_SIZES = (1, 2, 3, 4, 8)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """How ``LengthFieldBasedFrameCodec.encode`` writes the length field (gnet: ``EncoderConfig``)."""

    #: "big" (network order) or "little".
    byte_order: str = "big"
    #: Size of the length field in bytes: 1, 2, 3, 4 or 8.
    length_field_length: int = 4
    #: Added to the payload length before it is written.
    length_adjustment: int = 0
    #: Whether the written length counts the length field itself.
    length_includes_length_field_length: bool = False


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """How ``LengthFieldBasedFrameCodec.decode`` finds frames (gnet: ``DecoderConfig``, Netty semantics).

    A frame is ``header (length_field_offset bytes) ‖ length field ‖ message``
    where the message is ``value + length_adjustment`` bytes; ``decode``
    returns the frame without its first ``initial_bytes_to_strip`` bytes.
    """

    byte_order: str = "big"
    #: Bytes before the length field.
    length_field_offset: int = 0
    #: Size of the length field in bytes: 1, 2, 3, 4 or 8.
    length_field_length: int = 4
    #: Added to the field's value to get the message length (e.g. minus the
    #: header size when the value counts the whole frame).
    length_adjustment: int = 0
    #: Bytes to drop from the front of each decoded frame.
    initial_bytes_to_strip: int = 0


class LengthFieldBasedFrameCodec:
    """Frames carry their own length (gnet: ``LengthFieldBasedFrameCodec``, from Netty).

    Decisions, against gnet v1 on purpose:

    * A negative message length (value + adjustment < 0) raises
      :class:`TooLessLengthError` (gnet reports "incomplete" forever and the
      connection stalls).
    * A frame longer than ``max_frame_length`` raises :class:`FrameTooLongError`
      as soon as its length field has arrived, before any of it is buffered.
    * ``initial_bytes_to_strip`` larger than the frame raises
      :class:`CodecError` (gnet would panic on the slice).
    * ``encode`` checks that the length fits a 4-byte field too (gnet
      silently truncates it).
    """

    def __init__(
        self,
        encoder_config: EncoderConfig | None = None,
        decoder_config: DecoderConfig | None = None,
        max_frame_length: int = DEFAULT_MAX_LENGTH_FIELD_FRAME,
    ) -> None:
        enc = encoder_config or EncoderConfig()
        dec = decoder_config or DecoderConfig()
        for name, cfg in (("encoder_config", enc), ("decoder_config", dec)):
            if cfg.byte_order not in ("big", "little"):
                raise ValueError(f"{name}.byte_order must be 'big' or 'little', got {cfg.byte_order!r}")
            if cfg.length_field_length not in _FIELD_SIZES:
                raise UnsupportedLengthError(
                    f"{name}.length_field_length must be one of {_FIELD_SIZES}, got {cfg.length_field_length}"
                )
        if dec.length_field_offset < 0 or dec.initial_bytes_to_strip < 0:
            raise ValueError("length_field_offset and initial_bytes_to_strip must be >= 0")
        if max_frame_length <= 0:
            raise ValueError("max_frame_length must be positive")
        self.encoder_config = enc
        self.decoder_config = dec
        self.max_frame_length = max_frame_length

    def encode(self, c: Conn, data: bytes) -> bytes:
        """``data`` behind its length field, as ``encoder_config`` says.

        :raises reactor.TooLessLengthError: the adjusted length is negative.
        :raises reactor.CodecError: the length does not fit into the length field.
        """
        cfg = self.encoder_config
        length = len(data) + cfg.length_adjustment
        if cfg.length_includes_length_field_length:
            length += cfg.length_field_length
        if length < 0:
            raise TooLessLengthError(f"adjusted length {length} is negative")
        size = cfg.length_field_length
        if length >= 1 << (8 * size):
            raise CodecError(f"length {length} does not fit into a {size}-byte length field")
        return length.to_bytes(size, cfg.byte_order) + bytes(data)  # type: ignore[arg-type]

    def decode(self, c: Conn) -> bytes | None:
        """The next frame, as ``decoder_config`` describes it, or None until it is complete.

        :raises reactor.FrameTooLongError: the frame announces more than ``max_frame_length`` bytes.
        """
        cfg = self.decoder_config
        header_end = cfg.length_field_offset + cfg.length_field_length
        if c.inbound_buffered() < header_end:
            return None
        field = c.peek(header_end)[cfg.length_field_offset :]
        value = int.from_bytes(field, cfg.byte_order)  # type: ignore[arg-type]
        msg_length = value + cfg.length_adjustment
        if msg_length < 0:
            raise TooLessLengthError(
                f"length field {value} + adjustment {cfg.length_adjustment} is negative"
            )
        total = header_end + msg_length
        if total > self.max_frame_length:
            raise FrameTooLongError(f"frame of {total} bytes exceeds max_frame_length={self.max_frame_length}")
        if cfg.initial_bytes_to_strip > total:
            raise CodecError(
                f"initial_bytes_to_strip={cfg.initial_bytes_to_strip} exceeds the frame length {total}"
            )
        if c.inbound_buffered() < total:
            return None
        frame = c.next(total)
        return frame[cfg.initial_bytes_to_strip :] if cfg.initial_bytes_to_strip else frame
