/* The running shim: one UDP socket on --listen, and per local source address a session that
 * owns one wss:// connection to the relay. A session walks RESOLVING -> CONNECTING ->
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
 * intermediary sees them, so a fast PRNG is enough. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "log.h"
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
	SHIM_CONNECT_TIMEOUT_MS = 10000, /* resolve + TCP + proxy + TLS + upgrade */
	SHIM_HEALTHY_MS = 60000,        /* an OPEN this long resets the back-off */
	SHIM_IDLE_MS = 180000,          /* a failed session without local traffic is closed */
	SHIM_DEAD_MIN_MS = 45000,
	SHIM_TCP_USER_TIMEOUT_MS = 30000,
	SHIM_BACKOFF_MIN_MS = 250,
	SHIM_BACKOFF_MAX_MS = 30000,
	SHIM_UDP_BUF = 4 << 20,         /* SO_RCVBUF / SO_SNDBUF of the local UDP socket */
};

enum { TAG_UDP = 0, TAG_SIGNAL = 1, TAG_RESOLVER = 2, TAG_SESSION = 16 };

enum sess_state {
	S_RESOLVING,
	S_CONNECTING,
	S_PROXY,
	S_TLS,
	S_UPGRADE,
	S_OPEN,
	S_BACKOFF,
};

