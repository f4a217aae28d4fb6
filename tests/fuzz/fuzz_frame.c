/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the record decoder (common/frame.c), which both the relay and the shim
 * run over every byte a peer sends.
 *
 * Input: byte 0 picks max_len (bit 7 clear: 1..128; set: 1..65533), byte 1 the feed size
 * (1..64, low six bits), whether to hand the decoder a fresh buffer after each record it
 * reassembled (bit 6, as the shim does) and the header length (bit 7: flyctl's u32, else
 * u16); the rest is the stream. Each buffer is allocated with
 * exactly max_len bytes, so ASan sees a write past max_len.
 *
 * The oracle is a second, trivial decoder over the whole stream: every record reported must be
 * the next non-empty record of the stream, byte for byte, -EMSGSIZE must come exactly at the
 * first length over max_len (and stay), and at the end the keepalive count and "partial" must
 * agree with what is left. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ref {
	const uint8_t *s;
	size_t len, pos;
	size_t hdr;   /* header length: FRAME_HDR_LEN or FRAME_HDR_LEN_FLY */
	uint64_t keepalives;
};

static size_t ref_len(const struct ref *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->hdr; i++)
		n = n << 8 | r->s[r->pos + i];
	return n;
}

/* Skip the keepalives at pos; true when a whole header follows. */
static bool ref_header(struct ref *r)
{
	while (r->pos + r->hdr <= r->len && ref_len(r) == 0) {
		r->keepalives++;
		r->pos += r->hdr;
	}
	return r->pos + r->hdr <= r->len;
}

/* A record was reported: it must be the next one of the stream. */
static void ref_check_record(struct ref *r, const uint8_t *rec, size_t rec_len, size_t max_len)
{
	size_t n;

	if (!ref_header(r))
		abort();
	n = ref_len(r);
	if (n > max_len || rec_len != n || r->pos + r->hdr + n > r->len ||
	    memcmp(rec, r->s + r->pos + r->hdr, n) != 0)
		abort();
	r->pos += r->hdr + n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ref ref = { 0 };
	struct frame_dec dec;
	uint8_t *bufs[2] = { NULL, NULL };
	size_t max_len, chunk, off = 0;
	unsigned cur = 0;
	bool swap;

	if (size < 2)
		return 0;
	max_len = data[0] & 0x80 ? 1 + (size_t)(data[0] & 0x7f) * 516 : 1 + (size_t)data[0];
	chunk = 1 + (data[1] & 0x3f);
	swap = data[1] & 0x40;
	ref.hdr = data[1] & 0x80 ? FRAME_HDR_LEN_FLY : FRAME_HDR_LEN;
	ref.s = data + 2;
	ref.len = size - 2;
	bufs[0] = malloc(max_len);
	bufs[1] = malloc(max_len);
	if (!bufs[0] || !bufs[1] || frame_dec_init_hdr(&dec, bufs[0], max_len, (unsigned)ref.hdr) < 0)
		abort();

	while (off < ref.len) {
		size_t n = ref.len - off < chunk ? ref.len - off : chunk;
		const uint8_t *p = ref.s + off;

		while (n) {
			const uint8_t *rec;
			size_t rec_len;
			ssize_t used = frame_dec_feed(&dec, p, n, &rec, &rec_len);

			if (used == -EMSGSIZE) {
				/* Exactly at the first length over max_len, and for good. */
				if (!ref_header(&ref) || ref_len(&ref) <= max_len ||
				    frame_dec_feed(&dec, p, n, &rec, &rec_len) != -EMSGSIZE)
					abort();
				goto out;
			}
			if (used < 0 || (size_t)used > n)
				abort();
			if (rec) {
				ref_check_record(&ref, rec, rec_len, max_len);
				if (swap && rec == bufs[cur]) {
					cur ^= 1;
					if (frame_dec_set_buf(&dec, bufs[cur]) != 0)
						abort();
				}
			} else if (dec.hdr_have == ref.hdr && dec.have > 0 &&
				   frame_dec_set_buf(&dec, bufs[cur ^ 1]) != -EBUSY) {
				abort(); /* the body so far must stay where it is */
			}
			p += used;
			n -= (size_t)used;
			off += (size_t)used;
		}
	}
	/* The stream has ended: the same keepalives, and a partial record iff bytes are left. */
	ref_header(&ref);
	if (dec.keepalives != ref.keepalives || frame_dec_is_partial(&dec) != (ref.pos < ref.len))
		abort();
out:
	free(bufs[0]);
	free(bufs[1]);
	return 0;
}
