/* SPDX-License-Identifier: MIT */
/* Unit tests for common/frame.h: the incremental "u16 BE length ‖ datagram" decoder.
 * Every test drives the decoder through its public header only. Streams are built here,
 * fed in chunks chosen by the test (every split offset, one byte at a time, random sizes),
 * and the decoded records are compared with what was encoded. Each chunk is a separate
 * heap copy freed once consumed, so a view that outlives its feed is caught by ASan. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static const char *cur_case = "?";
#include "expect.h"

/* --- streams -------------------------------------------------------------------------- */

struct stream {
	uint8_t *bytes;
	size_t len;
	size_t nrec;          /* records including keepalives */
	size_t *rec_off;      /* offset of each record's header */
	size_t *rec_len;      /* body length of each record */
	size_t nkeepalive;
};

static uint8_t body_byte(size_t rec, size_t i)
{
	return (uint8_t)(rec * 131u + i * 7u + 1u);
}

static void stream_build(struct stream *s, const size_t *lens, size_t n)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++)
		total += FRAME_HDR_LEN + lens[i];
	s->bytes = malloc(total ? total : 1);
	s->rec_off = calloc(n + 1, sizeof(*s->rec_off));
	s->rec_len = calloc(n + 1, sizeof(*s->rec_len));
	assert_non_null(s->bytes);
	assert_non_null(s->rec_off);
	assert_non_null(s->rec_len);
	s->len = 0;
	s->nrec = n;
	s->nkeepalive = 0;
	for (size_t i = 0; i < n; i++) {
		s->rec_off[i] = s->len;
		s->rec_len[i] = lens[i];
		frame_put_hdr(s->bytes + s->len, lens[i]);
		s->len += FRAME_HDR_LEN;
		for (size_t j = 0; j < lens[i]; j++)
			s->bytes[s->len++] = body_byte(i, j);
		if (lens[i] == 0)
			s->nkeepalive++;
	}
}

static void stream_free(struct stream *s)
{
	free(s->bytes);
	free(s->rec_off);
	free(s->rec_len);
}

/* True when stream offset p is between two records (or at either end). */
static bool stream_is_boundary(const struct stream *s, size_t p)
{
	if (p == s->len)
		return true;
	for (size_t i = 0; i < s->nrec; i++)
		if (s->rec_off[i] == p)
			return true;
	return false;
}

/* --- the driver ----------------------------------------------------------------------- */

struct run {
	struct frame_dec dec;
	uint8_t *buf;
	size_t max_len;
	size_t next;          /* index of the next non-keepalive record expected */
	size_t pos;           /* stream bytes consumed so far */
	size_t views;         /* records returned as views into the input */
	size_t copies;        /* records returned from dec->buf */
	size_t keepalive_stops; /* feeds that returned early after a keepalive */
};

static void run_init(struct run *r, size_t max_len)
{
	r->max_len = max_len;
	r->buf = malloc(max_len);
	assert_non_null(r->buf);
	memset(r->buf, 0xA5, max_len);
	EXPECT_EQ(frame_dec_init(&r->dec, r->buf, max_len), 0);
	r->next = 0;
	r->pos = 0;
	r->views = 0;
	r->copies = 0;
	r->keepalive_stops = 0;
}

static void run_free(struct run *r)
{
	free(r->buf);
}

/* Index of the next record with a body at or after index i. */
static size_t next_body(const struct stream *s, size_t i)
{
	while (i < s->nrec && s->rec_len[i] == 0)
		i++;
	return i;
}

/* Feed stream bytes [r->pos, r->pos + n) as one heap chunk, looping until it is consumed,
 * and check every record reported against the stream. */
