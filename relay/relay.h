/* SPDX-License-Identifier: MIT */
/* wgws-relay: private header, one section per file. */
#ifndef WGWS_RELAY_H
#define WGWS_RELAY_H

#include <ev.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>

#include "addr.h"
#include "cidr.h"
#include "conf.h"
#include "frame.h"
#include "jitproto.h"

#define RELAY_VERSION "0.1.0"
#define RELAY_SUBPROTOCOL "wgws"
#define RELAY_USER "wgws" /* the default --user: a system user of its own */

enum {
	RELAY_PATH_MAX = 128,
	RELAY_UDP_BATCH = 32,        /* datagrams per recvmmsg/sendmmsg */
	RELAY_WS_CHUNK = 16384,      /* most bytes sent in one WS message (one TLS record) */
	RELAY_QUEUE_PKTS = 256,      /* most datagrams queued toward one client */
	RELAY_BAD_RECORDS_MAX = 16,  /* malformed records tolerated before closing */
	RELAY_SWEEP_MS = 1000,       /* idle sweep period */
	RELAY_TRIM_AFTER = 64,       /* tunnels closed since the peak before malloc_trim() */
	RELAY_WGPORT_SWEEPS = 10,    /* check --wg's owner every this many sweeps */
	RELAY_PASS_BUCKETS = 6,      /* loop pass histogram: 1, 5, 20, 100, 500 ms, +Inf */
	RELAY_JIT_BUCKETS = 10,      /* JIT answer histogram: 0.25 ms ... 1 s, +Inf */
	RELAY_JIT_PATH_MAX = sizeof(((struct sockaddr_un *)0)->sun_path),
};

/* ---- main.c: configuration ---- */

struct relay_cfg {
	struct sockaddr_storage listen;
	socklen_t listen_len;
	struct sockaddr_storage wg;
	socklen_t wg_len;
	struct sockaddr_storage metrics;
	socklen_t metrics_len;
	bool has_listen, has_metrics;
	char *cert, *key, *user;
	char path[RELAY_PATH_MAX];
	unsigned long max_conns;
	unsigned long max_conns_per_ip; /* 0 = no per-address limit */
	unsigned long max_pending;      /* connections not yet upgraded */
	unsigned long max_pending_per_ip; /* of those, from one source (IPv4 address, IPv6 /64) */
	unsigned long rate_per_ip;      /* new connections per second from one source (0 = any) */
	unsigned long max_record;
	unsigned long queue_bytes;
	unsigned long idle_timeout_s;  /* no tunnel traffic for this long: close (0 = never) */
	unsigned long keepalive_s;     /* ping a client that has been silent this long */
	unsigned long header_timeout_s;
	char jit_socket[RELAY_JIT_PATH_MAX]; /* "" = no provisioner: forward every initiation */
	char *tokens;   /* --tokens FILE: who may open tunnels; NULL: anyone */
	/* --proxy-protocol-from: front ends (haproxy) whose connections start with PROXY v2 */
	struct cidr proxy_from[16];
	unsigned n_proxy_from;
	/* --listen-ws: plain ws:// on loopback (TCP) or a unix socket (AF_UNIX), for a reverse
	 * proxy on this host that ends TLS; --forwarded-from: whose X-Forwarded-For it believes */
	struct sockaddr_storage listen_ws;
	socklen_t listen_ws_len;
	bool has_listen_ws;
	struct cidr fwd_from[16];
	unsigned n_fwd_from;
	bool fwd_unix;          /* "unix" in --forwarded-from: every peer of a unix --listen-ws */
	bool flyctl;            /* --flyctl: serve flyctl's framing on path / (default yes) */
	int verbosity;
};

/* ---- metrics (counters live in struct relay) ---- */

enum relay_drop {
	DROP_OVERSIZE,   /* record longer than --max-record (connection closed, 1009) */
	DROP_MALFORMED,  /* record without a WireGuard shape */
	DROP_TRUNCATED,  /* stream ended in the middle of a record */
	DROP_QUEUE_FULL, /* send queue toward the client full */
	DROP_UDP_ERROR,  /* sending to WireGuard failed */
	DROP_FOREIGN,    /* a datagram from another address than --wg */
	DROP_JIT_UNKNOWN, /* an initiation the provisioner does not know (JIT) */
	DROP_JIT_REFUSED, /* an initiation the provisioner refused: replay, rate limit (JIT) */
	DROP_JIT_SUPERSEDED, /* replaced by newer ones faster than the answers came, for 3 s */
	DROP_MAX,
};

