/* SPDX-License-Identifier: MIT */
/* wgdev-tool: drives the provisioner's device backends (provisioner/wgdev.c) from the command
 * line, for tests that check the result with `wg show` as an independent witness — in a
 * QEMU guest against kernel WireGuard, or in a namespace against wireguard-go.
 *
 *   wgdev-tool [-b auto|netlink|uapi] [-d UAPI_DIR] IFNAME COMMAND [ARGS]
 *     info                               backend, public key, listen port, private key?
 *     install KEY [-p PSK] [-e ENDPOINT] [-k KEEPALIVE] [CIDR...]
 *     update KEY [-e ENDPOINT] [-k KEEPALIVE]
 *     remove KEY...
 *     dump                               "KEY HANDSHAKE RX TX ENDPOINT KEEPALIVE CIDR,…" per peer
 *     keys N                             the N deterministic test keys, one per line
 *     bulk-install N [FIRST_IPV4]        install the N test keys, one /32 each (default 10.100.0.0)
 *     bulk-remove N [BATCH]              remove them, BATCH per message (default 1)
 * Exit status 0 on success; errors name the operation and the errno. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "prov.h"

static void die(const char *what, int err)
{
	fprintf(stderr, "wgdev-tool: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void usage(void)
{
	fputs("usage: wgdev-tool [-b auto|netlink|uapi] [-d UAPI_DIR] IFNAME COMMAND [ARGS]\n"
	      "commands: info | install KEY [-p PSK] [-e ENDPOINT] [-k KEEPALIVE] [CIDR...] |\n"
	      "          update KEY [-e ENDPOINT] [-k KEEPALIVE] | remove KEY... | dump |\n"
	      "          keys N | bulk-install N [FIRST_IPV4] | bulk-remove N [BATCH]\n",
	      stderr);
	exit(2);
}

/* Test key i: the public key of a private key derived from i, so `wg` accepts it. */
static void test_key(unsigned i, uint8_t pub[static WG_KEY_LEN])
{
	uint8_t priv[WG_KEY_LEN];

	crypto_generichash(priv, sizeof(priv), (const uint8_t *)&i, sizeof(i), NULL, 0);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	if (crypto_scalarmult_base(pub, priv) != 0)
		die("crypto_scalarmult_base", EINVAL);
}

static void parse_key(const char *s, uint8_t key[static WG_KEY_LEN])
{
	if (key_from_base64(s, key) < 0) {
		fprintf(stderr, "wgdev-tool: '%s' is not a base64 key\n", s);
		exit(2);
	}
}