static void run_feed(struct run *r, const struct stream *s, size_t n)
{
	size_t chunk_start = r->pos;
	uint8_t *chunk = malloc(n ? n : 1);
	size_t off = 0;

	assert_non_null(chunk);
	memcpy(chunk, s->bytes + chunk_start, n);
	do {
		const uint8_t *rec = (const uint8_t *)"sentinel";
		size_t rec_len = 12345;
		ssize_t used = frame_dec_feed(&r->dec, chunk + off, n - off, &rec, &rec_len);

		EXPECT(used >= 0);
		EXPECT((size_t)used <= n - off);
		if (rec == NULL) {
			/* Nothing completed: the decoder took everything offered, or stopped
			 * right after a keepalive (skipped, never reported). */
			size_t at = chunk_start + off + (size_t)used;

			if ((size_t)used != n - off) {
				EXPECT(used >= FRAME_HDR_LEN);
				EXPECT(at >= FRAME_HDR_LEN && s->bytes[at - 1] == 0 &&
				       s->bytes[at - 2] == 0 && stream_is_boundary(s, at) &&
				       stream_is_boundary(s, at - FRAME_HDR_LEN));
				r->keepalive_stops++;
			}
		} else {
			size_t i = next_body(s, r->next);
			size_t hdr_at, body_at, end;

			EXPECT(i < s->nrec);
			hdr_at = s->rec_off[i];
			body_at = hdr_at + FRAME_HDR_LEN;
			end = body_at + s->rec_len[i];
			/* The return value stops right after the record. */
			EXPECT_EQ(chunk_start + off + (size_t)used, end);
			EXPECT_EQ(rec_len, s->rec_len[i]);
			EXPECT(memcmp(rec, s->bytes + body_at, rec_len) == 0);
			if (hdr_at >= chunk_start) {
				/* Whole inside this feed: a view into the input, not a copy. */
				EXPECT(rec == chunk + (body_at - chunk_start));
				r->views++;
			} else if (body_at < chunk_start) {
				/* Body straddles feeds: it can only live in the decoder's buffer. */
				EXPECT(rec == r->buf);
				r->copies++;
			} else {
				/* Only the header straddled: either place is acceptable. */
				EXPECT(rec == r->buf || rec == chunk + (body_at - chunk_start));
				if (rec == r->buf)
					r->copies++;
				else
					r->views++;
			}
			r->next = i + 1;
		}
		if (used == 0)
			EXPECT(rec != NULL || n - off == 0);
		off += (size_t)used;
	} while (off < n);
	r->pos += n;
	/* Mid-record exactly when the consumed prefix does not end on a record boundary. */
	if (frame_dec_is_partial(&r->dec) == stream_is_boundary(s, r->pos))
		fail_msg("case %s: frame_dec_is_partial() is %d at stream offset %zu", cur_case,
			 (int)frame_dec_is_partial(&r->dec), r->pos);
	/* Poison the consumed chunk before freeing it: a stale view reads garbage or faults. */
	memset(chunk, 0x5A, n);
	free(chunk);
}

static void run_finish(struct run *r, const struct stream *s)
{
	EXPECT_EQ(r->pos, s->len);
	EXPECT_EQ(next_body(s, r->next), s->nrec);
	EXPECT_EQ(r->dec.keepalives, s->nkeepalive);
	EXPECT(!frame_dec_is_partial(&r->dec));
}

/* Decode s fed in chunks of the given sizes (which must sum to s->len). */
static void decode_chunks(const struct stream *s, size_t max_len, const size_t *chunks,
			  size_t nchunks, struct run *out)
{
	struct run r;

	run_init(&r, max_len);
	for (size_t i = 0; i < nchunks; i++)
		run_feed(&r, s, chunks[i]);
	run_finish(&r, s);
	if (out)
		*out = r;
	else
		run_free(&r);
}

/* --- tests ---------------------------------------------------------------------------- */

static void test_init_bounds(void **state)
{
	static const struct {
		const char *name;
		size_t max_len;
		int want;
	} cases[] = {
		{ "max_len 0", 0, -EINVAL },
		{ "max_len 1", 1, 0 },
		{ "max_len 1500", 1500, 0 },
		{ "max_len 65535", FRAME_MAX_LEN, 0 },
		{ "max_len 65536", FRAME_MAX_LEN + 1, -EINVAL },
		{ "max_len 1<<20", 1u << 20, -EINVAL },
		{ "max_len SIZE_MAX", SIZE_MAX, -EINVAL },
	};
	static uint8_t buf[FRAME_MAX_LEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct frame_dec dec;

		cur_case = cases[i].name;
		/* init must not rely on a zeroed struct */
		memset(&dec, 0xA5, sizeof(dec));
		EXPECT_EQ(frame_dec_init(&dec, buf, cases[i].max_len), cases[i].want);
		if (cases[i].want == 0) {
			EXPECT(!frame_dec_is_partial(&dec));
			EXPECT_EQ(dec.keepalives, 0);
		}
	}
}

