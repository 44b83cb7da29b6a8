/* Closed-loop load generator shared by every system the benchmarks compare.
 *
 * Python opens (and for our coordinator authenticates) one socket per client and passes the
 * file descriptors here, with the request bytes each client sends. Each client keeps exactly one
 * request in flight: send, wait for the whole reply, record the latency, send again. One thread,
 * epoll, no allocation on the hot path, so the generator costs a few microseconds of CPU per
 * request whatever the system under test (a Python generator cost ~50 us per request and capped
 * every run near 20,000 requests/s on this 2-core machine).
 *
 *   loadgen MODE WARMUP_S MEASURE_S REQUEST_FILE SAMPLES_FILE FD...
 *
 * MODE says what a complete reply looks like:
 *   frame  4-byte big-endian length + MessagePack body; ok when the body holds "cwr" and
 *          "ok": true (our coordinator's write reply)
 *   resp   Redis: two RESP lines per request (SET's +OK, then WAIT's :N); ok when the first is
 *          +OK and WAIT's N equals the number given in the env LOADGEN_WAIT_N (default 0: any)
 *   http   HTTP/1.1 response with Content-Length; ok when the status is 200
 * REQUEST_FILE holds the bytes every client sends per request.
 * SAMPLES_FILE receives one record per request completed in the measured window:
 *   u32 completion time (us since the measured window began), u32 latency (ns, capped), u8 ok.
 * stdout: one line "requests=N errors=N elapsed_s=X eof=N".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_FRAME, MODE_RESP, MODE_HTTP };

typedef struct {
    int fd;
    int dead;
    uint64_t t0;
    char *buf;
    size_t len, cap;
} Client;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *req;
static size_t req_len;
static int wait_n;

/* Length of the first complete reply in c->buf (0: incomplete); *ok tells success. */
static size_t complete_reply(int mode, Client *c, int *ok) {
    char *b = c->buf;
    size_t n = c->len;
    if (mode == MODE_FRAME) {
        if (n < 4) return 0;
        size_t body = ((size_t)(unsigned char)b[0] << 24) | ((size_t)(unsigned char)b[1] << 16) |
                      ((size_t)(unsigned char)b[2] << 8) | (size_t)(unsigned char)b[3];
        if (n < 4 + body) return 0;
        *ok = memmem(b + 4, body, "\xa3" "cwr", 4) != NULL && memmem(b + 4, body, "\xa2ok\xc3", 4) != NULL;
        return 4 + body;
    }
    if (mode == MODE_RESP) {
        char *e1 = memmem(b, n, "\r\n", 2);
        if (!e1) return 0;
        char *e2 = memmem(e1 + 2, n - (size_t)(e1 + 2 - b), "\r\n", 2);
        if (!e2) return 0;
        *ok = b[0] == '+' && e1[2] == ':' && (wait_n == 0 || atoi(e1 + 3) >= wait_n);
        return (size_t)(e2 + 2 - b);
    }
    char *h = memmem(b, n, "\r\n\r\n", 4);
    if (!h) return 0;
    size_t head = (size_t)(h + 4 - b);
    size_t clen = 0;
    for (char *p = b; p < h; ) {
        char *eol = memmem(p, (size_t)(h - p) + 2, "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = (size_t)strtoul(p + 15, NULL, 10);
        p = eol + 2;
    }
    if (n < head + clen) return 0;
    *ok = n > 12 && memcmp(b + 9, "200", 3) == 0;
    return head + clen;
}

static int send_request(Client *c) {
    size_t off = 0;
    while (off < req_len) {
        ssize_t w = send(c->fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { usleep(10); continue; }  /* tiny requests: rare */
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: loadgen frame|resp|http WARMUP_S MEASURE_S REQUEST_FILE SAMPLES_FILE FD...\n");
        return 2;
    }
    int mode = strcmp(argv[1], "frame") == 0 ? MODE_FRAME : strcmp(argv[1], "resp") == 0 ? MODE_RESP : MODE_HTTP;
    double warmup = atof(argv[2]), measure = atof(argv[3]);
    const char *wn = getenv("LOADGEN_WAIT_N");
    wait_n = wn ? atoi(wn) : 0;
    FILE *rf = fopen(argv[4], "rb");
    if (!rf) { perror("request file"); return 2; }
    static char reqbuf[65536];
    req_len = fread(reqbuf, 1, sizeof reqbuf, rf);
    fclose(rf);
    req = reqbuf;
    FILE *out = fopen(argv[5], "wb");
    if (!out) { perror("samples file"); return 2; }
    static char outbuf[1 << 20];
    setvbuf(out, outbuf, _IOFBF, sizeof outbuf);

    int nclients = argc - 6;
    Client *cl = calloc((size_t)nclients, sizeof *cl);
    int ep = epoll_create1(0);
    for (int i = 0; i < nclients; i++) {
        cl[i].fd = atoi(argv[6 + i]);
        cl[i].cap = 1 << 16;
        cl[i].buf = malloc(cl[i].cap);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &ev) < 0) { perror("epoll_ctl"); return 2; }
    }
    uint64_t start = now_ns();
    uint64_t m0 = start + (uint64_t)(warmup * 1e9), m1 = m0 + (uint64_t)(measure * 1e9);
    for (int i = 0; i < nclients; i++) {
        cl[i].t0 = now_ns();
        if (send_request(&cl[i]) < 0) cl[i].dead = 1;
    }
    long requests = 0, errors = 0, eofs = 0;
    int inflight = nclients;
    struct epoll_event evs[256];
    int stopping = 0;
    while (inflight > 0) {
        uint64_t t = now_ns();
        if (!stopping && t >= m1) stopping = 1;
        if (stopping && t >= m1 + 2000000000ull) break;  /* replies that never come */
        int k = epoll_wait(ep, evs, 256, 100);
        if (k < 0 && errno != EINTR) { perror("epoll_wait"); break; }
        for (int j = 0; j < k; j++) {
            Client *c = &cl[evs[j].data.u32];
            if (c->dead) continue;
            if (c->cap - c->len < 4096) {
                c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
            }
            ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                c->dead = 1;
                eofs++;
                inflight--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->len += (size_t)r;
            int ok = 0;
            size_t used = complete_reply(mode, c, &ok);
            if (!used) continue;
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            uint64_t done = now_ns();
            if (done >= m0 && done < m1) {
                uint64_t lat = done - c->t0;
                uint32_t rec[2] = {(uint32_t)((done - m0) / 1000), lat > 0xffffffffull ? 0xffffffffu : (uint32_t)lat};
                unsigned char okb = (unsigned char)ok;
                fwrite(rec, sizeof rec, 1, out);
                fwrite(&okb, 1, 1, out);
                requests++;
                if (!ok) errors++;
            }
            if (stopping) {
                inflight--;
                c->dead = 1;
                continue;
            }
            c->t0 = done;
            if (send_request(c) < 0) { c->dead = 1; eofs++; inflight--; }
        }
    }
    fclose(out);
    double elapsed = measure;
    printf("requests=%ld errors=%ld elapsed_s=%.3f eof=%ld\n", requests, errors, elapsed, eofs);
    return 0;
}
