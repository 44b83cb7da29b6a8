/* The machine's own latency baselines, measured next to a benchmark's results.
 *
 * On a small virtual machine, waking an idle vCPU costs tens of microseconds and that cost moves
 * through the day, so a latency measured in the morning and one in the afternoon can differ for
 * reasons that are not in our code. This measures the two costs every replicated write pays,
 * with nothing of ours in the way:
 *   - a loopback TCP round trip of 1 byte (TCP_NODELAY): what one coordinator -> replica ->
 *     coordinator hop costs at the least. The client and the echo server are pinned to two
 *     different CPUs (the placement where a message may have to wake an idle vCPU), in three
 *     variants: both block in recv (each message wakes a sleeping process), the echo server
 *     busy-polls (only the client is woken), both busy-poll (no one is woken: what is left is
 *     the TCP stack). A fourth pins both to one CPU, both blocking: a wake-up without an idle
 *     vCPU to rouse. Unpinned, the scheduler picks either placement, and the round trip jumps
 *     between the two (seen here: 6 us or 85 us p50 from one run to the next);
 *   - pwrite of 150 bytes + fdatasync into a preallocated, zero-filled, fsynced 4 MiB file
 *     (a log append that changes no metadata), by 1 writer, and by 3 writers on their own files
 *     started together by a barrier each round (three replicas sharing one disk: a majority of
 *     3 waits for the second to finish).
 *
 *   machine RTT_N FSYNC_N LIMIT_S DIR
 *
 * Each round-trip variant takes RTT_N samples and each fsync case FSYNC_N, after a warm-up of a
 * tenth as many (at most a tenth of LIMIT_S) that is not counted; a case stops early after
 * LIMIT_S seconds (its NAME_n says how many samples it got), so every loop is bounded in count
 * and in time. DIR receives the fsync files, removed before exit, also on an error, SIGINT,
 * SIGTERM or SIGHUP. The echo server is a forked child, killed and reaped by pid when its case
 * ends or the parent exits; the kernel SIGKILLs it if the parent dies any other way
 * (PR_SET_PDEATHSIG), and it exits by itself LIMIT_S + 1 s after its case began.
 *
 * stdout: cpus=N (CPUs this process may run on) and pinned=0|1 (0: fewer than two, the
 * round trips ran unpinned), then key=value lines NAME_n, NAME_p50_us, NAME_p99_us for NAME in
 * rtt_blocking, rtt_server_polls, rtt_both_poll, rtt_same_cpu, fsync_1, fsync_3_first,
 * fsync_3_second, fsync_3_third.
 * The fsync times include the pwrite (about a microsecond). Exit status 0, or 1 with a message
 * on stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE (4u << 20)
#define RECORD 150
#define WRITERS 3
#define GRACE_NS 1000000000ull /* the echo server outlives its case's deadline by this much */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- What must not outlive this process ------------------------------------------------------ */

/* Written before the resource exists and read by the signal handler, so a signal at any point
 * leaves nothing behind (unlinking a file not yet created is harmless). */
static volatile sig_atomic_t child_pid; /* the echo server, 0 when none */
static char files[WRITERS + 1][PATH_MAX];
static volatile sig_atomic_t nfiles;
static int in_child; /* the echo server owns none of the above, and leaves stdio alone */

/* Only async-signal-safe calls: the signal handler runs it too. */
static void cleanup(void) {
    pid_t pid = child_pid;
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        child_pid = 0;
    }
    for (int i = 0; i < nfiles; i++) unlink(files[i]);
    nfiles = 0;
}

static void on_signal(int sig) {
    cleanup();
    _exit(128 + sig);
}

static void die_msg(const char *what, const char *why) {
    if (in_child) _exit(1);
    cleanup();
    fprintf(stderr, "machine: %s: %s\n", what, why);
    exit(1);
}

static void die(const char *what) { die_msg(what, strerror(errno)); }

/* ---- Warm-up and time limit ------------------------------------------------------------------ */

/* A case's clock: it warms up for its first n / 10 iterations, but no longer than a tenth of its
 * time limit, and stops at the limit. */
typedef struct {
    uint64_t warm_until, deadline;
} Clock;

