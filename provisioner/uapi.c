/* SPDX-License-Identifier: MIT */
/* The userspace backend: wireguard-go and boringtun through the cross-platform UAPI text
 * protocol on DIR/IFNAME.sock (reference/wireguard-jit.md §4).
 *
 * One connection per operation, because boringtun reads one command per connection. Every
 * wait is bounded (SO_RCVTIMEO/SO_SNDTIMEO, and an overall deadline on a dump), and every
 * reply is parsed as untrusted input: lines are at most UAPI_LINE_MAX bytes, keys exactly 64
 * hex digits, numbers range-checked, a set reply is exactly "errno=N\n\n". A get reply is
 * O(peers), so it is fed to an incremental line parser as it arrives and each peer goes to
 * the callback once its block ends (at the next public_key= or at errno=); uapi_parse_get()
 * drives the same parser over a complete text, so the unit tests exercise the real code.
 *
 * Dialects: wireguard-go answers errno=-22, boringtun errno=22; both become -22. boringtun
 * prints own_public_key= instead of private_key= (get_info then says -ENOKEY) and reports
 * last_handshake_time_sec as the *age* of the handshake; a reply with own_public_key= is taken
 * as boringtun's and the age is turned into unix time against CLOCK_REALTIME. boringtun
 * rejects update_only=true with a positive EINVAL: update then fails with -EOPNOTSUPP rather
 * than fall back to get + set, which would be O(n) and could re-create a peer removed in
 * between. Removing an absent key is not an error (wireguard-go creates and drops it in the
 * same request, as wg(8) does).
 *
 * Secrets: the private key is read only when the caller asks for it; every buffer that held
 * it (or a preshared key in a request) is wiped with sodium_memzero. Nothing here logs. */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "prov.h"

enum {
	UAPI_LINE_MAX = 256,          /* longest legitimate line is ~80 bytes (endpoint, key) */
	UAPI_KEY_HEX_LEN = 2 * WG_KEY_LEN,
	UAPI_IO_TIMEOUT_S = 5,        /* every single connect/send/recv */
	UAPI_DUMP_DEADLINE_S = 60,    /* a whole get=1, however it trickles */
	UAPI_SET_REPLY_MAX = 64,      /* "errno=-2147483648\n\n" is 19 bytes */
	UAPI_ERRNO_MAX = 4095,
	UAPI_READ_CHUNK = 16384,
	/* One peer line per allowed IP: 1 GiB is far beyond 2^16 peers with many routes. */
	UAPI_GET_MAX_BYTES = 1 << 30,
	UAPI_REQ_MAX = 1024,          /* one peer with PROV_MAX_ALLOWED allowed IPs */
	UAPI_REMOVE_BATCH = 64,       /* keys per remove request */
};

#define UAPI_DEFAULT_DIR "/var/run/wireguard"

struct uapi {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* ---- request builders ---- */

struct out {
	char *buf;
	size_t size, len;
	bool overflow;
};

__attribute__((format(printf, 2, 3))) static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->size - o->len)
		o->overflow = true;
	else
		o->len += (size_t)n;
}

static void out_key(struct out *o, const char *name, const uint8_t key[static WG_KEY_LEN])
{
	char hex[UAPI_KEY_HEX_LEN + 1];

	sodium_bin2hex(hex, sizeof(hex), key, WG_KEY_LEN);
	out_printf(o, "%s=%s\n", name, hex);
	sodium_memzero(hex, sizeof(hex));
}

static ssize_t out_end(struct out *o)
{
	if (o->overflow) {
		if (o->size)
			sodium_memzero(o->buf, o->size);
		return -EMSGSIZE;
	}
	return (ssize_t)o->len;
}

static int out_endpoint(struct out *o, const struct sockaddr_storage *ss)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		if (!sin->sin_port)
			return -EINVAL;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		out_printf(o, "endpoint=%s:%u\n", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		if (!sin6->sin6_port)
			return -EINVAL;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		if (sin6->sin6_scope_id)
			out_printf(o, "endpoint=[%s%%%u]:%u\n", ip, sin6->sin6_scope_id,
				   ntohs(sin6->sin6_port));
		else
			out_printf(o, "endpoint=[%s]:%u\n", ip, ntohs(sin6->sin6_port));
	} else {
		return -EINVAL;
	}
	return 0;
}

/* Both builders NUL-terminate: a request of len bytes needs size > len. On failure the
 * partial text (it may hold a preshared key) is wiped. */
