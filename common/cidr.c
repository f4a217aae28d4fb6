/* SPDX-License-Identifier: MIT */
/* Addresses with a prefix length (cidr.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

int cidr_parse(const char *s, struct cidr *out)
{
	char ip[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long bits;
	unsigned max, full, rem;
	char *end;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET, ip, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	bits = max;
	if (slash) {
		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		errno = 0;
		bits = strtoul(slash + 1, &end, 10);
		if (errno || *end || bits > max)
			return -EINVAL;
	}
	out->bits = (uint8_t)bits;
	/* Host bits must be zero: "10.0.0.1/24" is almost always a mistake. */
	full = out->bits / 8;
	rem = out->bits % 8;
	if (rem && (out->addr[full] & (0xffu >> rem)))
		return -EINVAL;
	for (unsigned i = full + (rem ? 1 : 0); i < max / 8; i++)
		if (out->addr[i])
			return -EINVAL;
	return 0;
}

const char *cidr_format(const struct cidr *c, char buf[static CIDR_STR])
{
	char ip[INET6_ADDRSTRLEN];

	if (!inet_ntop(c->family, c->addr, ip, sizeof(ip)))
		snprintf(ip, sizeof(ip), "?");
	snprintf(buf, CIDR_STR, "%s/%u", ip, c->bits);
	return buf;
}

bool cidr_overlaps(const struct cidr *a, const struct cidr *b)
{
	unsigned bits = a->bits < b->bits ? a->bits : b->bits;

	if (a->family != b->family)
		return false;
	if (memcmp(a->addr, b->addr, bits / 8))
		return false;
	return !(bits % 8) || !((a->addr[bits / 8] ^ b->addr[bits / 8]) & (0xff00u >> (bits % 8)));
}

void cidr_host(int family, const void *addr, struct cidr *out)
{
	memset(out, 0, sizeof(*out));
	out->family = (uint8_t)family;
	out->bits = family == AF_INET ? 32 : 128;
	memcpy(out->addr, addr, family == AF_INET ? 4 : 16);
}

bool cidr_list_has(const struct cidr *list, unsigned n, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
	struct cidr host;

	if (ss->ss_family == AF_INET)
		cidr_host(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, &host);
	else if (ss->ss_family != AF_INET6)
		return false;
	else if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
		cidr_host(AF_INET, v6->sin6_addr.s6_addr + 12, &host);
	else
		cidr_host(AF_INET6, &v6->sin6_addr, &host);
	for (unsigned i = 0; i < n; i++)
		if (cidr_overlaps(&list[i], &host))
			return true;
	return false;
}