static const char *const state_names[] = {
	[S_RESOLVING] = "resolving", [S_CONNECTING] = "connecting", [S_PROXY] = "proxy CONNECT",
	[S_TLS] = "TLS handshake", [S_UPGRADE] = "WebSocket upgrade", [S_OPEN] = "open",
	[S_BACKOFF] = "back-off",
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
	struct sockaddr_storage addrs[SHIM_MAX_ADDRS];
	socklen_t addr_lens[SHIM_MAX_ADDRS];
	unsigned naddrs, addr_idx;
	int last_errno;
	uint64_t phase_deadline, retry_at, open_at, last_rx, next_ping, last_local;
	unsigned attempts;
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
	struct session **slots;
	unsigned nsess;
	uint32_t gen;
	struct session *last_hit;
	struct resolve *resolves;
	uint64_t prng;
	uint64_t now;
	/* No session's deadline is before next_due (it may be earlier than the earliest: a
	 * deadline that moved later). The loop looks at the sessions only when it is due, and
	 * whoever sets an earlier deadline lowers it (deadline_hint): O(1) per wake-up, not
	 * O(--max-sessions). */
	uint64_t next_due;
	bool rx_ready_any; /* some session stopped reading on its budget (session_read) */
	bool stop;
	char target[ADDR_HOST_MAX + 16]; /* "host:port" of the relay, for CONNECT */
	char via[ADDR_HOST_MAX + 32];    /* "direct" or "via proxy host:port" */
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

static void deadline_hint(struct session *s);

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t prng_next(struct shim *sh)
{
	uint64_t x = sh->prng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	sh->prng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t shim_backoff_ms(unsigned attempt, uint64_t rnd)
{
	uint64_t base = SHIM_BACKOFF_MIN_MS;

	for (unsigned i = 1; i < attempt && base < SHIM_BACKOFF_MAX_MS; i++)
		base *= 2;
	if (base > SHIM_BACKOFF_MAX_MS)
		base = SHIM_BACKOFF_MAX_MS;
	return base / 2 + rnd % (base / 2 + 1);
}

static uint64_t dead_ms(const struct shim_conf *c)
{
	uint64_t ms = (uint64_t)c->keepalive_s * 3000;

	return ms < SHIM_DEAD_MIN_MS ? SHIM_DEAD_MIN_MS : ms;
}

/* ---- sessions ------------------------------------------------------------------------ */

static void set_events(struct session *s, uint32_t mask)
{
	struct epoll_event ev = { .events = mask };

	if (s->fd < 0 || s->ev_mask == mask)
		return;
	ev.data.u64 = (uint64_t)s->gen << 32 | (s->slot + TAG_SESSION);
	if (epoll_ctl(s->sh->epfd, s->ev_mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev) < 0)
		fatal("epoll_ctl");
	s->ev_mask = mask;
}

static void sendq_flush(struct shim *sh);

static void conn_teardown(struct session *s)
{
	if (s->sh->ssess == s)
		sendq_flush(s->sh);
	if (s->res) {
		s->res->owner = NULL;
		gai_cancel(&s->res->cb);
		s->res = NULL;
	}
	if (s->ssl) {
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	s->ev_mask = 0;
	/* The CONNECT request (with Proxy-Authorization) may still be in the buffer. */
	OPENSSL_cleanse(s->out, s->out_len);
	s->out_off = s->out_len = 0;
	s->rx_ready = false;
	s->in_len = 0;
	s->in_slot = 0;
	s->want_write = false;
	memset(&s->wsp, 0, sizeof(s->wsp));
	s->wsp.max_frame = WS_FRAME_MAX;
	s->dec_idx = 0;
	if (frame_dec_init(&s->dec, s->dec_buf, FRAME_MAX_LEN) < 0)
		fatalx("frame_dec_init");
}

static void session_free(struct session *s)
{
	struct shim *sh = s->sh;

	conn_teardown(s);
	log_debug("%s: session closed (sent %llu, received %llu; dropped: %llu queue, %llu "
		  "back-pressure, %llu oversized, %llu local)",
		  s->name, (unsigned long long)s->tx_pkts, (unsigned long long)s->rx_pkts,
		  (unsigned long long)s->drop_queue, (unsigned long long)s->drop_full,
		  (unsigned long long)s->drop_big, (unsigned long long)s->drop_udp);
	for (unsigned i = 0; i < sh->rn; i++)
		if (sh->rsess[i] == s)
			sh->rsess[i] = NULL;
	if (sh->last_hit == s)
		sh->last_hit = NULL;
	sh->slots[s->slot] = NULL;
	sh->nsess--;
	free(s->out);
	free(s->in);
	free(s->q);
	free(s->dec_buf);
	free(s);
}

static void session_connect(struct session *s);

/* Tear the connection down and schedule the next attempt (or close an idle session).
 * Returns -1 so callers can "return session_fail(...)"; s may be freed. */
static int __attribute__((format(printf, 2, 3))) session_fail(struct session *s, const char *fmt,
							      ...)
{
	struct shim *sh = s->sh;
	char why[SHIM_ERR_LEN];
	uint64_t delay;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	conn_teardown(s);
	if (sh->now - s->last_local >= SHIM_IDLE_MS) {
		log_warnx("%s: %s; no local traffic for %llu s, session closed", s->name, why,
			  (unsigned long long)(sh->now - s->last_local) / 1000);
		session_free(s);
		return -1;
	}
	s->attempts++;
	delay = shim_backoff_ms(s->attempts, prng_next(sh));
	s->state = S_BACKOFF;
	s->retry_at = sh->now + delay;
	deadline_hint(s);
	log_warnx("%s: %s; reconnecting in %.1f s", s->name, why, (double)delay / 1000.0);
	return -1;
}

static const char *ssl_err_str(SSL *ssl, int ret, int err, char *buf, size_t sz)
{
	unsigned long e = ERR_get_error();

	if (e) {
		ERR_error_string_n(e, buf, sz);
	} else if (err == SSL_ERROR_SYSCALL) {
		snprintf(buf, sz, "%s", errno && ret < 0 ? strerror(errno) :
							  "connection closed by the relay");
	} else if (err == SSL_ERROR_ZERO_RETURN) {
		snprintf(buf, sz, "connection closed by the relay");
	} else {
		snprintf(buf, sz, "SSL error %d", err);
	}
	ERR_clear_error();
	return buf;
}

/* Append one masked frame to the output buffer. Returns 0 or -ENOBUFS. */
static int ws_send(struct session *s, enum ws_opcode op, const void *payload, size_t len)
{
	uint8_t mask[4];
	uint64_t r = prng_next(s->sh);
	size_t h;

	if (s->out_len + WS_HDR_MAX + len > SHIM_OUT_CAP && s->out_off > 0) {
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	if (s->out_len + WS_HDR_MAX + len > SHIM_OUT_CAP)
		return -ENOBUFS;
	memcpy(mask, &r, 4);
	h = ws_put_hdr(s->out + s->out_len, op, len, mask);
	if (len)
		memcpy(s->out + s->out_len + h, payload, len);
	ws_mask(s->out + s->out_len + h, len, mask, 0);
	s->out_len += h + len;
	return 0;
}

/* Write what the output buffer holds through TLS. Returns 0 (all written or waiting for
 * EPOLLOUT) or -1 after session_fail(). */
static int session_flush(struct session *s)
{
	char buf[SHIM_ERR_LEN];

	while (s->out_off < s->out_len) {
		int n, err;

		ERR_clear_error();
		n = SSL_write(s->ssl, s->out + s->out_off, (int)(s->out_len - s->out_off));
		if (n > 0) {
			s->out_off += (size_t)n;
			continue;
		}
		err = SSL_get_error(s->ssl, n);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
			s->want_write = true;
			set_events(s, EPOLLIN | (err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0));
			return 0;
		}
		return session_fail(s, "TLS write failed: %s", ssl_err_str(s->ssl, n, err, buf,
									    sizeof(buf)));
	}
	s->out_off = s->out_len = 0;
	s->want_write = false;
	set_events(s, EPOLLIN);
	return 0;
}

/* ---- WS -> UDP ----------------------------------------------------------------------- */

/* The kernel refused the GSO message m: GSO off for good, m's datagrams one by one. */
static void sendq_gso_fallback(struct shim *sh, struct session *s, struct msghdr *m, int err)
{
	size_t bytes;
	unsigned n;

	sh->gso_off = true;
	log_warnx("UDP GSO refused by the kernel (%s): datagrams to WireGuard go one by one",
		  strerror(err));
	n = udp_gso_send_each(sh->udp_fd, m, &bytes);
	s->rx_pkts += n;
	s->drop_udp += m->msg_iovlen - n;
}

static void sendq_flush(struct shim *sh)
{
	struct session *s = sh->ssess;
	unsigned i = 0, m;

	if (!sh->sn)
		goto out;
	m = udp_gso_build(sh->smsg, sh->scmsg, sh->siov, sh->sn, &s->src, s->src_len,
			  !sh->gso_off && sh->siov[0].iov_len >= SHIM_GSO_MIN_LEN);
	while (i < m) {
		struct msghdr *h = &sh->smsg[i].msg_hdr;
		int r = sendmmsg(sh->udp_fd, sh->smsg + i, m - i, MSG_DONTWAIT);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && udp_gso_refused(h, errno)) {
			sendq_gso_fallback(sh, s, h, errno);
			i++;
			continue;
		}
		if (r < 0 && errno == EMSGSIZE) {
			s->drop_udp += h->msg_iovlen; /* this message: go on with the next */
			i++;
			continue;
		}
		if (r <= 0) {
			/* One destination for the whole batch: socket full or WireGuard gone,
			 * the rest would fail the same way. Drop them, don't retry each. */
			for (; i < m; i++)
				s->drop_udp += sh->smsg[i].msg_hdr.msg_iovlen;
			break;
		}
		for (int k = 0; k < r; k++)
			s->rx_pkts += sh->smsg[i + (unsigned)k].msg_hdr.msg_iovlen;
		i += (unsigned)r;
	}
out:
	sh->sn = 0;
	sh->ssess = NULL;
}

/* Send s's pending batch first if one of its views points into p[0..len), which the
 * caller is about to overwrite. */
static void sendq_release(struct session *s, const uint8_t *p, size_t len)
{
	struct shim *sh = s->sh;

	if (sh->ssess != s)
		return;
	for (unsigned i = 0; i < sh->sn; i++) {
		uintptr_t v = (uintptr_t)sh->siov[i].iov_base;

		if (v < (uintptr_t)p + len && v + sh->siov[i].iov_len > (uintptr_t)p) {
			sendq_flush(sh);
			return;
		}
	}
}

static void sendq_add(struct session *s, const uint8_t *rec, size_t len)
{
	struct shim *sh = s->sh;
	unsigned i;

	if (sh->ssess != s && sh->sn)
		sendq_flush(sh);
	sh->ssess = s;
	i = sh->sn++;
	sh->siov[i].iov_base = (void *)rec;
	sh->siov[i].iov_len = len;
	if (sh->sn == SHIM_BATCH)
		sendq_flush(sh);
}

/* Decode records from a data payload into the send batch. After a record reassembled in
 * the decoder's buffer, the decoder moves on to the next one, which must first be free of
 * the batch's views. */
static int feed_records(struct session *s, const uint8_t *p, size_t len)
{
	uint8_t *cur = s->dec_buf + (size_t)s->dec_idx * FRAME_MAX_LEN;

	while (len > 0) {
		const uint8_t *rec;
		size_t rec_len;
		ssize_t n = frame_dec_feed(&s->dec, p, len, &rec, &rec_len);

		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
		if (!rec)
			continue;
		sendq_add(s, rec, rec_len);
		if (rec == cur) {
			s->dec_idx = (s->dec_idx + 1) % SHIM_DEC_BUFS;
			cur = s->dec_buf + (size_t)s->dec_idx * FRAME_MAX_LEN;
			sendq_release(s, cur, FRAME_MAX_LEN);
			if (frame_dec_set_buf(&s->dec, cur) < 0)
				fatalx("frame_dec_set_buf"); /* a record just ended: never busy */
		}
	}
	return 0;
}

/* Run received bytes through the WS parser. Returns 0 or -1 after session_fail(). */
static int ws_input(struct session *s, const uint8_t *p, size_t len)
{
	bool reply = false;

	while (len > 0) {
		struct ws_event ev;
		ssize_t n = ws_parse(&s->wsp, p, len, &ev);
		uint8_t code[2];

		if (n == -EMSGSIZE)
			return session_fail(s, "relay sent a frame over %u bytes", WS_FRAME_MAX);
		if (n < 0)
			return session_fail(s, "WebSocket protocol error from relay");
		p += n;
		len -= (size_t)n;
		switch (ev.kind) {
		case WS_EV_DATA:
			if (feed_records(s, ev.data, ev.len) < 0)
				return session_fail(s, "relay sent a malformed record stream");
			break;
		case WS_EV_PING:
			if (ws_send(s, WS_OP_PONG, ev.data, ev.len) == 0)
				reply = true;
			break;
		case WS_EV_CLOSE:
			code[0] = (uint8_t)(ev.close_code >> 8);
			code[1] = (uint8_t)ev.close_code;
			if (ws_send(s, WS_OP_CLOSE, code, ev.close_code == WS_CLOSE_NO_STATUS ? 0 : 2) ==
			    0 && s->ssl)
				(void)SSL_write(s->ssl, s->out + s->out_off,
						(int)(s->out_len - s->out_off));
			return session_fail(s, "relay closed the WebSocket (code %u)",
					    (unsigned)ev.close_code);
		case WS_EV_PONG:
		case WS_EV_NONE:
			break;
		}
	}
	if (reply)
		return session_flush(s);
	return 0;
}

/* Read and dispatch until OpenSSL wants more from the socket, or SHIM_READ_BUDGET reads:
 * a relay that sends as fast as we decode must not starve uploads, timers or other
 * sessions. What is left is marked rx_ready for the next turn of the loop (epoll does not
 * see bytes OpenSSL already holds). Returns 0 or -1. */
static int session_read(struct session *s)
{
	char buf[SHIM_ERR_LEN];
	int budget = SHIM_READ_BUDGET;

	s->rx_ready = false;
	for (;;) {
		uint8_t *in;
		int n, err;

		if (budget-- == 0) {
			s->rx_ready = s->sh->rx_ready_any = true;
			break;
		}
		in = s->in + (size_t)s->in_slot * SHIM_IN_CAP;
		sendq_release(s, in, SHIM_IN_CAP);
		ERR_clear_error();
		n = SSL_read(s->ssl, in, SHIM_IN_CAP);
		if (n > 0) {
			s->last_rx = s->sh->now;
			s->in_slot = (s->in_slot + 1) % SHIM_IN_SLOTS;
			if (ws_input(s, in, (size_t)n) < 0)
				return -1;
			continue;
		}
		err = SSL_get_error(s->ssl, n);
		if (err == SSL_ERROR_WANT_READ)
			break;
		if (err == SSL_ERROR_WANT_WRITE) {
			s->want_write = true;
			set_events(s, EPOLLIN | EPOLLOUT);
			break;
		}
		return session_fail(s, "connection lost: %s", ssl_err_str(s->ssl, n, err, buf,
									       sizeof(buf)));
	}
	if (!s->rx_ready && s->ssl && SSL_has_pending(s->ssl))
		s->rx_ready = s->sh->rx_ready_any = true;
	if (s->sh->ssess == s)
		sendq_flush(s->sh);
	if (s->want_write && s->out_off < s->out_len)
		return session_flush(s);
	return 0;
}

/* ---- connection set-up ---------------------------------------------------------------- */

static void on_open(struct session *s, size_t leftover)
{
	const struct shim_conf *c = s->sh->conf;
	char q[32];

	s->state = S_OPEN;
	s->open_at = s->last_rx = s->sh->now;
	s->next_ping = s->sh->now + (uint64_t)c->keepalive_s * 1000;
	deadline_hint(s);
	log_info("%s: connected to relay %s (%s, %s)", s->name, c->relay_str, s->sh->via,
		 SSL_get_version(s->ssl));
	if (s->q_len) {
		snprintf(q, sizeof(q), "%u", s->q_pkts);
		if (ws_send(s, WS_OP_BINARY, s->q, s->q_len) == 0) {
			s->tx_pkts += s->q_pkts;
			log_debug("%s: sent %s queued datagrams", s->name, q);
		}
		s->q_len = 0;
		s->q_pkts = 0;
	}
	if (leftover && ws_input(s, s->in, leftover) < 0)
		return;
	if (s->state == S_OPEN && session_flush(s) < 0)
		return;
	if (s->state == S_OPEN)
		(void)session_read(s);
}

static int upgrade_io(struct session *s)
{
	char buf[SHIM_ERR_LEN], why[WS_WHY_LEN];
	size_t end;
	int ret;

	if (s->out_off < s->out_len) {
		if (session_flush(s) < 0)
			return -1;
		if (s->out_off < s->out_len)
			return 0;
	}
	for (;;) {
		int n, err;

		ERR_clear_error();
		n = SSL_read(s->ssl, s->in + s->in_len, (int)(SHIM_IN_CAP - s->in_len));
		if (n <= 0) {
			err = SSL_get_error(s->ssl, n);
			if (err == SSL_ERROR_WANT_READ)
				return 0;
			if (err == SSL_ERROR_WANT_WRITE) {
				set_events(s, EPOLLIN | EPOLLOUT);
				return 0;
			}
			return session_fail(s, "upgrade failed: %s",
					    ssl_err_str(s->ssl, n, err, buf, sizeof(buf)));
		}
		s->in_len += (size_t)n;
		end = ws_header_end(s->in, s->in_len > WS_HTTP_HDR_MAX ? WS_HTTP_HDR_MAX : s->in_len);
		if (end)
			break;
		if (s->in_len >= WS_HTTP_HDR_MAX)
			return session_fail(s, "upgrade response header over %u bytes",
					    WS_HTTP_HDR_MAX);
	}
	ret = ws_check_upgrade((const char *)s->in, end, s->key, why);
	if (ret == -EACCES)
		return session_fail(s, "relay refused upgrade: %s", why);
	if (ret < 0)
		return session_fail(s, "bad upgrade response: %s", why);
	memmove(s->in, s->in + end, s->in_len - end);
	on_open(s, s->in_len - end);
	return 0;
}

static int upgrade_start(struct session *s)
{
	int n;

	if (ws_new_key(s->key) < 0)
		return session_fail(s, "no randomness for Sec-WebSocket-Key");
	n = ws_build_upgrade((char *)s->out, SHIM_OUT_CAP, &s->sh->conf->relay, s->key);
	if (n < 0)
		return session_fail(s, "upgrade request too long");
	s->out_off = 0;
	s->out_len = (size_t)n;
	s->in_len = 0;
	s->state = S_UPGRADE;
	return upgrade_io(s);
}

static int tls_handshake(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	char buf[SHIM_ERR_LEN], have[SHIM_PIN_B64_LEN + 1];
	int n, err;
	long vr;

	ERR_clear_error();
	n = SSL_connect(s->ssl);
	if (n == 1) {
		if (c->npins) {
			int ret = tls_check_pin(s->ssl, (const uint8_t(*)[SHIM_PIN_LEN])c->pins,
						c->npins, have);

			if (ret == -ENOENT)
				return session_fail(s, "relay sent no certificate to pin");
			if (ret < 0)
				return session_fail(s, "relay certificate pin mismatch "
						       "(server has sha256//%s)", have);
		}
		return upgrade_start(s);
	}
	err = SSL_get_error(s->ssl, n);
	if (err == SSL_ERROR_WANT_READ) {
		set_events(s, EPOLLIN);
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		set_events(s, EPOLLIN | EPOLLOUT);
		return 0;
	}
	vr = SSL_get_verify_result(s->ssl);
	if (s->sh->verify && vr != X509_V_OK) {
		ERR_clear_error();
		return session_fail(s, "relay certificate verify failed: %s",
				    X509_verify_cert_error_string(vr));
	}
	return session_fail(s, "TLS handshake failed: %s", ssl_err_str(s->ssl, n, err, buf,
									sizeof(buf)));
}

static int tls_start(struct session *s)
{
	if (s->sh->conf->insecure)
		log_warnx("%s: --insecure: NOT verifying the relay's certificate", s->name);
	s->ssl = tls_new(s->sh->ctx, s->fd, &s->sh->conf->relay, s->sh->verify);
	if (!s->ssl)
		return session_fail(s, "cannot create a TLS session");
	s->state = S_TLS;
	return tls_handshake(s);
}

/* Send CONNECT, then read the reply without consuming a byte past its header: peek, and
 * take only what belongs to the header, so whatever follows stays in the socket for TLS. */
static int proxy_io(struct session *s)
{
	char why[WS_WHY_LEN];
	size_t end;
	ssize_t n;
	int code;

	while (s->out_off < s->out_len) {
		n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			set_events(s, EPOLLOUT);
			return 0;
		}
		if (n < 0)
			return session_fail(s, "proxy: send: %s", strerror(errno));
		s->out_off += (size_t)n;
	}
	OPENSSL_cleanse(s->out, s->out_len); /* it held the proxy credentials */
	s->out_off = s->out_len = 0;
	set_events(s, EPOLLIN);
	for (;;) {
		size_t room = WS_HTTP_HDR_MAX - s->in_len;

		n = recv(s->fd, s->in + s->in_len, room, MSG_PEEK);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return session_fail(s, "proxy: %s", strerror(errno));
		if (n == 0)
			return session_fail(s, "proxy closed the connection before replying");
		end = ws_header_end(s->in, s->in_len + (size_t)n);
		n = end ? (ssize_t)(end - s->in_len) : n;
		if (recv(s->fd, s->in + s->in_len, (size_t)n, 0) != n)
			return session_fail(s, "proxy: short read");
		s->in_len += (size_t)n;
		if (end)
			break;
		if (s->in_len >= WS_HTTP_HDR_MAX)
			return session_fail(s, "proxy reply header over %u bytes", WS_HTTP_HDR_MAX);
	}
	if (ws_parse_status((const char *)s->in, s->in_len, &code, why) < 0)
		return session_fail(s, "proxy sent a malformed reply: '%s'", why);
	if (code / 100 != 2)
		return session_fail(s, "proxy refused CONNECT: %s", why);
	s->in_len = 0;
	log_debug("%s: proxy CONNECT %s: %s", s->name, s->sh->target, why);
	return tls_start(s);
}

static int proxy_start(struct session *s)
{
	const struct shim_proxy *p = &s->sh->conf->proxy;
	char auth[SHIM_CRED_MAX * 4 / 3 + 8] = "";
	int n;

	if (p->cred[0])
		EVP_EncodeBlock((unsigned char *)auth, (const unsigned char *)p->cred,
				(int)strlen(p->cred));
	n = snprintf((char *)s->out, SHIM_OUT_CAP,
		     "CONNECT %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "%s%s%s"
		     "User-Agent: wgws-shim/" WGWS_VERSION "\r\n"
		     "\r\n",
		     s->sh->target, s->sh->target, auth[0] ? "Proxy-Authorization: Basic " : "",
		     auth, auth[0] ? "\r\n" : "");
	OPENSSL_cleanse(auth, sizeof(auth));
	if (n < 0 || n >= SHIM_OUT_CAP)
		return session_fail(s, "CONNECT request too long");
	s->out_off = 0;
	s->out_len = (size_t)n;
	s->in_len = 0;
	s->state = S_PROXY;
	return proxy_io(s);
}

static int on_tcp_connected(struct session *s)
{
	if (s->sh->conf->proxy.set)
		return proxy_start(s);
	return tls_start(s);
}

static const char *target_host(const struct session *s)
{
	const struct shim_conf *c = s->sh->conf;

	return c->proxy.set ? c->proxy.host : c->relay.host;
}

/* Connect to the next resolved address. Returns 0 or -1 after session_fail(). */
static int conn_try_next(struct session *s)
{
	static const int one = 1, user_timeout = SHIM_TCP_USER_TIMEOUT_MS;

	while (s->addr_idx < s->naddrs) {
		unsigned i = s->addr_idx++;
		int fd = socket(s->addrs[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				0);

		if (fd < 0) {
			s->last_errno = errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
				 sizeof(user_timeout));
		s->fd = fd;
		s->ev_mask = 0;
		if (connect(fd, (struct sockaddr *)&s->addrs[i], s->addr_lens[i]) == 0) {
			set_events(s, EPOLLIN);
			return on_tcp_connected(s);
		}
		if (errno == EINPROGRESS) {
			s->state = S_CONNECTING;
			set_events(s, EPOLLOUT);
			return 0;
		}
		s->last_errno = errno;
		close(fd);
		s->fd = -1;
	}
	return session_fail(s, "cannot connect to %s%s: %s", s->sh->conf->proxy.set ? "proxy " : "",
			    target_host(s), strerror(s->last_errno ? s->last_errno : EHOSTUNREACH));
}

static int tcp_check(struct session *s)
{
	int err = 0;
	socklen_t len = sizeof(err);
	char a[ADDR_STR_LEN];

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0)
		return on_tcp_connected(s);
	log_debug("%s: connect to %s: %s", s->name,
		  addr_format((struct sockaddr *)&s->addrs[s->addr_idx - 1], a), strerror(err));
	s->last_errno = err;
	close(s->fd);
	s->fd = -1;
	s->ev_mask = 0;
	return conn_try_next(s);
}

static void resolve_notify(union sigval v)
{
	uint64_t one = 1;

	/* runs on a glibc thread: only wake the loop */
	if (write(v.sival_int, &one, sizeof(one)) < 0)
		return;
}

static int resolve_start(struct session *s, const char *host, uint16_t port)
{
	struct shim *sh = s->sh;
	struct resolve *r = calloc(1, sizeof(*r));
	struct gaicb *list[1];
	struct sigevent sev;
	int ret;

	if (!r)
		return session_fail(s, "cannot resolve %s: out of memory", host);
	snprintf(r->host, sizeof(r->host), "%s", host);
	snprintf(r->port, sizeof(r->port), "%u", (unsigned)port);
	r->hints.ai_family = AF_UNSPEC;
	r->hints.ai_socktype = SOCK_STREAM;
	r->hints.ai_flags = AI_NUMERICSERV;
	r->cb.ar_name = r->host;
	r->cb.ar_service = r->port;
	r->cb.ar_request = &r->hints;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = resolve_notify;
	sev.sigev_value.sival_int = sh->res_fd;
	list[0] = &r->cb;
	ret = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev);
	if (ret != 0) {
		free(r);
		return session_fail(s, "cannot resolve %s: %s", host, gai_strerror(ret));
	}
	r->owner = s;
	r->next = sh->resolves;
	sh->resolves = r;
	s->res = r;
	return 0;
}

