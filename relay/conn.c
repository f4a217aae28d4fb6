/* SPDX-License-Identifier: MIT */
/* One tunnel: a WebSocket connection and the UDP socket connected to WireGuard for it.
 *
 * WS→UDP: the payload bytes of the client's messages are a record stream; each record must
 * have a WireGuard shape or it is dropped and counted, and too many bad records close the
 * tunnel. Records that arrive whole are sent straight from lws's buffer (sendmmsg, no
 * copy). UDP→WS: recvmmsg into a loop-wide scratch area, then framed into the tunnel's
 * bounded send queue; a full queue drops the datagram (WireGuard and TCP inside recover,
 * a queue would only add latency). The queue is sent as WS messages of whole records, up
 * to one TLS record's worth each. Every buffer is allocated once, when the tunnel opens.
 * The destination is fixed: nothing from the client chooses where UDP goes.
 * With --jit-socket, handshake initiations take a detour through jit.c, which holds one per
 * tunnel while the provisioner decides, and hands it back here to be forwarded. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "relay.h"
#include "udpgso.h"
#include "wgmsg.h"

struct conn {
	struct lws *wsi;
	struct lws *udp_wsi;
	int udp_fd;
	struct conn *prev, *next;
	struct frame_dec dec;
	uint8_t *dec_buf;
	uint8_t *txq;           /* LWS_PRE + queue_bytes; pending bytes are [head, tail) */
	size_t head, tail;
	unsigned tx_pkts;
	unsigned bad_records;
	uint32_t kernel_drops;  /* SO_RXQ_OVFL's count at the last read */
	uint64_t opened_ms, last_traffic_ms;
	uint64_t pkts_in, pkts_out;
	struct sockaddr_storage peer_addr; /* port zeroed: the client's address */
	struct sockaddr_storage client;    /* the client, port included (PROXY v2's, or TCP's) */
	struct jit_hold hold;   /* the initiation held for the provisioner (--jit-socket) */
	int close_status;       /* set: close with this code at the next WRITEABLE */
	bool live;
	bool stream_broken;     /* the decoder refused a length: its partial state means nothing */
	bool fly;               /* flyctl's framing (docs/PROTOCOL.md): text, u32 lengths */
	uint8_t pre_have;       /* bytes of flyctl's preamble seen so far */
	char peer[ADDR_STR_LEN];     /* the client, "ip:port": every line about this tunnel */
	char endpoint[ADDR_STR_LEN]; /* its UDP socket: what `wg show` lists as the endpoint */
	uint8_t wg_key[32];          /* the WireGuard peer, once the provisioner named it */
	int token;                   /* --tokens: its index in relay.tokens, -1 without */
	uint8_t token_hash[32];      /* to find it again after a reload */
};

/* WS->UDP: the records of one chunk (out_iov), sent as out_msgs; runs of one length as UDP
 * GSO messages (common/udpgso.h), which cut the relay's CPU per datagram by 1.7-3.5x. A kernel
 * or route that refuses GSO turns it off for good. */
static struct mmsghdr out_msgs[RELAY_UDP_BATCH];
static struct iovec out_iov[RELAY_UDP_BATCH];
static union udp_gso_cmsg out_cmsg[RELAY_UDP_BATCH];
static bool gso_off;

size_t conn_user_size(void)
{
	return sizeof(struct conn);
}

uint64_t relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_request_close(struct conn *c, int status)
{
	if (!c->close_status)
		c->close_status = status;
	lws_callback_on_writable(c->wsi);
}

static int udp_open(void)
{
	const struct sockaddr *wg = (const struct sockaddr *)&relay.cfg.wg;
	int fd;

	int one = 1, rcvbuf = (int)relay.cfg.queue_bytes * 4;

	fd = socket(wg->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* What WireGuard sends while the loop is busy waits here: room for a few queues'
	 * worth (the kernel caps it at net.core.rmem_max), and the kernel's count of what did
	 * not fit comes with each read (SO_RXQ_OVFL). Best effort: neither is required. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	(void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&relay.udp_local, relay.udp_local_len) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* The client, port included: admission's idea (a front end's PROXY header names it), else
 * the TCP peer. */
static void client_of(struct lws *wsi, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);

	if (admit_client(wsi, ss))
		return;
	memset(ss, 0, sizeof(*ss));
	if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)ss, &len) < 0)
		memset(ss, 0, sizeof(*ss));
}

