/* SPDX-License-Identifier: MIT */
/* Addresses with a prefix length ("10.0.0.0/8", "fd00::/64", or a bare address: a host
 * route), as AllowedIPs, the API, no_proxy and --proxy-protocol-from write them. Pure: no
 * I/O, no allocation. */
#ifndef WGWS_CIDR_H
#define WGWS_CIDR_H

#include <stdbool.h>
#include <stdint.h>

enum { CIDR_STR = 64 }; /* "ffff:...:ffff/128" and a NUL */

struct cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bits;   /* 0..32 or 0..128 */
	uint8_t addr[16]; /* network byte order; the first 4 bytes for AF_INET */
};

/* True when the two prefixes share an address (one contains the other): with a host
 * (cidr_host) on one side, whether the other contains it. */
bool cidr_overlaps(const struct cidr *a, const struct cidr *b);
/* Parse "10.0.0.2/32", "fd00::2/128", or an address without "/n" (a host route).
 * Host bits beyond the prefix must be zero. Returns 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out) __attribute__((warn_unused_result));
/* The host route of addr (family AF_INET: 4 bytes, AF_INET6: 16). */
void cidr_host(int family, const void *addr, struct cidr *out);
/* Whether a socket address (AF_INET, or AF_INET6: an IPv4-mapped one, as a dual-stack
 * listener gives IPv4 clients, counts as its IPv4 address) lies in one of list[0..n). */
struct sockaddr_storage;
bool cidr_list_has(const struct cidr *list, unsigned n, const struct sockaddr_storage *ss);
/* "10.0.0.2/32" into buf; returns buf. */
const char *cidr_format(const struct cidr *c, char buf[static CIDR_STR]);

#endif
