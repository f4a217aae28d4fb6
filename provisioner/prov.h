/* SPDX-License-Identifier: MIT */
/* wgws-provisioner: private header, one section per file.
 *
 * The provisioner keeps WireGuard peers in SQLite and puts them into the device one peer at
 * a time: never a full sync, never REPLACE_PEERS, never a config file. Everything it does to
 * the device is O(1) in the number of other peers, except the GC's dump. */
#ifndef WGWS_PROV_H
#define WGWS_PROV_H

#include <linux/filter.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cidr.h"
#include "jitproto.h"

#define PROV_VERSION "0.1.0"

enum {
	WG_KEY_LEN = 32,
	WG_KEY_B64_LEN = 44,      /* standard base64 with padding, as wg(8) prints keys */
	WG_TAI64N_LEN = 12,
	PROV_MAX_ALLOWED = 8,     /* allowed IPs per peer: its addresses plus a few routes */
	PROV_NAME_MAX = 64,
	PROV_MAX_PINS = 4,        /* --relay-pin, repeated while the relay's key rotates */
	PROV_MAX_RELAYS = 8,      /* --relay-url, repeated (wgws-shim takes 8 --relay) */
	PROV_RELAY_URL_MAX = 512,
	PROV_DEFAULT_CLIENT_MTU = 1420, /* WireGuard's own default */
	PROV_CLIENT_FWMARK = 51820, /* a full tunnel's FwMark (wg-quick's own default) */
};

/* ---- key.c: key encodings ---- */

/* Standard base64 (wg(8)'s form, 44 chars) or URL-safe base64 (with or without '=') to 32
 * bytes. Returns 0 or -EINVAL (wrong alphabet or length). */
int key_from_base64(const char *s, uint8_t key[static WG_KEY_LEN]) __attribute__((warn_unused_result));
void key_to_base64(const uint8_t key[static WG_KEY_LEN], char out[static WG_KEY_B64_LEN + 1]);
/* May key be a peer's public key? -EINVAL with *why (a static phrase) when it is all zero,
 * not canonical (top bit set, or u >= 2^255 - 19), a point of small order, or device_key
 * (NULL: not known); else 0. */
int key_check_public(const uint8_t key[static WG_KEY_LEN], const uint8_t *device_key,
		     const char **why) __attribute__((warn_unused_result));
void key_to_base64url(const uint8_t key[static WG_KEY_LEN], char out[static WG_KEY_B64_LEN + 1]);

/* ---- wgdev.c: the device, behind one interface (wgnl.c = kernel, uapi.c = userspace) ---- */

enum wgdev_kind {
	WGDEV_AUTO = 0, /* netlink if the kernel has the device, else the UAPI socket */
	WGDEV_NETLINK,
	WGDEV_UAPI,
};

/* What to put into the device for one peer. */
struct wgdev_peer {
	uint8_t pubkey[WG_KEY_LEN];
	bool has_psk;
	uint8_t psk[WG_KEY_LEN];
	struct sockaddr_storage endpoint; /* ss_family == 0: leave unset */
	int keepalive_s;                  /* -1: leave as is; 0: off; 1..65535 */
	unsigned n_allowed;
	struct cidr allowed[PROV_MAX_ALLOWED];
};

/* What a dump reports for one installed peer, the same whatever the backend. */
struct wgdev_peer_info {
	uint8_t pubkey[WG_KEY_LEN];
	int64_t last_handshake_s; /* unix time (CLOCK_REALTIME) of the last handshake, 0 = never */
	uint64_t rx_bytes, tx_bytes;
	struct sockaddr_storage endpoint; /* ss_family 0 when unknown */
	uint16_t keepalive_s;
	unsigned n_allowed;       /* may exceed PROV_MAX_ALLOWED; only that many are kept */
	struct cidr allowed[PROV_MAX_ALLOWED];
};

struct wgdev_info {
	uint8_t public_key[WG_KEY_LEN];
	bool has_public_key;
	uint16_t listen_port;
	uint32_t ifindex;          /* 0 when the backend does not know it (UAPI) */
};

/* Called once per peer in a dump; return 0 to go on, anything else stops the dump and is
 * returned by wgdev_dump(). */
typedef int (*wgdev_peer_fn)(void *arg, const struct wgdev_peer_info *peer);

struct wgdev_ops {
	const char *name; /* "netlink" or "uapi" */
	/* Create the peer, or make an existing one exactly this (replace its allowed IPs). */
	int (*install)(void *impl, const struct wgdev_peer *p);
	/* Change endpoint/keepalive/psk of an existing peer; never creates it (0 if absent). */
	int (*update)(void *impl, const struct wgdev_peer *p);
	/* Remove these peers (absent ones are not an error). n is small (a GC batch). */
	int (*remove)(void *impl, const uint8_t (*keys)[WG_KEY_LEN], unsigned n);
	/* Every installed peer, to fn. Tolerates a dump interrupted by concurrent changes
	 * (reports what it got, once; no retry loop). */
	int (*dump)(void *impl, wgdev_peer_fn fn, void *arg);
	/* Device facts; private_key may be NULL, else receives the device's private key
	 * (-ENOKEY when the backend cannot read it). */
	int (*get_info)(void *impl, struct wgdev_info *info, uint8_t *private_key);
	void (*close)(void *impl);
};

struct wgdev {
	const struct wgdev_ops *ops;
	void *impl;
	char ifname[IF_NAMESIZE];
};

/* Open the device ifname with the given backend. AUTO tries netlink, then UAPI. Returns 0,
 * -ENODEV (no such WireGuard device on either), -EPROTONOSUPPORT (no kernel WireGuard and
 * no UAPI socket), or another -errno. */
int wgdev_open(struct wgdev **out, const char *ifname, enum wgdev_kind kind,
	       const char *uapi_dir) __attribute__((warn_unused_result));
void wgdev_close(struct wgdev *dev); /* NULL-safe */

static inline int wgdev_install(struct wgdev *d, const struct wgdev_peer *p)
{
	return d->ops->install(d->impl, p);
}
static inline int wgdev_update(struct wgdev *d, const struct wgdev_peer *p)
{
	return d->ops->update(d->impl, p);
}
static inline int wgdev_remove(struct wgdev *d, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	return d->ops->remove(d->impl, keys, n);
}
static inline int wgdev_dump(struct wgdev *d, wgdev_peer_fn fn, void *arg)
{
	return d->ops->dump(d->impl, fn, arg);
}
static inline int wgdev_get_info(struct wgdev *d, struct wgdev_info *info, uint8_t *private_key)
{
	return d->ops->get_info(d->impl, info, private_key);
}

/* ---- wgnl.c: kernel WireGuard over generic netlink (libmnl) ---- */

