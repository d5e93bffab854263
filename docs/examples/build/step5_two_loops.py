"""Step 5: a main reactor that accepts, and two loops that serve: the hand-over.

    python docs/examples/build/step5_two_loops.py [PORT] [CLIENTS]

Each loop is a thread with its own epoll instance, eventfd and task queue.
The main reactor alone watches the listener; it hands each new connection
to the next loop (round robin) as a task: append to that loop's queue,
write its eventfd. The loop registers the fd itself, so only its own thread
ever touches its epoll set. The same queue carries the stop request. This
is gnet's default mode. Grows into: reactor.engine.Engine.activate_reactors,
reactor.acceptor.Acceptor.accept and reactor.eventloop.EventLoop.register.
"""

import collections
import sys
import threading

from step1_blocking import listen_on

from reactor.internal import unix


class Loop:
    def __init__(self, idx):
        self.idx, self.tasks = idx, collections.deque()
        self.ep, self.efd = unix.epoll_create1(), unix.eventfd()
        unix.epoll_ctl(self.ep, unix.EPOLL_CTL_ADD, self.efd, unix.EPOLLIN)
        self.thread = threading.Thread(target=self.run)

    def hand_over(self, task):  # any thread: queue, then wake the loop
        self.tasks.append(task)
        unix.eventfd_write(self.efd, 1)

    def run(self):  # this loop's thread only
        conns, stopping, events = set(), False, unix.EpollEvents(64)
        while not (stopping and not conns):
            for fd, _mask in unix.epoll_wait(self.ep, events, -1):
                if fd == self.efd:
                    unix.eventfd_read(self.efd)
                    while self.tasks:
                        cfd = self.tasks.popleft()
                        if cfd is None:
                            stopping = True  # stop once its clients are gone
                            continue
                        unix.epoll_ctl(self.ep, unix.EPOLL_CTL_ADD, cfd, unix.EPOLLIN)
                        conns.add(cfd)
                        print(f"loop {self.idx}: registered a client", flush=True)
                elif data := unix.read(fd, 65536):
                    unix.write(fd, data)
                    print(f"loop {self.idx}: echoed {data!r}", flush=True)
                else:
                    unix.epoll_ctl(self.ep, unix.EPOLL_CTL_DEL, fd)
                    unix.close(fd)
                    conns.discard(fd)
                    print(f"loop {self.idx}: client gone", flush=True)
        unix.close(self.efd)
        unix.close(self.ep)


def main(port=9100, clients=2):
    lfd = listen_on(port, nonblocking=True)
    loops = [Loop(0), Loop(1)]
    for loop in loops:
        loop.thread.start()
    ep, events = unix.epoll_create1(), unix.EpollEvents(8)
    unix.epoll_ctl(ep, unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN)
    for n in range(clients):  # the main reactor: accept and hand over, nothing else
        while not unix.epoll_wait(ep, events, -1):
            pass
        cfd, peer = unix.accept4(lfd)
        loop = loops[n % len(loops)]
        print(f"main: accepted a client, handing it to loop {loop.idx}", flush=True)
        loop.hand_over(cfd)
    for loop in loops:
        loop.hand_over(None)
        loop.thread.join()
    unix.close(ep)
    unix.close(lfd)
    print("both loops stopped", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
