"""An echo server: every byte a client sends comes back to it."""

import sys

import reactor


class Echo(reactor.EventServer):
    # EventServer has a do-nothing version of every callback; override the
    # ones you need. react() runs on an event-loop thread for each frame.
    def react(self, frame, c):
        # With the default codec a frame is whatever one read(2) brought in.
        # Return (bytes to send back, what to do next).
        return frame, reactor.Action.NONE


def main(addr="tcp://127.0.0.1:9000"):
    # Blocks until the server shuts down; one event loop per CPU.
    # reuse_addr: a restart may bind the port at once, even while the last
    # run's connections wait out TIME_WAIT ("Address already in use").
    reactor.serve(Echo(), addr, multicore=True, reuse_addr=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])  # an address argument, e.g. tcp://127.0.0.1:0, replaces the default
    except KeyboardInterrupt:
        pass  # Ctrl-C: serve() stopped the server before passing the interrupt on
