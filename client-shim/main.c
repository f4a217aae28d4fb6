/* SPDX-License-Identifier: MIT */
/* wgws-shim: carries a local WireGuard's UDP datagrams to a wgws relay over wss://, through
 * a proxy when needed (HTTP CONNECT, HTTPS, SOCKS5). This file owns the command line and
 * the [Shim] section of a -c file (one table, one setter), validates everything before
 * anything is opened, builds the TLS context and hands over to the sessions' event loop
 * (session.c).
 *
 * The shim deliberately does not use libwebsockets: lws 4.1.6's client proxy turns a proxy's
 * 403/407 into a generic "proxy not h1" and has no no_proxy, and we need both. It is its own
 * small WebSocket client instead: one epoll loop, non-blocking sockets, OpenSSL for TLS and
 * hand-written RFC 6455 client framing (ws.c). The proxy leg is libcurl's (proxy.c): every
 * proxy authentication scheme and SOCKS5, which we do not write by hand. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "log.h"
#include "shim.h"

enum {
	OPT_CA = 256,
	OPT_PIN,
	OPT_INSECURE,
	OPT_PROXY,
	OPT_NO_PROXY,
	OPT_KEEPALIVE,
	OPT_MAX_SESSIONS,
	OPT_CHECK_CONFIG,
	OPT_CHECK,
	OPT_VERSION,
	OPT_BACKGROUND,
	OPT_STOP,
	OPT_FWMARK,
	OPT_PROXY_PASSWORD_FILE,
	OPT_PROXY_CA,
	OPT_TOKEN_FILE,
};

static const struct option longopts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "relay", required_argument, NULL, 'r' },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "pin", required_argument, NULL, OPT_PIN },
	{ "insecure", no_argument, NULL, OPT_INSECURE },
	{ "proxy", required_argument, NULL, OPT_PROXY },
	{ "no-proxy", no_argument, NULL, OPT_NO_PROXY },
	{ "keepalive", required_argument, NULL, OPT_KEEPALIVE },
	{ "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
	{ "fwmark", required_argument, NULL, OPT_FWMARK },
	{ "proxy-password-file", required_argument, NULL, OPT_PROXY_PASSWORD_FILE },
	{ "proxy-ca", required_argument, NULL, OPT_PROXY_CA },
	{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
	{ "ipv4", no_argument, NULL, '4' },
	{ "ipv6", no_argument, NULL, '6' },
	{ "config", required_argument, NULL, 'c' },
	{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
	{ "check", no_argument, NULL, OPT_CHECK },
	{ "background", required_argument, NULL, OPT_BACKGROUND },
	{ "stop", required_argument, NULL, OPT_STOP },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = "c:vh46";

/* Where the settings come from while parsing: the file first, then the command line. */
struct parse_state {
	struct shim_conf *conf;
	char token_file[4096];
	bool from_cli;
	bool pins_from_file;
	bool relays_from_file;
	bool family_from_file;
	bool env_all_direct; /* a proxy in the environment, but no_proxy matches every relay */
	char password_file[4096];
	const char *proxy_arg; /* --proxy as given (kept until the end to honour --no-proxy) */
	char proxy_buf[1024];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: wgws-shim --relay wss://HOST[:PORT]/PATH [options]\n"
		"       wgws-shim --stop PIDFILE\n"
		"\n"
		"Carries the UDP datagrams of local WireGuard peers to a wgws relay over a\n"
		"WebSocket (TLS), one connection per local source address.\n"
		"\n"
		"  --listen IP:PORT       local UDP address for WireGuard's Endpoint\n"
		"                         (numeric, IPv4 or [IPv6]; default 127.0.0.1:51820)\n"
		"  --relay URL            wss://HOST[:PORT]/PATH (required; port 443 and path /wg\n"
		"                         by default; ws:// is refused). May be repeated: when a\n"
		"                         relay cannot be reached the next one is tried at once,\n"
		"                         and the one that works is kept\n"
		"  --ca FILE              verify the relay against these CAs instead of the system's\n"
		"  --pin sha256//BASE64   accept the relay only with this public key (curl's\n"
		"                         --pinnedpubkey format); the chain is then not verified.\n"
		"                         May be repeated (key rotation)\n"
		"  --insecure             verify nothing about the relay (testing only; loud)\n"
		"  --proxy URL            SCHEME://[user@]host[:port]: http:// (CONNECT), https://\n"
		"                         (CONNECT inside TLS with the proxy), socks5:// or\n"
		"                         socks5h:// (the proxy resolves the relay's name); port\n"
		"                         1080 if omitted (443 for https://). Authentication as the\n"
		"                         proxy asks: Basic, Digest, NTLM (user DOMAIN\\name), or\n"
		"                         Negotiate with your Kerberos ticket (kinit; no user\n"
		"                         needed). Default: https_proxy, HTTPS_PROXY or\n"
		"                         http_proxy. Relays in no_proxy / NO_PROXY (names,\n"
		"                         domains, addresses, CIDRs like 10.0.0.0/8) go direct\n"
		"  --proxy-password-file FILE  the proxy user's password, the file's first line\n"
		"                         (the user goes in the URL: http://USER@host:port). A\n"
		"                         password is refused on the command line, where every\n"
		"                         local user sees it (ps); it may also be in the -c file's\n"
		"                         Proxy = or in https_proxy. Never logged\n"
		"  --proxy-ca FILE        verify an https:// proxy against these CAs instead of\n"
		"                         the system's\n"
		"  --token-file FILE      send the token on FILE's first line to the relay\n"
		"                         (Authorization: Bearer), for a relay with --tokens;\n"
		"                         never on the command line, never logged\n"
		"  --no-proxy             connect directly, ignoring the environment\n"
		"  --keepalive SECONDS    WebSocket ping interval (default 15); the relay is\n"
		"                         declared dead after 3 intervals (at least 45 s) without\n"
		"                         data or pong. 0 disables pings and with them that check\n"
		"                         (silence is then normal; TCP's own timeouts remain)\n"
		"  --max-sessions N       local sources served at once (default 64); the least\n"
		"                         recently active is evicted beyond that\n"
		"  -4, --ipv4, -6, --ipv6 reach the relay (or the proxy) over IPv4 (IPv6) only; by\n"
		"                         default every address of the name is tried, both\n"
		"                         families alternating, each 250 ms after the previous\n"
		"                         one while that one still waits (Happy Eyeballs)\n"
		"  --fwmark N             mark the connections to the relay or proxy (SO_MARK;\n"
		"                         decimal or 0x hex; needs CAP_NET_ADMIN) so that they\n"
		"                         bypass a full tunnel (AllowedIPs = 0.0.0.0/0): wg-quick\n"
		"                         routes packets with the interface's FwMark (51820\n"
		"                         unless the file sets one) outside the tunnel\n"
		"  -c, --config FILE      read [Shim] Key = Value settings (keys are the long option\n"
		"                         names); the command line overrides the file\n"
		"  --check-config         validate the configuration, print \"configuration ok\", exit\n"
		"  --check                connect to each relay once (resolve, proxy, TLS, upgrade,\n"
		"                         a ping answered through the relay), print each step and\n"
		"                         what broke in plain words, exit 0 only if every relay\n"
		"                         works. Does not bind --listen (a running shim may have\n"
		"                         it). Without --check the shim checks its first relay\n"
		"                         once at start and logs the result\n"
		"  --background PIDFILE   once the local port is bound, go to the background and\n"
		"                         exit 0; exit non-zero with the reason if it cannot start.\n"
		"                         Logs then go to syslog (or stay on stderr if that is a\n"
		"                         file or the journal). PIDFILE stays locked while it runs:\n"
		"                         a second shim on it is refused. For wg-quick's PreUp\n"
		"  --stop PIDFILE         stop the shim running with PIDFILE and wait until it has\n"
		"                         exited (SIGKILL after 5 s); success if none runs. For\n"
		"                         wg-quick's PostDown\n"
		"  -v, --verbose          debug logging\n"
		"  -h, --help             this text\n"
		"  --version              print the version\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop it (open connections closed cleanly); SIGUSR1\n"
		"logs one status line per session (state, relay, traffic, drops).\n"
		"Log lines start with the time (UTC), or with a syslog priority when stderr is\n"
		"the journal.\n"
		"\n"
		"Exit status: 0 when stopped by a signal (or --stop, --check-config, --check\n"
		"succeeded), 1 when it cannot run (a port in use, no permission, a missing CA\n"
		"file) or --check found a relay that does not work, 2 for a usage or\n"
		"configuration error, named with the option at fault.\n");
}