ssize_t uapi_format_set_peer(char *buf, size_t size, const struct wgdev_peer *p, bool update_only)
{
	struct out o = { .buf = buf, .size = size };
	char cidr[CIDR_STR];

	if (p->keepalive_s < -1 || p->keepalive_s > 65535 || p->n_allowed > PROV_MAX_ALLOWED)
		return -EINVAL;
	out_printf(&o, "set=1\n");
	out_key(&o, "public_key", p->pubkey);
	/* update_only must follow public_key at once: wireguard-go drops the peer it just
	 * created for the key when it sees it. */
	if (update_only)
		out_printf(&o, "update_only=true\n");
	else
		out_printf(&o, "replace_allowed_ips=true\n");
	if (p->has_psk)
		out_key(&o, "preshared_key", p->psk);
	if (p->endpoint.ss_family && out_endpoint(&o, &p->endpoint) < 0) {
		sodium_memzero(buf, size);
		return -EINVAL;
	}
	if (p->keepalive_s >= 0)
		out_printf(&o, "persistent_keepalive_interval=%d\n", p->keepalive_s);
	for (unsigned i = 0; !update_only && i < p->n_allowed; i++) {
		const struct cidr *c = &p->allowed[i];

		bool ok = (c->family == AF_INET && c->bits <= 32) ||
			  (c->family == AF_INET6 && c->bits <= 128);

		if (!ok) {
			sodium_memzero(buf, size);
			return -EINVAL;
		}
		out_printf(&o, "allowed_ip=%s\n", cidr_format(c, cidr));
	}
	out_printf(&o, "\n");
	return out_end(&o);
}

ssize_t uapi_format_remove(char *buf, size_t size, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	struct out o = { .buf = buf, .size = size };

	out_printf(&o, "set=1\n");
	for (unsigned i = 0; i < n; i++) {
		out_key(&o, "public_key", keys[i]);
		out_printf(&o, "remove=true\n");
	}
	out_printf(&o, "\n");
	return out_end(&o);
}

/* ---- reply parsers ---- */

/* Exactly 64 hex digits (either case) to 32 bytes. */
static int parse_key(const char *s, size_t len, uint8_t key[static WG_KEY_LEN])
{
	size_t bin_len;
	const char *end;

	if (len != UAPI_KEY_HEX_LEN)
		return -EBADMSG;
	if (sodium_hex2bin(key, WG_KEY_LEN, s, len, NULL, &bin_len, &end) != 0 ||
	    bin_len != WG_KEY_LEN || end != s + len)
		return -EBADMSG;
	return 0;
}

/* Plain decimal, 1..20 digits, no sign, at most max. */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -EBADMSG;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	if (v > max)
		return -EBADMSG;
	*out = v;
	return 0;
}

/* "errno=N" value: an optionally negative decimal, |N| <= UAPI_ERRNO_MAX, sign kept. */
static int parse_errno_value(const char *s, size_t len, int *raw)
{
	bool neg = len > 0 && s[0] == '-';
	uint64_t v;

	if (parse_u64(s + neg, len - neg, UAPI_ERRNO_MAX, &v) < 0)
		return -EBADMSG;
	*raw = neg ? -(int)v : (int)v;
	return 0;
}

static int errno_normalise(int raw)
{
	return raw < 0 ? raw : -raw;
}

/* A complete set reply, "errno=N\n\n" and nothing else; the value as sent. */
static int parse_set_reply(const char *text, size_t len, int *raw)
{
	static const char prefix[] = "errno=";
	const size_t plen = sizeof(prefix) - 1;

	if (len < plen + 3 || memcmp(text, prefix, plen) != 0 || text[len - 1] != '\n' ||
	    text[len - 2] != '\n')
		return -EBADMSG;
	return parse_errno_value(text + plen, len - plen - 2, raw);
}

int uapi_parse_errno(const char *text, size_t len)
{
	int raw, ret = parse_set_reply(text, len, &raw);

	return ret < 0 ? ret : errno_normalise(raw);
}

