"""HTTP expectations for :class:`~reactor.testing.HTTPHandler`, in pytest-httpserver's style.

What an expectation is made of, and what it answers:

* :class:`RequestMatcher`: what a request must look like (URI, method, query
  string, headers, body, JSON, form fields); ``match(request)`` and
  ``difference(request)`` work on any request with ``method``, ``path``,
  ``query``, ``headers`` (lower-cased names) and ``body``: the fixture's
  :class:`~reactor.testing.HTTPRequest` and :class:`reactor.http.Request` alike.
* :class:`URIPattern`, :class:`QueryMatcher` (:class:`StringQueryMatcher`,
  :class:`MappingQueryMatcher`, :class:`BooleanQueryMatcher`) and
  :class:`HeaderValueMatcher`: the pluggable parts of a matcher.
* :class:`Expectation`: a matcher and its answer (``respond_with_data``,
  ``respond_with_json``, ``respond_with_response``, ``respond_with_handler``,
  ``with_post_hook``); what pytest-httpserver calls a ``RequestHandler``.
* :class:`HTTPResponse` (with :class:`ResponseHeaders`): a response as data.
* :class:`HandlerType`: permanent, oneshot or ordered.
* :class:`BakedExpectations` (``HTTPHandler.bake()``) and :class:`WaitResult`
  (``HTTPHandler.wait()``).

The names and signatures are pytest-httpserver's (docs/testing.md has the
side-by-side table); what differs is that nothing here needs werkzeug: a
``dict`` whose values are lists stands for a ``MultiDict``, and a response is
an :class:`HTTPResponse` (a werkzeug ``Response`` is accepted too).
"""

from __future__ import annotations

import abc
import base64
import binascii
import copy
import email.parser
import email.policy
import enum
import json as _json
import re
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias

if TYPE_CHECKING:
    from .http import HTTPHandler, HTTPRequest

__all__ = [
    "METHOD_ALL",
    "UNDEFINED",
    "URI_DEFAULT",
    "BakedExpectations",
    "BooleanQueryMatcher",
    "Expectation",
    "HTTPResponse",
    "HandlerType",
    "HeaderValueMatcher",
    "MappingQueryMatcher",
    "QueryMatcher",
    "RequestLike",
    "RequestMatcher",
    "ResponseHeaders",
    "StringQueryMatcher",
    "URIPattern",
    "WaitResult",
]

#: ``method=`` value matching every method (the default).
METHOD_ALL = "__ALL"
#: ``uri=`` value matching every path.
URI_DEFAULT = ""


class _Undefined:
    """The type of :data:`UNDEFINED`."""

    def __repr__(self) -> str:
        return "<UNDEFINED>"


#: ``json=`` default: no JSON matching (``json=None`` expects the body ``null``).
UNDEFINED: Any = _Undefined()

#: Response headers as given: a mapping, ``(name, value)`` pairs, or None.
HeadersArg: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]] | ResponseHeaders | None"
#: ``header_value_matcher=``: ``(header name as given, actual value or None, expected value) -> bool``.
HeaderMatcherFunc: TypeAlias = Callable[[str, "str | None", str], bool]
#: A post hook: ``(request, response) -> response``.
PostHook: TypeAlias = "Callable[[HTTPRequest, HTTPResponse], Any]"


class RequestLike(Protocol):
    """What matchers read from a request: the fixture's ``HTTPRequest`` or ``reactor.http.Request``."""

    @property
    def method(self) -> str:
        """The method, e.g. ``"GET"``."""
        ...

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        ...

    @property
    def query(self) -> str:
        """What follows the ``?`` of the target (``""`` if none)."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The header fields; names lower-cased."""
        ...

    @property
    def body(self) -> bytes:
        """The (decoded) body."""
        ...


# --- request helpers ----------------------------------------------------------------------------------------
def _header(request: RequestLike, name: str) -> str | None:
    return request.headers.get(name.lower())


