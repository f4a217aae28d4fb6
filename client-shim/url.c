/* SPDX-License-Identifier: MIT */
/* URL-shaped inputs of the shim: the relay URL (wss:// only), proxy URLs (http:// only, with
 * optional percent-encoded credentials), the no_proxy list and curl-style public key pins.
 * Pure string work: no I/O, no allocation, no name resolution. Every error message names
 * the bad part so main.c can prefix the option. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "cidr.h"
#include "shim.h"

static bool host_is_name(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > ADDR_HOST_MAX || h[0] == '.' || h[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
		if (c == '.' && i + 1 < n && h[i + 1] == '.')
			return false;
	}
	return true;
}

/* Fill host/port/is_ip/is_v6 from an authority "HOST[:PORT]" or "[V6][:PORT]". */
static int parse_authority(const char *auth, uint16_t default_port, char host[ADDR_HOST_MAX + 1],
			   uint16_t *port, bool *is_ip, bool *is_v6, const char *what,
			   char err[static SHIM_ERR_LEN])
{
	unsigned char tmp[sizeof(struct in6_addr)];

	if (auth[0] == '\0') {
		snprintf(err, SHIM_ERR_LEN, "%s: missing host", what);
		return -EINVAL;
	}
	if (addr_split_host_port(auth, host, ADDR_HOST_MAX + 1, port, default_port) < 0) {
		snprintf(err, SHIM_ERR_LEN, "%s: bad host or port '%s'", what, auth);
		return -EINVAL;
	}
	*is_v6 = inet_pton(AF_INET6, host, tmp) == 1;
	*is_ip = *is_v6 || inet_pton(AF_INET, host, tmp) == 1;
	if (*is_v6 != (auth[0] == '[')) {
		snprintf(err, SHIM_ERR_LEN, "%s: IPv6 addresses must be in brackets, '%s'", what,
			 auth);
		return -EINVAL;
	}
	if (!*is_ip && !host_is_name(host)) {
		snprintf(err, SHIM_ERR_LEN, "%.100s: bad host name '%.100s'", what, host);
		return -EINVAL;
	}
	return 0;
}

int url_parse_relay(const char *s, struct shim_url *u, char err[static SHIM_ERR_LEN])
{
	static const char scheme[] = "wss://";
	char auth[ADDR_HOST_MAX + 16];
	const char *a, *p;
	size_t alen;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "ws://", 5) == 0) {
		snprintf(err, SHIM_ERR_LEN,
			 "'%s': plain ws:// is not supported, the relay must be wss:// (TLS)", s);
		return -EINVAL;
	}
	if (strncasecmp(s, scheme, sizeof(scheme) - 1) != 0) {
		snprintf(err, SHIM_ERR_LEN, "'%s': expected wss://HOST[:PORT]/PATH", s);
		return -EINVAL;
	}
	a = s + sizeof(scheme) - 1;
	p = a + strcspn(a, "/?#");
	alen = (size_t)(p - a);
	if (alen >= sizeof(auth)) {
		snprintf(err, SHIM_ERR_LEN, "'%s': host too long", s);
		return -EINVAL;
	}
	memcpy(auth, a, alen);
	auth[alen] = '\0';
	if (memchr(auth, '@', alen)) {
		snprintf(err, SHIM_ERR_LEN, "'%s': credentials in the relay URL are not supported",
			 s);
		return -EINVAL;
	}
	if (parse_authority(auth, 443, u->host, &u->port, &u->host_is_ip, &u->host_is_v6, s,
			    err) < 0)
		return -EINVAL;
	if (*p == '#') {
		snprintf(err, SHIM_ERR_LEN, "'%s': fragments are not allowed", s);
		return -EINVAL;
	}
	if (*p == '\0') {
		strcpy(u->path, "/wg");
		return 0;
	}
	if (strlen(p) + 2 > sizeof(u->path)) {
		snprintf(err, SHIM_ERR_LEN, "'%s': path too long", s);
		return -EINVAL;
	}
	for (const char *c = p; *c; c++) {
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '#' ||
		    (unsigned char)*c >= 0x80) {
			snprintf(err, SHIM_ERR_LEN, "'%s': bad character in path", s);
			return -EINVAL;
		}
	}
	/* "wss://h?x" means path "/?x" */
	snprintf(u->path, sizeof(u->path), "%s%s", *p == '/' ? "" : "/", p);
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode s[0..n) into out (outsz bytes, NUL-terminated). */
static int pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -EINVAL;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = hi << 4 | lo;
			i += 2;
		}
		if (o + 1 >= outsz)
			return -ENAMETOOLONG;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