enum relay_reject {
	REJECT_LIMIT,    /* --max-conns reached */
	REJECT_IP_LIMIT, /* --max-conns-per-ip reached */
	REJECT_UPGRADE,  /* wrong path or subprotocol */
	REJECT_PENDING,  /* closed at accept: --max-pending cancelled handshakes still held */
	REJECT_SHUTDOWN,
	REJECT_IP_RATE,  /* --rate-per-ip: closed at accept */
	REJECT_TOKEN,    /* --tokens: no token, or one the file does not hold (401) */
	REJECT_TOKEN_LIMIT, /* --tokens: that token's tunnels are at its limit (503) */
	REJECT_PROXY_PROTOCOL, /* a --proxy-protocol-from source without a valid PROXY v2 header */
	REJECT_FORWARDED, /* a --forwarded-from source with no or a malformed X-Forwarded-For */
	REJECT_MAX,
};

enum relay_evict {
	EVICT_PER_IP,    /* its source had --max-pending-per-ip pending: the oldest goes */
	EVICT_FULL,      /* --max-pending reached: the oldest of all goes */
	EVICT_SILENT,    /* sent nothing within ADMIT_HELLO_MS */
	EVICT_SLOW,      /* TLS handshake not done within --header-timeout */
	EVICT_MAX,
};

struct relay_stats {
	uint64_t conns_total;
	uint64_t conns_fly_total; /* of those, flyctl's framing */
	uint64_t reloads, reloads_failed; /* SIGHUP */
	uint64_t token_revoked; /* tunnels closed (1008) because a reload took their token away */
	uint64_t pkts_ws_to_udp, bytes_ws_to_udp;
	uint64_t pkts_udp_to_ws, bytes_udp_to_ws;
	uint64_t ws_messages_out;
	uint64_t drops[DROP_MAX];
	uint64_t rejects[REJECT_MAX];
	uint64_t closes_idle, closes_bad, closes_protocol;
	uint64_t evicted[EVICT_MAX];
	uint64_t tls_failures;    /* TLS handshakes that failed (scanners, wrong protocol, ...) */
	uint64_t accept_errors;   /* accept() failures (EMFILE...) and failed adoptions */
	uint64_t metrics_refused; /* metrics connections over METRICS_CONNS_MAX */
	uint64_t udp_kernel_drops; /* datagrams the kernel dropped on tunnels' UDP sockets */
	uint64_t pass_le[RELAY_PASS_BUCKETS]; /* loop passes by duration (work between polls) */
	uint64_t pass_count, pass_sum_us, pass_max_us;
	uint64_t jit_requests;                  /* sent to the provisioner, re-asks included */
	uint64_t jit_answers[JIT_VERDICT_MAX];  /* every well-formed answer, by verdict */
	uint64_t jit_stale;       /* answers for no request in flight (timed out, tunnel gone) */
	uint64_t jit_timeouts;    /* held initiations forwarded after JIT_HOLD_MS */
	uint64_t jit_not_asked;   /* forwarded without an answer: channel down or lost */
	uint64_t jit_deferred;    /* requests that waited for room in the socket (a burst) */
	uint64_t jit_answer_le[RELAY_JIT_BUCKETS]; /* request sent -> answer, by bucket */
	uint64_t jit_answer_count, jit_answer_sum_us;
};

struct conn;

struct relay {
	struct relay_cfg cfg;
	struct lws_context *ctx;
	struct lws_vhost *vhost;
	struct lws_vhost *internal_vhost; /* no listener: the UDP sockets and the JIT channel */
	struct conn *conns;        /* every established tunnel, for sweeps and shutdown */
	unsigned conns_active;
	unsigned conns_pending;    /* accepted TCP connections not yet upgraded or closed */
	unsigned conns_peak;       /* most tunnels since the last malloc_trim() */
	bool shutting_down;
	uid_t user_uid;            /* --user's uid (the relay's own once it has dropped) */
	gid_t user_gid;            /* and its group (a unix --listen-ws socket's) */
	long wg_owner_uid;         /* who has --wg's port bound: uid, -1 nobody, WGPORT_UNKNOWN */
	unsigned sweeps;
	bool jit_up;               /* the channel to the provisioner is connected */
	unsigned jit_held;         /* initiations held now */
	/* Tunnels' UDP sockets are bound here (port 0), unconnected: a connected UDP socket
	 * turns an ICMP error into POLLERR, on which lws closes the descriptor. */
	struct sockaddr_storage udp_local;
	socklen_t udp_local_len;
	lws_sorted_usec_list_t sweep;
	struct relay_stats st;
	int argc;          /* the command line, read again on SIGHUP */
	char **argv;
	time_t cert_not_after; /* the certificate new connections get expires then (0: ?) */
	bool activated;        /* the listener came from systemd (socket activation) */
	struct tokens *tokens; /* --tokens, as last loaded (start or SIGHUP) */
	/* Scratch for recvmmsg: the service loop is single-threaded, so one set serves all. */
	uint8_t *udp_buf;          /* RELAY_UDP_BATCH * max_record */
};