static void peer_address(struct lws *wsi, struct sockaddr_storage *ss)
{
	client_of(wsi, ss);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = 0;
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = 0;
}

/* ss as "ip:port", or "ip" for X-Forwarded-For's client (port 0: the header has none), or
 * "unix" for a unix socket's peer (--listen-ws). */
static void client_text(const struct sockaddr_storage *ss, char out[static ADDR_STR_LEN])
{
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET && !v4->sin_port)
		inet_ntop(AF_INET, &v4->sin_addr, out, ADDR_STR_LEN);
	else if (ss->ss_family == AF_INET6 && !v6->sin6_port)
		inet_ntop(AF_INET6, &v6->sin6_addr, out, ADDR_STR_LEN);
	else if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		addr_format((const struct sockaddr *)ss, out);
	else
		snprintf(out, ADDR_STR_LEN, "unix");
}

/* The client as "ip:port" (its TCP peer, or what a front end said). */
static void peer_name(struct lws *wsi, char out[static ADDR_STR_LEN])
{
	struct sockaddr_storage ss;

	client_of(wsi, &ss);
	client_text(&ss, out);
}

/* What the provisioner is told about this tunnel: the UDP socket's own address (WireGuard
 * sees it as the client's endpoint) and the client's TCP address, port included. */
static void jit_setup(struct conn *c)
{
	struct sockaddr_storage source, client;
	socklen_t len = sizeof(source);

	memset(&source, 0, sizeof(source));
	if (getsockname(c->udp_fd, (struct sockaddr *)&source, &len) < 0) {
		/* Without a source the request would be malformed: this tunnel is not held. */
		log_warn("tunnel %s: getsockname on its UDP socket (its initiations go unasked)",
			 c->peer);
		memset(&source, 0, sizeof(source));
	}
	client = c->client;
	jit_hold_init(&c->hold, (struct sockaddr *)&source, (struct sockaddr *)&client);
}

void conn_jit_peer(struct jit_hold *h, const uint8_t key[static 32], const char *verdict)
{
	struct conn *c = lws_container_of(h, struct conn, hold);
	char b64[48];

	if (!memcmp(c->wg_key, key, sizeof(c->wg_key)))
		return; /* said already: one line per tunnel and peer, not per rekey */
	memcpy(c->wg_key, key, sizeof(c->wg_key));
	EVP_EncodeBlock((unsigned char *)b64, key, 32);
	log_info_ratelimited("tunnel %s (WireGuard endpoint %s): peer %s, %s", c->peer,
			     c->endpoint, b64, verdict);
}

