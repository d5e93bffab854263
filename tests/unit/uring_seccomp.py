"""Run a Python command line in a process where io_uring is blocked by seccomp, as container defaults do.

Usage: ``python uring_seccomp.py ARGS...`` installs a seccomp filter that
makes ``io_uring_setup`` fail with EPERM (every other system call is allowed),
then execs ``python ARGS...`` (``-c CODE`` or ``-m MODULE ...``): the filter
survives ``execve``, so the new program sees the kernel as Docker's default
profile shows it. Used by tests/unit/test_uring.py.

Exit status 77, with the reason on stderr, if the filter cannot be installed
here, or does not block io_uring_setup once installed (the test skips then).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

#: Exit status meaning "the filter could not be installed here" (the caller skips).
CANNOT_FILTER = 77

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
#: io_uring_setup's number: 425 on every architecture that has it (the unified table since 5.1).
NR_IO_URING_SETUP = 425
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# classic BPF opcodes
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
# struct seccomp_data: int nr; __u32 arch; ...
OFFSET_NR, OFFSET_ARCH = 0, 4


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def fail(why: str) -> None:
    print(f"seccomp filter not installed: {why}", file=sys.stderr, flush=True)
    sys.exit(CANNOT_FILTER)


def install_filter() -> None:
    arch = AUDIT_ARCH.get(platform.machine())
    if arch is None:
        fail(f"no AUDIT_ARCH known for {platform.machine()!r}")
    program = [
        SockFilter(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        SockFilter(BPF_JEQ_K, 1, 0, arch),  # our architecture: go on; another ABI: allow
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        SockFilter(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        SockFilter(BPF_JEQ_K, 0, 1, NR_IO_URING_SETUP),
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    filters = (SockFilter * len(program))(*program)
    prog = SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        fail(f"prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): {os.strerror(ctypes.get_errno())}")
    # Check that it bites: io_uring_setup(1, NULL) is EFAULT unfiltered, EPERM filtered.
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(NR_IO_URING_SETUP), ctypes.c_long(1), ctypes.c_void_p(None))
    err = ctypes.get_errno()
    if rc != -1 or err != errno.EPERM:
        fail(f"io_uring_setup was not blocked (returned {rc}, errno {errno.errorcode.get(err, err)})")


if __name__ == "__main__":
    install_filter()
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