extern const struct wgdev_ops wgnl_ops;
/* -EPROTONOSUPPORT when the kernel has no "wireguard" genl family, -ENODEV when ifname is
 * not a WireGuard device. */
int wgnl_open(void **impl, const char *ifname) __attribute__((warn_unused_result));

/* Message builders, exposed for unit tests: write one complete netlink message into buf
 * (NLM_F_REQUEST|NLM_F_ACK) and return its length, or -EMSGSIZE when it does not fit.
 * set_peer: SET_DEVICE { IFNAME; PEERS { one peer, flags } }. */
ssize_t wgnl_build_set_peer(void *buf, size_t size, uint16_t family, uint32_t seq,
			    const char *ifname, const struct wgdev_peer *p, uint32_t peer_flags);
ssize_t wgnl_build_remove(void *buf, size_t size, uint16_t family, uint32_t seq,
			  const char *ifname, const uint8_t (*keys)[WG_KEY_LEN], unsigned n);
ssize_t wgnl_build_dump(void *buf, size_t size, uint16_t family, uint32_t seq, const char *ifname);
/* The dump parser of wgnl_ops' dump and get_info, over datagrams already received (for the
 * fuzzer and the unit tests): datagram i is dgram[i][0..len[i]), aligned as malloc aligns,
 * holding replies to (portid, seq) from family. Device facts go to info (NULL: not wanted),
 * the private key to private_key (NULL: not wanted; -ENOKEY when the dump has none), each peer
 * to fn (NULL: checked only) once, as a dump does. Returns what those return, -ETIMEDOUT when
 * the datagrams end before NLMSG_DONE, -EMSGSIZE for one over the socket's 32 KiB buffer. */
int wgnl_parse_dump(const void *const *dgram, const size_t *len, unsigned n, uint16_t family,
		    uint32_t portid, uint32_t seq, struct wgdev_info *info, uint8_t *private_key,
		    wgdev_peer_fn fn, void *arg);

/* ---- uapi.c: wireguard-go / boringtun over /var/run/wireguard/IFNAME.sock ---- */

extern const struct wgdev_ops uapi_ops;
/* dir: where IFNAME.sock lives (NULL = /var/run/wireguard). -ENODEV when there is no socket. */
int uapi_open(void **impl, const char *ifname, const char *dir) __attribute__((warn_unused_result));

/* Text builders/parsers, exposed for unit tests. format_*: the whole request including the
 * final empty line; returns its length or -EMSGSIZE. */
ssize_t uapi_format_set_peer(char *buf, size_t size, const struct wgdev_peer *p, bool update_only);
ssize_t uapi_format_remove(char *buf, size_t size, const uint8_t (*keys)[WG_KEY_LEN], unsigned n);
/* Parse a complete get=1 reply (up to and including "errno=N\n\n"): device facts to info
 * (and the private key when present and private_key != NULL), each peer to fn. Returns 0,
 * the device's -errno (sign normalised: wireguard-go sends -22, boringtun 22), or -EBADMSG. */
int uapi_parse_get(const char *text, size_t len, struct wgdev_info *info, uint8_t *private_key,
		   wgdev_peer_fn fn, void *arg);
/* Parse a set reply "errno=N\n\n": 0 or -|N|, -EBADMSG when malformed. */
int uapi_parse_errno(const char *text, size_t len);

/* ---- store.c: the peer store (SQLite, WAL, one writer) ---- */

struct store;

struct store_pool {
	bool has_ip4;
	uint32_t ip4_first, ip4_last; /* host order, inclusive: the addresses handed out */
	bool has_ip6;
	uint8_t ip6_prefix[8];        /* a /64; the host part is derived from the key */
	unsigned hold_down_s;         /* a released IPv4 address waits this long (>= 180) */
};

struct store_peer {
	uint8_t pubkey[WG_KEY_LEN];
	bool has_ip4;
	uint32_t ip4;                 /* host order */
	bool has_ip6;
	uint8_t ip6[16];
	bool has_psk;
	uint8_t psk[WG_KEY_LEN];
	uint16_t keepalive_s;
	char name[PROV_NAME_MAX + 1];
	unsigned n_routes;            /* extra allowed IPs given at creation */
	struct cidr routes[PROV_MAX_ALLOWED - 2];
	int64_t created_at;           /* unix seconds */
	int64_t expires_at;           /* 0 = never */
	int64_t last_seen;            /* last handshake the GC saw, 0 = never */
	int64_t installed_at;         /* 0 = not in the device */
	bool has_last_ts;
	uint8_t last_ts[WG_TAI64N_LEN]; /* highest accepted TAI64N (JIT replay guard) */
};

typedef int (*store_peer_fn)(void *arg, const struct store_peer *p);

/* Open (creating if needed) the database at path; pool is copied. err gets a message on
 * failure, and on success a warning for the log or "" (stored allowed IPs that overlap, from
 * before they were refused). Returns 0 or -errno (-EINVAL for a pool that conflicts with the
 * stored one). */
int store_open(struct store **out, const char *path, const struct store_pool *pool,
	       char *err, size_t errlen) __attribute__((warn_unused_result));
void store_close(struct store *st); /* NULL-safe */
/* SQLite's words for the last call's failure (message, result code, errno), for the log;
 * "" when that call did not fail in SQLite. Valid until the next store call. */
const char *store_errmsg(const struct store *st);

/* Insert p (pubkey, psk, keepalive, name, routes, expires_at set by the caller), allocating
 * its addresses in the same transaction; fills ip4/ip6/created_at. Durable on return.
 * -EEXIST: the key is stored already; -EADDRNOTAVAIL: the IPv4 pool is exhausted;
 * -EADDRINUSE: a route of p, or an address it would get, overlaps another peer's allowed IPs
 * (store_last_conflict says which); -EINVAL: p's routes overlap each other (or are not
 * canonical); -ENOSPC: the disk is full (SQLITE_FULL), like every other store function. */
int store_create(struct store *st, struct store_peer *p, int64_t now)
	__attribute__((warn_unused_result));
struct store_conflict {
	struct cidr mine;      /* the new peer's route, or an address it would get */
	bool mine_is_address;
	struct cidr theirs;    /* what it overlaps: a route, or a host route for an address */
	uint8_t pubkey[WG_KEY_LEN]; /* of the stored peer that has it */
};
/* After store_create's -EADDRINUSE: what overlapped (zeroed after any other result). */
const struct store_conflict *store_last_conflict(const struct store *st);
int store_get(struct store *st, const uint8_t key[static WG_KEY_LEN], struct store_peer *out);
/* Delete the peer; its IPv4 address is reusable after the hold-down. -ENOENT if absent. */
int store_delete(struct store *st, const uint8_t key[static WG_KEY_LEN], int64_t now);
/* Up to limit peers in key order, strictly after `after` (NULL: from the first). Returns the
 * number delivered or -errno. */
