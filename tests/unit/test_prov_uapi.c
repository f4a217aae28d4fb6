/* SPDX-License-Identifier: MIT */
/* Unit tests for provisioner/uapi.c: the set request builders (exact text, table-driven),
 * the errno reply parser (both signs), and the get parser against replies captured from a
 * real wireguard-go (tests/unit/data/uapi/wggo_*.txt, each checked against `wg show dump` of
 * the same device, *.wg), a boringtun-style reply written from boringtun's api.rs, and
 * malformed or hostile replies. A fake UAPI server on a unix socket then drives the real
 * socket code: the request bytes it receives, replies sent a few bytes at a time, a daemon
 * that hangs up mid-reply, boringtun refusing update_only.
 * Fixtures are read from tests/unit/data/uapi/ under $WGWS_TOP or the current directory
 * (tests/run.sh runs from the repository root). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "prov.h"

static const char *cur_case = "?";
#include "expect.h"

/* --- helpers ------------------------------------------------------------------------- */

static char *load(const char *name, size_t *len)
{
	const char *top = getenv("WGWS_TOP");
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s%stests/unit/data/uapi/%s", top ? top : "", top ? "/" : "",
		 name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open fixture %s (run from the repository root)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void key_seq(uint8_t key[static WG_KEY_LEN], uint8_t first)
{
	for (unsigned i = 0; i < WG_KEY_LEN; i++)
		key[i] = (uint8_t)(first + i);
}

static void set_cidr(struct cidr *c, const char *s)
{
	if (cidr_parse(s, c) != 0)
		fail_msg("bad cidr %s in test", s);
}

static void set_ep(struct sockaddr_storage *ss, const char *s)
{
	socklen_t len;

	if (addr_parse(s, ss, &len) != 0)
		fail_msg("bad endpoint %s in test", s);
}

/* A peer as one line, in the shape of `wg show dump` without the psk column:
 * key endpoint allowed handshake rx tx keepalive (tab-separated, "off" for 0). */
static void peer_to_wg(const struct wgdev_peer_info *pi, char *out, size_t size)
{
	char key[WG_KEY_B64_LEN + 1], ep[ADDR_STR_LEN], cidr[CIDR_STR], ka[8];
	char allowed[PROV_MAX_ALLOWED * CIDR_STR] = "";
	unsigned n = pi->n_allowed < PROV_MAX_ALLOWED ? pi->n_allowed : PROV_MAX_ALLOWED;

	key_to_base64(pi->pubkey, key);
	for (unsigned i = 0; i < n; i++) {
		if (i)
			strcat(allowed, ",");
		strcat(allowed, cidr_format(&pi->allowed[i], cidr));
	}
	if (pi->keepalive_s)
		snprintf(ka, sizeof(ka), "%u", pi->keepalive_s);
	else
		snprintf(ka, sizeof(ka), "off");
	snprintf(out, size, "%s\t%s\t%s\t%lld\t%llu\t%llu\t%s", key,
		 pi->endpoint.ss_family ? addr_format((const struct sockaddr *)&pi->endpoint, ep)
					: "(none)",
		 n ? allowed : "(none)", (long long)pi->last_handshake_s,
		 (unsigned long long)pi->rx_bytes, (unsigned long long)pi->tx_bytes, ka);
}

/* Collects dumped peers. */
struct seen {
	unsigned n;
	int stop_after; /* return 7 after this many peers (0: never) */
	struct wgdev_peer_info peers[64];
};

static int collect(void *arg, const struct wgdev_peer_info *pi)
{
	struct seen *s = arg;

	if (s->n < 64)
		s->peers[s->n] = *pi;
	s->n++;
	return s->stop_after && (int)s->n == s->stop_after ? 7 : 0;
}

/* --- uapi_format_set_peer / uapi_format_remove --------------------------------------- */

#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_P "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define HEX_F "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f"

static const struct {
	const char *name;
	bool psk, update_only;
	const char *endpoint; /* NULL: unset */
	int keepalive_s;
	const char *allowed[3];
	const char *want;
} fmt_cases[] = {
	{ "v4 only, keepalive as is", false, false, NULL, -1, { "10.0.0.2/32" },
	  "set=1\npublic_key=" HEX_A "\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\n\n" },
	{ "v4+v6, keepalive off", false, false, NULL, 0, { "10.0.0.2/32", "fd00::2/128" },
	  "set=1\npublic_key=" HEX_A "\nreplace_allowed_ips=true\npersistent_keepalive_interval=0\n"
	  "allowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n\n" },
	{ "psk, v4 endpoint, keepalive 25", true, false, "192.0.2.1:51820", 25,
	  { "10.0.0.0/24", "fd00:1::/64", "0.0.0.0/0" },
	  "set=1\npublic_key=" HEX_A "\nreplace_allowed_ips=true\npreshared_key=" HEX_P "\n"
	  "endpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\nallowed_ip=10.0.0.0/24\n"
	  "allowed_ip=fd00:1::/64\nallowed_ip=0.0.0.0/0\n\n" },
	{ "v6 endpoint, no allowed IPs", false, false, "[2001:db8::1]:443", 65535, { NULL },
	  "set=1\npublic_key=" HEX_A "\nreplace_allowed_ips=true\nendpoint=[2001:db8::1]:443\n"
	  "persistent_keepalive_interval=65535\n\n" },
	{ "update_only: endpoint and keepalive, allowed IPs ignored", false, true,
	  "[2001:db8::1]:443", 25, { "10.0.0.2/32" },
	  "set=1\npublic_key=" HEX_A "\nupdate_only=true\nendpoint=[2001:db8::1]:443\n"
	  "persistent_keepalive_interval=25\n\n" },
	{ "update_only: psk, keepalive off", true, true, NULL, 0, { NULL },
	  "set=1\npublic_key=" HEX_A "\nupdate_only=true\npreshared_key=" HEX_P "\n"
	  "persistent_keepalive_interval=0\n\n" },
	{ "update_only: nothing", false, true, NULL, -1, { NULL },
	  "set=1\npublic_key=" HEX_A "\nupdate_only=true\n\n" },
};

static void fill_peer(struct wgdev_peer *p, unsigned i)
{
	memset(p, 0, sizeof(*p));
	key_seq(p->pubkey, 0x00);
	if (fmt_cases[i].psk) {
		p->has_psk = true;
		key_seq(p->psk, 0xa0);
	}
	if (fmt_cases[i].endpoint)
		set_ep(&p->endpoint, fmt_cases[i].endpoint);
	p->keepalive_s = fmt_cases[i].keepalive_s;
	for (unsigned j = 0; j < 3 && fmt_cases[i].allowed[j]; j++)
		set_cidr(&p->allowed[p->n_allowed++], fmt_cases[i].allowed[j]);
}

static void test_format_set_peer(void **state)
{
	char buf[1024];
	struct wgdev_peer p;

	(void)state;
	for (unsigned i = 0; i < sizeof(fmt_cases) / sizeof(fmt_cases[0]); i++) {
		size_t want = strlen(fmt_cases[i].want);
		ssize_t n;

		cur_case = fmt_cases[i].name;
		fill_peer(&p, i);
		n = uapi_format_set_peer(buf, sizeof(buf), &p, fmt_cases[i].update_only);
		EXPECT_EQ(n, want);
		buf[n < 0 ? 0 : n] = '\0';
		EXPECT_STREQ(buf, fmt_cases[i].want);
		/* Every buffer too small is refused, never truncated (one byte for the NUL). */
		for (size_t size = 0; size <= want; size++)
			EXPECT_EQ(uapi_format_set_peer(buf, size, &p, fmt_cases[i].update_only),
				  -EMSGSIZE);
		EXPECT_EQ(uapi_format_set_peer(buf, want + 1, &p, fmt_cases[i].update_only), want);
	}
}

static void test_format_set_peer_scope_and_full(void **state)
{
	char buf[1024];
	struct wgdev_peer p;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&p.endpoint;
	ssize_t n;

	(void)state;
	cur_case = "link-local endpoint keeps its scope id";
	memset(&p, 0, sizeof(p));
	key_seq(p.pubkey, 0x00);
	p.keepalive_s = -1;
	set_ep(&p.endpoint, "[fe80::1]:51820");
	sin6->sin6_scope_id = 3;
	n = uapi_format_set_peer(buf, sizeof(buf), &p, true);
	EXPECT(n > 0);
	EXPECT_STREQ(buf, "set=1\npublic_key=" HEX_A "\nupdate_only=true\n"
			  "endpoint=[fe80::1%3]:51820\n\n");

	cur_case = "PROV_MAX_ALLOWED v6 allowed IPs, psk, endpoint fit the backend's buffer";
	memset(&p, 0, sizeof(p));
	p.has_psk = true;
	p.keepalive_s = 65535;
	set_ep(&p.endpoint, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535");
	for (unsigned i = 0; i < PROV_MAX_ALLOWED; i++)
		set_cidr(&p.allowed[p.n_allowed++], "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/128");
	n = uapi_format_set_peer(buf, sizeof(buf), &p, false);
	EXPECT(n > 0 && n < 900);
}

static void test_format_set_peer_invalid(void **state)
{
	char buf[1024];
	struct wgdev_peer p;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.keepalive_s = 65536;
	cur_case = "keepalive 65536";
	EXPECT_EQ(uapi_format_set_peer(buf, sizeof(buf), &p, false), -EINVAL);
	p.keepalive_s = -2;
	cur_case = "keepalive -2";
	EXPECT_EQ(uapi_format_set_peer(buf, sizeof(buf), &p, false), -EINVAL);
	p.keepalive_s = -1;
	p.n_allowed = PROV_MAX_ALLOWED + 1;
	cur_case = "too many allowed IPs";
	EXPECT_EQ(uapi_format_set_peer(buf, sizeof(buf), &p, false), -EINVAL);
	p.n_allowed = 1;
	p.allowed[0].family = AF_INET;
	p.allowed[0].bits = 33;
	cur_case = "v4 prefix /33";
	EXPECT_EQ(uapi_format_set_peer(buf, sizeof(buf), &p, false), -EINVAL);
	p.n_allowed = 0;
	p.endpoint.ss_family = AF_UNIX;
	cur_case = "endpoint of another family";
	EXPECT_EQ(uapi_format_set_peer(buf, sizeof(buf), &p, false), -EINVAL);
	set_ep(&p.endpoint, "192.0.2.1:1");
	((struct sockaddr_in *)&p.endpoint)->sin_port = 0;
	cur_case = "endpoint port 0";
	EXPECT_EQ(uapi_format_set_peer(buf, sizeof(buf), &p, false), -EINVAL);
}

static void test_format_remove(void **state)
{
	uint8_t keys[3][WG_KEY_LEN];
	char buf[512];
	const char *want3 = "set=1\npublic_key=" HEX_A "\nremove=true\npublic_key=" HEX_P
			    "\nremove=true\npublic_key=" HEX_F "\nremove=true\n\n";
	ssize_t n;

	(void)state;
	key_seq(keys[0], 0x00);
	key_seq(keys[1], 0xa0);
	key_seq(keys[2], 0xf0);
	cur_case = "three keys";
	n = uapi_format_remove(buf, sizeof(buf), (const uint8_t(*)[WG_KEY_LEN])keys, 3);
	EXPECT_EQ(n, strlen(want3));
	EXPECT_STREQ(buf, want3);
	cur_case = "one key";
	n = uapi_format_remove(buf, sizeof(buf), (const uint8_t(*)[WG_KEY_LEN])keys, 1);
	EXPECT_STREQ(buf, "set=1\npublic_key=" HEX_A "\nremove=true\n\n");
	cur_case = "no key";
	n = uapi_format_remove(buf, sizeof(buf), (const uint8_t(*)[WG_KEY_LEN])keys, 0);
	EXPECT_STREQ(buf, "set=1\n\n");
	cur_case = "buffer too small";
	for (size_t size = 0; size <= strlen(want3); size++)
		EXPECT_EQ(uapi_format_remove(buf, size, (const uint8_t(*)[WG_KEY_LEN])keys, 3),
			  -EMSGSIZE);
}

/* --- uapi_parse_errno ---------------------------------------------------------------- */

static const struct {
	const char *in;
	int want;
} errno_cases[] = {
	{ "errno=0\n\n", 0 },
	{ "errno=-22\n\n", -EINVAL },   /* wireguard-go */
	{ "errno=22\n\n", -EINVAL },    /* boringtun */
	{ "errno=-55\n\n", -55 },       /* wireguard-go's "unknown" */
	{ "errno=5\n\n", -EIO },
	{ "errno=-0\n\n", 0 },
	{ "errno=4095\n\n", -4095 },
	{ "", -EBADMSG },
	{ "errno=0\n", -EBADMSG },      /* truncated */
	{ "errno=0", -EBADMSG },
	{ "errno=\n\n", -EBADMSG },
	{ "errno=-\n\n", -EBADMSG },
	{ "errno=--1\n\n", -EBADMSG },
	{ "errno=+1\n\n", -EBADMSG },
	{ "errno=x\n\n", -EBADMSG },
	{ "errno=0 \n\n", -EBADMSG },
	{ "errno=4096\n\n", -EBADMSG },
	{ "errno=99999999999999999999999\n\n", -EBADMSG },
	{ "Errno=0\n\n", -EBADMSG },
	{ "errno=0\n\nerrno=0\n\n", -EBADMSG },
	{ "listen_port=1\nerrno=0\n\n", -EBADMSG },
	{ "\n\n", -EBADMSG },
};

static void test_parse_errno(void **state)
{
	const char *files[] = { "wggo_set_ok.txt", "wggo_set_einval.txt" };
	const int want[] = { 0, -EINVAL };

	(void)state;
	for (unsigned i = 0; i < sizeof(errno_cases) / sizeof(errno_cases[0]); i++) {
		cur_case = errno_cases[i].in;
		EXPECT_EQ(uapi_parse_errno(errno_cases[i].in, strlen(errno_cases[i].in)),
			  errno_cases[i].want);
	}
	for (unsigned i = 0; i < 2; i++) {
		size_t len;
		char *t = load(files[i], &len);

		cur_case = files[i];
		EXPECT_EQ(uapi_parse_errno(t, len), want[i]);
		free(t);
	}
}

/* --- uapi_parse_get: captured wireguard-go replies ------------------------------------ */

/* Checks a parsed capture against `wg show dump` of the same device at the same moment. */
static void check_against_wg(const char *txt, const char *wg)
{
	size_t len, wlen;
	char *t = load(txt, &len), *w = load(wg, &wlen);
	char priv_b64[WG_KEY_B64_LEN + 1], pub_b64[WG_KEY_B64_LEN + 1];
	char *save = NULL, *line, ours[1024];
	struct seen *s = calloc(1, sizeof(*s));
	struct wgdev_info info;
	uint8_t priv[WG_KEY_LEN];
	unsigned n = 0;

	assert_non_null(s);
	cur_case = txt;
	EXPECT_EQ(uapi_parse_get(t, len, &info, priv, collect, s), 0);
	/* The interface line: private key, public key (derived by us), listen port. */
	line = strtok_r(w, "\n", &save);
	key_to_base64(priv, priv_b64);
	EXPECT(info.has_public_key);
	key_to_base64(info.public_key, pub_b64);
	snprintf(ours, sizeof(ours), "%s\t%s\t%u\toff", priv_b64, pub_b64, info.listen_port);
	EXPECT_STREQ(ours, line);
	EXPECT_EQ(info.ifindex, 0);
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *f[8], *fs = NULL, *allowed, *a, *as = NULL;
		char want[1024], cut[1024] = "";
		unsigned na = 0;

		f[0] = strtok_r(line, "\t", &fs);
		for (unsigned i = 1; i < 8; i++)
			f[i] = strtok_r(NULL, "\t", &fs);
		EXPECT(f[7] != NULL);
		EXPECT(n < s->n);
		/* wg prints every allowed IP; we keep the first PROV_MAX_ALLOWED and count all. */
		allowed = strdup(f[3]);
		for (a = strtok_r(allowed, ",", &as); a; a = strtok_r(NULL, ",", &as), na++) {
			if (na < PROV_MAX_ALLOWED)
				snprintf(cut + strlen(cut), sizeof(cut) - strlen(cut), "%s%s",
					 na ? "," : "", a);
		}
		free(allowed);
		if (!strcmp(f[3], "(none)"))
			na = 0;
		snprintf(want, sizeof(want), "%s\t%s\t%s\t%s\t%s\t%s\t%s", f[0], f[2],
			 na ? cut : "(none)", f[4], f[5], f[6], f[7]);
		/* wireguard-go walks a Go map: each get lists the peers in another order. */
		{
			char key[WG_KEY_B64_LEN + 1];
			unsigned j;

			for (j = 0; j < s->n; j++) {
				key_to_base64(s->peers[j].pubkey, key);
				if (!strcmp(key, f[0]))
					break;
			}
			if (j == s->n)
				fail_msg("case %s: peer %s not in our parse", cur_case, f[0]);
			peer_to_wg(&s->peers[j], ours, sizeof(ours));
			EXPECT_STREQ(ours, want);
			EXPECT_EQ(s->peers[j].n_allowed, na);
		}
		n++;
	}
	EXPECT_EQ(s->n, n);
	free(s);
	free(t);
	free(w);
}

static void test_parse_get_many(void **state)
{
	size_t len;
	char *t = load("wggo_many.txt", &len);
	struct seen *s = calloc(1, sizeof(*s));
	unsigned big = 0, v6 = 0, ka = 0;

	(void)state;
	check_against_wg("wggo_many.txt", "wggo_many.wg");
	assert_non_null(s);
	cur_case = "wggo_many.txt: what the capture holds";
	EXPECT_EQ(uapi_parse_get(t, len, NULL, NULL, collect, s), 0);
	EXPECT_EQ(s->n, 41);
	for (unsigned i = 0; i < s->n; i++) {
		big += s->peers[i].n_allowed > PROV_MAX_ALLOWED;
		v6 += s->peers[i].endpoint.ss_family == AF_INET6;
		ka += s->peers[i].keepalive_s != 0;
	}
	EXPECT_EQ(big, 1);
	EXPECT(v6 > 0 && ka > 0);

	cur_case = "wggo_many.txt: a callback's value stops the dump";
	memset(s, 0, sizeof(*s));
	s->stop_after = 3;
	EXPECT_EQ(uapi_parse_get(t, len, NULL, NULL, collect, s), 7);
	EXPECT_EQ(s->n, 3);

	/* Every truncation of a real reply is refused, wherever it falls. */
	for (size_t cut = 0; cut < len; cut += cut < 600 ? 1 : 37) {
		memset(s, 0, sizeof(*s));
		cur_case = "wggo_many.txt truncated";
		if (uapi_parse_get(t, cut, NULL, NULL, collect, s) != -EBADMSG)
			fail_msg("truncated at %zu of %zu: not -EBADMSG", cut, len);
	}
	free(s);
	free(t);
}

static void test_parse_get_handshake(void **state)
{
	size_t len;
	char *t = load("wggo_handshake.txt", &len);
	struct seen s = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&s.peers[0].endpoint;

	(void)state;
	check_against_wg("wggo_handshake.txt", "wggo_handshake.wg");
	cur_case = "wggo_handshake.txt";
	EXPECT_EQ(uapi_parse_get(t, len, NULL, NULL, collect, &s), 0);
	EXPECT_EQ(s.n, 1);
	EXPECT_EQ(s.peers[0].last_handshake_s, 1795324237); /* epoch, as sent */
	EXPECT_EQ(s.peers[0].rx_bytes, 404);
	EXPECT_EQ(s.peers[0].tx_bytes, 348);
	EXPECT_EQ(sin->sin_family, AF_INET);
	EXPECT_EQ(ntohs(sin->sin_port), 51821);
	EXPECT_EQ(s.peers[0].n_allowed, 2);
	free(t);
}

static void test_parse_get_small(void **state)
{
	static const struct {
		const char *file;
		unsigned peers;
		bool has_pub;
		uint16_t port;
		const char *endpoint; /* of the first peer */
		uint16_t keepalive;
	} cases[] = {
		{ "wggo_fresh.txt", 0, false, 47705, NULL, 0 },
		{ "wggo_empty.txt", 0, true, 51820, NULL, 0 },
		{ "wggo_endpoint6.txt", 1, true, 51820, "[fd09:1::1]:51821", 0 },
		{ "wggo_client6.txt", 1, true, 51821, "[fd09:1::2]:51820", 25 },
	};
	char ep[ADDR_STR_LEN];

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *t = load(cases[i].file, &len);
		struct seen s = { 0 };
		struct wgdev_info info;
		uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];

		cur_case = cases[i].file;
		memset(priv, 0xee, sizeof(priv));
		EXPECT_EQ(uapi_parse_get(t, len, &info, priv, collect, &s), 0);
		EXPECT_EQ(s.n, cases[i].peers);
		EXPECT_EQ(info.has_public_key, cases[i].has_pub);
		EXPECT_EQ(info.listen_port, cases[i].port);
		if (cases[i].has_pub) {
			EXPECT_EQ(crypto_scalarmult_base(pub, priv), 0);
			EXPECT(memcmp(pub, info.public_key, WG_KEY_LEN) == 0);
		}
		if (cases[i].endpoint) {
			EXPECT_STREQ(addr_format((struct sockaddr *)&s.peers[0].endpoint, ep),
				     cases[i].endpoint);
			EXPECT_EQ(s.peers[0].keepalive_s, cases[i].keepalive);
			EXPECT(s.peers[0].last_handshake_s > 1700000000);
		}
		/* The same reply without the caller wanting the key, or any peers. */
		EXPECT_EQ(uapi_parse_get(t, len, &info, NULL, NULL, NULL), 0);
		EXPECT_EQ(uapi_parse_get(t, len, NULL, NULL, NULL, NULL), 0);
		free(t);
	}
}