static const char *opt_name(int opt)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

/* The one setter for a file key or a flag. value is NULL for a flag without argument. */
static int conf_set(struct parse_state *ps, int opt, const char *value,
		    char err[static SHIM_ERR_LEN])
{
	struct shim_conf *c = ps->conf;
	char msg[SHIM_ERR_LEN];
	unsigned long n;
	bool b = true;

	if ((opt == OPT_INSECURE || opt == OPT_NO_PROXY || opt == '4' || opt == '6') && value &&
	    conf_parse_bool(value, &b) < 0) {
		snprintf(err, SHIM_ERR_LEN, "--%s: expected yes or no, got '%s'", opt_name(opt),
			 value);
		return -EINVAL;
	}
	switch (opt) {
	case 'l':
		if (addr_parse(value, &c->listen, &c->listen_len) < 0) {
			snprintf(err, SHIM_ERR_LEN,
				 "--listen: '%s' is not a numeric IPv4:PORT or [IPv6]:PORT", value);
			return -EINVAL;
		}
		snprintf(c->listen_str, sizeof(c->listen_str), "%s", value);
		return 0;
	case 'r':
		if (ps->from_cli && ps->relays_from_file) {
			c->nrelays = 0; /* the command line replaces the file's relays */
			ps->relays_from_file = false;
		}
		if (c->nrelays == SHIM_RELAY_MAX) {
			snprintf(err, SHIM_ERR_LEN, "--relay: at most %d relays", SHIM_RELAY_MAX);
			return -EINVAL;
		}
		if (url_parse_relay(value, &c->relays[c->nrelays], msg) < 0) {
			snprintf(err, SHIM_ERR_LEN, "--relay: %.240s", msg);
			return -EINVAL;
		}
		if (strlen(value) >= sizeof(c->relay_strs[0])) {
			snprintf(err, SHIM_ERR_LEN, "--relay: URL too long");
			return -EINVAL;
		}
		snprintf(c->relay_strs[c->nrelays++], sizeof(c->relay_strs[0]), "%s", value);
		if (!ps->from_cli)
			ps->relays_from_file = true;
		return 0;
	case OPT_CA:
		if (strlen(value) >= sizeof(c->ca_file)) {
			snprintf(err, SHIM_ERR_LEN, "--ca: path too long");
			return -EINVAL;
		}
		snprintf(c->ca_file, sizeof(c->ca_file), "%s", value);
		return 0;
	case OPT_PIN:
		if (ps->from_cli && ps->pins_from_file) {
			c->npins = 0; /* the command line replaces the file's pins */
			ps->pins_from_file = false;
		}
		if (c->npins == SHIM_PIN_MAX) {
			snprintf(err, SHIM_ERR_LEN, "--pin: at most %d pins", SHIM_PIN_MAX);
			return -EINVAL;
		}
		if (url_parse_pin(value, c->pins[c->npins]) < 0) {
			snprintf(err, SHIM_ERR_LEN,
				 "--pin: '%s' is not sha256// followed by the base64 of a SHA-256",
				 value);
			return -EINVAL;
		}
		c->npins++;
		if (!ps->from_cli)
			ps->pins_from_file = true;
		return 0;
	case OPT_INSECURE:
		c->insecure = b;
		return 0;
	case OPT_PROXY: {
		const char *pw;

		if (strlen(value) >= sizeof(ps->proxy_buf)) {
			snprintf(err, SHIM_ERR_LEN, "--proxy: URL too long");
			return -EINVAL;
		}
		snprintf(ps->proxy_buf, sizeof(ps->proxy_buf), "%s", value);
		ps->proxy_arg = ps->proxy_buf;
		if (url_parse_proxy(value, false, &c->proxy, msg) < 0) {
			snprintf(err, SHIM_ERR_LEN, "--proxy: %.240s", msg);
			return -EINVAL;
		}
		pw = strchr(c->proxy.cred, ':');
		if (ps->from_cli && pw && pw[1]) {
			/* every local user sees argv (ps, /proc/PID/cmdline) */
			OPENSSL_cleanse(&c->proxy, sizeof(c->proxy));
			snprintf(err, SHIM_ERR_LEN, "--proxy: a password on the command line is "
				 "visible to every local user (ps); give the user in the URL and "
				 "the password with --proxy-password-file, or the whole URL in the "
				 "-c file (Proxy = ...) or in https_proxy");
			return -EINVAL;
		}
		return 0;
	}
	case OPT_PROXY_PASSWORD_FILE:
		if (strlen(value) >= sizeof(ps->password_file)) {
			snprintf(err, SHIM_ERR_LEN, "--proxy-password-file: path too long");
			return -EINVAL;
		}
		snprintf(ps->password_file, sizeof(ps->password_file), "%s", value);
		return 0;
	case OPT_TOKEN_FILE:
		if (strlen(value) >= sizeof(ps->token_file)) {
			snprintf(err, SHIM_ERR_LEN, "--token-file: path too long");
			return -EINVAL;
		}
		snprintf(ps->token_file, sizeof(ps->token_file), "%s", value);
		return 0;
	case OPT_PROXY_CA:
		if (strlen(value) >= sizeof(c->proxy_ca)) {
			snprintf(err, SHIM_ERR_LEN, "--proxy-ca: path too long");
			return -EINVAL;
		}
		snprintf(c->proxy_ca, sizeof(c->proxy_ca), "%s", value);
		return 0;
	case OPT_NO_PROXY:
		c->no_proxy = b;
		return 0;
	case OPT_KEEPALIVE:
		if (conf_parse_uint(value, 0, 3600, &n) < 0) {
			snprintf(err, SHIM_ERR_LEN, "--keepalive: '%s' is not a number of seconds "
				 "from 0 to 3600", value);
			return -EINVAL;
		}
		c->keepalive_s = (unsigned)n;
		return 0;
	case '4':
	case '6': {
		int fam = opt == '4' ? AF_INET : AF_INET6;

		if (ps->from_cli && ps->family_from_file) {
			c->family = AF_UNSPEC; /* the command line's choice replaces the file's */
			ps->family_from_file = false;
		}
		if (!ps->from_cli && b)
			ps->family_from_file = true;
		if (b && c->family && c->family != fam) {
			snprintf(err, SHIM_ERR_LEN, "--ipv4 and --ipv6 exclude each other");
			return -EINVAL;
		}
		if (b)
			c->family = fam;
		else if (c->family == fam)
			c->family = AF_UNSPEC;
		return 0;
	}
	case OPT_FWMARK: {
		char *end;

		errno = 0;
		n = strtoul(value, &end, 0);
		if (errno || end == value || *end || !*value || value[0] == '-' || !n ||
		    n > UINT32_MAX) {
			snprintf(err, SHIM_ERR_LEN, "--fwmark: '%s' is not a mark from 1 to "
				 "4294967295 (decimal or 0x hex)", value);
			return -EINVAL;
		}
		c->fwmark = (uint32_t)n;
		return 0;
	}
	case OPT_MAX_SESSIONS:
		if (conf_parse_uint(value, 1, SHIM_MAX_SESSIONS_LIMIT, &n) < 0) {
			snprintf(err, SHIM_ERR_LEN, "--max-sessions: '%s' is not a number from 1 to %d",
				 value, SHIM_MAX_SESSIONS_LIMIT);
			return -EINVAL;
		}
		c->max_sessions = (unsigned)n;
		return 0;
	}
	snprintf(err, SHIM_ERR_LEN, "unknown option");
	return -EINVAL;
}