int store_list(struct store *st, const uint8_t *after, unsigned limit, store_peer_fn fn,
	       void *arg);
/* Record that the peer is in the device since `installed_at` (0: removed from it). */
int store_set_installed(struct store *st, const uint8_t key[static WG_KEY_LEN], int64_t installed_at);
/* Record handshake times the GC saw (batched by the caller in one transaction). */
int store_set_last_seen(struct store *st, const uint8_t key[static WG_KEY_LEN], int64_t last_seen);
/* Accept ts only if strictly newer than the stored one: 0, or -EALREADY (replay/old). */
int store_accept_timestamp(struct store *st, const uint8_t key[static WG_KEY_LEN],
			   const uint8_t ts[static WG_TAI64N_LEN]);
/* Peers whose expires_at <= now, oldest first, at most limit. */
int store_list_expired(struct store *st, int64_t now, unsigned limit, store_peer_fn fn, void *arg);
/* Peers marked installed, at most limit, oldest installed_at first. */
int store_list_installed(struct store *st, unsigned limit, store_peer_fn fn, void *arg);
int store_count(struct store *st, uint64_t *stored, uint64_t *installed);
/* Group several writes into one transaction (GC batches). */
int store_begin(struct store *st);
int store_commit(struct store *st);
/* Checkpoint the WAL (the writer calls this off the hot path; truncate now and then). */
int store_checkpoint(struct store *st, bool truncate);

/* Cache mode (--source, source.c): peers come with their addresses from the source; the
 * store allocates and frees none. */
void store_set_cache(struct store *st);
/* Insert or replace p as the source has it (addresses, created_at, expiry: the caller's).
 * A row it replaces keeps its installed mark, last_seen and replay guard; a cached row of
 * another key that holds one of its addresses is stale (the source gave the address on) and
 * goes: its key in displaced (at most 2, *n_displaced), for the caller to take out of the
 * device. 0 or -errno. */
int store_cache_put(struct store *st, const struct store_peer *p,
		    uint8_t displaced[static 2][WG_KEY_LEN], unsigned *n_displaced)
	__attribute__((warn_unused_result));
/* The source's change log: the last seq this cache applied (0: none yet). */
int store_source_seq(struct store *st, int64_t *seq);
int store_set_source_seq(struct store *st, int64_t seq);

/* ---- ckpt.c: WAL checkpoints off the event loop ---- */

/* A thread with its own connection to the database at db_path. Returns 0 or -errno. */
int ckpt_start(const char *db_path) __attribute__((warn_unused_result));
/* There were writes: checkpoint within a second (cheap: one atomic store). */
void ckpt_kick(void);
void ckpt_stop(void); /* joins the thread; safe when it never started */
/* Totals, and the WAL's frames and the frames copied back by the last checkpoint. */
void ckpt_stats(uint64_t *runs, uint64_t *failures, double *seconds_sum, double *seconds_max,
		int *wal_frames, int *copied_frames);

/* ---- noise.c: a handshake initiation as the responder sees it (no I/O, no allocation) ---- */

enum {
	NOISE_INITIATION_LEN = 148,
	NOISE_MAC_LEN = 16,
};

/* X25519 with the responder's private key: out = DH(private key, pub). Returns 0, -EINVAL
 * when the result is all zero (pub is of low order), or another -errno (e.g. -EIO: the
 * privileged process is gone). out is meaningful only on 0. */
typedef int (*noise_dh_fn)(void *arg, uint8_t out[static WG_KEY_LEN],
			   const uint8_t pub[static WG_KEY_LEN]);

/* What the responder precomputes from its public key, and how it reaches its private key:
 * through dh, so that the key may live in another process (priv.c). local_key is used only
 * by noise_responder_init_local (tests, tools, benches) and is all zero otherwise. Wipe it. */
struct noise_responder {
	uint8_t public_key[WG_KEY_LEN];
	uint8_t mac1_key[WG_KEY_LEN];  /* HASH("mac1----" || public_key) */
	uint8_t hash0[WG_KEY_LEN];     /* HASH(H0 || public_key) */
	noise_dh_fn dh;
	void *dh_arg;
	uint8_t local_key[WG_KEY_LEN];
};

enum noise_result {
	NOISE_OK = 0,
	NOISE_NOT_INITIATION, /* not 148 bytes starting 01 00 00 00 */
	NOISE_BAD_MAC1,       /* checked first, before any public-key work */
	NOISE_BAD_STATIC,     /* the static key does not decrypt, or a key is low-order */
	NOISE_BAD_TIMESTAMP,  /* the encrypted timestamp does not decrypt */
	NOISE_ERROR,          /* a library call failed */
};

struct noise_initiation {
	uint32_t sender_index;      /* protected by mac1 only, as in the kernel */
	uint8_t initiator_public[WG_KEY_LEN];
	uint8_t timestamp[WG_TAI64N_LEN]; /* TAI64N, big-endian: memcmp orders it */
};

/* Precompute for this public key; every DH with the private key goes to dh(dh_arg, ...).
 * Returns 0, -EINVAL (an all-zero key) or -EIO. */
int noise_responder_init(struct noise_responder *r, const uint8_t public_key[static WG_KEY_LEN],
			 noise_dh_fn dh, void *dh_arg) __attribute__((warn_unused_result));
/* The same with the private key kept in r itself (r->local_key) and a local X25519. */
int noise_responder_init_local(struct noise_responder *r,
			       const uint8_t private_key[static WG_KEY_LEN])
	__attribute__((warn_unused_result));
/* noise_dh_fn over a 32-byte private key at arg (crypto_scalarmult). */
int noise_dh_local(void *arg, uint8_t out[static WG_KEY_LEN], const uint8_t pub[static WG_KEY_LEN]);
void noise_responder_wipe(struct noise_responder *r);
/* mac1 alone (cheap: one keyed BLAKE2s): true when msg is an initiation with a valid mac1. */
bool noise_mac1_ok(const struct noise_responder *r, const uint8_t *msg, size_t len);
/* Check mac1, recover the initiator's static key, decrypt the timestamp. out is written only
 * on NOISE_OK; every intermediate secret is wiped whatever the result. */
enum noise_result noise_decode_initiation(const struct noise_responder *r, const uint8_t *msg,
					  size_t len, struct noise_initiation *out);
