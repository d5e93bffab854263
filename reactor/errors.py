"""Exceptions raised by reactor.

gnet counterpart: ``pkg/errors/errors.go`` (v1.6.7). Go's sentinel ``ErrX``
values become ``XError`` classes. Syscall failures are never wrapped: they
stay the plain ``OSError`` subclasses raised by :mod:`reactor.internal.unix`.
"""

from __future__ import annotations

__all__ = [
    "ClientNotStartedError",
    "CodecError",
    "FrameTooLongError",
    "InvalidFixedLengthError",
    "TooLessLengthError",
    "UnsupportedLengthError",
    "EngineShutdown",
    "InvalidNetworkAddressError",
    "ReactorError",
    "ServerInShutdownError",
    "TooManyEventLoopThreadsError",
    "UnsupportedProtocolError",
    "WorkerError",
    "WriteBufferFullError",
]


class ReactorError(Exception):
    """Base class of reactor's own errors."""


class UnsupportedProtocolError(ReactorError, ValueError):
    """The network scheme of a ``proto://addr`` is not supported (gnet: ErrUnsupportedProtocol)."""


class InvalidNetworkAddressError(ReactorError, ValueError):
    """The address part cannot be used for its network (gnet: ErrInvalidNetworkAddress)."""


class TooManyEventLoopThreadsError(ReactorError, ValueError):
    """More event loops than threads reactor will start (gnet: ErrTooManyEventLoopThreads)."""


class ServerInShutdownError(ReactorError):
    """The server or client is not running (gnet: ErrServerInShutdown).

    Raised by ``stop()`` for an address with no running server, by a
    connection's thread-safe methods (``async_write``, ``wake``, ``close``,
    ``set_deadline``) once its event loop has stopped, and by a ``Client``
    that is not started.
    """


class ClientNotStartedError(ServerInShutdownError, RuntimeError):
    """A :class:`reactor.Client` was used before ``start()`` (or outside its ``with`` block).

    New in reactor (gnet's ``Dial`` on an unstarted client fails later, on
    a nil poller). A ``RuntimeError``, as "call start() first" is; and a
    :class:`ServerInShutdownError`, which is what reactor raised before, so
    that ``except ServerInShutdownError`` keeps catching it.
    """


class CodecError(ReactorError):
    """A codec met input it cannot frame; the connection is closed with this error.

    gnet v1 documents that a decode error closes the connection but actually
    swallows it and leaves the bytes buffered (the peer then stalls forever).
    reactor does what gnet documents: the error closes that connection and is
    passed to ``on_closed``.
    """


class InvalidFixedLengthError(CodecError):
    """Data to encode is not a multiple of the fixed frame length (gnet: ErrInvalidFixedLength)."""


class UnsupportedLengthError(CodecError):
    """A length field size other than 1, 2, 3, 4 or 8 bytes (gnet: ErrUnsupportedLength)."""


class TooLessLengthError(CodecError):
    """An encoded or decoded length that comes out negative (gnet: ErrTooLessLength)."""


class FrameTooLongError(CodecError):
    """A frame over the codec's ``max_frame_length`` (new; Netty: TooLongFrameException).

    Refusing it bounds the memory one peer can make the server buffer: without
    a limit a peer announcing a 4 GiB frame is buffered until memory runs out.
    """


class WriteBufferFullError(ReactorError):
    """``Conn.async_write`` refused data: the connection already has ``async_write_limit`` bytes waiting.

    New in reactor (gnet v1 and v2 queue without bound; asyncio's transports
    grow too and only *signal* ``pause_writing``). ``async_write`` returns
    False once the waiting output passes ``write_buffer_cap``, which is the
    time to slow down (``Conn.wait_writable``); this error is the hard stop
    for a producer that does not. Nothing was queued and the connection
    stays open, so the producer may wait and retry, or close it.
    """


class EngineShutdown(BaseException):
    """Internal control flow: unwinds a loop's ``polling`` (gnet: ErrServerShutdown).

    Raised by the loop when a callback returns ``Action.SHUTDOWN`` or when a
    shutdown task runs; never escapes ``serve``. It derives from
    BaseException, like KeyboardInterrupt, so that an ``except Exception`` in
    user code that it unwinds through (a ``c.write`` inside ``react`` whose
    failure closes the connection, whose ``on_closed`` asks for SHUTDOWN)
    cannot swallow it.
    """


class WorkerError(ReactorError):
    """With ``serve(..., workers=N)``: a worker process died or could not start.

    A worker that failed with an exception of its own (``OSError`` from its
    bind, an exception from ``on_init_complete``) has that exception re-raised
    by the parent instead; this one says how a worker ended when there was no
    exception to pass on (killed by a signal, a non-zero exit status).
    """
