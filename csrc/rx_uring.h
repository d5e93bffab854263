/* The io_uring backend's interface: defined in csrc/rx_uring.c, driven by
 * reactor/internal/uring.py.
 *
 * One text serves three readers: rx_uring.c, build_ffi.py's C source (which
 * both #include it) and build_ffi.py's cdef (which reads it as text). cffi's
 * cdef takes only declarations and integer #defines, so this file has no
 * include guard and includes nothing: its includers provide <stdint.h>,
 * <sys/types.h>, <sys/socket.h> and <sys/uio.h> first. */

/* Interest, per fd (rx_uring_ctl's want). */
#define RXU_READ 1
#define RXU_WRITE 2
#define RXU_STREAM 4
#define RXU_ACCEPT 16  /* a listening stream socket: accepted by IORING_OP_ACCEPTs on the ring */

struct rx_uring;
struct rx_uring *rx_uring_open(unsigned entries, unsigned nbufs, unsigned bufsize, unsigned send_cap);
int rx_uring_fd(struct rx_uring *r);
int rx_uring_ctl(struct rx_uring *r, int op, int fd, int want);
int rx_uring_wait(struct rx_uring *r, void *unused, int maxevents, int timeout, int *fds, uint32_t *masks);
ssize_t rx_uring_read(struct rx_uring *r, int fd, void *buf, size_t count);
ssize_t rx_uring_send(struct rx_uring *r, int fd, const void *buf, size_t count);
ssize_t rx_uring_sendv(struct rx_uring *r, int fd, const struct iovec *iov, int iovcnt);
size_t rx_uring_unsent(struct rx_uring *r, int fd);
int rx_uring_accept(struct rx_uring *r, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
void rx_uring_close(struct rx_uring *r);
