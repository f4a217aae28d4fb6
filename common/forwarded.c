/* SPDX-License-Identifier: MIT */
/* X-Forwarded-For, read from the right (forwarded.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "forwarded.h"

/* One element, [start, end) trimmed of spaces and tabs, into *out. 0 or -EINVAL. */
static int parse_element(const char *start, const char *end, struct sockaddr_storage *out)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
	char ip[INET6_ADDRSTRLEN];
	size_t len;

	while (start < end && (*start == ' ' || *start == '\t'))
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end - start >= 2 && *start == '[' && end[-1] == ']') {
		start++;
		end--;
	}
	len = (size_t)(end - start);
	if (!len || len >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, start, len);
	ip[len] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

int forwarded_client(const char *value, const struct cidr *trusted, unsigned n,
		     struct sockaddr_storage *out)
{
	size_t len = strnlen(value, FORWARDED_MAX + 1);
	const char *end = value + len;

	memset(out, 0, sizeof(*out));
	if (len > FORWARDED_MAX)
		return -EINVAL;
	if (strspn(value, " \t,") == len)
		return -ENOENT;
	for (;;) {
		const char *start = end;
		int ret;

		while (start > value && start[-1] != ',')
			start--;
		ret = parse_element(start, end, out);
		if (ret < 0)
			return ret;
		/* The leftmost element is the client even when it is a trusted proxy itself. */
		if (start == value || !cidr_list_has(trusted, n, out))
			return 0;
		end = start - 1;
	}
}