static int conn_open(struct conn *c, struct lws *wsi)
{
	lws_sock_file_fd_type desc;
	int ret;

	c->wsi = wsi;
	c->udp_fd = -1;
	client_text(&c->client, c->peer);
	c->peer_addr = c->client;
	if (c->peer_addr.ss_family == AF_INET)
		((struct sockaddr_in *)&c->peer_addr)->sin_port = 0;
	else if (c->peer_addr.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&c->peer_addr)->sin6_port = 0;
	c->dec_buf = malloc(relay.cfg.max_record);
	c->txq = malloc(LWS_PRE + relay.cfg.queue_bytes);
	if (!c->dec_buf || !c->txq) {
		log_warnx("tunnel %s: out of memory", c->peer);
		return -ENOMEM;
	}
	/* dec.hdr_len is the framing's header length, both ways, from here on */
	ret = frame_dec_init_hdr(&c->dec, c->dec_buf, relay.cfg.max_record,
				 c->fly ? FRAME_HDR_LEN_FLY : FRAME_HDR_LEN);
	if (ret < 0)
		return ret;
	c->head = c->tail = LWS_PRE;

	ret = udp_open();
	if (ret < 0) {
		errno = -ret;
		log_warn("tunnel %s: UDP socket toward WireGuard", c->peer);
		return ret;
	}
	desc.filefd = ret;
	c->udp_wsi = lws_adopt_descriptor_vhost(relay.internal_vhost, LWS_ADOPT_RAW_FILE_DESC, desc,
						 "wgws-udp", wsi);
	if (!c->udp_wsi) {
		close(ret); /* lws closes only sockets it failed to adopt, not raw descriptors */
		log_warnx("tunnel %s: cannot add the UDP socket to the event loop", c->peer);
		return -ENOMEM;
	}
	c->udp_fd = ret;
	lws_set_opaque_user_data(c->udp_wsi, c);
	{
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (getsockname(ret, (struct sockaddr *)&ss, &len) == 0)
			addr_format((struct sockaddr *)&ss, c->endpoint);
		else
			strcpy(c->endpoint, "?");
	}
	if (relay.cfg.jit_socket[0])
		jit_setup(c);

	c->opened_ms = c->last_traffic_ms = relay_now_ms();
	c->live = true;
	c->next = relay.conns;
	if (relay.conns)
		relay.conns->prev = c;
	relay.conns = c;
	relay.conns_active++;
	relay.st.conns_total++;
	relay.st.conns_fly_total += c->fly;
	log_info_ratelimited("tunnel %s: open, WireGuard endpoint %s%s%s%s", c->peer, c->endpoint,
			     c->token >= 0 ? ", token " : "",
			     c->token >= 0 ? tokens_at(relay.tokens, (unsigned)c->token)->name : "",
			     c->fly ? " (flyctl)" : "");
	return 0;
}

/* Called on CLOSED, which lws delivers for every upgraded connection, a failed open too. */
static void conn_release(struct conn *c)
{
	if (c->live) {
		jit_hold_forget(&c->hold);
		if (frame_dec_is_partial(&c->dec) && !c->stream_broken)
			relay.st.drops[DROP_TRUNCATED]++;
		if (c->prev)
			c->prev->next = c->next;
		else
			relay.conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		relay.conns_active--;
		log_info_ratelimited("tunnel %s (WireGuard endpoint %s): closed after %llu s, %llu "
				     "packets in, %llu out", c->peer, c->endpoint,
				     (unsigned long long)(relay_now_ms() - c->opened_ms) / 1000,
				     (unsigned long long)c->pkts_in,
				     (unsigned long long)c->pkts_out);
		c->live = false;
	}
	if (c->udp_wsi) {
		/* The UDP wsi is our child: lws closes it (and its fd) with us. */
		lws_set_opaque_user_data(c->udp_wsi, NULL);
		c->udp_wsi = NULL;
	}
	free(c->dec_buf);
	free(c->txq);
	c->dec_buf = c->txq = NULL;
}

static void count_sent(struct conn *c, const struct msghdr *m)
{
	for (size_t k = 0; k < m->msg_iovlen; k++)
		relay.st.bytes_ws_to_udp += m->msg_iov[k].iov_len;
	relay.st.pkts_ws_to_udp += m->msg_iovlen;
	c->pkts_in += (unsigned)m->msg_iovlen;
}

/* A GSO message the kernel refused: GSO off, its records one by one. */
static void gso_fallback(struct conn *c, struct msghdr *m, int err)
{
	size_t bytes;
	unsigned n;

	gso_off = true;
	log_warnx("UDP GSO refused by the kernel (%s): datagrams to WireGuard go one by one",
		  strerror(err));
	n = udp_gso_send_each(c->udp_fd, m, &bytes);
	relay.st.drops[DROP_UDP_ERROR] += m->msg_iovlen - n;
	relay.st.pkts_ws_to_udp += n;
	relay.st.bytes_ws_to_udp += bytes;
	c->pkts_in += n;
}

/* Send msgs[0..*n) to WireGuard (a message with several iovecs is a GSO message of as many
 * datagrams), count them, and set *n to 0. */