extern struct relay relay;

/* ---- jit.c: asking wgws-provisioner about handshake initiations ---- */

/* One tunnel's hold: the newest initiation it sent, kept while the provisioner is asked about
 * it. Lives in the tunnel's state (no allocation); jit.c links it into its lists while a
 * datagram is held: its request is in flight, or waiting for room in the socket. */
struct jit_hold {
	struct jit_hold *prev, *next;      /* held ones, oldest first: deadline order */
	struct jit_hold *hnext, **hpprev;  /* in-flight requests, hashed by id */
	uint64_t deadline_ms;              /* JIT_HOLD_MS after the first datagram was held */
	uint32_t seq;                      /* initiations held so far */
	uint32_t asked_seq;                /* seq of the one the request in flight is about */
	uint64_t asked_us;                 /* when that request was sent (monotonic) */
	bool held;
	bool unsent;                       /* held, its request waiting for room in the socket */
	bool answered;                     /* an answer came during this hold (then superseded) */
	struct jit_request req;            /* source and client set once; initiation = held */
};

/* lws protocol callback for the adopted channel socket ("wgws-jit"). */
int jit_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		 size_t len);
/* Connect to --jit-socket (if set) now, before privileges are dropped; on failure retry
 * every second from the loop. jit_stop() cancels the timers, before the context goes. */
void jit_start(void);
void jit_stop(void);
/* Set up a tunnel's hold: source is its UDP socket's address (what WireGuard sees), client
 * its TCP peer. */
void jit_hold_init(struct jit_hold *h, const struct sockaddr *source,
		   const struct sockaddr *client);
/* Hold this initiation (copied) and ask about it: true (a full socket sends the request
 * when it has room, within the same deadline). False: the channel is down and the caller
 * forwards it now (counted). A hold that has one already replaces it. */
bool jit_hold(struct jit_hold *h, const uint8_t dgram[static JIT_INITIATION_LEN]);
/* The tunnel closes: discard its held datagram and forget its request. */
void jit_hold_forget(struct jit_hold *h);

/* ---- conn.c: one tunnel = one WS connection + one connected UDP socket ---- */

/* lws protocol callbacks for the WS tunnel and for the adopted UDP sockets. */
int conn_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		     size_t len);
int conn_udp_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len);
/* An upgrade without a subprotocol (lws gives it to protocols[0], http.c): flyctl's client
 * (path /, no Sec-WebSocket-Protocol) when --flyctl allows, admitted as any tunnel. -1 not
 * flyctl's (the caller refuses it), 1 refused (answered), 0 admitted: from then on http.c
 * passes its callbacks to conn_ws_callback (conn_is_fly). user: the protocol's session
 * space, conn_user_size() bytes. */
int conn_fly_filter(struct lws *wsi, void *user);
bool conn_is_fly(const void *user);
/* Size of the per-tunnel state lws allocates for each WS connection. */
size_t conn_user_size(void);
/* Close idle tunnels; called every RELAY_SWEEP_MS. */
void conn_sweep(uint64_t now_ms);
/* Ask every tunnel to close with 1001 (going away). */
void conn_close_all(void);
/* Send the datagram h holds to WireGuard from h's tunnel, like any other record. */
void conn_forward_held(struct jit_hold *h);
/* A reload changed the tokens: tunnels whose token is gone close with 1008 (policy). */
void conn_tokens_changed(void);
/* active[i] = open tunnels holding token i, for i < n: one pass over the tunnels. */
void conn_token_counts(unsigned *active, unsigned n);
/* The provisioner named the WireGuard peer of h's tunnel (key; verdict in words): logged
 * once per tunnel and key, with the client and the tunnel's WireGuard endpoint. */
void conn_jit_peer(struct jit_hold *h, const uint8_t key[static 32], const char *verdict);
uint64_t relay_now_ms(void);

