"""Block the calling thread until one fd is readable or writable, with a timeout.

gnet has no counterpart (Go parks the goroutine in its runtime poller). The
event loops never use this: they sleep in their own ``epoll_wait``. It is for
the few places that wait on a single fd outside a loop: ``Client.dial``
waiting for a non-blocking connect, and the workers' parent waiting for a
worker's pidfd or report pipe.

One ``poll(2)`` per wait (``select.poll``; a one-shot epoll instance would
cost three more syscalls and an fd). EINTR is retried by the stdlib (PEP 475)
after running any pending signal handler; the deadline is monotonic and
recomputed on every round, so a wait is never stretched by interruptions nor
cut short by rounding the timeout down to whole milliseconds.
"""

from __future__ import annotations

import math
import select
import time
from typing import Final

__all__ = ["READABLE", "WRITABLE", "wait_fd"]

#: ``events`` for :func:`wait_fd`: data (or EOF) to read; for a pidfd, the process has exited.
READABLE: Final[int] = select.POLLIN
#: ``events`` for :func:`wait_fd`: room to write; for a connecting socket, the handshake finished.
WRITABLE: Final[int] = select.POLLOUT

# poll(2) takes an int of milliseconds; longer waits go round more than once.
_MAX_POLL_MS: Final[int] = 2**31 - 1


def wait_fd(fd: int, events: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is ready for ``events`` (READABLE, WRITABLE or both); True if it is.

    ``timeout`` is in seconds; None waits for as long as it takes, and zero
    or less only checks. An error or hang-up on ``fd`` (POLLERR, POLLHUP)
    counts as ready: the caller's next call on it reports what happened.
    False means the timeout passed first.
    """
    poller = select.poll()
    poller.register(fd, events)
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    while True:
        if deadline is None:
            ms = -1
        else:
            ms = min(_MAX_POLL_MS, max(0, math.ceil((deadline - time.monotonic()) * 1000)))
        if poller.poll(ms):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
