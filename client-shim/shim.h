/* SPDX-License-Identifier: MIT */
/* wgws-shim private header: one section per .c file. The shim carries the datagrams of
 * local WireGuard sources over one wss:// connection each (DESIGN.md §4). url.c and ws.c
 * are pure (no I/O, no allocation) so the unit tests can drive them; tls.c wraps
 * OpenSSL; session.c, connect.c, stream.c and udp.c run the sessions: the sockets, the
 * state machine and the data path (their shared structures: session.h); daemon.c the
 * background mode for wg-quick's hooks; netwatch.c the network's changes; main.c the command
 * line and the configuration. */
#ifndef WGWS_SHIM_H
#define WGWS_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "addr.h"
#include "frame.h"

#ifndef WGWS_VERSION
#define WGWS_VERSION "0.1.0"
#endif

enum {
	SHIM_ERR_LEN = 512,
	SHIM_PATH_MAX = 1024,     /* request target of the relay URL */
	SHIM_CRED_MAX = 256,      /* decoded "user:pass" of a proxy */
	SHIM_PIN_LEN = 32,        /* SHA-256 */
	SHIM_PIN_B64_LEN = 44,    /* base64 of 32 bytes, with one '=' */
	SHIM_PIN_MAX = 8,
	SHIM_RELAY_MAX = 8,
	SHIM_DEFAULT_KEEPALIVE_S = 15,
	SHIM_DEFAULT_MAX_SESSIONS = 64,
	SHIM_MAX_SESSIONS_LIMIT = 4096,
	SHIM_DEFAULT_PROXY_PORT = 1080, /* as curl */
	SHIM_TOKEN_MAX = 256,     /* a relay bearer token (--token-file) */
};

/* ---- url.c: relay and proxy URLs, no_proxy, pins ------------------------------------ */

/* A parsed wss://HOST[:PORT][/PATH]. */
struct shim_url {
	char host[ADDR_HOST_MAX + 1]; /* without brackets */
	uint16_t port;
	bool host_is_ip;
	bool host_is_v6;
	char path[SHIM_PATH_MAX];
};

enum proxy_scheme {
	PROXY_HTTP,    /* http://: CONNECT */
	PROXY_HTTPS,   /* https://: CONNECT inside TLS with the proxy */
	PROXY_SOCKS5,  /* socks5://: SOCKS5, the relay's name resolved here */
	PROXY_SOCKS5H, /* socks5h://: SOCKS5, the relay's name resolved by the proxy */
};

/* A parsed SCHEME://[user[:pass]@]host[:port][/]. */
struct shim_proxy {
	bool set;
	enum proxy_scheme scheme;
	char host[ADDR_HOST_MAX + 1];
	uint16_t port;
	bool host_is_ip;
	bool host_is_v6;
	char user[SHIM_CRED_MAX]; /* percent-decoded, for logs; empty without credentials */
	char cred[SHIM_CRED_MAX]; /* percent-decoded "user:pass", empty without credentials */
};

/* Parse a relay URL: scheme wss only, default port 443, default path "/wg". Returns 0 or
 * -EINVAL with a message in err. */
int url_parse_relay(const char *s, struct shim_url *u, char err[static SHIM_ERR_LEN])
	__attribute__((warn_unused_result));

/* s with the password of a user:password@ in it (if any) replaced by "***", into buf: what
 * a message may quote of a proxy URL. Returns buf. */
const char *url_mask_password(const char *s, char *buf, size_t len);

/* Parse a proxy URL: http://, https://, socks5:// or socks5h://, the port 1080 by default
 * (443 for https://), as curl; allow_bare accepts "host:port" without a scheme (http), as
 * found in environment variables. Returns 0 or -EINVAL with a message in err. */
int url_parse_proxy(const char *s, bool allow_bare, struct shim_proxy *p,
		    char err[static SHIM_ERR_LEN]) __attribute__((warn_unused_result));

/* The scheme's name as in a URL ("http", "socks5h", ...). */
const char *url_proxy_scheme(enum proxy_scheme s);