/* The same in two steps, so a caller can stop after the cheap one or bring the static-static
 * secret from a cache. noise_open_static checks mac1, then opens the initiator's static key
 * (one X25519); on NOISE_OK, h holds the handshake state (secrets: noise_half_wipe it) and
 * the key; otherwise h is wiped. noise_open_timestamp goes on with ss = DH(our private key,
 * the initiator's key) from noise_static_secret (NULL: computed here, a second X25519).
 * noise_static_secret returns r->dh's result: 0, -EINVAL (low order) or another -errno. */
struct noise_half {
	uint8_t chain[32], hash[32];
	uint8_t initiator_public[WG_KEY_LEN];
	uint32_t sender_index;
};
enum noise_result noise_open_static(const struct noise_responder *r, const uint8_t *msg,
				    size_t len, struct noise_half *h);
int noise_static_secret(const struct noise_responder *r,
			const uint8_t initiator_public[static WG_KEY_LEN],
			uint8_t ss[static WG_KEY_LEN]);
enum noise_result noise_open_timestamp(const struct noise_responder *r, struct noise_half *h,
				       const uint8_t *msg, const uint8_t *ss,
				       uint8_t ts[static WG_TAI64N_LEN]);
void noise_half_wipe(struct noise_half *h);
/* The initiator's side, for tests and load tools: build a valid initiation (mac2 zero) from
 * the initiator's private key to the responder's public key. Returns 0, -EINVAL (e.g. a
 * low-order responder key; out is zeroed) or -EIO. */
int noise_create_initiation(const uint8_t initiator_private[static WG_KEY_LEN],
			    const uint8_t responder_public[static WG_KEY_LEN],
			    const uint8_t timestamp[static WG_TAI64N_LEN], uint32_t sender_index,
			    uint8_t out[static NOISE_INITIATION_LEN]);
/* TAI64N of the current wall clock. */
void noise_tai64n_now(uint8_t out[static WG_TAI64N_LEN]);

enum { PROV_HIST_BUCKETS = 12 };

/* A latency histogram in Prometheus form (seconds). */
struct hist {
	uint64_t bucket[PROV_HIST_BUCKETS];
	uint64_t count;
	double sum;
};
void hist_observe(struct hist *h, double seconds);   /* api.c, with the metrics */
double hist_bound(unsigned i);                      /* upper bound of bucket i; -1 for +Inf */

struct lws_protocols;

/* ---- capture.c: copies of handshake initiations arriving over plain UDP (AF_PACKET) ---- */

/* No event loop here: open, filter, read, parse. Needs CAP_NET_RAW. */
enum { CAPTURE_FILTER_MAX = 32 };
/* The classic BPF program that keeps UDP datagrams to port (IPv4 or IPv6 without extension
 * headers) whose UDP length is 156 and whose payload starts 01 00 00 00, for a socket that
 * sees packets from the network header on (AF_PACKET, SOCK_DGRAM). Writes at most
 * CAPTURE_FILTER_MAX instructions; returns how many. */
unsigned capture_filter(uint16_t port, struct sock_filter prog[static CAPTURE_FILTER_MAX]);
/* An AF_PACKET SOCK_DGRAM socket on ifname, non-blocking, incoming packets only, with the
 * filter attached before it is bound (nothing unfiltered is ever queued). Returns the fd
 * or -errno (-EPERM without CAP_NET_RAW, -ENODEV for an unknown interface). */
int capture_open(const char *ifname, uint16_t port) __attribute__((warn_unused_result));
/* Check one packet as the socket delivers it (starting at the IPv4/IPv6 header) as the
 * filter should have, every length included: on success *msg points at the 148-byte
 * initiation inside pkt and *src is the sender's address and port. Returns 0 or -EINVAL. */
int capture_parse(const uint8_t *pkt, size_t len, uint16_t port, const uint8_t **msg,
		  struct sockaddr_storage *src) __attribute__((warn_unused_result));
typedef void (*capture_fn)(void *arg, const uint8_t *msg, const struct sockaddr_storage *src);
/* Read up to max packets without blocking, each good one to fn. Returns the number of
 * packets read (good or not), or -errno other than EAGAIN. *bad counts the ones that
 * failed capture_parse. */
int capture_drain(int fd, uint16_t port, unsigned max, capture_fn fn, void *arg,
		  uint64_t *bad);

/* ---- jitlimit.c: bounded work per client, before any public-key work (jit.c uses it) ---- */

/* A client address or a tunnel's source, as bytes to hash and compare. */
enum { JITLIMIT_ID_LEN = 20 };
struct jitlimit_id {
	uint8_t b[JITLIMIT_ID_LEN]; /* family, port (0 for a client), address (zero-padded) */
};

struct jitlimit_cfg {
	unsigned replay_slots;  /* initiations remembered (a power of two) */
	unsigned sketch_cells;  /* token buckets in each of the sketch's two rows (power of two) */
	unsigned live_slots;    /* sources answered installed/live remembered (power of two) */
	double replay_ttl_s;    /* how long a decided initiation is remembered at most */
	double live_ttl_s;      /* how long a source answered installed/live passes */
	double rate, burst;     /* per client address: tokens per second, bucket size (>= 1) */
	double budget, budget_burst; /* decisions with public-key work: per second, at once */
	const uint8_t *hash_key; /* crypto_shorthash_KEYBYTES bytes; NULL: random (tests fix it) */
};

/* What a decided initiation would be again; the answer jit.c gives from memory. */
enum jitlimit_seen {
	JITLIMIT_SEEN_REPLAY = 1, /* its timestamp was accepted (or was old): a replay, refused */
	JITLIMIT_SEEN_UNKNOWN,    /* no such stored key: unknown while the negative cache agrees */
	JITLIMIT_SEEN_BAD,        /* its static key or timestamp does not open: refused */
};

enum jitlimit_recall {
	JITLIMIT_MISS = 0,
	JITLIMIT_HIT,    /* the same handshake again (sender index and MACs aside) */
	JITLIMIT_FORGED, /* a remembered ephemeral, other encrypted bytes: never a real client */
};

enum jitlimit_admit {
	JITLIMIT_ADMIT = 0,   /* go on with the public-key work: one budget token was taken */
	JITLIMIT_SHED_RATE,   /* the client address is over its rate: refuse */
	JITLIMIT_SHED_BUDGET, /* over the global budget, and the source is not known live: refuse */
	JITLIMIT_PASS_LIVE,   /* over the budget, but the source was answered live lately */
};

struct jitlimit;

/* Allocate every table now (nothing later). -EINVAL for a size that is not a power of two
 * or a rate, burst or budget below 1; -ENOMEM. */
int jitlimit_open(struct jitlimit **out, const struct jitlimit_cfg *cfg)
	__attribute__((warn_unused_result));