/* "a.b.c.d:port" or "[v6]:port" / "[v6%zone]:port" (a numeric zone becomes the scope id). */
static int parse_endpoint(const char *s, size_t len, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	const char *colon, *hs = s;
	size_t hlen;
	uint64_t port;

	memset(ss, 0, sizeof(*ss));
	if (len && s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close || close + 1 == s + len || close[1] != ':')
			return -EBADMSG;
		hs = s + 1;
		hlen = (size_t)(close - hs);
		colon = close + 1;
	} else {
		colon = memrchr(s, ':', len);
		if (!colon)
			return -EBADMSG;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(host) ||
	    parse_u64(colon + 1, (size_t)(s + len - colon - 1), 65535, &port) < 0 || port == 0)
		return -EBADMSG;
	memcpy(host, hs, hlen);
	host[hlen] = '\0';
	if (hs == s) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EBADMSG;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		char *zone = strchr(host, '%');
		uint64_t scope = 0;

		if (zone) {
			*zone++ = '\0';
			/* A named zone means nothing outside the daemon's namespace: keep 0. */
			if (*zone >= '0' && *zone <= '9' &&
			    parse_u64(zone, strlen(zone), UINT32_MAX, &scope) < 0)
				return -EBADMSG;
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EBADMSG;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sin6->sin6_scope_id = (uint32_t)scope;
	}
	return 0;
}

/* "prefix/bits", the slash required. */
static int parse_allowed_ip(const char *s, size_t len, struct cidr *c)
{
	char tmp[CIDR_STR];

	if (len >= sizeof(tmp) || !memchr(s, '/', len))
		return -EBADMSG;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	return cidr_parse(tmp, c) < 0 ? -EBADMSG : 0;
}

enum parse_state {
	PARSE_DEVICE,   /* device keys */
	PARSE_PEER,     /* inside a public_key= block */
	PARSE_WANT_END, /* after errno=: the empty line */
	PARSE_DONE,
};

struct parser {
	enum parse_state state;
	struct wgdev_info *info;
	wgdev_peer_fn fn;
	void *arg;
	int dev_errno;            /* normalised */
	bool want_private_key;
	bool has_private_key;
	bool boringtun;           /* own_public_key= seen: handshake times are ages */
	struct timespec now;      /* CLOCK_REALTIME when the parse began */
	uint8_t private_key[WG_KEY_LEN];
	struct wgdev_peer_info peer;
	bool peer_has_handshake;
	uint64_t hs_sec, hs_nsec;
	size_t line_len;
	char line[UAPI_LINE_MAX];
};

static void parser_init(struct parser *p, struct wgdev_info *info, bool want_private_key,
			wgdev_peer_fn fn, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->info = info;
	p->want_private_key = want_private_key;
	p->fn = fn;
	p->arg = arg;
	clock_gettime(CLOCK_REALTIME, &p->now);
	if (info)
		memset(info, 0, sizeof(*info));
}

/* The peer block is complete: fix up its handshake time and hand it over. */
static int peer_finish(struct parser *p)
{
	struct wgdev_peer_info *pi = &p->peer;

	if (p->peer_has_handshake && (p->hs_sec || p->hs_nsec)) {
		if (p->boringtun) {
			/* An age: unix time = now - age, never 0 ("never") for a real one. */
			int64_t t = (int64_t)p->now.tv_sec - (int64_t)p->hs_sec -
				    ((uint64_t)p->now.tv_nsec < p->hs_nsec ? 1 : 0);

			pi->last_handshake_s = t > 0 ? t : 1;
		} else {
			pi->last_handshake_s = (int64_t)p->hs_sec;
		}
	} else if (p->peer_has_handshake && p->boringtun) {
		pi->last_handshake_s = p->now.tv_sec; /* age 0: just now */
	}
	return p->fn ? p->fn(p->arg, pi) : 0;
}

static void peer_begin(struct parser *p, const uint8_t key[static WG_KEY_LEN])
{
	memset(&p->peer, 0, sizeof(p->peer));
	memcpy(p->peer.pubkey, key, WG_KEY_LEN);
	p->peer_has_handshake = false;
	p->hs_sec = p->hs_nsec = 0;
	p->state = PARSE_PEER;
}