def _first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def form_pairs(request: RequestLike, encoding: str = "utf-8") -> list[tuple[str, str]]:
    """The form fields of a request body, in order: ``application/x-www-form-urlencoded`` or ``multipart/form-data``.

    File parts of a multipart body (those with a ``filename``) are not form
    fields and are left out, as werkzeug puts them in ``request.files``.
    Any other ``Content-Type``: no fields.
    """
    ctype = _header(request, "content-type") or ""
    mime = ctype.partition(";")[0].strip().lower()
    if mime == "application/x-www-form-urlencoded":
        return urllib.parse.parse_qsl(request.body.decode(encoding, "replace"), keep_blank_values=True)
    if mime != "multipart/form-data":
        return []
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields = []
    for part in message.iter_parts() if message.is_multipart() else ():
        disposition = part.get("content-disposition")
        if disposition is None or part.get_param("filename", header="content-disposition") is not None:
            continue
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        fields.append((name, payload.decode(part.get_content_charset() or encoding, "replace")))
    return fields


def _multi_compare(pairs: list[tuple[str, str]], expected: Any) -> tuple[Any, Any]:
    """``(received, expected)`` to compare for a query or form: first values, or all of them.

    A value given as a list (or tuple) must match every value of that name,
    in order; any other value matches the first one. An object with
    ``getlist`` (werkzeug's ``MultiDict``) matches all values of every name.
    """
    if hasattr(expected, "getlist"):
        received: dict[str, list[str]] = {}
        for k, v in pairs:
            received.setdefault(k, []).append(v)
        return received, {k: list(expected.getlist(k)) for k in expected.keys()}
    want = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in expected.items()}
    got: dict[str, Any] = {}
    for k, v in pairs:
        if isinstance(want.get(k), list):
            got.setdefault(k, []).append(v)
        else:
            got.setdefault(k, v)
    return got, want


# --- URI, query and header matchers -------------------------------------------------------------------------
class URIPattern(abc.ABC):
    """A custom path matcher: subclass it and define :meth:`match`."""

    @abc.abstractmethod
    def match(self, uri: str) -> bool:
        """Whether ``uri`` (the request's path: starts with ``/``, no query) matches."""


class QueryMatcher(abc.ABC):
    """Matches a request's query string: :meth:`get_comparing_values` returns the two values to compare."""

    def match(self, request_query_string: bytes) -> bool:
        """Whether the query string (bytes, without the ``?``) matches."""
        received, expected = self.get_comparing_values(request_query_string)
        return bool(received == expected)

    @abc.abstractmethod
    def get_comparing_values(self, request_query_string: bytes) -> tuple[Any, Any]:
        """``(received, expected)``: the request's value and the expected one, compared with ``==``."""


class StringQueryMatcher(QueryMatcher):
    """The query string exactly, byte for byte (a ``str`` is UTF-8 encoded; nothing is percent-decoded)."""

    def __init__(self, query_string: bytes | str) -> None:
        if not isinstance(query_string, (str, bytes)):
            raise TypeError("query_string must be a str or bytes")
        self.query_string = query_string

    def get_comparing_values(self, request_query_string: bytes) -> tuple[bytes, bytes]:
        """The received query and the expected one, as bytes."""
        expected = self.query_string.encode() if isinstance(self.query_string, str) else self.query_string
        return request_query_string, expected

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.query_string!r})"


class MappingQueryMatcher(QueryMatcher):
    """The parsed query (percent-decoded, ``+`` is a space, blank values kept) against a mapping.

    Each name's first value is compared, unless the expected value is a
    list: then all its values are, in order. Extra or missing names fail.
    """

    def __init__(self, query_dict: Mapping[str, Any]) -> None:
        self.query_dict = query_dict

    def get_comparing_values(self, request_query_string: bytes) -> tuple[Any, Any]:
        """The parsed query and the expected mapping, normalised alike (see the class)."""
        pairs = urllib.parse.parse_qsl(request_query_string.decode("utf-8", "replace"), keep_blank_values=True)
        return _multi_compare(pairs, self.query_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.query_dict!r})"


class BooleanQueryMatcher(QueryMatcher):
    """Every query (``result=True``, what ``query_string=None`` means) or none."""

    def __init__(self, result: bool) -> None:
        self.result = result

    def get_comparing_values(self, request_query_string: bytes) -> tuple[bool, bool]:
        """``(True, result)``."""
        return True, self.result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.result!r})"


