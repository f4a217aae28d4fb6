/* SPDX-License-Identifier: MIT */
/* Socket addresses as users type them: "192.0.2.1:443", "[2001:db8::1]:443", and host
 * names with an optional port for the places that resolve later (proxy, relay URL).
 * No resolution happens here: numeric parsing only, so it is safe in an event loop. */
#ifndef WGWS_ADDR_H
#define WGWS_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum {
	ADDR_STR_LEN = 64, /* enough for "[ipv6]:port" */
	ADDR_HOST_MAX = 255,
};

/* Parse a numeric "IPv4:PORT" or "[IPv6]:PORT" (port 1..65535, required) into *ss.
 * Returns 0 or -EINVAL. *len receives the sockaddr length. */
int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
	__attribute__((warn_unused_result));

/* Split "HOST[:PORT]" / "[V6]:PORT" into host (without brackets, NUL-terminated, at most
 * hostsz-1 bytes) and port; a missing port yields default_port. Returns 0 or -EINVAL
 * (empty host, bad or zero port, host too long, unbalanced brackets). */
int addr_split_host_port(const char *s, char *host, size_t hostsz, uint16_t *port,
			 uint16_t default_port) __attribute__((warn_unused_result));

/* Format sa as "ip:port" or "[ip]:port" into buf (ADDR_STR_LEN bytes); returns buf. */
const char *addr_format(const struct sockaddr *sa, char buf[static ADDR_STR_LEN]);

/* True when both are the same family, address and port. */
bool addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* Whether a TCP listener could bind ss now (a socket bound, then closed; SO_REUSEADDR, as
 * listeners have): 0 or -errno. For listeners a library binds without saying why it could
 * not. */
int addr_bind_probe(const struct sockaddr_storage *ss, socklen_t len);

/* A listener that cannot bind ss (err: errno) in words for a fatal message: strerror, and
 * when it helps, why ("a port below 1024 needs root or CAP_NET_BIND_SERVICE", "the address
 * is not on this host"). Returns buf. */
const char *addr_bind_error(int err, const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
