"""Step 1: a blocking echo server, one client at a time.

    python docs/examples/build/step1_blocking.py [PORT] [CLIENTS]

Serves CLIENTS clients (default 2), one after the other, then exits. Each
call below blocks: accept4 until a client connects, read until bytes or the
end of the stream arrive. While one client is served, the next one waits.
Grows into: reactor.internal.sockets.tcp_socket (socket, setsockopt, bind,
listen) and reactor.listener.
"""

import sys

from reactor.internal import unix


def listen_on(port, nonblocking=False):
    flags = unix.SOCK_CLOEXEC | (unix.SOCK_NONBLOCK if nonblocking else 0)
    fd = unix.socket(unix.AF_INET, unix.SOCK_STREAM | flags, unix.IPPROTO_TCP)
    unix.setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)  # restart at once
    unix.bind(fd, unix.AF_INET, ("127.0.0.1", port))
    unix.listen(fd, 128)
    print(f"listening on 127.0.0.1:{unix.getsockname(fd)[1]}", flush=True)
    return fd


def main(port=9100, clients=2):
    lfd = listen_on(port)
    for _ in range(clients):
        cfd, peer = unix.accept4(lfd, unix.SOCK_CLOEXEC)  # sleeps until a client connects
        print("accepted a client", flush=True)
        while True:
            data = unix.read(cfd, 65536)  # sleeps until bytes arrive, or EOF
            if not data:
                break  # b"": the client closed its side
            unix.write(cfd, data)
            print(f"echoed {data!r}", flush=True)
        unix.close(cfd)
        print("client gone", flush=True)
    unix.close(lfd)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