static bool key_is(const char *k, size_t klen, const char *name)
{
	return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

/* A peer-level key=value. */
static int peer_line(struct parser *p, const char *k, size_t klen, const char *v, size_t vlen)
{
	struct wgdev_peer_info *pi = &p->peer;
	uint64_t n;

	if (key_is(k, klen, "endpoint"))
		return parse_endpoint(v, vlen, &pi->endpoint);
	if (key_is(k, klen, "last_handshake_time_sec")) {
		p->peer_has_handshake = true;
		return parse_u64(v, vlen, INT64_MAX / 2, &p->hs_sec);
	}
	if (key_is(k, klen, "last_handshake_time_nsec")) {
		p->peer_has_handshake = true;
		return parse_u64(v, vlen, 999999999, &p->hs_nsec);
	}
	if (key_is(k, klen, "tx_bytes"))
		return parse_u64(v, vlen, UINT64_MAX, &pi->tx_bytes);
	if (key_is(k, klen, "rx_bytes"))
		return parse_u64(v, vlen, UINT64_MAX, &pi->rx_bytes);
	if (key_is(k, klen, "persistent_keepalive_interval")) {
		if (parse_u64(v, vlen, 65535, &n) < 0)
			return -EBADMSG;
		pi->keepalive_s = (uint16_t)n;
		return 0;
	}
	if (key_is(k, klen, "allowed_ip")) {
		struct cidr c;

		if (parse_allowed_ip(v, vlen, &c) < 0)
			return -EBADMSG;
		if (pi->n_allowed < PROV_MAX_ALLOWED)
			pi->allowed[pi->n_allowed] = c;
		if (pi->n_allowed == UINT32_MAX)
			return -EBADMSG;
		pi->n_allowed++;
		return 0;
	}
	if (key_is(k, klen, "preshared_key")) {
		uint8_t psk[WG_KEY_LEN];
		int ret = parse_key(v, vlen, psk); /* checked, not kept */

		sodium_memzero(psk, sizeof(psk));
		return ret;
	}
	/* protocol_version and anything newer: ignored. */
	return 0;
}

/* A device-level key=value (before the first peer). */
static int device_line(struct parser *p, const char *k, size_t klen, const char *v, size_t vlen)
{
	uint8_t key[WG_KEY_LEN];
	uint64_t n;
	int ret;

	if (key_is(k, klen, "private_key")) {
		ret = parse_key(v, vlen, key);
		if (ret == 0) {
			memcpy(p->private_key, key, WG_KEY_LEN);
			p->has_private_key = true;
		}
		sodium_memzero(key, sizeof(key));
		return ret;
	}
	if (key_is(k, klen, "own_public_key")) {
		p->boringtun = true;
		ret = parse_key(v, vlen, key);
		if (ret == 0 && p->info) {
			memcpy(p->info->public_key, key, WG_KEY_LEN);
			p->info->has_public_key = true;
		}
		return ret;
	}
	if (key_is(k, klen, "listen_port")) {
		if (parse_u64(v, vlen, 65535, &n) < 0)
			return -EBADMSG;
		if (p->info)
			p->info->listen_port = (uint16_t)n;
		return 0;
	}
	if (key_is(k, klen, "fwmark"))
		return parse_u64(v, vlen, UINT32_MAX, &n);
	return 0;
}

/* One line without its '\n'. Returns 0, -EBADMSG, or a callback's non-zero value. */
static int parse_line(struct parser *p, const char *s, size_t len)
{
	const char *eq = memchr(s, '=', len);
	const char *k = s, *v;
	size_t klen, vlen;
	int raw, ret;

	if (p->state == PARSE_WANT_END) {
		if (len)
			return -EBADMSG;
		p->state = PARSE_DONE;
		return 0;
	}
	if (!eq || eq == s || memchr(s, '\0', len))
		return -EBADMSG;
	klen = (size_t)(eq - s);
	v = eq + 1;
	vlen = len - klen - 1;

	if (key_is(k, klen, "errno")) {
		if (parse_errno_value(v, vlen, &raw) < 0)
			return -EBADMSG;
		ret = p->state == PARSE_PEER ? peer_finish(p) : 0;
		p->dev_errno = errno_normalise(raw);
		p->state = PARSE_WANT_END;
		return ret;
	}
	if (key_is(k, klen, "public_key")) {
		uint8_t key[WG_KEY_LEN];

		if (parse_key(v, vlen, key) < 0)
			return -EBADMSG;
		if (p->state == PARSE_PEER && (ret = peer_finish(p)) != 0)
			return ret;
		peer_begin(p, key);
		return 0;
	}
	if (p->state == PARSE_PEER) {
		/* Device keys never follow a peer; a reply that says so is lying. */
		if (key_is(k, klen, "private_key") || key_is(k, klen, "own_public_key") ||
		    key_is(k, klen, "listen_port") || key_is(k, klen, "fwmark"))
			return -EBADMSG;
		return peer_line(p, k, klen, v, vlen) < 0 ? -EBADMSG : 0;
	}
	if (key_is(k, klen, "endpoint") || key_is(k, klen, "allowed_ip") ||
	    key_is(k, klen, "last_handshake_time_sec") || key_is(k, klen, "tx_bytes") ||
	    key_is(k, klen, "rx_bytes") || key_is(k, klen, "preshared_key") ||
	    key_is(k, klen, "persistent_keepalive_interval"))
		return -EBADMSG; /* a peer key without a peer */
	return device_line(p, k, klen, v, vlen) < 0 ? -EBADMSG : 0;
}

/* Feed len bytes of the reply. Returns 0 (go on; p->state == PARSE_DONE once the reply has
 * ended), -EBADMSG, or a callback's non-zero value. */
static int parser_feed(struct parser *p, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int ret;

		if (p->state == PARSE_DONE)
			return -EBADMSG; /* bytes after the end of the reply */
		if (data[i] != '\n') {
			if (p->line_len == sizeof(p->line))
				return -EBADMSG;
			p->line[p->line_len++] = data[i];
			continue;
		}
		ret = parse_line(p, p->line, p->line_len);
		p->line_len = 0;
		if (ret)
			return ret;
	}
	return 0;
}

