/*
 * echo_load: a single-threaded epoll load generator for TCP echo servers.
 *
 * Part of reactor's benchmark suite (bench/); built by bench/build.py with
 *     gcc -O2 -Wall -o bench/.build/echo_load bench/c/echo_load.c
 *
 * Why C and not Python: the load generator must never be the reason a Python
 * server looks slow or fast.  A Python client would need about as much CPU
 * per message as the servers it measures.  One C thread on its own core
 * drives tens of thousands of round trips per second, and the suite reports
 * the *server's* CPU time per operation as well, which stays meaningful even
 * when this client is the bottleneck.
 *
 * Two modes:
 *
 *   pingpong (default)  N connections; each keeps DEPTH messages of SIZE
 *                       bytes in flight (DEPTH=1: strict ping-pong) for
 *                       DURATION seconds, then stops sending and drains what
 *                       is still in flight.  One "op" is one message echoed
 *                       back completely.
 *
 *   conns               The 10k-connections workload.  Opens N connections,
 *                       at most WINDOW still unanswered at a time, and sends
 *                       one SIZE-byte message on each as soon as it is
 *                       connected: the echo coming back proves the server has
 *                       accepted and registered the connection ("accept"
 *                       phase).  With all N open and idle it reads the
 *                       server's VmRSS, then sends one message on every
 *                       connection at once and waits for all the echoes
 *                       ("echo" phase), reads VmRSS again and closes them.
 *
 * Correctness: every byte sent on connection i at stream offset k is
 * pattern[(seed_i + k) % PLEN], a fixed pseudo-random table with a prime
 * period, and every byte received is checked against the same function.  A
 * byte lost, duplicated, reordered, or delivered to the wrong connection
 * shows up as a mismatch (reported with connection, offset, expected and
 * received bytes), as does a connection the server closes or resets, or an
 * echo that never comes back while draining.
 *
 * Output: one JSON object on stdout (see print_json()); diagnostics on stderr.
 * Exit status 0 if the run completed (even with verification errors, which
 * are in the JSON), 2 on bad usage or setup failure.
 *
 * TLS: built with -DECHO_TLS (and -lssl -lcrypto) this is tls_echo_load, the
 * load generator of the tls-echo-4k workload.  Every connection runs a TLS
 * handshake (OpenSSL, non-blocking, on the same epoll loop) before its first
 * message, and every byte then goes through SSL_write/SSL_read: the same C
 * client and the same crypto for every server, so the server's CPU per
 * operation compares the servers' TLS layers.  Certificates are not
 * verified (a benchmark, on loopback, against a throwaway certificate).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef ECHO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* Pattern period: a prime just above 1 MiB, so no message size or in-flight
 * window is a multiple of it and a shifted stream can never line up again. */
#define PLEN 1048583u
/* Longest contiguous slice taken from the table; the table is PLEN + CHUNK
 * long (wrapped copy at the end) so any slice starting below PLEN fits. */
#define CHUNK 65536u
#define READ_BUF (256 * 1024)
#define MAX_EVENTS 1024
#define MAX_DETAILS 10

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DEAD };

typedef struct {
    int fd;
    int state;
    uint32_t seed;     /* pattern offset of this connection's stream */
    uint64_t sent;     /* stream bytes written so far */
    uint64_t target;   /* stream bytes that should have been written (messages issued * size) */
    uint64_t recvd;    /* stream bytes received and verified */
    uint64_t issued;   /* messages issued */
    uint64_t done;     /* messages fully echoed */
    uint64_t *tsend;   /* issue time (ns) of messages in flight, ring of `depth` */
    uint64_t t_open;   /* conns mode: when connect() was called */
    int want_out;      /* EPOLLOUT currently in the interest set */
#ifdef ECHO_TLS
    SSL *ssl;
#endif
} conn_t;

/* Latency histogram with ~0.2 % resolution: values below 1024 ns get their
 * own bucket, larger ones keep their top 10 bits (log-linear, like HdrHistogram). */
#define HIST_BUCKETS (64 * 512 + 1024)
typedef struct {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, max, sum;
} hist_t;

