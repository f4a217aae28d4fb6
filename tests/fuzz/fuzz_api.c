/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the provisioner API's request bodies (provisioner/api.c,
 * api_parse_create: the JSON of POST /v1/peers, the only body the API reads).
 *
 * Input: the body, as lws hands it over (an exact heap copy, no NUL). The pools are the ones
 * of the end-to-end tests, 10.64.0.0/16 and fd00:64::/64; now is fixed. Checked beyond ASan
 * and LeakSanitizer (jansson allocates per request): the status is 0 or 400 with a message; an
 * accepted body gives a peer the store may take as it is: a non-zero key if one was given, an
 * expiry 1 s to 10 years ahead or none, a printable name of at most PROV_NAME_MAX bytes, and
 * routes that are real prefixes outside both pools. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* api.c is linked whole, and its HTTP half refers to the daemon's state (main.c). */
struct prov prov;

double prov_now_s(void)
{
	return 0;
}

int64_t prov_wall_s(void)
{
	return 0;
}

enum { NOW = 1700000000, TTL_MAX = 10 * 365 * 86400 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t zero[WG_KEY_LEN];
	/* The device's public key: a key the seeds name (the vectors' initiator), so the
	 * refusal of the device's own key is reached. */
	static uint8_t device[WG_KEY_LEN];
	static struct cidr pools[2];
	static bool init;
	char msg[API_MSG_LEN];
	const char *why;
	struct store_peer sp;
	unsigned status;
	bool have_key;
	char *body;

	if (!init) {
		if (key_from_base64("pQwOU9IJLBiFX11mvUjoqmNFLaO/kB4o4jCPpx6iQQc=", device) < 0 ||
		    cidr_parse("10.64.0.0/16", &pools[0]) < 0 ||
		    cidr_parse("fd00:64::/64", &pools[1]) < 0)
			abort();
		init = true;
	}
	body = malloc(size ? size : 1);
	if (!body)
		abort();
	memcpy(body, data, size);
	memset(msg, 'x', sizeof(msg));
	status = api_parse_create(body, size, NOW, pools, 2, device, &sp, &have_key, msg);
	free(body);
	if (status) {
		if (status != 400 || !memchr(msg, '\0', sizeof(msg)))
			abort();
		return 0;
	}
	if (have_key == !memcmp(sp.pubkey, zero, WG_KEY_LEN))
		abort();
	/* An accepted key is one key_check_public takes, never the device's own. */
	if (have_key && (key_check_public(sp.pubkey, device, &why) < 0 ||
			 !memcmp(sp.pubkey, device, WG_KEY_LEN)))
		abort();
	if (sp.expires_at && (sp.expires_at <= NOW || sp.expires_at > NOW + TTL_MAX))
		abort();
	if (strnlen(sp.name, sizeof(sp.name)) > PROV_NAME_MAX)
		abort();
	for (const char *c = sp.name; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			abort();
	if (sp.n_routes > sizeof(sp.routes) / sizeof(sp.routes[0]))
		abort();
	for (unsigned i = 0; i < sp.n_routes; i++) {
		const struct cidr *c = &sp.routes[i];

		if (!fuzz_cidr_ok(c) || c->bits == 0 || cidr_overlaps(c, &pools[0]) ||
		    cidr_overlaps(c, &pools[1]))
			abort();
	}
	/* No body at all reads as {}. */
	if (api_parse_create(NULL, 0, NOW, pools, 2, device, &sp, &have_key, msg) != 0 || have_key)
		abort();
	return 0;
}
