"""Shared fixtures: every test is checked for leaked fds and threads.

The fd check is the uvloop accounting idea: list /proc/self/fd before and
after each test. A server's loops close their fds before ``serve`` returns,
so a leak here is a real bug, not noise; a short grace period only covers
client sockets that the test's own garbage (stdlib socket objects) still
holds until the collector runs.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator

import pytest


def open_fds() -> set[int]:
    """The fds this process has open right now (the listing's own fd excluded)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue  # the directory handle os.listdir used, already closed
        fds.add(fd)
    return fds


def _describe(fds: set[int]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(f"{fd} -> ?")
    return out


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves fds open or threads running after it ends."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    before_fds = open_fds()
    before_threads = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        leaked_fds = open_fds() - before_fds
        leaked_threads = [
            t for t in threading.enumerate() if t not in before_threads and t.is_alive()
        ]
        if (not leaked_fds and not leaked_threads) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked_fds, f"fds leaked by the test: {_describe(leaked_fds)}"
    assert not leaked_threads, f"threads still running after the test: {leaked_threads}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leaks: skip the fd/thread leak check")