/* flyctl's records: u32 big-endian lengths, the same decoder (frame_dec_init_hdr). */
static void test_fly_header(void **state)
{
	static uint8_t buf[1500];
	/* keepalive, "abcd", keepalive, "xy" split below, then a length of 65,536 */
	static const uint8_t stream[] = { 0, 0, 0, 0, 0, 0, 0, 4, 'a', 'b', 'c', 'd', 0, 0, 0, 0,
					  0, 0, 0, 2, 'x', 'y', 0, 1, 0, 0 };
	uint8_t out[4];
	struct frame_dec dec;
	const uint8_t *rec;
	size_t rec_len;
	ssize_t used;

	cur_case = "hdr_len";
	EXPECT_EQ(frame_dec_init_hdr(&dec, buf, sizeof(buf), 3), -EINVAL);
	EXPECT_EQ(frame_dec_init_hdr(&dec, buf, sizeof(buf), 0), -EINVAL);
	EXPECT_EQ(frame_dec_init_hdr(&dec, buf, sizeof(buf), FRAME_HDR_LEN_FLY), 0);

	cur_case = "fly: a whole record after a keepalive, as a view";
	used = frame_dec_feed(&dec, stream, 12, &rec, &rec_len);
	EXPECT_EQ(used, 12);
	EXPECT(rec == stream + 8);
	EXPECT_EQ(rec_len, 4);
	EXPECT_EQ(dec.keepalives, 1);

	cur_case = "fly: a record cut inside its header and body";
	used = frame_dec_feed(&dec, stream + 12, 6, &rec, &rec_len);
	EXPECT_EQ(used, 6);
	EXPECT(rec == NULL);
	EXPECT(frame_dec_is_partial(&dec));
	used = frame_dec_feed(&dec, stream + 18, 3, &rec, &rec_len);
	EXPECT_EQ(used, 3);
	EXPECT(rec == NULL);
	used = frame_dec_feed(&dec, stream + 21, 1, &rec, &rec_len);
	EXPECT_EQ(used, 1);
	EXPECT(rec == buf);
	EXPECT_EQ(rec_len, 2);
	EXPECT(!memcmp(rec, "xy", 2));
	EXPECT_EQ(dec.keepalives, 2);

	cur_case = "fly: a length over max_len, before any body byte";
	used = frame_dec_feed(&dec, stream + 22, 4, &rec, &rec_len);
	EXPECT_EQ(used, -EMSGSIZE);
	EXPECT_EQ(frame_dec_feed(&dec, stream, 1, &rec, &rec_len), -EMSGSIZE);

	cur_case = "frame_put_hdr_fly";
	frame_put_hdr_fly(out, 0x01020304);
	EXPECT(out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 4);
	frame_put_hdr_fly(out, 148);
	EXPECT(out[0] == 0 && out[1] == 0 && out[2] == 0 && out[3] == 148);
}

static void test_put_hdr(void **state)
{
	static const struct {
		const char *name;
		size_t len;
		uint8_t b0, b1;
	} cases[] = {
		{ "0", 0, 0x00, 0x00 },       { "1", 1, 0x00, 0x01 },
		{ "255", 255, 0x00, 0xff },   { "256", 256, 0x01, 0x00 },
		{ "0x1234", 0x1234, 0x12, 0x34 }, { "0xff00", 0xff00, 0xff, 0x00 },
		{ "65535", 65535, 0xff, 0xff },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t out[4] = { 0xee, 0xee, 0xee, 0xee };

		cur_case = cases[i].name;
		frame_put_hdr(out, cases[i].len);
		EXPECT_EQ(out[0], cases[i].b0);
		EXPECT_EQ(out[1], cases[i].b1);
		EXPECT_EQ(out[2], 0xee);
	}
}

