"""reactor.http's request parser, response helpers and byte buffer (RFC 9110 / RFC 9112 rules).

The parser is driven through ``ByteBuffer``, the plain-bytes source with the
``Conn`` buffer API (find/peek/next/discard/inbound_buffered); the same
parser on real connections is tested in tests/http/. No kernel is involved
in parsing, so there is nothing to mock.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor.http import (
    CONTINUE,
    ByteBuffer,
    HTTPError,
    Limits,
    Request,
    RequestParser,
    connection_header,
    error_response,
    reason,
    response,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
TE = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def parse(data: bytes, **limits: object) -> list[Request]:
    parser = RequestParser(Limits(**limits))  # type: ignore[arg-type]
    return parser.parse(ByteBuffer(data))


def parse_all(pieces: list[bytes], **limits: object) -> tuple[list[Request], RequestParser, ByteBuffer]:
    """Feed ``pieces`` one at a time, parsing after each (as a codec does per read)."""
    parser = RequestParser(Limits(**limits))  # type: ignore[arg-type]
    buf = ByteBuffer()
    out: list[Request] = []
    for piece in pieces:
        buf.write(piece)
        while True:
            batch = parser.parse(buf)
            out += batch
            if not batch:
                break
    return out, parser, buf


def status_of(data: bytes, **limits: object) -> int | None:
    reqs = parse(data, **limits)
    if reqs and reqs[-1].error is not None:
        return reqs[-1].error.status
    return None


# --- what is accepted ----------------------------------------------------------------------------------
def test_simple_get() -> None:
    (req,) = parse(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Empty:\r\n\r\n")
    assert (req.method, req.target, req.version) == ("GET", "/a/b?x=1&y", "HTTP/1.1")
    assert (req.path, req.query) == ("/a/b", "x=1&y")
    assert req.headers == {"host": "example.com", "accept": "*/*", "x-empty": ""}
    assert req.keep_alive and not req.http10 and req.error is None
    assert req.body == b"" and req.body_length == 0


def test_field_values_lose_their_optional_whitespace_and_repeats_are_joined() -> None:
    (req,) = parse(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \t one \t\r\nx-a: two\r\nUser-Agent: a \xe9 b\r\n\r\n")
    assert req.headers["x-a"] == "one, two"
    assert req.headers["user-agent"] == "a \xe9 b"  # obs-text is allowed in values


def test_absolute_form_target_gives_the_path() -> None:
    (req,) = parse(b"GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert req.path == "/p/q" and req.query == "z=1"
    (req,) = parse(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert req.path == "/"


def test_asterisk_and_authority_forms() -> None:
    assert parse(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")[0].target == "*"
    assert parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")[0].error is None
    assert status_of(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n") == 400
    assert status_of(b"GET example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n") == 400


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Keep-Alive, CLOSE", False),
        ("HTTP/1.1", "upgrade", True),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
        ("HTTP/1.0", "Keep-Alive", True),
        ("HTTP/1.0", "foo ,\tkeep-alive", True),
        ("HTTP/1.0", "keep-alive, close", False),
        ("HTTP/1.2", None, True),  # a later 1.x minor is answered as 1.1 (RFC 9110 §2.5)
    ],
)
def test_connection_tokens(version: str, connection: str | None, keep_alive: bool) -> None:
    head = f"GET / {version}\r\nHost: x\r\n" + (f"Connection: {connection}\r\n" if connection else "") + "\r\n"
    (req,) = parse(head.encode())
    assert req.keep_alive is keep_alive
    assert req.http10 is (version == "HTTP/1.0")


def test_http10_needs_no_host() -> None:
    (req,) = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert req.error is None and not req.keep_alive


@pytest.mark.parametrize("value, length", [("5", 5), ("005", 5), ("0", 0), ("5, 5", 5), ("5,5", 5), (" 5 ", 5)])
def test_content_length_forms(value: str, length: int) -> None:
    body = b"x" * length
    (req,) = parse(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n".encode() + body)
    assert req.error is None and req.body == body and req.body_length == length


def test_repeated_equal_content_length_fields() -> None:
    (req,) = parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 003\r\n\r\nabc")
    assert req.body == b"abc"


def test_chunked_body_is_decoded_with_extensions_and_trailers() -> None:
    data = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5\r\nhello\r\n"
        b"6;name=value;flag\r\n world\r\n"
        b"00A ; q=\"quoted \\\" ;\"\r\n0123456789\r\n"
        b"0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"
    )
    (req,) = parse(data + GET)[:1]
    assert req.body == b"hello world0123456789" and req.body_length == 21
    assert req.trailers == {"x-checksum": "abc", "x-more": "1"}
    assert len(parse(data + GET)) == 2


def test_transfer_encoding_spellings_that_mean_chunked() -> None:
    body = b"3\r\nabc\r\n0\r\n\r\n"
    for value in (b"chunked", b"CHUNKED", b"\tchunked", b"  chunked  ", b"chunked\t"):
        (req,) = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:" + value + b"\r\n\r\n" + body)
        assert req.error is None and req.body == b"abc", value


def test_discarded_bodies_are_counted_not_kept() -> None:
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
    reqs, _, buf = parse_all([data[:50], data[50:55], data[55:] + chunked + GET], buffer_body=False)
    assert [(r.method, r.body, r.body_length) for r in reqs] == [("POST", b"", 10), ("POST", b"", 6), ("GET", b"", 0)]
    assert buf.inbound_buffered() == 0


def test_a_discarded_body_holds_no_buffer_while_it_arrives() -> None:
    parser = RequestParser(Limits(buffer_body=False, max_body_size=10**7))
    buf = ByteBuffer(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    for _ in range(100):
        buf.write(b"z" * 9999)
        assert parser.parse(buf) == []
        assert buf.inbound_buffered() == 0
    buf.write(b"z" * 100 + GET)
    reqs = parser.parse(buf)
    assert [r.body_length for r in reqs] == [1000000, 0]


def test_empty_lines_before_a_request_line_are_ignored() -> None:
    reqs = parse(b"\r\n" + GET + b"\r\n\r\n" + GET)
    assert [r.error for r in reqs] == [None, None]
    assert status_of(b"\r\n" * 20 + GET) == 400


def test_expect_100_continue() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"
    parser = RequestParser()
    buf = ByteBuffer(head)
    assert parser.parse(buf) == [] and parser.continue_due
    parser.continue_due = False
    buf.write(b"abc")
    (req,) = parser.parse(buf)
    assert req.body == b"abc" and not parser.continue_due
    # The body is already here: no 100 needed. HTTP/1.0: the expectation is ignored.
    parser = RequestParser()
    assert len(parser.parse(ByteBuffer(head + b"abc"))) == 1 and not parser.continue_due
    parser = RequestParser()
    parser.parse(ByteBuffer(head.replace(b"HTTP/1.1", b"HTTP/1.0")))
    assert not parser.continue_due
    # No body: nothing to wait for.
    parser = RequestParser()
    parser.parse(ByteBuffer(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"))
    assert not parser.continue_due


def test_100_continue_waits_for_the_answers_before_it() -> None:
    """Pipelined GET + POST expecting 100: the GET comes out alone, then the 100 is due."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    parser = RequestParser()
    buf = ByteBuffer(GET + head)
    (first,) = parser.parse(buf)
    assert first.method == "GET" and not parser.continue_due
    assert parser.parse(buf) == [] and parser.continue_due


