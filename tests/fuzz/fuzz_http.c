/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the shim's two HTTP reply parsers (client-shim/ws.c): the relay's answer
 * to the WebSocket upgrade (ws_check_upgrade) and a proxy's answer to CONNECT (ws_parse_status).
 *
 * Input: the bytes that come back after the request, as connect.c sees them: the header ends
 * at the first blank line within WS_HTTP_HDR_MAX bytes (ws_header_end), and both parsers get
 * exactly that header, in an exact heap copy (ASan sees a read past it), as upgrade_io() and
 * proxy_io() hand it over. The upgrade is checked against the key of RFC 6455's example,
 * "dGhlIHNhbXBsZSBub25jZQ==", so a reply with its accept value can pass. Checked: the header
 * end is the first "\r\n\r\n"; results are the documented ones; why is a NUL-terminated,
 * printable string; a status code has three digits; an accepted upgrade is a 101. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void check_why(const char why[static WS_WHY_LEN])
{
	const char *nul = memchr(why, '\0', WS_WHY_LEN);

	if (!nul)
		abort();
	for (const char *c = why; c < nul; c++)
		if (*c < 0x20 || *c == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[WS_WHY_LEN], *hdr;
	size_t end = ws_header_end(data, size < WS_HTTP_HDR_MAX ? size : WS_HTTP_HDR_MAX);
	int code = -1, ret;

	if (end == 0) {
		if (size >= 4 && memmem(data, size < WS_HTTP_HDR_MAX ? size : WS_HTTP_HDR_MAX,
					"\r\n\r\n", 4))
			abort();
		return 0;
	}
	if (end < 4 || end > size || memcmp(data + end - 4, "\r\n\r\n", 4) != 0 ||
	    memmem(data, end - 1, "\r\n\r\n", 4))
		abort();
	hdr = malloc(end);
	if (!hdr)
		abort();
	memcpy(hdr, data, end);

	/* The proxy's reply to CONNECT: proxy_io() wants a 2xx. */
	memset(why, 'x', sizeof(why));
	ret = ws_parse_status(hdr, end, &code, why);
	if (ret != 0 && ret != -EPROTO)
		abort();
	if (ret == 0 && (code < 100 || code > 599))
		abort();
	check_why(why);

	/* The relay's reply to the upgrade. */
	memset(why, 'x', sizeof(why));
	ret = ws_check_upgrade(hdr, end, key, why);
	if (ret != 0 && ret != -EACCES && ret != -EPROTO)
		abort();
	if (ret != -EACCES)
		check_why(why);
	if (ret == 0 && code != 101)
		abort();
	if (ret == -EACCES && (code == 101 || code == -1))
		abort();
	free(hdr);
	return 0;
}
