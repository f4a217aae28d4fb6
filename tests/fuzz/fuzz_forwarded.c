/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for X-Forwarded-For (common/forwarded.c), trusting 10.0.0.0/8 and
 * fd00::/8. Input: the header value, made a C string at its first NUL. Checked beyond ASan:
 * a client found is IPv4 or IPv6 with port 0; appending ", 10.1.2.3" (one more trusted proxy)
 * names the same client, and an error stays the same error; a value longer than
 * FORWARDED_MAX is refused without being read past. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "forwarded.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cidr trusted[2];
	static bool init;
	char in[FORWARDED_MAX + 64], more[FORWARDED_MAX + 64];
	struct sockaddr_storage a, b;
	size_t len = size < FORWARDED_MAX + 32 ? size : FORWARDED_MAX + 32;
	int ra, rb;

	if (!init) {
		if (cidr_parse("10.0.0.0/8", &trusted[0]) < 0 || cidr_parse("fd00::/8", &trusted[1]))
			abort();
		init = true;
	}
	memcpy(in, data, len);
	in[len] = '\0';
	ra = forwarded_client(in, trusted, 2, &a);
	if (ra != 0 && ra != -EINVAL && ra != -ENOENT)
		abort();
	if (strlen(in) > FORWARDED_MAX) {
		if (ra != -EINVAL)
			abort();
		return 0;
	}
	if (ra == 0) {
		if (a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port != 0 :
		    a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port != 0 : 1)
			abort();
	}
	if (strlen(in) + 10 > FORWARDED_MAX || ra == -ENOENT)
		return 0;
	memcpy(more, in, strlen(in));
	memcpy(more + strlen(in), ", 10.1.2.3", 11);
	rb = forwarded_client(more, trusted, 2, &b);
	if (rb != ra || (ra == 0 && memcmp(&a, &b, sizeof(a))))
		abort();
	return 0;
}