static void udp_send(struct conn *c, struct mmsghdr *msgs, unsigned *n)
{
	unsigned sent = 0;

	if (c->udp_fd < 0) {
		for (unsigned i = 0; i < *n; i++)
			relay.st.drops[DROP_UDP_ERROR] += msgs[i].msg_hdr.msg_iovlen;
		*n = 0;
		return;
	}
	if (*n)
		c->last_traffic_ms = relay_now_ms();

	while (sent < *n) {
		struct msghdr *m = &msgs[sent].msg_hdr;
		int r = sendmmsg(c->udp_fd, msgs + sent, *n - sent, MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (udp_gso_refused(m, errno)) {
				gso_fallback(c, m, errno);
				sent++;
				continue;
			}
			/* ECONNREFUSED (WireGuard not listening), EAGAIN (socket buffer full):
			 * this message's datagrams are lost; go on with the next. */
			relay.st.drops[DROP_UDP_ERROR] += m->msg_iovlen;
			sent++;
			continue;
		}
		for (int i = 0; i < r; i++)
			count_sent(c, &msgs[sent + i].msg_hdr);
		sent += (unsigned)r;
	}
	*n = 0;
}

/* Send the records out_iov[0..*n): runs of one length become GSO messages. */
static void udp_flush(struct conn *c, unsigned *n)
{
	unsigned m = udp_gso_build(out_msgs, out_cmsg, out_iov, *n, &relay.cfg.wg,
				   relay.cfg.wg_len, !gso_off);

	*n = 0;
	udp_send(c, out_msgs, &m);
}

/* Its own message header: jit.c may release a hold while another tunnel's batch is being
 * built in out_msgs (the channel fails under jit_hold()). */
void conn_forward_held(struct jit_hold *h)
{
	struct conn *c = lws_container_of(h, struct conn, hold);
	struct iovec iov = { .iov_base = h->req.initiation, .iov_len = sizeof(h->req.initiation) };
	struct mmsghdr msg = {
		.msg_hdr = {
			.msg_name = &relay.cfg.wg,
			.msg_namelen = relay.cfg.wg_len,
			.msg_iov = &iov,
			.msg_iovlen = 1,
		},
	};
	unsigned n = 1;

	udp_send(c, &msg, &n);
}

/* flyctl's client starts its stream with these 4 bytes (0x2FACED77), in a message of their
 * own; nothing answers them. */
static const uint8_t fly_preamble[4] = { 0x2f, 0xac, 0xed, 0x77 };

/* Feed one chunk of the client's stream. Returns 0, or a WS close status. */
static int conn_ws_rx(struct conn *c, const uint8_t *in, size_t len)
{
	unsigned n = 0;

	for (; c->fly && c->pre_have < sizeof(fly_preamble) && len; in++, len--) {
		if (*in != fly_preamble[c->pre_have++]) {
			log_info_ratelimited("tunnel %s: flyctl's stream without its preamble, "
					     "closing (1002)", c->peer);
			return LWS_CLOSE_STATUS_PROTOCOL_ERR;
		}
	}

	while (len) {
		const uint8_t *rec;
		size_t rec_len;
		enum wgmsg_type type;
		ssize_t used = frame_dec_feed(&c->dec, in, len, &rec, &rec_len);

		if (used < 0) {
			udp_flush(c, &n);
			c->stream_broken = true;
			relay.st.drops[DROP_OVERSIZE]++;
			log_info_ratelimited("tunnel %s: record longer than %lu bytes, closing",
					     c->peer, relay.cfg.max_record);
			return LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
		}
		in += used;
		len -= (size_t)used;
		if (!rec)
			continue;
		type = wgmsg_classify(rec, rec_len);
		if (type == WGMSG_INVALID) {
			relay.st.drops[DROP_MALFORMED]++;
			if (++c->bad_records > RELAY_BAD_RECORDS_MAX) {
				udp_flush(c, &n);
				log_info_ratelimited("tunnel %s: too many records that are not "
						     "WireGuard, closing", c->peer);
				return LWS_CLOSE_STATUS_POLICY_VIOLATION;
			}
			continue;
		}
		/* Held: it goes later, after the records behind it (WireGuard does not mind). */
		if (type == WGMSG_INITIATION && relay.cfg.jit_socket[0] && jit_hold(&c->hold, rec))
			continue;
		out_iov[n].iov_base = (void *)rec;
		out_iov[n].iov_len = rec_len;
		n++;
		/* A record reassembled in dec_buf is overwritten by the next partial record:
		 * send it before feeding on. Views into `in` stay valid for the whole chunk. */
		if (n == RELAY_UDP_BATCH || rec == c->dec_buf)
			udp_flush(c, &n);
	}
	udp_flush(c, &n);
	return 0;
}

