"""reactor: a gnet-style reactor on raw Linux syscalls (epoll, eventfd, accept4) through CFFI.

A minimal echo server::

    import reactor

    class Echo(reactor.EventServer):
        def react(self, frame, c):
            return frame, reactor.Action.NONE

    reactor.serve(Echo(), "tcp://127.0.0.1:9000", multicore=True)

The public API follows gnet v1 (``Serve``/``EventHandler.React``/codecs),
with gnet v2's fixes where they fix something; see docs/.
"""

from __future__ import annotations

from ._version import __version__ as __version__  # the one place it is written
from .client import BlockingConn, Client
from .codec import (
    BuiltInFrameCodec,
    DecoderConfig,
    DelimiterBasedFrameCodec,
    EncoderConfig,
    FixedLengthFrameCodec,
    ICodec,
    LengthFieldBasedFrameCodec,
    LineBasedFrameCodec,
)
from .connection import Conn, UDPConn
from .errors import (
    ClientNotStartedError,
    CodecError,
    FrameTooLongError,
    InvalidFixedLengthError,
    InvalidNetworkAddressError,
    ReactorError,
    ServerInShutdownError,
    TooLessLengthError,
    TooManyEventLoopThreadsError,
    UnsupportedLengthError,
    UnsupportedProtocolError,
    WorkerError,
    WriteBufferFullError,
)
from .handler import Action, EventHandler, EventServer
from .internal.uring import IoUringUnavailable
from .load_balancer import LoadBalancing
from .options import Options
from .server import Server, serve, stop

__all__ = [
    "Action",
    "BlockingConn",
    "BuiltInFrameCodec",
    "Client",
    "ClientNotStartedError",
    "CodecError",
    "Conn",
    "DecoderConfig",
    "DelimiterBasedFrameCodec",
    "EncoderConfig",
    "FixedLengthFrameCodec",
    "FrameTooLongError",
    "InvalidFixedLengthError",
    "LengthFieldBasedFrameCodec",
    "LineBasedFrameCodec",
    "TooLessLengthError",
    "UnsupportedLengthError",
    "EventHandler",
    "EventServer",
    "ICodec",
    "InvalidNetworkAddressError",
    "IoUringUnavailable",
    "LoadBalancing",
    "Options",
    "ReactorError",
    "Server",
    "ServerInShutdownError",
    "TooManyEventLoopThreadsError",
    "UDPConn",
    "UnsupportedProtocolError",
    "WorkerError",
    "WriteBufferFullError",
    "serve",
    "stop",
]