static struct {
    const char *host;
    int port, conns, size, depth, window, rss_pid;
    double duration, timeout, drain;
    int conns_mode;
} opt = {"127.0.0.1", 0, 64, 64, 1, 64, 0, 5.0, 0.0, 2.0, 0};

static unsigned char *pattern;
static unsigned char rbuf[READ_BUF];
static conn_t *cs;
static int epfd;
static hist_t lat, lat_connect;
static uint64_t errors;
static char details[MAX_DETAILS][256];
static int ndetails;
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("echo_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* Count an error; keep the first MAX_DETAILS descriptions for the JSON. */
static void error_at(int idx, const char *fmt, ...) {
    errors++;
    if (ndetails >= MAX_DETAILS) return;
    int off = snprintf(details[ndetails], sizeof details[0], "conn %d: ", idx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details[ndetails] + off, sizeof details[0] - (size_t)off, fmt, ap);
    va_end(ap);
    fprintf(stderr, "echo_load: %s\n", details[ndetails]);
    ndetails++;
}

static void hist_add(hist_t *h, uint64_t v) {
    unsigned idx;
    if (v < 1024) {
        idx = (unsigned)v;
    } else {
        unsigned shift = 63u - (unsigned)__builtin_clzll(v) - 9u; /* keep 10 significant bits */
        idx = shift * 512u + (unsigned)(v >> shift);
        if (idx >= HIST_BUCKETS) idx = HIST_BUCKETS - 1;
    }
    h->count[idx]++;
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
}

/* The value at quantile q (0..1), in microseconds (bucket midpoint). */
static double hist_quantile_us(const hist_t *h, double q) {
    if (h->n == 0) return 0.0;
    uint64_t rank = (uint64_t)(q * (double)(h->n - 1)) + 1, seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            if (i < 1024) return i / 1000.0;
            unsigned shift = i / 512u - 1u, mant = i - shift * 512u;
            double lo = (double)((uint64_t)mant << shift);
            return (lo + (double)(1ull << shift) / 2.0) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

static void make_pattern(void) {
    pattern = malloc(PLEN + CHUNK);
    if (!pattern) die("out of memory");
    uint64_t x = 0x9E3779B97F4A7C15ull; /* xorshift64*: any fixed seed will do */
    for (uint32_t i = 0; i < PLEN; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        pattern[i] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
    memcpy(pattern + PLEN, pattern, CHUNK);
}

/* Root may raise the hard limit too; 10,000 sockets need more than the usual 1024. */
static void raise_nofile(rlim_t want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur >= want) return;
    struct rlimit nl = {want, rl.rlim_max > want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &nl) != 0) {
        nl.rlim_cur = rl.rlim_max; /* not root: as far as the hard limit allows */
        nl.rlim_max = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nl);
    }
}

/* VmRSS of a process in KiB, from /proc/PID/status; -1 if unreadable. */
static long read_rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void set_interest(conn_t *c, int idx, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl(MOD): %s", strerror(errno));
    c->want_out = out;
}

/* conns mode bookkeeping: connections whose first echo came back, and dead ones. */
static int n_established, n_dead;

#ifdef ECHO_TLS
static SSL_CTX *tls_ctx;

/* OpenSSL's error queue as one line, for error_at(). */
static const char *tls_error(void) {
    static char buf[256];
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e) return strerror(errno);
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}
#endif

/* write(2), or SSL_write in TLS mode: bytes taken, or -1 with errno EAGAIN (retry when writable) or another. */
static ssize_t io_write(conn_t *c, const void *buf, size_t n) {
#ifdef ECHO_TLS
    int w = SSL_write(c->ssl, buf, (int)n);
    if (w > 0) return w;
    int e = SSL_get_error(c->ssl, w);
    errno = (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) ? EAGAIN : EPROTO;
    return -1;
#else
    return write(c->fd, buf, n);
#endif
}

/* read(2), or SSL_read in TLS mode: bytes, 0 at EOF (close_notify or TCP FIN), or -1 with errno. */
static ssize_t io_read(conn_t *c, void *buf, size_t n) {
#ifdef ECHO_TLS
    int r = SSL_read(c->ssl, buf, (int)n);
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : EPROTO;
    return -1;
#else
    return read(c->fd, buf, n);
#endif
}

