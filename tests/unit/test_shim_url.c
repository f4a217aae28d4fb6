/* SPDX-License-Identifier: MIT */
/* Unit tests for client-shim/url.c: relay URLs, proxy URLs, no_proxy matching and pins.
 * Table-driven; every failure names its case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "shim.h"

struct relay_case {
	const char *name;
	const char *in;
	bool ok;
	const char *host;
	uint16_t port;
	const char *path;
	bool is_ip, is_v6;
};

static const struct relay_case relay_cases[] = {
	{ .name = "name+path", .in = "wss://gw.example.com/wg",
	  .ok = true, .host = "gw.example.com", .port = 443, .path = "/wg", .is_ip = false, .is_v6 = false },
	{ .name = "default path", .in = "wss://gw.example.com",
	  .ok = true, .host = "gw.example.com", .port = 443, .path = "/wg", .is_ip = false, .is_v6 = false },
	{ .name = "port+query", .in = "wss://gw.example.com:8443/x/y?z=1",
	  .ok = true, .host = "gw.example.com", .port = 8443, .path = "/x/y?z=1", .is_ip = false, .is_v6 = false },
	{ .name = "query only", .in = "wss://h?t=1",
	  .ok = true, .host = "h", .port = 443, .path = "/?t=1", .is_ip = false, .is_v6 = false },
	{ .name = "ipv4", .in = "wss://127.0.0.1:9443",
	  .ok = true, .host = "127.0.0.1", .port = 9443, .path = "/wg", .is_ip = true, .is_v6 = false },
	{ .name = "ipv6", .in = "wss://[::1]:8443/p",
	  .ok = true, .host = "::1", .port = 8443, .path = "/p", .is_ip = true, .is_v6 = true },
	{ .name = "ipv6 root path", .in = "wss://[2001:db8::1]/",
	  .ok = true, .host = "2001:db8::1", .port = 443, .path = "/", .is_ip = true, .is_v6 = true },
	{ .name = "scheme case", .in = "WSS://Host/a",
	  .ok = true, .host = "Host", .port = 443, .path = "/a", .is_ip = false, .is_v6 = false },
	{ .name = "plain ws", .in = "ws://h/wg" },
	{ .name = "https", .in = "https://h/wg" },
	{ .name = "no scheme", .in = "h/wg" },
	{ .name = "empty host", .in = "wss:///wg" },
	{ .name = "nothing", .in = "wss://" },
	{ .name = "port 0", .in = "wss://h:0/" },
	{ .name = "port too big", .in = "wss://h:65536/" },
	{ .name = "port not number", .in = "wss://h:x/" },
	{ .name = "bare v6", .in = "wss://::1/" },
	{ .name = "unclosed bracket", .in = "wss://[::1/" },
	{ .name = "v4 in brackets", .in = "wss://[1.2.3.4]/" },
	{ .name = "userinfo", .in = "wss://user@h/" },
	{ .name = "space in path", .in = "wss://h/a b" },
	{ .name = "bad host char", .in = "wss://bad!host/" },
	{ .name = "fragment", .in = "wss://h/a#b" },
	{ .name = "double dot", .in = "wss://a..b/" },
};

static void test_relay_urls(void **state)
{
	for (size_t i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++) {
		const struct relay_case *c = &relay_cases[i];
		char err[SHIM_ERR_LEN] = "";
		struct shim_url u;
		int ret = url_parse_relay(c->in, &u, err);

		if ((ret == 0) != c->ok)
			fail_msg("%s: '%s' gave %d (%s), expected %s", c->name, c->in, ret, err,
				 c->ok ? "success" : "an error");
		if (!c->ok) {
			if (err[0] == '\0')
				fail_msg("%s: error without a message", c->name);
			continue;
		}
		if (strcmp(u.host, c->host) || u.port != c->port || strcmp(u.path, c->path) ||
		    u.host_is_ip != c->is_ip || u.host_is_v6 != c->is_v6)
			fail_msg("%s: got host '%s' port %u path '%s' ip %d v6 %d", c->name, u.host,
				 u.port, u.path, u.host_is_ip, u.host_is_v6);
	}
}

static void test_relay_ws_message(void **state)
{
	char err[SHIM_ERR_LEN];
	struct shim_url u;

	assert_int_equal(url_parse_relay("ws://gw/wg", &u, err), -EINVAL);
	if (!strstr(err, "wss://"))
		fail_msg("ws:// rejection should say wss:// is needed: '%s'", err);
}

struct proxy_case {
	const char *name;
	const char *in;
	bool bare;
	bool ok;
	const char *host;
	uint16_t port;
	const char *user;
	const char *cred;
	bool is_v6;
	enum proxy_scheme scheme;
};

static const struct proxy_case proxy_cases[] = {
	{ .name = "plain", .in = "http://proxy:3128", .bare = false,
	  .ok = true, .host = "proxy", .port = 3128, .user = "", .cred = "" },
	{ .name = "trailing slash", .in = "http://proxy:3128/", .bare = false,
	  .ok = true, .host = "proxy", .port = 3128, .user = "", .cred = "" },
	{ .name = "credentials", .in = "http://user:p%40ss@proxy:3128/", .bare = false,
	  .ok = true, .host = "proxy", .port = 3128, .user = "user", .cred = "user:p@ss" },
	{ .name = "user only", .in = "http://bob@proxy:8080", .bare = false,
	  .ok = true, .host = "proxy", .port = 8080, .user = "bob", .cred = "bob:" },
	{ .name = "at in password", .in = "http://u:a@b@proxy:1", .bare = false,
	  .ok = true, .host = "proxy", .port = 1, .user = "u", .cred = "u:a@b" },
	{ .name = "ipv6", .in = "http://[::1]:3128", .bare = false,
	  .ok = true, .host = "::1", .port = 3128, .user = "", .cred = "", .is_v6 = true },
	{ .name = "default port", .in = "http://proxy", .bare = false,
	  .ok = true, .host = "proxy", .port = 1080, .user = "", .cred = "" },
	{ .name = "scheme case", .in = "HTTP://Proxy:1", .bare = false,
	  .ok = true, .host = "Proxy", .port = 1, .user = "", .cred = "" },
	{ .name = "bare allowed", .in = "proxy.corp:3128", .bare = true,
	  .ok = true, .host = "proxy.corp", .port = 3128, .user = "", .cred = "" },
	{ .name = "bare refused", .in = "proxy.corp:3128", .bare = false },
	{ .name = "https", .in = "https://proxy:3129", .bare = false, .ok = true, .host = "proxy",
	  .port = 3129, .user = "", .cred = "", .scheme = PROXY_HTTPS },
	{ .name = "https default port", .in = "https://u@proxy", .bare = true, .ok = true,
	  .host = "proxy", .port = 443, .user = "u", .cred = "u:", .scheme = PROXY_HTTPS },
	{ .name = "socks5", .in = "socks5://proxy", .bare = false, .ok = true, .host = "proxy",
	  .port = 1080, .user = "", .cred = "", .scheme = PROXY_SOCKS5 },
	{ .name = "socks5h", .in = "SOCKS5H://u:p@[fd00::1]:9", .bare = false, .ok = true,
	  .host = "fd00::1", .port = 9, .user = "u", .cred = "u:p", .is_v6 = true,
	  .scheme = PROXY_SOCKS5H },
	{ .name = "socks4", .in = "socks4://proxy:1080", .bare = true },
	{ .name = "socks5 no slashes", .in = "socks5:proxy:1080", .bare = false },
	{ .name = "ftp", .in = "ftp://proxy:21", .bare = true },
	{ .name = "path", .in = "http://proxy:3128/x", .bare = false },
	{ .name = "bad escape", .in = "http://u:%zz@proxy:1", .bare = false },
	{ .name = "short escape", .in = "http://u:%4@proxy:1", .bare = false },
	{ .name = "nul escape", .in = "http://u:%00@proxy:1", .bare = false },
	{ .name = "empty user", .in = "http://:pw@proxy:1", .bare = false },
	{ .name = "no host", .in = "http://", .bare = false },
	{ .name = "bad port", .in = "http://proxy:99999", .bare = false },
	{ .name = "credentials, bad port", .in = "http://u:pw@proxy:99999", .bare = false },
	{ .name = "escape cut in user", .in = "http://wsh%0.0@proxy:1", .bare = false },
};

static void test_proxy_urls(void **state)
{
	for (size_t i = 0; i < sizeof(proxy_cases) / sizeof(proxy_cases[0]); i++) {
		const struct proxy_case *c = &proxy_cases[i];
		char err[SHIM_ERR_LEN] = "";
		struct shim_proxy p;
		int ret = url_parse_proxy(c->in, c->bare, &p, err);

		if ((ret == 0) != c->ok)
			fail_msg("%s: '%s' gave %d (%s), expected %s", c->name, c->in, ret, err,
				 c->ok ? "success" : "an error");
		if (!c->ok) {
			if (err[0] == '\0' || p.set)
				fail_msg("%s: error without message, or proxy marked set", c->name);
			if (p.cred[0] || p.user[0])
				fail_msg("%s: credentials '%s' left behind", c->name, p.cred);
			continue;
		}
		if (!p.set || strcmp(p.host, c->host) || p.port != c->port ||
		    strcmp(p.user, c->user) || strcmp(p.cred, c->cred) || p.host_is_v6 != c->is_v6 ||
		    p.scheme != c->scheme)
			fail_msg("%s: got %s host '%s' port %u user '%s' cred '%s'", c->name,
				 url_proxy_scheme(p.scheme), p.host, p.port, p.user, p.cred);
	}
}

struct np_case {
	const char *no_proxy;
	const char *host;
	bool match;
};

static const struct np_case np_cases[] = {
	{ "", "a.com", false },
	{ "*", "anything.example", true },
	{ " * ", "x", true },
	{ "example.com", "example.com", true },
	{ "example.com", "gw.example.com", true },
	{ ".example.com", "gw.example.com", true },
	{ ".example.com", "example.com", true },
	{ "example.com", "badexample.com", false },
	{ "example.com", "example.com.evil", false },
	{ "EXAMPLE.com", "Gw.Example.COM", true },
	{ "a.com, example.com:443", "gw.example.com", true },
	{ "a.com,,b.com", "c.com", false },
	{ "localhost,127.0.0.1", "gw", false },
	{ "example.com.", "gw.example.com", true },
	{ "example.com", "gw.example.com.", true },
	{ "*.example.com", "gw.example.com", false },
	{ "10.0.0.1", "10.0.0.1", true },
	{ "10.0.0.1", "10.0.0.10", false },
	{ "0.0.1", "10.0.0.1", false },
	{ "10.0.0.1:8443", "10.0.0.1", true },
	{ "::1", "::1", true },
	{ "[::1]:443", "::1", true },
	{ "2001:DB8::1", "2001:db8::1", true },
	{ "2001:db8::1", "2001:db8::2", false },
	{ " , ,", "gw", false },
	/* CIDRs (curl 7.86's no_proxy): for addresses of their family only */
	{ "10.0.0.0/8", "10.200.3.4", true },
	{ "10.0.0.0/8", "11.0.0.1", false },
	{ "192.168.1.0/24,a.com", "192.168.1.255", true },
	{ "192.168.1.0/24", "192.168.2.1", false },
	{ "10.1.2.3/32", "10.1.2.3", true },
	{ "10.1.2.3/32", "10.1.2.4", false },
	{ "0.0.0.0/0", "203.0.113.9", true },
	{ "10.0.0.0/33", "10.0.0.1", false },
	{ "10.0.0.0/", "10.0.0.1", false },
	{ "10.0.0.0/x", "10.0.0.1", false },
	{ "10.0.0.0/-1", "10.0.0.1", false },
	{ "10.0.0.0/8", "gw.example.com", false },
	{ "10.0.0.0/8", "::ffff:10.0.0.1", false },
	{ "fd00::/8", "fd12:3456::1", true },
	{ "fd00::/8", "fe80::1", false },
	{ "2001:db8::/47", "2001:db8:1:ffff::1", true },
	{ "2001:db8::/47", "2001:db8:2::1", false },
	/* host bits set: not a network (cidr_parse refuses it, as --proxy-protocol-from does) */
	{ "10.0.0.1/8", "10.0.0.1", false },
	{ "::/0", "::1", true },
	{ "fd00::/129", "fd00::1", false },
	{ "fd00::/8", "10.0.0.1", false },
};