static void conn_queue(struct conn *c, const uint8_t *p, size_t len)
{
	size_t need = c->dec.hdr_len + len;
	size_t end = LWS_PRE + relay.cfg.queue_bytes;

	if (c->tx_pkts >= RELAY_QUEUE_PKTS || need > relay.cfg.queue_bytes - (c->tail - c->head)) {
		relay.st.drops[DROP_QUEUE_FULL]++;
		return;
	}
	if (c->tail + need > end) {
		/* Bytes before head are sent (or lws's scratch): slide the rest down. */
		memmove(c->txq + LWS_PRE, c->txq + c->head, c->tail - c->head);
		c->tail -= c->head - LWS_PRE;
		c->head = LWS_PRE;
	}
	if (c->fly)
		frame_put_hdr_fly(c->txq + c->tail, len);
	else
		frame_put_hdr(c->txq + c->tail, len);
	memcpy(c->txq + c->tail + c->dec.hdr_len, p, len);
	c->tail += need;
	c->tx_pkts++;
}

static int conn_ws_tx(struct conn *c);

/* SO_RXQ_OVFL: the kernel's running count of datagrams it dropped on this socket (its
 * buffer was full), sent with each datagram; the newest tells the total. */
static void count_kernel_drops(struct conn *c, const struct msghdr *m)
{
	for (const struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR((struct msghdr *)m,
									       (struct cmsghdr *)cm)) {
		uint32_t total;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SO_RXQ_OVFL ||
		    cm->cmsg_len < CMSG_LEN(sizeof(total)))
			continue;
		memcpy(&total, CMSG_DATA(cm), sizeof(total));
		relay.st.udp_kernel_drops += (uint32_t)(total - c->kernel_drops);
		c->kernel_drops = total;
	}
}

static void conn_udp_rx(struct conn *c)
{
	static struct mmsghdr msgs[RELAY_UDP_BATCH];
	static struct iovec iov[RELAY_UDP_BATCH];
	static struct sockaddr_storage from[RELAY_UDP_BATCH];
	static union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(uint32_t))];
	} ctl[RELAY_UDP_BATCH];
	size_t slot = relay.cfg.max_record + 1; /* one spare byte tells an oversize datagram */

	/* Bounded: a flooding socket cannot keep the loop to itself; it stays readable. */
	for (int round = 0; round < 4; round++) {
		int r;

		for (int i = 0; i < RELAY_UDP_BATCH; i++) {
			iov[i].iov_base = relay.udp_buf + (size_t)i * slot;
			iov[i].iov_len = slot;
			msgs[i].msg_hdr = (struct msghdr){
				.msg_name = &from[i],
				.msg_namelen = sizeof(from[i]),
				.msg_iov = &iov[i],
				.msg_iovlen = 1,
				.msg_control = ctl[i].buf,
				.msg_controllen = sizeof(ctl[i].buf),
			};
		}
		r = recvmmsg(c->udp_fd, msgs, RELAY_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				relay.st.drops[DROP_UDP_ERROR]++; /* e.g. ICMP port unreachable */
			break;
		}
		if (r > 0)
			count_kernel_drops(c, &msgs[r - 1].msg_hdr);
		for (int i = 0; i < r; i++) {
			size_t len = msgs[i].msg_len;

			/* The socket is not connected: only WireGuard may answer on it. */
			if (!addr_equal((struct sockaddr *)&from[i],
					(struct sockaddr *)&relay.cfg.wg)) {
				relay.st.drops[DROP_FOREIGN]++;
				continue;
			}
			if (len > relay.cfg.max_record || (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
				relay.st.drops[DROP_OVERSIZE]++;
				continue;
			}
			conn_queue(c, iov[i].iov_base, len);
		}
		if (r < RELAY_UDP_BATCH)
			break;
	}
	if (c->tail > c->head) {
		c->last_traffic_ms = relay_now_ms();
		/* Send now when the TCP socket has room: lws_send_pipe_choked() (one poll(2) on
		 * this descriptor; lws allows a write outside WRITEABLE after it) instead of
		 * waiting for WRITEABLE, a pass of the event loop over every descriptor. */
		if (c->close_status || lws_send_pipe_choked(c->wsi))
			lws_callback_on_writable(c->wsi);
		else if (conn_ws_tx(c) < 0)
			conn_request_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
	}
}