/* --- boringtun's dialect (written from boringtun/src/device/api.rs, api_get) ---------- */

#define BT_OWN "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
#define BT_P1 "e59f8598137a580f532139dd18e72e5e17bee74dfc6fef72739f7c6918796b78"
#define BT_P2 "b0b79a23f456214f6d7beccbc787b99868bc619d679e308fd52be6727e5ded32"

static const char bt_reply[] =
	"own_public_key=" BT_OWN "\n"
	"listen_port=51820\n"
	"fwmark=0\n"
	"public_key=" BT_P1 "\n"
	"preshared_key=" HEX_P "\n"
	"persistent_keepalive_interval=25\n"
	"endpoint=192.0.2.1:51820\n"
	"allowed_ip=10.0.0.2/32\n"
	"allowed_ip=fd00::2/128\n"
	"last_handshake_time_sec=30\n"
	"last_handshake_time_nsec=5000\n"
	"rx_bytes=100\n"
	"tx_bytes=200\n"
	"public_key=" BT_P2 "\n"
	"rx_bytes=0\n"
	"tx_bytes=0\n"
	"errno=0\n\n";

static void test_parse_get_boringtun(void **state)
{
	struct seen s = { 0 };
	struct wgdev_info info;
	uint8_t priv[WG_KEY_LEN], own[WG_KEY_LEN];
	size_t bin_len;
	int64_t now = time(NULL);

	(void)state;
	cur_case = "boringtun get";
	memset(priv, 0xee, sizeof(priv));
	EXPECT_EQ(uapi_parse_get(bt_reply, sizeof(bt_reply) - 1, &info, priv, collect, &s), 0);
	EXPECT_EQ(sodium_hex2bin(own, sizeof(own), BT_OWN, 64, NULL, &bin_len, NULL), 0);
	EXPECT(info.has_public_key);
	EXPECT(memcmp(info.public_key, own, WG_KEY_LEN) == 0);
	EXPECT_EQ(info.listen_port, 51820);
	EXPECT_EQ(priv[0], 0xee); /* no private key in boringtun's reply: untouched */
	EXPECT_EQ(s.n, 2);
	/* An age of 30 s became unix time. */
	EXPECT(s.peers[0].last_handshake_s >= now - 31 && s.peers[0].last_handshake_s <= now - 29);
	EXPECT_EQ(s.peers[0].keepalive_s, 25);
	EXPECT_EQ(s.peers[0].rx_bytes, 100);
	EXPECT_EQ(s.peers[0].tx_bytes, 200);
	EXPECT_EQ(s.peers[0].n_allowed, 2);
	EXPECT_EQ(s.peers[1].last_handshake_s, 0); /* no handshake lines: never */
	EXPECT_EQ(s.peers[1].endpoint.ss_family, 0);

	cur_case = "boringtun get failing with a positive errno";
	{
		static const char r[] = "own_public_key=" BT_OWN "\nerrno=5\n\n";

		EXPECT_EQ(uapi_parse_get(r, sizeof(r) - 1, &info, NULL, NULL, NULL), -EIO);
	}
	cur_case = "wireguard-go get failing with a negative errno";
	{
		static const char r[] = "listen_port=1\nerrno=-5\n\n";

		EXPECT_EQ(uapi_parse_get(r, sizeof(r) - 1, &info, NULL, NULL, NULL), -EIO);
	}
	cur_case = "a handshake just now (age 0) is not 'never'";
	{
		static const char r[] = "own_public_key=" BT_OWN "\npublic_key=" BT_P1
					"\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"
					"errno=0\n\n";

		memset(&s, 0, sizeof(s));
		EXPECT_EQ(uapi_parse_get(r, sizeof(r) - 1, NULL, NULL, collect, &s), 0);
		EXPECT(s.peers[0].last_handshake_s >= now);
	}
}