/* True when host is excluded from proxying by a no_proxy list (comma-separated, "*" = all,
 * domain-suffix match with or without a leading '.', case-insensitive, ":port" ignored;
 * an IP address also matches an entry ADDRESS/PREFIX of its family, as curl 7.86 does). */
bool url_no_proxy_matches(const char *no_proxy, const char *host);

/* Parse "sha256//BASE64" (curl's --pinnedpubkey format) into pin. Returns 0 or -EINVAL. */
int url_parse_pin(const char *s, uint8_t pin[static SHIM_PIN_LEN])
	__attribute__((warn_unused_result));

/* Format host:port into buf, bracketing IPv6 literals. Returns buf. */
const char *url_format_hostport(const char *host, bool is_v6, uint16_t port, char *buf,
				size_t bufsz);

/* ---- ws.c: HTTP upgrade and RFC 6455 client framing (pure) -------------------------- */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

enum {
	WS_HDR_MAX = 14,           /* 2 + 8 length + 4 mask */
	WS_CTL_MAX = 125,          /* control frame payload bound (RFC 6455 §5.5) */
	WS_KEY_LEN = 24,           /* base64 of 16 bytes */
	WS_ACCEPT_LEN = 28,        /* base64 of a SHA-1 */
	WS_HTTP_HDR_MAX = 8192,    /* bound on a proxy reply or an upgrade response header */
	WS_WHY_LEN = 160,
	WS_FRAME_MAX = 16 << 20,   /* largest server frame accepted; payload is streamed */
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_NO_STATUS = 1005,
};

enum ws_ev_kind {
	WS_EV_NONE,
	WS_EV_DATA,  /* data/len: a piece of a text or binary message payload */
	WS_EV_PING,  /* data/len: the ping payload (to echo in a pong) */
	WS_EV_PONG,
	WS_EV_CLOSE, /* close_code: the peer's code, or 1005 when it sent none */
};

struct ws_event {
	enum ws_ev_kind kind;
	const uint8_t *data; /* view into the input or into the parser, valid until next parse */
	size_t len;
	uint16_t close_code;
};

/* Incremental parser for server-to-client frames. Zero-initialise, then set max_frame. */
struct ws_parser {
	uint64_t max_frame;       /* bound on one frame's payload length */
	uint64_t left;            /* payload bytes left in the current frame */
	uint8_t hdr[WS_HDR_MAX];
	uint8_t hdr_have;
	uint8_t hdr_need;         /* 0 while no header is in progress */
	uint8_t opcode;           /* of the current frame */
	bool fin;
	bool in_payload;
	bool in_message;          /* a fragmented data message awaits continuation frames */
	uint8_t ctl[WS_CTL_MAX];  /* control frame payload being collected */
	uint8_t ctl_len;
};

/* Sec-WebSocket-Accept for key: base64(SHA-1(key ‖ RFC GUID)) into out (NUL-terminated). */
void ws_accept_key(const char *key, char out[static WS_ACCEPT_LEN + 1]);

/* Fill key with a fresh base64 Sec-WebSocket-Key (NUL-terminated). Returns 0 or -EIO. */
int ws_new_key(char key[static WS_KEY_LEN + 1]) __attribute__((warn_unused_result));

/* Write the upgrade request for u with key into buf, with "Authorization: Bearer token"
 * when token is not NULL. Returns its length or -ENOSPC. */
int ws_build_upgrade(char *buf, size_t bufsz, const struct shim_url *u, const char *key,
		     const char *token) __attribute__((warn_unused_result));

/* Offset just past the "\r\n\r\n" ending a header in buf[0..len), or 0 when not there yet. */
size_t ws_header_end(const uint8_t *buf, size_t len);

/* Parse the status line of an HTTP response header: *code, and in why the line without
 * its "HTTP/1.x " ("407 Proxy Authentication Required"). Returns 0 or -EPROTO. */