void jitlimit_close(struct jitlimit *l); /* NULL-safe */
/* A client's identity: the address without the port, an IPv6 address by its /64, an
 * IPv4-mapped IPv6 address as the IPv4 one. A source's: the exact address and port. Any
 * other family gives the all-zero id (one shared bucket). */
void jitlimit_id_client(struct jitlimit_id *id, const struct sockaddr_storage *ss);
void jitlimit_id_source(struct jitlimit_id *id, const struct sockaddr_storage *ss);
/* Has this initiation (NOISE_INITIATION_LEN bytes, mac1 already checked) been decided
 * lately? On JITLIMIT_HIT, *seen and key (zero for JITLIMIT_SEEN_BAD without a key) say
 * what it was. Two keyed hashes; no public-key work. */
enum jitlimit_recall jitlimit_recall(struct jitlimit *l, const uint8_t *msg, double now,
				     enum jitlimit_seen *seen, uint8_t key[static WG_KEY_LEN]);
/* Remember a decision until now + ttl_s (capped at replay_ttl_s), evicting the slot's
 * previous entry. key may be NULL (a static key that did not open). */
void jitlimit_remember(struct jitlimit *l, const uint8_t *msg, enum jitlimit_seen seen,
		       const uint8_t *key, double now, double ttl_s);
/* May an initiation from this client, through this source, have public-key work? Takes a
 * token from the client's buckets, then one from the budget. On JITLIMIT_PASS_LIVE, key
 * gets the key the source was last answered for. */
enum jitlimit_admit jitlimit_admit(struct jitlimit *l, const struct jitlimit_id *client,
				   const struct jitlimit_id *source, double now,
				   uint8_t key[static WG_KEY_LEN]);
/* The source was just answered installed or live for key (after the public-key work). */
void jitlimit_mark_live(struct jitlimit *l, const struct jitlimit_id *source,
			const uint8_t key[static WG_KEY_LEN], double now);

/* ---- jit.c: the just-in-time decision, the relay channel, the capture path ---- */

enum jit_path {
	JIT_PATH_RELAY,   /* asked by wgws-relay over --jit-socket */
	JIT_PATH_CAPTURE, /* seen on --capture IFNAME */
	JIT_PATH_MAX,
};

struct jit_stats {
	uint64_t initiations[JIT_PATH_MAX];
	uint64_t mac1_failures;   /* wrong mac1: not for this gateway, or garbage */
	uint64_t bad_initiations; /* mac1 fine but the static key or timestamp does not open */
	uint64_t unknown_keys;    /* no such stored peer, or expired (negative cache hits too) */
	uint64_t negative_hits;   /* of which answered from the negative cache */
	uint64_t replays;         /* timestamp not newer than the stored one (recalled too) */
	uint64_t rate_limited;    /* client address over --jit-rate: no public-key work */
	uint64_t budget_shed;     /* over --jit-budget: refused, no public-key work */
	uint64_t budget_passed;   /* over --jit-budget, but from a source live lately: "live" */
	/* Answered from jitlimit.c's memory of decided initiations, by what it was then (also
	 * counted under replays, unknown_keys or bad_initiations), or forged. */
	uint64_t recalled_replays, recalled_unknown, recalled_bad, recalled_forged;
	uint64_t installs;        /* peers put into the device on demand */
	uint64_t already_live;
	uint64_t errors;          /* device or store failures */
	uint64_t relay_conns, relay_refused, relay_protocol_errors, answers_dropped;
	uint64_t capture_bad;     /* captured packets that failed capture_parse */
	struct hist latency;      /* initiation received -> peer live (installs only) */
};

/* Start the JIT machinery the configuration asks for: the --jit-socket listener, the
 * --capture socket; reads the device's private key (fatal when it cannot). */
void jit_start(void);
void jit_stop(void);
/* What jit_start does before any socket: the device's key and the caches (for tools that
 * call jit_decide without an event loop). prov.dev and prov.store must be open. */
int jit_init(void);
/* Decide on one initiation (no I/O but the store and the device). `client` is whose rate it
 * counts against (the relay tunnel's client address; the sender for a capture; NULL or
 * family 0: the source). `source` is what WireGuard sees it come from (the relay's UDP
 * socket for the tunnel; the sender), the key of the over-budget pass and, on the capture
 * path, the endpoint to install so the device initiates back. t0 is when it was received
 * (prov_now_s()). key (NULL: not wanted) receives the initiator's public key once it is
 * known, and stays all zero when it is not. */
enum jit_verdict jit_decide(const uint8_t *msg, size_t len, const struct sockaddr_storage *client,
			    const struct sockaddr_storage *source, enum jit_path path, double t0,
			    uint8_t *key);
/* The lws protocol of the raw descriptors above; api_protocols() lists it. */
const struct lws_protocols *jit_protocol(void);
/* A peer was just created: forget it was unknown. */
void jit_forget(const uint8_t key[static WG_KEY_LEN]);

/* ---- priv.c, privsep.c: the privileged half (OpenBSD privsep style) and the engine's end ----
 *
 * A small process forked before the engine reads any network input. It keeps the device
 * (CAP_NET_ADMIN) and the device's private key, and does only: device operations on one
 * peer, a dump, device facts (never the key), X25519 with the key, re-reading the key, and
 * opening the --capture socket (the descriptor is passed back with SCM_RIGHTS). The engine
 * (API, JSON, SQLite, JIT policy, GC, capture parsing) asks over a SOCK_SEQPACKET
 * socketpair, one request at a time, and waits for the answer.
 *
 * Every message is a struct priv_hdr and a body whose size the op fixes; hdr.len is the
 * whole message's size, hdr.seq the request's, echoed in its answer(s); hdr.result is 0 or
 * -errno in answers and 0 in requests. No padding anywhere (asserted), and every reserved
 * byte, unused allowed-IP slot, unused psk and unused key slot must be zero: the privileged
 * side checks sizes, op, ranges and zeros, and exits (fatalx "priv: ...") on a message that
 * lies. A broken or lying answer ends the engine the same way. Answers are built in zeroed
 * memory, field by field: nothing but the fields leaves the privileged process.
 *
 *   request (body)                      answer (body)
 *   INSTALL, UPDATE (priv_peer)          INSTALL, UPDATE (none)
 *   REMOVE (priv_remove)                 REMOVE (none)
 *   DUMP (none)                          DUMP_PEER (priv_peer_info) per peer, then DUMP (none)
 *   GET_INFO (none)                      GET_INFO (priv_info)
 *   DH (priv_key: a public point)        DH (priv_key: the shared point; zero unless result 0;
 *                                        -EINVAL for a low-order point, -ENOKEY without a key)
 *   RELOAD_KEY (none)                    RELOAD_KEY (priv_info: the device, and the public key
 *                                        of the private key now held)
 *   CAPTURE_OPEN (priv_ifname)           CAPTURE_OPEN (none), with the fd when result is 0;
 *                                        -EPERM for an interface not given at start */