static int conn_ws_tx(struct conn *c)
{
	const uint8_t *p = c->txq + c->head;
	size_t avail = c->tail - c->head, len = 0;
	unsigned recs = 0;
	int n;

	if (!avail)
		return 0; /* lws's own pings wake us up too */
	while (len < avail) {
		size_t rl = c->dec.hdr_len;

		for (unsigned i = 0; i < c->dec.hdr_len; i++)
			rl += (size_t)p[len + i] << (8 * (c->dec.hdr_len - 1 - i));

		if (len && len + rl > RELAY_WS_CHUNK)
			break;
		len += rl;
		recs++;
	}
	/* flyctl's client closes on a binary message: its stream is text messages. */
	n = lws_write(c->wsi, c->txq + c->head, len, c->fly ? LWS_WRITE_TEXT : LWS_WRITE_BINARY);
	if (n < 0)
		return -1;
	relay.st.pkts_udp_to_ws += recs;
	relay.st.bytes_udp_to_ws += len - (size_t)recs * c->dec.hdr_len;
	relay.st.ws_messages_out++;
	c->pkts_out += recs;
	c->tx_pkts -= recs;
	c->head += len;
	if (c->head == c->tail)
		c->head = c->tail = LWS_PRE;
	else
		lws_callback_on_writable(c->wsi);
	return 0;
}

/* What lws lets through that the RFC or our protocol forbids: unmasked client frames (1002,
 * RFC 6455 §5.1) and text messages (1003: the wgws stream is binary; flyctl's is text, and a
 * binary message there is as wrong). Returns a close status or 0. */
static int conn_check_frames(struct conn *c)
{
	const char *why = wsmask_violation(c->wsi);

	if (why) {
		log_info_ratelimited("tunnel %s: %s, closing (1002)", c->peer, why);
		return LWS_CLOSE_STATUS_PROTOCOL_ERR;
	}
	if (!lws_frame_is_binary(c->wsi) != c->fly) {
		log_info_ratelimited("tunnel %s: %s, closing (1003)", c->peer, c->fly ?
				     "a binary message (flyctl's stream is text)" : "a text message");
		return LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE;
	}
	return 0;
}

void conn_token_counts(unsigned *active, unsigned n)
{
	memset(active, 0, sizeof(*active) * n);
	for (struct conn *c = relay.conns; c; c = c->next)
		if (c->token >= 0 && (unsigned)c->token < n)
			active[c->token]++;
}

/* The token this upgrade offers: its index, or -1 without one, -2 for one the file does not
 * hold (or malformed). hash receives its SHA-256. */
static int offered_token(struct lws *wsi, uint8_t hash[static 32])
{
	char auth[TOKEN_MAX_LEN + 32];
	int ret;

	if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
		return -1;
	ret = tokens_hash_bearer(auth, hash);
	OPENSSL_cleanse(auth, sizeof(auth));
	if (ret == -ENOENT)
		return -1;
	if (ret < 0)
		return -2;
	ret = tokens_find_hash(relay.tokens, hash);
	return ret < 0 ? -2 : ret;
}

void conn_tokens_changed(void)
{
	for (struct conn *c = relay.conns; c; c = c->next) {
		int i = c->token >= 0 || relay.tokens ? tokens_find_hash(relay.tokens, c->token_hash)
						      : -1;

		if (!relay.tokens) {
			c->token = -1; /* --tokens gone: anyone may; nobody is closed for it */
			continue;
		}
		if (i >= 0) {
			c->token = i; /* the same token, maybe at another line now */
			continue;
		}
		relay.st.token_revoked++;
		log_info_ratelimited("tunnel %s: %s, closing (1008)", c->peer, c->token >= 0 ?
				     "its token is no longer accepted" :
				     "it has no token, and --tokens is required now");
		c->token = -1;
		conn_request_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION);
	}
}

