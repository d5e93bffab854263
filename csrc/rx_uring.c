/* reactor io_uring backend: the part that runs in C (see reactor/internal/uring.py for the Python side).
 * Compiled into reactor._sys by build_ffi.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rx_uring.h"
/* ---- io_uring: the ring, driven from Python once per loop iteration ----------------------------
 *
 * Why in C: a loop iteration may arm dozens of requests and reap as many
 * completions; each is a few stores into shared memory, and doing them from
 * Python would cost a cffi crossing (~110 ns) per field. One call per
 * iteration (rx_uring_wait) arms, submits, waits and reaps; one call per
 * read (rx_uring_read) copies a completion's bytes out and recycles its
 * buffer. No liburing: the rings are mmapped by hand, as the kernel's own
 * io_uring(7) example does.
 *
 * The model offered to Python is epoll's, so the event loop above is the
 * same for both backends: per fd an interest (read, write) set with
 * rx_uring_ctl, and events (fd, EPOLLIN/EPOLLOUT/...) from rx_uring_wait.
 * What differs is how read interest is served on a stream socket: not by a
 * readiness poll followed by read(2), but by an IORING_OP_RECV into a
 * buffer the kernel picks from a provided-buffer ring. Its completion *is*
 * the read: rx_uring_read hands the bytes over with read(2)'s contract, and
 * no read syscall is made. Other fds (UDP sockets, the eventfd) get a
 * one-shot IORING_OP_POLL_ADD, re-armed after each report: level-
 * triggered, like the epoll backend; listeners get accepts (below).
 *
 * Writes too go through the ring on a stream socket: rx_uring_send(v) copies
 * the bytes into the connection's send buffer (write(2)'s contract: it
 * returns how many it took), and the next rx_uring_wait submits an
 * IORING_OP_SEND for them with the round's other requests, in the same
 * io_uring_enter that waits. Most sends complete inside that enter; one
 * that finds the socket buffer full waits in the kernel for room, and
 * meanwhile rx_uring_send takes nothing more (EAGAIN), so the connection
 * queues its output and asks for write interest, as on epoll. For a ring
 * connection, "writable" is reported when no send is in flight.
 *
 * A listener (RXU_ACCEPT) has up to RXU_ACCEPT_SLOTS IORING_OP_ACCEPTs in
 * flight, each with its own address buffer; rx_uring_accept hands their
 * connections over with accept4(2)'s contract (see struct rxu_acc).
 *
 * user_data: kind in bits 0-2, an accept's slot in bits 3-7, fd in bits
 * 8-31, the fd's generation in the
 * high 32 bits. A generation is bumped when an fd is deleted, so a completion
 * that arrives after its fd was closed (and perhaps reused by a new
 * connection) is recognised as stale and dropped, never misattributed. */
#include <linux/io_uring.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define RXU_CANCEL 0
#define RXU_RECV 1
#define RXU_POLLIN 2
#define RXU_POLLOUT 3
#define RXU_SEND 4
#define RXU_ACCEPT_K 5
#define RXU_KIND_MASK 7
#define RXU_SLOT_SHIFT 3   /* an accept's slot (see struct rxu_acc) */
#define RXU_SLOT_MASK 31
#define RXU_FD_SHIFT 8

/* RXU_READ, RXU_WRITE, RXU_STREAM, RXU_ACCEPT: rx_uring.h; and, inside want only: */
#define RXU_REG 8

/* What rx_uring_send takes per connection before the kernel has it, by
 * default (the loop's per-round flush, MAX_BYTES_TO_WRITE_PER_LOOP); the
 * socket_send_buffer option, when set, replaces it. Beyond it, and while a
 * send is in flight, output waits in the Conn's queue, where back-pressure
 * (write_buffer_cap, async_write's result and limit) counts it: so this is
 * all that a connection holds on io_uring and not on epoll, as if its
 * socket buffer were that much larger. A user who made the socket buffer
 * small, to keep output where back-pressure sees it, gets as small a one
 * here. */
#define RXU_SEND_CAP (64 * 1024)

/* A write at least this large, to a connection with no output waiting in
 * the ring, is sent at once with send(2) instead of being copied for the
 * ring: copying it would cost more than the syscall saved (measured on
 * echo-64k: 64 KiB messages through the ring's buffer took twice the CPU).
 * What the socket does not take is copied and goes through the ring. */
#define RXU_DIRECT_MIN (16 * 1024)
/* Large reads go the way epoll's go. A recv completion of at least
 * RXU_BULK_MIN bytes puts its connection in bulk mode: read interest is
 * then served by a one-shot POLLIN poll, and rx_uring_read makes one
 * recv(2) straight into the loop's buffer, where the ring's recv would have
 * the kernel copy into a provided buffer and rx_uring_read copy it again.
 * For large reads that second copy costs more than the syscall it saves
 * (echo-64k, 16 connections: +2.5 us of user time and +5 us of kernel time
 * per echo against epoll; the ring's buffers rotate, so both copies miss the
 * cache, where epoll's read(2) refills the same hot buffer). After
 * RXU_BULK_STICKY reads in a row below RXU_BULK_MIN, the connection goes
 * back to the ring's recv: a stream of small requests is served without
 * read syscalls again, and one short read (the tail of a large message)
 * does not flip the mode back and forth. */
#define RXU_BULK_MIN (16 * 1024)
#define RXU_BULK_STICKY 4

/* The smallest send buffer worth keeping for reuse (rxu_drop_sent), and
 * how many are kept: one per connection with a send in flight at once, up to
 * RXU_SPARES. Smaller buffers come from malloc's per-thread cache cheaply;
 * these did not (echo-4k, 16 connections: malloc and free were 2 % of the
 * server's CPU, against 0.7 % on epoll). At most RXU_SPARES x send_cap
 * bytes (1 MiB by default) stay allocated per loop. */
#define RXU_SPARE_MIN 4096
#define RXU_SPARES 16

#define RXU_NO_EVENT 0  /* zero, so that fresh (untouched, zero) pages of the fd table mean "none" */
#define RXU_FD_MASK 0xffffff  /* 24 bits: above any RLIMIT_NOFILE (fs.nr_open is at most 2^30, 2^20 by default) */

/* What an fd needs only now and then (held results, output on its way):
 * made on first use and freed when idle, so that an idle connection costs
 * the ring 24 bytes. */
struct rxu_aux {
    char *held_data;   /* held bytes: held_data[held_off:held_len] */
    size_t held_off, held_len, held_cap;
    int32_t held_res;  /* how the held results end (held_end): 0 EOF, < 0 -errno */
    int32_t s_err;     /* a send failed with -s_err: every later rx_uring_send reports it */
    char *s_data;      /* output taken by rx_uring_send: s_data[s_off:s_len]; in flight while RXU_SEND is armed */
    uint32_t s_off, s_len, s_cap;
    struct rxu_acc *acc;  /* a listener's accepts */
};