/* --- malformed and hostile replies -------------------------------------------------- */

#define PK "public_key=" BT_P1 "\n"
#define BT_P1_UPPER "E59F8598137A580F532139DD18E72E5E17BEE74DFC6FEF72739F7C6918796B78"
#define BT_P1_63 "e59f8598137a580f532139dd18e72e5e17bee74dfc6fef72739f7c6918796b7"
#define BT_P1_61 "9f8598137a580f532139dd18e72e5e17bee74dfc6fef72739f7c6918796b7"
#define END "errno=0\n\n"

static const struct {
	const char *name;
	const char *in;
	int want;
} get_cases[] = {
	{ "minimal", END, 0 },
	{ "unknown keys ignored",
	  "future=1\nprotocol_version=2\n" PK "x_y=z=w\nprotocol_version=1\n" END, 0 },
	{ "link-local endpoint with a numeric zone", PK "endpoint=[fe80::1%3]:51820\n" END, 0 },
	{ "link-local endpoint with a named zone", PK "endpoint=[fe80::1%eth0]:51820\n" END, 0 },
	{ "upper-case hex", "public_key=" BT_P1_UPPER "\n" END, 0 },
	{ "missing errno", PK, -EBADMSG },
	{ "errno without the empty line", PK "errno=0\n", -EBADMSG },
	{ "errno line cut", PK "errno=0", -EBADMSG },
	{ "empty", "", -EBADMSG },
	{ "bytes after the end", PK END "x", -EBADMSG },
	{ "a second reply after the end", END END, -EBADMSG },
	{ "something instead of the empty line", PK "errno=0\nlisten_port=1\n\n", -EBADMSG },
	{ "empty line mid-reply", PK "\n" END, -EBADMSG },
	{ "line without '='", PK "endpoint\n" END, -EBADMSG },
	{ "empty key", PK "=1\n" END, -EBADMSG },
	{ "NUL in a line", PK "x=a\0b\n" END, -EBADMSG },
	{ "second peer's key: 65 digits", PK "public_key=" HEX_A "0\n" END, -EBADMSG },
	{ "key: 63 digits", "public_key=" BT_P1_63 "\n" END, -EBADMSG },
	{ "key: 65 digits", "public_key=" BT_P1 "0\n" END, -EBADMSG },
	{ "key: not hex", "public_key=g" BT_P1_63 "\n" END, -EBADMSG },
	{ "key: a separator", "public_key=e5:" BT_P1_61 "\n" END, -EBADMSG },
	{ "private key: bad hex", "private_key=zz\n" END, -EBADMSG },
	{ "preshared key: bad hex", PK "preshared_key=00\n" END, -EBADMSG },
	{ "peer key before any peer", "allowed_ip=10.0.0.1/32\n" END, -EBADMSG },
	{ "endpoint before any peer", "endpoint=192.0.2.1:1\n" END, -EBADMSG },
	{ "device key inside a peer", PK "private_key=" HEX_A "\n" END, -EBADMSG },
	{ "listen_port inside a peer", PK "listen_port=1\n" END, -EBADMSG },
	{ "listen_port 65536", "listen_port=65536\n" END, -EBADMSG },
	{ "listen_port negative", "listen_port=-1\n" END, -EBADMSG },
	{ "fwmark 2^32", "fwmark=4294967296\n" END, -EBADMSG },
	{ "keepalive 65536", PK "persistent_keepalive_interval=65536\n" END, -EBADMSG },
	{ "nsec 1e9", PK "last_handshake_time_nsec=1000000000\n" END, -EBADMSG },
	{ "handshake: sign", PK "last_handshake_time_sec=-1\n" END, -EBADMSG },
	{ "tx_bytes 2^64", PK "tx_bytes=18446744073709551616\n" END, -EBADMSG },
	{ "rx_bytes: trailing space", PK "rx_bytes=1 \n" END, -EBADMSG },
	{ "rx_bytes: empty", PK "rx_bytes=\n" END, -EBADMSG },
	{ "allowed_ip without prefix", PK "allowed_ip=10.0.0.1\n" END, -EBADMSG },
	{ "allowed_ip with host bits", PK "allowed_ip=10.0.0.1/24\n" END, -EBADMSG },
	{ "allowed_ip /33", PK "allowed_ip=10.0.0.0/33\n" END, -EBADMSG },
	{ "allowed_ip garbage", PK "allowed_ip=hello/8\n" END, -EBADMSG },
	{ "endpoint without port", PK "endpoint=192.0.2.1\n" END, -EBADMSG },
	{ "endpoint port 0", PK "endpoint=192.0.2.1:0\n" END, -EBADMSG },
	{ "endpoint port 65536", PK "endpoint=192.0.2.1:65536\n" END, -EBADMSG },
	{ "endpoint v6 without brackets", PK "endpoint=fd00::1:51820\n" END, -EBADMSG },
	{ "endpoint v6 unclosed", PK "endpoint=[fd00::1:51820\n" END, -EBADMSG },
	{ "endpoint v6 no port", PK "endpoint=[fd00::1]\n" END, -EBADMSG },
	{ "endpoint v4 in brackets", PK "endpoint=[192.0.2.1]:1\n" END, -EBADMSG },
	{ "endpoint name", PK "endpoint=example.com:1\n" END, -EBADMSG },
	{ "endpoint zone too big", PK "endpoint=[fe80::1%4294967296]:1\n" END, -EBADMSG },
	{ "errno garbage", PK "errno=abc\n\n", -EBADMSG },
	{ "errno huge", PK "errno=-100000\n\n", -EBADMSG },
};