def test_batch_limit_and_the_rest_on_the_next_call() -> None:
    reqs, _, _ = parse_all([GET * 10], max_batch=3)
    assert len(reqs) == 10
    assert len(RequestParser(Limits(max_batch=3)).parse(ByteBuffer(GET * 10))) == 3


# --- what is refused -----------------------------------------------------------------------------------
REFUSED = {
    # request line and version
    "garbage": (b"BAD\r\n\r\n", 400),
    "no version": (b"GET /\r\nHost: x\r\n\r\n", 400),
    "two spaces": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "tab in target": (b"GET /\ta HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad method": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "relative target": (b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "lowercase version": (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    "version 1.10": (b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "HTTP/3.0": (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    "HTTP/0.9": (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    # line endings and characters
    "bare LF ends lines": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "bare LF in one line": (b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
    "bare LF, CRLF end": (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    "bare CR": (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),
    "NUL in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    "NUL in name": (b"GET / HTTP/1.1\r\nHost: x\r\nX\x00: a\r\n\r\n", 400),
    "DEL in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400),
    "ESC in target": (b"GET /\x1b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # field syntax
    "space before colon": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", 400),
    "tab before colon": (b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400),
    "no colon": (b"GET / HTTP/1.1\r\nHost: x\r\nJustAName\r\n\r\n", 400),
    "empty name": (b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "obs-fold with tab": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400),
    # Host
    "no Host in 1.1": (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "two Hosts in 1.0": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    "bad Host": (b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),
    # Content-Length
    "CL differ": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "CL list differ": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    "CL sign": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    "CL negative": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    "CL hex": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    "CL inner space": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\n", 400),
    "CL empty": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400),
    "CL superscript": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n", 400),
    "CL underscore": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n", 400),
    "CL 2**63": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % 2**63, 413),
    "CL over limit": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", 413),
    # Transfer-Encoding
    "TE and CL": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "TE in 1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE space before colon": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    "TE xchunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    "TE chunked, identity": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    "TE twice": (TE[:-2] + b"Transfer-Encoding: identity\r\n\r\n", 400),
    "TE chunked twice": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    "TE empty": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", 400),
    "TE empty item": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400),
    "TE gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "TE gzip, chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    "TE obs-fold": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400),
    # chunked body framing
    "chunk size not hex": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", 400),
    "chunk size sign": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n", 400),
    "chunk size 0x": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n", 400),
    "chunk size space": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n", 400),
    "chunk line bare LF": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", 400),
    "chunk data no CRLF": (TE + b"5\r\nhelloXX0\r\n\r\n", 400),
    "chunk bad ext": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n", 400),
    "chunk over limit": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413),
    "chunk size huge": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n", 413),
    "trailer bad name": (TE + b"0\r\nBad Name: v\r\n\r\n", 400),
    "trailer bare LF": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: v\n\n", 400),
    # Expect
    "unknown expectation": (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417),
    "expectation list": (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\n\r\n", 417),
    # sizes
    "header block over 8 KiB": (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "partial header over 8 KiB": (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000, 431),
}


@pytest.mark.parametrize("data, status", list(REFUSED.values()), ids=list(REFUSED))
def test_refused(data: bytes, status: int) -> None:
    """The request is answered by ``status``; valid requests before it are kept, nothing after it is parsed."""
    reqs = parse(GET + data + GET)
    assert [r.error is None for r in reqs] == [True, False], reqs
    err = reqs[-1].error
    assert err is not None and err.status == status, err
    assert not reqs[-1].keep_alive
    # Split byte by byte, the verdict is the same.
    split, parser, buf = parse_all([bytes([b]) for b in GET + data + GET])
    assert [r.error.status if r.error else None for r in split] == [None, status]
    assert parser.closed and buf.inbound_buffered() == 0


def test_nothing_is_parsed_after_an_error_or_a_close() -> None:
    parser = RequestParser()
    buf = ByteBuffer(GET + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET)
    assert [r.keep_alive for r in parser.parse(buf)] == [True, False]
    assert parser.closed and buf.inbound_buffered() == 0
    buf.write(GET)
    assert parser.parse(buf) == [] and buf.inbound_buffered() == 0


def test_limits_are_configurable() -> None:
    assert status_of(GET.replace(b"Host: x", b"Host: " + b"x" * 100), max_header_size=64) == 431
    assert status_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", max_body_size=10) == 413
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n"
    assert status_of(chunked, max_body_size=10) == 413
    assert status_of(TE + b"1;" + b"a" * 100, max_chunk_line=50) == 400
    with pytest.raises(ValueError):
        Limits(max_header_size=0)


# --- incremental: no re-scan from the start ------------------------------------------------------------
class CountingBuffer(ByteBuffer):
    """Counts the bytes ``find`` looks at (from its start offset to the end)."""

    __slots__ = ("scanned_bytes",)

    def __init__(self) -> None:
        super().__init__()
        self.scanned_bytes = 0

    def find(self, sub: bytes, start: int = 0) -> int:
        self.scanned_bytes += self.inbound_buffered() - max(start, 0)
        return super().find(sub, start)


@pytest.mark.parametrize("what", ["head", "chunk line", "trailer"])
def test_a_trickled_block_is_scanned_about_once(what: str) -> None:
    """A 6 KB header block (or chunk line, or trailer) sent one byte per read is not re-scanned per read."""
    te = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    if what == "head":
        prefix, block = b"", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 6000 + b"\r\n\r\n"
    elif what == "chunk line":
        prefix, block = te, b"1;" + b"e" * 3000 + b"\r\nz\r\n0\r\n\r\n"
    else:
        prefix, block = te, b"0\r\nX: " + b"t" * 6000 + b"\r\n\r\n"
    parser = RequestParser()
    buf = CountingBuffer()
    buf.write(prefix)
    assert parser.parse(buf) == []
    reqs: list[Request] = []
    for i in range(len(block)):
        buf.write(block[i : i + 1])
        reqs += parser.parse(buf)
    assert len(reqs) == 1 and reqs[0].error is None
    # Each read is looked at by three searches (the terminator and two
    # bare-LF checks), each from 3 bytes back: ~12 bytes per 1-byte read.
    # Re-scanning from the start would be ~len²/2, about 3000 times more.
    assert buf.scanned_bytes < 20 * len(block)


def test_head_pending_while_a_head_arrives() -> None:
    parser = RequestParser()
    buf = ByteBuffer(GET[:5])
    parser.parse(buf)
    assert parser.head_pending
    buf.write(GET[5:])
    assert len(parser.parse(buf)) == 1 and not parser.head_pending


# --- property: however a pipeline is split, the same requests come out ------------------------------------
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ;=,/:0123456789", max_size=30).map(str.strip)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, tuple[str, str, dict[str, str], bytes]]:
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]))
    target = "/" + draw(st.text(alphabet="abc/xyz?=&%09", max_size=20))
    headers = {"host": draw(st.sampled_from(["x", "example.com:8080", "127.0.0.1"]))}
    for name in draw(st.lists(_token, max_size=4, unique=True)):
        if name not in ("host", "content-length", "transfer-encoding", "connection", "expect"):
            headers["x-" + name] = draw(_value)
    body = draw(st.binary(max_size=200)) if method in ("POST", "PUT") else b""
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    if body and draw(st.booleans()):
        sizes = draw(st.lists(st.integers(1, 50), max_size=8))
        chunks, rest = [], body
        for n in sizes:
            chunks.append(rest[:n])
            rest = rest[n:]
        chunks.append(rest)
        wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
        lines.append("Transfer-Encoding: chunked")
        headers["transfer-encoding"] = "chunked"
    else:
        wire = body
        if body or draw(st.booleans()):
            lines.append(f"Content-Length: {len(body)}")
            headers["content-length"] = str(len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + wire, (method, target, headers, body)


@PROPERTY
@given(reqs=st.lists(requests(), min_size=1, max_size=6), cuts=st.lists(st.integers(0, 3000), max_size=12),
       buffer_body=st.booleans())
def test_any_split_of_a_pipeline_gives_the_same_requests(
    reqs: list[tuple[bytes, tuple[str, str, dict[str, str], bytes]]], cuts: list[int], buffer_body: bool
) -> None:
    data = b"".join(wire for wire, _ in reqs)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    got, parser, buf = parse_all(pieces, buffer_body=buffer_body, max_batch=4)
    expected = [(m, t, h, b if buffer_body else b"") for _, (m, t, h, b) in reqs]
    assert [(r.method, r.target, r.headers, r.body) for r in got] == expected
    assert [r.body_length for r in got] == [len(b) for _, (_, _, _, b) in reqs]
    assert buf.inbound_buffered() == 0 and not parser.closed


# --- responses and the buffer ---------------------------------------------------------------------------
def test_response_fits_the_request() -> None:
    (head_req,) = parse(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    (ka10,) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    (close10,) = parse(b"GET / HTTP/1.0\r\n\r\n")
    head = response(200, b"hello", request=head_req)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 5\r\n" in head and head.endswith(b"\r\n\r\n")
    assert b"Connection: keep-alive\r\n" in response(200, b"x", request=ka10)
    assert b"Connection: close\r\n" in response(200, b"x", request=close10)
    assert connection_header(head_req) == b""
    plain = response(201, b"ok", {"X-A": "1"})
    assert plain.endswith(b"\r\n\r\nok") and b"X-A: 1\r\n" in plain and b"Date: " in plain
    assert b"Content-Length" not in response(204)


def test_error_response_closes() -> None:
    data = error_response(HTTPError(505, "HTTP/2.0 is not supported"))
    assert data.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert b"Connection: close\r\n" in data and data.endswith(b"HTTP/2.0 is not supported\r\n")
    assert reason(431) == b"Request Header Fields Too Large" and reason(799) == b"Unknown"
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_byte_buffer_has_conn_semantics() -> None:
    buf = ByteBuffer(b"hello world")
    assert buf.find(b"o") == 4 and buf.find(b"o", 5) == 7 and buf.find(b"o", -3) == 4 and buf.find(b"zz") == -1
    assert buf.peek(5) == b"hello" and buf.next(6) == b"hello " and buf.peek() == b"world"
    assert buf.find(b"o") == 1 and buf.discard(2) == 2 and buf.inbound_buffered() == 3
    assert buf.discard(-1) == 3 and buf.inbound_buffered() == 0
    big = ByteBuffer()
    for i in range(300):
        big.write(b"%05d" % i * 100)
        big.discard(400)
    assert big.inbound_buffered() == 300 * 100 and big.peek(5) == b"%05d" % 240
