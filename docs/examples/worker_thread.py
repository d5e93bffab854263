"""Slow work off the event loop: react() hands each line to a thread pool,
and the worker sends the answer with the thread-safe c.async_write().

Protocol: a line in, "<line> <sha256 of line>" out. Answers to one
connection can come back in any order, since four workers run at once.
"""

import hashlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import reactor


class Hasher(reactor.EventServer):
    def __init__(self, workers=4):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hasher")

    def react(self, frame, c):
        # Loop thread: never block here, every connection of this loop waits.
        self.pool.submit(self.work, c, frame)  # frame is bytes: safe to share
        return None, reactor.Action.NONE  # nothing to send right now

    def work(self, c, line):
        # Worker thread: may block. Only async_write, async_writev, wake and
        # close may be called on a Conn from here.
        time.sleep(0.01)  # stands in for a database call, a slow API...
        digest = hashlib.sha256(line).hexdigest().encode()
        try:
            c.async_write(line + b" " + digest)  # encoded by the codec, on the loop
        except reactor.ServerInShutdownError:
            pass  # the server stopped while we were working

    def on_shutdown(self, server):
        # Every loop has stopped: let the workers finish, then end their threads.
        self.pool.shutdown(wait=True)


def main(addr="tcp://127.0.0.1:9002"):
    reactor.serve(Hasher(), addr, codec=reactor.LineBasedFrameCodec(), multicore=True, reuse_addr=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])  # an address argument, e.g. tcp://127.0.0.1:0, replaces the default
    except KeyboardInterrupt:
        pass  # Ctrl-C: serve() stopped the server before passing the interrupt on
