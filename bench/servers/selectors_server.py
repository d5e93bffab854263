"""The ``selectors`` peer: a plain stdlib event loop (epoll underneath), no framework.

    python -m bench.servers.selectors_server --mode echo|http --port P

It is the "what you would write by hand in Python" baseline: reactor does the
same epoll/accept/read/write dance, only through CFFI instead of the stdlib's
C wrappers, so the difference between the two is reactor's own overhead.
Level-triggered; a connection whose output the socket did not take stops
being read until it is flushed (back-pressure, like every other peer).
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys

from .common import HTTPSession, parse_args

READ_SIZE = 64 * 1024  # like reactor's default read_buffer_cap


class Conn:
    """One accepted connection: its socket, unsent bytes, and HTTP state (http mode)."""

    __slots__ = ("sock", "out", "session")

    def __init__(self, sock: socket.socket, http: bool) -> None:
        self.sock = sock
        self.out = b""
        self.session: HTTPSession | None = HTTPSession() if http else None


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def serve(host: str, port: int, http: bool) -> None:
    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    conns: dict[int, Conn] = {}
    R, W = selectors.EVENT_READ, selectors.EVENT_WRITE

    def close(c: Conn) -> None:
        sel.unregister(c.sock)
        del conns[c.sock.fileno()]
        c.sock.close()

    def send(c: Conn, data: bytes) -> None:
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            close(c)
            return
        if n < len(data):
            c.out = data[n:]
            sel.modify(c.sock, W, c)  # stop reading until flushed

    try:
        while True:
            for key, mask in sel.select():
                c = key.data
                if c is None:  # the listener: accept everything pending
                    while True:
                        try:
                            s, _ = lsock.accept()
                        except BlockingIOError:
                            break
                        except OSError:  # EMFILE and friends: try again on the next event
                            break
                        s.setblocking(False)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        conn = Conn(s, http)
                        conns[s.fileno()] = conn
                        sel.register(s, R, conn)
                    continue
                if mask & W:
                    try:
                        n = c.sock.send(c.out)
                    except BlockingIOError:
                        continue
                    except OSError:
                        close(c)
                        continue
                    c.out = c.out[n:]
                    if not c.out:
                        sel.modify(c.sock, R, c)
                    continue
                try:
                    data = c.sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    close(c)
                    continue
                if not data:
                    close(c)
                    continue
                if c.session is None:
                    send(c, data)
                else:
                    out, closing = c.session.feed(data)
                    if out:
                        send(c, out)
                    if closing and c.sock.fileno() in conns:
                        close(c)
    except _Stop:
        pass
    finally:
        for c in list(conns.values()):
            c.sock.close()
        lsock.close()
        sel.close()


def main() -> int:
    args = parse_args("python -m bench.servers.selectors_server", __doc__.split("\n")[0])
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    serve(args.host, args.port, args.mode == "http")
    return 0


if __name__ == "__main__":
    sys.exit(main())