static int conf_file_set(void *arg, int opt, const char *value, char err[static CONF_ERR_LEN])
{
	char msg[SHIM_ERR_LEN];

	if (conf_set(arg, opt, value, msg) < 0) {
		snprintf(err, CONF_ERR_LEN, "%.*s", CONF_ERR_LEN - 1, msg);
		return -EINVAL;
	}
	return 0;
}

/* The [Shim] section of file. Its keys are these options, each with a value: the flags
 * take yes or no there ("Insecure = yes"); --check, --background and --stop are for the
 * command line only. Relays and pins add up, in the file as on the command line. */
static int conf_load_file(struct parse_state *ps, const char *file, char err[static SHIM_ERR_LEN])
{
	static const int file_opts[] = { 'l', 'r', OPT_CA, OPT_PIN, OPT_INSECURE, OPT_PROXY,
					 OPT_NO_PROXY, OPT_KEEPALIVE, OPT_MAX_SESSIONS,
					 OPT_FWMARK, '4', '6', OPT_PROXY_PASSWORD_FILE,
					 OPT_PROXY_CA, OPT_TOKEN_FILE };
	static const int repeatable[] = { 'r', OPT_PIN, 0 };
	enum { NKEYS = sizeof(file_opts) / sizeof(file_opts[0]) };
	struct option keys[NKEYS + 1] = { { NULL, 0, NULL, 0 } };

	for (size_t i = 0; i < NKEYS; i++)
		keys[i] = (struct option){ opt_name(file_opts[i]), required_argument, NULL,
					   file_opts[i] };
	return conf_load_options(file, "Shim", keys, 'c', repeatable, conf_file_set, ps, err);
}

