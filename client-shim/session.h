/* SPDX-License-Identifier: MIT */
/* The running shim's sessions (private to client-shim/): one UDP socket on --listen, and
 * per local source address a session that owns one wss:// connection to the relay. A session walks RESOLVING -> CONNECTING ->
 * PROXY (when a proxy is used) -> TLS -> UPGRADE -> OPEN, and on any failure tears its
 * connection down and waits in BACKOFF (250 ms doubling to 30 s, equal jitter) before
 * starting over; the UDP socket never changes, so WireGuard only sees lost packets.
 *
 * Everything is non-blocking on one epoll loop. Names are resolved with getaddrinfo_a(),
 * whose completion thread only writes to an eventfd. Buffers are sized and allocated when a
 * session is created: output (one WS message of a whole recvmmsg batch, masked), input
 * (SSL_read), the record decoder, and a small queue for datagrams that arrive before the
 * connection is open. Nothing is allocated per packet; when a buffer is full the datagram
 * is dropped and counted, never queued without bound.
 *
 * Records from the relay go to local UDP as views, batched for sendmmsg (runs of one length
 * of SHIM_GSO_MIN_LEN or more as UDP GSO messages, common/udpgso.h): into the input
 * (a record whole inside one read) or into the decoder's reassembly buffer (a record split
 * across reads). Both come in several copies used in turn (SHIM_IN_SLOTS, SHIM_DEC_BUFS),
 * so a view outlives the next read and the next reassembly; a batch is sent when full, once
 * per wake-up, or early only when the copy about to be overwritten still holds one of its
 * views.
 *
 * WebSocket masks come from a xorshift generator seeded by RAND_bytes: RFC 6455 wants them
 * unpredictable to protect caching intermediaries from crafted plaintext, and inside TLS no
 * intermediary sees them, so a fast PRNG is enough.
 *
 * Five files run them, one concept each, sharing the structures below:
 *   session.c  a session's life (state, failure and back-off, deadlines), the table of
 *              sessions and the event loop;
 *   connect.c  the way to OPEN: resolve, TCP (Happy Eyeballs), TLS, WebSocket upgrade;
 *   proxy.c    the proxy leg, by libcurl: resolve, TCP, the proxy's TLS (https://), CONNECT
 *              or SOCKS5 and every authentication scheme, then the socket handed back;
 *   stream.c   the open TLS + WebSocket stream: WS messages out, records in;
 *   udp.c      the local UDP socket: WireGuard's datagrams in (recvmmsg), records out to it
 *              (sendmmsg, UDP GSO);
 *   check.c    check sessions: the whole way to one relay and a ping answered through it,
 *              each step reported, for --check and the start-up check. */
#ifndef WGWS_SHIM_SESSION_H
#define WGWS_SHIM_SESSION_H

#include <netdb.h>
#include <stdint.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "shim.h"
#include "udpgso.h"

enum {
	SHIM_BATCH = 32,                /* datagrams per recvmmsg / sendmmsg */
	/* UDP GSO toward WireGuard only for batches of datagrams this long: with 64-byte ones a
	 * 256-deep echo load through the shim fell from 105k to 66k echoes/s (1400 B: +20 %) */
	SHIM_GSO_MIN_LEN = 256,
	SHIM_DGRAM_BUF = FRAME_MAX_LEN + 1, /* one more byte to see truncation */
	SHIM_OUT_CAP = 65536 + 1024,    /* per-session output: TLS back-pressure drops beyond */
	SHIM_IN_CAP = 16384,            /* one SSL_read (a whole TLS record) */
	SHIM_IN_SLOTS = 2,              /* SSL_read buffers per session, used in turn */
	/* reassembly buffers, in turn: a batch spanning SHIM_IN_SLOTS reads holds a record
	 * completed in each of them, and the decoder fills one more meanwhile */
	SHIM_DEC_BUFS = SHIM_IN_SLOTS + 1,
	SHIM_READ_BUDGET = 16,          /* SSL_reads per wake-up before others get a turn */
	SHIM_QUEUE_PKTS = 16,           /* datagrams held while not OPEN */
	SHIM_QUEUE_BYTES = 32768,
	SHIM_MAX_ADDRS = 8,
	/* RFC 8305's Connection Attempt Delay: the next address gets its attempt this long
	 * after the previous one started, while that one still waits (both go on) */
	SHIM_HE_DELAY_MS = 250,
	SHIM_CONNECT_TIMEOUT_MS = 10000, /* resolve + TCP + proxy + TLS + upgrade */
	/* A connection that carries traffic out and brings nothing back for SHIM_STALL_MS, or
	 * any connection after the network changed, is asked (a WebSocket ping); without an
	 * answer within SHIM_PROBE_MS it is dead: a new one at once, not TCP's 30 s. */
	SHIM_STALL_MS = 3000,
	SHIM_PROBE_MS = 2000, /* a pong may queue behind up to SHIM_OUT_CAP on a slow path */
	SHIM_NET_SETTLE_MS = 100, /* changes this close together are looked at once */
	SHIM_HEALTHY_MS = 60000,        /* an OPEN this long resets the back-off */
	SHIM_IDLE_MS = 180000,          /* a failed session without local traffic is closed */
	SHIM_DEAD_MIN_MS = 45000,
	SHIM_TCP_USER_TIMEOUT_MS = 30000,
	SHIM_BACKOFF_MIN_MS = 250,
	SHIM_BACKOFF_MAX_MS = 30000,
	SHIM_UDP_BUF = 4 << 20,         /* SO_RCVBUF / SO_SNDBUF of the local UDP socket */
};