static void on_resolved(struct session *s, struct resolve *r, int rc)
{
	if (rc != 0) {
		session_fail(s, "cannot resolve %s: %s", r->host, gai_strerror(rc));
		return;
	}
	s->naddrs = 0;
	for (struct addrinfo *ai = r->cb.ar_result; ai && s->naddrs < SHIM_MAX_ADDRS;
	     ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(s->addrs[0]))
			continue;
		memcpy(&s->addrs[s->naddrs], ai->ai_addr, ai->ai_addrlen);
		s->addr_lens[s->naddrs++] = ai->ai_addrlen;
	}
	log_debug("%s: %s resolved to %u address(es)", s->name, r->host, s->naddrs);
	s->addr_idx = 0;
	s->last_errno = 0;
	(void)conn_try_next(s);
}

static void shim_on_resolver(struct shim *sh)
{
	struct resolve **pp = &sh->resolves;
	uint64_t v;

	if (read(sh->res_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("resolver eventfd");
	while (*pp) {
		struct resolve *r = *pp;
		int rc = gai_error(&r->cb);

		if (rc == EAI_INPROGRESS) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (r->owner) {
			r->owner->res = NULL;
			on_resolved(r->owner, r, rc);
		}
		if (r->cb.ar_result)
			freeaddrinfo(r->cb.ar_result);
		free(r);
	}
}

static void session_connect(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	const char *host = target_host(s);
	uint16_t port = c->proxy.set ? c->proxy.port : c->relay.port;
	bool is_ip = c->proxy.set ? c->proxy.host_is_ip : c->relay.host_is_ip;

	s->state = S_RESOLVING;
	s->phase_deadline = s->sh->now + SHIM_CONNECT_TIMEOUT_MS;
	deadline_hint(s);
	s->naddrs = 0;
	s->addr_idx = 0;
	s->last_errno = 0;
	if (is_ip) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&s->addrs[0];
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->addrs[0];

		memset(&s->addrs[0], 0, sizeof(s->addrs[0]));
		if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET;
			v4->sin_port = htons(port);
			s->addr_lens[0] = sizeof(*v4);
		} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
			v6->sin6_port = htons(port);
			s->addr_lens[0] = sizeof(*v6);
		}
		s->naddrs = 1;
		(void)conn_try_next(s);
		return;
	}
	(void)resolve_start(s, host, port);
}

