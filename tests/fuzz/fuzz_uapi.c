/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the UAPI reply parsers (provisioner/uapi.c): uapi_parse_get(), the
 * incremental line parser every get=1 reply from wireguard-go or boringtun goes through, and
 * uapi_parse_errno() for set replies.
 *
 * Input: a reply, in an exact heap copy (ASan sees a read past it). Checked: results are the
 * documented ones (0, -EBADMSG, a device errno in -4095..-1, or what the callback returned);
 * every peer handed over is well formed (allowed IPs that are prefixes, an endpoint that is
 * IPv4, IPv6 or none, at most PROV_MAX_ALLOWED kept); asking for the private key or not, and
 * passing info or not, changes neither the result nor the peers; and a callback that stops at
 * the last peer it was given stops the parse with its own value. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { STOP = 7 };

struct seen {
	unsigned peers, stop_at; /* stop_at: return STOP at this peer (1-based), 0 = never */
	uint64_t sum;            /* of what the peers carried, to compare two parses */
};

static int on_peer(void *arg, const struct wgdev_peer_info *p)
{
	struct seen *s = arg;
	unsigned kept = p->n_allowed < PROV_MAX_ALLOWED ? p->n_allowed : PROV_MAX_ALLOWED;

	if (!fuzz_peer_info_ok(p))
		abort();
	for (unsigned i = 0; i < kept; i++)
		s->sum += p->allowed[i].bits + p->allowed[i].addr[0];
	s->sum = s->sum * 31 + p->pubkey[0] + p->n_allowed + p->keepalive_s + p->rx_bytes +
		 p->tx_bytes + p->endpoint.ss_family;
	s->peers++;
	return s->peers == s->stop_at ? STOP : 0;
}

static bool documented(int ret)
{
	return ret == 0 || ret == -EBADMSG || (ret < 0 && ret >= -4095);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen a = { 0 }, b = { 0 }, c = { 0 };
	uint8_t priv[WG_KEY_LEN];
	struct wgdev_info info;
	int ra, rb, rc;
	char *text = malloc(size ? size : 1);

	if (!text)
		abort();
	memcpy(text, data, size);

	ra = uapi_parse_get(text, size, &info, priv, on_peer, &a);
	if (!documented(ra))
		abort();
	rb = uapi_parse_get(text, size, NULL, NULL, on_peer, &b);
	if (rb != ra || b.peers != a.peers || b.sum != a.sum)
		abort();
	if (a.peers) {
		c.stop_at = a.peers;
		rc = uapi_parse_get(text, size, NULL, NULL, on_peer, &c);
		if (rc != STOP || c.peers != a.peers)
			abort();
	}
	if (!documented(uapi_parse_errno(text, size)))
		abort();
	free(text);
	return 0;
}
