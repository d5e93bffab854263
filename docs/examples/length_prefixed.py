"""A custom codec: frames carry a 4-byte big-endian length, then the payload.

The server answers every frame with the payload in upper case, framed the
same way. TCP delivers a byte stream, not messages: one read(2) may hold
half a frame or three of them, and decode() sorts that out.
"""

import struct
import sys

import reactor

MAX_FRAME = 1 << 20  # refuse to buffer more than 1 MiB for one frame


class LengthPrefixed:
    def encode(self, c, data):
        # Called on everything react() (or c.write / c.async_write) sends.
        return struct.pack(">I", len(data)) + data

    def decode(self, c):
        # Called by the loop until it returns None; each frame goes to react().
        if c.inbound_buffered() < 4:
            return None  # not even the length yet
        (size,) = struct.unpack(">I", c.peek(4))
        if size > MAX_FRAME:
            # A CodecError closes this connection; on_closed receives it.
            raise reactor.FrameTooLongError(f"{size}-byte frame (max {MAX_FRAME})")
        if c.inbound_buffered() < 4 + size:
            return None  # the payload is still arriving: keep everything buffered
        c.discard(4)
        return c.next(size)  # the payload, consumed


class Upper(reactor.EventServer):
    def __init__(self):
        self.errors = []  # why connections were closed, when there was a reason

    def react(self, frame, c):
        return frame.upper(), reactor.Action.NONE

    def on_closed(self, c, err):
        if err is not None:
            self.errors.append(err)
        return reactor.Action.NONE


def main(addr="tcp://127.0.0.1:9001"):
    reactor.serve(Upper(), addr, codec=LengthPrefixed(), reuse_addr=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])  # an address argument, e.g. tcp://127.0.0.1:0, replaces the default
    except KeyboardInterrupt:
        pass  # Ctrl-C: serve() stopped the server before passing the interrupt on