enum priv_op {
	PRIV_INSTALL = 1,
	PRIV_UPDATE,
	PRIV_REMOVE,
	PRIV_DUMP,
	PRIV_GET_INFO,
	PRIV_DH,
	PRIV_RELOAD_KEY,
	PRIV_CAPTURE_OPEN,
	PRIV_OP_MAX,
	PRIV_DUMP_PEER = 0x100, /* answers only */
};

enum {
	PRIV_REMOVE_MAX = 64, /* keys per REMOVE; privsep_ops splits larger batches */
};

struct priv_hdr {
	uint32_t op;
	uint32_t len;
	uint32_t seq;
	int32_t result;
};

struct priv_peer {
	uint8_t pubkey[WG_KEY_LEN];
	uint8_t psk[WG_KEY_LEN];          /* all zero unless has_psk */
	uint8_t has_psk;                  /* 0 or 1 */
	uint8_t n_allowed;                /* <= PROV_MAX_ALLOWED; later slots all zero */
	uint16_t reserved;
	int32_t keepalive_s;              /* -1..65535 */
	struct sockaddr_storage endpoint; /* AF_UNSPEC (then all zero), AF_INET or AF_INET6 */
	struct cidr allowed[PROV_MAX_ALLOWED]; /* AF_INET /0-32 or AF_INET6 /0-128 */
};

struct priv_remove {
	uint32_t n; /* 1..PRIV_REMOVE_MAX; keys past n all zero */
	uint32_t reserved;
	uint8_t keys[PRIV_REMOVE_MAX][WG_KEY_LEN];
};

struct priv_peer_info {
	uint8_t pubkey[WG_KEY_LEN];
	int64_t last_handshake_s;
	uint64_t rx_bytes, tx_bytes;
	struct sockaddr_storage endpoint;
	uint32_t keepalive_s;
	uint32_t n_allowed;               /* as the device says; allowed holds the first 8 */
	struct cidr allowed[PROV_MAX_ALLOWED];
};

struct priv_info {
	uint8_t public_key[WG_KEY_LEN];
	uint8_t has_public_key;           /* 0 or 1 */
	uint8_t reserved;
	uint16_t listen_port;
	uint32_t ifindex;
};

struct priv_key {
	uint8_t key[WG_KEY_LEN];
};

struct priv_ifname {
	char name[IF_NAMESIZE];           /* NUL-terminated, zero after the NUL */
};

/* Whole messages: the header and the op's body. */
struct priv_peer_msg {
	struct priv_hdr h;
	struct priv_peer p;
};
struct priv_remove_msg {
	struct priv_hdr h;
	struct priv_remove r;
};
struct priv_dump_msg {
	struct priv_hdr h;
	struct priv_peer_info p;
};
struct priv_info_msg {
	struct priv_hdr h;
	struct priv_info i;
};
struct priv_key_msg {
	struct priv_hdr h;
	struct priv_key k;
};
struct priv_ifname_msg {
	struct priv_hdr h;
	struct priv_ifname n;
};

union priv_msg {
	struct priv_hdr h;
	struct priv_peer_msg peer;
	struct priv_remove_msg remove;
	struct priv_dump_msg dump;
	struct priv_info_msg info;
	struct priv_key_msg key;
	struct priv_ifname_msg ifname;
};

/* The size of op's request, or of its answer (answer: true; PRIV_DUMP_PEER is an answer
 * only); 0 when there is no such message. */
size_t priv_msg_len(uint32_t op, bool answer);
/* How long either side polls for the other's next message before it sleeps (µs). The two
 * processes are not pinned, and a round trip that wakes a sleeping CPU both ways cost a DH
 * ~150 µs here (a JIT decision 210 µs instead of 55: make jit-bench JIT_BENCH_ARGS="-q -s");
 * a DH's answer comes within ~50 µs, and a burst's next request as soon. */
enum { PRIV_SPIN_US = 150 };
/* recvmsg on a SOCK_SEQPACKET socket, polling for PRIV_SPIN_US before it blocks. */
ssize_t priv_recvmsg(int fd, struct msghdr *mh, int flags);
enum { PRIV_WHY_LEN = 128 };
/* Check a request of n bytes as received, before anything is done with it: 0, or -EBADMSG
 * with the lie described in why (the privileged process then exits). Pure: no I/O. */
int priv_check_request(const union priv_msg *m, size_t n, char why[static PRIV_WHY_LEN])
	__attribute__((warn_unused_result));
/* A checked request's peer into the device's form (the privileged side), and the device's
 * form into a request's (the engine; n_allowed must be <= PROV_MAX_ALLOWED; w is zeroed).
 * An honest engine's messages pass priv_check_request, and a message that passes is exactly
 * what priv_peer_to_wire makes of priv_peer_from_wire's peer. */
void priv_peer_from_wire(const struct priv_peer *w, struct wgdev_peer *p);
void priv_peer_to_wire(const struct wgdev_peer *p, struct priv_peer *w);
/* Only the bytes that mean something, into zeroed memory: the rest of a sockaddr_storage or
 * of an IPv4 prefix's address may hold whatever the writer's stack held. */
void priv_copy_endpoint(struct sockaddr_storage *dst, const struct sockaddr_storage *src);
void priv_copy_cidr(struct cidr *dst, const struct cidr *src);

struct priv;

/* The privileged loop: serve requests on fd with dev until the engine closes its end, then
 * wipe the key and return 0 (dev stays the caller's to close). Reads the device's key
 * first (none is not an error: DH answers -ENOKEY until a RELOAD_KEY finds one).
 * capture_if: the one interface a capture may be opened on (NULL or "": none). Exits the
 * process (fatalx) on a request priv_check_request refuses. */
int priv_serve(int fd, struct wgdev *dev, const char *capture_if);
/* Fork the privileged process over a new socketpair: the child runs priv_serve and exits;
 * the parent gets the engine's end in *out and must close its own copy of dev. Returns 0
 * or -errno. */
int priv_start(struct priv **out, struct wgdev *dev, const char *capture_if)
	__attribute__((warn_unused_result));
/* The engine's end over fd, connected to a priv_serve in process pid (0: not ours to wait
 * for). Takes fd. */
int priv_attach(struct priv **out, int fd, pid_t pid) __attribute__((warn_unused_result));
/* The privileged process (0 when p was attached to an fd). */
pid_t priv_pid(const struct priv *p);
/* True when the privileged process closed its end or sent something unasked (a lie):
 * checked between requests, without blocking. */
