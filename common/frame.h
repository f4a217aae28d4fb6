/* SPDX-License-Identifier: MIT */
/* The wgws record stream: every direction of a tunnel is a byte stream of records
 * "u16 big-endian length ‖ one WireGuard datagram", carried in WebSocket binary messages
 * without regard to message boundaries. Length 0 is a keepalive and carries nothing.
 *
 * The decoder is incremental: no I/O, no allocation. The caller hands it a buffer of
 * max_len bytes at init time (allocated once per connection). A record that arrives whole
 * inside one feed is returned as a view into the caller's input (no copy); only a record
 * that straddles feeds is copied into the decoder's buffer. A length above max_len is
 * reported before a single byte of its body is touched. A caller that keeps reassembled
 * records beyond the next feed (to send several in one batch) hands the decoder another
 * buffer between records with frame_dec_set_buf().
 *
 * The same decoder reads flyctl's WireGuard-over-WebSocket stream, whose records have a u32
 * big-endian length instead (frame_dec_init_hdr with FRAME_HDR_LEN_FLY; docs/PROTOCOL.md). */
#ifndef WGWS_FRAME_H
#define WGWS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	FRAME_HDR_LEN = 2,
	FRAME_HDR_LEN_FLY = 4, /* flyctl's records: u32 big-endian length */
	FRAME_MAX_LEN = 65535, /* the protocol's bound; decoders may be configured lower */
};

struct frame_dec {
	uint8_t *buf;      /* caller-owned, max_len bytes: body of a straddling record */
	size_t max_len;    /* largest datagram accepted */
	size_t need;       /* body length of the record in progress */
	size_t have;       /* body bytes of it held in buf */
	uint8_t hdr[FRAME_HDR_LEN_FLY];
	uint8_t hdr_len;   /* FRAME_HDR_LEN, or FRAME_HDR_LEN_FLY */
	uint8_t hdr_have;  /* header bytes held (0 .. hdr_len once the header is complete) */
	uint64_t keepalives; /* zero-length records seen */
};

/* Prepare dec to accept records of up to max_len bytes (1..FRAME_MAX_LEN); buf must hold
 * max_len bytes and outlive dec. Returns 0 or -EINVAL. */
int frame_dec_init(struct frame_dec *dec, uint8_t *buf, size_t max_len)
	__attribute__((warn_unused_result));
/* The same with headers of hdr_len bytes (FRAME_HDR_LEN or FRAME_HDR_LEN_FLY). -EINVAL for
 * another length. */
int frame_dec_init_hdr(struct frame_dec *dec, uint8_t *buf, size_t max_len, unsigned hdr_len)
	__attribute__((warn_unused_result));

/* Reassemble the records that follow in buf (max_len bytes, outliving dec); the previous
 * buffer, and a record completed in it, is no longer touched. Only between records.
 * Returns 0, -EINVAL for a NULL buf, or -EBUSY while part of a record's body is held. */
int frame_dec_set_buf(struct frame_dec *dec, uint8_t *buf) __attribute__((warn_unused_result));

/* Consume up to len bytes of in. Returns the number of bytes used (0..len), or -EMSGSIZE
 * when a record's length exceeds max_len (the stream is then unusable: later feeds return
 * -EMSGSIZE too). When a record completes, *rec and *rec_len describe it (a view into in or
 * into dec->buf, valid until the next feed, or until the buffer is handed back if
 * frame_dec_set_buf() gave dec another one) and the return value stops right after it;
 * otherwise *rec is NULL.
 * Zero-length records are counted in dec->keepalives and never reported. */
ssize_t frame_dec_feed(struct frame_dec *dec, const uint8_t *in, size_t len, const uint8_t **rec,
		       size_t *rec_len) __attribute__((warn_unused_result));

/* True when the decoder holds part of a record (a stream that ends now was cut mid-record). */
bool frame_dec_is_partial(const struct frame_dec *dec);

/* Write the 2-byte header for a datagram of len bytes (len <= FRAME_MAX_LEN). */
static inline void frame_put_hdr(uint8_t out[static FRAME_HDR_LEN], size_t len)
{
	out[0] = (uint8_t)(len >> 8);
	out[1] = (uint8_t)len;
}

/* Write flyctl's 4-byte header for a datagram of len bytes. */
static inline void frame_put_hdr_fly(uint8_t out[static FRAME_HDR_LEN_FLY], size_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

#endif
