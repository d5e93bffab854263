"""The HTTP/1.1 request parser: incremental, pipelined, strict where RFC 9112 says a server must be.

gnet counterpart: the seed program's ``parseReq`` and ``httpCodec.Decode``
(gnet's HTTP example, walked through in docs/tutorial.md). The seed scans
byte by byte, trusts any ``Content-Length:`` prefix, drops a request split
across two reads and never looks at ``Transfer-Encoding``; this parser is
the one every HTTP server in the project uses instead (docs/http.md).

How it reads. A :class:`RequestParser` belongs to one connection and works
on a *source* with the ``Conn`` buffer API (``find``/``peek``/``next``/
``discard``/``inbound_buffered``): a :class:`reactor.Conn` inside a codec, or
a :class:`ByteBuffer` fed by hand. It never copies the whole buffer: the
header block is searched with ``find`` from where the last search stopped
(``scanned``), and only the block itself is copied out. A body the
application does not keep (``buffer_body=False``) is counted down and
discarded as it arrives, so a stalled 1 MB upload holds no memory.

What it refuses (each with the status a server must answer, then close):

* request line: not ``method SP target SP HTTP-version`` → 400; a version
  other than ``HTTP/1.x`` → 505 (RFC 9112 §2.3, RFC 9110 §15.6.6);
* lines not ending in CRLF, a bare CR, NUL or another control character
  anywhere in the head → 400 (RFC 9112 §2.2: a bare CR must be rejected; a
  bare LF is what a smuggling front end and this server could disagree on);
* whitespace before a field's colon, obs-fold → 400 (RFC 9112 §5.1, §5.2);
* framing (RFC 9112 §6): ``Transfer-Encoding`` with ``Content-Length``, in
  HTTP/1.0, or without ``chunked`` last → 400; other codings → 501;
  ``Content-Length`` values that are not all the same ``1*DIGIT`` → 400;
* a missing or repeated ``Host`` in HTTP/1.1, a repeated one in 1.0 → 400
  (RFC 9112 §3.2); an expectation other than ``100-continue`` → 417;
* a header block over ``max_header_size`` → 431, a body over
  ``max_body_size`` → 413.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Protocol

from .request import HTTPError, Request, _check_line_endings, parse_fields, parse_head

__all__ = ["ByteBuffer", "Limits", "RequestParser", "Source"]


class Source(Protocol):
    """What the parser reads from: :class:`reactor.Conn`'s buffer methods, or a :class:`ByteBuffer`."""

    def find(self, sub: bytes, start: int = 0) -> int: ...
    def peek(self, n: int = -1) -> bytes: ...
    def next(self, n: int = -1) -> bytes: ...
    def discard(self, n: int = -1) -> int: ...
    def inbound_buffered(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one :class:`RequestParser` accepts."""

    #: Request line + header fields + the empty line (and, separately, a
    #: chunked body's trailer block), like common servers' 8 KiB. Over it: 431.
    max_header_size: int = 8 * 1024
    #: Largest request body (Content-Length, or a chunked body's decoded total). Over it: 413.
    max_body_size: int = 1024 * 1024
    #: Keep bodies in ``Request.body`` (True), or count them down and discard
    #: them as they arrive (False: ``Request.body`` is ``b""``).
    buffer_body: bool = True
    #: Most requests handed over at once (one frame of the codec): bounds one answer's size.
    max_batch: int = 256
    #: Longest chunk-size line, extensions included.
    max_chunk_line: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_header_size", "max_batch", "max_chunk_line"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_body_size < 0:
            raise ValueError("max_body_size must be >= 0")


# Parser phases.
_HEAD, _BODY, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _DONE = range(7)

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 §7.1.1: chunk-size [ chunk-ext ], chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ).
_CHUNK_LINE_RE = re.compile(
    rf"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*(?:{_TOKEN}|{_QUOTED}))?)*".encode()
)
_EMPTY_LINES_ALLOWED = 8  # RFC 9112 §2.2: ignore "at least one" empty line before a request line
#: Most bytes copied at once to parse the heads of a pipeline (the default read size).
_WINDOW = 64 * 1024


class RequestParser:
    """One connection's parse state: the requests of a byte stream, in order, however it is split.

    Call :meth:`parse` after bytes arrive; it returns the requests that are
    complete (possibly none), consuming their bytes from the source and
    leaving a partial one in place. After an error or a request that ends
    the connection, it returns nothing more and discards what follows.

    Attributes the caller acts on after each :meth:`parse`:

    * ``continue_due``: send ``HTTP/1.1 100 Continue`` now (and reset it);
    * ``head_pending``: part of a header block is buffered (the header
      timeout's clock runs from its first byte).
    """

    __slots__ = (
        "continue_due",
        "deadline_armed",
        "head_pending",
        "left",
        "limits",
        "parts",
        "phase",
        "req",
        "scanned",
        "total",
        "window",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self.phase = _HEAD
        #: How far the current ``find`` has searched without success (an
        #: offset into the source): the next search starts there, not at 0.
        self.scanned = 0
        self.left = 0  # body or chunk bytes still to come
        self.total = 0  # a chunked body's size so far
        self.req: Request | None = None  # the request whose body is being read
        self.parts: list[bytes] = []  # a chunked body's pieces (buffer_body)
        self.continue_due = False
        self.head_pending = False
        #: For the codec: whether it armed the connection's header deadline.
        self.deadline_armed = False
        #: Most bytes copied at once to parse heads: a head within the limit always fits.
        self.window = max(_WINDOW, self.limits.max_header_size + 4)

    @property
    def closed(self) -> bool:
        """True after an error or a request that ends the connection: nothing more is parsed."""
        return self.phase == _DONE

    def parse(self, src: Source) -> list[Request]:
        """Consume and return the complete requests at the front of ``src`` (at most ``max_batch``).

        A malformed request ends the list as a :class:`Request` whose
        ``error`` is set; the requests before it are valid and deserve their
        answers. Nothing after it, or after a request with ``keep_alive``
        False, is ever parsed.
        """
        batch: list[Request] = []
        limits = self.limits
        try:
            while True:
                phase = self.phase
                if phase == _HEAD:
                    window = self.window
                    if self.scanned:
                        # A head is arriving piece by piece: search only
                        # what is new (and the 3 bytes before it).
                        end = src.find(b"\r\n\r\n", self.scanned)
                        if end < 0:
                            self._head_incomplete(src, src.inbound_buffered())
                            break
                        data = src.peek(window)
                    else:
                        # A new head: one copy of what is buffered (the whole
                        # pipeline, usually one read), searched in place.
                        data = src.peek(window)
                        end = data.find(b"\r\n\r\n")
                        if end < 0:
                            self._head_incomplete(src, len(data) if len(data) < window else src.inbound_buffered())
                            break
                    if self._heads(src, data, end, window, batch):
                        break
                elif phase == _BODY:
                    avail = src.inbound_buffered()
                    left = self.left
                    req = self.req
                    assert req is not None
                    if limits.buffer_body:
                        if avail < left:
                            break  # the source keeps it until the whole body is there
                        req.body = src.next(left)
                    elif avail < left:
                        src.discard(avail)
                        self.left = left - avail
                        break
                    else:
                        src.discard(left)
                    if self._complete(req, batch):
                        break
                elif phase == _DONE:
                    src.discard(-1)  # never parse after an error or the last request
                    break
                elif not self._chunked(src, batch):
                    break
            if self.phase == _DONE:
                src.discard(-1)  # what follows the last request is never parsed
        except HTTPError as e:
            self.phase = _DONE
            self.head_pending = False
            self.continue_due = False
            src.discard(-1)
            batch.append(Request.failed(e))
        return batch

    def _complete(self, req: Request, batch: list[Request]) -> bool:
        """``req``'s body has been read: hand it over. True when the batch must end here."""
        self.req = None
        self.phase = _HEAD
        batch.append(req)
        if not req.keep_alive:
            self.phase = _DONE
            return True
        return len(batch) >= self.limits.max_batch

    def _head_incomplete(self, src: Source, n: int) -> None:
        start = self.scanned
        # A head that ends in bare LFs never contains CRLFCRLF: refuse it now
        # rather than wait for a terminator that will not come.
        if src.find(b"\n\n", start) >= 0 or src.find(b"\n\r\n", start) >= 0:
            raise HTTPError(400, "header line ending in a bare LF")
        if n > self.limits.max_header_size:
            raise HTTPError(431, f"request header block over {self.limits.max_header_size} bytes")
        # The terminator may straddle this read and the next: re-search its first 3 bytes.
        self.scanned = n - 3 if n > 3 else 0
        self.head_pending = n > 0

    def _heads(self, src: Source, data: bytes, end: int, window: int, batch: list[Request]) -> bool:
        """Parse the complete heads at the front of ``data`` (the first ends at ``end``); True: stop parsing.

        ``data`` is a copy of the first ``window`` bytes of ``src``; the
        heads are split with ``bytes.find`` and consumed with one
        ``discard``: a pipeline of 16 GETs costs one ``peek``, not 16 rounds
        of buffer calls.
        """
        limits = self.limits
        max_header = limits.max_header_size
        avail = len(data)
        self.scanned = 0
        self.head_pending = False
        pos = 0
        done = False
        skipped = 0
        while True:
            size = end + 4
            if size - pos > max_header:
                src.discard(pos)
                raise HTTPError(431, f"request header block over {max_header} bytes")
            req = parse_head(data[pos:size] if pos or size != len(data) else data, limits.max_body_size)
            if req is None:
                # An empty line before a request line: RFC 9112 §2.2 lets a
                # server ignore "at least one".
                skipped += 1
                if skipped > _EMPTY_LINES_ALLOWED:
                    raise HTTPError(400, "empty lines instead of a request line")
                pos += 2
            else:
                length = req.body_length
                if length:
                    if req.expect_continue and size == avail and src.inbound_buffered() == size:
                        # None of the body has come: the client waits for 100
                        # Continue, which must follow the answers to the
                        # requests before this one. Those go out first; this
                        # head is parsed again on the next call.
                        if batch:
                            done = True
                            break
                        self.continue_due = True
                    pos = size
                    self.req = req
                    if length > 0:
                        self.left = length
                        self.phase = _BODY
                    else:
                        self.total = 0
                        self.parts = []
                        self.phase = _CHUNK_LINE
                    break
                pos = size
                batch.append(req)
                if not req.keep_alive:
                    self.phase = _DONE
                    done = True
                    break
                if len(batch) >= limits.max_batch:
                    done = True
                    break
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                break
        src.discard(pos)
        # Nothing left (the window held it all and all is parsed): stop.
        # Otherwise the caller goes on with a body, the partial head after
        # these (searched again once), or what the window did not hold.
        return done or (pos == avail and avail < window)

    def _chunked(self, src: Source, batch: list[Request]) -> bool:
        """One step of a chunked body (RFC 9112 §7.1); False when more bytes are needed or the batch is done."""
        limits = self.limits
        phase = self.phase
        if phase == _CHUNK_LINE:
            i = src.find(b"\r\n", self.scanned)
            if i < 0:
                n = src.inbound_buffered()
                if src.find(b"\n", self.scanned) >= 0:
                    raise HTTPError(400, "chunk-size line ending in a bare LF")
                if n > limits.max_chunk_line:
                    raise HTTPError(400, f"chunk-size line over {limits.max_chunk_line} bytes")
                self.scanned = n - 1 if n > 1 else 0
                return False
            if i > limits.max_chunk_line:
                raise HTTPError(400, f"chunk-size line over {limits.max_chunk_line} bytes")
            line = src.next(i + 2)[:-2]
            self.scanned = 0
            m = _CHUNK_LINE_RE.fullmatch(line)
            if m is None:
                raise HTTPError(400, f"malformed chunk-size line {line[:40]!r}")
            digits = m.group(1).lstrip(b"0")
            if len(digits) > 15:
                raise HTTPError(413, f"chunked body over {limits.max_body_size} bytes")
            size = int(digits, 16) if digits else 0
            if size == 0:
                self.phase = _TRAILER
                return True
            self.total += size
            if self.total > limits.max_body_size:
                raise HTTPError(413, f"chunked body over {limits.max_body_size} bytes")
            self.left = size
            self.phase = _CHUNK_DATA
            return True
        if phase == _CHUNK_DATA:
            avail = src.inbound_buffered()
            take = min(self.left, avail)
            if limits.buffer_body:
                self.parts.append(src.next(take))
            else:
                src.discard(take)
            self.left -= take
            if self.left:
                return False
            self.phase = _CHUNK_END
            return True
        if phase == _CHUNK_END:
            if src.inbound_buffered() < 2:
                return False
            if src.peek(2) != b"\r\n":
                raise HTTPError(400, "chunk data not followed by CRLF")
            src.discard(2)
            self.phase = _CHUNK_LINE
            return True
        # _TRAILER: the empty line, or trailer fields then the empty line.
        if self.scanned == 0:
            if src.inbound_buffered() < 2:
                return False
            if src.peek(2) == b"\r\n":
                src.discard(2)
                return not self._finish_chunked(None, batch)
        end = src.find(b"\r\n\r\n", self.scanned)
        if end < 0:
            self._head_incomplete(src, src.inbound_buffered())  # same rules and limit as a header block
            self.head_pending = False  # the header timeout is for heads only
            return False
        if end + 4 > limits.max_header_size:
            raise HTTPError(431, f"trailer block over {limits.max_header_size} bytes")
        block = src.next(end + 4)
        self.scanned = 0
        _check_line_endings(block)
        trailers, _ = parse_fields(block.decode("latin-1").split("\r\n")[:-2])
        return not self._finish_chunked(trailers, batch)

    def _finish_chunked(self, trailers: dict[str, str] | None, batch: list[Request]) -> bool:
        req = self.req
        assert req is not None
        req.body = b"".join(self.parts)
        req.body_length = self.total
        req.trailers = trailers
        self.parts = []
        return self._complete(req, batch)


class ByteBuffer:
    """A byte buffer with the ``Conn`` buffer API, to run a :class:`RequestParser` on bytes you feed.

    For servers that read with the built-in codec (their frame is whatever a
    read produced) or outside reactor: ``write`` what arrived, then ``parse``.
    Like ``Conn``, it holds a read's ``bytes`` as they are while nothing is
    left over (no copy), and appends to one growing buffer only when a
    partial request waits for more.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self, data: bytes = b"") -> None:
        self._buf: bytes | bytearray = bytes(data)
        self._pos = 0

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        buf = self._buf
        if self._pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if type(buf) is bytes:
            self._buf = buf = bytearray(memoryview(buf)[self._pos :])
            self._pos = 0
        buf += data

    def inbound_buffered(self) -> int:
        """Unconsumed bytes."""
        return len(self._buf) - self._pos

    def find(self, sub: bytes, start: int = 0) -> int:
        """Offset of ``sub`` from ``start`` among the unconsumed bytes, or -1 (as ``Conn.find``)."""
        pos = self._pos
        i = self._buf.find(sub, pos + max(0, start))
        return i - pos if i >= 0 else -1

    def peek(self, n: int = -1) -> bytes:
        """Up to ``n`` unconsumed bytes (all if ``n`` < 0), not consumed."""
        pos = self._pos
        buf = self._buf
        end = len(buf) if n < 0 else min(pos + n, len(buf))
        return bytes(buf[pos:end])  # a whole bytes object is returned as it is, not copied

    def next(self, n: int = -1) -> bytes:
        """Up to ``n`` unconsumed bytes (all if ``n`` < 0), consumed."""
        data = self.peek(n)
        self.discard(len(data))
        return data

    def discard(self, n: int = -1) -> int:
        """Consume up to ``n`` bytes (all if ``n`` < 0); return how many."""
        have = len(self._buf) - self._pos
        if n < 0 or n >= have:
            self._buf = b""
            self._pos = 0
            return have
        self._pos += n
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            # Drop the consumed front now and then: amortised O(1) per byte.
            self._buf = bytearray(memoryview(self._buf)[self._pos :])
            self._pos = 0
        return n