bool priv_is_gone(struct priv *p);
/* Close the channel (the privileged process then exits) and wait for it. NULL-safe. */
void priv_close(struct priv *p);
/* A struct wgdev whose operations go to p; wgdev_close() on it calls priv_close(p).
 * get_info refuses to return a private key (-EPERM). Its ops are privsep_ops, named
 * after the privileged process's backend ("netlink", "uapi") when priv_start made p. */
extern const struct wgdev_ops privsep_ops;
int priv_open_device(struct wgdev **out, struct priv *p, const char *ifname)
	__attribute__((warn_unused_result));
/* noise_dh_fn for a struct priv *: X25519 with the device's key, in the privileged process. */
int priv_dh(void *p, uint8_t out[static WG_KEY_LEN], const uint8_t pub[static WG_KEY_LEN]);
/* Re-read the device's key there; info gets the device and the key's public half. */
int priv_reload_key(struct priv *p, struct wgdev_info *info) __attribute__((warn_unused_result));
/* The capture socket on ifname (capture_open's, for the device's listen port): an fd or
 * -errno. */
int priv_capture_open(struct priv *p, const char *ifname) __attribute__((warn_unused_result));

/* ---- main.c: the daemon's configuration and state ---- */

enum {
	PROV_TOKEN_MAX = 256,
};

struct prov_cfg {
	char ifname[IF_NAMESIZE];
	char *db_path;
	bool api_tcp;
	char api_path[108];             /* unix socket path */
	bool has_api_group;             /* --api-group: the socket is root:api_gid, 0660 */
	gid_t api_gid;
	struct sockaddr_storage api_addr; /* tcp listener */
	socklen_t api_len;
	char token[PROV_TOKEN_MAX + 1]; /* bearer token for the tcp listener */
	bool has_pool4, has_pool6;
	struct cidr pool4, pool6;  /* as given: also the clients' AllowedIPs by default */
	struct store_pool pool;
	unsigned gc_interval_s;
	unsigned gc_idle_s;             /* 0: idle peers stay installed */
	unsigned gc_batch;              /* peers removed per device call */
	bool has_metrics;
	struct sockaddr_storage metrics;
	enum wgdev_kind backend;
	char *uapi_dir;
	char client_endpoint[64];       /* Endpoint in generated configs: the local shim */
	/* --relay-url, repeated: every gateway's relay, for the shim command line in generated
	 * configs (the shim tries them in turn) */
	char relay_urls[PROV_MAX_RELAYS][PROV_RELAY_URL_MAX + 1];
	unsigned n_relay_urls;
	char relay_pins[PROV_MAX_PINS][8 + 44 + 1]; /* sha256//BASE64, for that command line */
	unsigned n_relay_pins;
	unsigned client_mtu;            /* MTU in generated configs */
	unsigned n_client_allowed;
	struct cidr client_allowed[PROV_MAX_ALLOWED];
	bool jit;                       /* install on the first handshake, not at creation */
	char jit_socket[108];           /* where the relay asks ("" = no relay channel) */
	char *source;                   /* --source: PostgreSQL's connection string (source.c) */
	uid_t jit_uid;                  /* besides root and ourselves, who may connect there */
	char *user;                     /* the engine runs as this user (root: stays root) */
	char capture_if[IF_NAMESIZE];   /* AF_PACKET capture on this interface ("" = none) */
	unsigned jit_negative_ttl_s;    /* how long an unknown key stays unknown */
	unsigned jit_rate;              /* initiations per second per client address (burst: 2x) */
	unsigned jit_budget;            /* decisions with public-key work per second, all clients */
	int verbosity;
};

/* API requests are counted by method (api.c's enum api_method) and status (a fixed set,
 * then "other"). */
enum { API_METHODS = 4, API_CODES = 16 };

struct prov_stats {
	uint64_t creates, deletes, installs, removals, install_errors;
	uint64_t gc_runs, gc_removed, expired;
	uint64_t api_by[API_METHODS][API_CODES]; /* answered requests, by method and status */
	uint64_t api_errors;
	struct hist create_latency, install_latency;
	/* --source (source.c) */
	uint64_t source_failures;      /* connections lost or never made */
	uint64_t source_notifications; /* NOTIFY wgws_changes received */
	uint64_t source_changes;       /* change-log rows applied */
	uint64_t source_removed;       /* peers a delete or change took off this gateway */
	uint64_t source_hits, source_misses; /* JIT: in the cache / looked up in the source */
	int64_t source_synced_at;      /* last read of the change log (unix s; 0 never) */
	struct hist source_latency;    /* one operation, sent to answered */
};

struct prov {
	struct prov_cfg cfg;
	struct store *store;
	struct wgdev *dev;            /* privsep_ops in the daemon: the device is priv.c's */
	struct priv *priv;            /* NULL in tools and benches: dev and the key are local */
	struct wgdev_info info;
	struct lws_context *ctx;
	bool writes_since_checkpoint;
	struct prov_stats st;
	struct jit_stats jit;
};

extern struct prov prov;
double prov_now_s(void);          /* monotonic, for latencies */
int64_t prov_wall_s(void);        /* unix time */

/* ---- peer.c: what the API and the GC do to a peer (store and device together) ---- */

/* The device's view of a stored peer: its addresses and routes as allowed IPs. */
void peer_to_device(const struct store_peer *sp, struct wgdev_peer *dp);
/* Install into the device and mark it in the store. Returns 0 or -errno. */
int peer_install(const struct store_peer *sp);
/* The same with the device form given (peer_to_device's, with an endpoint or keepalive
 * changed by the caller). */
int peer_install_as(const struct store_peer *sp, const struct wgdev_peer *dp);
/* The device half alone (counted in the install metrics); the caller marks the store. */
int peer_install_device(const struct wgdev_peer *dp);
/* Remove from the device first, then from the store (address into hold-down). -ENOENT if
 * not stored; a device failure leaves the store untouched. *store_failed (NULL: not asked)
 * tells a store failure (store_errmsg has SQLite's words) from the device's. */
int peer_delete(const uint8_t key[static WG_KEY_LEN], bool *store_failed);
/* The wg-quick text for a client; private_key NULL writes a placeholder. Returns a
 * malloc'ed string (NULL when out of memory); with a private key (or a PSK) in it, the caller
 * wipes its strlen() bytes before free. No other copy of the key is left behind. */
char *peer_config(const struct store_peer *sp, const uint8_t *private_key);

/* ---- answer.c: response bodies the API owns; the one with a private key is wiped ---- */