/* A refused proxy URL is quoted in the error, never with its password. */
static void test_proxy_errors_masked(void **state)
{
	static const char *const bad[] = {
		"http://alice:s3cretpw@proxy:3128/x",  /* a path */
		"http://alice:s3cretpw@/",             /* no host */
		"http://alice:s3cretpw@proxy:99999",   /* bad port */
		"socks4://alice:s3cretpw@proxy:1080",  /* another scheme */
		"http://alice:s3cret%zzpw@proxy:3128", /* bad escape in the password */
		"http://alice:s3cret/pw@proxy:3128",   /* an unencoded '/' in the password */
	};
	char err[SHIM_ERR_LEN];
	struct shim_proxy p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (url_parse_proxy(bad[i], false, &p, err) == 0)
			fail_msg("accepted: %s", bad[i]);
		if (strstr(err, "s3cret"))
			fail_msg("%s: the error shows the password: %s", bad[i], err);
		if (!strstr(err, "alice"))
			fail_msg("%s: the error does not name the URL: %s", bad[i], err);
		assert_false(p.set);
	}
}

static void test_no_proxy(void **state)
{
	for (size_t i = 0; i < sizeof(np_cases) / sizeof(np_cases[0]); i++) {
		const struct np_case *c = &np_cases[i];

		if (url_no_proxy_matches(c->no_proxy, c->host) != c->match)
			fail_msg("no_proxy '%s' host '%s': expected %s", c->no_proxy, c->host,
				 c->match ? "a match" : "no match");
	}
	assert_false(url_no_proxy_matches(NULL, "x"));
}