/* ---- main.c: the loop ---- */

/* Microseconds of work the current pass of the event loop has done so far (0 between passes). */
uint64_t relay_pass_elapsed_us(void);

/* ---- admit.c: the tunnel listener and connections until they are tunnels ---- */

enum {
	ADMIT_RATE_BURST = 4,   /* a source's burst: this many seconds of --rate-per-ip */
};

/* A listening socket on the loop that rests LISTENER_PAUSE_MS after an accept error (out
 * of descriptors, of buffers) instead of spinning on a socket that stays readable. */
enum { LISTENER_PAUSE_MS = 250 };
struct listener {
	struct ev_loop *loop;
	ev_io io;
	ev_timer pause;
	int fd;
	const char *what; /* for the log: "--listen", "--metrics" */
};
void listener_start(struct listener *l, struct ev_loop *loop, int fd, const char *what,
		    void (*cb)(struct ev_loop *, ev_io *, int));
/* The next connection's descriptor (non-blocking), or -1: none waiting, or an error that
 * paused the listener (counted in accept_errors, logged). ss may be NULL. */
int listener_accept(struct listener *l, struct sockaddr_storage *ss, socklen_t *len);
void listener_stop(struct listener *l);

/* Bind and listen (before privileges are dropped); returns the descriptor or -errno. An
 * AF_UNIX address: a socket file left by a previous run is replaced (anything else at the
 * path is not), the new one is 0660 and owned by uid:gid. */
int admit_listen(const struct sockaddr_storage *ss, socklen_t len, uid_t uid, gid_t gid);
/* Accept on tls_fd (TLS: the handshake thread) and plain_fd (--listen-ws) from the loop;
 * either may be -1. 0 or -errno. */
int admit_start(struct ev_loop *loop, int tls_fd, int plain_fd);
/* Close the listener (shutdown); admit_stop() also closes connections lws never got. */
void admit_stop_listening(void);
void admit_stop(void);
/* Close connections silent past their first-byte deadline; from the sweep. */
void admit_sweep(uint64_t now_ms);
/* From lws's ESTABLISHED and WSI_DESTROY: the connection no longer holds a pending slot. */
void admit_release(struct lws *wsi);
/* The client of wsi while admission holds it: the PROXY v2 header's source for a front end's
 * connection (--proxy-protocol-from), the TCP peer otherwise. False once released. */
bool admit_client(struct lws *wsi, struct sockaddr_storage *out);
/* At the upgrade, from a --forwarded-from source on --listen-ws: its X-Forwarded-For names the
 * client (for admit_client from now on), whose --rate-per-ip applies. 0 (also for any other
 * connection); -EINVAL: no or a malformed header (why says which); -EAGAIN: that client is
 * over its rate; 1: a --listen-ws connection from another source sent one (ignored: worth
 * a hint). */
int admit_forwarded(struct lws *wsi, const char **why);
/* Whether ss is a --proxy-protocol-from source. */
bool relay_proxy_trusted(const struct sockaddr_storage *ss);
/* Whether a --listen-ws connection from ss is a --forwarded-from source. */
bool relay_forwarder(const struct sockaddr_storage *ss);

/* ---- handshake.c: TLS handshakes on a thread of their own ---- */

/* A TLS handshake step costs ~0.5-1 ms of CPU; done on the loop, a burst of new clients
 * made every open tunnel wait for them. admit.c hands each connection, once it has sent
 * its first bytes, to a thread that runs only handshakes, at a lower priority than the loop,
 * and adopts the finished ones into lws with their TLS session. The thread never closes a
 * descriptor and never touches lws: only OpenSSL, its own epoll and two queues. */
struct handshake;
typedef void handshake_done_fn(void *owner, SSL *ssl);

/* A server SSL_CTX as the thread uses, with the certificate chain and key loaded and
 * checked against each other; NULL with *what naming the step that failed (OpenSSL's
 * error queue says more). For --check-config and SIGHUP too. */
SSL_CTX *handshake_ctx_new(const char *cert, const char *key, const char **what);
/* Take ctx (handshake_ctx_new's, loaded before privileges are dropped) as the thread's, and
 * check that SSL_new reaches our interposer. 0 or -errno (ctx freed); *what names the step
 * that failed. */
int handshake_init(SSL_CTX *ctx, const char **what);
/* From the next handshake on, the thread uses ctx (handshake_ctx_new's; handshake.c owns
 * it now). Open tunnels keep the session they have. */
