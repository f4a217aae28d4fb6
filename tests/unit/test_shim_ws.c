/* SPDX-License-Identifier: MIT */
/* Unit tests for client-shim/ws.c: the accept key, the upgrade request and response, proxy
 * status lines, client frame headers and masking, and the incremental server frame parser
 * (fed whole, at every split offset and byte by byte; hostile frames rejected). Also the
 * reconnect back-off of session.c. Table-driven; every failure names its case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "shim.h"

static void test_accept_key(void **state)
{
	char out[WS_ACCEPT_LEN + 1];
	char key[WS_KEY_LEN + 1], key2[WS_KEY_LEN + 1];

	/* RFC 6455 §1.3 */
	ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	assert_int_equal(ws_new_key(key), 0);
	assert_int_equal(ws_new_key(key2), 0);
	assert_int_equal(strlen(key), WS_KEY_LEN);
	assert_string_not_equal(key, key2);
}

static void test_build_upgrade(void **state)
{
	static const struct {
		const char *url, *host_line;
	} cases[] = {
		{ "wss://gw.example.com/wg", "\r\nHost: gw.example.com\r\n" },
		{ "wss://gw.example.com:8443/x", "\r\nHost: gw.example.com:8443\r\n" },
		{ "wss://[::1]/wg", "\r\nHost: [::1]\r\n" },
		{ "wss://[::1]:8443/wg", "\r\nHost: [::1]:8443\r\n" },
	};
	char buf[1024], err[SHIM_ERR_LEN], small[64];
	struct shim_url u;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n;

		assert_int_equal(url_parse_relay(cases[i].url, &u, err), 0);
		n = ws_build_upgrade(buf, sizeof(buf), &u, "dGhlIHNhbXBsZSBub25jZQ==", NULL);
		if (n <= 0 || (size_t)n != strlen(buf) || !strstr(buf, cases[i].host_line) ||
		    !strstr(buf, "\r\nSec-WebSocket-Protocol: wgws\r\n") ||
		    !strstr(buf, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") ||
		    !strstr(buf, "\r\nUpgrade: websocket\r\n") ||
		    !strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") ||
		    strcmp(buf + n - 4, "\r\n\r\n") != 0 || strstr(buf, "Authorization"))
			fail_msg("%s: bad request:\n%s", cases[i].url, buf);
	}
	assert_int_equal(strncmp(buf, "GET /wg HTTP/1.1\r\n", 18), 0);
	assert_int_equal(ws_build_upgrade(small, sizeof(small), &u, "k", NULL), -ENOSPC);
	/* --token-file: one Authorization header, inside the header block */
	assert_true(ws_build_upgrade(buf, sizeof(buf), &u, "k", "tok-0123456789abcdef") > 0);
	assert_non_null(strstr(buf, "\r\nAuthorization: Bearer tok-0123456789abcdef\r\n"));
	assert_true(strstr(buf, "Authorization") < strstr(buf, "\r\n\r\n"));
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACC "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

struct up_case {
	const char *name;
	const char *resp;
	int ret;
	const char *why; /* substring expected in why, or NULL */
};

static const struct up_case up_cases[] = {
	{ "good", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Accept: " ACC "\r\nSec-WebSocket-Protocol: wgws\r\n\r\n", 0, NULL },
	{ "good, case and lists", "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, "
		  "upgrade\r\nsec-websocket-accept:" ACC "  \r\nSec-Websocket-Protocol:  wgws\r\n"
		  "Server: x\r\n\r\n", 0, NULL },
	{ "wrong accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
		  "Upgrade\r\nSec-WebSocket-Accept: x3pPLMBiTxaQ9kvwoMFfVk8z8QI=\r\n"
		  "Sec-WebSocket-Protocol: wgws\r\n\r\n", -EPROTO, "Accept" },
	{ "missing accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
		  "Upgrade\r\nSec-WebSocket-Protocol: wgws\r\n\r\n", -EPROTO, "Accept" },
	{ "missing protocol", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		  "Connection: Upgrade\r\nSec-WebSocket-Accept: " ACC "\r\n\r\n", -EPROTO, "wgws" },
	{ "other protocol", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
		  "Upgrade\r\nSec-WebSocket-Accept: " ACC "\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
	  -EPROTO, "wgws" },
	{ "missing upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Accept: " ACC "\r\nSec-WebSocket-Protocol: wgws\r\n\r\n", -EPROTO,
	  "Upgrade" },
	{ "connection close", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		  "Connection: close\r\nSec-WebSocket-Accept: " ACC "\r\nSec-WebSocket-Protocol: "
		  "wgws\r\n\r\n", -EPROTO, "Upgrade" },
	{ "extension", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
		  "Upgrade\r\nSec-WebSocket-Accept: " ACC "\r\nSec-WebSocket-Protocol: wgws\r\n"
		  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", -EPROTO, "extension" },
	{ "403", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", -EACCES, "403 Forbidden" },
	{ "404", "HTTP/1.0 404 Not Found\r\n\r\n", -EACCES, "404 Not Found" },
	{ "200", "HTTP/1.1 200 OK\r\n\r\n", -EACCES, "200 OK" },
	{ "not http", "SSH-2.0-OpenSSH_9.2\r\n\r\n", -EPROTO, "not an HTTP response" },
	{ "folded header", "HTTP/1.1 101 X\r\nUpgrade: websocket\r\n continued\r\n\r\n", -EPROTO,
	  "malformed" },
};

static void test_check_upgrade(void **state)
{
	for (size_t i = 0; i < sizeof(up_cases) / sizeof(up_cases[0]); i++) {
		const struct up_case *c = &up_cases[i];
		char why[WS_WHY_LEN] = "";
		int ret = ws_check_upgrade(c->resp, strlen(c->resp), KEY, why);

		if (ret != c->ret)
			fail_msg("%s: got %d (%s), expected %d", c->name, ret, why, c->ret);
		if (c->why && !strstr(why, c->why))
			fail_msg("%s: why '%s' lacks '%s'", c->name, why, c->why);
	}
}

struct status_case {
	const char *in;
	int ret, code;
	const char *why;
};

static const struct status_case status_cases[] = {
	{ "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n", 0, 407,
	  "407 Proxy Authentication Required" },
	{ "HTTP/1.1 403 Forbidden\r\n\r\n", 0, 403, "403 Forbidden" },
	{ "HTTP/1.0 200 Connection established\r\n\r\n", 0, 200, "200 Connection established" },
	{ "HTTP/1.1 200\r\n\r\n", 0, 200, "200" },
	{ "HTTP/1.1 502 Bad Gateway \r\n\r\n", 0, 502, "502 Bad Gateway" },
	{ "HTTP/1.1 200 a\x01z\r\n\r\n", 0, 200, "200 a?z" },
	{ "HTTP/2 200\r\n\r\n", -EPROTO, 0, NULL },
	{ "HTTP/1.1 20 OK\r\n\r\n", -EPROTO, 0, NULL },
	{ "HTTP/1.1 2000 OK\r\n\r\n", -EPROTO, 0, NULL },
	{ "HTTP/1.1 600 X\r\n\r\n", -EPROTO, 0, NULL },
	{ "garbage\r\n\r\n", -EPROTO, 0, NULL },
	{ "", -EPROTO, 0, NULL },
};

static void test_parse_status(void **state)
{
	for (size_t i = 0; i < sizeof(status_cases) / sizeof(status_cases[0]); i++) {
		const struct status_case *c = &status_cases[i];
		char why[WS_WHY_LEN];
		int code = -1, ret = ws_parse_status(c->in, strlen(c->in), &code, why);

		if (ret != c->ret || (ret == 0 && (code != c->code || strcmp(why, c->why))))
			fail_msg("status '%.20s': got %d code %d why '%s'", c->in, ret, code, why);
	}
}

static void test_header_end(void **state)
{
	const char *h = "HTTP/1.1 200 OK\r\nA: b\r\n\r\nDATA";

	assert_int_equal(ws_header_end((const uint8_t *)h, strlen(h)), strlen(h) - 4);
	assert_int_equal(ws_header_end((const uint8_t *)h, strlen(h) - 5), 0);
}

static void test_client_frames(void **state)
{
	static const struct {
		uint64_t len;
		size_t hdr_len;
	} cases[] = { { 0, 6 }, { 125, 6 }, { 126, 8 }, { 65535, 8 }, { 65536, 14 } };
	const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	uint8_t hdr[WS_HDR_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = ws_put_hdr(hdr, WS_OP_BINARY, cases[i].len, mask);
		uint64_t len = hdr[1] & 0x7f;

		if (n != cases[i].hdr_len || hdr[0] != 0x82 || !(hdr[1] & 0x80) ||
		    memcmp(hdr + n - 4, mask, 4) != 0)
			fail_msg("len %llu: header of %zu bytes %02x %02x",
				 (unsigned long long)cases[i].len, n, hdr[0], hdr[1]);
		if (len == 126)
			len = (uint64_t)hdr[2] << 8 | hdr[3];
		else if (len == 127)
			for (int j = 0, k = (int)(len = 0); j < 8; j++, k++)
				len = len << 8 | hdr[2 + j];
		if (len != cases[i].len)
			fail_msg("len %llu: encoded as %llu", (unsigned long long)cases[i].len,
				 (unsigned long long)len);
	}
	/* masking at every offset and length agrees with the byte-wise definition */
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len < 40; len++) {
			uint8_t p[40], ref[40];

			for (size_t j = 0; j < len; j++)
				p[j] = ref[j] = (uint8_t)(j * 7 + 3);
			ws_mask(p, len, mask, off);
			for (size_t j = 0; j < len; j++)
				if (p[j] != (ref[j] ^ mask[(off + j) % 4]))
					fail_msg("mask off %zu len %zu: byte %zu wrong", off, len, j);
		}
	}
}

/* ---- the server frame parser ---- */

struct collect {
	uint8_t data[80000];
	size_t data_len;
	char log[512]; /* control events in order: "P<len>", "O", "C<code>" */
};

static size_t put_frame(uint8_t *out, uint8_t b0, const void *payload, size_t len)
{
	size_t n = 0;

	out[n++] = b0;
	if (len <= 125) {
		out[n++] = (uint8_t)len;
	} else if (len <= 0xffff) {
		out[n++] = 126;
		out[n++] = (uint8_t)(len >> 8);
		out[n++] = (uint8_t)len;
	} else {
		out[n++] = 127;
		for (int i = 7; i >= 0; i--)
			out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	if (len)
		memcpy(out + n, payload, len);
	return n + len;
}

/* Feed in[0..len) in pieces of at most chunk bytes (and a split at split). Returns 0 or the
 * parser's error. */
static int feed(struct ws_parser *p, const uint8_t *in, size_t len, size_t split, size_t chunk,
		struct collect *c)
{
	size_t off = 0;

	while (off < len) {
		size_t end = off + chunk < len ? off + chunk : len;

		if (off < split && split < end)
			end = split;
		while (off < end) {
			struct ws_event ev;
			ssize_t n = ws_parse(p, in + off, end - off, &ev);
			size_t l = strlen(c->log);

			if (n < 0)
				return (int)n;
			if (n == 0)
				fail_msg("parser made no progress at %zu", off);
			off += (size_t)n;
			switch (ev.kind) {
			case WS_EV_DATA:
				assert_true(c->data_len + ev.len <= sizeof(c->data));
				memcpy(c->data + c->data_len, ev.data, ev.len);
				c->data_len += ev.len;
				break;
			case WS_EV_PING:
				snprintf(c->log + l, sizeof(c->log) - l, "P%zu:%.*s,", ev.len,
					 (int)ev.len, (const char *)ev.data);
				break;
			case WS_EV_PONG:
				snprintf(c->log + l, sizeof(c->log) - l, "O,");
				break;
			case WS_EV_CLOSE:
				snprintf(c->log + l, sizeof(c->log) - l, "C%u,", ev.close_code);
				break;
			case WS_EV_NONE:
				break;
			}
		}
	}
	return 0;
}

static void test_parser_stream(void **state)
{
	static uint8_t stream[80000 + 200], big[70000], expect[80000];
	static struct collect c;
	size_t n = 0, elen = 0;
	struct ws_parser p;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 1);
#define DATA(b0, ptr, len)                                      \
	do {                                                    \
		n += put_frame(stream + n, b0, ptr, len);       \
		memcpy(expect + elen, ptr, len);                \
		elen += len;                                    \
	} while (0)
	DATA(0x81, "ab", 2);          /* text, treated as data */
	DATA(0x82, big, 300);         /* 16-bit length */
	n += put_frame(stream + n, 0x89, "hi", 2);
	DATA(0x02, "xy", 2);          /* fragmented: binary without FIN */
	n += put_frame(stream + n, 0x89, "", 0); /* a control frame between fragments */
	DATA(0x00, "z", 1);           /* continuation without FIN */
	DATA(0x80, big, 200);         /* final continuation */
	n += put_frame(stream + n, 0x8a, "pong", 4);
	DATA(0x82, "", 0);            /* empty data frame */
	DATA(0x82, big, sizeof(big)); /* 64-bit length */
	n += put_frame(stream + n, 0x88, "\x03\xe8" "bye", 5);
	n += put_frame(stream + n, 0x88, "", 0);
#undef DATA
	const char *want_log = "P2:hi,P0:,O,C1000,C1005,";

	/* whole, every split offset (two pieces), byte by byte, and odd chunk sizes */
	for (size_t split = 0; split <= n; split += (split < 400 || split > n - 400) ? 1 : 97) {
		memset(&p, 0, sizeof(p));
		p.max_frame = WS_FRAME_MAX;
		memset(&c, 0, sizeof(c));
		if (feed(&p, stream, n, split, n, &c) != 0)
			fail_msg("split at %zu: parser error", split);
		if (c.data_len != elen || memcmp(c.data, expect, elen) || strcmp(c.log, want_log))
			fail_msg("split at %zu: %zu data bytes (want %zu), events '%s'", split,
				 c.data_len, elen, c.log);
	}
	for (size_t chunk = 1; chunk <= 7; chunk += 3) {
		memset(&p, 0, sizeof(p));
		p.max_frame = WS_FRAME_MAX;
		memset(&c, 0, sizeof(c));
		if (feed(&p, stream, n, 0, chunk, &c) != 0 || c.data_len != elen ||
		    memcmp(c.data, expect, elen) || strcmp(c.log, want_log))
			fail_msg("chunks of %zu: %zu data bytes, events '%s'", chunk, c.data_len,
				 c.log);
	}
}

struct bad_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	uint64_t max_frame;
	int ret;
};

#define B(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

static const struct bad_case bad_cases[] = {
	{ "masked server frame", B(0x82, 0x81, 1, 2, 3, 4, 'x'), 0, -EPROTO },
	{ "rsv1", B(0xc2, 0x01, 'x'), 0, -EPROTO },
	{ "rsv3", B(0x92, 0x01, 'x'), 0, -EPROTO },
	{ "opcode 3", B(0x83, 0x00), 0, -EPROTO },
	{ "opcode 0xb", B(0x8b, 0x00), 0, -EPROTO },
	{ "ping over 125", B(0x89, 126, 0, 126), 0, -EPROTO },
	{ "ping without fin", B(0x09, 0x00), 0, -EPROTO },
	{ "close of 1 byte", B(0x88, 0x01, 0x03), 0, -EPROTO },
	{ "continuation first", B(0x80, 0x01, 'x'), 0, -EPROTO },
	{ "data inside fragmented", B(0x02, 0x01, 'x', 0x82, 0x01, 'y'), 0, -EPROTO },
	{ "non-minimal 16-bit", B(0x82, 126, 0, 100), 0, -EPROTO },
	{ "non-minimal 64-bit", B(0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff), 0, -EPROTO },
	{ "64-bit msb", B(0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0), 0, -EPROTO },
	{ "huge 64-bit", B(0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 0,
	  -EMSGSIZE },
	{ "over max_frame", B(0x82, 126, 0x03, 0xe9), 1000, -EMSGSIZE },
	{ "at max_frame", B(0x82, 126, 0x03, 0xe8), 1000, 0 },
};

static void test_parser_rejects(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *bc = &bad_cases[i];

		/* whole and byte by byte: the error is the same however the bytes arrive */
		for (size_t chunk = bc->len; chunk >= 1; chunk = chunk == 1 ? 0 : 1) {
			struct ws_parser p;
			static struct collect c;
			int ret;

			memset(&p, 0, sizeof(p));
			memset(&c, 0, sizeof(c));
			p.max_frame = bc->max_frame ? bc->max_frame : WS_FRAME_MAX;
			ret = feed(&p, bc->bytes, bc->len, 0, chunk, &c);
			if (ret != bc->ret)
				fail_msg("%s (chunks of %zu): got %d, expected %d", bc->name, chunk,
					 ret, bc->ret);
		}
	}
}

static void test_backoff(void **state)
{
	uint64_t prev_max = 0;

	for (unsigned attempt = 1; attempt <= 20; attempt++) {
		uint64_t lo = UINT64_MAX, hi = 0, base = 250;

		for (unsigned i = 1; i < attempt && base < 30000; i++)
			base *= 2;
		base = base > 30000 ? 30000 : base;

		for (uint64_t r = 0; r < 2000; r += 7) {
			uint64_t d = shim_backoff_ms(attempt, r * 2654435761u);

			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		/* equal jitter: between half the base and the base, and actually spread */
		if (hi > base || lo < base / 2 || hi < prev_max || hi - lo < base / 4)
			fail_msg("attempt %u: delays %llu..%llu ms", attempt, (unsigned long long)lo,
				 (unsigned long long)hi);
		prev_max = hi;
	}
	assert_true(shim_backoff_ms(1, 0) >= 125 && shim_backoff_ms(1, ~0ULL) <= 250);
	assert_true(shim_backoff_ms(30, ~0ULL) <= 30000 && shim_backoff_ms(30, 0) >= 15000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key),     cmocka_unit_test(test_build_upgrade),
		cmocka_unit_test(test_check_upgrade),  cmocka_unit_test(test_parse_status),
		cmocka_unit_test(test_header_end),     cmocka_unit_test(test_client_frames),
		cmocka_unit_test(test_parser_stream),  cmocka_unit_test(test_parser_rejects),
		cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