def _query_matcher(query_string: QueryMatcher | str | bytes | Mapping[str, Any] | None) -> QueryMatcher:
    if isinstance(query_string, QueryMatcher):
        return query_string
    if query_string is None:
        return BooleanQueryMatcher(True)
    if isinstance(query_string, (str, bytes)):
        return StringQueryMatcher(query_string)
    if isinstance(query_string, Mapping) or hasattr(query_string, "getlist"):
        return MappingQueryMatcher(query_string)
    raise TypeError(f"query_string: expected a str, bytes, mapping or QueryMatcher, not {type(query_string).__name__}")


_AUTH_PARAM = re.compile(r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)""")


def _parse_authorization(value: str | None) -> tuple[str, Any] | None:
    """``(scheme, parameters)`` of an Authorization value: a dict for ``k=v`` lists (any order), else the token."""
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "basic":
        try:
            return "basic", base64.b64decode(rest, validate=True)
        except (binascii.Error, ValueError):
            return "basic", rest
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _AUTH_PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return scheme.lower(), rest  # not a parameter list: a token68
        raw = m.group(2)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = m.end()
    return scheme.lower(), params


class HeaderValueMatcher:
    """Compares header values, with a comparator per header name (names compared case-insensitively).

    ``matchers`` maps a header name to ``(actual or None, expected) -> bool``;
    the default, :attr:`DEFAULT_MATCHERS`, compares ``Authorization`` values
    parameter by parameter (their order does not matter) and every other
    header with ``==``. Add to ``DEFAULT_MATCHERS`` to change every matcher
    at once, or pass a mapping of your own. An instance is a valid
    ``header_value_matcher=``.
    """

    DEFAULT_MATCHERS: ClassVar[MutableMapping[str, Callable[[str | None, str], bool]]]

    def __init__(self, matchers: Mapping[str, Callable[[str | None, str], bool]] | None = None) -> None:
        self.matchers = self.DEFAULT_MATCHERS if matchers is None else matchers

    @staticmethod
    def authorization_header_value_matcher(actual: str | None, expected: str) -> bool:
        """Same scheme and the same parameters in any order (Digest, ...), or the same credentials (Basic)."""
        return actual is not None and _parse_authorization(actual) == _parse_authorization(expected)

    @staticmethod
    def default_header_value_matcher(actual: str | None, expected: str) -> bool:
        """``actual == expected``."""
        return actual == expected

    def __call__(self, header_name: str, actual: str | None, expected: str) -> bool:
        """Compare with the comparator registered for ``header_name``.

        :raises LookupError: none is, and ``matchers`` has no default (is not a ``defaultdict``).
        """
        matcher = self.matchers.get(header_name)
        if matcher is None:
            lowered = header_name.lower()
            matcher = next((m for name, m in self.matchers.items() if name.lower() == lowered), None)
        if matcher is None:
            factory = getattr(self.matchers, "default_factory", None)
            if factory is None:
                raise LookupError(f"no header value matcher for {header_name!r}")
            matcher = factory()
        return bool(matcher(actual, expected))


HeaderValueMatcher.DEFAULT_MATCHERS = defaultdict(
    lambda: HeaderValueMatcher.default_header_value_matcher,
    {"Authorization": HeaderValueMatcher.authorization_header_value_matcher},
)


# --- the request matcher ------------------------------------------------------------------------------------
class RequestMatcher:
    """What a request must look like; every criterion given must hold (a logical AND).

    :param uri: the path (no query: ``"/foo"``), ``""`` for any, a compiled
        regular expression (``re.compile("^/foo")``, matched with ``.match``)
        or a :class:`URIPattern`.
    :param method: the method (case-insensitive); :data:`METHOD_ALL` for any.
    :param data: the exact body; a ``str`` is encoded with ``data_encoding``.
    :param headers: header values, compared by ``header_value_matcher``
        (default: a :class:`HeaderValueMatcher`); names are case-insensitive.
    :param query_string: a ``str``/``bytes`` compared byte for byte (no
        percent-decoding), a mapping compared with the decoded parameters in
        any order (a list value: all values of that name), a
        :class:`QueryMatcher`, or None for any.
    :param json: the body parsed as JSON must equal this (``Content-Type`` is
        not checked); a body that is not JSON does not match.
    :param data_form: the form fields (urlencoded or multipart) must be these,
        as for a ``query_string`` mapping.

    ``data``, ``json`` and ``data_form`` are mutually exclusive.
    """

    def __init__(
        self,
        uri: str | URIPattern | re.Pattern[str],
        method: str = METHOD_ALL,
        data: str | bytes | None = None,
        data_encoding: str = "utf-8",
        headers: Mapping[str, str] | None = None,
        query_string: QueryMatcher | str | bytes | Mapping[str, Any] | None = None,
        header_value_matcher: HeaderMatcherFunc | None = None,
        json: Any = UNDEFINED,
        data_form: Mapping[str, Any] | None = None,
    ) -> None:
        if json is not UNDEFINED and data is not None:
            raise ValueError("data and json are mutually exclusive")
        if data_form is not None and (data is not None or json is not UNDEFINED):
            raise ValueError("data_form is mutually exclusive with data and json")
        if isinstance(uri, str) and "?" in uri:
            raise ValueError(
                f"uri {uri!r} has a query: it is matched against the path only, so it would never match; "
                "pass the query as query_string= (a str, or a dict)"
            )
        self.uri = uri
        self.method = method if method == METHOD_ALL else method.upper()
        self.query_string = query_string
        self.query_matcher = _query_matcher(query_string)
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.data = data.encode(data_encoding) if isinstance(data, str) else data
        self.data_encoding = data_encoding
        self.json = json
        self.data_form = data_form
        self.header_value_matcher: HeaderMatcherFunc = (
            header_value_matcher if header_value_matcher is not None else HeaderValueMatcher()
        )

    def __repr__(self) -> str:
        text = (
            f"<{type(self).__name__} uri={self.uri!r} method={self.method!r} query_string={self.query_string!r} "
            f"headers={dict(self.headers)!r} data={self.data!r} json={self.json!r}"
        )
        if self.data_form is not None:
            text += f" data_form={self.data_form!r}"
        return text + ">"

    def match_uri(self, request: RequestLike) -> bool:
        """Whether the request's path matches ``uri``."""
        path = request.path
        if isinstance(self.uri, URIPattern):
            return self.uri.match(path)
        if isinstance(self.uri, re.Pattern):
            return self.uri.match(path) is not None
        return self.uri in (URI_DEFAULT, path)

    def match_method(self, request: RequestLike) -> bool:
        """Whether the method matches (always, for :data:`METHOD_ALL`)."""
        return self.method in (METHOD_ALL, request.method)

    def match_query(self, request: RequestLike) -> bool:
        """Whether the query string matches ``query_string``."""
        return self.query_matcher.match(request.query.encode("latin-1", "replace"))

    def headers_difference(self, request: RequestLike) -> tuple[dict[str, str | None], dict[str, str]]:
        """``(received, expected)`` values of the headers that do not match (two empty dicts: all match)."""
        received: dict[str, str | None] = {}
        expected: dict[str, str] = {}
        for name, value in self.headers.items():
            actual = _header(request, name)
            if not self.header_value_matcher(name, actual, value):
                received[name] = actual
                expected[name] = value
        return received, expected

    def match_data(self, request: RequestLike) -> bool:
        """Whether the body equals ``data`` (always, when ``data`` is None)."""
        return self.data is None or request.body == self.data

    def match_json(self, request: RequestLike) -> bool:
        """Whether the body, parsed as JSON, equals ``json`` (always, when ``json`` is not given)."""
        if self.json is UNDEFINED:
            return True
        try:
            received = _json.loads(request.body.decode(self.data_encoding))
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(received == self.json)

    def match_data_form(self, request: RequestLike) -> bool:
        """Whether the form fields are ``data_form`` (always, when it is None)."""
        if self.data_form is None:
            return True
        received, expected = _multi_compare(form_pairs(request, self.data_encoding), self.data_form)
        return bool(received == expected)

    def difference(self, request: RequestLike) -> list[tuple[str, Any, Any]]:
        """``(field, received, expected)`` for each criterion the request fails; empty: it matches."""
        diff: list[tuple[str, Any, Any]] = []
        if not self.match_uri(request):
            diff.append(("uri", request.path, self.uri))
        if not self.match_method(request):
            diff.append(("method", request.method, self.method))
        if not self.match_query(request):
            diff.append(("query_string", request.query, self.query_string))
        received, expected = self.headers_difference(request)
        if expected:
            diff.append(("headers", received, expected))
        if not self.match_data(request):
            diff.append(("data", request.body, self.data))
        if not self.match_json(request):
            diff.append(("json", request.body, self.json))
        if not self.match_data_form(request):
            diff.append(("data_form", _first_values(form_pairs(request, self.data_encoding)), self.data_form))
        return diff

    def match(self, request: RequestLike) -> bool:
        """Whether the request meets every criterion."""
        return not self.difference(request)


