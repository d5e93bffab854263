"""Smoke tests for the CFFI build: the extension imports, its constants are the
system's, and ``struct epoll_event`` has the layout the kernel writes.

The constant check is programmatic: every upper-case int that
``reactor.internal.unix`` exports is looked up in the stdlib modules that mirror the C
headers (``select``, ``socket``, ``fcntl``, ``os``). A name with no stdlib
counterpart must be listed in ``NO_STDLIB_COUNTERPART`` (and is then checked
another way), so a constant added later cannot slip through unchecked.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import platform
import select
import socket
from pathlib import Path
from types import ModuleType

import pytest

import reactor._sys
from reactor._sys import ffi, lib
from reactor.internal import unix

#: The stdlib modules that expose the same C header constants.
STDLIB_MODULES: tuple[ModuleType, ...] = (select, socket, fcntl, os)

#: Exported constants that no stdlib module exposes, with their Linux ABI
#: value (epoll_ctl ops are fixed by the kernel ABI) or ``None`` when another
#: test checks them (IOV_MAX against sysconf).
NO_STDLIB_COUNTERPART: dict[str, int | None] = {
    "EPOLL_CTL_ADD": 1,
    "EPOLL_CTL_DEL": 2,
    "EPOLL_CTL_MOD": 3,
    "IOV_MAX": None,
}


def exported_constants() -> dict[str, int]:
    """The public upper-case int constants of reactor.internal.unix."""
    return {
        name: value
        for name, value in vars(unix).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, int)
    }


def stdlib_values(name: str) -> dict[str, int]:
    """``{module name: value}`` for every stdlib module that defines ``name``."""
    return {m.__name__: int(getattr(m, name)) for m in STDLIB_MODULES if hasattr(m, name)}


CONSTANTS = exported_constants()
WITH_STDLIB = sorted(name for name in CONSTANTS if stdlib_values(name))


def load_build_ffi() -> ModuleType:
    """Import the repository's build_ffi.py (it sits outside the package)."""
    path = Path(__file__).resolve().parents[2] / "build_ffi.py"
    spec = importlib.util.spec_from_file_location("_reactor_build_ffi", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extension_imports() -> None:
    """The compiled module ``reactor._sys`` loads and exposes ``ffi`` and ``lib``
    with the syscalls and C helpers reactor.internal.unix calls."""
    assert reactor._sys.__file__.endswith(".so")  # the compiled API-mode module
    assert unix.ffi is ffi and unix.lib is lib  # and the one reactor.internal.unix calls
    assert ffi.typeof("struct epoll_event").kind == "struct"
    for name in (
        "socket", "setsockopt", "getsockopt", "bind", "listen", "accept4", "connect",
        "getsockname", "getpeername", "read", "write", "writev", "recvfrom", "sendto",
        "shutdown", "close", "fcntl", "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd",
        "rx_epoll_wait", "rx_epoll_ctl", "rx_eventfd_write", "rx_eventfd_read",
    ):
        assert callable(getattr(lib, name)), name


def test_every_builder_constant_is_exported() -> None:
    """Each constant build_ffi.py asks the compiler for is re-exported by
    reactor.internal.unix with the compiled value, as a plain Python int."""
    declared = load_build_ffi()._CONSTANTS
    assert len(declared) == len(set(declared)), "duplicate name in build_ffi._CONSTANTS"
    missing = [name for name in declared if name not in CONSTANTS]
    assert not missing, f"declared in build_ffi.py but not exported by reactor.internal.unix: {missing}"
    for name in declared:
        assert type(CONSTANTS[name]) is int, name
        assert CONSTANTS[name] == getattr(lib, name), name
    extra = sorted(set(CONSTANTS) - set(declared))
    assert not extra, f"reactor.internal.unix exports constants not from the headers: {extra}"


def test_every_constant_is_checked() -> None:
    """No exported constant escapes the comparison: it either has a stdlib
    counterpart or is listed in NO_STDLIB_COUNTERPART (and that list does not
    hide a name the stdlib actually has)."""
    unchecked = sorted(set(CONSTANTS) - set(WITH_STDLIB) - set(NO_STDLIB_COUNTERPART))
    assert not unchecked, f"constants with no stdlib counterpart and no other check: {unchecked}"
    for name in NO_STDLIB_COUNTERPART:
        assert name in CONSTANTS, name
        assert not stdlib_values(name), f"{name} is in the stdlib now: compare it there"
    # The names the brief relies on are really among the compared ones.
    for name in (
        "EPOLLIN", "EPOLLOUT", "EPOLLET", "EPOLLEXCLUSIVE", "EPOLL_CLOEXEC", "AF_INET6",
        "SOCK_NONBLOCK", "SOCK_CLOEXEC", "SO_LINGER", "TCP_NODELAY", "SOMAXCONN",
        "MSG_TRUNC", "F_GETFL", "F_DUPFD_CLOEXEC", "O_NONBLOCK", "O_CLOEXEC",
    ):
        assert name in WITH_STDLIB, name
    for name in ("EFD_NONBLOCK", "EFD_CLOEXEC", "EFD_SEMAPHORE"):
        if hasattr(os, name):
            assert name in WITH_STDLIB, name


@pytest.mark.parametrize("name", WITH_STDLIB)
def test_constant_matches_stdlib(name: str) -> None:
    """The header value compiled into reactor._sys equals the stdlib's value
    for the same name (in every stdlib module that defines it)."""
    values = stdlib_values(name)
    assert values, name
    for module_name, value in values.items():
        assert CONSTANTS[name] == value, f"{name}: reactor {CONSTANTS[name]} != {module_name} {value}"


@pytest.mark.parametrize("name", sorted(n for n, v in NO_STDLIB_COUNTERPART.items() if v is not None))
def test_constant_matches_kernel_abi(name: str) -> None:
    """Constants the stdlib lacks equal their fixed Linux ABI value."""
    assert CONSTANTS[name] == NO_STDLIB_COUNTERPART[name]


def test_iov_max_matches_sysconf() -> None:
    """IOV_MAX from <limits.h> is the limit the C library reports at run time."""
    assert unix.IOV_MAX == os.sysconf("SC_IOV_MAX")


def expected_epoll_event_layout() -> tuple[int, int]:
    """(sizeof, offsetof data) of struct epoll_event for this machine.

    glibc packs the struct on x86_64 only (12 bytes, data at 4); on 32-bit x86
    a uint64_t is 4-byte aligned, which gives the same numbers naturally;
    everywhere else it is 16 bytes with data at 8.
    """
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i486", "i586", "i686"):
        return 12, 4
    return 16, 8


def test_epoll_event_layout() -> None:
    """cffi's idea of struct epoll_event matches the platform ABI."""
    size, data_offset = expected_epoll_event_layout()
    assert ffi.sizeof("struct epoll_event") == size
    assert ffi.offsetof("struct epoll_event", "events") == 0
    assert ffi.offsetof("struct epoll_event", "data") == data_offset
    assert ffi.sizeof("epoll_data_t") == 8


@pytest.fixture
def epfd():
    fd = unix.epoll_create1()
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def readable_pair():
    """A connected AF_UNIX stream pair whose first end has data waiting."""
    a, b = socket.socketpair()
    try:
        b.send(b"x")
        yield a, b
    finally:
        a.close()
        b.close()


def free_fd_at_or_above(low: int) -> int:
    """The first fd number >= ``low`` that is not open (and below RLIMIT_NOFILE)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for fd in range(low, limit):
        try:
            os.fstat(fd)
        except OSError:
            return fd
    pytest.skip(f"no free fd between {low} and RLIMIT_NOFILE={limit}")


def test_epoll_wait_returns_registered_fd_and_mask(epfd, readable_pair) -> None:
    """epoll_ctl stores the fd in data.fd and epoll_wait reads it back at the
    right offset: the reported fd is exactly the registered one, the mask is
    exactly EPOLLIN."""
    a, _ = readable_pair
    unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), unix.EPOLLIN)
    assert unix.epoll_wait(epfd, unix.EpollEvents(4), 0) == [(a.fileno(), unix.EPOLLIN)]


def test_epoll_wait_with_large_fd_number(epfd, readable_pair) -> None:
    """A multi-byte fd number (>= 1000) survives the round trip through the
    kernel's epoll_event, so no byte of data.fd is lost or shifted."""
    a, _ = readable_pair
    big = free_fd_at_or_above(1000 + 0x2A)  # 1042 = 0x412: two non-zero bytes
    os.dup2(a.fileno(), big)
    try:
        unix.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, big, unix.EPOLLIN | unix.EPOLLOUT)
        assert unix.epoll_wait(epfd, unix.EpollEvents(4), 0) == [
            (big, unix.EPOLLIN | unix.EPOLLOUT)
        ]
    finally:
        os.close(big)


def test_raw_epoll_event_array_layout(epfd) -> None:
    """Through the raw cffi struct (no C helper): a 64-bit data value set from
    Python comes back intact from the kernel, and the second element of an
    epoll_event array is read at the right stride."""
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        cookies = {}
        for i, (a, b) in enumerate(pairs):
            b.send(b"x")
            ev = ffi.new("struct epoll_event *")
            ev.events = unix.EPOLLIN
            cookie = 0x1122334455667700 + i  # every byte non-zero and distinct
            ev.data.u64 = cookie
            assert lib.epoll_ctl(epfd, unix.EPOLL_CTL_ADD, a.fileno(), ev) == 0
            cookies[cookie] = a.fileno()
        events = ffi.new("struct epoll_event[]", 4)
        n = lib.epoll_wait(epfd, events, 4, 0)
        assert n == 2
        got = {events[i].data.u64: events[i].events for i in range(n)}
        assert got == {cookie: unix.EPOLLIN for cookie in cookies}
    finally:
        for a, b in pairs:
            a.close()
            b.close()
