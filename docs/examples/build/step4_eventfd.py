"""Step 4: an eventfd, so that another thread can wake the loop.

    python docs/examples/build/step4_eventfd.py [PORT] [CLIENTS]

Slow work (here: 0.1 s, then upper case) goes to a worker thread so the
loop stays free. But the loop sleeps in epoll_wait, and the worker must not
touch its sockets or its epoll set. So the worker appends its answer to a
queue and writes 1 to an eventfd that is on the loop's interest list:
epoll_wait returns, the loop reads the counter (back to 0) and sends the
queued answers itself. Grows into: reactor.internal.netpoll.Poller's task
queues (trigger, urgent_trigger, _wakeup) and reactor.connection.Conn.async_write.
"""

import collections
import sys
import threading
import time

from step1_blocking import listen_on

from reactor.internal import unix


def work(fd, data, answers, efd):
    time.sleep(0.1)  # a database call, a slow API...
    answers.append((fd, data.upper()))  # deque.append: safe from any thread
    unix.eventfd_write(efd, 1)  # wake the loop


def main(port=9100, clients=2):
    lfd = listen_on(port, nonblocking=True)
    ep, efd = unix.epoll_create1(), unix.eventfd()
    unix.epoll_ctl(ep, unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN)
    unix.epoll_ctl(ep, unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN)
    events, answers, workers = unix.EpollEvents(64), collections.deque(), []
    gone = 0
    while gone < clients:
        for fd, _mask in unix.epoll_wait(ep, events, -1):
            if fd == efd:
                unix.eventfd_read(efd)  # the counter back to 0: not readable any more
                while answers:
                    cfd, answer = answers.popleft()
                    unix.write(cfd, answer)
                    print(f"woken by the eventfd: sent {answer!r}", flush=True)
            elif fd == lfd:
                cfd, peer = unix.accept4(lfd)
                unix.epoll_ctl(ep, unix.EPOLL_CTL_ADD, cfd, unix.EPOLLIN)
                print("accepted a client", flush=True)
            elif data := unix.read(fd, 65536):
                t = threading.Thread(target=work, args=(fd, data, answers, efd))
                t.start()
                workers.append(t)
                print(f"handed {data!r} to a worker thread", flush=True)
            else:
                unix.epoll_ctl(ep, unix.EPOLL_CTL_DEL, fd)
                unix.close(fd)
                gone += 1
                print("client gone", flush=True)
    for t in workers:
        t.join()
    for fd in (efd, ep, lfd):
        unix.close(fd)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
