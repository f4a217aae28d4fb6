/* SPDX-License-Identifier: MIT */
/* The open TLS + WebSocket stream of a session (session.h has the whole picture): datagrams
 * from WireGuard leave as masked WebSocket messages (one per recvmmsg batch, or held while
 * the session is not OPEN yet), and what the relay sends is read, unframed and handed to
 * udp.c as records. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include <openssl/err.h>

#include "log.h"
#include "session.h"

const char *ssl_err_str(SSL *ssl, int ret, int err, char *buf, size_t sz)
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
int ws_send(struct session *s, enum ws_opcode op, const void *payload, size_t len)
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
int session_flush(struct session *s)
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
int ws_input(struct session *s, const uint8_t *p, size_t len)
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
			if (s->check)
				return check_pong(s);
			break;
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
int session_read(struct session *s)
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
			/* the relay answers: whatever was asked, the path works */
			s->probe_at = s->tx_unanswered = 0;
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

void queue_push(struct session *s, const uint8_t *p, size_t len)
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
void emit_batch(struct shim *sh, struct session *s, unsigned i0)
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
	if (!s->tx_unanswered) {
		/* the first traffic out since the relay last sent: the stall clock starts */
		s->tx_unanswered = sh->now;
		deadline_hint(s);
	}
}
