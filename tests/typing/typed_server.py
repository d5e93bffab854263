"""A typed server, written as a user would: ``mypy --strict`` must accept it.

CI runs ``mypy --strict tests/typing`` (``.ci/run``), and so does
``tests/unit/test_typing.py`` when mypy is installed. Run it with
``python tests/typing/typed_server.py --port 9000``.
"""

from __future__ import annotations

import argparse
import threading

import reactor
from reactor import Action, Conn


class Upper(reactor.EventServer):
    """Answers each line in capitals and counts them; a ticker logs the count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # tick runs on its own thread
        self.lines = 0

    def on_init_complete(self, server: reactor.Server) -> Action:
        """Say where the server listens."""
        print(f"listening on {server.addr!r} with {server.num_event_loop} loop(s)")
        return Action.NONE

    def on_opened(self, c: Conn) -> tuple[bytes | None, Action]:
        """Greet the client (written raw: the codec does not add the newline)."""
        return b"ready\n", Action.NONE

    def react(self, frame: bytes | None, c: Conn) -> tuple[bytes | None, Action]:
        """One line in, the same line in capitals out; ``quit`` closes."""
        if frame is None:  # a wake()
            return None, Action.NONE
        with self.lock:
            self.lines += 1
        if frame == b"quit":
            return b"bye", Action.CLOSE
        return frame.upper(), Action.NONE

    def on_closed(self, c: Conn, err: BaseException | None) -> Action:
        """Nothing to clean up."""
        return Action.NONE

    def tick(self) -> tuple[float, Action]:
        """Every 10 s: how many lines so far."""
        with self.lock:
            print(f"{self.lines} lines")
        return 10.0, Action.NONE


def main(argv: list[str] | None = None) -> None:
    """Serve :class:`Upper` until Ctrl-C."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    options = reactor.Options(multicore=True, ticker=True)
    reactor.serve(
        Upper(),
        f"tcp://127.0.0.1:{args.port}",
        options=options,
        codec=reactor.LineBasedFrameCodec(),
        tcp_keepalive=30,
        idle_timeout=60.0,
    )


if __name__ == "__main__":
    main()
