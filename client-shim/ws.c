/* SPDX-License-Identifier: MIT */
/* The WebSocket client side of RFC 6455, as the shim needs it and no more: the HTTP/1.1
 * upgrade request, checking the relay's 101 answer (accept key, "wgws" subprotocol), the
 * status line of a proxy's CONNECT reply, client frame headers with their mask, and an
 * incremental parser for server frames. Pure functions: no I/O, no allocation; the parser
 * streams data payloads as views into the caller's input, so a frame's size costs no memory
 * and only control payloads (at most 125 bytes) are held. Server input is hostile until
 * proven otherwise: every length is checked before it is used. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "shim.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_accept_key(const char *key, char out[static WS_ACCEPT_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	out[0] = '\0';
	if (!ctx)
		return;
	if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
	    EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20)
		EVP_EncodeBlock((unsigned char *)out, md, 20);
	EVP_MD_CTX_free(ctx);
}

int ws_new_key(char key[static WS_KEY_LEN + 1])
{
	unsigned char raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	return 0;
}

int ws_build_upgrade(char *buf, size_t bufsz, const struct shim_url *u, const char *key,
		     const char *token)
{
	char host[ADDR_HOST_MAX + 16];
	int n;

	if (u->port == 443)
		snprintf(host, sizeof(host), u->host_is_v6 ? "[%s]" : "%s", u->host);
	else
		url_format_hostport(u->host, u->host_is_v6, u->port, host, sizeof(host));
	n = snprintf(buf, bufsz,
		     "GET %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n"
		     "Sec-WebSocket-Protocol: wgws\r\n"
		     "%s%s%s"
		     "User-Agent: wgws-shim/" WGWS_VERSION "\r\n"
		     "\r\n",
		     u->path, host, key, token ? "Authorization: Bearer " : "", token ? token : "",
		     token ? "\r\n" : "");
	if (n < 0 || (size_t)n >= bufsz)
		return -ENOSPC;
	return n;
}

size_t ws_header_end(const uint8_t *buf, size_t len)
{
	const uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);

	return e ? (size_t)(e - buf) + 4 : 0;
}

/* Copy s[0..n) into out as printable text, for logs. */
static void copy_printable(char *out, size_t outsz, const char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[o] = '\0';
}

int ws_parse_status(const char *hdr, size_t len, int *code, char why[static WS_WHY_LEN])
{
	const char *eol = memmem(hdr, len, "\r\n", 2);
	size_t n = eol ? (size_t)(eol - hdr) : len;

	why[0] = '\0';
	/* "HTTP/1.x NNN[ reason]" */
	if (n < 12 || memcmp(hdr, "HTTP/1.", 7) != 0 || (hdr[7] != '0' && hdr[7] != '1') ||
	    hdr[8] != ' ' || hdr[9] < '1' || hdr[9] > '5' || hdr[10] < '0' || hdr[10] > '9' ||
	    hdr[11] < '0' || hdr[11] > '9' || (n > 12 && hdr[12] != ' ')) {
		copy_printable(why, WS_WHY_LEN, hdr, n > 60 ? 60 : n);
		return -EPROTO;
	}
	*code = (hdr[9] - '0') * 100 + (hdr[10] - '0') * 10 + (hdr[11] - '0');
	while (n > 9 && (hdr[n - 1] == ' ' || hdr[n - 1] == '\t'))
		n--;
	copy_printable(why, WS_WHY_LEN, hdr + 9, n - 9);
	return 0;
}

/* Does the comma-separated list v[0..n) hold token (compared without case)? */
static bool has_token(const char *v, size_t n, const char *token)
{
	size_t tlen = strlen(token);

	while (n > 0) {
		size_t len = 0, skip;

		while (n > 0 && (*v == ' ' || *v == '\t' || *v == ',')) {
			v++;
			n--;
		}
		while (len < n && v[len] != ',')
			len++;
		skip = len;
		while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
			len--;
		if (len == tlen && strncasecmp(v, token, tlen) == 0)
			return true;
		v += skip;
		n -= skip;
	}
	return false;
}