void handshake_set_ctx(SSL_CTX *ctx);
/* When ctx's certificate expires (notAfter, Unix time). 0 or -ENOENT. */
int handshake_cert_expiry(SSL_CTX *ctx, time_t *not_after);
/* Start the thread; done runs on the loop for each finished handshake, with ssl NULL when
 * it failed. Call before the sandbox (its filter reaches the thread through TSYNC). */
int handshake_start(struct ev_loop *loop, handshake_done_fn *done);
/* Run the server side of a TLS handshake on fd (non-blocking, connected). NULL if out of
 * memory. fd stays the caller's: closed by the caller only after done ran (or, once
 * cancelled, by handshake.c). */
struct handshake *handshake_submit(int fd, void *owner);
/* The owner no longer wants it: the handshake stops (its socket is shut down), and its
 * done is never called; the descriptor is closed when the thread lets go of it. */
void handshake_cancel(struct handshake *h);
/* Cancelled handshakes whose descriptor the thread still holds: the thread runs only when
 * the loop does not need the CPU, so on a busy machine they can pile up. Admission counts
 * them against --max-pending (admit.c), so that they stay within the open-file limit. */
unsigned handshake_cancelled(void);
/* Stop the thread and close what it held. */
void handshake_stop(void);
/* The next SSL_new on this thread (lws's, while adopting) returns ssl instead of a new one. */
void handshake_adopt_next(SSL *ssl);
/* Give back what handshake_adopt_next left unclaimed (lws failed before SSL_new). */
void handshake_adopt_done(void);
/* Free some of the sessions lws let go of on the loop thread (SSL_free is deferred there:
 * a burst of closes would otherwise free them all in one pass): a few, more while the pass
 * is short; all of them with all (at exit, after lws_context_destroy). */
void handshake_free_some(bool all);

/* ---- tokens.c: who may open tunnels (--tokens FILE) ---- */

enum {
	TOKEN_NAME_MAX = 32,
	TOKENS_MAX = 4096,
	TOKEN_MIN_LEN = 16,  /* a token shorter than this is guessable: refused */
	TOKEN_MAX_LEN = 256,
};

struct token {
	char name[TOKEN_NAME_MAX + 1];
	uint8_t hash[32];        /* SHA-256 of the token */
	unsigned long max_conns; /* tunnels at once; 0: no limit of its own */
};
struct tokens;

/* Read a tokens file (tokens.c says its format). 0, or -errno with err naming the file, the
 * line and the fault. */
int tokens_load(const char *path, struct tokens **out, char err[static CONF_ERR_LEN]);
void tokens_free(struct tokens *ts);
unsigned tokens_count(const struct tokens *ts);
const struct token *tokens_at(const struct tokens *ts, unsigned i);
/* The index of the token with this hash, or -1. */
int tokens_find_hash(const struct tokens *ts, const uint8_t hash[static 32]);
/* SHA-256 of the token in an Authorization header's value "Bearer TOKEN". 0; -ENOENT
 * without one; -EINVAL for a malformed or out-of-bounds token. */
int tokens_hash_bearer(const char *authorization, uint8_t hash[static 32]);

/* ---- metrics.c: the --metrics listener, a small HTTP/1.x server of our own ---- */

enum {
	METRICS_CONNS_MAX = 8,  /* connections at once; more are closed at accept */
};

/* Serve /metrics and /healthz on fd (listening) from the loop. */
void metrics_start(struct ev_loop *loop, int fd);
void metrics_stop(void);
unsigned metrics_conns(void);

/* ---- wgport.c: who owns WireGuard's UDP port ---- */

enum { WGPORT_UNKNOWN = -2 }; /* not checked yet, or the check failed */

/* Open the sock_diag socket (before the sandbox). 0 or -errno. */
int wgport_open(void);
void wgport_close(void);
/* Look up --wg's owner; log a change (nothing bound, not root). */
void wgport_check(void);

/* ---- wsmask.c: client frame checks lws 4.1.6 does not make (RFC 6455 §5.1) ---- */

/* Hook the decrypted stream (an SSL_read interposer). -ENOSYS if the hook is not reached. */
int wsmask_init(void);
/* The first violation this connection committed ("unmasked frame"), or NULL. */
const char *wsmask_violation(struct lws *wsi);

/* ---- http.c: /healthz, 404s, metrics, connection admission ---- */

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len);
/* Render the Prometheus text into buf; returns its length (truncated output is cut at
 * a line boundary). */
size_t http_render_metrics(char *buf, size_t size);

#endif
