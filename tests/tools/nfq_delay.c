// nfq_delay: the test harness's stand-in for netem (this kernel has no sch_netem). It holds the
// packets an iptables NFQUEUE rule hands it and releases them in arrival order once their delay
// (plus uniform jitter) is up, dropping some on the way: independent random loss, or bursts from a
// two-state Gilbert-Elliott chain.
//
// Build: gcc -O2 -o nfq_delay nfq_delay.c -lnetfilter_queue   (tests/src/netem.rs does this)
// Run inside a router namespace: nfq_delay QUEUE_NUM
// Control on stdin, one command a line, each answered with one line on stdout:
//   set DELAY_MS JITTER_MS LOSS_PCT BURST_PKTS   -> "ok"    (BURST_PKTS <= 1: independent loss;
//                                                          more: mean length of a loss burst)
//   stats                                        -> "stats in=N lost=N overflow=N released=N"
// "ready" is printed once the queue is bound. End of stdin (the harness went away) ends the tool.
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING 65536 /* packets held at once; more are dropped (and counted) like a full queue */

static struct held { uint32_t id; double due_ms; } ring[RING];
static unsigned head, tail; /* FIFO in arrival order: jitter never reorders */
static double delay_ms, jitter_ms, loss, burst_pkts, last_due_ms;
static int in_burst;
static unsigned long n_in, n_lost, n_overflow, n_released;
static uint64_t rng_state;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* xorshift64*: uniform in [0, 1) */
static double uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* Whether the next packet is lost. Gilbert-Elliott with a lossless good state and an all-loss bad
   state: leaving bad has probability r = 1/burst, entering it p = loss*r/(1-loss), so bursts last
   1/r packets on average and the long-run loss is p/(p+r) = loss. */
static int lose_next(void) {
  if (loss <= 0) return 0;
  if (burst_pkts <= 1 || loss >= 1) return uniform() < loss;
  double r = 1.0 / burst_pkts, p = loss * r / (1.0 - loss);
  if (in_burst) { if (uniform() < r) in_burst = 0; }
  else if (uniform() < p) in_burst = 1;
  return in_burst;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg; (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  n_in++;
  if (lose_next()) { n_lost++; return nfq_set_verdict(qh, id, NF_DROP, 0, NULL); }
  if (tail - head >= RING) { n_overflow++; return nfq_set_verdict(qh, id, NF_DROP, 0, NULL); }
  double jitter = jitter_ms > 0 ? (uniform() * 2 - 1) * jitter_ms : 0;
  double due = now_ms() + delay_ms + jitter;
  if (due < last_due_ms) due = last_due_ms;
  last_due_ms = due;
  ring[tail % RING].id = id;
  ring[tail % RING].due_ms = due;
  tail++;
  return 0;
}

/* One control line; a malformed one is answered with an error, never fatal. */
static void on_command(char *line) {
  double d, j, l, b;
  if (sscanf(line, "set %lf %lf %lf %lf", &d, &j, &l, &b) == 4 && d >= 0 && j >= 0 && l >= 0 && l <= 100) {
    delay_ms = d; jitter_ms = j; loss = l / 100.0; burst_pkts = b; in_burst = 0;
    printf("ok\n");
  } else if (strncmp(line, "stats", 5) == 0) {
    printf("stats in=%lu lost=%lu overflow=%lu released=%lu\n", n_in, n_lost, n_overflow, n_released);
  } else {
    printf("error: bad command\n");
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s QUEUE_NUM (commands on stdin)\n", argv[0]); return 2; }
  int qnum = atoi(argv[1]);
  rng_state = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ULL;
  struct nfq_handle *h = nfq_open();
  if (!h) { perror("nfq_open"); return 1; }
  struct nfq_q_handle *qh = nfq_create_queue(h, qnum, &on_packet, NULL);
  if (!qh) { perror("nfq_create_queue"); return 1; }
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) { perror("nfq_set_mode"); return 1; }
  nfq_set_queue_maxlen(qh, 20000);
  int fd = nfq_fd(h);
  int rcvbuf = 8 << 20; /* room for bursts while we sleep; FORCE works as root */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  static char buf[65536] __attribute__((aligned));
  char line[256];
  size_t line_len = 0;
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    double t = now_ms();
    while (head != tail && ring[head % RING].due_ms <= t) {
      nfq_set_verdict(qh, ring[head % RING].id, NF_ACCEPT, 0, NULL);
      head++;
      n_released++;
    }
    int timeout = head != tail ? (int)(ring[head % RING].due_ms - t) + 1 : 1000;
    if (timeout < 0) timeout = 0;
    struct pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
    if (poll(p, 2, timeout) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
    if (p[0].revents & POLLIN) {
      for (;;) { /* drain what is there, so a burst does not wait a poll round per packet */
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) nfq_handle_packet(h, buf, (int)n);
        else { if (n < 0 && errno == ENOBUFS) fprintf(stderr, "nfq_delay: ENOBUFS, kernel queue overrun\n"); break; }
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(0, line + line_len, sizeof line - 1 - line_len);
      if (n <= 0) break; /* the harness is gone: stop (the rule then drops, nothing leaks through) */
      line_len += (size_t)n;
      char *nl;
      while ((nl = memchr(line, '\n', line_len))) {
        *nl = 0;
        on_command(line);
        size_t rest = line_len - (size_t)(nl + 1 - line);
        memmove(line, nl + 1, rest);
        line_len = rest;
      }
      if (line_len == sizeof line - 1) line_len = 0; /* an overlong line: discard it */
    }
  }
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