static void session_on_io(struct session *s, uint32_t events)
{
	switch (s->state) {
	case S_CONNECTING:
		(void)tcp_check(s);
		break;
	case S_PROXY:
		(void)proxy_io(s);
		break;
	case S_TLS:
		(void)tls_handshake(s);
		break;
	case S_UPGRADE:
		(void)upgrade_io(s);
		break;
	case S_OPEN:
		if ((events & EPOLLOUT) || s->want_write) {
			if (session_flush(s) < 0)
				return;
		}
		if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			(void)session_read(s);
		break;
	case S_RESOLVING:
	case S_BACKOFF:
		break; /* a stale event for a descriptor already closed */
	}
}

/* Deadline of s's next timer event. */
static uint64_t session_deadline(const struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	uint64_t d = UINT64_MAX;

	switch (s->state) {
	case S_BACKOFF:
		return s->retry_at;
	case S_OPEN:
		if (c->keepalive_s) {
			d = s->next_ping;
			if (s->last_rx + dead_ms(c) < d)
				d = s->last_rx + dead_ms(c);
		}
		if (s->attempts && s->open_at + SHIM_HEALTHY_MS < d)
			d = s->open_at + SHIM_HEALTHY_MS;
		return d;
	default:
		return s->phase_deadline;
	}
}

