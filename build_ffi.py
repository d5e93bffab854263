"""The one CFFI builder: declares the Linux syscalls reactor uses, API mode, out of line.

setuptools runs this through ``setup.py``'s ``cffi_modules`` and produces the
extension ``reactor._sys`` (``ffi`` and ``lib`` only). Everything above it in
reactor talks to the kernel through :mod:`reactor.internal.unix`.

Why API mode (``set_source``) and not ABI mode (``dlopen``): the C compiler
checks every declaration against the real glibc headers when the module is
built, so constants come from ``#define NAME ...`` (the header's value, never a
number typed in here) and struct layouts from the compiler. ABI mode would
trust our cdef blindly; for ``struct epoll_event`` that means silent corruption
(see below). API-mode calls are also ~3x cheaper than ABI-mode ones.

Run ``python build_ffi.py`` to build the module in place for quick experiments
(``pip install -e .`` does the same through setuptools).
"""

from __future__ import annotations

import os

from cffi import FFI

#: The io_uring backend's declarations: one text for the cdef below and for the C (csrc/rx_uring.h says why).
_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
with open(os.path.join(_CSRC, "rx_uring.h")) as _h:
    _URING_H = _h.read()

# Constants: each is resolved by the C compiler from the system headers.
_CONSTANTS = """
AF_UNSPEC AF_INET AF_INET6 AF_UNIX
SOCK_STREAM SOCK_DGRAM SOCK_NONBLOCK SOCK_CLOEXEC
SOL_SOCKET SO_REUSEADDR SO_REUSEPORT SO_KEEPALIVE SO_RCVBUF SO_SNDBUF SO_ERROR
SO_LINGER SO_TYPE SO_DOMAIN SO_ACCEPTCONN
IPPROTO_IP IPPROTO_TCP IPPROTO_UDP IPPROTO_IPV6 IPV6_V6ONLY
TCP_NODELAY TCP_KEEPIDLE TCP_KEEPINTVL TCP_KEEPCNT
SHUT_RD SHUT_WR SHUT_RDWR SOMAXCONN
MSG_TRUNC MSG_DONTWAIT MSG_NOSIGNAL MSG_PEEK
F_GETFL F_SETFL F_GETFD F_SETFD F_DUPFD_CLOEXEC FD_CLOEXEC O_NONBLOCK O_CLOEXEC
EPOLL_CLOEXEC EPOLL_CTL_ADD EPOLL_CTL_MOD EPOLL_CTL_DEL
EPOLLIN EPOLLOUT EPOLLPRI EPOLLERR EPOLLHUP EPOLLRDHUP EPOLLET EPOLLONESHOT EPOLLEXCLUSIVE
EFD_NONBLOCK EFD_CLOEXEC EFD_SEMAPHORE
IOV_MAX
""".split()

CDEF = "\n".join(f"#define {name} ..." for name in _CONSTANTS) + r"""

typedef int... socklen_t;
typedef int... sa_family_t;
typedef int... ssize_t;

/* Partial structs ("...;"): the compiler supplies offsets, size and alignment. */
struct sockaddr { sa_family_t sa_family; ...; };
struct sockaddr_storage { sa_family_t ss_family; ...; };
struct in_addr { uint32_t s_addr; };
struct sockaddr_in { sa_family_t sin_family; uint16_t sin_port; struct in_addr sin_addr; ...; };
struct in6_addr { unsigned char s6_addr[16]; ...; };
struct sockaddr_in6 {
    sa_family_t sin6_family; uint16_t sin6_port; uint32_t sin6_flowinfo;
    struct in6_addr sin6_addr; uint32_t sin6_scope_id; ...;
};
struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; ...; };
struct iovec { void *iov_base; size_t iov_len; };

/* glibc marks struct epoll_event __attribute__((packed)) on x86_64 only: 12
 * bytes with `data` at offset 4. Elsewhere (aarch64, ...) it is 16 bytes with
 * `data` at offset 8. The trailing "...;" makes cffi take the layout from the
 * compiler instead of from this declaration, so both are right; declared
 * exactly, the module refuses to import on x86_64 ("wrong offset for field
 * 'data'"), and packed=True would be wrong on aarch64. */
typedef union epoll_data { void *ptr; int fd; uint32_t u32; uint64_t u64; } epoll_data_t;
struct epoll_event { uint32_t events; epoll_data_t data; ...; };

int socket(int domain, int type, int protocol);
int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen);
int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen);
int bind(int fd, const struct sockaddr *addr, socklen_t addrlen);
int listen(int fd, int backlog);
int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
int connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
int getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen);
int getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen);
ssize_t read(int fd, void *buf, size_t count);
ssize_t write(int fd, const void *buf, size_t count);
ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src_addr, socklen_t *addrlen);
ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest_addr, socklen_t addrlen);
int shutdown(int fd, int how);
int close(int fd);
int fcntl(int fd, int cmd, ...);
int epoll_create1(int flags);
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
int eventfd(unsigned int initval, int flags);

/* Helpers (C source below). */
int rx_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout,
                  int *fds, uint32_t *masks);
int rx_epoll_ctl(int epfd, int op, int fd, uint32_t events);
int rx_eventfd_write(int fd, uint64_t value);
int rx_eventfd_read(int fd, uint64_t *value);
int rx_set_pdeathsig(int sig);

"""

SOURCE = r"""
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* Why these helpers exist: every attribute read on a cdata struct costs a
 * Python->C crossing, and reading events[i].data.fd / events[i].events out of
 * the packed array measured ~220-250 ns per event on this machine, slower than
 * the stdlib's select.epoll. Copying both fields into two plain arrays inside
 * one C call lets Python take them with two ffi.unpack() calls per batch
 * (~100-140 ns per event all told; python-peers.md section 2.5). errno is left
 * untouched by the copy loop, so ffi.errno still describes epoll_wait. */
int rx_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout,
                  int *fds, uint32_t *masks)
{
    int n = epoll_wait(epfd, events, maxevents, timeout);
    for (int i = 0; i < n; i++) {
        fds[i] = events[i].data.fd;
        masks[i] = events[i].events;
    }
    return n;
}

/* epoll_ctl with the event struct built on the C stack: from Python that is
 * one call instead of ffi.new + two packed-field writes + the call. */
int rx_epoll_ctl(int epfd, int op, int fd, uint32_t events)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, op == EPOLL_CTL_DEL ? NULL : &ev);
}

/* eventfd(2) counters are read and written as exactly 8 bytes in host order. */
int rx_eventfd_write(int fd, uint64_t value)
{
    ssize_t n = write(fd, &value, sizeof value);
    return n == (ssize_t)sizeof value ? 0 : -1;
}

int rx_eventfd_read(int fd, uint64_t *value)
{
    ssize_t n = read(fd, value, sizeof *value);
    return n == (ssize_t)sizeof *value ? 0 : -1;
}

/* The io_uring backend's entry points, defined in csrc/rx_uring.c. */
#include "rx_uring.h"

/* prctl(2) is variadic; a fixed signature keeps cffi from guessing the
   type of the unsigned long argument. */
int rx_set_pdeathsig(int sig)
{
    return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0UL, 0UL, 0UL);
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF + _URING_H)
# The io_uring backend is C of its own (~450 lines): a separate file keeps
# this one readable and gives the compiler's messages real line numbers.
ffibuilder.set_source("reactor._sys", SOURCE, sources=["csrc/rx_uring.c"], include_dirs=[_CSRC],
                      depends=[os.path.join(_CSRC, "rx_uring.h")], extra_compile_args=["-O2"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
