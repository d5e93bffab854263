"""An echo server: every byte a client sends comes back to it."""

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
    reactor.serve(Echo(), addr, multicore=True)


if __name__ == "__main__":
    main()