/* s has a deadline that may be earlier than every other: the loop must look at it. */
static void deadline_hint(struct session *s)
{
	uint64_t d = session_deadline(s);

	if (d < s->sh->next_due)
		s->sh->next_due = d;
}

static void session_tick(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	uint64_t now = s->sh->now;

	switch (s->state) {
	case S_BACKOFF:
		if (now >= s->retry_at)
			session_connect(s);
		return;
	case S_OPEN:
		if (s->attempts && now >= s->open_at + SHIM_HEALTHY_MS)
			s->attempts = 0;
		if (!c->keepalive_s)
			return;
		if (now >= s->last_rx + dead_ms(c)) {
			session_fail(s, "no data or pong from relay for %llu s",
				     (unsigned long long)(now - s->last_rx) / 1000);
			return;
		}
		if (now >= s->next_ping) {
			s->next_ping = now + (uint64_t)c->keepalive_s * 1000;
			if (ws_send(s, WS_OP_PING, NULL, 0) == 0)
				(void)session_flush(s);
		}
		return;
	default:
		if (now >= s->phase_deadline)
			session_fail(s, "connection set-up timed out after %u s (%s)",
				     SHIM_CONNECT_TIMEOUT_MS / 1000, state_names[s->state]);
		return;
	}
}

static struct session *session_new(struct shim *sh, const struct sockaddr_storage *src,
				   socklen_t len)
{
	unsigned max = sh->conf->max_sessions, slot = max;
	struct session *s;

	if (sh->nsess == max) {
		struct session *old = NULL;

		for (unsigned i = 0; i < max; i++)
			if (sh->slots[i] && (!old || sh->slots[i]->last_local < old->last_local))
				old = sh->slots[i];
		log_info("%s: evicted, %u sessions is the maximum (--max-sessions)", old->name,
			 max);
		session_free(old);
	}
	for (unsigned i = 0; i < max && slot == max; i++)
		if (!sh->slots[i])
			slot = i;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->out = malloc(SHIM_OUT_CAP);
	s->in = malloc((size_t)SHIM_IN_SLOTS * SHIM_IN_CAP);
	s->q = malloc(SHIM_QUEUE_BYTES);
	s->dec_buf = malloc((size_t)SHIM_DEC_BUFS * FRAME_MAX_LEN);
	if (!s->out || !s->in || !s->q || !s->dec_buf) {
		free(s->out);
		free(s->in);
		free(s->q);
		free(s->dec_buf);
		free(s);
		return NULL;
	}
	s->sh = sh;
	s->slot = slot;
	s->gen = ++sh->gen;
	s->fd = -1;
	memcpy(&s->src, src, len);
	s->src_len = len;
	addr_format((const struct sockaddr *)src, s->name);
	s->last_local = sh->now;
	sh->slots[slot] = s;
	sh->nsess++;
	conn_teardown(s); /* initialises the parser and the decoder */
	log_info("%s: new local source, connecting to %s", s->name, sh->conf->relay_str);
	return s;
}

