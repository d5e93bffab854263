/*
 * epoll_server: a single-threaded, level-triggered epoll server in plain C.
 *
 * Part of reactor's benchmark suite (bench/); built by bench/build.py with
 *     gcc -O2 -Wall -o bench/.build/epoll_server bench/c/epoll_server.c
 *
 * It is the "physical limit" peer: what one core can do with the same
 * syscalls reactor makes (epoll_wait, accept4, read, write), without any
 * interpreter in the way.  Its CPU time per operation is close to the
 * kernel's own cost of a loopback round trip, so the ratio of a Python
 * peer's CPU/op to this one says how much is interpreter overhead.
 *
 *   epoll_server --port P [--host 127.0.0.1] --mode echo|http
 *
 * echo: every byte read is written back.  If the socket cannot take it all,
 *       the rest is kept and the connection stops being read until it has
 *       been flushed (back-pressure, like every other peer).
 * http: the same application logic as the Python peers, minus validation:
 *       every "\r\n\r\n" in the stream ends a request (requests in the
 *       benchmarks have no body), each is answered with the same 200
 *       response (Server, Date, Content-Length, body "Hello World!\r\n";
 *       the Date header is rebuilt once a second), all answers to the
 *       requests found in one read go out in one write, in order.
 *
 * SIGTERM/SIGINT: close everything and exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (64 * 1024) /* like reactor's default read_buffer_cap */
#define MAX_EVENTS 1024

typedef struct {
    char *in;          /* http: bytes of an incomplete request */
    size_t in_len, in_cap;
    char *out;         /* bytes the socket did not take yet */
    size_t out_len, out_off, out_cap;
    int open;
} conn_t;

static conn_t *conns;  /* indexed by fd, like gnet's connMatrix */
static size_t nconns;
static int epfd, http_mode;
static volatile sig_atomic_t stopping;
static char rbuf[READ_BUF];

static const char BODY[] = "Hello World!\r\n";
static char resp[256];
static size_t resp_len;
static time_t resp_second = -1;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* The response, rebuilt when the second changes (same bytes as reactor.examples.http). */
static void refresh_response(void) {
    time_t now = time(NULL);
    if (now == resp_second) return;
    resp_second = now;
    char date[64];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    resp_len = (size_t)snprintf(resp, sizeof resp,
                                "HTTP/1.1 200 OK\r\nServer: reactor\r\nDate: %s\r\nContent-Length: %zu\r\n\r\n%s",
                                date, sizeof BODY - 1, BODY);
}

static void *grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    p = realloc(p, c);
    if (!p) die("realloc");
    *cap = c;
    return p;
}

static void close_conn(int fd) {
    conn_t *c = &conns[fd];
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof *c);
}

static void set_events(int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0) die("epoll_ctl(MOD)");
}

/* Write `len` bytes; keep what the socket refuses and switch to EPOLLOUT. 0, or -1 if closed. */
static int send_or_queue(int fd, const char *buf, size_t len) {
    conn_t *c = &conns[fd];
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            close_conn(fd);
            return -1;
        }
        off += (size_t)w;
    }
    if (off < len) {
        c->out = grow(c->out, &c->out_cap, len - off);
        memcpy(c->out, buf + off, len - off);
        c->out_len = len - off;
        c->out_off = 0;
        set_events(fd, EPOLLOUT); /* back-pressure: stop reading until flushed */
    }
    return 0;
}

static void on_writable(int fd) {
    conn_t *c = &conns[fd];
    while (c->out_off < c->out_len) {
        ssize_t w = write(fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            close_conn(fd);
            return;
        }
        c->out_off += (size_t)w;
    }
    c->out_len = c->out_off = 0;
    set_events(fd, EPOLLIN);
}

static char *http_out;
static size_t http_out_cap;

static void on_readable(int fd) {
    conn_t *c = &conns[fd];
    ssize_t n = read(fd, rbuf, sizeof rbuf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_conn(fd);
        return;
    }
    if (n < 0) return;
    if (!http_mode) {
        send_or_queue(fd, rbuf, (size_t)n);
        return;
    }
    /* http: scan the buffered bytes plus this read for complete requests */
    const char *data = rbuf;
    size_t len = (size_t)n;
    if (c->in_len) {
        c->in = grow(c->in, &c->in_cap, c->in_len + len);
        memcpy(c->in + c->in_len, rbuf, len);
        c->in_len += len;
        data = c->in;
        len = c->in_len;
    }
    size_t pos = 0, count = 0;
    for (;;) {
        const char *end = memmem(data + pos, len - pos, "\r\n\r\n", 4);
        if (!end) break;
        count++;
        pos = (size_t)(end - data) + 4;
    }
    size_t rest = len - pos;
    if (rest) { /* keep the incomplete request (memmove: it may already live in c->in) */
        c->in = grow(c->in, &c->in_cap, rest);
        memmove(c->in, data + pos, rest);
    }
    c->in_len = rest;
    if (count) {
        refresh_response();
        http_out = grow(http_out, &http_out_cap, count * resp_len);
        for (size_t i = 0; i < count; i++) memcpy(http_out + i * resp_len, resp, resp_len);
        send_or_queue(fd, http_out, count * resp_len);
    }
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) perror("accept4");
            return;
        }
        if ((size_t)fd >= nconns) {
            size_t n = nconns;
            while ((size_t)fd >= n) n *= 2;
            conns = realloc(conns, n * sizeof *conns);
            if (!conns) die("realloc");
            memset(conns + nconns, 0, (n - nconns) * sizeof *conns);
            nconns = n;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[fd].open = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl(ADD)");
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode")) http_mode = !strcmp(argv[i + 1], "http");
        else {
            fprintf(stderr, "usage: epoll_server --port P [--host H] --mode echo|http\n");
            return 2;
        }
    }
    if (port <= 0) {
        fprintf(stderr, "usage: epoll_server --port P [--host H] --mode echo|http\n");
        return 2;
    }
    /* The 10k-connections workload needs more than the default 1024 fds. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536) {
        struct rlimit nl = {65536, rl.rlim_max > 65536 ? rl.rlim_max : 65536};
        if (setrlimit(RLIMIT_NOFILE, &nl) != 0) {
            nl.rlim_cur = nl.rlim_max = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &nl);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "bad --host %s\n", host);
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
    if (listen(lfd, 4096) != 0) die("listen"); /* the kernel caps it at somaxconn, like reactor */

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) != 0) die("epoll_ctl(ADD listener)");
    nconns = 1024;
    conns = calloc(nconns, sizeof *conns);
    if (!conns) die("calloc");

    struct epoll_event evs[MAX_EVENTS];
    while (!stopping) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            if ((size_t)fd >= nconns || !conns[fd].open) continue; /* closed earlier in this batch */
            if (evs[i].events & EPOLLOUT) on_writable(fd);
            else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(fd);
        }
    }
    for (size_t fd = 0; fd < nconns; fd++)
        if (conns[fd].open) close_conn((int)fd);
    close(lfd);
    close(epfd);
    return 0;
}