/* A listener's accepts. Not one multishot accept: it has one address
 * buffer for every connection it accepts, and getpeername(2) afterwards
 * fails for a connection the peer reset while it waited, which accept4(2)
 * still hands over with its address (the loop then sees the reset, and the
 * handler gets on_opened and on_closed, as on epoll). So: a slot per accept
 * in flight, each with its own address; a slot's connection waits there
 * until rx_uring_accept takes it, and the slot is re-armed the next round.
 * At most RXU_ACCEPT_SLOTS connections wait in the ring; the rest wait in
 * the kernel's backlog, as with epoll. */
#define RXU_ACCEPT_SLOTS 32
struct rxu_acc {
    uint32_t armed;    /* slots with an accept in flight */
    uint32_t done;     /* slots holding an accepted fd not yet taken */
    int32_t err;       /* an accept failed with -err (EMFILE, ...): reported by the next rx_uring_accept */
    int fds[RXU_ACCEPT_SLOTS];
    socklen_t lens[RXU_ACCEPT_SLOTS];
    struct sockaddr_storage addrs[RXU_ACCEPT_SLOTS];
};

struct rxu_fd {
    uint32_t gen;
    uint8_t want;      /* RXU_READ | RXU_WRITE | RXU_STREAM | RXU_ACCEPT | RXU_REG */
    uint8_t armed;     /* 1 << kind for each request in flight */
    uint8_t dirty;     /* on r->dirty: to be (re)armed at the next wait */
    uint8_t held;      /* results kept back (bytes and/or an end), delivered before any new one */
    uint8_t starved;   /* its last recv found no free buffer (ENOBUFS): re-armed within a budget */
    uint8_t held_end;  /* the held results end (aux->held_res) */
    uint8_t bulk;      /* bulk mode (RXU_BULK_MIN): small reads left before the ring's recv is used again */
    int32_t ev;        /* 1 + the index of this fd's unread event in the batch (rxu_emit), or RXU_NO_EVENT */
    struct rxu_aux *aux;
};

/* Memory the kernel may still use after its fd was deleted: a send buffer
 * whose send was in flight, a listener's accept slots (their address
 * buffers). Freed when the last of those requests' completions (or
 * cancellations) arrives, never before. */
struct rxu_grave {
    uint64_t ud;       /* the requests' user_data, slot bits cleared */
    void *data;
    int pending;       /* completions still to come */
};

/* What kind of data an event carries for rx_uring_read. */
#define RXU_EV_NONE 0   /* no recv result: a poll event, or one already read */
#define RXU_EV_BUF 1    /* bytes in provided buffer ev_bid */
#define RXU_EV_HELD 2   /* the fd's held results */
#define RXU_EV_END 3    /* a recv's end: EOF (0) or an error (-errno) */

struct rx_uring {
    int fd;
    unsigned sq_entries, cq_entries;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_ring, *cq_ring;
    size_t sq_ring_sz, cq_ring_sz, sqes_sz;
    unsigned sq_local;      /* our tail: SQEs filled, published at submit */
    size_t send_cap;        /* what rx_uring_send takes per connection (RXU_SEND_CAP) */
    int inflight;           /* requests submitted (cancels aside) whose completion has not been reaped */
    char *spares[RXU_SPARES];  /* send buffers kept for reuse (a stack: the most recent, cache-warm, first) */
    uint32_t spare_caps[RXU_SPARES];
    int nspares;
    unsigned to_submit;
    /* the provided-buffer ring (group 0) */
    struct io_uring_buf_ring *br;
    size_t br_sz;
    unsigned nbufs, br_tail;
    char *bufs;
    size_t bufsize, bufs_sz;
    /* per-fd state, indexed by fd */
    struct rxu_fd *fds;
    int nfds;
    int *dirty;
    int ndirty, dirty_cap;
    /* the last batch of events: what rx_uring_read needs to serve each */
    int ev_cap, nev;
    int32_t *ev_fd, *ev_res;
    uint32_t *ev_gen;
    uint16_t *ev_bid;
    uint8_t *ev_kind;
    struct rxu_grave *graves;
    int ngraves, graves_cap;
};

static int rxu_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
}

static void rxu_recycle(struct rx_uring *r, unsigned bid)
{
    struct io_uring_buf *b = &r->br->bufs[r->br_tail & (r->nbufs - 1)];
    b->addr = (uint64_t)(uintptr_t)(r->bufs + (size_t)bid * r->bufsize);
    b->len = (uint32_t)r->bufsize;
    b->bid = (uint16_t)bid;
    r->br_tail++;
    /* Release: the kernel must see the entry before the new tail. */
    __atomic_store_n(&r->br->tail, (uint16_t)r->br_tail, __ATOMIC_RELEASE);
}

/* The fd table is an anonymous mapping grown with mremap: its new pages
 * are zero (a zero entry is an unregistered fd) and cost no memory until an
 * fd in them is used, so 10,000 connections pay for their own 24 bytes
 * each, not for a doubled, initialised array (15 bytes a connection more,
 * measured by bench conns-10k). */