static Clock start_clock(uint64_t limit_ns) {
    uint64_t t = now_ns();
    return (Clock){.warm_until = t + limit_ns / 10, .deadline = t + limit_ns};
}

/* Iteration i, begun at time t, is a warm-up one (not counted). */
static int warming(const Clock *c, size_t i, size_t n, uint64_t t) {
    return i < n / 10 && t <= c->warm_until;
}

/* ---- Percentiles ----------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The same quantile as bench/loadgen.py's percentiles(): sorted[min(n - 1, q * n)]. */
static double quantile_us(const uint64_t *sorted, size_t n, double q) {
    size_t i = (size_t)(q * (double)n);
    return (double)sorted[i < n ? i : n - 1] / 1000.0;
}

static void report(const char *name, uint64_t *ns, size_t n) {
    if (n == 0) die_msg(name, "no sample within the time limit");
    qsort(ns, n, sizeof *ns, cmp_u64);
    printf("%s_n=%zu\n%s_p50_us=%.1f\n%s_p99_us=%.1f\n", name, n, name, quantile_us(ns, n, 0.50),
           name, quantile_us(ns, n, 0.99));
    fflush(stdout);
}

/* ---- Loopback TCP round trip ----------------------------------------------------------------- */

static void set_nodelay(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) die("TCP_NODELAY");
}

/* A blocking recv gives up (EAGAIN) after this long, so neither side can wait forever. */
static void set_recv_timeout(int fd, uint64_t ns) {
    if (ns < 1000000) ns = 1000000; /* 0 would mean no timeout */
    struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000ull),
                         .tv_usec = (suseconds_t)(ns % 1000000000ull / 1000)};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) die("SO_RCVTIMEO");
}

/* 1 byte or die; a busy-polling receiver spins on MSG_DONTWAIT until `deadline`. */
static void recv_byte(int fd, int poll, uint64_t deadline, const char *what) {
    char c;
    for (uint64_t spins = 1;; spins++) {
        ssize_t r = recv(fd, &c, 1, poll ? MSG_DONTWAIT : 0);
        if (r == 1) return;
        if (r == 0) {
            errno = ECONNRESET;
            die(what);
        }
        if (errno == EINTR) continue;
        if (!poll || errno != EAGAIN) die(what);
        /* A clock read costs ~20 ns; every 256 spins keeps the poll tight. */
        if (spins % 256 == 0 && now_ns() > deadline) {
            errno = ETIMEDOUT;
            die(what);
        }
    }
}

/* The CPUs this process may run on, as found at start, and the two the round trips use. */
static cpu_set_t allowed;
static int cpu_a = -1, cpu_b = -1;

/* Pin the calling process to `cpu` (-1: to every allowed CPU, as at start). */
static void pin(int cpu) {
    cpu_set_t set;
    if (cpu < 0) {
        set = allowed;
    } else {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
    }
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

/* The child: echoes each byte until EOF. Never returns. */
static void echo_server(int listener, pid_t parent, int cpu, int poll, uint64_t deadline) {
    /* Leave the parent's files and child to the parent; die with it. */
    in_child = 1;
    child_pid = 0;
    nfiles = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
    pin(cpu);
    int fd = accept(listener, NULL, NULL); /* the parent connected before the fork */
    if (fd < 0) _exit(1);
    close(listener);
    set_nodelay(fd);
    uint64_t now = now_ns();
    set_recv_timeout(fd, deadline > now ? deadline - now : 0);
    char c;
    for (uint64_t spins = 1;; spins++) {
        ssize_t r = recv(fd, &c, 1, poll ? MSG_DONTWAIT : 0);
        if (r == 1) {
            if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) _exit(1);
            continue;
        }
        if (r == 0) _exit(0);
        if (errno == EINTR) continue;
        if (!poll || errno != EAGAIN) _exit(1); /* includes the blocking recv's timeout */
        if (spins % 256 == 0 && now_ns() > deadline) _exit(1);
    }
}