/* The reply has ended (or must have): device facts out, secrets wiped. */
static int parser_end(struct parser *p, int ret, uint8_t *private_key)
{
	if (ret == 0 && p->state != PARSE_DONE)
		ret = -EBADMSG; /* truncated */
	if (ret == 0)
		ret = p->dev_errno;
	if (ret == 0 && p->has_private_key) {
		if (p->info && crypto_scalarmult_base(p->info->public_key, p->private_key) == 0)
			p->info->has_public_key = true;
		if (private_key)
			memcpy(private_key, p->private_key, WG_KEY_LEN);
	}
	if (ret == 0 && private_key && !p->has_private_key)
		ret = -ENOKEY;
	sodium_memzero(p, sizeof(*p));
	return ret;
}

int uapi_parse_get(const char *text, size_t len, struct wgdev_info *info, uint8_t *private_key,
		   wgdev_peer_fn fn, void *arg)
{
	struct parser p;
	int ret;

	parser_init(&p, info, private_key != NULL, fn, arg);
	ret = parser_feed(&p, text, len);
	ret = parser_end(&p, ret, private_key);
	/* The contract: 0, the device's errno or -EBADMSG; "no private key" is get_info's. */
	return ret == -ENOKEY ? 0 : ret;
}

/* ---- the socket ---- */

static int uapi_connect(const struct uapi *u)
{
	struct timeval tv = { .tv_sec = UAPI_IO_TIMEOUT_S };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, ret;

	memcpy(sun.sun_path, u->path, sizeof(sun.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* SO_SNDTIMEO also bounds a connect to a listener whose backlog is full. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		ret = -errno;
		goto out_close;
	}
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == EINTR)
			continue;
		ret = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		goto out_close;
	}
	return fd;
out_close:
	close(fd);
	return ret;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t recv_some(int fd, char *buf, size_t size)
{
	for (;;) {
		ssize_t n = recv(fd, buf, size, 0);

		if (n >= 0)
			return n;
		if (errno != EINTR)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	}
}

/* One set=1 request: 0 with the device's errno in *raw (sign as sent), or -errno for the
 * transport, -EBADMSG for a malformed reply. The request buffer is wiped either way. */
static int uapi_set(const struct uapi *u, char *req, size_t len, int *raw)
{
	char reply[UAPI_SET_REPLY_MAX];
	size_t got = 0;
	int fd, ret;

	fd = uapi_connect(u);
	if (fd < 0) {
		ret = fd;
		goto out_wipe;
	}
	ret = send_all(fd, req, len);
	while (ret == 0) {
		ssize_t n = recv_some(fd, reply + got, sizeof(reply) - got);

		if (n < 0) {
			ret = (int)n;
		} else if (n == 0) {
			ret = -EBADMSG; /* truncated */
		} else {
			got += (size_t)n;
			if (got >= 2 && reply[got - 1] == '\n' && reply[got - 2] == '\n')
				break;
			if (got == sizeof(reply))
				ret = -EBADMSG;
		}
	}
	if (ret == 0)
		ret = parse_set_reply(reply, got, raw);
	close(fd);
out_wipe:
	sodium_memzero(req, len);
	return ret;
}