static int rxu_grow(struct rx_uring *r, int fd)
{
    if (fd < r->nfds)
        return 0;
    size_t n = r->nfds ? (size_t)r->nfds : 4096;  /* 4096 entries: 24 pages */
    while (n <= (size_t)fd)
        n *= 2;
    size_t old_sz = (size_t)r->nfds * sizeof *r->fds, new_sz = n * sizeof *r->fds;
    void *p = r->fds ? mremap(r->fds, old_sz, new_sz, MREMAP_MAYMOVE)
                     : mmap(NULL, new_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    r->fds = p;
    r->nfds = (int)n;
    return 0;
}

static int rxu_mark_dirty(struct rx_uring *r, int fd)
{
    if (r->fds[fd].dirty)
        return 0;
    if (r->ndirty == r->dirty_cap) {
        int cap = r->dirty_cap ? r->dirty_cap * 2 : 256;
        int *d = realloc(r->dirty, (size_t)cap * sizeof *d);
        if (!d)
            return -ENOMEM;
        r->dirty = d;
        r->dirty_cap = cap;
    }
    r->dirty[r->ndirty++] = fd;
    r->fds[fd].dirty = 1;
    return 0;
}

static int rxu_submit(struct rx_uring *r, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
{
    __atomic_store_n(r->sq_tail, r->sq_local, __ATOMIC_RELEASE);
    for (;;) {
        int ret = rxu_enter(r->fd, r->to_submit, min_complete, flags, arg, argsz);
        if (ret >= 0) {
            r->to_submit -= (unsigned)ret <= r->to_submit ? (unsigned)ret : r->to_submit;
            return 0;
        }
        if (errno == EINTR && r->to_submit)
            continue;  /* nothing was submitted: try again (PEP 475's rule, here in C) */
        return -errno;
    }
}

/* A free SQE, submitting what is queued first if the ring is full. */
static struct io_uring_sqe *rxu_sqe(struct rx_uring *r)
{
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (r->sq_local - head >= r->sq_entries) {
        if (rxu_submit(r, 0, 0, NULL, 0) < 0)
            return NULL;
        head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
        if (r->sq_local - head >= r->sq_entries)
            return NULL;
    }
    struct io_uring_sqe *sqe = &r->sqes[r->sq_local & *r->sq_mask];
    memset(sqe, 0, sizeof *sqe);
    r->sq_local++;
    r->to_submit++;
    return sqe;
}

static uint64_t rxu_ud(int kind, int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | ((uint64_t)(uint32_t)fd << RXU_FD_SHIFT) | (uint64_t)kind;
}

static uint64_t rxu_ud_slot(int kind, int slot, int fd, uint32_t gen)
{
    return rxu_ud(kind, fd, gen) | ((uint64_t)slot << RXU_SLOT_SHIFT);
}

static struct rxu_aux *rxu_aux(struct rxu_fd *f)
{
    if (!f->aux)
        f->aux = calloc(1, sizeof *f->aux);
    return f->aux;
}

/* Free the aux of an fd that needs it no more. */
static void rxu_aux_trim(struct rxu_fd *f)
{
    struct rxu_aux *a = f->aux;
    if (a && !f->held && !a->s_data && !a->s_err && !a->acc) {
        free(a);
        f->aux = NULL;
    }
}

static int rxu_arm(struct rx_uring *r, int fd, int kind)
{
    struct rxu_fd *f = &r->fds[fd];
    struct io_uring_sqe *sqe = rxu_sqe(r);
    if (!sqe)
        return -EBUSY;
    sqe->fd = fd;
    sqe->user_data = rxu_ud(kind, fd, f->gen);
    r->inflight++;
    if (kind == RXU_RECV) {
        /* Single-shot, on purpose: one completion per iteration at most,
         * as one read(2) per readable event on epoll. A multishot recv
         * (6.0+) was tried: no measurable gain here, and it empties the
         * socket into the ring's buffers as fast as the peer sends, which
         * defeats TCP's flow control (docs/benchmarks.md). */
        sqe->opcode = IORING_OP_RECV;
        sqe->flags = IOSQE_BUFFER_SELECT;
        sqe->buf_group = 0;
        sqe->len = (uint32_t)r->bufsize;
    } else if (kind == RXU_SEND) {
        /* Not MSG_WAITALL: a partial send completes with its count and the
         * rest is sent by the next one, so a cancelled send never leaves a
         * count of sent bytes unknown. MSG_NOSIGNAL: a reset peer must give
         * EPIPE, not kill the process with SIGPIPE. */
        struct rxu_aux *a = f->aux;
        sqe->opcode = IORING_OP_SEND;
        sqe->addr = (uint64_t)(uintptr_t)(a->s_data + a->s_off);
        sqe->len = a->s_len - a->s_off;
        sqe->msg_flags = MSG_NOSIGNAL;
    } else {
        sqe->opcode = IORING_OP_POLL_ADD;
        /* one-shot: re-armed after each report, which makes it level-triggered */
        sqe->poll32_events = kind == RXU_POLLIN ? (POLLIN | POLLPRI) : POLLOUT;
    }
    f->armed |= (uint8_t)(1u << kind);
    return 0;
}

/* Arm every free slot of a listener (not while an error waits to be reported). */
static int rxu_arm_accepts(struct rx_uring *r, int fd)
{
    struct rxu_fd *f = &r->fds[fd];
    struct rxu_acc *acc = f->aux->acc;
    if (acc->err)
        return 0;
    for (int slot = 0; slot < RXU_ACCEPT_SLOTS; slot++) {
        uint32_t bit = 1u << slot;
        if ((acc->armed | acc->done) & bit)
            continue;
        struct io_uring_sqe *sqe = rxu_sqe(r);
        if (!sqe)
            return -EBUSY;
        sqe->opcode = IORING_OP_ACCEPT;
        sqe->fd = fd;
        acc->lens[slot] = (socklen_t)sizeof acc->addrs[slot];
        sqe->addr = (uint64_t)(uintptr_t)&acc->addrs[slot];
        sqe->addr2 = (uint64_t)(uintptr_t)&acc->lens[slot];
        sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
        sqe->user_data = rxu_ud_slot(RXU_ACCEPT_K, slot, fd, f->gen);
        acc->armed |= bit;
        r->inflight++;
    }
    return 0;
}

static void rxu_drop_held(struct rxu_fd *f)
{
    struct rxu_aux *a = f->aux;
    f->held = f->held_end = 0;
    if (a) {
        free(a->held_data);
        a->held_data = NULL;
        a->held_off = a->held_len = a->held_cap = 0;
        a->held_res = 0;
        rxu_aux_trim(f);
    }
}

/* The output is all sent (or can never be): its buffer goes. */
static void rxu_drop_sent(struct rx_uring *r, struct rxu_fd *f)
{
    struct rxu_aux *a = f->aux;
    if (r->nspares < RXU_SPARES && a->s_cap >= RXU_SPARE_MIN) {
        /* Kept for a later send (RXU_SPARES): a large buffer malloc'd and
         * freed per message made glibc trim the thread's heap (an madvise
         * and page faults per send, measured on echo-64k). */
        r->spares[r->nspares] = a->s_data;
        r->spare_caps[r->nspares++] = a->s_cap;
    } else {
        free(a->s_data);
    }
    a->s_data = NULL;
    a->s_off = a->s_len = a->s_cap = 0;
    rxu_aux_trim(f);
}

/* Keep a recv result back: its bytes are appended to what is held (order
 * kept), an end (EOF, error) closes the held sequence. Used when read
 * interest went off while the recv was in flight (a back-pressure pause)
 * and when the loop did not read a result it was given. Bounded: one recv
 * is in flight per connection, and none is armed while anything is held,
 * so at most one buffer's worth is kept. */
static void rxu_hold(struct rx_uring *r, struct rxu_fd *f, int res, const char *data)
{
    struct rxu_aux *a = rxu_aux(f);
    f->held = 1;
    if (!a) {
        f->held_end = 1;  /* no memory for the aux: the connection is closed with ENOMEM */
        return;
    }
    if (res <= 0) {
        if (!f->held_end) {
            f->held_end = 1;
            a->held_res = res;
        }
        return;
    }
    if (f->held_end)
        return;  /* nothing comes after an end */
    if (a->held_len + (size_t)res > a->held_cap) {
        if (a->held_off) {  /* reuse the part already read */
            memmove(a->held_data, a->held_data + a->held_off, a->held_len - a->held_off);
            a->held_len -= a->held_off;
            a->held_off = 0;
        }
        if (a->held_len + (size_t)res > a->held_cap) {
            size_t cap = a->held_cap ? a->held_cap : r->bufsize;
            while (cap < a->held_len + (size_t)res)
                cap *= 2;
            char *d = realloc(a->held_data, cap);
            if (!d) {
                f->held_end = 1;
                a->held_res = -ENOMEM;  /* the connection is closed with ENOMEM, nothing silently lost */
                return;
            }
            a->held_data = d;
            a->held_cap = cap;
        }
    }
    memcpy(a->held_data + a->held_len, data, (size_t)res);
    a->held_len += (size_t)res;
}

void rx_uring_close(struct rx_uring *r);

struct rx_uring *rx_uring_open(unsigned entries, unsigned nbufs, unsigned bufsize, unsigned send_cap)
{
    struct rx_uring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->send_cap = send_cap ? send_cap : RXU_SEND_CAP;
    r->fd = -1;
    struct io_uring_params p;
    /* COOP_TASKRUN: completions are posted when the loop next enters the
     * kernel, without an interrupt (IPI) to the loop thread for each;
     * TASKRUN_FLAG tells us when such work is waiting, so a non-blocking
     * round can skip io_uring_enter when there is none. Older kernels
     * (< 5.19) refuse these flags: retry without them. */
    unsigned tries[] = {IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                            IORING_SETUP_TASKRUN_FLAG,
                        IORING_SETUP_CQSIZE};
    for (unsigned i = 0; i < 2; i++) {
        memset(&p, 0, sizeof p);
        p.flags = tries[i];
        p.cq_entries = entries * 8;
        r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
        if (r->fd >= 0 || errno != EINVAL)
            break;
    }
    if (r->fd < 0)
        goto fail;
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
        errno = EOPNOTSUPP;  /* kernel < 5.11: no timeout argument to io_uring_enter */
        goto fail;
    }
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->sq_ring_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_ring_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_ring_sz > r->sq_ring_sz)
            r->sq_ring_sz = r->cq_ring_sz;
        r->cq_ring_sz = 0;
    }
    r->sq_ring = mmap(NULL, r->sq_ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                      IORING_OFF_SQ_RING);
    if (r->sq_ring == MAP_FAILED) {
        r->sq_ring = NULL;
        goto fail;
    }
    if (r->cq_ring_sz) {
        r->cq_ring = mmap(NULL, r->cq_ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                          IORING_OFF_CQ_RING);
        if (r->cq_ring == MAP_FAILED) {
            r->cq_ring = NULL;
            goto fail;
        }
    }
    char *sq = r->sq_ring, *cq = r->cq_ring ? (char *)r->cq_ring : (char *)r->sq_ring;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        r->sqes = NULL;
        goto fail;
    }
    /* The index array maps SQ slots to SQEs: the identity, set once. */
    for (unsigned i = 0; i < p.sq_entries; i++)
        r->sq_array[i] = i;
    r->sq_local = *r->sq_tail;

    /* The provided-buffer ring: nbufs (a power of two) buffers of bufsize
     * bytes; the kernel takes one per completed recv (5.19+). */
    r->nbufs = nbufs;
    r->bufsize = bufsize;
    r->br_sz = (size_t)nbufs * sizeof(struct io_uring_buf);
    r->br = mmap(NULL, r->br_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->br == MAP_FAILED) {
        r->br = NULL;
        goto fail;
    }
    r->bufs_sz = (size_t)nbufs * bufsize;
    r->bufs = mmap(NULL, r->bufs_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->bufs == MAP_FAILED) {
        r->bufs = NULL;
        goto fail;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)r->br;
    reg.ring_entries = nbufs;
    reg.bgid = 0;
    if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        goto fail;
    for (unsigned i = 0; i < nbufs; i++)
        rxu_recycle(r, i);
    if (rxu_grow(r, 1023) < 0) {
        errno = ENOMEM;
        goto fail;
    }
    return r;
