"""A parsed HTTP/1.1 request, the error a bad one raises, and the header rules (RFC 9110, RFC 9112).

gnet counterpart: the seed program's ``request`` struct (proto, method,
path, query, head, body), which keeps the head as one string; here the
fields are split, checked and lower-cased once.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HTTPError", "Request", "parse_head"]


class HTTPError(Exception):
    """A request that cannot be served: answer ``status`` (with ``Connection: close``) and close.

    ``reason`` says what was wrong (it goes into the answer's body).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"HTTPError({self.status}, {self.reason!r})"


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION_RE = re.compile(r"HTTP/([0-9])\.([0-9])")
# RFC 9110 §7.2: Host = uri-host [ ":" port ]; uri-host is an IP-literal, an
# IPv4 address or a reg-name (RFC 3986 unreserved / pct-encoded / sub-delims).
_HOST_RE = re.compile(r"(?:\[[0-9A-Za-z:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_ABSOLUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")

# Bounded caches of strings already checked: clients send the same few
# methods, field names and hosts, so a dict lookup replaces a regex per field.
_CACHE_MAX = 512
_METHODS: set[str] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}
_NAMES: dict[str, str] = {}
_HOSTS: set[str] = set()


def _field_name(name: str, sep: str, line: str) -> str:
    """The lower-cased name of a field line whose name is not cached yet; raises 400 when invalid."""
    if line[:1] in (" ", "\t"):
        raise HTTPError(400, "obsolete line folding (a header line starting with whitespace)")
    if not sep:
        raise HTTPError(400, f"header line without a colon: {line[:60]!r}")
    if not _TOKEN_RE.fullmatch(name):
        # Covers "Name : v" (RFC 9112 §5.1: no whitespace before the colon)
        # and obs-fold, a line starting with SP or HTAB (§5.2).
        raise HTTPError(400, f"invalid header field name {name[:60]!r}")
    key = name.lower()
    if len(_NAMES) < _CACHE_MAX:
        _NAMES[name] = key
    return key


def parse_fields(lines: list[str]) -> tuple[dict[str, str], bool]:
    """Field lines → ``({lower-cased name: value}, duplicate_host)``; repeated fields are joined with ", ".

    For trailer sections; ``parse_head`` has its own copy for the header section.
    """
    fields: dict[str, str] = {}
    names = _NAMES
    duplicate_host = False
    for line in lines:
        name, sep, value = line.partition(":")
        key = names.get(name)
        if key is None or not sep:
            key = _field_name(name, sep, line)
        value = value.strip(" \t")
        if key in fields:
            if key == "host":
                duplicate_host = True
            fields[key] = fields[key] + ", " + value
        else:
            fields[key] = value
    return fields, duplicate_host


def _content_length(value: str, max_body: int) -> int:
    if not (value.isdigit() and value.isascii()):  # isascii: str.isdigit accepts "²"
        # Several values (repeated fields or a list) are only valid when all
        # are the same number (RFC 9110 §8.6); anything else could frame the
        # message differently in a proxy in front of us.
        items = [v.strip(" \t") for v in value.split(",")]
        if not all(v.isdigit() and v.isascii() for v in items) or len({int(v) for v in items}) != 1:
            raise HTTPError(400, f"invalid Content-Length {value[:40]!r}")
        value = items[0]
    digits = value.lstrip("0")
    if len(digits) > 18 or (digits and int(digits) > max_body):
        raise HTTPError(413, f"a body of {value[:40]} bytes is over the limit of {max_body}")
    return int(digits) if digits else 0


def _check_transfer_encoding(value: str) -> None:
    codings = [c.strip(" \t").lower() for c in value.split(",")]
    if not all(codings):
        raise HTTPError(400, f"invalid Transfer-Encoding {value[:40]!r}")
    # RFC 9112 §6.3: without chunked as the final coding a request's length
    # cannot be determined: 400 and close. Chunked twice is not allowed (§7).
    if codings[-1] != "chunked" or codings.count("chunked") > 1:
        raise HTTPError(400, f"Transfer-Encoding {value[:40]!r} does not end with a single chunked")
    if len(codings) > 1:
        raise HTTPError(501, f"transfer codings other than chunked are not implemented: {value[:40]!r}")


