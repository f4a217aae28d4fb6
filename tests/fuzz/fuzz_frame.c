/* libFuzzer harness for the record decoder: the first byte picks max_len and a chunk size,
 * the rest is the stream. Checks that every reported record is within bounds and that the
 * decoder never reads or writes outside what it was given (ASan does the latter). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[FRAME_MAX_LEN];
	struct frame_dec dec;
	size_t max_len, chunk;

	if (size < 2)
		return 0;
	max_len = 1 + (size_t)data[0] * 256; /* 1 .. 65281 */
	chunk = 1 + data[1] % 64;
	data += 2;
	size -= 2;
	if (frame_dec_init(&dec, buf, max_len) < 0)
		abort();
	while (size) {
		size_t n = size < chunk ? size : chunk;
		const uint8_t *p = data;
		size_t left = n;

		while (left) {
			const uint8_t *rec;
			size_t rec_len;
			ssize_t used = frame_dec_feed(&dec, p, left, &rec, &rec_len);

			if (used < 0)
				return 0;
			if ((size_t)used > left || (rec && (rec_len == 0 || rec_len > max_len)))
				abort();
			if (rec && rec_len)
				memcmp(rec, rec + rec_len - 1, 1); /* touch both ends */
			p += used;
			left -= (size_t)used;
		}
		data += n;
		size -= n;
	}
	return 0;
}
