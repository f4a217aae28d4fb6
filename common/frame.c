/* SPDX-License-Identifier: MIT */
/* Incremental decoder for "u16 length ‖ datagram" records (or flyctl's u32 lengths). No I/O, no allocation.
 * Whole records are returned as views into the caller's input; only a record that
 * straddles two feeds is copied, once, into the decoder's own buffer. */
#include <errno.h>
#include <string.h>

#include "frame.h"

int frame_dec_init_hdr(struct frame_dec *dec, uint8_t *buf, size_t max_len, unsigned hdr_len)
{
	if (!buf || max_len == 0 || max_len > FRAME_MAX_LEN ||
	    (hdr_len != FRAME_HDR_LEN && hdr_len != FRAME_HDR_LEN_FLY))
		return -EINVAL;
	memset(dec, 0, sizeof(*dec));
	dec->buf = buf;
	dec->max_len = max_len;
	dec->hdr_len = (uint8_t)hdr_len;
	return 0;
}

int frame_dec_init(struct frame_dec *dec, uint8_t *buf, size_t max_len)
{
	return frame_dec_init_hdr(dec, buf, max_len, FRAME_HDR_LEN);
}

int frame_dec_set_buf(struct frame_dec *dec, uint8_t *buf)
{
	if (!buf)
		return -EINVAL;
	if (dec->hdr_have == dec->hdr_len && dec->have > 0)
		return -EBUSY; /* the body so far is in the old buffer */
	dec->buf = buf;
	return 0;
}

bool frame_dec_is_partial(const struct frame_dec *dec)
{
	return dec->hdr_have != 0;
}

ssize_t frame_dec_feed(struct frame_dec *dec, const uint8_t *in, size_t len, const uint8_t **rec,
		       size_t *rec_len)
{
	size_t used = 0;

	*rec = NULL;
	*rec_len = 0;
	if (dec->hdr_have == dec->hdr_len && dec->need > dec->max_len)
		return -EMSGSIZE; /* sticky: the stream was refused */
	while (used < len) {
		if (dec->hdr_have < dec->hdr_len) {
			dec->hdr[dec->hdr_have++] = in[used++];
			if (dec->hdr_have < dec->hdr_len)
				continue;
			dec->need = 0;
			for (unsigned i = 0; i < dec->hdr_len; i++)
				dec->need = dec->need << 8 | dec->hdr[i];
			dec->have = 0;
			if (dec->need > dec->max_len)
				return -EMSGSIZE;
			if (dec->need == 0) {
				dec->keepalives++;
				dec->hdr_have = 0;
				continue;
			}
		}

		size_t avail = len - used;
		size_t want = dec->need - dec->have;

		if (dec->have == 0 && avail >= want) {
			/* The whole body is in this feed: hand out a view, no copy. */
			*rec = in + used;
			*rec_len = dec->need;
			dec->hdr_have = 0;
			return (ssize_t)(used + want);
		}
		if (avail > want)
			avail = want;
		memcpy(dec->buf + dec->have, in + used, avail);
		dec->have += avail;
		used += avail;
		if (dec->have == dec->need) {
			*rec = dec->buf;
			*rec_len = dec->need;
			dec->hdr_have = 0;
			return (ssize_t)used;
		}
	}
	return (ssize_t)used;
}