/* pre bytes of headroom (LWS_PRE), then len bytes of body and a NUL; cap bytes allocated. */
struct answer {
	uint8_t *buf;
	size_t pre, len, cap;
	bool secret; /* wiped whole (cap bytes) before it is freed */
};

/* A copy of body. Returns 0 or -ENOMEM. */
int answer_copy(struct answer *a, size_t pre, const void *body, size_t len)
	__attribute__((warn_unused_result));
/* The create answer for a key pair the server made: public_json (a compact JSON object with
 * no secrets) with "private_key" (base64) and "config" (as a JSON string) added, written
 * straight into a new secret answer, the only buffer the secrets go to. The caller wipes
 * config. Returns 0, -EINVAL (public_json is not an object), -EILSEQ (config is not UTF-8)
 * or -ENOMEM. */
int answer_secret(struct answer *a, size_t pre, const char *public_json,
		  const uint8_t private_key[static WG_KEY_LEN], const char *config)
	__attribute__((warn_unused_result));
/* Zero every byte of a secret answer's buffer (a plain answer is left alone). */
void answer_wipe(struct answer *a);
/* answer_wipe, free, and a is empty; a no-op on an empty answer. */
void answer_free(struct answer *a);

/* ---- api.c: HTTP/1.1 + JSON on the unix socket (and optional TCP with a token) ---- */

/* The lws protocol lists of the API vhost(s) and of the --metrics listener. */
const struct lws_protocols *api_protocols(void);
const struct lws_protocols *api_metrics_protocols(void);
size_t api_render_metrics(char *buf, size_t size);

enum { API_MSG_LEN = 200 };
/* The body of POST /v1/peers (len bytes of JSON, no NUL needed; NULL: none, as {}) into sp:
 * public_key (*have_key says it was given; refused when key_check_public refuses it, with
 * device_key the device's own or NULL), ttl_seconds as expires_at counted from now, name,
 * allowed_ips (none may overlap one of the n_pools pools). Pure: no I/O, no globals.
 * Returns 0, or an HTTP status (400) with msg set. */
unsigned api_parse_create(const char *body, size_t len, int64_t now,
			  const struct cidr *pools, unsigned n_pools,
			  const uint8_t *device_key, struct store_peer *sp, bool *have_key,
			  char msg[static API_MSG_LEN]);

/* ---- gc.c: paced removal of idle peers, deletion of expired ones ---- */

void gc_start(void);
/* A peer just answered for (JIT): do not remove it in the GC run under way. */
void gc_spare(const uint8_t key[static WG_KEY_LEN]);
/* True when c overlaps a configured address pool. */
bool prov_in_pools(const struct cidr *c);
/* Eager mode at start-up: put every stored peer the device lacks back into it (after a
 * reboot or a wireguard-go restart), in paced pages while the API already serves. */
void gc_reconcile_start(void);

/* ---- source.c: PostgreSQL, the source of truth for several gateways (--source) ----
 *
 * Without --source nothing here runs and SQLite is the store. With it, the peers live in
 * PostgreSQL (the schema is source.c's, versioned; docs/SCALEOUT.md documents it for an
 * operator's own SQL) and this gateway's SQLite file is its cache of the peers it has seen,
 * with its installed marks and replay guard. Gateways pull on miss: an initiation whose key
 * the cache lacks is one indexed lookup. Deletes reach every gateway through the change log
 * (wgws_changes, one row per insert/update/delete, its seq increasing): LISTEN/NOTIFY wakes
 * each gateway at once, and every gateway also reads the log from its last seq every second
 * and at each (re)connection, so no lost notification, restart or partition leaves a
 * deleted peer installed.
 *
 * One libpq connection, asynchronous, on the lws loop (a dup of its socket adopted as a raw
 * descriptor, so that lws and libpq each close their own); statements prepared once per
 * connection; operations queued and sent one at a time. A query unanswered for
 * SOURCE_TIMEOUT_MS, or a broken connection, fails every queued operation with -EAGAIN and
 * reconnects with back-off (0.25 s doubling to 8 s). While it is down, callers are told at
 * once (-EAGAIN): the JIT answers unknown keys quickly, the API answers 503. */

enum {
	SOURCE_TIMEOUT_MS = 3000,
	SOURCE_POLL_MS = 1000,    /* the change log is read at least this often */
	SOURCE_QUEUE_MAX = 4096,  /* operations waiting; more are refused (-EAGAIN) */
};

struct source_op;
/* The result of an operation: err 0 with the peer (a lookup, a create: the stored row, its
 * addresses from the source's pools), -ENOENT (no such peer), -EEXIST (create: the key is
 * there), -EADDRNOTAVAIL (create: the pool is exhausted), -EAGAIN (the source is not
 * reachable now), -EADDRINUSE (create: an address or route another peer has), -EIO (anything
 * else; logged). Called exactly once, never from inside the
 * call that queued the operation. */
typedef void source_done_fn(void *arg, int err, const struct store_peer *p);

/* Check conninfo's syntax (before the loop; nothing is connected). 0 or -EINVAL with err. */
int source_init(const char *conninfo, char *err, size_t errlen);
/* Connect (asynchronously) and keep connected; from the event loop's start. */
void source_start(void);
void source_stop(void);
bool source_connected(void);
/* A key's row, for a JIT miss. */
struct source_op *source_lookup(const uint8_t key[static WG_KEY_LEN], source_done_fn *done,
				void *arg);
/* Insert p (pubkey, psk, keepalive, name, routes, expires_at), its addresses allocated by the
 * source in the same transaction; done gets the committed row. */
struct source_op *source_create(const struct store_peer *p, source_done_fn *done, void *arg);
/* Delete a key's row (p is NULL in done). */
struct source_op *source_delete(const uint8_t key[static WG_KEY_LEN], source_done_fn *done,
				void *arg);
/* Delete the peers whose expiry has passed, in the source (a batch; the GC's run calls it):
 * the change log takes them off every gateway. */
void source_expire(void);
/* The caller no longer wants the result (its HTTP client went away): done is not called. */
void source_cancel(struct source_op *op);
bool source_configured(void);
/* p, from the source, into this gateway's cache (store_cache_put), and the stale peers it
 * displaces out of the device. 0 or -errno (logged). */
int source_cache_put(const struct store_peer *p);
/* The last change of the source's log this gateway applied. */
int64_t source_seq(void);
/* The lws protocol its socket is adopted with (on the API's vhost). */
const struct lws_protocols *source_protocol(void);
/* `wgws-provisioner db init|migrate|status`: the schema, synchronously (not in the daemon). */
int source_db_main(int argc, char **argv);

/* ---- cli.c: `wgws-provisioner peer …`, a client of the daemon's API ---- */

int cli_peer(int argc, char **argv);

#endif