fail:;
    int err = errno;
    rx_uring_close(r);
    errno = err;
    return NULL;
}

int rx_uring_fd(struct rx_uring *r)
{
    return r->fd;
}

/* Close the connections a listener accepted and nobody took: their peers
 * see it at once, and no fd leaks. */
static void rxu_close_accepted(struct rxu_acc *acc)
{
    for (int slot = 0; slot < RXU_ACCEPT_SLOTS; slot++)
        if (acc->done & (1u << slot))
            close(acc->fds[slot]);
    acc->done = 0;
}

/* An fd's aux and all it holds, for good (delete, close). Not for memory
 * the kernel may still use: delete buries that first. */
static void rxu_free_aux(struct rxu_fd *f)
{
    struct rxu_aux *a = f->aux;
    if (!a)
        return;
    if (a->acc) {
        rxu_close_accepted(a->acc);
        free(a->acc);
    }
    free(a->held_data);
    free(a->s_data);
    free(a);
    f->aux = NULL;
}

/* Queue a cancellation of the request whose user_data is target. */
static int rxu_cancel(struct rx_uring *r, uint64_t target, int fd, uint32_t gen)
{
    struct io_uring_sqe *sqe = rxu_sqe(r);
    if (!sqe)
        return -EBUSY;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->user_data = rxu_ud(RXU_CANCEL, fd, gen);
    return 0;
}

static int rxu_bury(struct rx_uring *r, uint64_t ud, void *data, int pending)
{
    if (r->ngraves == r->graves_cap) {
        int cap = r->graves_cap ? r->graves_cap * 2 : 16;
        struct rxu_grave *g = realloc(r->graves, (size_t)cap * sizeof *g);
        if (!g)
            return -ENOMEM;
        r->graves = g;
        r->graves_cap = cap;
    }
    r->graves[r->ngraves].ud = ud;
    r->graves[r->ngraves].data = data;
    r->graves[r->ngraves].pending = pending;
    r->ngraves++;
    return 0;
}

/* A stale request has completed: free what it used once the last is in. */
static void rxu_unbury(struct rx_uring *r, uint64_t ud)
{
    ud &= ~((uint64_t)RXU_SLOT_MASK << RXU_SLOT_SHIFT);
    for (int i = 0; i < r->ngraves; i++) {
        if (r->graves[i].ud == ud) {
            if (--r->graves[i].pending == 0) {
                free(r->graves[i].data);
                r->graves[i] = r->graves[--r->ngraves];
            }
            return;
        }
    }
}

/* Set fd's interest (epoll_ctl's counterpart). op: 0 add, 1 modify, 2
 * delete; want: RXU_READ | RXU_WRITE, plus RXU_STREAM on add for a stream
 * socket whose reads are to be done by the ring. Delete cancels what is in
 * flight and submits the cancellations at once: an armed recv holds a
 * reference to the socket, and the peer must see it close when close(2)
 * is called, not at the next loop iteration. */