static struct session *session_lookup(struct shim *sh, const struct sockaddr_storage *src)
{
	unsigned max = sh->conf->max_sessions;

	if (sh->last_hit && addr_equal((const struct sockaddr *)&sh->last_hit->src,
				       (const struct sockaddr *)src))
		return sh->last_hit;
	for (unsigned i = 0; i < max; i++) {
		struct session *s = sh->slots[i];

		if (s && addr_equal((const struct sockaddr *)&s->src, (const struct sockaddr *)src))
			return sh->last_hit = s;
	}
	return NULL;
}

/* ---- UDP -> WS ----------------------------------------------------------------------- */

static void queue_push(struct session *s, const uint8_t *p, size_t len)
{
	if (len + FRAME_HDR_LEN > SHIM_QUEUE_BYTES) {
		s->drop_queue++;
		return;
	}
	while (s->q_pkts == SHIM_QUEUE_PKTS || s->q_len + FRAME_HDR_LEN + len > SHIM_QUEUE_BYTES) {
		size_t first = FRAME_HDR_LEN + ((size_t)s->q[0] << 8 | s->q[1]);

		memmove(s->q, s->q + first, s->q_len - first);
		s->q_len -= first;
		s->q_pkts--;
		s->drop_queue++;
	}
	frame_put_hdr(s->q + s->q_len, len);
	memcpy(s->q + s->q_len + FRAME_HDR_LEN, p, len);
	s->q_len += FRAME_HDR_LEN + len;
	s->q_pkts++;
}

