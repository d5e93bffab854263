"""Thread and process policy: how reactor starts its threads and ties a worker to its parent.

gnet has no counterpart: Go's runtime owns signal delivery and goroutines
have no parent to outlive. These are policies, not syscalls, so they live
here rather than in :mod:`reactor.internal.unix` (which only wraps calls);
the one C call they need goes through ``unix.lib`` and ``unix.syscall_error``.
"""

from __future__ import annotations

import signal as _signal
import threading
from typing import Final

from . import unix

__all__ = ["ASYNC_SIGNALS", "set_pdeathsig", "start_thread"]

#: Signals sent to the whole process whose Python handlers are expected to run.
ASYNC_SIGNALS: Final = frozenset(
    {_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2,
     _signal.SIGALRM, _signal.SIGCHLD}
)


def start_thread(thread: threading.Thread) -> None:
    """``thread.start()`` with ASYNC_SIGNALS blocked in the new thread (pthread_sigmask, inherited).

    The kernel delivers a process-directed signal to any one thread that does
    not block it, and only *that* thread's blocking syscall returns EINTR.
    Python runs handlers on the main thread only, at its next bytecode: if
    the signal lands on a loop thread sitting in epoll_wait while the main
    thread waits in a lock (``serve`` waiting for shutdown), the handler
    waits with it. With reactor's own threads blocking these signals, the
    kernel picks a thread that can act on them, normally the main thread.
    The caller records ``thread`` before starting it (``EventLoop.thread``):
    the thread may look itself up (``Engine.owns_current_thread``) from its
    first instruction.
    """
    previous = _signal.pthread_sigmask(_signal.SIG_BLOCK, ASYNC_SIGNALS)
    try:
        thread.start()  # the new thread starts with the mask in force now
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, previous)


def set_pdeathsig(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG): have the kernel send ``sig`` to this process when its parent dies.

    "Parent" is the *thread* that forked this process: the signal comes when
    that thread exits, whatever kills it (SIGKILL included). A process forked
    by a parent that died before this call is not covered: check
    ``os.getppid()`` afterwards.
    """
    if unix.lib.rx_set_pdeathsig(sig) != 0:
        raise unix.syscall_error(f"prctl(PR_SET_PDEATHSIG, {sig})", unix.ffi.errno)
