"""``HTTPCodec``: frames a connection's bytes into batches of complete HTTP/1.1 requests.

gnet counterpart: the seed program's ``httpCodec`` (``Decode`` parses every
complete request of the buffer, ``Encode`` passes answers through). The
seed's ``Decode`` also *answers* (it appends "Hello World!" responses); here
it only parses, and ``react`` sees the requests.

The frame. ``decode`` returns a ``list`` of :class:`~reactor.http.Request`:
every complete request buffered (at most ``max_batch``), in order. So a
pipeline of N requests that one ``read(2)`` brought is one ``react`` call,
and its N answers, joined, one ``write(2)``: the seed's property. The last
request of a frame may be a failed one (``error`` set); nothing after it, or
after a request whose ``keep_alive`` is False, is ever parsed: ``react``
answers and returns ``Action.CLOSE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .parser import Limits, RequestParser
from .request import Request
from .response import CONTINUE

if TYPE_CHECKING:
    from ..connection import Conn

__all__ = ["HTTPCodec"]


class HTTPCodec:
    """The HTTP/1.1 request codec (the seed's ``httpCodec``), one :class:`RequestParser` per connection.

    :param max_header_size: request line + fields limit (431 beyond it).
    :param max_body_size: body limit (413 beyond it).
    :param buffer_body: keep bodies in ``Request.body``; False discards them
        as they arrive (a server that ignores bodies then holds none).
    :param header_timeout: seconds a header block may take from its first
        byte; then the connection is closed (``on_closed`` gets a
        ``TimeoutError``). Uses ``Conn.set_deadline``, so the codec owns the
        connection's deadline. None or 0: no limit.
    :param max_batch: most requests in one frame.

    State lives in the codec, keyed by connection, not in ``c.context``,
    which stays the handler's. Entries of closed connections are dropped
    whenever the table has doubled since the last sweep.
    """

    def __init__(
        self,
        *,
        max_header_size: int = 8 * 1024,
        max_body_size: int = 1024 * 1024,
        buffer_body: bool = True,
        header_timeout: float | None = None,
        max_batch: int = 256,
    ) -> None:
        self.limits = Limits(
            max_header_size=max_header_size,
            max_body_size=max_body_size,
            buffer_body=buffer_body,
            max_batch=max_batch,
        )
        if header_timeout is not None and header_timeout < 0:
            raise ValueError("header_timeout must be >= 0 or None")
        self.header_timeout = header_timeout or None
        self._parsers: dict[Conn, RequestParser] = {}
        self._sweep_at = 64

    def encode(self, c: Conn, data: bytes) -> bytes:
        return data

    def decode(self, c: Conn) -> list[Request] | None:
        """The complete requests buffered on ``c`` (a list, never empty), or None."""
        parser = self._parsers.get(c)
        if parser is None:
            parser = self._adopt(c)
        batch = parser.parse(c)
        if parser.continue_due:
            parser.continue_due = False
            c.write(CONTINUE)
        if self.header_timeout is not None and parser.head_pending is not parser.deadline_armed:
            # Armed when a head starts arriving, disarmed when it is complete:
            # a trickling client (slowloris) is closed when it runs out.
            parser.deadline_armed = parser.head_pending
            c.set_deadline(self.header_timeout if parser.head_pending else None)
        return batch if batch else None

    def parser(self, c: Conn) -> RequestParser | None:
        """``c``'s parser (None before its first bytes)."""
        return self._parsers.get(c)

    def _adopt(self, c: Conn) -> RequestParser:
        parsers = self._parsers
        if len(parsers) >= self._sweep_at:
            # list() first: another loop thread may add to the dict meanwhile.
            for conn in list(parsers):
                if not conn.opened:
                    parsers.pop(conn, None)
            self._sweep_at = max(64, 2 * len(parsers))
        parser = parsers[c] = RequestParser(self.limits)
        return parser