int ws_check_upgrade(const char *hdr, size_t len, const char *key, char why[static WS_WHY_LEN])
{
	char accept[WS_ACCEPT_LEN + 1];
	bool upgrade = false, connection = false, acc_ok = false, proto = false;
	const char *p, *end = hdr + len;
	int code;

	if (ws_parse_status(hdr, len, &code, why) < 0) {
		char line[WS_WHY_LEN];

		snprintf(line, sizeof(line), "%s", why);
		snprintf(why, WS_WHY_LEN, "not an HTTP response: '%.120s'", line);
		return -EPROTO;
	}
	if (code != 101)
		return -EACCES;
	ws_accept_key(key, accept);
	p = memmem(hdr, len, "\r\n", 2);
	while (p && p + 2 < end) {
		const char *line = p + 2, *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		const char *colon, *v;
		size_t n, vlen;

		if (!eol)
			break;
		n = (size_t)(eol - line);
		p = eol;
		if (n == 0)
			break;
		colon = memchr(line, ':', n);
		if (!colon || line[0] == ' ' || line[0] == '\t') {
			snprintf(why, WS_WHY_LEN, "malformed header line in upgrade response");
			return -EPROTO;
		}
		v = colon + 1;
		vlen = (size_t)(eol - v);
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
#define IS(name) ((size_t)(colon - line) == sizeof(name) - 1 && \
		  strncasecmp(line, name, sizeof(name) - 1) == 0)
		if (IS("Upgrade"))
			upgrade = has_token(v, vlen, "websocket");
		else if (IS("Connection"))
			connection = has_token(v, vlen, "upgrade");
		else if (IS("Sec-WebSocket-Accept"))
			acc_ok = vlen == WS_ACCEPT_LEN && memcmp(v, accept, WS_ACCEPT_LEN) == 0;
		else if (IS("Sec-WebSocket-Protocol"))
			proto = vlen == 4 && memcmp(v, "wgws", 4) == 0;
		else if (IS("Sec-WebSocket-Extensions") && vlen > 0) {
			snprintf(why, WS_WHY_LEN, "relay selected an extension we did not offer");
			return -EPROTO;
		}
#undef IS
	}
	if (!upgrade || !connection)
		snprintf(why, WS_WHY_LEN, "101 without 'Upgrade: websocket' and 'Connection: Upgrade'");
	else if (!acc_ok)
		snprintf(why, WS_WHY_LEN, "wrong or missing Sec-WebSocket-Accept");
	else if (!proto)
		snprintf(why, WS_WHY_LEN, "relay did not select subprotocol wgws");
	else
		return 0;
	return -EPROTO;
}

size_t ws_put_hdr(uint8_t out[static WS_HDR_MAX], enum ws_opcode op, uint64_t len,
		  const uint8_t mask[static 4])
{
	size_t n = 2;

	out[0] = 0x80 | (uint8_t)op;
	if (len <= 125) {
		out[1] = 0x80 | (uint8_t)len;
	} else if (len <= 0xffff) {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	memcpy(out + n, mask, 4);
	return n + 4;
}

void ws_mask(uint8_t *p, size_t len, const uint8_t mask[static 4], size_t off)
{
	uint8_t m8[8];
	uint64_t m, w;
	size_t i = 0;

	for (; i < len && (off + i) % 4 != 0; i++)
		p[i] ^= mask[(off + i) % 4];
	memcpy(m8, mask, 4);
	memcpy(m8 + 4, mask, 4);
	memcpy(&m, m8, 8);
	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= m;
		memcpy(p + i, &w, 8);
	}
	for (; i < len; i++)
		p[i] ^= mask[(off + i) % 4];
}

