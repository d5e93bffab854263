"""The seed program: an HTTP/1.1 server that answers a whole pipeline at once.

A client may send several requests before reading any answer (pipelining).
The codec's decode() turns every *complete* request in the buffer into its
answer, so one frame holds the answers to a whole pipeline and one write(2)
sends them all. A request cut in two by the network stays buffered until
the rest arrives.
"""

import sys
import time

import reactor

BODY = b"Hello World!\r\n"


def answer():
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
    return (
        b"HTTP/1.1 200 OK\r\nServer: reactor\r\nDate: " + date
        + b"\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
    )


class HTTPCodec:
    def encode(self, c, data):
        return data  # react() returns finished HTTP answers: nothing to add

    # --8<-- [start:decode]
    def decode(self, c):
        data = c.peek(-1)  # everything buffered, not consumed yet
        end, answers = 0, []
        while True:
            head_end = data.find(b"\r\n\r\n", end)
            if head_end < 0:
                break  # no complete request head (yet)
            head = data[end:head_end].lower()
            length = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                value = head[i + 17:].split(b"\r\n", 1)[0].strip()
                if not value.isdigit():
                    raise reactor.CodecError(f"bad Content-Length {value!r}")  # closes the connection
                length = int(value)
            if head_end + 4 + length > len(data):
                break  # the body is still on its way
            end = head_end + 4 + length
            answers.append(answer())
        if not answers:
            return None  # "need more bytes": the loop waits for the next read
        c.discard(end)  # consume exactly the complete requests
        return b"".join(answers)
    # --8<-- [end:decode]


class HTTPServer(reactor.EventServer):
    def react(self, frame, c):
        return frame, reactor.Action.NONE  # the codec already built the answers


def main(addr="tcp://127.0.0.1:8080"):
    reactor.serve(HTTPServer(), addr, codec=HTTPCodec(), multicore=True, reuse_addr=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])  # an address argument, e.g. tcp://127.0.0.1:0, replaces the default
    except KeyboardInterrupt:
        pass  # Ctrl-C: serve() stopped the server before passing the interrupt on