static void test_parse_get_malformed(void **state)
{
	struct seen s;
	char *big;
	size_t n;

	(void)state;
	for (unsigned i = 0; i < sizeof(get_cases) / sizeof(get_cases[0]); i++) {
		/* Lengths via sizeof would stop at an embedded NUL with strlen. */
		size_t len = strlen(get_cases[i].in);

		if (strstr(get_cases[i].name, "NUL"))
			len = strlen(PK) + 6 + strlen(END);
		cur_case = get_cases[i].name;
		memset(&s, 0, sizeof(s));
		EXPECT_EQ(uapi_parse_get(get_cases[i].in, len, NULL, NULL, collect, &s),
			  get_cases[i].want);
	}

	/* A line longer than any legitimate one, even for an unknown key, is refused. */
	cur_case = "overlong line";
	big = malloc(4096);
	assert_non_null(big);
	n = (size_t)snprintf(big, 4096, "%s", PK "x=");
	memset(big + n, 'a', 300);
	n += 300;
	n += (size_t)snprintf(big + n, 4096 - n, "\n" END);
	EXPECT_EQ(uapi_parse_get(big, n, NULL, NULL, collect, &s), -EBADMSG);
	/* ... and a line of 255 bytes is fine. */
	cur_case = "line of 255 bytes";
	n = (size_t)snprintf(big, 4096, "%s", PK "x=");
	memset(big + n, 'a', 253);
	n += 253;
	n += (size_t)snprintf(big + n, 4096 - n, "\n" END);
	EXPECT_EQ(uapi_parse_get(big, n, NULL, NULL, collect, &s), 0);
	free(big);

	cur_case = "many allowed IPs: first 8 kept, all counted";
	{
		char r[4096];
		struct cidr c;

		n = (size_t)snprintf(r, sizeof(r), PK);
		for (unsigned i = 0; i < 100; i++)
			n += (size_t)snprintf(r + n, sizeof(r) - n, "allowed_ip=10.%u.0.0/16\n", i);
		n += (size_t)snprintf(r + n, sizeof(r) - n, END);
		memset(&s, 0, sizeof(s));
		EXPECT_EQ(uapi_parse_get(r, n, NULL, NULL, collect, &s), 0);
		EXPECT_EQ(s.peers[0].n_allowed, 100);
		set_cidr(&c, "10.7.0.0/16");
		EXPECT(memcmp(&s.peers[0].allowed[7], &c, sizeof(c)) == 0);
	}
}