/* The first two header bytes are in: check them and learn the header's full size. */
static int hdr_first(struct ws_parser *p)
{
	uint8_t b0 = p->hdr[0], b1 = p->hdr[1], len7 = b1 & 0x7f;

	p->opcode = b0 & 0x0f;
	p->fin = b0 & 0x80;
	if (b0 & 0x70)
		return -EPROTO; /* reserved bits: no extension was negotiated */
	if (b1 & 0x80)
		return -EPROTO; /* a server must not mask */
	switch (p->opcode) {
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!p->fin || len7 > WS_CTL_MAX)
			return -EPROTO;
		break;
	case WS_OP_CONT:
		if (!p->in_message)
			return -EPROTO;
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (p->in_message)
			return -EPROTO;
		break;
	default:
		return -EPROTO;
	}
	p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
	return 0;
}

/* The whole header is in: the payload length, checked. */
static int hdr_finish(struct ws_parser *p)
{
	uint8_t len7 = p->hdr[1] & 0x7f;
	uint64_t len = len7;

	if (len7 == 126) {
		len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
		if (len < 126)
			return -EPROTO;
	} else if (len7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p->hdr[2 + i];
		if (len >> 63 || len <= 0xffff)
			return -EPROTO;
	}
	if (len > p->max_frame)
		return -EMSGSIZE;
	if (!(p->opcode & 0x08))
		p->in_message = !p->fin;
	p->left = len;
	p->ctl_len = 0;
	return 0;
}

/* A control frame is complete: report it. */
static int control_done(struct ws_parser *p, struct ws_event *ev)
{
	switch (p->opcode) {
	case WS_OP_PING:
		ev->kind = WS_EV_PING;
		ev->data = p->ctl;
		ev->len = p->ctl_len;
		break;
	case WS_OP_PONG:
		ev->kind = WS_EV_PONG;
		break;
	default:
		if (p->ctl_len == 1)
			return -EPROTO;
		ev->kind = WS_EV_CLOSE;
		ev->close_code = p->ctl_len >= 2 ? (uint16_t)(p->ctl[0] << 8 | p->ctl[1])
						 : WS_CLOSE_NO_STATUS;
		break;
	}
	return 0;
}

ssize_t ws_parse(struct ws_parser *p, const uint8_t *in, size_t len, struct ws_event *ev)
{
	size_t used = 0;
	int ret;

	ev->kind = WS_EV_NONE;
	ev->data = NULL;
	ev->len = 0;
	ev->close_code = 0;
	while (used < len) {
		if (!p->in_payload) {
			p->hdr[p->hdr_have++] = in[used++];
			if (p->hdr_have == 2 && (ret = hdr_first(p)) < 0)
				return ret;
			if (p->hdr_have < 2 || p->hdr_have < p->hdr_need)
				continue;
			if ((ret = hdr_finish(p)) < 0)
				return ret;
			p->hdr_have = 0;
			p->hdr_need = 0;
			if (p->left > 0) {
				p->in_payload = true;
				continue;
			}
			if (p->opcode & 0x08) {
				if ((ret = control_done(p, ev)) < 0)
					return ret;
				return (ssize_t)used;
			}
			continue; /* empty data frame */
		}
		size_t take = len - used < p->left ? len - used : (size_t)p->left;

		p->left -= take;
		if (p->opcode & 0x08) {
			/* control payloads are <= 125 bytes: checked in hdr_first() */
			memcpy(p->ctl + p->ctl_len, in + used, take);
			p->ctl_len += (uint8_t)take;
			used += take;
			if (p->left > 0)
				continue;
			p->in_payload = false;
			if ((ret = control_done(p, ev)) < 0)
				return ret;
			return (ssize_t)used;
		}
		ev->kind = WS_EV_DATA;
		ev->data = in + used;
		ev->len = take;
		used += take;
		if (p->left == 0)
			p->in_payload = false;
		return (ssize_t)used;
	}
	return (ssize_t)used;
}
