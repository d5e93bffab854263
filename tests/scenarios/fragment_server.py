"""A server whose CPU time test_fragmented_input.py measures from outside (/proc/PID/task/*/schedstat).

    python fragment_server.py http|line READ_BUFFER_CAP MAX_FRAME

``http``: the example (``reactor.examples.http``: HTTPServer + its HTTPCodec,
bodies discarded) accepting bodies up to MAX_FRAME bytes. ``line``:
``LineBasedFrameCodec(MAX_FRAME)``, answering each line with its length.
``READ_BUFFER_CAP`` bounds each read(2) (1024 is the smallest reactor
allows), so a large input arrives in many small reads whatever the kernel
coalesces. Prints ``listening on PORT`` to stderr; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys

import reactor
from reactor import Action, Conn, LineBasedFrameCodec
from reactor.examples.http import HTTPCodec, HTTPServer


class LineLength(reactor.EventServer):
    """Answers every line with its length (the codec appends the newline)."""

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        return (b"%d" % len(frame)) if frame is not None else None, Action.NONE


def main() -> None:
    mode, cap, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    handler: reactor.EventServer
    codec: object
    if mode == "http":
        handler, codec = HTTPServer(quiet=True), HTTPCodec(max_body_size=limit)
    else:
        handler, codec = LineLength(), LineBasedFrameCodec(limit)
    servers: list[reactor.Server] = []
    original = handler.on_init_complete

    def on_init_complete(server: reactor.Server) -> Action:
        servers.append(server)
        print(f"listening on {server.addr[1]}", file=sys.stderr, flush=True)  # type: ignore[index]
        return original(server)

    handler.on_init_complete = on_init_complete  # type: ignore[method-assign]
    signal.signal(signal.SIGTERM, lambda *_: servers[0].stop() if servers else None)
    reactor.serve(handler, "tcp://127.0.0.1:0", codec=codec, read_buffer_cap=cap)


if __name__ == "__main__":
    main()