int ws_parse_status(const char *hdr, size_t len, int *code, char why[static WS_WHY_LEN])
	__attribute__((warn_unused_result));

/* Check a complete upgrade response header (hdr[0..len), up to and including the blank
 * line) for a 101 answer to key selecting "wgws". Returns 0, or -EPROTO with why set. */
int ws_check_upgrade(const char *hdr, size_t len, const char *key, char why[static WS_WHY_LEN])
	__attribute__((warn_unused_result));

/* Write a client frame header (FIN set, masked with mask) for a payload of len bytes into
 * out. Returns the header length (6, 8 or 14). */
size_t ws_put_hdr(uint8_t out[static WS_HDR_MAX], enum ws_opcode op, uint64_t len,
		  const uint8_t mask[static 4]);

/* XOR p[0..len) with mask, p[0] being payload byte number off. */
void ws_mask(uint8_t *p, size_t len, const uint8_t mask[static 4], size_t off);

/* Consume up to len bytes of in. Returns the bytes used, and stops right after an event
 * (*ev; WS_EV_NONE when none); -EPROTO for a frame the protocol forbids (masked, reserved
 * bits, unknown opcode, bad control frame, bad fragmentation, non-minimal length) or
 * -EMSGSIZE for a frame over max_frame. The stream is unusable after an error. */
ssize_t ws_parse(struct ws_parser *p, const uint8_t *in, size_t len, struct ws_event *ev)
	__attribute__((warn_unused_result));

/* ---- tls.c: OpenSSL context, verification, pins ------------------------------------- */

/* Build the client SSL_CTX: TLS >= 1.2; chain verified against ca_file or the system
 * store unless npins or insecure. Returns 0 or -errno with a message in err. */
int tls_ctx_open(SSL_CTX **out, const char *ca_file, unsigned npins, bool insecure,
		 char err[static SHIM_ERR_LEN]) __attribute__((warn_unused_result));

/* A client SSL on fd for u: SNI for names, host name or IP check when verify. NULL on
 * failure. */
SSL *tls_new(SSL_CTX *ctx, int fd, const struct shim_url *u, bool verify);

/* SHA-256 of cert's DER SubjectPublicKeyInfo. Returns 0 or -EINVAL. */
int tls_spki_sha256(X509 *cert, uint8_t out[static SHIM_PIN_LEN])
	__attribute__((warn_unused_result));

/* Check the peer certificate of ssl against pins. Returns 0 on a match; -EPERM on a
 * mismatch, with the server's pin in base64 in have; -ENOENT without a certificate. */
int tls_check_pin(SSL *ssl, const uint8_t (*pins)[SHIM_PIN_LEN], unsigned npins,
		  char have[static SHIM_PIN_B64_LEN + 1]) __attribute__((warn_unused_result));

/* What the relay's certificate says: its subject's and issuer's common names (or their
 * whole names when they have none), printable, and whether it issued itself. */
struct tls_peer {
	char subject[128];
	char issuer[128];
	bool self_issued;
	char pin[SHIM_PIN_B64_LEN + 1]; /* base64 of its SPKI's SHA-256, as --pin takes it */
};

/* Describe the certificate ssl's peer sent (after the handshake, or after one that failed
 * its verification). Returns 0, or -ENOENT when it sent none. */
int tls_peer_describe(SSL *ssl, struct tls_peer *out) __attribute__((warn_unused_result));

/* ---- main.c / session.c: configuration and the running shim (session.h) -------------- */