/* --- the socket: a fake UAPI daemon -------------------------------------------------- */

struct fake {
	int lfd;
	char dir[64];
	const char *reply;  /* sent a few bytes at a time after the request's empty line */
	size_t reply_len;
	size_t chunk;
	int conns;          /* connections to serve */
	char req[8192];     /* the last request received */
	size_t req_len;
};

static void *fake_serve(void *arg)
{
	struct fake *f = arg;

	for (int c = 0; c < f->conns; c++) {
		int fd = accept(f->lfd, NULL, NULL);
		ssize_t n;

		if (fd < 0)
			break;
		f->req_len = 0;
		while (f->req_len < sizeof(f->req) - 1 &&
		       (n = read(fd, f->req + f->req_len, sizeof(f->req) - 1 - f->req_len)) > 0) {
			f->req_len += (size_t)n;
			if (f->req_len >= 2 && f->req[f->req_len - 1] == '\n' &&
			    f->req[f->req_len - 2] == '\n')
				break;
		}
		f->req[f->req_len] = '\0';
		for (size_t off = 0; off < f->reply_len; off += f->chunk) {
			size_t k = f->reply_len - off < f->chunk ? f->reply_len - off : f->chunk;

			if (send(fd, f->reply + off, k, MSG_NOSIGNAL) != (ssize_t)k)
				break;
		}
		close(fd);
	}
	return NULL;
}