static void kill_conn(conn_t *c) {
    if (c->state == ST_DEAD) return;
#ifdef ECHO_TLS
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
#endif
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (c->done >= 1) n_established--; /* it leaves the established set */
    n_dead++;
    c->state = ST_DEAD;
}

static int start_connect(conn_t *c, int idx, const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_at(idx, "socket(): %s", strerror(errno));
        kill_conn(c);
        return -1;
    }
    int one = 1;
    /* Nagle would hold back small messages waiting for ACKs; every peer sets it too. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->t_open = now_ns();
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) != 0 && errno != EINPROGRESS) {
        error_at(idx, "connect(): %s", strerror(errno));
        kill_conn(c);
        return -1;
    }
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl(ADD): %s", strerror(errno));
    c->want_out = 1;
    return 0;
}

/* Write stream bytes [sent, target) from the pattern; keep EPOLLOUT only while some remain. */
static void flush_out(conn_t *c, int idx) {
    while (c->sent < c->target) {
        uint64_t left = c->target - c->sent;
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t w = io_write(c, pattern + (c->seed + c->sent) % PLEN, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
#ifdef ECHO_TLS
            error_at(idx, "SSL_write() at stream offset %llu: %s", (unsigned long long)c->sent, tls_error());
#else
            error_at(idx, "write() at stream offset %llu: %s", (unsigned long long)c->sent, strerror(errno));
#endif
            kill_conn(c);
            return;
        }
        c->sent += (uint64_t)w;
    }
    int out = c->sent < c->target;
    if (out != c->want_out) set_interest(c, idx, out);
}

static void issue(conn_t *c, uint64_t t) {
    c->tsend[c->issued % (uint64_t)opt.depth] = t;
    c->issued++;
    c->target += (uint64_t)opt.size;
}

/* Compare received bytes with the pattern; on a mismatch describe it and kill the connection. */
static int verify(conn_t *c, int idx, const unsigned char *buf, size_t n) {
    if (c->recvd + n > c->sent) {
        error_at(idx, "received %zu bytes at stream offset %llu but only %llu were sent", n,
                 (unsigned long long)c->recvd, (unsigned long long)c->sent);
        kill_conn(c);
        return -1;
    }
    size_t off = 0;
    while (off < n) {
        size_t len = n - off < CHUNK ? n - off : CHUNK;
        const unsigned char *want = pattern + (c->seed + c->recvd + off) % PLEN;
        if (memcmp(buf + off, want, len) != 0) {
            size_t i = 0;
            while (buf[off + i] == want[i]) i++;
            char got[3 * 16 + 1] = "", exp[3 * 16 + 1] = "";
            for (size_t j = 0; j < 16 && off + i + j < n; j++) {
                sprintf(got + 3 * j, "%02x ", buf[off + i + j]);
                sprintf(exp + 3 * j, "%02x ", want[i + j]);
            }
            error_at(idx, "byte mismatch at stream offset %llu (message %llu, byte %llu): got [%s] expected [%s]",
                     (unsigned long long)(c->recvd + off + i),
                     (unsigned long long)((c->recvd + off + i) / (uint64_t)opt.size),
                     (unsigned long long)((c->recvd + off + i) % (uint64_t)opt.size), got, exp);
            kill_conn(c);
            return -1;
        }
        off += len;
    }
    return 0;
}

/*
 * Handle one epoll event.  `sending` says whether a completed message may be
 * followed by a new one (pingpong mode, before the deadline).  Returns the
 * number of messages completed.
 */
static uint64_t ops_window, ops_total, bytes_window;
static int window_open;

/* The connection is open (TCP, and TLS if built with it): what happens next depends on the mode. */
static void opened(conn_t *c, int idx) {
    c->state = ST_OPEN;
    if (opt.conns_mode) {
        /* Proof of accept: one message, echoed. */
        issue(c, c->t_open);
        flush_out(c, idx);
    } else {
        set_interest(c, idx, 0); /* pingpong messages start together once every connection is open */
    }
}