const char *url_mask_password(const char *s, char *buf, size_t len)
{
	const char *a = strstr(s, "://"), *at, *colon;

	a = a ? a + 3 : s;
	/* The last '@' anywhere: a password may hold an unencoded '/', '?' or '#' that the
	 * parser then takes for the end of the authority. Too much masked beats too little. */
	at = strrchr(a, '@');
	colon = at ? memchr(a, ':', (size_t)(at - a)) : NULL;
	if (!colon)
		snprintf(buf, len, "%s", s);
	else
		snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - s), s, at);
	return buf;
}

int url_parse_proxy(const char *s, bool allow_bare, struct shim_proxy *p,
		    char err[static SHIM_ERR_LEN])
{
	char auth[ADDR_HOST_MAX + 16], shown[128]; /* s for messages: masked, cut */
	const char *a = s, *end, *at;
	size_t alen;

	url_mask_password(s, shown, sizeof(shown));

	uint16_t default_port = SHIM_DEFAULT_PROXY_PORT;

	memset(p, 0, sizeof(*p));
	p->scheme = PROXY_HTTP;
	for (int i = PROXY_SOCKS5H; i >= PROXY_HTTP; i--) {
		const char *name = url_proxy_scheme((enum proxy_scheme)i);
		size_t n = strlen(name);

		if (strncasecmp(s, name, n) == 0 && strncmp(s + n, "://", 3) == 0) {
			p->scheme = (enum proxy_scheme)i;
			a = s + n + 3;
			break;
		}
	}
	if (a == s && (strstr(s, "://") || !allow_bare)) {
		snprintf(err, SHIM_ERR_LEN, "'%s': expected http://, https://, socks5:// or "
			 "socks5h://[user@]host[:port]", shown);
		return -EINVAL;
	}
	if (p->scheme == PROXY_HTTPS)
		default_port = 443;
	end = a + strcspn(a, "/?#");
	if (*end != '\0' && strcmp(end, "/") != 0) {
		snprintf(err, SHIM_ERR_LEN, "'%s': a proxy URL has no path", shown);
		return -EINVAL;
	}
	at = memrchr(a, '@', (size_t)(end - a));
	if (at) {
		const char *colon = memchr(a, ':', (size_t)(at - a));
		size_t ulen = colon ? (size_t)(colon - a) : (size_t)(at - a);

		if (pct_decode(a, (size_t)(at - a), p->cred, sizeof(p->cred)) < 0 ||
		    pct_decode(a, ulen, p->user, sizeof(p->user)) < 0 || p->user[0] == '\0') {
			snprintf(err, SHIM_ERR_LEN, "'%s': bad proxy credentials", shown);
			goto out_wipe;
		}
		if (!colon) {
			/* "user@" alone: an empty password, as curl does */
			size_t n = strlen(p->cred);

			if (n + 2 > sizeof(p->cred)) {
				snprintf(err, SHIM_ERR_LEN, "'%s': bad proxy credentials", shown);
				goto out_wipe;
			}
			p->cred[n] = ':';
			p->cred[n + 1] = '\0';
		}
		a = at + 1;
	}
	alen = (size_t)(end - a);
	if (alen >= sizeof(auth)) {
		snprintf(err, SHIM_ERR_LEN, "'%s': host too long", shown);
		goto out_wipe;
	}
	memcpy(auth, a, alen);
	auth[alen] = '\0';
	if (parse_authority(auth, default_port, p->host, &p->port, &p->host_is_ip,
			    &p->host_is_v6, shown, err) < 0)
		goto out_wipe;
	p->set = true;
	return 0;

out_wipe:
	/* Not even part of a password stays behind (pct_decode() may have stopped midway). */
	memset(p, 0, sizeof(*p));
	return -EINVAL;
}