int rx_uring_ctl(struct rx_uring *r, int op, int fd, int want)
{
    if (fd < 0)
        return errno = EBADF, -1;
    if (fd > RXU_FD_MASK)
        return errno = EINVAL, -1;  /* does not fit user_data's fd field */
    int err = rxu_grow(r, fd);
    if (err < 0)
        return errno = -err, -1;
    struct rxu_fd *f = &r->fds[fd];
    if (op == 0) {
        if (f->want & RXU_REG)
            return errno = EEXIST, -1;
        if ((want & RXU_ACCEPT) && (!rxu_aux(f) || !(f->aux->acc = calloc(1, sizeof *f->aux->acc)))) {
            rxu_aux_trim(f);
            return errno = ENOMEM, -1;
        }
        f->want = (uint8_t)(RXU_REG | (want & (RXU_READ | RXU_WRITE | RXU_STREAM | RXU_ACCEPT)));
        f->starved = 0;
        f->bulk = 0;
    } else {
        if (!(f->want & RXU_REG))
            return errno = ENOENT, -1;
        if (op == 1) {
            f->want = (uint8_t)((f->want & (RXU_REG | RXU_STREAM | RXU_ACCEPT)) | (want & (RXU_READ | RXU_WRITE)));
        } else {
            struct rxu_aux *a = f->aux;
            if (a && a->s_len > a->s_off && !a->s_err) {
                if (f->armed & (1u << RXU_SEND)) {
                    /* In flight: the socket was full when it was sent, so it
                     * is dropped, as epoll's close drops what write(2) could
                     * not take. Its buffer waits for the cancellation. */
                    if (rxu_bury(r, rxu_ud(RXU_SEND, fd, f->gen), a->s_data, 1) < 0)
                        return errno = ENOMEM, -1;
                    a->s_data = NULL;
                } else {
                    /* Taken by rx_uring_send but not yet submitted: what epoll's
                     * write(2) would have done by now, done now, before close(2). */
                    (void)send(fd, a->s_data + a->s_off, a->s_len - a->s_off, MSG_DONTWAIT | MSG_NOSIGNAL);
                }
            }
            int had = f->armed;
            for (int kind = RXU_RECV; kind <= RXU_SEND; kind++)
                if ((f->armed & (1u << kind)) && rxu_cancel(r, rxu_ud(kind, fd, f->gen), fd, f->gen) < 0)
                    return errno = EBUSY, -1;
            struct rxu_acc *acc = a ? a->acc : NULL;
            if (acc && acc->armed) {
                /* A listener: cancel its accepts; their address buffers wait
                 * for the cancellations. */
                for (int slot = 0; slot < RXU_ACCEPT_SLOTS; slot++)
                    if ((acc->armed & (1u << slot)) &&
                        rxu_cancel(r, rxu_ud_slot(RXU_ACCEPT_K, slot, fd, f->gen), fd, f->gen) < 0)
                        return errno = EBUSY, -1;
                if (rxu_bury(r, rxu_ud(RXU_ACCEPT_K, fd, f->gen), acc, __builtin_popcount(acc->armed)) < 0)
                    return errno = ENOMEM, -1;
                rxu_close_accepted(acc);
                a->acc = NULL;
                had = 1;
            }
            f->want = 0;
            f->armed = 0;
            f->gen++;
            f->ev = RXU_NO_EVENT;
            f->held = f->held_end = f->bulk = 0;
            rxu_free_aux(f);
            if (had) {
                err = rxu_submit(r, 0, 0, NULL, 0);
                if (err < 0)
                    return errno = -err, -1;
            }
            return 0;
        }
    }
    err = rxu_mark_dirty(r, fd);
    if (err < 0)
        return errno = -err, -1;
    return 0;
}

static int rxu_reserve_events(struct rx_uring *r, int max)
{
    if (max <= r->ev_cap)
        return 0;
    /* Each array keeps its old contents (the batch rxu_retire_batch has yet
     * to close) if a larger one cannot be had. */
#define RXU_RESERVE(field)                                                  \
    do {                                                                    \
        void *p = realloc(r->field, (size_t)max * sizeof *r->field);        \
        if (!p)                                                             \
            return -ENOMEM;                                                 \
        r->field = p;                                                       \
    } while (0)
    RXU_RESERVE(ev_fd);
    RXU_RESERVE(ev_res);
    RXU_RESERVE(ev_gen);
    RXU_RESERVE(ev_bid);
    RXU_RESERVE(ev_kind);
#undef RXU_RESERVE
    r->ev_cap = max;
    return 0;
}

/* Close the previous batch. A recv result the loop did not read stays
 * with its fd if the fd is still the same registration (held, delivered
 * before anything newer): the poller loses no byte whatever the loop did.
 * A closed fd's bytes go back to the buffer ring. */
static void rxu_retire_batch(struct rx_uring *r)
{
    for (int i = 0; i < r->nev; i++) {
        int fd = r->ev_fd[i];
        int kind = r->ev_kind[i];
        struct rxu_fd *f = fd >= 0 && fd < r->nfds ? &r->fds[fd] : NULL;
        int live = f && f->gen == r->ev_gen[i] && (f->want & RXU_REG);
        if (kind == RXU_EV_BUF || kind == RXU_EV_END) {
            if (live) {
                rxu_hold(r, f, r->ev_res[i], kind == RXU_EV_BUF ? r->bufs + (size_t)r->ev_bid[i] * r->bufsize : NULL);
                rxu_mark_dirty(r, fd);
            }
            if (kind == RXU_EV_BUF)
                rxu_recycle(r, r->ev_bid[i]);
        }
        if (f && f->ev == i + 1)
            f->ev = RXU_NO_EVENT;
    }
    r->nev = 0;
}

static int rxu_emit(struct rx_uring *r, int *fds, uint32_t *masks, int fd, uint32_t mask, int32_t res, int kind,
                    unsigned bid)
{
    int i = r->nev++;
    fds[i] = fd;
    masks[i] = mask;
    r->ev_fd[i] = fd;
    r->ev_res[i] = res;
    r->ev_gen[i] = r->fds[fd].gen;
    r->ev_bid[i] = (uint16_t)bid;
    r->ev_kind[i] = (uint8_t)kind;
    return i + 1;  /* what f->ev keeps: never RXU_NO_EVENT */
}

/* One loop iteration's kernel work: arm what interest asks for, submit,
 * wait up to timeout ms (-1: until something happens; 0: not at all), and
 * copy up to max events into fds/masks (rx_epoll_wait's contract; `unused`
 * keeps its signature so the poller's loop calls either the same way).
 * Returns the event count, or -1 with errno set. */