#ifdef ECHO_TLS
/* Drive the client handshake; the interest follows what OpenSSL waits for. */
static void handshake(conn_t *c, int idx) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        opened(c, idx);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        if (c->want_out) set_interest(c, idx, 0);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        if (!c->want_out) set_interest(c, idx, 1);
    } else {
        error_at(idx, "TLS handshake: %s", tls_error());
        kill_conn(c);
    }
}
#endif

static void on_event(int idx, uint32_t events, int sending, hist_t *h) {
    conn_t *c = &cs[idx];
    if (c->state == ST_DEAD) return;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            error_at(idx, "connect: %s", strerror(err));
            kill_conn(c);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
#ifdef ECHO_TLS
        c->ssl = SSL_new(tls_ctx);
        if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) die("SSL_new: %s", tls_error());
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        SSL_set_connect_state(c->ssl);
        c->state = ST_HANDSHAKE;
        handshake(c, idx);
#else
        opened(c, idx);
#endif
        return;
    }
#ifdef ECHO_TLS
    if (c->state == ST_HANDSHAKE) {
        handshake(c, idx);
        return;
    }
#endif
    /* TLS: SSL_read takes one record at a time, and a record already in
     * OpenSSL's buffer is no longer "readable" for epoll: read until EAGAIN. */
    for (int more = events & EPOLLIN || events & (EPOLLERR | EPOLLHUP); more;) {
        ssize_t n = io_read(c, rbuf, sizeof rbuf);
        if (n == 0) {
            error_at(idx, "server closed the connection after %llu of %llu bytes echoed",
                     (unsigned long long)c->recvd, (unsigned long long)c->sent);
            kill_conn(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
#ifdef ECHO_TLS
            error_at(idx, "SSL_read() at stream offset %llu: %s", (unsigned long long)c->recvd, tls_error());
#else
            error_at(idx, "read() at stream offset %llu: %s", (unsigned long long)c->recvd, strerror(errno));
#endif
            kill_conn(c);
            return;
        }
        if (verify(c, idx, rbuf, (size_t)n) != 0) return;
        c->recvd += (uint64_t)n;
        uint64_t t = 0;
        while (c->recvd >= (c->done + 1) * (uint64_t)opt.size) {
            if (t == 0) t = now_ns();
            uint64_t d = c->done % (uint64_t)opt.depth;
            if (h) hist_add(h, t - c->tsend[d]);
            c->done++;
            ops_total++;
            if (c->done == 1) n_established++;
            if (window_open) {
                ops_window++;
                bytes_window += (uint64_t)opt.size;
            }
            if (sending) issue(c, t);
        }
#ifdef ECHO_TLS
        more = 1;
#else
        more = 0; /* plain TCP: one read per event, as before (level-triggered: epoll reports the rest) */
#endif
    }
    if (c->state == ST_OPEN && (c->sent < c->target || (events & EPOLLOUT))) flush_out(c, idx);
}

/* One epoll_wait round, at most `timeout_ms`. */
static void poll_once(int timeout_ms, int sending, hist_t *h) {
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) on_event((int)evs[i].data.u32, evs[i].events, sending, h);
}

static int ms_until(uint64_t deadline) {
    uint64_t t = now_ns();
    if (t >= deadline) return 0;
    uint64_t ms = (deadline - t + 999999) / 1000000;
    return ms > 1000 ? 1000 : (int)ms;
}

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

static void json_details(void) {
    printf("\"error_details\": [");
    for (int i = 0; i < ndetails; i++) {
        printf("%s\"", i ? ", " : "");
        for (const char *p = details[i]; *p; p++) {
            if (*p == '"' || *p == '\\') putchar('\\');
            putchar(*p);
        }
        putchar('"');
    }
    printf("]");
}