const char *url_proxy_scheme(enum proxy_scheme s)
{
	static const char *const names[] = {
		[PROXY_HTTP] = "http", [PROXY_HTTPS] = "https", [PROXY_SOCKS5] = "socks5",
		[PROXY_SOCKS5H] = "socks5h",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* Does the address host (text) lie in the network e[0..n) "ADDRESS/PREFIX" (cidr.h)? */
static bool cidr_matches(const char *host, const char *e, size_t n)
{
	char buf[CIDR_STR];
	unsigned char a[16];
	int fam = strchr(host, ':') ? AF_INET6 : AF_INET;
	struct cidr net, h;

	if (n >= sizeof(buf))
		return false;
	memcpy(buf, e, n);
	buf[n] = '\0';
	if (cidr_parse(buf, &net) < 0 || inet_pton(fam, host, a) != 1)
		return false;
	cidr_host(fam, a, &h);
	return cidr_overlaps(&net, &h);
}

/* Does host (a name) equal domain or end with ".domain"? Both compared without case. */
static bool domain_matches(const char *host, size_t hlen, const char *dom, size_t dlen)
{
	if (dlen == 0 || dlen > hlen)
		return false;
	if (strncasecmp(host + hlen - dlen, dom, dlen) != 0)
		return false;
	return hlen == dlen || host[hlen - dlen - 1] == '.';
}

bool url_no_proxy_matches(const char *no_proxy, const char *host)
{
	unsigned char tmp[sizeof(struct in6_addr)];
	bool host_ip = inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
	size_t hlen = strlen(host);
	const char *p = no_proxy;

	if (!no_proxy)
		return false;
	while (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	while (*p) {
		size_t n = strcspn(p, ",");
		const char *e = p, *next = p[n] ? p + n + 1 : p + n;
		const char *colon;

		/* trim */
		while (n > 0 && isspace((unsigned char)*e)) {
			e++;
			n--;
		}
		while (n > 0 && isspace((unsigned char)e[n - 1]))
			n--;
		if (n == 1 && e[0] == '*')
			return true;
		if (host_ip && memchr(e, '/', n)) {
			if (cidr_matches(host, e, n))
				return true;
			p = next;
			continue;
		}
		/* drop ":port": "[v6]:port", "name:port", "v4:port"; bare v6 keeps its colons */
		if (n > 0 && e[0] == '[') {
			const char *rb = memchr(e, ']', n);

			if (rb) {
				e++;
				n = (size_t)(rb - e);
			}
		} else if ((colon = memchr(e, ':', n)) &&
			   !memchr(colon + 1, ':', n - (size_t)(colon - e) - 1)) {
			n = (size_t)(colon - e);
		}
		if (host_ip) {
			if (n == hlen && strncasecmp(e, host, n) == 0)
				return true;
		} else {
			if (n > 0 && e[0] == '.') {
				e++;
				n--;
			}
			while (n > 0 && e[n - 1] == '.')
				n--;
			if (domain_matches(host, hlen, e, n))
				return true;
		}
		p = next;
	}
	return false;
}

int url_parse_pin(const char *s, uint8_t pin[static SHIM_PIN_LEN])
{
	static const char prefix[] = "sha256//";
	unsigned char out[SHIM_PIN_B64_LEN];
	const char *b = s + sizeof(prefix) - 1;

	if (strncmp(s, prefix, sizeof(prefix) - 1) != 0 || strlen(b) != SHIM_PIN_B64_LEN)
		return -EINVAL;
	for (int i = 0; i < SHIM_PIN_B64_LEN - 1; i++) {
		unsigned char c = (unsigned char)b[i];

		if (!isalnum(c) && c != '+' && c != '/')
			return -EINVAL;
	}
	if (b[SHIM_PIN_B64_LEN - 1] != '=')
		return -EINVAL;
	/* EVP_DecodeBlock counts the padding: 44 characters decode to 33 bytes */
	if (EVP_DecodeBlock(out, (const unsigned char *)b, SHIM_PIN_B64_LEN) != SHIM_PIN_LEN + 1)
		return -EINVAL;
	memcpy(pin, out, SHIM_PIN_LEN);
	return 0;
}

const char *url_format_hostport(const char *host, bool is_v6, uint16_t port, char *buf,
				size_t bufsz)
{
	snprintf(buf, bufsz, is_v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
	return buf;
}
