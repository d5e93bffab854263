"""Step 2: non-blocking sockets and EAGAIN: every client at once, by spinning.

    python docs/examples/build/step2_nonblocking.py [PORT] [CLIENTS]

Nothing blocks now: a call that would wait fails with EAGAIN, which Python
raises as BlockingIOError. One thread can try every socket in turn, so all
clients are served at once, but it never sleeps: it asks again and again,
and nearly every answer is EAGAIN. Grows into: the loop's non-blocking
calls (reactor.internal.unix.read_nowait, the EAGAIN branches of
reactor.eventloop.EventLoop._read_frames and reactor.acceptor.Acceptor.accept_one).
"""

import sys

from step1_blocking import listen_on

from reactor.internal import unix


def main(port=9100, clients=2):
    lfd = listen_on(port, nonblocking=True)
    conns, gone, calls, eagain = [], 0, 0, 0
    while gone < clients:
        calls += 1
        try:
            cfd, peer = unix.accept4(lfd)  # SOCK_NONBLOCK|SOCK_CLOEXEC by default
            conns.append(cfd)
            print("accepted a client", flush=True)
        except BlockingIOError:
            eagain += 1  # nobody is waiting to be accepted
        for cfd in list(conns):
            calls += 1
            try:
                data = unix.read(cfd, 65536)
            except BlockingIOError:
                eagain += 1  # nothing to read yet
                continue
            if data:
                unix.write(cfd, data)
                print(f"echoed {data!r}", flush=True)
            else:
                conns.remove(cfd)
                unix.close(cfd)
                gone += 1
                print("client gone", flush=True)
    unix.close(lfd)
    print(f"{calls} calls, {100 * eagain // calls}% of them EAGAIN: a whole core spent asking", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