static void usage(void) {
    fprintf(stderr,
            "usage: echo_load --port P [--host 127.0.0.1] [--conns N] [--size S] [--depth D]\n"
            "                 [--duration SEC] [--drain SEC] [--timeout SEC]\n"
            "                 [--mode pingpong|conns] [--window W] [--rss-pid PID]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(a, "--size")) opt.size = atoi(v);
        else if (!strcmp(a, "--depth")) opt.depth = atoi(v);
        else if (!strcmp(a, "--window")) opt.window = atoi(v);
        else if (!strcmp(a, "--rss-pid")) opt.rss_pid = atoi(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--drain")) opt.drain = atof(v);
        else if (!strcmp(a, "--timeout")) opt.timeout = atof(v);
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "conns")) opt.conns_mode = 1;
            else if (strcmp(v, "pingpong")) usage();
        } else usage();
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.size <= 0 || opt.depth <= 0 || opt.window <= 0 ||
        opt.duration <= 0)
        usage();
    if ((uint64_t)opt.size > CHUNK * 16ull) die("--size is limited to %u bytes", CHUNK * 16);
    if (opt.timeout <= 0) opt.timeout = opt.duration + opt.drain + 60.0;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    raise_nofile((rlim_t)opt.conns + 64);
    signal(SIGPIPE, SIG_IGN); /* a reset connection must be an error in the JSON, not a silent death */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    make_pattern();
#ifdef ECHO_TLS
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx) die("SSL_CTX_new: %s", tls_error());
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    /* Partial writes make SSL_write behave like write(2) on a non-blocking socket;
     * a retry after WANT_WRITE may then pass a moved (but identical) buffer. */
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#endif

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) die("bad --host %s", opt.host);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));
    cs = calloc((size_t)opt.conns, sizeof *cs);
    uint64_t *ts = calloc((size_t)opt.conns * (size_t)opt.depth, sizeof *ts);
    if (!cs || !ts) die("out of memory");
    for (int i = 0; i < opt.conns; i++) {
        cs[i].fd = -1;
        cs[i].seed = (uint32_t)(((uint64_t)i * 7919u + 17u) % PLEN); /* distinct per connection */
        cs[i].tsend = ts + (size_t)i * (size_t)opt.depth;
    }

    const uint64_t t_begin = now_ns();
    const uint64_t t_give_up = t_begin + (uint64_t)(opt.timeout * 1e9);
    int timed_out = 0;