static void test_single_record(void **state)
{
	static const size_t lens[] = { 5 };
	struct stream s;
	struct run r;
	size_t chunk = 7;

	cur_case = "single record, one feed";
	stream_build(&s, lens, 1);
	decode_chunks(&s, 1500, &chunk, 1, &r);
	EXPECT_EQ(r.views, 1);
	EXPECT_EQ(r.copies, 0);
	run_free(&r);
	stream_free(&s);

	/* Trailing bytes after a record are left for the next feed. */
	{
		static const uint8_t in[] = { 0x00, 0x03, 'a', 'b', 'c', 0x00 };
		uint8_t buf[16];
		struct frame_dec dec;
		const uint8_t *rec;
		size_t rec_len;

		cur_case = "record followed by a partial header";
		EXPECT_EQ(frame_dec_init(&dec, buf, sizeof(buf)), 0);
		EXPECT_EQ(frame_dec_feed(&dec, in, sizeof(in), &rec, &rec_len), 5);
		EXPECT(rec == in + 2);
		EXPECT_EQ(rec_len, 3);
		EXPECT(!frame_dec_is_partial(&dec));
		EXPECT_EQ(frame_dec_feed(&dec, in + 5, 1, &rec, &rec_len), 1);
		EXPECT(rec == NULL);
		EXPECT(frame_dec_is_partial(&dec));
	}
	{
		uint8_t buf[16];
		struct frame_dec dec;
		const uint8_t *rec = (const uint8_t *)"x";
		size_t rec_len;

		cur_case = "empty feed";
		EXPECT_EQ(frame_dec_init(&dec, buf, sizeof(buf)), 0);
		EXPECT_EQ(frame_dec_feed(&dec, (const uint8_t *)"", 0, &rec, &rec_len), 0);
		EXPECT(rec == NULL);
		EXPECT(!frame_dec_is_partial(&dec));
	}
}

/* A stream exercising both header bytes, keepalives at the start, middle and end,
 * back-to-back keepalives, and a record of length 1. */
static const size_t multi_lens[] = { 0, 3, 1, 0, 0, 148, 256, 0, 32, 255, 2, 0 };

static void test_several_in_one_feed(void **state)
{
	struct stream s;
	struct run r;

	cur_case = "several records in one feed";
	stream_build(&s, multi_lens, sizeof(multi_lens) / sizeof(multi_lens[0]));
	decode_chunks(&s, 1500, &s.len, 1, &r);
	EXPECT_EQ(r.views, 7);
	EXPECT_EQ(r.copies, 0);
	EXPECT_EQ(r.dec.keepalives, 5);
	run_free(&r);
	stream_free(&s);
}

static void test_split_every_offset(void **state)
{
	char name[64];
	struct stream s;

	static const size_t small_lens[] = { 0, 3, 1, 0, 40, 256, 0, 2 };

	stream_build(&s, multi_lens, sizeof(multi_lens) / sizeof(multi_lens[0]));
	for (size_t cut = 0; cut <= s.len; cut++) {
		size_t chunks[2] = { cut, s.len - cut };

		snprintf(name, sizeof(name), "split at %zu of %zu", cut, s.len);
		cur_case = name;
		decode_chunks(&s, 1500, chunks, 2, NULL);
	}
	stream_free(&s);
	/* Two cuts: every header and body split against every other one (smaller stream). */
	stream_build(&s, small_lens, sizeof(small_lens) / sizeof(small_lens[0]));
	for (size_t a = 0; a <= s.len; a++) {
		for (size_t b = a; b <= s.len; b++) {
			size_t chunks[3] = { a, b - a, s.len - b };

			snprintf(name, sizeof(name), "split at %zu and %zu of %zu", a, b, s.len);
			cur_case = name;
			decode_chunks(&s, 1500, chunks, 3, NULL);
		}
	}
	stream_free(&s);
}

static void test_one_byte_at_a_time(void **state)
{
	struct stream s;
	struct run r;

	cur_case = "one byte at a time";
	stream_build(&s, multi_lens, sizeof(multi_lens) / sizeof(multi_lens[0]));
	run_init(&r, 1500);
	for (size_t i = 0; i < s.len; i++)
		run_feed(&r, &s, 1);
	run_finish(&r, &s);
	/* Every record with a body of 2+ bytes straddled, so came from the buffer; a
	 * 1-byte body arrives whole in the feed after its header. */
	EXPECT_EQ(r.copies + r.views, 7);
	EXPECT(r.copies >= 6);
	run_free(&r);
	stream_free(&s);
}