static int set_result(const struct uapi *u, char *req, ssize_t len)
{
	int raw = 0, ret;

	if (len < 0)
		return (int)len;
	ret = uapi_set(u, req, (size_t)len, &raw);
	return ret < 0 ? ret : errno_normalise(raw);
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* get=1, parsed as it arrives. */
static int uapi_get(const struct uapi *u, struct wgdev_info *info, uint8_t *private_key,
		    wgdev_peer_fn fn, void *arg)
{
	static const char req[] = "get=1\n\n";
	char *buf;
	struct parser p;
	size_t total = 0;
	double deadline = mono_s() + UAPI_DUMP_DEADLINE_S;
	int fd, ret;

	buf = malloc(UAPI_READ_CHUNK);
	if (!buf)
		return -ENOMEM;
	parser_init(&p, info, private_key != NULL, fn, arg);
	fd = uapi_connect(u);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = send_all(fd, req, sizeof(req) - 1);
	while (ret == 0 && p.state != PARSE_DONE) {
		ssize_t n = recv_some(fd, buf, UAPI_READ_CHUNK);

		if (n < 0) {
			ret = (int)n;
		} else if (n == 0) {
			ret = -EBADMSG; /* the daemon hung up mid-reply */
		} else if ((total += (size_t)n) > UAPI_GET_MAX_BYTES) {
			ret = -EMSGSIZE;
		} else {
			ret = parser_feed(&p, buf, (size_t)n);
			if (ret == 0 && p.state != PARSE_DONE && mono_s() > deadline)
				ret = -ETIMEDOUT;
		}
	}
	close(fd);
out:
	ret = parser_end(&p, ret, private_key);
	sodium_memzero(buf, UAPI_READ_CHUNK);
	free(buf);
	return ret;
}

/* ---- wgdev_ops ---- */

static int uapi_install(void *impl, const struct wgdev_peer *peer)
{
	char req[UAPI_REQ_MAX];

	return set_result(impl, req, uapi_format_set_peer(req, sizeof(req), peer, false));
}

static int uapi_update(void *impl, const struct wgdev_peer *peer)
{
	char req[UAPI_REQ_MAX];
	ssize_t len = uapi_format_set_peer(req, sizeof(req), peer, true);
	int raw = 0, ret;

	if (len < 0)
		return (int)len;
	ret = uapi_set(impl, req, (size_t)len, &raw);
	if (ret < 0)
		return ret;
	/* A positive EINVAL is boringtun refusing update_only (see the top of the file). */
	if (raw == EINVAL)
		return -EOPNOTSUPP;
	return errno_normalise(raw);
}

static int uapi_remove(void *impl, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	/* public_key= (71) + remove=true (12) per key. */
	char req[16 + UAPI_REMOVE_BATCH * (UAPI_KEY_HEX_LEN + 24)];

	for (unsigned i = 0; i < n; i += UAPI_REMOVE_BATCH) {
		unsigned k = n - i < UAPI_REMOVE_BATCH ? n - i : UAPI_REMOVE_BATCH;
		int ret = set_result(impl, req, uapi_format_remove(req, sizeof(req), keys + i, k));

		if (ret < 0)
			return ret;
	}
	return 0;
}

static int uapi_dump(void *impl, wgdev_peer_fn fn, void *arg)
{
	return uapi_get(impl, NULL, NULL, fn, arg);
}

static int uapi_get_info(void *impl, struct wgdev_info *info, uint8_t *private_key)
{
	/* O(peers) on the wire: the protocol has no device-only get. */
	return uapi_get(impl, info, private_key, NULL, NULL);
}

static void uapi_close(void *impl)
{
	free(impl);
}

const struct wgdev_ops uapi_ops = {
	.name = "uapi",
	.install = uapi_install,
	.update = uapi_update,
	.remove = uapi_remove,
	.dump = uapi_dump,
	.get_info = uapi_get_info,
	.close = uapi_close,
};

int uapi_open(void **impl, const char *ifname, const char *dir)
{
	struct uapi *u;
	struct stat st;
	int n;

	if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE || strchr(ifname, '/') ||
	    !strcmp(ifname, ".") || !strcmp(ifname, ".."))
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	n = snprintf(u->path, sizeof(u->path), "%s/%s.sock", dir ? dir : UAPI_DEFAULT_DIR, ifname);
	if (n < 0 || (size_t)n >= sizeof(u->path)) {
		free(u);
		return -ENAMETOOLONG;
	}
	if (stat(u->path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		free(u);
		return -ENODEV;
	}
	*impl = u;
	return 0;
}