def as_matcher(matcher: RequestMatcher | str | URIPattern | re.Pattern[str]) -> RequestMatcher:
    """A :class:`RequestMatcher` as is; a URI (str, pattern, :class:`URIPattern`) as ``RequestMatcher(uri)``."""
    return matcher if isinstance(matcher, RequestMatcher) else RequestMatcher(matcher)


# --- responses ----------------------------------------------------------------------------------------------
class ResponseHeaders:
    """Response header fields: ordered, names case-insensitive, a name may repeat (``Set-Cookie``).

    ``headers["X-A"]`` is the first value; assigning replaces every value of
    that name; :meth:`add` appends one; :meth:`items` lists every field.
    """

    def __init__(self, headers: HeadersArg = None) -> None:
        self._items: list[tuple[str, str]] = []
        if isinstance(headers, ResponseHeaders):
            self._items = list(headers._items)
        elif isinstance(headers, Mapping):
            self._items = [(str(k), str(v)) for k, v in headers.items()]
        elif headers is not None:
            self._items = [(str(k), str(v)) for k, v in headers]

    def __getitem__(self, name: str) -> str:
        lowered = name.lower()
        for k, v in self._items:
            if k.lower() == lowered:
                return v
        raise KeyError(name)

    def __setitem__(self, name: str, value: str) -> None:
        lowered = name.lower()
        for i, (k, _) in enumerate(self._items):
            if k.lower() == lowered:
                self._items[i] = (name, str(value))
                self._items[i + 1:] = [(k2, v2) for k2, v2 in self._items[i + 1:] if k2.lower() != lowered]
                return
        self._items.append((name, str(value)))

    def __delitem__(self, name: str) -> None:
        lowered = name.lower()
        kept = [(k, v) for k, v in self._items if k.lower() != lowered]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResponseHeaders):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == [(str(k), str(v)) for k, v in other.items()]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._items!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        try:
            return self[name]
        except KeyError:
            return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lowered = name.lower()
        return [v for k, v in self._items if k.lower() == lowered]

    def add(self, name: str, value: str) -> None:
        """Append a field (another value for a name already present)."""
        self._items.append((name, str(value)))

    def setdefault(self, name: str, value: str) -> str:
        """The first value of ``name``; set to ``value`` first if absent."""
        if name not in self:
            self._items.append((name, str(value)))
        return self[name]

    def items(self) -> list[tuple[str, str]]:
        """Every field as ``(name, value)``, repeated names included, in order."""
        return list(self._items)