/* Serve conns connections with reply, in chunks of chunk bytes; returns the thread. */
static pthread_t fake_start(struct fake *f, const char *reply, size_t len, size_t chunk, int conns)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	pthread_t th;

	f->reply = reply;
	f->reply_len = len;
	f->chunk = chunk;
	f->conns = conns;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/wgt0.sock", f->dir);
	unlink(sun.sun_path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(pthread_create(&th, NULL, fake_serve, f), 0);
	return th;
}

static void fake_stop(struct fake *f, pthread_t th)
{
	pthread_join(th, NULL);
	close(f->lfd);
}

static void test_socket(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct seen *s = calloc(1, sizeof(*s)), *ref = calloc(1, sizeof(*ref));
	struct wgdev_peer p;
	struct wgdev_info info;
	uint8_t keys[2][WG_KEY_LEN], priv[WG_KEY_LEN];
	char path[128], want[1024];
	void *impl;
	pthread_t th;
	size_t len;
	char *many = load("wggo_many.txt", &len);
	ssize_t wlen;

	(void)state;
	assert_non_null(f);
	assert_non_null(s);
	assert_non_null(ref);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_prov_uapi.XXXXXX");
	assert_non_null(mkdtemp(f->dir));

	cur_case = "uapi_open: no socket";
	EXPECT_EQ(uapi_open(&impl, "wgt0", f->dir), -ENODEV);
	cur_case = "uapi_open: a regular file";
	snprintf(path, sizeof(path), "%s/wgt0.sock", f->dir);
	fclose(fopen(path, "w"));
	EXPECT_EQ(uapi_open(&impl, "wgt0", f->dir), -ENODEV);
	cur_case = "uapi_open: a name with a slash";
	EXPECT_EQ(uapi_open(&impl, "../x", f->dir), -EINVAL);

	cur_case = "dump over the socket, 5 bytes at a time";
	th = fake_start(f, many, len, 5, 1);
	EXPECT_EQ(uapi_open(&impl, "wgt0", f->dir), 0);
	EXPECT_EQ(uapi_ops.dump(impl, collect, s), 0);
	fake_stop(f, th);
	EXPECT_EQ(f->req_len, 7);
	EXPECT(memcmp(f->req, "get=1\n\n", 7) == 0);
	EXPECT_EQ(uapi_parse_get(many, len, NULL, NULL, collect, ref), 0);
	EXPECT_EQ(s->n, ref->n);
	EXPECT(memcmp(s->peers, ref->peers, sizeof(ref->peers)) == 0);

	cur_case = "get_info over the socket, one byte at a time";
	th = fake_start(f, many, len, 1, 1);
	EXPECT_EQ(uapi_ops.get_info(impl, &info, priv), 0);
	fake_stop(f, th);
	EXPECT(info.has_public_key);
	EXPECT_EQ(info.listen_port, 51820);

	cur_case = "get_info on boringtun: -ENOKEY, public key known";
	th = fake_start(f, bt_reply, sizeof(bt_reply) - 1, 64, 1);
	EXPECT_EQ(uapi_ops.get_info(impl, &info, priv), -ENOKEY);
	fake_stop(f, th);
	EXPECT(info.has_public_key);

	cur_case = "dump: the daemon hangs up mid-reply";
	th = fake_start(f, many, len / 2, 4096, 1);
	memset(s, 0, sizeof(*s));
	EXPECT_EQ(uapi_ops.dump(impl, collect, s), -EBADMSG);
	fake_stop(f, th);

	cur_case = "dump: a callback stops it early";
	th = fake_start(f, many, len, 4096, 1);
	memset(s, 0, sizeof(*s));
	s->stop_after = 2;
	EXPECT_EQ(uapi_ops.dump(impl, collect, s), 7);
	fake_stop(f, th);
	EXPECT_EQ(s->n, 2);

	cur_case = "install sends exactly the formatted request";
	fill_peer(&p, 2);
	wlen = uapi_format_set_peer(want, sizeof(want), &p, false);
	EXPECT(wlen > 0);
	th = fake_start(f, "errno=0\n\n", 9, 1, 1);
	EXPECT_EQ(uapi_ops.install(impl, &p), 0);
	fake_stop(f, th);
	EXPECT_EQ(f->req_len, wlen);
	EXPECT(memcmp(f->req, want, (size_t)wlen) == 0);

	cur_case = "install: wireguard-go says EINVAL";
	th = fake_start(f, "errno=-22\n\n", 11, 3, 1);
	EXPECT_EQ(uapi_ops.install(impl, &p), -EINVAL);
	fake_stop(f, th);

	cur_case = "install: a reply that never ends is cut off";
	{
		static char endless[512];

		memset(endless, 'e', sizeof(endless));
		th = fake_start(f, endless, sizeof(endless), 512, 1);
		EXPECT_EQ(uapi_ops.install(impl, &p), -EBADMSG);
		fake_stop(f, th);
	}

	cur_case = "install: the daemon hangs up without a reply";
	th = fake_start(f, "", 0, 1, 1);
	EXPECT_EQ(uapi_ops.install(impl, &p), -EBADMSG);
	fake_stop(f, th);

	cur_case = "update: boringtun refuses update_only";
	th = fake_start(f, "errno=22\n\n", 10, 64, 1);
	EXPECT_EQ(uapi_ops.update(impl, &p), -EOPNOTSUPP);
	fake_stop(f, th);
	EXPECT(strstr(f->req, "update_only=true\n") != NULL);
	EXPECT(strstr(f->req, "allowed_ip") == NULL);

	cur_case = "update: wireguard-go's EINVAL stays EINVAL";
	th = fake_start(f, "errno=-22\n\n", 11, 64, 1);
	EXPECT_EQ(uapi_ops.update(impl, &p), -EINVAL);
	fake_stop(f, th);

	cur_case = "remove: one request for two keys";
	key_seq(keys[0], 0x00);
	key_seq(keys[1], 0xa0);
	th = fake_start(f, "errno=0\n\n", 9, 64, 1);
	EXPECT_EQ(uapi_ops.remove(impl, (const uint8_t(*)[WG_KEY_LEN])keys, 2), 0);
	fake_stop(f, th);
	EXPECT_STREQ(f->req, "set=1\npublic_key=" HEX_A "\nremove=true\npublic_key=" HEX_P
			     "\nremove=true\n\n");

	cur_case = "remove: nothing to do, no connection";
	EXPECT_EQ(uapi_ops.remove(impl, (const uint8_t(*)[WG_KEY_LEN])keys, 0), 0);

	cur_case = "the daemon is gone (socket left behind)";
	EXPECT_EQ(uapi_ops.install(impl, &p), -ECONNREFUSED);

	uapi_ops.close(impl);
	unlink(path);
	rmdir(f->dir);
	free(many);
	free(ref);
	free(s);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_set_peer),
		cmocka_unit_test(test_format_set_peer_scope_and_full),
		cmocka_unit_test(test_format_set_peer_invalid),
		cmocka_unit_test(test_format_remove),
		cmocka_unit_test(test_parse_errno),
		cmocka_unit_test(test_parse_get_many),
		cmocka_unit_test(test_parse_get_handshake),
		cmocka_unit_test(test_parse_get_small),
		cmocka_unit_test(test_parse_get_boringtun),
		cmocka_unit_test(test_parse_get_malformed),
		cmocka_unit_test(test_socket),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