/* epoll tags: the low 32 bits; a session's generation (or a libcurl socket's descriptor)
 * above them */
enum { TAG_UDP = 0, TAG_SIGNAL = 1, TAG_RESOLVER = 2, TAG_NETLINK = 3, TAG_CURL = 4,
       TAG_SESSION = 16 };

enum sess_state {
	S_RESOLVING,
	S_CONNECTING,
	S_PROXY,
	S_TLS,
	S_UPGRADE,
	S_OPEN,
	S_BACKOFF,
};

struct session;

/* One getaddrinfo_a() request. It outlives its session when the session goes away first
 * (owner is then NULL) and is freed once glibc is done with it. */
struct resolve {
	struct resolve *next;
	struct session *owner;
	struct gaicb cb;
	struct addrinfo hints;
	char host[ADDR_HOST_MAX + 1];
	char port[8];
};

struct session {
	struct shim *sh;
	unsigned slot;
	uint32_t gen;
	struct sockaddr_storage src;
	socklen_t src_len;
	char name[ADDR_STR_LEN];
	enum sess_state state;
	int fd;
	SSL *ssl;
	uint32_t ev_mask; /* registered with epoll; 0 when not registered */
	struct resolve *res;
	/* PROXY: libcurl's transfer (proxy.c); it stays after OPEN through an https:// proxy,
	 * whose TLS carries ours (curl_easy_send/recv under s->ssl) */
	CURL *curl;
	bool curl_owns_fd; /* s->fd is curl's: closed by curl_easy_cleanup, not by us */
	char proxy_status[WS_WHY_LEN]; /* the proxy's last CONNECT status line, "" if none */
	char proxy_err[CURL_ERROR_SIZE]; /* curl's words for a failure (CURLOPT_ERRORBUFFER) */
	struct sockaddr_storage addrs[SHIM_MAX_ADDRS];
	socklen_t addr_lens[SHIM_MAX_ADDRS];
	unsigned naddrs, addr_idx;     /* addr_idx: the next address to try */
	int afd[SHIM_MAX_ADDRS];       /* CONNECTING: the attempts in flight, -1 elsewhere */
	unsigned nafd;
	uint64_t next_attempt;         /* CONNECTING: when the next address starts (0: none) */
	int last_errno;
	uint64_t phase_deadline, retry_at, open_at, last_rx, next_ping, last_local;
	uint64_t tx_unanswered; /* OPEN: the first traffic out since the relay last sent; 0 */
	uint64_t probe_at; /* OPEN: when the pending probe (a ping) was sent; 0: none */
	const char *probe_why;
	unsigned attempts;
	unsigned relay;          /* the relay (conf->relays) this connection goes to */
	unsigned relays_failed;  /* relays that failed in a row, at set-up, since the last OPEN */
	bool check;              /* a check session (check.c), not WireGuard's */
	uint64_t check_t0;       /* when its current step started */
	bool want_write;
	bool rx_ready;                  /* more to read (budget spent or bytes inside OpenSSL) */
	char key[WS_KEY_LEN + 1];
	uint8_t *out; /* [out_off, out_len) waits for the socket */
	size_t out_off, out_len;
	uint8_t *in; /* SHIM_IN_SLOTS * SHIM_IN_CAP; set-up uses the first slot only */
	size_t in_len;
	unsigned in_slot; /* the slot the next SSL_read of an OPEN session fills */
	uint8_t *q; /* queued records "u16 len ‖ datagram" while not OPEN */
	size_t q_len;
	unsigned q_pkts;
	struct ws_parser wsp;
	struct frame_dec dec;
	uint8_t *dec_buf; /* SHIM_DEC_BUFS * FRAME_MAX_LEN */
	unsigned dec_idx; /* the part of dec_buf the decoder fills */
	unsigned batch_n; /* datagrams of the current recvmmsg batch */
	uint64_t tx_pkts, rx_pkts, drop_queue, drop_full, drop_big, drop_udp;
};