static void measure_rtt(const char *name, int client_cpu, int server_cpu, int server_polls,
                        int client_polls, size_t n, uint64_t limit_ns) {
    Clock clock = start_clock(limit_ns);
    uint64_t deadline = clock.deadline;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 1) != 0 || getsockname(listener, (struct sockaddr *)&addr, &len) != 0)
        die("listen on 127.0.0.1");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("connect to 127.0.0.1");
    set_nodelay(fd);
    set_recv_timeout(fd, limit_ns + GRACE_NS);

    pid_t parent = getpid();
    fflush(stdout); /* nothing buffered for the child to inherit */
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(fd);
        echo_server(listener, parent, server_cpu, server_polls, deadline + GRACE_NS);
    }
    child_pid = pid;
    close(listener);
    pin(client_cpu);

    uint64_t *ns = malloc(n * sizeof *ns);
    if (!ns) die("malloc");
    size_t got = 0;
    for (size_t i = 0; got < n; i++) {
        uint64_t t0 = now_ns();
        if (t0 > deadline) break;
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1) die(name);
        recv_byte(fd, client_polls, deadline + GRACE_NS, name);
        if (!warming(&clock, i, n, t0)) ns[got++] = now_ns() - t0;
    }
    close(fd);
    cleanup(); /* kills and reaps the echo server */
    pin(-1);
    report(name, ns, got);
    free(ns);
}

/* ---- fdatasync ------------------------------------------------------------------------------- */

typedef struct {
    int fd;
    off_t off;    /* where the next record goes: appends, as a log's, wrapping at FILE_SIZE */
    uint64_t lat; /* this round's pwrite + fdatasync, ns */
} Writer;

static char record[RECORD];

/* A file of FILE_SIZE zero bytes, written and fsynced, so a later append changes data only:
 * what a log segment made ahead of time looks like. */
static void open_preallocated(Writer *w, const char *dir, int i) {
    static char zeros[1 << 16];
    int k = snprintf(files[i], sizeof files[i], "%s/machine-fsync-%d-%d", dir, (int)getpid(), i);
    if (k < 0 || (size_t)k >= sizeof files[i]) {
        errno = ENAMETOOLONG;
        die(dir);
    }
    if (nfiles < i + 1) nfiles = i + 1;
    w->fd = open(files[i], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) die(files[i]);
    for (off_t off = 0; off < FILE_SIZE; off += sizeof zeros)
        if (pwrite(w->fd, zeros, sizeof zeros, off) != (ssize_t)sizeof zeros) die(files[i]);
    if (fsync(w->fd) != 0) die(files[i]);
    w->off = 0;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) die(dir);
    close(fd);
}

static void close_files(Writer *w, int count) {
    for (int i = 0; i < count; i++) close(w[i].fd);
    cleanup(); /* unlinks them */
}

static uint64_t append_sync(Writer *w) {
    uint64_t t0 = now_ns();
    if (pwrite(w->fd, record, RECORD, w->off) != RECORD) die("pwrite");
    if (fdatasync(w->fd) != 0) die("fdatasync");
    w->off += RECORD;
    if (w->off + RECORD > FILE_SIZE) w->off = 0;
    return now_ns() - t0;
}

static void measure_fsync_1(const char *dir, size_t n, uint64_t limit_ns) {
    Writer w;
    open_preallocated(&w, dir, 0);
    sync_dir(dir);
    uint64_t *ns = malloc(n * sizeof *ns);
    if (!ns) die("malloc");
    Clock clock = start_clock(limit_ns);
    size_t got = 0;
    for (size_t i = 0; got < n; i++) {
        uint64_t t0 = now_ns();
        if (t0 > clock.deadline) break;
        uint64_t lat = append_sync(&w);
        if (!warming(&clock, i, n, t0)) ns[got++] = lat;
    }
    close_files(&w, 1);
    report("fsync_1", ns, got);
    free(ns);
}

/* Each round: the main thread and the writers meet at start_line; the writers each append and
 * sync, and all meet again at finish_line, where the main thread reads the three latencies. The
 * main thread decides `stop` before start_line; the barrier orders that write before the
 * writers' reads. */
static pthread_barrier_t start_line, finish_line;
static int stop;

static void *writer_main(void *arg) {
    Writer *w = arg;
    for (;;) {
        pthread_barrier_wait(&start_line);
        if (stop) return NULL;
        w->lat = append_sync(w);
        pthread_barrier_wait(&finish_line);
    }
}