/* The relays no_proxy (or NO_PROXY) names go direct, whichever way the proxy was given
 * (as curl). True when that is every relay. */
static bool apply_no_proxy(struct shim_conf *c)
{
	const char *np = getenv("no_proxy");
	unsigned direct = 0;

	if (!np || !*np)
		np = getenv("NO_PROXY");
	for (unsigned r = 0; r < c->nrelays; r++) {
		c->relay_direct[r] = np && url_no_proxy_matches(np, c->relays[r].host);
		if (c->relay_direct[r]) {
			log_debug("no_proxy matches %s: direct", c->relays[r].host);
			direct++;
		}
	}
	return direct == c->nrelays;
}

/* The proxy from the environment, for the relays whose host no_proxy does not match. */
static int proxy_from_env(struct shim_conf *c, bool *all_direct, char err[static SHIM_ERR_LEN])
{
	static const char *const vars[] = { "https_proxy", "HTTPS_PROXY", "http_proxy" };
	char msg[SHIM_ERR_LEN];

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (!v || !*v)
			continue;
		if (apply_no_proxy(c)) {
			*all_direct = true;
			return 0;
		}
		if (url_parse_proxy(v, true, &c->proxy, msg) < 0) {
			snprintf(err, SHIM_ERR_LEN, "environment %s: %.220s", vars[i], msg);
			return -EINVAL;
		}
		log_debug("proxy from %s", vars[i]);
		return 0;
	}
	return 0;
}

