/* SPDX-License-Identifier: MIT */
/* Numeric socket addresses and "host[:port]" splitting. No name resolution here. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int addr_split_host_port(const char *s, char *host, size_t hostsz, uint16_t *port,
			 uint16_t default_port)
{
	const char *h, *colon, *end;
	size_t hlen;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		h = s + 1;
		end = strchr(h, ']');
		if (!end)
			return -EINVAL;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return -EINVAL;
		hlen = (size_t)(end - h);
		if (memchr(h, '[', hlen))
			return -EINVAL;
	} else {
		h = s;
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return -EINVAL; /* bare IPv6 needs brackets */
		if (strpbrk(s, "[]"))
			return -EINVAL;
		hlen = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (hlen == 0 || hlen >= hostsz || hlen > ADDR_HOST_MAX)
		return -EINVAL;
	if (colon) {
		if (parse_port(colon + 1, port) < 0)
			return -EINVAL;
	} else {
		if (default_port == 0)
			return -EINVAL;
		*port = default_port;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	return 0;
}

int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[ADDR_HOST_MAX + 1];
	uint16_t port;

	if (addr_split_host_port(s, host, sizeof(host), &port, 0) < 0)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (s[0] != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
	}
	return 0;
}

const char *addr_format(const struct sockaddr *sa, char buf[static ADDR_STR_LEN])
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, ADDR_STR_LEN, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, ADDR_STR_LEN, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, ADDR_STR_LEN, "(family %d)", sa->sa_family);
	}
	return buf;
}

bool addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) &&
		       x->sin6_scope_id == y->sin6_scope_id;
	}
	return false;
}

int addr_bind_probe(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, ret = 0;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

const char *addr_bind_error(int err, const struct sockaddr_storage *ss, char *buf, size_t len)
{
	unsigned port = ntohs(ss->ss_family == AF_INET ?
			      ((const struct sockaddr_in *)ss)->sin_port :
			      ((const struct sockaddr_in6 *)ss)->sin6_port);

	snprintf(buf, len, "%s%s", strerror(err),
		 err == EACCES && port < 1024 ?
			 " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)" :
		 err == EADDRNOTAVAIL ? " (the address is not on this host)" :
		 err == EADDRINUSE ? " (another program listens there)" : "");
	return buf;
}