static void measure_fsync_3(const char *dir, size_t n, uint64_t limit_ns) {
    Writer w[WRITERS];
    for (int i = 0; i < WRITERS; i++) open_preallocated(&w[i], dir, i);
    sync_dir(dir);
    uint64_t *ns[WRITERS];
    for (int k = 0; k < WRITERS; k++)
        if (!(ns[k] = malloc(n * sizeof *ns[k]))) die("malloc");
    if (pthread_barrier_init(&start_line, NULL, WRITERS + 1) != 0 ||
        pthread_barrier_init(&finish_line, NULL, WRITERS + 1) != 0)
        die("pthread_barrier_init");
    stop = 0;
    pthread_t threads[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        if ((errno = pthread_create(&threads[i], NULL, writer_main, &w[i])) != 0)
            die("pthread_create"); /* exits with the others blocked at start_line */

    Clock clock = start_clock(limit_ns);
    size_t got = 0;
    for (size_t i = 0;; i++) {
        uint64_t t0 = now_ns();
        stop = got >= n || t0 > clock.deadline;
        pthread_barrier_wait(&start_line);
        if (stop) break;
        pthread_barrier_wait(&finish_line);
        if (warming(&clock, i, n, t0)) continue;
        uint64_t lat[WRITERS];
        for (int k = 0; k < WRITERS; k++) lat[k] = w[k].lat;
        qsort(lat, WRITERS, sizeof lat[0], cmp_u64); /* k-th to finish */
        for (int k = 0; k < WRITERS; k++) ns[k][got] = lat[k];
        got++;
    }
    for (int i = 0; i < WRITERS; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start_line);
    pthread_barrier_destroy(&finish_line);
    close_files(w, WRITERS);
    static const char *names[WRITERS] = {"fsync_3_first", "fsync_3_second", "fsync_3_third"};
    for (int k = 0; k < WRITERS; k++) {
        report(names[k], ns[k], got);
        free(ns[k]);
    }
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: machine RTT_N FSYNC_N LIMIT_S DIR\n");
        return 2;
    }
    char *end1, *end2, *end3;
    long rtt_n = strtol(argv[1], &end1, 10), fsync_n = strtol(argv[2], &end2, 10);
    double limit_s = strtod(argv[3], &end3);
    if (*end1 || *end2 || *end3 || rtt_n < 1 || fsync_n < 1 || rtt_n > 10000000 ||
        fsync_n > 10000000 || !(limit_s > 0 && limit_s <= 3600)) {
        fprintf(stderr, "machine: RTT_N, FSYNC_N in 1..10^7, LIMIT_S in (0, 3600]\n");
        return 2;
    }
    const char *dir = argv[4];
    if (access(dir, W_OK) != 0) die(dir); /* before the round trips, not after */
    uint64_t limit_ns = (uint64_t)(limit_s * 1e9);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    memset(record, 'x', sizeof record);

    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) die("sched_getaffinity");
    for (int cpu = 0; cpu < CPU_SETSIZE && cpu_b < 0; cpu++)
        if (CPU_ISSET(cpu, &allowed)) *(cpu_a < 0 ? &cpu_a : &cpu_b) = cpu;
    int pinned = cpu_b >= 0;
    printf("cpus=%d\npinned=%d\n", CPU_COUNT(&allowed), pinned);
    if (!pinned) cpu_a = -1;

    size_t rn = (size_t)rtt_n;
    measure_rtt("rtt_blocking", cpu_a, cpu_b, 0, 0, rn, limit_ns);
    measure_rtt("rtt_server_polls", cpu_a, cpu_b, 1, 0, rn, limit_ns);
    measure_rtt("rtt_both_poll", cpu_a, cpu_b, 1, 1, rn, limit_ns);
    measure_rtt("rtt_same_cpu", cpu_a, cpu_a, 0, 0, rn, limit_ns);
    measure_fsync_1(dir, (size_t)fsync_n, limit_ns);
    measure_fsync_3(dir, (size_t)fsync_n, limit_ns);
    cleanup();
    return 0;
}