static void test_view_vs_copy(void **state)
{
	static const size_t lens[] = { 10, 20 };
	struct stream s;
	struct run r;

	stream_build(&s, lens, 2);
	{
		/* First record whole in feed 1, second one cut in the middle of its body. */
		size_t chunks[2] = { 12 + 2 + 5, 15 };

		cur_case = "whole then straddling body";
		decode_chunks(&s, 100, chunks, 2, &r);
		EXPECT_EQ(r.views, 1);
		EXPECT_EQ(r.copies, 1);
		run_free(&r);
	}
	{
		/* Cut between the two header bytes of the first record: its body then arrives
		 * whole; the second record is whole in the same feed, so must be a view. */
		size_t chunks[2] = { 1, s.len - 1 };

		cur_case = "header split, then whole record";
		decode_chunks(&s, 100, chunks, 2, &r);
		EXPECT(r.views >= 1);
		run_free(&r);
	}
	stream_free(&s);
}

static void test_keepalives(void **state)
{
	static const uint8_t in[] = { 0, 0, 0, 0, 0, 1, 'x', 0, 0 };
	uint8_t buf[8];
	struct frame_dec dec;
	const uint8_t *rec;
	size_t rec_len, off = 0;
	int got = 0;

	cur_case = "keepalives skipped and counted";
	EXPECT_EQ(frame_dec_init(&dec, buf, sizeof(buf)), 0);
	while (off < sizeof(in)) {
		ssize_t n = frame_dec_feed(&dec, in + off, sizeof(in) - off, &rec, &rec_len);

		EXPECT(n > 0);
		if (rec) {
			EXPECT_EQ(rec_len, 1);
			EXPECT_EQ(rec[0], 'x');
			got++;
		}
		off += (size_t)n;
	}
	EXPECT_EQ(got, 1);
	EXPECT_EQ(dec.keepalives, 3);
	EXPECT(!frame_dec_is_partial(&dec));

	cur_case = "keepalive split across feeds";
	EXPECT_EQ(frame_dec_feed(&dec, in, 1, &rec, &rec_len), 1);
	EXPECT(rec == NULL);
	EXPECT(frame_dec_is_partial(&dec));
	EXPECT_EQ(frame_dec_feed(&dec, in + 1, 1, &rec, &rec_len), 1);
	EXPECT(rec == NULL);
	EXPECT(!frame_dec_is_partial(&dec));
	EXPECT_EQ(dec.keepalives, 4);
}

static void test_partial(void **state)
{
	static const uint8_t in[] = { 0x00, 0x04, 1, 2, 3, 4 };
	uint8_t buf[8];
	struct frame_dec dec;
	const uint8_t *rec;
	size_t rec_len;

	EXPECT_EQ(frame_dec_init(&dec, buf, sizeof(buf)), 0);
	cur_case = "partial: fresh";
	EXPECT(!frame_dec_is_partial(&dec));
	cur_case = "partial: one header byte";
	EXPECT_EQ(frame_dec_feed(&dec, in, 1, &rec, &rec_len), 1);
	EXPECT(rec == NULL);
	EXPECT(frame_dec_is_partial(&dec));
	cur_case = "partial: header complete, no body";
	EXPECT_EQ(frame_dec_feed(&dec, in + 1, 1, &rec, &rec_len), 1);
	EXPECT(rec == NULL);
	EXPECT(frame_dec_is_partial(&dec));
	cur_case = "partial: mid-body";
	EXPECT_EQ(frame_dec_feed(&dec, in + 2, 3, &rec, &rec_len), 3);
	EXPECT(rec == NULL);
	EXPECT(frame_dec_is_partial(&dec));
	cur_case = "partial: record complete";
	EXPECT_EQ(frame_dec_feed(&dec, in + 5, 1, &rec, &rec_len), 1);
	EXPECT(rec == buf);
	EXPECT_EQ(rec_len, 4);
	EXPECT(memcmp(rec, in + 2, 4) == 0);
	EXPECT(!frame_dec_is_partial(&dec));
}