/* --proxy-password-file: the first line of path is the password of the proxy URL's user. */
static int password_from_file(struct shim_conf *c, const char *path,
			      char err[static SHIM_ERR_LEN])
{
	char line[SHIM_CRED_MAX];
	size_t ulen, plen;
	struct stat st;
	FILE *f;

	if (!c->proxy.set || !c->proxy.user[0]) {
		snprintf(err, SHIM_ERR_LEN, "--proxy-password-file needs a proxy with a user "
			 "(--proxy http://USER@host:port, or in https_proxy)");
		return -EINVAL;
	}
	if (!(f = fopen(path, "re"))) {
		snprintf(err, SHIM_ERR_LEN, "--proxy-password-file %.200s: %s", path,
			 strerror(errno));
		return -EINVAL;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		log_warnx("--proxy-password-file %s can be read by others (mode %03o): chmod 600",
			  path, (unsigned)(st.st_mode & 0777));
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	ulen = strlen(c->proxy.user);
	plen = strlen(line);
	if (!plen || ulen + 1 + plen >= sizeof(c->proxy.cred)) {
		OPENSSL_cleanse(line, sizeof(line));
		snprintf(err, SHIM_ERR_LEN, "--proxy-password-file %.200s: %s", path,
			 plen ? "password too long" : "no password on its first line");
		return -EINVAL;
	}
	memcpy(c->proxy.cred, c->proxy.user, ulen); /* lengths checked above */
	c->proxy.cred[ulen] = ':';
	memcpy(c->proxy.cred + ulen + 1, line, plen + 1);
	OPENSSL_cleanse(line, sizeof(line));
	return 0;
}

/* --token-file: the first line of path is the relay's bearer token (RFC 6750's b64token:
 * letters, digits, -._~+/ and trailing '='), 16 to SHIM_TOKEN_MAX characters. */
static int token_from_file(struct shim_conf *c, const char *path, char err[static SHIM_ERR_LEN])
{
	char line[SHIM_TOKEN_MAX + 2];
	struct stat st;
	size_t n, body;
	FILE *f = fopen(path, "re");

	if (!f) {
		snprintf(err, SHIM_ERR_LEN, "--token-file %.200s: %s", path, strerror(errno));
		return -EINVAL;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		log_warnx("--token-file %s can be read by others (mode %03o): chmod 600", path,
			  (unsigned)(st.st_mode & 0777));
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	n = strlen(line);
	body = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/");
	if (n < 16 || n > SHIM_TOKEN_MAX || line[body + strspn(line + body, "=")] != '\0') {
		OPENSSL_cleanse(line, sizeof(line));
		snprintf(err, SHIM_ERR_LEN, "--token-file %.200s: its first line must be the token: "
			 "16 to %d characters, letters, digits and -._~+/ (then '=')", path,
			 SHIM_TOKEN_MAX);
		return -EINVAL;
	}
	memcpy(c->token, line, n + 1);
	OPENSSL_cleanse(line, sizeof(line));
	return 0;
}

/* Parse flags (and the -c file first). Exits on -h/--version; returns 0 or -EINVAL. */
enum { RUN_SERVE, RUN_CHECK_CONFIG, RUN_CHECK };

static int parse_config(int argc, char **argv, struct shim_conf *c, int *run, int *verbose,
			const char **background, char err[static SHIM_ERR_LEN])
{
	struct parse_state ps = { .conf = c };
	const char *file = NULL;
	int opt;

	memset(c, 0, sizeof(*c));
	c->keepalive_s = SHIM_DEFAULT_KEEPALIVE_S;
	c->max_sessions = SHIM_DEFAULT_MAX_SESSIONS;
	if (conf_set(&ps, 'l', "127.0.0.1:51820", err) < 0)
		return -EINVAL;

	/* pass 1: -c, help, version, usage errors */
	opterr = 1;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case OPT_VERSION:
			printf("wgws-shim " WGWS_VERSION "\n");
			exit(0);
		case OPT_STOP:
			/* PostDown: nothing else is wanted, nothing else is checked. */
			if (argc > 3 || optind != argc) {
				snprintf(err, SHIM_ERR_LEN, "--stop PIDFILE takes no other option");
				return -EINVAL;
			}
			exit(daemon_stop(optarg));
		case '?':
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		snprintf(err, SHIM_ERR_LEN, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (file && conf_load_file(&ps, file, err) < 0)
		return -EINVAL;

	/* pass 2: the command line overrides the file */
	ps.from_cli = true;
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			break;
		case 'v':
			(*verbose)++;
			break;
		case OPT_CHECK_CONFIG:
		case OPT_CHECK:
			if (*run != RUN_SERVE && *run != (opt == OPT_CHECK ? RUN_CHECK :
							   RUN_CHECK_CONFIG)) {
				snprintf(err, SHIM_ERR_LEN, "--check and --check-config exclude "
					 "each other");
				return -EINVAL;
			}
			*run = opt == OPT_CHECK ? RUN_CHECK : RUN_CHECK_CONFIG;
			break;
		case OPT_BACKGROUND:
			*background = optarg;
			break;
		default:
			if (conf_set(&ps, opt, optarg, err) < 0)
				return -EINVAL;
		}
	}

	if (!c->nrelays) {
		snprintf(err, SHIM_ERR_LEN, "--relay is required (wss://HOST[:PORT]/PATH)");
		return -EINVAL;
	}
	if (*run == RUN_CHECK && *background) {
		snprintf(err, SHIM_ERR_LEN, "--check and --background exclude each other");
		return -EINVAL;
	}
	if (c->insecure && c->npins) {
		snprintf(err, SHIM_ERR_LEN, "--pin and --insecure exclude each other");
		return -EINVAL;
	}
	if (c->insecure && c->ca_file[0]) {
		snprintf(err, SHIM_ERR_LEN, "--ca and --insecure exclude each other");
		return -EINVAL;
	}
	if (c->no_proxy) {
		if (ps.proxy_arg) {
			char shown[128];

			snprintf(err, SHIM_ERR_LEN, "--proxy '%s' and --no-proxy exclude each other",
				 url_mask_password(ps.proxy_arg, shown, sizeof(shown)));
			return -EINVAL;
		}
		memset(&c->proxy, 0, sizeof(c->proxy));
	} else if (!ps.proxy_arg && proxy_from_env(c, &ps.env_all_direct, err) < 0) {
		return -EINVAL;
	} else if (ps.proxy_arg && apply_no_proxy(c)) {
		log_info("no_proxy matches every relay: --proxy is not used");
	}
	if (c->proxy_ca[0] && c->proxy.scheme != PROXY_HTTPS) {
		snprintf(err, SHIM_ERR_LEN, "--proxy-ca is for an https:// proxy%s",
			 c->proxy.set ? ", and this one is not" : ", and none is used");
		return -EINVAL;
	}
	OPENSSL_cleanse(ps.proxy_buf, sizeof(ps.proxy_buf));
	if (ps.password_file[0] && ps.env_all_direct)
		log_debug("--proxy-password-file unused: no_proxy matches every relay");
	else if (ps.password_file[0] && password_from_file(c, ps.password_file, err) < 0)
		return -EINVAL;
	if (ps.token_file[0] && token_from_file(c, ps.token_file, err) < 0)
		return -EINVAL;
	/* The addresses the shim connects to: the proxy's, and the relays reached directly. */
	for (unsigned r = 0; c->family && r <= c->nrelays; r++) {
		bool proxy = r == c->nrelays;
		bool ip, v6;

		if (proxy ? !c->proxy.set : c->proxy.set && !c->relay_direct[r])
			continue;
		ip = proxy ? c->proxy.host_is_ip : c->relays[r].host_is_ip;
		v6 = proxy ? c->proxy.host_is_v6 : c->relays[r].host_is_v6;
		if (ip && v6 != (c->family == AF_INET6)) {
			snprintf(err, SHIM_ERR_LEN, "%s: the %s's address %.64s is not %s",
				 c->family == AF_INET ? "--ipv4" : "--ipv6",
				 proxy ? "proxy" : "relay",
				 proxy ? c->proxy.host : c->relays[r].host,
				 c->family == AF_INET ? "IPv4" : "IPv6");
			return -EINVAL;
		}
	}
	return 0;
}

static void log_start(const struct shim_conf *c)
{
	char hp[ADDR_HOST_MAX + 16];

	if (c->proxy.set)
		log_info("using proxy %s://%s%s%s", url_proxy_scheme(c->proxy.scheme), c->proxy.user,
			 c->proxy.user[0] ? "@" : "", url_format_hostport(c->proxy.host,
			 c->proxy.host_is_v6, c->proxy.port, hp, sizeof(hp)));
	else
		log_info("no proxy: connecting to the relay directly");
	if (c->fwmark)
		log_info("connections marked %lu (0x%lx): outside a full tunnel with that FwMark",
			 (unsigned long)c->fwmark, (unsigned long)c->fwmark);
	if (c->insecure)
		log_warnx("--insecure: the relay's certificate is NOT verified; anyone on the path "
			  "can read and change the tunnel's outer layer. Use --pin or --ca instead");
	else if (c->npins)
		log_info("trusting the relay by public key pin (%u pin%s), not by CA", c->npins,
			 c->npins > 1 ? "s" : "");
	else
		log_info("verifying the relay against %s", c->ca_file[0] ? c->ca_file :
								   "the system CAs");
}

/* At start, not on the first connection: a PreUp must fail with the reason. */
static void fwmark_check(uint32_t mark)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fatal("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
		int e = errno;

		close(fd);
		fatalx("--fwmark %lu: %s%s", (unsigned long)mark, strerror(e),
		       e == EPERM ? " (SO_MARK needs CAP_NET_ADMIN: run the shim as root, as "
				    "wg-quick's PreUp does)" : "");
	}
	close(fd);
}

