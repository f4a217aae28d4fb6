/* SPDX-License-Identifier: MIT */
/* What the provisioner's fuzz harnesses check of a prefix or of a peer a device backend
 * reports, whichever parser made it: include after prov.h. */
#ifndef WGWS_FUZZ_CHECK_H
#define WGWS_FUZZ_CHECK_H

#include <netinet/in.h>
#include <stdbool.h>

static inline bool fuzz_cidr_ok(const struct cidr *c)
{
	return (c->family == AF_INET && c->bits <= 32) || (c->family == AF_INET6 && c->bits <= 128);
}

/* Kept allowed IPs that are prefixes, an IPv4, IPv6 or no endpoint, no negative time. */
static inline bool fuzz_peer_info_ok(const struct wgdev_peer_info *p)
{
	unsigned kept = p->n_allowed < PROV_MAX_ALLOWED ? p->n_allowed : PROV_MAX_ALLOWED;

	for (unsigned i = 0; i < kept; i++)
		if (!fuzz_cidr_ok(&p->allowed[i]))
			return false;
	return (p->endpoint.ss_family == 0 || p->endpoint.ss_family == AF_INET ||
		p->endpoint.ss_family == AF_INET6) && p->last_handshake_s >= 0;
}

#endif