static void test_set_buf_when(void **state)
{
	static const uint8_t in[] = { 0x00, 0x04, 1, 2, 3, 4 };
	static const struct {
		const char *name;
		size_t fed; /* bytes of in fed before frame_dec_set_buf() */
		int want;
	} cases[] = {
		{ "set_buf: fresh", 0, 0 },
		{ "set_buf: one header byte held", 1, 0 },
		{ "set_buf: header complete, no body yet", 2, 0 },
		{ "set_buf: mid-body", 3, -EBUSY },
		{ "set_buf: one body byte missing", 5, -EBUSY },
		{ "set_buf: record complete", 6, 0 },
	};
	uint8_t a[8], b[8];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct frame_dec dec;
		const uint8_t *rec = NULL;
		size_t rec_len = 0, off = 0;

		cur_case = cases[i].name;
		EXPECT_EQ(frame_dec_init(&dec, a, sizeof(a)), 0);
		/* one byte per feed, so every record with a body is reassembled */
		while (off < cases[i].fed) {
			EXPECT_EQ(frame_dec_feed(&dec, in + off, 1, &rec, &rec_len), 1);
			off++;
		}
		EXPECT_EQ(frame_dec_set_buf(&dec, NULL), -EINVAL);
		EXPECT_EQ(frame_dec_set_buf(&dec, b), cases[i].want);
		while (off < sizeof(in)) {
			EXPECT_EQ(frame_dec_feed(&dec, in + off, 1, &rec, &rec_len), 1);
			off++;
		}
		/* the record lands wherever its body began */
		EXPECT(rec == (cases[i].fed <= 2 ? b : a));
		EXPECT_EQ(rec_len, 4);
		EXPECT(memcmp(rec, in + 2, 4) == 0);
	}
}

/* A caller that batches reassembled records rotates through buffers: a record completed in
 * one of them must stay intact while the decoder fills the others. */
static void test_set_buf_rotation(void **state)
{
	enum { NBUF = 3, NREC = 40, LEN = 50, MAXLEN = 64 };
	size_t lens[NREC];
	uint8_t bufs[NBUF][MAXLEN];
	const uint8_t *done[NREC];
	size_t ndone = 0, idx = 0, pos = 0;
	struct frame_dec dec;
	struct stream s;

	cur_case = "set_buf: rotation keeps earlier records";
	for (size_t i = 0; i < NREC; i++)
		lens[i] = LEN - i % 7;
	stream_build(&s, lens, NREC);
	EXPECT_EQ(frame_dec_init(&dec, bufs[0], MAXLEN), 0);
	while (pos < s.len) {
		/* 37-byte feeds: most records straddle two or three of them */
		size_t n = s.len - pos < 37 ? s.len - pos : 37;
		uint8_t *chunk = malloc(n);
		size_t off = 0;

		assert_non_null(chunk);
		memcpy(chunk, s.bytes + pos, n);
		while (off < n) {
			const uint8_t *rec;
			size_t rec_len;
			ssize_t used = frame_dec_feed(&dec, chunk + off, n - off, &rec, &rec_len);

			EXPECT(used > 0);
			off += (size_t)used;
			if (!rec)
				continue;
			EXPECT_EQ(rec_len, lens[ndone]);
			if (rec < chunk || rec >= chunk + n) {
				EXPECT(rec == bufs[idx]);
				idx = (idx + 1) % NBUF;
				EXPECT_EQ(frame_dec_set_buf(&dec, bufs[idx]), 0);
				done[ndone] = rec;
			} else {
				done[ndone] = NULL; /* a view into chunk, gone with it */
			}
			ndone++;
			/* every reassembled record among the last NBUF - 1 is still intact */
			for (size_t k = ndone > NBUF - 1 ? ndone - (NBUF - 1) : 0; k < ndone; k++) {
				if (!done[k])
					continue;
				for (size_t j = 0; j < lens[k]; j++)
					if (done[k][j] != body_byte(k, j))
						fail_msg("%s: record %zu byte %zu overwritten (after %zu)",
							 cur_case, k, j, ndone);
			}
		}
		free(chunk);
		pos += n;
	}
	EXPECT_EQ(ndone, NREC);
	EXPECT(!frame_dec_is_partial(&dec));
	stream_free(&s);
}

