"""An event-driven client: a handler reacts to the server's lines on the client's loop."""

import threading

import reactor


class Pinger(reactor.EventServer):
    def __init__(self, count):
        self.count = count
        self.answers = []
        self.done = threading.Event()

    def on_opened(self, c):
        # on_opened's output is written raw (not encoded): add the "\n" here.
        return b"ping 0\n", reactor.Action.NONE

    def react(self, frame, c):
        self.answers.append(frame)
        if len(self.answers) == self.count:
            self.done.set()
            return None, reactor.Action.CLOSE
        # react's output goes through the codec, which adds the "\n".
        return b"ping %d" % len(self.answers), reactor.Action.NONE


def main(addr="tcp://127.0.0.1:9000"):
    pinger = Pinger(3)
    with reactor.Client(pinger, codec=reactor.LineBasedFrameCodec()) as client:
        client.dial(addr)  # returns once on_opened has run
        if not pinger.done.wait(5):
            raise TimeoutError("no answers within 5 s")
    return pinger.answers


if __name__ == "__main__":
    print(main())