/* --listen-ws from a --forwarded-from source: the client is X-Forwarded-For's from now on
 * (admit.c). Nonzero when the upgrade is refused (answered). */
static int conn_forwarded(struct lws *wsi)
{
	char who[ADDR_STR_LEN];
	const char *why;
	int ret = admit_forwarded(wsi, &why);

	if (ret == -EINVAL) {
		relay.st.rejects[REJECT_FORWARDED]++;
		peer_name(wsi, who);
		log_info_ratelimited("front end %s (--forwarded-from): %s: refusing a tunnel (400)",
				     who, why);
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
		return 1;
	}
	if (ret == -EAGAIN) {
		relay.st.rejects[REJECT_IP_RATE]++;
		peer_name(wsi, who);
		log_info_ratelimited("%s (X-Forwarded-For): over --rate-per-ip: refusing a tunnel "
				     "(429)", who);
		lws_return_http_status(wsi, 429, NULL);
		return 1;
	}
	if (ret == 1) {
		peer_name(wsi, who);
		log_info_ratelimited("--listen-ws: X-Forwarded-For from %s ignored: not a "
				     "--forwarded-from source", who);
	}
	return 0;
}

/* The checks every upgrade passes, whatever its framing, once its path is known good:
 * shutdown, X-Forwarded-For, --max-conns, --max-conns-per-ip, --tokens. Nonzero when refused
 * (answered with a status the client can show; lws closes after). */
static int conn_admit(struct lws *wsi)
{
	struct sockaddr_storage ss;
	unsigned long from_ip = 0, with_token = 0;
	char who[ADDR_STR_LEN];
	uint8_t hash[32];
	int tok = -1;

	if (relay.shutting_down) {
		relay.st.rejects[REJECT_SHUTDOWN]++;
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL);
		return 1;
	}
	if (conn_forwarded(wsi))
		return 1;
	if (relay.conns_active >= relay.cfg.max_conns) {
		relay.st.rejects[REJECT_LIMIT]++;
		log_info_ratelimited("connection limit (%lu) reached: refusing a tunnel",
				     relay.cfg.max_conns);
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL);
		return 1;
	}
	if (relay.tokens)
		tok = offered_token(wsi, hash);
	/* One pass over the tunnels (O(tunnels), at upgrade time only: cheaper than tables kept
	 * in step) counts both what this address and what this token hold. */
	peer_address(wsi, &ss);
	if (relay.cfg.max_conns_per_ip || tok >= 0)
		for (struct conn *c = relay.conns; c; c = c->next) {
			/* unix peers (--listen-ws, untrusted): one client, as the warning says */
			from_ip += addr_equal((struct sockaddr *)&c->peer_addr,
					      (struct sockaddr *)&ss) ||
				   (ss.ss_family == AF_UNIX &&
				    c->peer_addr.ss_family == AF_UNIX);
			with_token += tok >= 0 && c->token == tok;
		}
	if (relay.cfg.max_conns_per_ip && from_ip >= relay.cfg.max_conns_per_ip) {
		relay.st.rejects[REJECT_IP_LIMIT]++;
		log_info_ratelimited("per-address limit (%lu) reached: refusing a tunnel",
				     relay.cfg.max_conns_per_ip);
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL);
		return 1;
	}
	if (!relay.tokens)
		return 0;
	if (tok < 0) {
		relay.st.rejects[REJECT_TOKEN]++;
		peer_name(wsi, who);
		log_info_ratelimited("%s: %s token: refusing a tunnel (401)", who,
				     tok == -1 ? "no" : "an unknown");
		lws_return_http_status(wsi, HTTP_STATUS_UNAUTHORIZED, NULL);
		return 1;
	}
	if (tokens_at(relay.tokens, (unsigned)tok)->max_conns &&
	    with_token >= tokens_at(relay.tokens, (unsigned)tok)->max_conns) {
		relay.st.rejects[REJECT_TOKEN_LIMIT]++;
		log_info_ratelimited("token %s: %lu tunnels, its limit: refusing one",
				     tokens_at(relay.tokens, (unsigned)tok)->name,
				     tokens_at(relay.tokens, (unsigned)tok)->max_conns);
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL);
		return 1;
	}
	return 0;
}

