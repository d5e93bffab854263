"""Wake and tick: a server that speaks first.

tick() runs on its own thread every 0.1 s and wakes each connection;
c.wake() makes the connection's loop call react(None, c), whose answer is
written like any other. A client line "bye" closes the connection.
"""

import sys
import threading

import reactor

NONE, CLOSE = reactor.Action.NONE, reactor.Action.CLOSE


class Clock(reactor.EventServer):
    def __init__(self, interval=0.1):
        self.interval = interval
        self.lock = threading.Lock()  # tick() and the loops share the fields below
        self.conns = set()
        self.ticks = 0

    def on_opened(self, c):  # a loop thread
        with self.lock:
            self.conns.add(c)
        return None, NONE

    def on_closed(self, c, err):  # a loop thread
        with self.lock:
            self.conns.discard(c)
        return NONE

    def tick(self):  # the ticker thread
        with self.lock:
            self.ticks += 1
            conns = list(self.conns)
        for c in conns:
            try:
                c.wake()  # thread-safe: queues react(None, c) on c's loop
            except reactor.ServerInShutdownError:
                pass  # that loop has already stopped
        return self.interval, NONE  # (seconds until the next tick, action)

    def react(self, frame, c):  # a loop thread
        if frame is None:  # woken up, not a line from the client
            with self.lock:
                n = self.ticks
            return b"tick %d" % n, NONE
        if frame == b"bye":
            return b"bye", CLOSE  # the answer is sent, then the connection closes
        return b"say bye to leave", NONE


def main(addr="tcp://127.0.0.1:9003"):
    reactor.serve(Clock(), addr, ticker=True, codec=reactor.LineBasedFrameCodec(), reuse_addr=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])  # an address argument, e.g. tcp://127.0.0.1:0, replaces the default
    except KeyboardInterrupt:
        pass  # Ctrl-C: serve() stopped the server before passing the interrupt on