/* Options after KEY for install/update; the rest are CIDRs. */
static void parse_peer(int argc, char **argv, struct wgdev_peer *p, bool allow_cidrs)
{
	socklen_t len;
	int c;

	memset(p, 0, sizeof(*p));
	p->keepalive_s = -1;
	if (argc < 1)
		usage();
	parse_key(argv[0], p->pubkey);
	optind = 1;
	while ((c = getopt(argc, argv, "p:e:k:")) != -1) {
		switch (c) {
		case 'p':
			parse_key(optarg, p->psk);
			p->has_psk = true;
			break;
		case 'e':
			if (addr_parse(optarg, &p->endpoint, &len) < 0)
				die("bad endpoint", EINVAL);
			break;
		case 'k':
			p->keepalive_s = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	for (; optind < argc; optind++) {
		if (!allow_cidrs || p->n_allowed == PROV_MAX_ALLOWED)
			usage();
		if (cidr_parse(argv[optind], &p->allowed[p->n_allowed++]) < 0)
			die(argv[optind], EINVAL);
	}
}

static int print_peer(void *arg, const struct wgdev_peer_info *pi)
{
	char key[WG_KEY_B64_LEN + 1], ep[ADDR_STR_LEN], cidr[CIDR_STR];
	unsigned n = pi->n_allowed < PROV_MAX_ALLOWED ? pi->n_allowed : PROV_MAX_ALLOWED;

	(void)arg;
	key_to_base64(pi->pubkey, key);
	printf("%s %lld %llu %llu %s %u ", key, (long long)pi->last_handshake_s,
	       (unsigned long long)pi->rx_bytes, (unsigned long long)pi->tx_bytes,
	       pi->endpoint.ss_family ? addr_format((const struct sockaddr *)&pi->endpoint, ep)
				      : "(none)",
	       pi->keepalive_s);
	for (unsigned i = 0; i < n; i++)
		printf("%s%s", i ? "," : "", cidr_format(&pi->allowed[i], cidr));
	printf("%s\n", n ? (pi->n_allowed > n ? ",…" : "") : "(none)");
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	enum wgdev_kind kind = WGDEV_AUTO;
	const char *dir = NULL, *cmd;
	struct wgdev *dev;
	struct wgdev_peer p;
	int c, ret;

	if (sodium_init() < 0)
		die("sodium_init", EIO);
	while ((c = getopt(argc, argv, "+b:d:")) != -1) {
		switch (c) {
		case 'b':
			kind = !strcmp(optarg, "netlink") ? WGDEV_NETLINK
			       : !strcmp(optarg, "uapi")  ? WGDEV_UAPI
			       : !strcmp(optarg, "auto")  ? WGDEV_AUTO
							  : (usage(), WGDEV_AUTO);
			break;
		case 'd':
			dir = optarg;
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2)
		usage();
	cmd = argv[optind + 1];
	if (!strcmp(cmd, "keys")) {
		unsigned n = argc - optind > 2 ? (unsigned)atoi(argv[optind + 2]) : 0;
		uint8_t key[WG_KEY_LEN];
		char b64[WG_KEY_B64_LEN + 1];

		for (unsigned i = 0; i < n; i++) {
			test_key(i, key);
			key_to_base64(key, b64);
			puts(b64);
		}
		return 0;
	}
	ret = wgdev_open(&dev, argv[optind], kind, dir);
	if (ret < 0)
		die(argv[optind], ret);
	argc -= optind + 2;
	argv += optind + 2;

	if (!strcmp(cmd, "info")) {
		struct wgdev_info info;
		uint8_t priv[WG_KEY_LEN];
		char b64[WG_KEY_B64_LEN + 1] = "(none)";

		ret = wgdev_get_info(dev, &info, priv);
		if (ret < 0 && ret != -ENOKEY)
			die("get_info", ret);
		if (info.has_public_key)
			key_to_base64(info.public_key, b64);
		printf("backend %s\npublic_key %s\nlisten_port %u\nprivate_key %s\n", dev->ops->name,
		       b64, info.listen_port, ret == 0 ? "readable" : "unreadable");
		sodium_memzero(priv, sizeof(priv));
	} else if (!strcmp(cmd, "install") || !strcmp(cmd, "update")) {
		bool install = !strcmp(cmd, "install");

		parse_peer(argc, argv, &p, install);
		ret = install ? wgdev_install(dev, &p) : wgdev_update(dev, &p);
		if (ret < 0)
			die(cmd, ret);
	} else if (!strcmp(cmd, "remove")) {
		uint8_t(*keys)[WG_KEY_LEN] = calloc((size_t)argc + 1, WG_KEY_LEN);

		if (!argc || !keys)
			usage();
		for (int i = 0; i < argc; i++)
			parse_key(argv[i], keys[i]);
		ret = wgdev_remove(dev, (const uint8_t(*)[WG_KEY_LEN])keys, (unsigned)argc);
		free(keys);
		if (ret < 0)
			die("remove", ret);
	} else if (!strcmp(cmd, "dump")) {
		ret = wgdev_dump(dev, print_peer, NULL);
		if (ret < 0)
			die("dump", ret);
	} else if (!strcmp(cmd, "bulk-install")) {
		unsigned n = argc > 0 ? (unsigned)atoi(argv[0]) : 0;
		struct in_addr first = { .s_addr = htonl(0x0a640000) }; /* 10.100.0.0 */
		double t0;

		if (argc > 1 && inet_pton(AF_INET, argv[1], &first) != 1)
			usage();
		t0 = now_s();
		for (unsigned i = 0; i < n; i++) {
			uint32_t ip = htonl(ntohl(first.s_addr) + i);

			memset(&p, 0, sizeof(p));
			p.keepalive_s = -1;
			test_key(i, p.pubkey);
			p.n_allowed = 1;
			p.allowed[0].family = AF_INET;
			p.allowed[0].bits = 32;
			memcpy(p.allowed[0].addr, &ip, 4);
			ret = wgdev_install(dev, &p);
			if (ret < 0)
				die("bulk-install", ret);
		}
		printf("installed %u peers in %.3f s\n", n, now_s() - t0);
	} else if (!strcmp(cmd, "bulk-remove")) {
		unsigned n = argc > 0 ? (unsigned)atoi(argv[0]) : 0;
		unsigned batch = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
		uint8_t keys[64][WG_KEY_LEN];
		double t0 = now_s();

		if (batch < 1 || batch > 64)
			usage();
		for (unsigned i = 0; i < n; i += batch) {
			unsigned k = n - i < batch ? n - i : batch;

			for (unsigned j = 0; j < k; j++)
				test_key(i + j, keys[j]);
			ret = wgdev_remove(dev, (const uint8_t(*)[WG_KEY_LEN])keys, k);
			if (ret < 0)
				die("bulk-remove", ret);
		}
		printf("removed %u peers in %.3f s\n", n, now_s() - t0);
	} else {
		usage();
	}
	wgdev_close(dev);
	return 0;
}