int conn_fly_filter(struct lws *wsi, void *user)
{
	struct conn *c = user;
	char uri[4];

	if (!relay.cfg.flyctl || !c || lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) ||
	    lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) != 1 || strcmp(uri, "/"))
		return -1;
	if (conn_admit(wsi))
		return 1;
	c->fly = true; /* from here on, http.c hands this connection's callbacks to ours */
	return 0;
}

bool conn_is_fly(const void *user)
{
	return user && ((const struct conn *)user)->fly;
}

int conn_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		     size_t len)
{
	uint8_t hash[32];
	int tok;
	struct conn *c = user;
	char uri[RELAY_PATH_MAX + 1];
	int status;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		    strcmp(uri, relay.cfg.path)) {
			relay.st.rejects[REJECT_UPGRADE]++;
			lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
			return 1;
		}
		return conn_admit(wsi);

	case LWS_CALLBACK_ESTABLISHED:
		client_of(wsi, &c->client); /* before admission lets go: it knows a front end's */
		admit_release(wsi);
		c->token = -1;
		if (relay.tokens && (tok = offered_token(wsi, hash)) >= 0) {
			c->token = tok;
			memcpy(c->token_hash, hash, sizeof(hash));
		}
		if (conn_open(c, wsi) < 0) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, NULL, 0);
			return -1;
		}
		return 0;

	case LWS_CALLBACK_RECEIVE:
		if (!c->live)
			return -1;
		status = conn_check_frames(c);
		if (status) {
			relay.st.closes_protocol++;
			lws_close_reason(wsi, status, NULL, 0);
			return -1;
		}
		/* No lws_validity_confirmed() here: it re-sorts lws's one timer list, O(tunnels)
		 * per call (with 9,800 tunnels it was 68 % of the relay's CPU and a busy tunnel's
		 * p99 went to 179 ms). lws pings each tunnel every --keepalive seconds instead,
		 * busy or not, and the pong confirms it. */
		status = conn_ws_rx(c, in, len);
		if (status) {
			relay.st.closes_bad++;
			lws_close_reason(wsi, status, NULL, 0);
			return -1;
		}
		return 0;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!c->live)
			return -1;
		if (c->close_status) {
			lws_close_reason(wsi, c->close_status, NULL, 0);
			return -1;
		}
		return conn_ws_tx(c);

	case LWS_CALLBACK_CLOSED:
		if (c)
			conn_release(c);
		return 0;

	default:
		return 0;
	}
}

int conn_udp_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	struct conn *c = lws_get_opaque_user_data(wsi);

	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (c && c->live)
			conn_udp_rx(c);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (c && c->live) {
			/* lws closed the descriptor: never use its number again. */
			c->udp_wsi = NULL;
			c->udp_fd = -1;
			conn_request_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
		}
		return 0;
	default:
		return 0;
	}
}

void conn_sweep(uint64_t now_ms)
{
	uint64_t idle_ms = (uint64_t)relay.cfg.idle_timeout_s * 1000;

	if (!idle_ms)
		return;
	for (struct conn *c = relay.conns; c; c = c->next) {
		if (!c->close_status && now_ms - c->last_traffic_ms > idle_ms) {
			log_info("tunnel %s: idle for %lu s, closing", c->peer,
				 relay.cfg.idle_timeout_s);
			relay.st.closes_idle++;
			conn_request_close(c, LWS_CLOSE_STATUS_NORMAL);
		}
	}
}

void conn_close_all(void)
{
	for (struct conn *c = relay.conns; c; c = c->next)
		conn_request_close(c, LWS_CLOSE_STATUS_GOINGAWAY);
}
