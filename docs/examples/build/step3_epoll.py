"""Step 3: an epoll echo loop: sleep until a socket is ready, then do exactly that call.

    python docs/examples/build/step3_epoll.py [PORT] [CLIENTS]

The listener and each client are on an epoll instance's interest list
(EPOLL_CTL_ADD). epoll_wait sleeps until some of them are ready and says
which: the listener means "accept4 will not block", a client means "read
will not block". No spinning, no EAGAIN. This loop is the reactor.
Grows into: reactor.internal.netpoll.Poller (polling, add_read, delete) and
reactor.eventloop.EventLoop (_on_event, _read_frames, close_conn).
"""

import sys

from step1_blocking import listen_on

from reactor.internal import unix


def main(port=9100, clients=2):
    lfd = listen_on(port, nonblocking=True)
    ep = unix.epoll_create1()
    unix.epoll_ctl(ep, unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN)
    events = unix.EpollEvents(64)
    gone = wakeups = 0
    while gone < clients:
        ready = unix.epoll_wait(ep, events, -1)  # sleeps (without the GIL) until something is ready
        wakeups += 1
        for fd, _mask in ready:
            if fd == lfd:
                cfd, peer = unix.accept4(lfd)
                unix.epoll_ctl(ep, unix.EPOLL_CTL_ADD, cfd, unix.EPOLLIN)
                print("accepted a client", flush=True)
                continue
            data = unix.read(fd, 65536)  # ready: this read does not block
            if data:
                unix.write(fd, data)
                print(f"echoed {data!r}", flush=True)
            else:
                unix.epoll_ctl(ep, unix.EPOLL_CTL_DEL, fd)  # deregister, then close
                unix.close(fd)
                gone += 1
                print("client gone", flush=True)
    unix.close(ep)
    unix.close(lfd)
    print(f"epoll_wait returned {wakeups} times, once per event: asleep in between", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
