"""Ask a line-based server questions from a script: the blocking way."""

import reactor


def main(addr="tcp://127.0.0.1:9000"):
    # No handler: the client queues the frames it receives for recv().
    # The codec frames both ways: "\n" is added to what we send and
    # split off what comes back.
    with reactor.Client(codec=reactor.LineBasedFrameCodec()) as client:
        # One connection, several requests: send one line, wait for one line.
        with client.connect(addr, timeout=5) as conn:
            for word in (b"hello", b"world"):
                print(conn.request(word))
        # One request on a connection of its own.
        print(client.request(addr, b"one-shot", timeout=5))


if __name__ == "__main__":
    main()