class Request:
    """One request: method, target, version, headers (names lower-cased), body.

    ``body_length`` is the body's size even when the parser discarded it
    (``buffer_body=False``: ``body`` is then ``b""``); -1 while a chunked
    body's size is unknown. ``keep_alive`` says whether the connection stays
    open after the answer (HTTP/1.1 unless ``Connection: close``, HTTP/1.0
    only with ``Connection: keep-alive``). A request that could not be
    parsed has ``error`` set and nothing else meaningful.
    """

    # The fields every request sets are slots; the four that are usually
    # their class default (no body, no trailers, no error, no 100-continue)
    # are read from the class and only stored (in __dict__) when they differ:
    # four attribute stores fewer per request on the hot path.
    __slots__ = ("__dict__", "body_length", "headers", "http10", "keep_alive", "method", "target", "version")

    body: bytes = b""
    trailers: dict[str, str] | None = None
    error: HTTPError | None = None
    expect_continue: bool = False

    def __init__(
        self,
        method: str,
        target: str,
        version: str = "HTTP/1.1",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers: dict[str, str] = headers if headers is not None else {}
        if body:
            self.body = body
        self.body_length = len(body)
        self.http10 = version == "HTTP/1.0"
        self.keep_alive = not self.http10

    def __repr__(self) -> str:
        if self.error is not None:
            return f"<Request error={self.error!r}>"
        return f"<Request {self.method} {self.target} {self.version} body={self.body_length}>"

    @classmethod
    def failed(cls, error: HTTPError) -> Request:
        """The stand-in for a request that could not be parsed."""
        req = cls("", "", "")
        req.keep_alive = False
        req.error = error
        return req

    @property
    def path(self) -> str:
        """The target's path: ``/a`` for ``/a?b`` and for the absolute form ``http://host/a?b``."""
        target = self.target
        if target[:1] != "/":
            m = _ABSOLUTE_RE.match(target)
            if m is None:
                return target  # "*" or an authority (CONNECT)
            target = target[m.end():] or "/"
        return target.partition("?")[0]

    @property
    def query(self) -> str:
        """What follows the first ``?`` of the target (``""`` if none)."""
        return self.target.partition("?")[2]

    @property
    def head_only(self) -> bool:
        """A HEAD request: its answer has the headers of the GET answer and no body."""
        return self.method == "HEAD"

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for logs and test assertions)."""
        names = ("method", "target", "version", "headers", "body", "body_length", "trailers", "keep_alive",
                 "http10", "expect_continue", "error")
        return {name: getattr(self, name) for name in names}


#: Maps each control character (but HTAB) to another byte, every other byte
#: to itself: ``x.translate(_CTL_CRLF_MAP) != x`` finds any of them in one
#: pass (CPython returns ``x`` itself when nothing changed). CR and LF are
#: flagged too, so it is applied once the CRLFs are removed.
_CTL_CRLF_MAP = bytes((0x01 if b == 0x7F else 0x7F) if b < 0x20 and b != 9 or b == 0x7F else b for b in range(256))
_FRAMING = frozenset(("transfer-encoding", "content-length", "connection", "expect"))


def _check_line_endings(block: bytes) -> None:
    """Refuse a block with a control character (but HTAB), or a CR or LF that is not part of a CRLF.

    RFC 9112 §2.2: a bare CR must be refused; a bare LF is where a front end
    and this server could disagree on where a line ends.

    :raises HTTPError: 400.
    """
    bare = block.replace(b"\r\n", b"")
    if bare.translate(_CTL_CRLF_MAP) != bare:
        raise HTTPError(400, "control character, or CR or LF outside a CRLF")


_new = Request.__new__


def parse_head(head: bytes, max_body: int) -> Request | None:
    """The request of a complete header block (ending CRLFCRLF), or None for a leading empty line.

    :raises HTTPError: the request is malformed, ambiguous or too large.

    One function, written out, and counted in instructions (docs/http.md):
    it runs once per request, and each Python call or pass it saves costs
    about as much as a header line's checks.
    """
    if head[0] == 13:  # b"\r": RFC 9112 §2.2 lets a server skip an empty line here
        _check_line_endings(head[:2])
        return None
    # With the CRLFs removed, no CR, LF or other control character (HTAB
    # aside) may be left: one replace and one translate find them all.
    bare = head.replace(b"\r\n", b"")
    if bare.translate(_CTL_CRLF_MAP) != bare:
        raise HTTPError(400, "control character, or CR or LF outside a CRLF, in the request head")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HTTPError(400, f"malformed request line {lines[0][:80]!r}") from None
    if method not in _METHODS:
        if not _TOKEN_RE.fullmatch(method):
            raise HTTPError(400, f"invalid method {method[:40]!r}")
        if len(_METHODS) < _CACHE_MAX:
            _METHODS.add(method)
    if version == "HTTP/1.1":
        http10 = False
    elif version == "HTTP/1.0":
        http10 = True
    else:
        m = _VERSION_RE.fullmatch(version)
        if m is None:
            raise HTTPError(400, f"malformed HTTP version {version[:20]!r}")
        if m.group(1) != "1":
            # RFC 9110 §15.6.6: 505 for a major version the server does not speak.
            raise HTTPError(505, f"{version} is not supported, only HTTP/1.0 and HTTP/1.1")
        http10 = m.group(2) == "0"  # 1.2 and later are answered as 1.1 (RFC 9110 §2.5)
    if target[:1] != "/" and not _other_target_form(method, target):
        raise HTTPError(400, f"invalid request target {target[:80]!r}")
    if "\t" in target:
        raise HTTPError(400, "tab in the request target")
    # The field lines (parse_fields, inlined); the last two "lines" are the
    # empty strings around the final CRLFCRLF.
    headers: dict[str, str] = {}
    names = _NAMES
    host = None
    for line in lines[1:-2]:
        name, sep, value = line.partition(":")
        key = names.get(name)
        if key is None or not sep:
            key = _field_name(name, sep, line)
        value = value.strip(" \t")
        if key in headers:
            if key == "host":
                raise HTTPError(400, "more than one Host header field")
            headers[key] = headers[key] + ", " + value
        else:
            headers[key] = value
            if key == "host":
                host = value
    req = _new(Request)
    req.method = method
    req.target = target
    req.version = version
    req.headers = headers
    req.http10 = http10
    if host is not None:
        if host not in _HOSTS:
            if not _HOST_RE.fullmatch(host):
                raise HTTPError(400, f"invalid Host {host[:60]!r}")
            if len(_HOSTS) < _CACHE_MAX:
                _HOSTS.add(host)
        if _FRAMING.isdisjoint(headers):
            # No Content-Length, Transfer-Encoding, Connection or Expect
            # (wrk's GET, a browser's): no body, the version's persistence.
            req.body_length = 0
            req.keep_alive = not http10
            return req
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None:
        # RFC 9112 §6.1 and §6.3: with both, or TE in HTTP/1.0, the framing
        # is faulty; a proxy in front may have used the other one.
        if cl is not None:
            raise HTTPError(400, "both Transfer-Encoding and Content-Length")
        if http10:
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        _check_transfer_encoding(te)
        req.body_length = -1
    elif cl is not None:
        req.body_length = _content_length(cl, max_body)
    else:
        req.body_length = 0
    if host is None and not http10:  # after the framing checks: a 413 says more than this 400
        raise HTTPError(400, "HTTP/1.1 request without a Host header field")
    connection = headers.get("connection")
    if connection is None:
        req.keep_alive = not http10
    else:
        tokens = {t.strip(" \t") for t in connection.lower().split(",")}
        req.keep_alive = "close" not in tokens and (not http10 or "keep-alive" in tokens)
    expect = headers.get("expect")
    if expect is not None and not http10:  # RFC 9110 §10.1.1: ignored in HTTP/1.0
        if expect.lower() != "100-continue":
            raise HTTPError(417, f"unsupported expectation {expect[:40]!r}")
        if req.body_length != 0:
            req.expect_continue = True
    return req


def _other_target_form(method: str, target: str) -> bool:
    """RFC 9112 §3.2: absolute-form, authority-form (CONNECT only), asterisk-form (OPTIONS only)."""
    if method == "CONNECT":
        return bool(target) and _HOST_RE.fullmatch(target) is not None
    if target == "*":
        return method == "OPTIONS"
    return _ABSOLUTE_RE.match(target) is not None