struct shim {
	const struct shim_conf *conf;
	SSL_CTX *ctx;
	bool verify;
	int epfd, udp_fd, sig_fd, res_fd;
	int nl_fd;         /* rtnetlink: the network's changes (netwatch.c); -1 without */
	uint64_t net_due;  /* when to look at the sessions after a change; 0: none pending */
	struct session **slots;
	unsigned nsess;
	uint32_t gen;
	struct session *last_hit;
	struct resolve *resolves;
	CURLM *curlm;      /* every session's proxy leg (proxy.c); NULL without a proxy */
	uint64_t curl_due; /* libcurl's timer: when it wants to be called; 0: none */
	uint64_t prng;
	uint64_t now;
	/* No session's deadline is before next_due (it may be earlier than the earliest: a
	 * deadline that moved later). The loop looks at the sessions only when it is due, and
	 * whoever sets an earlier deadline lowers it (deadline_hint): O(1) per wake-up, not
	 * O(--max-sessions). */
	uint64_t next_due;
	bool rx_ready_any; /* some session stopped reading on its budget (session_read) */
	bool stop;
	unsigned relay_cur; /* the relay new connections go to first: the last one that worked */
	enum shim_check check;
	unsigned check_relay, check_failed; /* CHECK_ONLY: the relay being checked; failures */
	/* recvmmsg batch */
	uint8_t *rbuf;
	struct mmsghdr rmsg[SHIM_BATCH];
	struct iovec riov[SHIM_BATCH];
	struct sockaddr_storage raddr[SHIM_BATCH];
	struct session *rsess[SHIM_BATCH];
	bool rskip[SHIM_BATCH];
	unsigned rn;
	/* sendmmsg batch, one destination; runs of one length as UDP GSO messages */
	struct mmsghdr smsg[SHIM_BATCH];
	union udp_gso_cmsg scmsg[SHIM_BATCH];
	struct iovec siov[SHIM_BATCH];
	unsigned sn;
	bool gso_off; /* the kernel refused GSO once: datagrams one by one from then on */
	struct session *ssess;
	uint64_t drop_nosession;
};

/* ---- session.c: a session's life, the table, the loop -------------------------------------- */

uint64_t prng_next(struct shim *sh);
void set_events(struct session *s, uint32_t mask);
int __attribute__((format(printf, 2, 3))) session_fail(struct session *s, const char *fmt,
							      ...);
void deadline_hint(struct session *s);
struct session *session_new(struct shim *sh, const struct sockaddr_storage *src,
				   socklen_t len);
struct session *session_lookup(struct shim *sh, const struct sockaddr_storage *src);

/* ---- connect.c: the way to OPEN ------------------------------------------------------------ */

int upgrade_io(struct session *s);
int tls_handshake(struct session *s);
/* The TCP (or proxied) connection is up in s->fd: TLS with the relay. */
int tls_start(struct session *s);
/* A non-blocking TCP socket for a's family with the shim's options (TCP_NODELAY,
 * keepalive, TCP_USER_TIMEOUT, --fwmark), warning when the route to a goes through a
 * WireGuard interface; proxy: a is the proxy's. The descriptor, or -errno. */
int conn_socket(struct session *s, const struct sockaddr *a, socklen_t len, bool proxy);
int tcp_check(struct session *s);
void shim_on_resolver(struct shim *sh);
void session_connect(struct session *s);
/* CONNECTING: start the next address's attempt when its time has come (session_tick). */
void connect_tick(struct session *s);
/* Close the attempts still in flight (conn_teardown). */
void connect_abort(struct session *s);