int rx_uring_wait(struct rx_uring *r, void *unused, int max, int timeout, int *fds, uint32_t *masks)
{
    (void)unused;
    int err = rxu_reserve_events(r, max);
    if (err < 0)
        return errno = -err, -1;
    rxu_retire_batch(r);
    /* Arm, or deliver what was held while read interest was off. */
    int keep = 0;
    /* Recvs that failed for want of a buffer are re-armed at most nbufs per
     * round: when thousands of connections become readable at once (a
     * broadcast, the 10,000-connection echo), only nbufs of their recvs can
     * complete per round anyway, and re-arming all of them every round
     * would cost O(connections) failed recvs per round, O(n^2) in all. */
    unsigned starved_budget = r->nbufs;
    int deferred = 0;
    for (int k = 0; k < r->ndirty; k++) {
        int fd = r->dirty[k];
        struct rxu_fd *f = &r->fds[fd];
        unsigned want = f->want;
        struct rxu_aux *a = f->aux;
        if (want & RXU_ACCEPT) {
            /* A listener: reported while connections (or an error) wait to be
             * taken, level-triggered; its free slots are re-armed. */
            struct rxu_acc *acc = a->acc;
            int again = 0;
            if (want & RXU_READ) {
                if ((acc->done || acc->err) && f->ev == RXU_NO_EVENT) {
                    if (r->nev < max)
                        f->ev = rxu_emit(r, fds, masks, fd, EPOLLIN, 0, RXU_EV_NONE, 0);
                    again = 1;  /* until rx_uring_accept has taken them all */
                }
                if (rxu_arm_accepts(r, fd) < 0)
                    again = 1;  /* the ring is full: next round */
            }
            if (again)
                r->dirty[keep++] = fd;
            else
                f->dirty = 0;
            continue;
        }
        /* Output first: a send taken this round goes out with this enter. */
        if (a && a->s_len > a->s_off && !a->s_err && !(f->armed & (1u << RXU_SEND)) &&
            rxu_arm(r, fd, RXU_SEND) < 0) {
            r->dirty[keep++] = fd;  /* the ring is full: next round */
            continue;
        }
        /* Write interest. A ring connection is writable when no send is in
         * flight (level-triggered: reported every round until interest goes
         * off or a send is armed); other fds get a POLLOUT poll. */
        uint32_t out = 0;
        if (want & RXU_WRITE) {
            if (want & RXU_STREAM) {
                if (!(f->armed & (1u << RXU_SEND)))
                    out = EPOLLOUT;
            } else if (!(f->armed & (1u << RXU_POLLOUT)) && rxu_arm(r, fd, RXU_POLLOUT) < 0) {
                r->dirty[keep++] = fd;
                continue;
            }
        }
        if (f->held && (want & RXU_READ)) {
            /* Deliver the held result; no recv is armed until it has been
             * read (bytes stay in order), so the fd stays dirty. */
            if (r->nev < max)
                f->ev = rxu_emit(r, fds, masks, fd, EPOLLIN | out, 0, RXU_EV_HELD, 0);
            r->dirty[keep++] = fd;
            continue;
        }
        if (out && r->nev < max)
            rxu_emit(r, fds, masks, fd, out, 0, RXU_EV_NONE, 0);
        if (want & RXU_READ) {
            int kind = (want & RXU_STREAM) && !f->bulk ? RXU_RECV : RXU_POLLIN;
            if (!(f->armed & (1u << kind))) {
                if (f->starved && starved_budget == 0) {
                    r->dirty[keep++] = fd;  /* its turn comes in a later round */
                    deferred++;
                    continue;
                }
                if (rxu_arm(r, fd, kind) < 0) {
                    r->dirty[keep++] = fd;
                    continue;
                }
                if (f->starved)
                    starved_budget--;
            }
        }
        if (out)
            r->dirty[keep++] = fd;  /* reported again next round while it lasts */
        else
            f->dirty = 0;
    }
    r->ndirty = keep;
    int n_held = r->nev;
    /* Wait only if nothing is ready to report already, and not while
     * starved recvs wait for their turn: the socket behind one of them
     * already holds bytes, and its peer may send nothing more until it is
     * answered, so nothing would wake the wait (a burst on more connections
     * than there are buffers stalled this way: bench conns-10k, and
     * test_uring.py's burst test, which fails without this condition). */
    int wait = timeout != 0 && n_held == 0 && deferred == 0 && __atomic_load_n(r->cq_head, __ATOMIC_RELAXED) ==
                                                 __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int pending_work = (__atomic_load_n(r->sq_flags, __ATOMIC_RELAXED) & IORING_SQ_TASKRUN) != 0;
    if (r->to_submit || wait || pending_work) {
        struct __kernel_timespec ts;
        struct io_uring_getevents_arg arg;
        memset(&arg, 0, sizeof arg);
        unsigned flags = IORING_ENTER_GETEVENTS;
        void *argp = NULL;
        size_t argsz = 0;
        if (wait && timeout > 0) {
            ts.tv_sec = timeout / 1000;
            ts.tv_nsec = (long long)(timeout % 1000) * 1000000LL;
            arg.ts = (uint64_t)(uintptr_t)&ts;
            arg.sigmask_sz = _NSIG / 8;
            flags |= IORING_ENTER_EXT_ARG;
            argp = &arg;
            argsz = sizeof arg;
        }
        err = rxu_submit(r, wait ? 1 : 0, flags, argp, argsz);
        if (err < 0 && err != -ETIME && err != -EINTR && err != -EBUSY && err != -EAGAIN)
            return errno = -err, -1;
    }
    /* Reap. */
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    unsigned mask = *r->cq_mask;
    while (head != tail && r->nev < max) {
        struct io_uring_cqe *cqe = &r->cqes[head & mask];
        head++;
        uint64_t ud = cqe->user_data;
        int kind = (int)(ud & RXU_KIND_MASK);
        int fd = (int)((ud >> RXU_FD_SHIFT) & RXU_FD_MASK);
        int slot = (int)((ud >> RXU_SLOT_SHIFT) & RXU_SLOT_MASK);
        if (kind != RXU_CANCEL)
            r->inflight--;
        uint32_t gen = (uint32_t)(ud >> 32);
        int has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        int res = cqe->res;
        if (kind == RXU_CANCEL || fd >= r->nfds || r->fds[fd].gen != gen) {
            if (has_buf)
                rxu_recycle(r, bid);  /* a stale recv's bytes: its fd is closed */
            if (kind == RXU_SEND || kind == RXU_ACCEPT_K)
                rxu_unbury(r, ud);
            if (kind == RXU_ACCEPT_K && res >= 0)
                close(res);  /* accepted as its listener was deleted: nobody will take it */
            continue;
        }
        struct rxu_fd *f = &r->fds[fd];
        if (kind == RXU_ACCEPT_K) {
            struct rxu_acc *acc = f->aux->acc;  /* kept while the listener is registered */
            acc->armed &= ~(1u << slot);
            rxu_mark_dirty(r, fd);  /* re-armed next round (once taken) */
            if (res >= 0) {
                acc->fds[slot] = res;
                acc->done |= 1u << slot;
            } else if (res != -ECANCELED && res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
                acc->err = res;  /* EMFILE, ...: for the acceptor's own triage (shed, back off) */
            }
            if ((acc->done || acc->err) && f->ev == RXU_NO_EVENT && (f->want & RXU_READ))
                f->ev = rxu_emit(r, fds, masks, fd, EPOLLIN, 0, RXU_EV_NONE, 0);
            continue;
        }
        if (kind == RXU_SEND) {
            struct rxu_aux *a = f->aux;  /* kept while its send is armed */
            f->armed &= (uint8_t)~(1u << RXU_SEND);
            rxu_mark_dirty(r, fd);  /* the rest goes next round; or writable again */
            if (res > 0) {
                a->s_off += (uint32_t)res;  /* a partial send: the rest is re-armed */
                if (a->s_off >= a->s_len)
                    rxu_drop_sent(r, f);
            } else if (res < 0 && res != -EAGAIN && res != -EINTR) {
                /* The peer is gone (EPIPE, ECONNRESET, ...): the output can
                 * never arrive. The loop learns it as it would from write(2):
                 * the next rx_uring_send fails with it, and a read reports it
                 * (an end held after the bytes already received). */
                a->s_err = res;
                rxu_drop_sent(r, f);
                rxu_hold(r, f, res, NULL);
            }
            continue;
        }
        if (kind == RXU_RECV) {
            /* The recv has ended (single-shot): re-armed next round if still wanted. */
            f->armed &= (uint8_t)~(1u << kind);
            rxu_mark_dirty(r, fd);
            if (res == -ENOBUFS || res == -ECANCELED) {
                /* No buffer was free (or a cancel): re-armed in a
                 * later round, within that round's budget. */
                f->starved = 1;
                continue;
            }
            f->starved = 0;
            if (!(f->want & RXU_READ) || f->held || f->ev != RXU_NO_EVENT) {
                /* Read interest is off (a back-pressure pause: bytes stay
                 * out of the connection, as with epoll, where they would
                 * wait in the socket), or something of this fd is already
                 * waiting to be read: keep it back, in order. */
                rxu_hold(r, f, res, has_buf ? r->bufs + (size_t)bid * r->bufsize : NULL);
                if (has_buf)
                    rxu_recycle(r, bid);
                if (f->held && (f->want & RXU_READ))
                    rxu_mark_dirty(r, fd);  /* delivered next round */
                continue;
            }
            /* EPOLLIN whatever the result: rx_uring_read reports EOF and
             * errors as read(2) would, and the loop acts on them there. */
            f->ev = rxu_emit(r, fds, masks, fd, EPOLLIN, res, has_buf ? RXU_EV_BUF : RXU_EV_END, bid);
            continue;
        }
        f->armed &= (uint8_t)~(1u << kind);
        rxu_mark_dirty(r, fd);  /* a one-shot poll: re-armed next round if still wanted */
        if (kind == RXU_POLLIN) {
            if (f->want & RXU_READ)
                rxu_emit(r, fds, masks, fd, res < 0 ? EPOLLERR : (uint32_t)res, res, RXU_EV_NONE, 0);
        } else {
            if (f->want & RXU_WRITE)
                rxu_emit(r, fds, masks, fd, res < 0 ? EPOLLERR : (uint32_t)res, res, RXU_EV_NONE, 0);
        }
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return r->nev;
}

/* read(2)'s contract over the batch: the bytes of fd's recv completion, or
 * -1 with errno EAGAIN if there is none (the fd was reported for another
 * reason, or its bytes were read already). count must be at least the
 * buffer size the ring was opened with. */
ssize_t rx_uring_read(struct rx_uring *r, int fd, void *buf, size_t count)
{
    if (fd < 0 || fd >= r->nfds)
        return errno = EAGAIN, -1;
    struct rxu_fd *f = &r->fds[fd];
    if (f->ev == RXU_NO_EVENT) {
        if (!f->bulk)
            return errno = EAGAIN, -1;
        /* Bulk mode: what epoll's backend does, one recv(2) into buf. */
        ssize_t n = recv(fd, buf, count, MSG_DONTWAIT);
        if (n >= RXU_BULK_MIN)
            f->bulk = RXU_BULK_STICKY;
        else if (n >= 0 && --f->bulk == 0)
            (void)rxu_mark_dirty(r, fd);  /* the ring's recv is armed again from the next round */
        return n;
    }
    int i = f->ev - 1;
    f->ev = RXU_NO_EVENT;
    if (r->ev_gen[i] != f->gen || r->ev_fd[i] != fd) {
        return errno = EAGAIN, -1;
    }
    int kind = r->ev_kind[i];
    int32_t res = r->ev_res[i];
    r->ev_kind[i] = RXU_EV_NONE;
    if (kind == RXU_EV_HELD) {
        struct rxu_aux *a = f->aux;
        size_t avail = a ? a->held_len - a->held_off : 0;
        if (avail) {
            size_t n = avail < count ? avail : count;
            memcpy(buf, a->held_data + a->held_off, n);
            a->held_off += n;
            res = (int32_t)n;
            if (a->held_off == a->held_len && !f->held_end)
                rxu_drop_held(f);  /* all delivered: recv completions go straight to the loop again */
            else
                rxu_mark_dirty(r, fd);  /* more held: reported again next round */
        } else {
            res = !f->held_end ? -EAGAIN : a ? a->held_res : -ENOMEM;
            rxu_drop_held(f);
        }
    } else if (kind == RXU_EV_BUF) {
        if (res > 0)
            memcpy(buf, r->bufs + (size_t)r->ev_bid[i] * r->bufsize, (size_t)res < count ? (size_t)res : count);
        rxu_recycle(r, r->ev_bid[i]);
        if (res >= RXU_BULK_MIN)
            f->bulk = RXU_BULK_STICKY;  /* the next recv is a POLLIN poll and recv(2) (RXU_BULK_MIN) */
    }
    if (res < 0)
        return errno = -res, -1;
    return res;
}

/* writev(2)'s contract for a ring connection: take up to the iovecs' total
 * for the next round's IORING_OP_SEND and return how many bytes were taken;
 * -1 with EAGAIN while a send is in flight (the socket buffer was full: the
 * caller queues the rest and asks for write interest, as after a partial
 * write), or with the error a failed send met. The bytes are copied once,
 * from the caller's buffers into the connection's send buffer. An fd that
 * is not a ring connection gets a plain writev(2). */
ssize_t rx_uring_sendv(struct rx_uring *r, int fd, const struct iovec *iov, int iovcnt)
{
    struct rxu_fd *f = fd >= 0 && fd < r->nfds ? &r->fds[fd] : NULL;
    if (!f || !(f->want & RXU_STREAM))
        return writev(fd, iov, iovcnt);
    struct rxu_aux *a = f->aux;
    if (a && a->s_err)
        return errno = -a->s_err, -1;
    if (f->armed & (1u << RXU_SEND))
        return errno = EAGAIN, -1;  /* and its buffer must not move meanwhile */
    size_t count = 0;
    for (int i = 0; i < iovcnt; i++)
        count += iov[i].iov_len;
    size_t queued = a ? a->s_len - a->s_off : 0;
    size_t direct = 0;  /* sent at once: the first bytes of iov, skipped by the copy below */
    if (queued == 0 && count >= RXU_DIRECT_MIN) {
        ssize_t sent;
        if (iovcnt == 1) {
            sent = send(fd, iov[0].iov_base, count, MSG_DONTWAIT | MSG_NOSIGNAL);  /* no msghdr to copy in */
        } else {
            struct msghdr msg;
            memset(&msg, 0, sizeof msg);
            msg.msg_iov = (struct iovec *)iov;
            msg.msg_iovlen = (size_t)iovcnt;
            sent = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (sent == (ssize_t)count)
            return sent;
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (sent > 0)
            direct = (size_t)sent;
        count -= direct;  /* the rest waits for room in the ring's send */
    }
    size_t n = queued < r->send_cap ? r->send_cap - queued : 0;
    if (count < n)
        n = count;
    if (n == 0)
        return direct ? (ssize_t)direct : count ? (errno = EAGAIN, -1) : 0;
    if (!a && !(a = rxu_aux(f)))
        return direct ? (ssize_t)direct : (errno = ENOMEM, -1);
    if (!a->s_data && r->nspares && r->spare_caps[r->nspares - 1] >= n) {
        r->nspares--;
        a->s_data = r->spares[r->nspares];
        a->s_cap = r->spare_caps[r->nspares];
    }
    if (a->s_len + n > a->s_cap) {
        if (a->s_off) {
            memmove(a->s_data, a->s_data + a->s_off, a->s_len - a->s_off);
            a->s_len -= a->s_off;
            a->s_off = 0;
        }
        if (a->s_len + n > a->s_cap) {
            size_t cap = a->s_cap ? 2 * (size_t)a->s_cap : 512;
            while (cap < a->s_len + n)
                cap *= 2;
            char *d = realloc(a->s_data, cap);
            if (!d) {
                rxu_aux_trim(f);
                return direct ? (ssize_t)direct : (errno = ENOMEM, -1);
            }
            a->s_data = d;
            a->s_cap = (uint32_t)cap;
        }
    }
    size_t skip = direct, left = n;
    for (int i = 0; i < iovcnt && left; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        size_t take = len - skip < left ? len - skip : left;
        memcpy(a->s_data + a->s_len, (const char *)iov[i].iov_base + skip, take);
        a->s_len += (uint32_t)take;
        left -= take;
        skip = 0;
    }
    if (rxu_mark_dirty(r, fd) < 0)
        return errno = ENOMEM, -1;  /* nothing marks it sent: the caller fails the connection */
    return (ssize_t)(direct + n);
}

/* write(2)'s contract: rx_uring_sendv of one buffer. */
ssize_t rx_uring_send(struct rx_uring *r, int fd, const void *buf, size_t count)
{
    struct iovec v = {(void *)buf, count};
    return rx_uring_sendv(r, fd, &v, 1);
}

/* Output rx_uring_send took that the kernel has not confirmed sent yet: a
 * connection closing after a flush waits for it to be 0. */
size_t rx_uring_unsent(struct rx_uring *r, int fd)
{
    if (fd < 0 || fd >= r->nfds || !r->fds[fd].aux)
        return 0;
    return r->fds[fd].aux->s_len - r->fds[fd].aux->s_off;
}

/* accept4(2)'s contract for a ring listener: a connection one of its
 * accepts brought (made with SOCK_NONBLOCK | SOCK_CLOEXEC, whatever flags
 * say) and its peer's address; -1 with EAGAIN when none waits, or with the
 * error an accept met (reported once; the accepts are re-armed after). An
 * fd that is not a ring listener gets accept4(2) itself. */
int rx_uring_accept(struct rx_uring *r, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    struct rxu_fd *f = fd >= 0 && fd < r->nfds ? &r->fds[fd] : NULL;
    if (!f || !(f->want & RXU_ACCEPT))
        return accept4(fd, addr, addrlen, flags);
    struct rxu_acc *acc = f->aux->acc;
    if (acc->done) {
        int slot = __builtin_ctz(acc->done);
        acc->done &= ~(1u << slot);
        rxu_mark_dirty(r, fd);  /* its slot is re-armed next round */
        if (addr && addrlen) {
            socklen_t n = acc->lens[slot] < *addrlen ? acc->lens[slot] : *addrlen;
            memcpy(addr, &acc->addrs[slot], n);
            *addrlen = acc->lens[slot];
        }
        return acc->fds[slot];
    }
    if (acc->err) {
        int err = -acc->err;
        acc->err = 0;
        rxu_mark_dirty(r, fd);
        return errno = err, -1;
    }
    return errno = EAGAIN, -1;
}

void rx_uring_close(struct rx_uring *r)
{
    if (!r)
        return;
    if (r->fd >= 0 && r->sqes) {
        /* Cancel everything still in flight (a listener's poll, ...) and
         * wait for it, so that every socket's last reference is gone when
         * this returns: the ring's own teardown runs later, in a kernel
         * worker, and a listener kept open by it would refuse a new bind. */
        struct io_uring_sqe *sqe = rxu_sqe(r);
        if (sqe) {
            sqe->opcode = IORING_OP_ASYNC_CANCEL;
            sqe->fd = -1;
            sqe->cancel_flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
            sqe->user_data = rxu_ud(RXU_CANCEL, 0, 0);
            rxu_submit(r, 0, 0, NULL, 0);
        }
        /* ... and wait for every cancelled request's completion, not just the
         * cancel's own: each holds a reference to its socket until then (a
         * listener of a stopped server was still listening for a moment:
         * test_addresses, test_udp), and a send's buffer must outlive it.
         * Bounded: 20 waits of 50 ms. */
        for (int tries = 0; r->inflight > 0 && tries < 20; tries++) {
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000LL};
            struct io_uring_getevents_arg arg;
            memset(&arg, 0, sizeof arg);
            arg.ts = (uint64_t)(uintptr_t)&ts;
            arg.sigmask_sz = _NSIG / 8;
            rxu_submit(r, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
            unsigned head = *r->cq_head, tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
            for (; head != tail; head++) {
                struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
                int kind = (int)(cqe->user_data & RXU_KIND_MASK);
                if (kind == RXU_CANCEL)
                    continue;
                r->inflight--;
                if (kind == RXU_ACCEPT_K && cqe->res >= 0)
                    close(cqe->res);  /* accepted during the teardown: nobody will take it */
            }
            __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        }
    }
    /* Sends are cancelled now (or done): their buffers can go. */
    for (int i = 0; i < r->ngraves; i++)
        free(r->graves[i].data);
    free(r->graves);
    while (r->nspares)
        free(r->spares[--r->nspares]);
    if (r->fd >= 0)
        close(r->fd);
    if (r->sqes)
        munmap(r->sqes, r->sqes_sz);
    if (r->cq_ring)
        munmap(r->cq_ring, r->cq_ring_sz);
    if (r->sq_ring)
        munmap(r->sq_ring, r->sq_ring_sz);
    if (r->bufs)
        munmap(r->bufs, r->bufs_sz);
    if (r->br)
        munmap(r->br, r->br_sz);
    for (int i = 0; i < r->nfds; i++)
        rxu_free_aux(&r->fds[i]);
    if (r->fds)
        munmap(r->fds, (size_t)r->nfds * sizeof *r->fds);
    free(r->dirty);
    free(r->ev_fd);
    free(r->ev_res);
    free(r->ev_gen);
    free(r->ev_bid);
    free(r->ev_kind);
    free(r);
}
