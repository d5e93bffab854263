"""fd exhaustion with no spare fd to shed with: the listener is left alone briefly instead of spinning.

The server runs in a subprocess whose fd table is filled (RLIMIT_NOFILE
lowered, then dummy fds) so that after reactor has opened what it needs,
nothing is left: accept4 fails with EMFILE and the reserved-fd trick cannot
even reopen its spare. A level-triggered listener would then be reported
ready on every epoll_wait and the accepting thread would burn a CPU; reactor
stops polling the listener for ACCEPT_BACKOFF and tries again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

SERVER = textwrap.dedent(
    """
    import logging, os, resource, sys, threading
    import reactor

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    class Echo(reactor.EventServer):
        fillers = []

        def on_init_complete(self, server):
            self.server = server
            return reactor.Action.NONE

        def tick(self):
            # The first tick comes once the loops run and hold their fds.
            # Take the reserved spare away (as if another thread had grabbed
            # its number), then fill the fd table: from here on every new fd
            # fails with EMFILE.
            if not self.fillers:
                self.server._engine.acceptor.reserve.close()
                while True:
                    try:
                        self.fillers.append(os.open("/dev/null", os.O_RDONLY))
                    except OSError:
                        break
                print(self.server.addr[1], flush=True)
            return 3600.0, reactor.Action.NONE

        def react(self, frame, c):
            return frame, reactor.Action.NONE

    h = Echo()

    def free(*_):
        for fd in h.fillers:
            os.close(fd)
        h.fillers.clear()

    import signal
    signal.signal(signal.SIGTERM, lambda *_: h.server.stop())
    signal.signal(signal.SIGUSR1, free)
    reactor.serve(h, "tcp://127.0.0.1:0", num_event_loop=1, ticker=True)
    """
)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_emfile_without_a_spare_fd_backs_off_instead_of_spinning() -> None:
    """At EMFILE with no spare fd: no busy loop, the error is logged, accepting resumes once fds are free."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    pending: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        # The fd table is already full here, so even this connection waits
        # in the backlog: the server cannot accept anything yet.
        for _ in range(3):
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", port))  # completes in the kernel's backlog
            pending.append(s)
        time.sleep(0.3)  # let the server hit EMFILE and settle
        cpu0 = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        used = _cpu_seconds(proc.pid) - cpu0
        # A spinning accept loop would use ~1 CPU second here; backing off
        # (one attempt per 100 ms) uses a few milliseconds.
        assert used < 0.3, f"server used {used:.2f} CPU s in 1 s while fds were exhausted"
        assert proc.poll() is None, "the server must survive fd exhaustion"
        # Free the fds: the connections waiting in the backlog are accepted
        # and served without any help.
        proc.send_signal(signal.SIGUSR1)
        for s in pending:
            s.sendall(b"ping")
            assert s.recv(16) == b"ping"
    finally:
        for s in pending:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()
    assert "Too many open files" in err or "EMFILE" in err, err
