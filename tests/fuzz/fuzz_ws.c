/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the shim's WebSocket frame parser (client-shim/ws.c, ws_parse), which
 * reads everything the relay (or whoever answers in its place) sends once the upgrade is done.
 *
 * Input: byte 0 picks max_frame (125, 1024, 65535 or WS_FRAME_MAX, low two bits), byte 1 the
 * feed size (1..256); the rest is the server's byte stream. The stream is parsed twice, in one
 * feed and in feeds of that size, each feed from its own exact heap copy (ASan sees a read
 * past it). Every event must lie inside the feed (or be a control payload of at most 125
 * bytes), and the two parses must tell the same story: the same data bytes between the same
 * control events, then the same error or none. ws_mask() is checked on the same bytes: split
 * masking equals whole masking, and masking twice is the identity. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a parse saw: entries of kind (1 byte), length (4 bytes), bytes. Consecutive data
 * entries merge, so the log does not depend on where feeds and frames split the payload. */
struct story {
	uint8_t *buf;
	size_t len, cap, last; /* last: offset of the last entry, or SIZE_MAX */
};

static void story_add(struct story *s, uint8_t kind, const void *p, size_t n)
{
	uint32_t len;

	if (kind == 'D' && s->last != SIZE_MAX && s->buf[s->last] == 'D') {
		memcpy(&len, s->buf + s->last + 1, 4);
		len += (uint32_t)n;
		memcpy(s->buf + s->last + 1, &len, 4);
	} else {
		if (s->len + 5 > s->cap)
			abort();
		s->last = s->len;
		s->buf[s->len] = kind;
		len = (uint32_t)n;
		memcpy(s->buf + s->len + 1, &len, 4);
		s->len += 5;
	}
	if (s->len + n > s->cap)
		abort();
	if (n)
		memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void parse(const uint8_t *in, size_t len, size_t feed, uint64_t max_frame, struct story *s)
{
	struct ws_parser p = { .max_frame = max_frame };

	for (size_t off = 0; off < len;) {
		size_t n = len - off < feed ? len - off : feed;
		uint8_t *chunk = malloc(n);

		if (!chunk)
			abort();
		memcpy(chunk, in + off, n);
		for (size_t used = 0; used < n;) {
			struct ws_event ev;
			ssize_t r = ws_parse(&p, chunk + used, n - used, &ev);
			int err = (int)-r;

			if (r < 0) {
				if (r != -EPROTO && r != -EMSGSIZE)
					abort();
				story_add(s, 'E', &err, sizeof(err));
				free(chunk);
				return;
			}
			if ((size_t)r > n - used || (r == 0 && n - used > 0))
				abort();
			switch (ev.kind) {
			case WS_EV_DATA:
				if (ev.len == 0 || ev.data < chunk + used ||
				    ev.data + ev.len > chunk + used + r)
					abort();
				story_add(s, 'D', ev.data, ev.len);
				break;
			case WS_EV_PING:
				if (ev.len > WS_CTL_MAX || (ev.len && ev.data != p.ctl))
					abort();
				story_add(s, 'P', ev.data, ev.len);
				break;
			case WS_EV_PONG:
				story_add(s, 'O', NULL, 0);
				break;
			case WS_EV_CLOSE:
				story_add(s, 'C', &ev.close_code, sizeof(ev.close_code));
				break;
			case WS_EV_NONE:
				if (ev.data || ev.len)
					abort();
				break;
			default:
				abort();
			}
			used += (size_t)r;
		}
		free(chunk);
		off += n;
	}
	story_add(s, 'Z', &p.hdr_have, sizeof(p.hdr_have)); /* the end, with any header part */
}

static void check_mask(const uint8_t *data, size_t size)
{
	uint8_t a[64], b[64], mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	size_t n = size < sizeof(a) ? size : sizeof(a), split = n ? data[0] % (n + 1) : 0;
	size_t off = size > 1 ? data[1] : 0;

	if (size >= 6)
		memcpy(mask, data + 2, 4);
	memcpy(a, data, n);
	memcpy(b, data, n);
	ws_mask(a, n, mask, off);
	ws_mask(b, split, mask, off);
	ws_mask(b + split, n - split, mask, off + split);
	if (memcmp(a, b, n) != 0)
		abort();
	for (size_t i = 0; i < n; i++)
		if (a[i] != (data[i] ^ mask[(off + i) % 4]))
			abort();
	ws_mask(a, n, mask, off);
	if (memcmp(a, data, n) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t max_frames[4] = { WS_CTL_MAX, 1024, 65535, WS_FRAME_MAX };
	struct story whole = { .last = SIZE_MAX }, fed = { .last = SIZE_MAX };
	uint64_t max_frame;
	size_t feed;

	check_mask(data, size);
	if (size < 2)
		return 0;
	max_frame = max_frames[data[0] & 3];
	feed = 1 + (size_t)data[1];
	data += 2;
	size -= 2;
	/* Each event costs at least one input byte and at most 5 + 125 bytes of story. */
	whole.cap = fed.cap = 8 * size + 64 + 130;
	whole.buf = malloc(whole.cap);
	fed.buf = malloc(fed.cap);
	if (!whole.buf || !fed.buf)
		abort();
	parse(data, size, size ? size : 1, max_frame, &whole);
	parse(data, size, feed, max_frame, &fed);
	if (whole.len != fed.len || memcmp(whole.buf, fed.buf, whole.len) != 0)
		abort();
	free(whole.buf);
	free(fed.buf);
	return 0;
}
