/* SPDX-License-Identifier: MIT */
/* What happens to one peer across the store and the device, in the order that keeps them
 * safe: a peer is installed only once it is durable in the store; it leaves the device
 * before it leaves the store, so its address is never handed out while the kernel could
 * still route it to the old key (the kernel silently moves an allowed IP to a new peer). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "log.h"
#include "prov.h"

void peer_to_device(const struct store_peer *sp, struct wgdev_peer *dp)
{
	memset(dp, 0, sizeof(*dp));
	memcpy(dp->pubkey, sp->pubkey, WG_KEY_LEN);
	if (sp->has_psk) {
		dp->has_psk = true;
		memcpy(dp->psk, sp->psk, WG_KEY_LEN);
	}
	dp->keepalive_s = sp->keepalive_s ? sp->keepalive_s : -1;
	if (sp->has_ip4) {
		uint32_t ip = htonl(sp->ip4);
		struct cidr *c = &dp->allowed[dp->n_allowed++];

		c->family = AF_INET;
		c->bits = 32;
		memcpy(c->addr, &ip, 4);
	}
	if (sp->has_ip6) {
		struct cidr *c = &dp->allowed[dp->n_allowed++];

		c->family = AF_INET6;
		c->bits = 128;
		memcpy(c->addr, sp->ip6, 16);
	}
	for (unsigned i = 0; i < sp->n_routes && dp->n_allowed < PROV_MAX_ALLOWED; i++)
		dp->allowed[dp->n_allowed++] = sp->routes[i];
}

int peer_install(const struct store_peer *sp)
{
	struct wgdev_peer dp;

	peer_to_device(sp, &dp);
	return peer_install_as(sp, &dp);
}

int peer_install_device(const struct wgdev_peer *dp)
{
	double t0 = prov_now_s();
	int ret;

	ret = wgdev_install(prov.dev, dp);
	if (ret < 0) {
		prov.st.install_errors++;
		return ret;
	}
	hist_observe(&prov.st.install_latency, prov_now_s() - t0);
	prov.st.installs++;
	return 0;
}

int peer_install_as(const struct store_peer *sp, const struct wgdev_peer *dp)
{
	int ret = peer_install_device(dp);

	if (ret < 0)
		return ret;
	ret = store_set_installed(prov.store, sp->pubkey, prov_wall_s());
	prov.writes_since_checkpoint = true;
	return ret;
}

int peer_delete(const uint8_t key[static WG_KEY_LEN], bool *store_failed)
{
	struct store_peer sp;
	bool dummy;
	int ret;

	if (!store_failed)
		store_failed = &dummy;
	*store_failed = true;
	ret = store_get(prov.store, key, &sp);
	if (ret < 0)
		return ret;
	/* Always ask the device: the store's installed mark may lag behind (crash, GC). */
	*store_failed = false;
	ret = wgdev_remove(prov.dev, (const uint8_t(*)[WG_KEY_LEN])key, 1);
	if (ret < 0)
		return ret;
	*store_failed = true;
	if (sp.installed_at)
		prov.st.removals++;
	ret = store_delete(prov.store, key, prov_wall_s());
	prov.writes_since_checkpoint = true;
	if (ret == 0)
		prov.st.deletes++;
	return ret;
}

/* Drop a text that may hold a private key: every byte of it is zeroed first. */
static void drop(char **buf, size_t cap)
{
	sodium_memzero(*buf, cap);
	free(*buf);
	*buf = NULL;
}

/* Append to a growing text; on allocation failure the text becomes NULL for good. It may
 * hold a private key, so it grows by copy and wipe, never realloc (which frees the old block
 * as it is). */
static void put(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!*buf)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			drop(buf, *cap);
			return;
		}
		if ((size_t)n < *cap - *len)
			break;
		size_t ncap = *cap * 2 + (size_t)n;
		char *nb = malloc(ncap);

		if (!nb) {
			drop(buf, *cap);
			return;
		}
		memcpy(nb, *buf, *len + 1);
		drop(buf, *cap);
		*buf = nb;
		*cap = ncap;
	}
	*len += (size_t)n;
}

