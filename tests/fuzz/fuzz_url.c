/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the shim's URL-shaped inputs (client-shim/url.c): the relay URL, proxy
 * URLs (from the command line and from http_proxy/https_proxy in the environment), the no_proxy
 * list and public key pins.
 *
 * Input: "A\nB" (B may be absent), A and B made C strings at their first NUL. A goes to every
 * parser; url_no_proxy_matches() gets A as the list and B as the host. Checked beyond ASan:
 * a parsed relay URL formats back (host:port and path) to a URL that parses to the same thing
 * and always yields an upgrade request; a parsed proxy formats back (scheme://host:port) to
 * the same scheme, host and port, and its credentials are "user:password" with the user
 * first; a list matches the same with an empty entry appended and still matches with
 * any entry appended; a parsed pin encodes back to the text it came from (but for the spare
 * bits of its last character). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "shim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { IN_MAX = 4096 };

static void check_relay(const char *s)
{
	char err[SHIM_ERR_LEN], hp[ADDR_HOST_MAX + 16], again_s[IN_MAX + 64], req[4096];
	struct shim_url u, again;

	if (url_parse_relay(s, &u, err) < 0) {
		if (!memchr(err, '\0', sizeof(err)))
			abort();
		return;
	}
	if (!u.host[0] || u.port == 0 || u.path[0] != '/' || !memchr(u.path, '\0', sizeof(u.path)))
		abort();
	url_format_hostport(u.host, u.host_is_v6, u.port, hp, sizeof(hp));
	snprintf(again_s, sizeof(again_s), "wss://%s%s", hp, u.path);
	if (url_parse_relay(again_s, &again, err) < 0 || strcmp(again.host, u.host) ||
	    again.port != u.port || again.host_is_ip != u.host_is_ip ||
	    again.host_is_v6 != u.host_is_v6 || strcmp(again.path, u.path))
		abort();
	if (ws_build_upgrade(req, sizeof(req), &u, "dGhlIHNhbXBsZSBub25jZQ==", NULL) <= 0 ||
	    ws_build_upgrade(req, sizeof(req), &u, "dGhlIHNhbXBsZSBub25jZQ==",
			     "0123456789abcdef0123456789") <= 0)
		abort();
}

static void check_proxy(const char *s, bool allow_bare)
{
	char err[SHIM_ERR_LEN], hp[ADDR_HOST_MAX + 16], again_s[ADDR_HOST_MAX + 32];
	struct shim_proxy p, again;
	size_t ulen;

	if (url_parse_proxy(s, allow_bare, &p, err) < 0) {
		if (p.cred[0] || !memchr(err, '\0', sizeof(err)))
			abort(); /* credentials are not left behind on an error */
		return;
	}
	if (!p.set || !p.host[0] || p.port == 0)
		abort();
	url_format_hostport(p.host, p.host_is_v6, p.port, hp, sizeof(hp));
	snprintf(again_s, sizeof(again_s), "%s://%s", url_proxy_scheme(p.scheme), hp);
	if (url_parse_proxy(again_s, false, &again, err) < 0 || again.scheme != p.scheme ||
	    strcmp(again.host, p.host) || again.port != p.port || again.cred[0])
		abort();
	if (!p.cred[0]) {
		if (p.user[0])
			abort();
		return;
	}
	ulen = strlen(p.user);
	if (!ulen || strncmp(p.cred, p.user, ulen) != 0 || p.cred[ulen] != ':')
		abort();
}

static void check_no_proxy(const char *list, const char *host)
{
	size_t n = strlen(list);
	char *more = malloc(n + 3);
	bool m;

	if (!more)
		abort();
	m = url_no_proxy_matches(list, host);
	memcpy(more, list, n);
	memcpy(more + n, ",", 2);
	if (url_no_proxy_matches(more, host) != m)
		abort();
	memcpy(more + n, ",q", 3);
	if (m && !url_no_proxy_matches(more, host))
		abort();
	free(more);
}

/* EVP_DecodeBlock ignores the two spare bits of the last character, so "...u47=" is read as
 * "...u4=": the canonical text may differ there, and only there. */
static void check_pin(const char *s)
{
	uint8_t pin[SHIM_PIN_LEN], again[SHIM_PIN_LEN];
	char b64[8 + SHIM_PIN_B64_LEN + 1] = "sha256//";

	if (url_parse_pin(s, pin) < 0)
		return;
	EVP_EncodeBlock((unsigned char *)b64 + 8, pin, SHIM_PIN_LEN);
	if (memcmp(s, b64, 8 + SHIM_PIN_B64_LEN - 2) != 0 || strcmp(s + 51, b64 + 51) != 0 ||
	    url_parse_pin(b64, again) < 0 || memcmp(pin, again, SHIM_PIN_LEN) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char a[IN_MAX + 1], b[IN_MAX + 1];
	const uint8_t *nl;
	size_t alen, blen;

	if (size > IN_MAX)
		return 0;
	nl = memchr(data, '\n', size);
	alen = nl ? (size_t)(nl - data) : size;
	blen = nl ? size - alen - 1 : 0;
	memcpy(a, data, alen);
	a[alen] = '\0';
	memcpy(b, data + size - blen, blen);
	b[blen] = '\0';

	check_relay(a);
	check_proxy(a, false);
	check_proxy(a, true);
	check_no_proxy(a, b);
	check_pin(a);
	return 0;
}