static void test_max_len(void **state)
{
	static const struct {
		const char *name;
		size_t max_len;
		size_t len;
		bool ok;
	} cases[] = {
		{ "len 1 max 1", 1, 1, true },
		{ "len 2 max 1", 1, 2, false },
		{ "len 100 max 100", 100, 100, true },
		{ "len 101 max 100", 100, 101, false },
		{ "len 1500 max 1500", 1500, 1500, true },
		{ "len 1501 max 1500", 1500, 1501, false },
		{ "len 65535 max 65534", 65534, 65535, false },
		{ "len 65535 max 65535", FRAME_MAX_LEN, FRAME_MAX_LEN, true },
		{ "len 0x100 max 0xff", 0xff, 0x100, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t max_len = cases[i].max_len, len = cases[i].len;
		size_t total = FRAME_HDR_LEN + len;
		uint8_t *in = malloc(total), *buf = malloc(max_len);
		struct frame_dec dec;
		const uint8_t *rec;
		size_t rec_len;
		ssize_t n;

		cur_case = cases[i].name;
		assert_non_null(in);
		assert_non_null(buf);
		frame_put_hdr(in, len);
		memset(in + FRAME_HDR_LEN, 0x42, len);

		/* whole, in one feed */
		memset(buf, 0xA5, max_len);
		EXPECT_EQ(frame_dec_init(&dec, buf, max_len), 0);
		n = frame_dec_feed(&dec, in, total, &rec, &rec_len);
		if (cases[i].ok) {
			EXPECT_EQ(n, total);
			EXPECT(rec == in + FRAME_HDR_LEN);
			EXPECT_EQ(rec_len, len);
		} else {
			EXPECT_EQ(n, -EMSGSIZE);
			/* No body byte was touched: the buffer is as we left it. */
			for (size_t j = 0; j < max_len; j++)
				EXPECT_EQ(buf[j], 0xA5);
		}

		/* header alone, then the body a byte at a time */
		memset(buf, 0xA5, max_len);
		EXPECT_EQ(frame_dec_init(&dec, buf, max_len), 0);
		n = frame_dec_feed(&dec, in, FRAME_HDR_LEN, &rec, &rec_len);
		if (!cases[i].ok) {
			EXPECT_EQ(n, -EMSGSIZE);
		} else {
			EXPECT_EQ(n, FRAME_HDR_LEN);
			EXPECT(rec == NULL);
			/* straddling, at the largest size: copied into buf, all of it */
			n = frame_dec_feed(&dec, in + FRAME_HDR_LEN, len - 1, &rec, &rec_len);
			EXPECT_EQ(n, len - 1);
			EXPECT(rec == NULL);
			EXPECT(frame_dec_is_partial(&dec));
			n = frame_dec_feed(&dec, in + total - 1, 1, &rec, &rec_len);
			EXPECT_EQ(n, 1);
			/* a 1-byte body arrives whole in this feed: it may be a view */
			EXPECT(rec == buf || (len == 1 && rec == in + total - 1));
			EXPECT_EQ(rec_len, len);
			EXPECT(memcmp(rec, in + FRAME_HDR_LEN, len) == 0);
		}

		/* the hostile length split between its two header bytes */
		if (!cases[i].ok) {
			EXPECT_EQ(frame_dec_init(&dec, buf, max_len), 0);
			EXPECT_EQ(frame_dec_feed(&dec, in, 1, &rec, &rec_len), 1);
			EXPECT_EQ(frame_dec_feed(&dec, in + 1, total - 1, &rec, &rec_len), -EMSGSIZE);
		}
		free(in);
		free(buf);
	}
}

static void test_hostile_after_good(void **state)
{
	/* good record (3 bytes), then a record claiming 101 bytes with max_len 100 */
	static const uint8_t in[] = { 0x00, 0x03, 'a', 'b', 'c', 0x00, 0x65, 'X', 'X', 'X' };
	uint8_t buf[100];
	struct frame_dec dec;
	const uint8_t *rec;
	size_t rec_len;

	cur_case = "hostile length after a good record";
	memset(buf, 0xA5, sizeof(buf));
	EXPECT_EQ(frame_dec_init(&dec, buf, sizeof(buf)), 0);
	EXPECT_EQ(frame_dec_feed(&dec, in, sizeof(in), &rec, &rec_len), 5);
	EXPECT(rec == in + 2);
	EXPECT_EQ(rec_len, 3);
	EXPECT(memcmp(rec, "abc", 3) == 0);
	EXPECT_EQ(frame_dec_feed(&dec, in + 5, sizeof(in) - 5, &rec, &rec_len), -EMSGSIZE);
	for (size_t j = 0; j < sizeof(buf); j++)
		EXPECT_EQ(buf[j], 0xA5);

	cur_case = "hostile length after a keepalive";
	EXPECT_EQ(frame_dec_init(&dec, buf, sizeof(buf)), 0);
	{
		static const uint8_t in2[] = { 0x00, 0x00, 0xff, 0xff, 'X' };
		ssize_t n = frame_dec_feed(&dec, in2, sizeof(in2), &rec, &rec_len);

		/* The keepalive may be consumed alone first; the bad length must then fail. */
		if (n == 2)
			n = frame_dec_feed(&dec, in2 + 2, sizeof(in2) - 2, &rec, &rec_len);
		EXPECT_EQ(n, -EMSGSIZE);
		EXPECT_EQ(dec.keepalives, 1);
	}
}

static void test_error_is_sticky(void **state)
{
	/* After -EMSGSIZE the stream is unusable: a caller that feeds it again anyway must
	 * get the error again, never a record larger than max_len nor a copy of one into
	 * the max_len-byte buffer. */
	static const uint8_t hdr[] = { 0x00, 0x65 }; /* 101 > max_len 100 */
	uint8_t *buf = malloc(100), body[200];
	struct frame_dec dec;
	const uint8_t *rec = NULL;
	size_t rec_len = 0;
	ssize_t n;

	cur_case = "feeding again after -EMSGSIZE";
	assert_non_null(buf);
	memset(body, 'B', sizeof(body));
	EXPECT_EQ(frame_dec_init(&dec, buf, 100), 0);
	EXPECT_EQ(frame_dec_feed(&dec, hdr, sizeof(hdr), &rec, &rec_len), -EMSGSIZE);
	for (int i = 0; i < 3; i++) {
		n = frame_dec_feed(&dec, body, 60, &rec, &rec_len);
		EXPECT_EQ(n, -EMSGSIZE);
	}
	n = frame_dec_feed(&dec, body, sizeof(body), &rec, &rec_len);
	EXPECT_EQ(n, -EMSGSIZE);
	free(buf);
}

/* xorshift64*: the same sequence on every libc. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static void test_random_stream(void **state)
{
	enum { NREC = 4000 };
	size_t *lens = calloc(NREC, sizeof(*lens));
	size_t *chunks = calloc(NREC * 2 + 16, sizeof(*chunks));
	size_t nchunks = 0, left;
	struct stream s;
	struct run r;

	assert_non_null(lens);
	assert_non_null(chunks);
	rng_state = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < NREC; i++) {
		uint32_t k = rng() % 100;

		if (k < 10)
			lens[i] = 0;
		else if (k < 40)
			lens[i] = 1 + rng() % 64;
		else if (k < 97)
			lens[i] = 1 + rng() % 1500;
		else
			lens[i] = 1 + rng() % FRAME_MAX_LEN;
	}
	lens[NREC - 1] = FRAME_MAX_LEN;
	stream_build(&s, lens, NREC);
	for (left = s.len; left > 0;) {
		uint32_t k = rng() % 100;
		size_t c;

		if (k < 20)
			c = 1 + rng() % 3;
		else if (k < 90)
			c = 1 + rng() % 4096;
		else
			c = 1 + rng() % 131072;
		if (c > left)
			c = left;
		assert_true(nchunks < NREC * 2 + 16);
		chunks[nchunks++] = c;
		left -= c;
	}
	cur_case = "random stream, seed 0x9E3779B97F4A7C15";
	decode_chunks(&s, FRAME_MAX_LEN, chunks, nchunks, &r);
	EXPECT(r.views > 0);
	EXPECT(r.copies > 0);
	print_message("random stream: %zu bytes, %zu records (%zu keepalives), %zu chunks, "
		      "%zu views, %zu copies\n",
		      s.len, s.nrec, s.nkeepalive, nchunks, r.views, r.copies);
	run_free(&r);
	stream_free(&s);
	free(lens);
	free(chunks);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_bounds),
		cmocka_unit_test(test_put_hdr),
		cmocka_unit_test(test_fly_header),
		cmocka_unit_test(test_single_record),
		cmocka_unit_test(test_several_in_one_feed),
		cmocka_unit_test(test_split_every_offset),
		cmocka_unit_test(test_one_byte_at_a_time),
		cmocka_unit_test(test_view_vs_copy),
		cmocka_unit_test(test_keepalives),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_set_buf_when),
		cmocka_unit_test(test_set_buf_rotation),
		cmocka_unit_test(test_max_len),
		cmocka_unit_test(test_hostile_after_good),
		cmocka_unit_test(test_error_is_sticky),
		cmocka_unit_test(test_random_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