_TEXT_MIMETYPES = ("application/json", "application/xml", "application/javascript")


class HTTPResponse:
    """A response as data: ``status``, ``headers``, ``body``; the shape of werkzeug's ``Response(...)`` arguments.

    ``HTTPResponse("hi")`` is a 200 with ``Content-Type: text/plain;
    charset=utf-8``; ``mimetype`` or ``content_type`` change the type
    (a ``Content-Type`` in ``headers`` is kept). ``Content-Length`` is added
    when it is sent. Werkzeug-style accessors are there for code ported from
    pytest-httpserver: ``status_code``, ``data``, ``get_data()``,
    ``set_data()``; ``json`` parses the body.
    """

    def __init__(
        self,
        response: bytes | bytearray | memoryview | str = b"",
        status: int = 200,
        headers: HeadersArg = None,
        mimetype: str | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status = int(status)
        self.headers = ResponseHeaders(headers)
        self.body = response.encode() if isinstance(response, str) else bytes(response)
        if content_type is None:
            if mimetype is None and "content-type" not in self.headers:
                mimetype = "text/plain"
            if mimetype is not None:
                text = mimetype.startswith("text/") or mimetype in _TEXT_MIMETYPES
                content_type = f"{mimetype}; charset=utf-8" if text and "charset" not in mimetype else mimetype
        if content_type is not None:
            self.headers["Content-Type"] = content_type

    @classmethod
    def raw(cls, status: int, headers: HeadersArg, body: bytes | bytearray | memoryview | str) -> HTTPResponse:
        """A response with exactly these headers (no ``Content-Type`` added: a route's answer)."""
        resp = cls.__new__(cls)
        resp.status = int(status)
        resp.headers = ResponseHeaders(headers)
        resp.body = body.encode() if isinstance(body, str) else bytes(body)
        return resp

    def __repr__(self) -> str:
        return f"<HTTPResponse {self.status} {self.headers.get('Content-Type')!r} body={self.body[:60]!r}>"

    def copy(self) -> HTTPResponse:
        """A copy whose headers and body can be changed without changing this one."""
        clone = copy.copy(self)
        clone.headers = ResponseHeaders(self.headers)
        return clone

    @property
    def status_code(self) -> int:
        """The status (werkzeug's name)."""
        return self.status

    @property
    def data(self) -> bytes:
        """The body (werkzeug's name)."""
        return self.body

    @data.setter
    def data(self, value: bytes | str) -> None:
        self.set_data(value)

    def get_data(self, as_text: bool = False) -> Any:
        """The body: bytes, or a str decoded as UTF-8 with ``as_text=True``."""
        return self.body.decode("utf-8", "replace") if as_text else self.body

    def set_data(self, value: bytes | str) -> None:
        """Replace the body (a ``str`` is UTF-8 encoded); a ``Content-Length`` header is updated."""
        self.body = value.encode() if isinstance(value, str) else bytes(value)
        if "content-length" in self.headers:
            self.headers["Content-Length"] = str(len(self.body))

    @property
    def json(self) -> Any:
        """The body parsed as JSON.

        :raises ValueError: it is not JSON.
        """
        return _json.loads(self.body)


def to_response(value: Any) -> HTTPResponse:
    """What a handler function or hook returned, as an :class:`HTTPResponse`.

    Accepted: an :class:`HTTPResponse`; None (an empty 200); ``str`` or
    ``bytes`` (a 200 with that body); ``(status, headers, body)``; an object
    with ``status_code``, ``headers`` and ``get_data()`` (werkzeug's ``Response``).

    :raises TypeError: anything else.
    """
    if isinstance(value, HTTPResponse):
        return value
    if value is None:
        return HTTPResponse(b"")
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return HTTPResponse(value)
    if isinstance(value, tuple) and len(value) == 3:
        status, headers, body = value
        return HTTPResponse(body, status, headers)
    if hasattr(value, "status_code") and hasattr(value, "get_data") and hasattr(value, "headers"):
        return HTTPResponse(value.get_data(), value.status_code, list(value.headers.items()))
    raise TypeError(
        f"a response handler returned {type(value).__name__}: return an HTTPResponse, str, bytes, "
        "(status, headers, body), None, or a werkzeug Response"
    )


# --- expectations -------------------------------------------------------------------------------------------
class HandlerType(enum.Enum):
    """How long an expectation lives: for every matching request, for one, or for one and in order."""

    PERMANENT = "permanent"
    ONESHOT = "oneshot"
    ORDERED = "ordered"


class Expectation:
    """A :class:`RequestMatcher` and the answer to a matching request (pytest-httpserver's ``RequestHandler``).

    Returned by ``HTTPHandler.expect_request()`` and its siblings; tell it
    what to answer with one of the ``respond_with_*`` methods (each returns
    the expectation). A matching request before that gets a 500 and fails
    the test as an assertion (see ``HTTPHandler.check_assertions``).
    """

    def __init__(self, matcher: RequestMatcher, handler_type: HandlerType = HandlerType.PERMANENT) -> None:
        self.matcher = matcher
        self.handler_type = handler_type
        self.request_handler: Callable[[HTTPRequest], Any] | None = None
        self._hooks: list[PostHook] = []

    def __repr__(self) -> str:
        m = self.matcher
        return (
            f"<Expectation {self.handler_type.value} uri={m.uri!r} method={m.method!r} "
            f"query_string={m.query_string!r} headers={dict(m.headers)!r} data={m.data!r} json={m.json!r}>"
        )

    def with_post_hook(self, hook: PostHook) -> Expectation:
        """Pass every response through ``hook(request, response) -> response`` (see :mod:`reactor.testing.http_hooks`).

        Hooks run in the order added. Returns the expectation (chainable).
        """
        self._hooks.append(hook)
        return self

    def respond_with_data(
        self,
        response_data: bytes | str = b"",
        status: int = 200,
        headers: HeadersArg = None,
        mimetype: str | None = None,
        content_type: str | None = None,
    ) -> Expectation:
        """Answer ``response_data`` with ``status`` and ``headers`` (``Content-Type`` text/plain unless told)."""
        return self.respond_with_response(HTTPResponse(response_data, status, headers, mimetype, content_type))

    def respond_with_json(
        self,
        response_json: Any,
        status: int = 200,
        headers: HeadersArg = None,
        content_type: str = "application/json",
    ) -> Expectation:
        """Answer ``response_json`` serialised, with ``Content-Type: application/json``."""
        return self.respond_with_data(_json.dumps(response_json), status, headers, content_type=content_type)

    def respond_with_response(self, response: Any) -> Expectation:
        """Answer this response: an :class:`HTTPResponse`, or anything :func:`to_response` accepts.

        Each request gets its own copy (a hook may change it freely).
        """
        fixed = to_response(response)
        self.request_handler = lambda request: fixed.copy()
        return self

    def respond_with_handler(self, func: Callable[[HTTPRequest], Any]) -> Expectation:
        """Answer what ``func(request)`` returns (see :func:`to_response` for what it may return).

        It runs on the server's event-loop thread: a slow one delays every
        connection of that loop. An ``AssertionError`` it raises becomes a
        500 and an entry in ``assertions``; another exception a 500 and an
        entry in ``handler_errors``. Both fail the test when the server stops.
        """
        self.request_handler = func
        return self

    def respond(self, request: HTTPRequest) -> HTTPResponse:
        """The answer to ``request``: the response handler's, through the post hooks.

        :raises AssertionError: no response was defined.
        """
        if self.request_handler is None:
            raise AssertionError(
                f"matching expectation found but no response defined: {request.method} {request.target} "
                f"matched {self!r}; call respond_with_data/_json/_response/_handler on it"
            )
        response = to_response(self.request_handler(request))
        for hook in self._hooks:
            response = to_response(hook(request, response))
        return response


class BakedExpectations:
    """``HTTPHandler.bake(**defaults)``: ``expect_*`` with ``defaults`` merged in (the call's own arguments win).

    Every other attribute is the handler's (``check_assertions()``, ``log``...).
    """

    def __init__(self, handler: HTTPHandler, **defaults: Any) -> None:
        self._handler = handler
        self._defaults = defaults

    def __repr__(self) -> str:
        return f"<BakedExpectations defaults={self._defaults!r} handler={self._handler!r}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._handler, name)

    def bake(self, **kwargs: Any) -> BakedExpectations:
        """Another layer of defaults on top of these."""
        return BakedExpectations(self._handler, **(self._defaults | kwargs))

    def expect_request(self, uri: str | URIPattern | re.Pattern[str], **kwargs: Any) -> Expectation:
        """``HTTPHandler.expect_request`` with the baked defaults."""
        return self._handler.expect_request(uri, **(self._defaults | kwargs))

    def expect_oneshot_request(self, uri: str | URIPattern | re.Pattern[str], **kwargs: Any) -> Expectation:
        """``HTTPHandler.expect_oneshot_request`` with the baked defaults."""
        return self._handler.expect_oneshot_request(uri, **(self._defaults | kwargs))

    def expect_ordered_request(self, uri: str | URIPattern | re.Pattern[str], **kwargs: Any) -> Expectation:
        """``HTTPHandler.expect_ordered_request`` with the baked defaults."""
        return self._handler.expect_ordered_request(uri, **(self._defaults | kwargs))


class WaitResult:
    """What ``with handler.wait() as w:`` gives: ``w.result`` and ``w.elapsed_time`` once the block is left."""

    def __init__(self) -> None:
        self._result: bool | None = None
        self._start = time.monotonic()
        self._stop: float | None = None

    def complete(self, result: bool) -> None:
        """Record the outcome (called by ``wait()``)."""
        self._result = result
        self._stop = time.monotonic()

    @property
    def result(self) -> bool:
        """True: every oneshot and ordered expectation was met in time (and, if asked, no unexpected request)."""
        return bool(self._result)

    @property
    def elapsed_time(self) -> float:
        """Seconds from entering the block to the outcome.

        :raises RuntimeError: the block is not over yet.
        """
        if self._stop is None:
            raise RuntimeError("the wait() block is not over yet")
        return self._stop - self._start