struct pin_case {
	const char *name;
	const char *in;
	bool ok;
	uint8_t first, last;
};

static const struct pin_case pin_cases[] = {
	/* SHA-256("abc") = ba7816bf…f20015ad */
	{ .name = "sha256 of abc", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
	  .ok = true, .first = 0xba, .last = 0xad },
	{ .name = "zeros", .in = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	  .ok = true, .first = 0, .last = 0 },
	{ .name = "no prefix", .in = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=" },
	{ .name = "sha1 prefix", .in = "sha1//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=" },
	{ .name = "upper prefix", .in = "SHA256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=" },
	{ .name = "short", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa=" },
	{ .name = "long", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0A=" },
	{ .name = "no padding", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0A" },
	{ .name = "double padding", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAF==" },
	{ .name = "bad char", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIA-a0=" },
	{ .name = "trailing space", .in = "sha256//ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0= " },
	{ .name = "empty", .in = "" },
};

static void test_pins(void **state)
{
	for (size_t i = 0; i < sizeof(pin_cases) / sizeof(pin_cases[0]); i++) {
		const struct pin_case *c = &pin_cases[i];
		uint8_t pin[SHIM_PIN_LEN];
		int ret = url_parse_pin(c->in, pin);

		if ((ret == 0) != c->ok)
			fail_msg("%s: '%s' gave %d, expected %s", c->name, c->in, ret,
				 c->ok ? "success" : "an error");
		if (c->ok && (pin[0] != c->first || pin[SHIM_PIN_LEN - 1] != c->last))
			fail_msg("%s: decoded %02x…%02x", c->name, pin[0], pin[SHIM_PIN_LEN - 1]);
	}
}

static void test_format_hostport(void **state)
{
	char buf[64];

	assert_string_equal(url_format_hostport("::1", true, 443, buf, sizeof(buf)), "[::1]:443");
	assert_string_equal(url_format_hostport("gw", false, 8443, buf, sizeof(buf)), "gw:8443");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relay_urls),   cmocka_unit_test(test_relay_ws_message),
		cmocka_unit_test(test_proxy_urls),   cmocka_unit_test(test_no_proxy),
		cmocka_unit_test(test_pins),         cmocka_unit_test(test_format_hostport),
		cmocka_unit_test(test_proxy_errors_masked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