/* Frame every datagram of the batch from s (from index i0 on) into one WS message. */
static void emit_batch(struct shim *sh, struct session *s, unsigned i0)
{
	size_t total = 0, room, h;
	unsigned count = 0;
	uint8_t mask[4], *p;
	uint64_t r;

	room = SHIM_OUT_CAP - s->out_len;
	for (unsigned j = i0; j < sh->rn; j++) {
		size_t l;

		if (sh->rsess[j] != s || sh->rskip[j])
			continue;
		l = FRAME_HDR_LEN + sh->rmsg[j].msg_len;
		if (total + l + WS_HDR_MAX > room) {
			if (s->out_off > 0) {
				memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
				s->out_len -= s->out_off;
				s->out_off = 0;
				room = SHIM_OUT_CAP - s->out_len;
			}
			if (total + l + WS_HDR_MAX > room) {
				sh->rskip[j] = true;
				s->drop_full++;
				continue;
			}
		}
		total += l;
		count++;
	}
	if (!count)
		return;
	r = prng_next(sh);
	memcpy(mask, &r, 4);
	h = ws_put_hdr(s->out + s->out_len, WS_OP_BINARY, total, mask);
	p = s->out + s->out_len + h;
	for (unsigned j = i0; j < sh->rn; j++) {
		if (sh->rsess[j] != s || sh->rskip[j])
			continue;
		frame_put_hdr(p, sh->rmsg[j].msg_len);
		memcpy(p + FRAME_HDR_LEN, sh->riov[j].iov_base, sh->rmsg[j].msg_len);
		p += FRAME_HDR_LEN + sh->rmsg[j].msg_len;
	}
	ws_mask(s->out + s->out_len + h, total, mask, 0);
	s->out_len += h + total;
	s->tx_pkts += count;
}

static void shim_on_udp(struct shim *sh)
{
	for (int round = 0; round < 8; round++) {
		int n;

		for (unsigned i = 0; i < SHIM_BATCH; i++) {
			sh->riov[i].iov_base = sh->rbuf + (size_t)i * SHIM_DGRAM_BUF;
			sh->riov[i].iov_len = SHIM_DGRAM_BUF;
			memset(&sh->rmsg[i].msg_hdr, 0, sizeof(sh->rmsg[i].msg_hdr));
			sh->rmsg[i].msg_hdr.msg_name = &sh->raddr[i];
			sh->rmsg[i].msg_hdr.msg_namelen = sizeof(sh->raddr[i]);
			sh->rmsg[i].msg_hdr.msg_iov = &sh->riov[i];
			sh->rmsg[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(sh->udp_fd, sh->rmsg, SHIM_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				log_warn("recvmmsg");
			return;
		}
		sh->rn = (unsigned)n;
		for (unsigned i = 0; i < sh->rn; i++) {
			struct session *s;

			sh->rsess[i] = NULL;
			sh->rskip[i] = false;
			s = session_lookup(sh, &sh->raddr[i]);
			if (!s) {
				s = session_new(sh, &sh->raddr[i], sh->rmsg[i].msg_hdr.msg_namelen);
				if (!s) {
					sh->drop_nosession++;
					continue;
				}
				sh->rsess[i] = s;
				s->batch_n = 0;
				session_connect(s); /* may fail at once, but never frees s */
			}
			sh->rsess[i] = s;
			s->last_local = sh->now;
			s->batch_n++;
			if ((sh->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) ||
			    sh->rmsg[i].msg_len > FRAME_MAX_LEN) {
				sh->rskip[i] = true;
				s->drop_big++;
			}
		}
		for (unsigned i = 0; i < sh->rn; i++) {
			struct session *s = sh->rsess[i];

			if (!s || !s->batch_n)
				continue;
			s->batch_n = 0;
			if (s->state == S_OPEN) {
				emit_batch(sh, s, i);
				if (!s->want_write) /* else EPOLLOUT is armed and will write */
					(void)session_flush(s);
				continue;
			}
			for (unsigned j = i; j < sh->rn; j++)
				if (sh->rsess[j] == s && !sh->rskip[j])
					queue_push(s, sh->riov[j].iov_base, sh->rmsg[j].msg_len);
		}
		sh->rn = 0;
		if (n < SHIM_BATCH)
			return;
	}
}

/* ---- the loop ------------------------------------------------------------------------ */

int shim_open(struct shim **out, const struct shim_conf *conf, SSL_CTX *ctx)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct shim *sh = calloc(1, sizeof(*sh));
	sigset_t mask;
	int ret;

	*out = NULL;
	if (!sh)
		return -ENOMEM;
	sh->conf = conf;
	sh->ctx = ctx;
	sh->verify = !conf->insecure && conf->npins == 0;
	sh->epfd = sh->udp_fd = sh->sig_fd = sh->res_fd = -1;
	sh->now = now_ms();
	url_format_hostport(conf->relay.host, conf->relay.host_is_v6, conf->relay.port,
			    sh->target, sizeof(sh->target));
	if (conf->proxy.set) {
		char hp[ADDR_HOST_MAX + 16];

		snprintf(sh->via, sizeof(sh->via), "via proxy %s",
			 url_format_hostport(conf->proxy.host, conf->proxy.host_is_v6,
					     conf->proxy.port, hp, sizeof(hp)));
	} else {
		snprintf(sh->via, sizeof(sh->via), "direct");
	}
	if (RAND_bytes((unsigned char *)&sh->prng, sizeof(sh->prng)) != 1 || !sh->prng)
		sh->prng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() ^ sh->now;
	sh->slots = calloc(conf->max_sessions, sizeof(*sh->slots));
	sh->rbuf = malloc((size_t)SHIM_BATCH * SHIM_DGRAM_BUF);
	if (!sh->slots || !sh->rbuf) {
		ret = -ENOMEM;
		goto out_close;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	/* blocked before getaddrinfo_a() starts threads, so they inherit the mask */
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sh->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (sh->res_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (sh->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		ret = -errno;
		log_warn("cannot set up the event loop");
		goto out_close;
	}
	sh->udp_fd = socket(conf->listen.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sh->udp_fd < 0 || bind(sh->udp_fd, (const struct sockaddr *)&conf->listen,
				   conf->listen_len) < 0) {
		ret = -errno;
		log_warn("--listen %s: cannot bind", conf->listen_str);
		goto out_close;
	}
	/* bursts arrive while the loop is busy with TLS: a deep queue beats drops (FORCE works
	 * for root, the plain option is capped by net.core.rmem_max) */
	for (int i = 0; i < 2; i++) {
		static const int opts[2][2] = { { SO_RCVBUFFORCE, SO_RCVBUF },
						 { SO_SNDBUFFORCE, SO_SNDBUF } };
		int sz = SHIM_UDP_BUF;

		if (setsockopt(sh->udp_fd, SOL_SOCKET, opts[i][0], &sz, sizeof(sz)) < 0)
			(void)setsockopt(sh->udp_fd, SOL_SOCKET, opts[i][1], &sz, sizeof(sz));
	}
	ev.data.u64 = TAG_UDP;
	if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->udp_fd, &ev) < 0)
		goto out_errno;
	ev.data.u64 = TAG_SIGNAL;
	if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->sig_fd, &ev) < 0)
		goto out_errno;
	ev.data.u64 = TAG_RESOLVER;
	if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->res_fd, &ev) < 0)
		goto out_errno;
	*out = sh;
	return 0;
