/* SPDX-License-Identifier: MIT */
/* The relay's SSL_read: the checks on client frames that lws 4.1.6 does not make, and every
 * record already received in one call (drain, below).
 *
 * RFC 6455 §5.1: a server must close the connection when a client frame is not masked.
 * lws 4.1.6 parses the mask bit and then ignores it on the server side, and offers no way to
 * read it. So the relay watches the decrypted stream itself: this file defines SSL_read(),
 * which interposes on libssl's for lws (the executable's definition comes first in the
 * dynamic linker's search), calls the real one and runs a shadow parser over what it
 * returns: the request head up to its blank line, then WebSocket frame headers, skipping
 * payloads by their lengths. It only records the first violation; conn.c asks at each
 * message (wsmask_violation) and closes with 1002. It costs a few instructions per frame
 * header, nothing per payload byte.
 *
 * One connection is one request here (the relay closes after any plain HTTP answer), so
 * after the head the stream is frames, from the first SSL_read on: the parser cannot lose
 * step. What lws itself refuses (reserved bits, bad opcodes, fragmented or long control
 * frames) is left to lws. */
#include <dlfcn.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

enum wsmask_state {
	HEAD,      /* the HTTP request: looking for CR LF CR LF */
	FRAME_HDR, /* collecting a frame header */
	PAYLOAD,   /* skipping a payload */
	BROKEN,    /* a violation was seen; stop parsing */
};

struct wsmask {
	enum wsmask_state state;
	uint32_t head_tail;  /* the last four bytes of the head */
	uint8_t hdr[14];
	uint8_t hdr_len;
	uint64_t skip;
	const char *violation;
};

static int (*real_ssl_read)(SSL *, void *, int);
static int ex_index = -1;

static void wsmask_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			void *argp)
{
	free(ptr);
}

/* How long the header that starts with hdr[0..1] is. */
static size_t header_len(const uint8_t *hdr)
{
	size_t n = 2;

	if ((hdr[1] & 0x7f) == 126)
		n += 2;
	else if ((hdr[1] & 0x7f) == 127)
		n += 8;
	if (hdr[1] & 0x80)
		n += 4;
	return n;
}

static uint64_t payload_len(const uint8_t *hdr)
{
	uint64_t n = hdr[1] & 0x7f;

	if (n == 126)
		return (uint64_t)hdr[2] << 8 | hdr[3];
	if (n == 127) {
		n = 0;
		for (int i = 2; i < 10; i++)
			n = n << 8 | hdr[i];
	}
	return n;
}

static void wsmask_feed(struct wsmask *m, const uint8_t *p, size_t len)
{
	while (len && m->state != BROKEN) {
		switch (m->state) {
		case HEAD:
			m->head_tail = m->head_tail << 8 | *p++;
			len--;
			if (m->head_tail == 0x0d0a0d0a)
				m->state = FRAME_HDR;
			break;
		case FRAME_HDR:
			m->hdr[m->hdr_len++] = *p++;
			len--;
			if (m->hdr_len < 2 || m->hdr_len < header_len(m->hdr))
				break;
			if (!(m->hdr[1] & 0x80)) {
				m->violation = "unmasked frame";
				m->state = BROKEN;
				break;
			}
			m->skip = payload_len(m->hdr);
			m->hdr_len = 0;
			m->state = m->skip ? PAYLOAD : FRAME_HDR;
			break;
		case PAYLOAD: {
			size_t n = len < m->skip ? len : (size_t)m->skip;

			p += n;
			len -= n;
			m->skip -= n;
			if (!m->skip)
				m->state = FRAME_HDR;
			break;
		}
		case BROKEN:
			break;
		}
	}
}

/* drain: after a record, take the others already received, up to num bytes in all.
 * Without read-ahead OpenSSL returns one record per SSL_read and lws reads each descriptor
 * once per pass, so a tunnel got one datagram per pass: in a burst of new connections a
 * tunnel at 2,000 datagrams/s fell behind and its records queued in the kernel for
 * 100-200 ms (tests/e2e/test_churn.sh). So read-ahead is on once the handshake thread hands
 * the session to lws (handshake.c's SSL_new): one read(2) takes what the socket holds, and
 * the records already in OpenSSL's buffer (SSL_has_pending) are decrypted here; when that
 * buffer ends inside a record, the last read asks the socket once more (measured: 0.40-0.97
 * read(2) per datagram, against 0.94-1.96 without read-ahead). The bytes are the same stream, so lws parses them as if they had
 * come in one record.
 * When num fills up with records still buffered, one is decrypted ahead (SSL_peek), so that
 * SSL_pending() says so and lws comes back next pass (it looks at SSL_pending only, and the
 * socket, already read, would not wake it). With lws's 32 KiB buffer (main.c) and OpenSSL's
 * ~18 KiB read-ahead buffer that cannot happen (1400-byte records at 100,000/s never took
 * that branch); it is there for a smaller buffer, where a tunnel would otherwise stall.
 * A later record that fails for good (a bad one, a fatal alert) is left for lws's next read:
 * OpenSSL has answered with a fatal alert, so an honest peer closes and the descriptor
 * wakes; a peer that does not keeps its own connection until --keepalive closes it. */
static int drain(SSL *ssl, uint8_t *buf, int n, int num)
{
	char c;

	while (n < num && SSL_has_pending(ssl)) {
		int r = real_ssl_read(ssl, buf + n, num - n);

		if (r <= 0) {
			ERR_clear_error();
			return n;
		}
		n += r;
	}
	if (n == num && SSL_has_pending(ssl) && !SSL_pending(ssl) && SSL_peek(ssl, &c, 1) <= 0)
		ERR_clear_error();
	return n;
}

int SSL_read(SSL *ssl, void *buf, int num)
{
	struct wsmask *m;
	int n;

	n = real_ssl_read(ssl, buf, num); /* set by wsmask_init, fatal without it */
	if (n <= 0)
		return n;
	n = drain(ssl, buf, n, num);
	if (ex_index < 0)
		return n;
	m = SSL_get_ex_data(ssl, ex_index);
	if (!m) {
		m = calloc(1, sizeof(*m));
		/* Out of memory: this connection goes unchecked rather than refused. */
		if (!m || !SSL_set_ex_data(ssl, ex_index, m)) {
			free(m);
			return n;
		}
	}
	wsmask_feed(m, buf, (size_t)n);
	return n;
}

int wsmask_init(void)
{
	real_ssl_read = (int (*)(SSL *, void *, int))dlsym(RTLD_NEXT, "SSL_read");
	/* lws's calls reach ours only if the dynamic linker finds ours first. */
	if (!real_ssl_read || dlsym(RTLD_DEFAULT, "SSL_read") != (void *)SSL_read)
		return -ENOSYS;
	ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, wsmask_free);
	return ex_index < 0 ? -ENOMEM : 0;
}

const char *wsmask_violation(struct lws *wsi)
{
	SSL *ssl = lws_get_ssl(wsi);
	const struct wsmask *m;

	if (!ssl || ex_index < 0)
		return NULL;
	m = SSL_get_ex_data(ssl, ex_index);
	return m ? m->violation : NULL;
}
