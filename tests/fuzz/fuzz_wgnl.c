/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the kernel backend's dump parser (provisioner/wgnl.c, through
 * wgnl_parse_dump: the receive loop of a GET_DEVICE dump, fed datagrams from memory).
 *
 * Input: datagrams, each a big-endian u16 length then that many bytes (a length past the end
 * takes what is left); each gets an exact heap copy (aligned as the socket's buffer is; ASan
 * sees a read past it). The replies count as ours when they carry family 0x15, port id 1234
 * and sequence number 3 (tests/fuzz/mkcorpus.py builds real ones). Checked: results are
 * 0 or negative, and the same whether the private key, the device facts and the peers are
 * asked for or not (but for -ENOKEY); every peer handed over has allowed IPs that are
 * prefixes, an IPv4, IPv6 or no endpoint, and a key other than the peer before it (a peer the
 * kernel split across batches comes once); a callback that stops at the last peer it was
 * given stops the dump with its own value. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FAMILY = 0x15, PORTID = 1234, SEQ = 3, DGRAMS_MAX = 64, STOP = 7 };

struct seen {
	unsigned peers, stop_at;
	uint8_t last_key[WG_KEY_LEN];
};

static int on_peer(void *arg, const struct wgdev_peer_info *p)
{
	struct seen *s = arg;

	if (!fuzz_peer_info_ok(p) || (s->peers && !memcmp(s->last_key, p->pubkey, WG_KEY_LEN)))
		abort();
	memcpy(s->last_key, p->pubkey, WG_KEY_LEN);
	s->peers++;
	return s->peers == s->stop_at ? STOP : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *dgram[DGRAMS_MAX];
	size_t len[DGRAMS_MAX];
	struct seen a = { 0 }, c = { 0 };
	struct wgdev_info info;
	uint8_t priv[WG_KEY_LEN];
	unsigned n = 0;
	int ra, rb, rc;

	while (size >= 2 && n < DGRAMS_MAX) {
		size_t l = (size_t)data[0] << 8 | data[1];

		data += 2;
		size -= 2;
		if (l > size)
			l = size;
		dgram[n] = malloc(l ? l : 1);
		if (!dgram[n])
			abort();
		memcpy(dgram[n], data, l);
		len[n++] = l;
		data += l;
		size -= l;
	}

	ra = wgnl_parse_dump((const void *const *)dgram, len, n, FAMILY, PORTID, SEQ, &info, priv,
			     on_peer, &a);
	rb = wgnl_parse_dump((const void *const *)dgram, len, n, FAMILY, PORTID, SEQ, NULL, NULL,
			     NULL, NULL);
	if (ra > 0 || (ra != rb && !(ra == -ENOKEY && rb == 0)))
		abort();
	if (a.peers) {
		c.stop_at = a.peers;
		rc = wgnl_parse_dump((const void *const *)dgram, len, n, FAMILY, PORTID, SEQ, NULL,
				     NULL, on_peer, &c);
		if (rc != (rb < 0 ? rb : STOP) || c.peers != a.peers)
			abort();
	}
	for (unsigned i = 0; i < n; i++)
		free(dgram[i]);
	return 0;
}