int main(int argc, char **argv)
{
	struct shim_conf *conf = calloc(1, sizeof(*conf));
	char err[SHIM_ERR_LEN];
	struct shim *sh = NULL;
	SSL_CTX *ctx = NULL;
	const char *background = NULL;
	int run = RUN_SERVE;
	int verbose = 0, ret;

	log_init("wgws-shim", 0);
	if (!conf)
		fatalx("out of memory");
	if (parse_config(argc, argv, conf, &run, &verbose, &background, err) < 0) {
		/* a usage or configuration error: 2, as getopt's own (runtime failures: 1) */
		fatal_usage("%s", err);
	}
	log_init("wgws-shim", verbose);
	if (tls_ctx_open(&ctx, conf->ca_file, conf->npins, conf->insecure, err) < 0)
		fatalx("%s", err);
	if (run == RUN_CHECK_CONFIG) {
		printf("configuration ok\n");
		SSL_CTX_free(ctx);
		free(conf);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (conf->fwmark)
		fwmark_check(conf->fwmark);
	if (background && daemon_start(background, err) < 0)
		fatalx("%s", err);
	log_start(conf);
	if (shim_open(&sh, conf, ctx, run == RUN_CHECK ? CHECK_ONLY : CHECK_START) < 0)
		fatalx("cannot start");
	if (background)
		daemon_ready();
	else if (run != RUN_CHECK)
		(void)sd_notify(0, "READY=1"); /* Type=notify (wgws-shim@.service): the port is bound */
	ret = shim_run(sh);
	shim_close(sh);
	SSL_CTX_free(ctx);
	free(conf);
	return ret;
}
