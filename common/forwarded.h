/* SPDX-License-Identifier: MIT */
/* The client a reverse proxy names in X-Forwarded-For ("client, proxy1, proxy2": each proxy
 * appends the address it got the request from). Only the right end can be believed: a client
 * writes what it likes on the left, and the proxy we trust appended the last element. So the
 * client is the rightmost element that is not itself one of the trusted proxies (a chain of
 * them, each appending its predecessor); elements left of it are never read. Pure: no I/O. */
#ifndef WGWS_FORWARDED_H
#define WGWS_FORWARDED_H

#include <sys/socket.h>

#include "cidr.h"

enum { FORWARDED_MAX = 1024 }; /* longest header value looked at */

/* Parse value (NUL-terminated) into *out (AF_INET or AF_INET6, port 0). Elements are IPv4 or
 * IPv6 addresses, an IPv6 one possibly in brackets, separated by commas and optional spaces.
 * trusted[0..n) are the proxies to look past. 0; -ENOENT for an empty value; -EINVAL when an
 * element that had to be read is not an address, or the value is too long. */
int forwarded_client(const char *value, const struct cidr *trusted, unsigned n,
		     struct sockaddr_storage *out) __attribute__((warn_unused_result));

#endif