out_errno:
	ret = -errno;
	log_warn("epoll_ctl");
out_close:
	shim_close(sh);
	return ret;
}

static void shim_shutdown(struct shim *sh)
{
	static const uint8_t normal[2] = { WS_CLOSE_NORMAL >> 8, WS_CLOSE_NORMAL & 0xff };
	unsigned closed = 0;

	for (unsigned i = 0; i < sh->conf->max_sessions; i++) {
		struct session *s = sh->slots[i];

		if (!s || s->state != S_OPEN)
			continue;
		/* best effort: one non-blocking write of what is queued plus the close frame */
		if (ws_send(s, WS_OP_CLOSE, normal, sizeof(normal)) == 0) {
			ERR_clear_error();
			(void)SSL_write(s->ssl, s->out + s->out_off, (int)(s->out_len - s->out_off));
			(void)SSL_shutdown(s->ssl);
			ERR_clear_error();
			closed++;
		}
	}
	log_info("shutting down, %u open session(s) closed", closed);
}

int shim_run(struct shim *sh)
{
	struct epoll_event evs[64];

	log_info("listening on %s for WireGuard, relay %s (%s)", sh->conf->listen_str,
		 sh->conf->relay_str, sh->via);
	while (!sh->stop) {
		uint64_t next;
		bool ready;
		int timeout, n;

		sh->now = now_ms();
		if (sh->now >= sh->next_due) {
			next = UINT64_MAX;
			for (unsigned i = 0; i < sh->conf->max_sessions; i++) {
				struct session *s = sh->slots[i];

				if (s && session_deadline(s) <= sh->now)
					session_tick(s);
				if ((s = sh->slots[i])) {
					uint64_t d = session_deadline(s);

					if (d < next)
						next = d;
				}
			}
			sh->next_due = next;
		}
		next = sh->next_due;
		ready = sh->rx_ready_any;
		if (ready)
			timeout = 0;
		else if (next == UINT64_MAX)
			timeout = -1;
		else
			timeout = next <= sh->now ? 0 : (int)(next - sh->now > 60000 ? 60000 :
							       next - sh->now);
		n = epoll_wait(sh->epfd, evs, 64, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait");
		}
		sh->now = now_ms();
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			unsigned slot;
			struct session *s;

			switch (tag) {
			case TAG_UDP:
				shim_on_udp(sh);
				continue;
			case TAG_SIGNAL: {
				struct signalfd_siginfo si;

				if (read(sh->sig_fd, &si, sizeof(si)) == sizeof(si))
					log_info("received signal %u", si.ssi_signo);
				sh->stop = true;
				continue;
			}
			case TAG_RESOLVER:
				shim_on_resolver(sh);
				continue;
			}
			slot = (unsigned)(tag & 0xffffffff) - TAG_SESSION;
			if (slot >= sh->conf->max_sessions)
				continue;
			s = sh->slots[slot];
			if (!s || s->gen != (uint32_t)(tag >> 32))
				continue; /* freed or replaced within this batch */
			session_on_io(s, evs[i].events);
		}
		/* Sessions that stopped reading on their budget: their turn comes after the
		 * events of this round (the local UDP socket's among them). */
		ready = sh->rx_ready_any;
		sh->rx_ready_any = false;
		for (unsigned i = 0; ready && i < sh->conf->max_sessions; i++) {
			struct session *s = sh->slots[i];

			if (s && s->rx_ready && s->state == S_OPEN)
				(void)session_read(s);
		}
	}
	shim_shutdown(sh);
	return 0;
}

void shim_close(struct shim *sh)
{
	if (!sh)
		return;
	if (sh->slots)
		for (unsigned i = 0; i < sh->conf->max_sessions; i++)
			if (sh->slots[i])
				session_free(sh->slots[i]);
	/* requests still running in glibc keep their memory; the process is ending */
	for (struct resolve *r = sh->resolves, *next; r; r = next) {
		next = r->next;
		if (gai_cancel(&r->cb) == EAI_ALLDONE || gai_error(&r->cb) != EAI_INPROGRESS) {
			if (r->cb.ar_result)
				freeaddrinfo(r->cb.ar_result);
			free(r);
		}
	}
	if (sh->udp_fd >= 0)
		close(sh->udp_fd);
	if (sh->sig_fd >= 0)
		close(sh->sig_fd);
	if (sh->res_fd >= 0)
		close(sh->res_fd);
	if (sh->epfd >= 0)
		close(sh->epfd);
	free(sh->rbuf);
	free(sh->slots);
	free(sh);
}