struct shim_conf {
	struct sockaddr_storage listen;
	socklen_t listen_len;
	char listen_str[ADDR_STR_LEN];
	/* --relay, repeated: tried in turn when one fails; the one that works is kept */
	struct shim_url relays[SHIM_RELAY_MAX];
	char relay_strs[SHIM_RELAY_MAX][SHIM_PATH_MAX + ADDR_HOST_MAX + 16]; /* as given */
	bool relay_direct[SHIM_RELAY_MAX]; /* no_proxy matches it: no proxy for this one */
	unsigned nrelays;
	char ca_file[4096];
	uint8_t pins[SHIM_PIN_MAX][SHIM_PIN_LEN];
	unsigned npins;
	bool insecure;
	struct shim_proxy proxy; /* the proxy in use (from --proxy or the environment) */
	char proxy_ca[4096];     /* --proxy-ca: CAs for an https:// proxy; "": the system's */
	char token[SHIM_TOKEN_MAX + 1]; /* --token-file: the relay's bearer token; "": none */
	bool no_proxy;
	unsigned keepalive_s;
	unsigned max_sessions;
	uint32_t fwmark; /* SO_MARK on the connections to the relay or proxy; 0: none */
	int family;      /* AF_INET (-4), AF_INET6 (-6) or AF_UNSPEC */
};

/* How the shim checks its way to the relays (check.c). */
enum shim_check {
	CHECK_START, /* serve, and at start connect once to the first relay and log the result */
	CHECK_ONLY,  /* --check: each relay in turn, every step on stdout, then exit */
};

struct shim;

/* Open the UDP socket, epoll, signal and resolver descriptors for conf (which must outlive
 * the shim). Returns 0 or -errno (logged). */
int shim_open(struct shim **out, const struct shim_conf *conf, SSL_CTX *ctx,
	      enum shim_check check)
	__attribute__((warn_unused_result));

/* Run the event loop until SIGINT/SIGTERM; close open sessions with 1000. Returns 0; with
 * CHECK_ONLY, when every relay has been checked: 0 when each works, 1 otherwise (or when a
 * signal stopped it first). */
int shim_run(struct shim *sh);

/* Release everything; NULL is a no-op. */
void shim_close(struct shim *sh);

/* ---- netwatch.c: address and route changes ----------------------------------------- */

/* A non-blocking rtnetlink socket that receives every address and route change: the
 * descriptor, or -errno. */
int netwatch_open(void);
/* Drain it; how many changes it held (a lost batch, ENOBUFS, counts as one). */
int netwatch_read(int fd);
/* The address and route changes in one datagram of netlink messages buf[0..len) (pure: the
 * fuzz harness's way in). Stops at the first message whose length does not fit. */
int netwatch_count(const void *buf, size_t len);

/* ---- daemon.c: in the background, for wg-quick's PreUp and PostDown ------------------ */

/* wg-quick runs PreUp before it makes the interface and waits for it: the shim must be
 * serving when that returns, and a shim that cannot start must fail the PreUp, with its
 * reason on the user's terminal. So: daemon_start() takes the pid file (an flock held for
 * the process's life: a file left by a crash never blocks a start, and a second shim on
 * the same file is refused), forks, and returns in the child; the parent waits until the
 * child calls daemon_ready() (then exits 0) or exits (then exits with its status). Until
 * daemon_ready() the child's messages go to the terminal; after it, to syslog (the
 * journal) and stdin/stdout/stderr are /dev/null, except a stderr that is a file or the
 * journal's stream (wg-quick@.service), which keeps the lines. The child removes the pid
 * file when it exits. Returns 0 in the child, or -errno with err filled (in the caller, nothing forked). */
int daemon_start(const char *pidfile, char err[static SHIM_ERR_LEN]);
void daemon_ready(void);
/* --stop PIDFILE (PostDown): SIGTERM to the shim holding pidfile, then wait (up to
 * DAEMON_STOP_WAIT_MS, then SIGKILL) until it has exited, so that `wg-quick down` leaves
 * no shim behind. No file, or a file nobody holds, is "not running" (success: a PostDown
 * must not fail for a shim that already went). Prints what it did; returns the exit status. */
int daemon_stop(const char *pidfile);
enum { DAEMON_STOP_WAIT_MS = 5000 };

/* Back-off before reconnect attempt number attempt (1, 2, …) in ms, with equal jitter from
 * rnd: grows from 250 ms and is capped at 30 s. */
uint64_t shim_backoff_ms(unsigned attempt, uint64_t rnd);

#endif