char *peer_config(const struct store_peer *sp, const uint8_t *private_key)
{
	char b64[WG_KEY_B64_LEN + 1], cidr[CIDR_STR];
	size_t len = 0, cap = 1024;
	char *buf = malloc(cap);
	struct wgdev_peer dp;
	const char *sep = "";
	bool full = false; /* a default route among the client's AllowedIPs */

	if (!buf)
		return NULL;
	buf[0] = '\0';
	peer_to_device(sp, &dp);
	put(&buf, &len, &cap, "[Interface]\n");
	if (private_key) {
		key_to_base64(private_key, b64);
		put(&buf, &len, &cap, "PrivateKey = %s\n", b64);
		sodium_memzero(b64, sizeof(b64));
	} else {
		put(&buf, &len, &cap, "PrivateKey = <the private key that goes with %s>\n",
		    (key_to_base64(sp->pubkey, b64), b64));
	}
	put(&buf, &len, &cap, "Address = ");
	for (unsigned i = 0; i < dp.n_allowed && i < (unsigned)sp->has_ip4 + sp->has_ip6; i++) {
		put(&buf, &len, &cap, "%s%s", sep, cidr_format(&dp.allowed[i], cidr));
		sep = ", ";
	}
	for (unsigned i = 0; i < prov.cfg.n_client_allowed; i++)
		full |= prov.cfg.client_allowed[i].bits == 0;
	if (full)
		put(&buf, &len, &cap,
		    "\n# A full tunnel: wg-quick routes packets marked %u outside it, and the\n"
		    "# shim marks its connections so (--fwmark).\n"
		    "FwMark = %u", PROV_CLIENT_FWMARK, PROV_CLIENT_FWMARK);
	put(&buf, &len, &cap,
	    "\n# Each packet crosses the relay as one record of up to MTU + 32 bytes: keep it\n"
	    "# within the relay's --max-record.\n"
	    "MTU = %u\n", prov.cfg.client_mtu ? prov.cfg.client_mtu : PROV_DEFAULT_CLIENT_MTU);
	if (prov.cfg.n_relay_urls) {
		put(&buf, &len, &cap,
		    "# wgws-shim carries this tunnel to the gateway over wss:// (HTTPS), for\n"
		    "# networks that block UDP: wg-quick starts it first and stops it last. A\n"
		    "# proxy comes from https_proxy (wgws-shim --help).\n"
		    "PreUp = wgws-shim --background /run/wgws-shim-%%i.pid --listen %s",
		    prov.cfg.client_endpoint);
		for (unsigned i = 0; i < prov.cfg.n_relay_urls; i++)
			put(&buf, &len, &cap, " --relay %s", prov.cfg.relay_urls[i]);
		for (unsigned i = 0; i < prov.cfg.n_relay_pins; i++)
			put(&buf, &len, &cap, " --pin %s", prov.cfg.relay_pins[i]);
		if (full)
			put(&buf, &len, &cap, " --fwmark %u", PROV_CLIENT_FWMARK);
		put(&buf, &len, &cap, "\nPostDown = wgws-shim --stop /run/wgws-shim-%%i.pid\n");
	} else {
		put(&buf, &len, &cap,
		    "# Through wgws-shim where UDP is blocked (this gateway's provisioner has no\n"
		    "# --relay-url to start it from here); start it with:\n"
		    "#   wgws-shim --listen %s --relay wss://GATEWAY/wg\n", prov.cfg.client_endpoint);
	}
	put(&buf, &len, &cap, "\n[Peer]\n");
	if (prov.info.has_public_key) {
		key_to_base64(prov.info.public_key, b64);
		put(&buf, &len, &cap, "PublicKey = %s\n", b64);
	}
	if (sp->has_psk) {
		key_to_base64(sp->psk, b64);
		put(&buf, &len, &cap, "PresharedKey = %s\n", b64);
	}
	put(&buf, &len, &cap, "AllowedIPs = ");
	sep = "";
	for (unsigned i = 0; i < prov.cfg.n_client_allowed; i++) {
		put(&buf, &len, &cap, "%s%s", sep, cidr_format(&prov.cfg.client_allowed[i], cidr));
		sep = ", ";
	}
	put(&buf, &len, &cap, "\nEndpoint = %s\n"
			      "PersistentKeepalive = 25\n", prov.cfg.client_endpoint);
	sodium_memzero(b64, sizeof(b64)); /* the PSK's, when it has one */
	sodium_memzero(&dp, sizeof(dp));
	return buf;
}