#define ALIVE_OR_BREAK                                                  \
    if (interrupted || now_ns() > t_give_up) {                          \
        timed_out = 1;                                                  \
        break;                                                          \
    }

    if (!opt.conns_mode) {
        /* ---- pingpong: connect everything first, then start all senders together ---- */
        for (int i = 0; i < opt.conns; i++) start_connect(&cs[i], i, &addr);
        for (;;) {
            int pending = 0;
            for (int i = 0; i < opt.conns; i++) pending += cs[i].state == ST_CONNECTING || cs[i].state == ST_HANDSHAKE;
            if (!pending) break;
            ALIVE_OR_BREAK
            poll_once(100, 0, NULL);
        }
        const uint64_t t_start = now_ns();
        const uint64_t t_end = t_start + (uint64_t)(opt.duration * 1e9);
        window_open = 1;
        for (int i = 0; i < opt.conns; i++) {
            if (cs[i].state != ST_OPEN) continue;
            for (int d = 0; d < opt.depth; d++) issue(&cs[i], t_start);
            flush_out(&cs[i], i);
        }
        while (!timed_out) {
            uint64_t t = now_ns();
            if (t >= t_end) break;
            ALIVE_OR_BREAK
            poll_once(ms_until(t_end), 1, &lat);
        }
        const uint64_t t_stop = now_ns();
        window_open = 0;
        /* ---- drain: everything sent must come back, byte for byte ---- */
        const uint64_t t_drain = t_stop + (uint64_t)(opt.drain * 1e9);
        for (;;) {
            int waiting = 0;
            for (int i = 0; i < opt.conns; i++) waiting += cs[i].state == ST_OPEN && cs[i].done < cs[i].issued;
            if (!waiting || now_ns() >= t_drain || interrupted) break;
            poll_once(ms_until(t_drain), 0, NULL);
        }
        for (int i = 0; i < opt.conns; i++) {
            if (cs[i].state == ST_OPEN && cs[i].done < cs[i].issued)
                error_at(i, "%llu of %llu bytes sent never came back (drain timeout %.1f s)",
                         (unsigned long long)(cs[i].sent - cs[i].recvd), (unsigned long long)cs[i].sent,
                         opt.drain);
        }
        int open = 0;
        for (int i = 0; i < opt.conns; i++) open += cs[i].state == ST_OPEN;
        double secs = (double)(t_stop - t_start) / 1e9;
        printf("{\"mode\": \"pingpong\", \"conns\": %d, \"conns_open\": %d, \"size\": %d, \"depth\": %d, "
               "\"duration_s\": %.6f, \"ops\": %llu, \"ops_total\": %llu, \"bytes\": %llu, "
               "\"ops_per_s\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f, "
               "\"mean_us\": %.2f, \"errors\": %llu, \"timed_out\": %s, ",
               opt.conns, open, opt.size, opt.depth, secs, (unsigned long long)ops_window,
               (unsigned long long)ops_total, (unsigned long long)bytes_window, (double)ops_window / secs,
               hist_quantile_us(&lat, 0.50), hist_quantile_us(&lat, 0.99), (double)lat.max / 1000.0,
               lat.n ? (double)lat.sum / (double)lat.n / 1000.0 : 0.0, (unsigned long long)errors,
               timed_out ? "true" : "false");
    } else {
        /* ---- conns: accept phase, windowed so no listen backlog ever overflows ---- */
        long rss_before = opt.rss_pid ? read_rss_kb(opt.rss_pid) : -1;
        const uint64_t t0 = now_ns();
        int next = 0;
        /* A connection leaves the window once its first echo is back (or it died). */
        while (n_established + n_dead < opt.conns) {
            ALIVE_OR_BREAK
            while (next < opt.conns && next - n_established - n_dead < opt.window) {
                start_connect(&cs[next], next, &addr);
                next++;
            }
            poll_once(100, 0, &lat_connect);
        }
        const uint64_t t1 = now_ns();
        long rss_idle = opt.rss_pid ? read_rss_kb(opt.rss_pid) : -1;
        /* ---- echo phase: one message on every connection at once ---- */
        int expected = 0;
        if (!timed_out) {
            for (int i = 0; i < opt.conns; i++) {
                if (cs[i].state != ST_OPEN) continue;
                issue(&cs[i], t1);
                flush_out(&cs[i], i);
                expected++;
            }
        }
        int answered = 0;
        while (!timed_out) {
            answered = 0;
            int alive = 0;
            for (int i = 0; i < opt.conns; i++) {
                if (cs[i].state != ST_OPEN) continue;
                alive++;
                answered += cs[i].done >= 2;
            }
            if (answered == alive) break;
            ALIVE_OR_BREAK
            poll_once(100, 0, &lat);
        }
        const uint64_t t2 = now_ns();
        long rss_after = opt.rss_pid ? read_rss_kb(opt.rss_pid) : -1;
        int open = 0;
        for (int i = 0; i < opt.conns; i++) {
            open += cs[i].state == ST_OPEN;
            if (cs[i].fd >= 0) close(cs[i].fd);
        }
        double accept_s = (double)(t1 - t0) / 1e9, echo_s = (double)(t2 - t1) / 1e9;
        printf("{\"mode\": \"conns\", \"conns\": %d, \"conns_open\": %d, \"size\": %d, \"window\": %d, "
               "\"accept_s\": %.6f, \"echo_s\": %.6f, \"duration_s\": %.6f, \"ops\": %d, \"ops_total\": %llu, "
               "\"ops_per_s\": %.1f, \"rss_before_kb\": %ld, \"rss_idle_kb\": %ld, \"rss_after_kb\": %ld, "
               "\"connect_p50_us\": %.2f, \"connect_p99_us\": %.2f, "
               "\"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f, \"errors\": %llu, \"timed_out\": %s, ",
               opt.conns, open, opt.size, opt.window, accept_s, echo_s, accept_s + echo_s, expected,
               (unsigned long long)ops_total, echo_s > 0 ? expected / echo_s : 0.0, rss_before, rss_idle,
               rss_after, hist_quantile_us(&lat_connect, 0.50), hist_quantile_us(&lat_connect, 0.99),
               hist_quantile_us(&lat, 0.50), hist_quantile_us(&lat, 0.99), (double)lat.max / 1000.0,
               (unsigned long long)errors, timed_out ? "true" : "false");
    }
    json_details();
    printf("}\n");
    fflush(stdout);
    return 0;
}