/* ---- proxy.c: the proxy leg, by libcurl ---------------------------------------------------- */

/* libcurl (CURLOPT_CONNECT_ONLY with a proxy tunnel) does the proxy's part of the way: the
 * proxy's name resolved (its threaded resolver) and its addresses raced (Happy Eyeballs,
 * SHIM_HE_DELAY_MS), the proxy's own TLS for https://, then an HTTP CONNECT with Basic,
 * Digest, NTLM or Negotiate (Kerberos) as the proxy asks, or SOCKS5 (socks5h:// lets the
 * proxy resolve the relay's name). Its sockets are on the shim's epoll (TAG_CURL, with the
 * descriptor above), its timer is the loop's curl_due: nothing blocks the other sessions.
 * When the tunnel is up, the socket is the session's: taken from curl for http:// and
 * SOCKS (curl forgets it), or, for https://, left in curl, whose TLS then carries ours
 * through a BIO over curl_easy_send/recv. */
int proxy_open(struct shim *sh);
void proxy_close(struct shim *sh);
/* PROXY: start s's transfer. Returns 0, or -1 after session_fail(). */
int proxy_start(struct session *s);
/* End s's transfer, if any (conn_teardown): curl closes the sockets it still owns. */
void proxy_abort(struct session *s);
/* epoll reported events on curl's socket fd, or its timer is due: let curl go on, then
 * hand finished transfers to their sessions. */
void proxy_on_event(struct shim *sh, int fd, uint32_t events);
void proxy_on_timer(struct shim *sh);
/* A BIO that reads and writes s's tunnel through curl (curl_easy_recv/send): for the
 * relay's TLS inside an https:// proxy's. NULL when out of memory. */
BIO *proxy_bio(struct session *s);

/* ---- check.c: check sessions ---------------------------------------------------------------- */

/* A check session goes the whole way to one relay like any other, reporting each step,
 * then sends a WebSocket ping; the relay's pong ends it. It carries no datagrams, never backs
 * off and never goes to another relay: its first failure ends it, in words. --check
 * (CHECK_ONLY) checks every relay in turn and prints each step on stdout; the start-up check
 * (CHECK_START) checks the first relay once and logs the result. */
void check_begin(struct shim *sh);
/* A step went well: its description (stdout for --check, the debug log otherwise). */
void __attribute__((format(printf, 2, 3))) check_step(struct session *s, const char *fmt, ...);
/* session_fail() of a check session: report why, end it. */
void check_failed(struct session *s, const char *why);
/* OPEN: the ping. Returns 0, or -1 when s is gone. */
int check_opened(struct session *s);
/* The pong: report the round trip, end s. Returns -1: s is gone. */
int check_pong(struct session *s);
/* Free a session (session.c), for check.c. */
void session_free(struct session *s);

/* ---- stream.c: the open stream ------------------------------------------------------------- */

const char *ssl_err_str(SSL *ssl, int ret, int err, char *buf, size_t sz);
int ws_send(struct session *s, enum ws_opcode op, const void *payload, size_t len);
int session_flush(struct session *s);
int ws_input(struct session *s, const uint8_t *p, size_t len);
int session_read(struct session *s);
void queue_push(struct session *s, const uint8_t *p, size_t len);
void emit_batch(struct shim *sh, struct session *s, unsigned i0);

/* ---- udp.c: the local UDP socket ----------------------------------------------------------- */

void sendq_flush(struct shim *sh);
void sendq_release(struct session *s, const uint8_t *p, size_t len);
void sendq_add(struct session *s, const uint8_t *rec, size_t len);
void shim_on_udp(struct shim *sh);

/* The relay s connects to, whether through the proxy, and how, in words (for logs). */
static inline const struct shim_url *session_relay(const struct session *s)
{
	return &s->sh->conf->relays[s->relay];
}

static inline bool session_proxied(const struct session *s)
{
	return s->sh->conf->proxy.set && !s->sh->conf->relay_direct[s->relay];
}

const char *session_via(const struct session *s, char *buf, size_t len);

struct ifaddrs;
/* The name of the interface in list (getifaddrs) that holds address a, or NULL. */
const char *ifaddr_find(const struct ifaddrs *list, const struct sockaddr_storage *a);

#endif
