"""Graceful stop: SIGTERM or Ctrl-C, a client's "shutdown" line, or reactor.stop().

Run:  python graceful_stop.py [tcp://127.0.0.1:9004]
Every way of stopping ends the same: each open connection gets on_closed,
then on_shutdown runs once every loop has stopped, then serve() returns.
"""

import signal
import sys

import reactor

NONE = reactor.Action.NONE


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Greeter(reactor.EventServer):
    def __init__(self):
        self.server = None

    def on_init_complete(self, server):
        self.server = server  # keep it: server.stop() works from any thread
        host, port = server.addr
        log(f"listening on {host}:{port}")
        return NONE

    def on_opened(self, c):
        return b"hello\n", NONE  # sent as it is: on_opened output is not encoded

    def react(self, frame, c):
        if frame == b"shutdown":
            return b"shutting down", reactor.Action.SHUTDOWN  # stops the whole server
        return frame, NONE

    def on_closed(self, c, err):
        log(f"closed {c.remote_addr}: {err or 'no error'}")
        return NONE

    def on_shutdown(self, server):
        log("on_shutdown: every loop has stopped")


def main(addr="tcp://127.0.0.1:9004"):
    handler = Greeter()

    def on_signal(signum, frame):
        # Runs in the main thread, which is waiting inside serve(): just ask.
        if handler.server is not None:
            handler.server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.serve(handler, addr, codec=reactor.LineBasedFrameCodec(), reuse_addr=True)
    log("serve() returned")


if __name__ == "__main__":
    main(*sys.argv[1:])
