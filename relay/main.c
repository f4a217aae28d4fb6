/* SPDX-License-Identifier: MIT */
/* wgws-relay: the gateway side of wgws. An HTTPS server whose one path upgrades to a
 * WebSocket (subprotocol "wgws") and relays length-prefixed WireGuard datagrams to the
 * local WireGuard UDP port, one connected UDP socket per tunnel, all in one event loop:
 * libev's (epoll), which lws joins as a foreign loop. lws's own loop polls every descriptor
 * on each pass, and with two per tunnel that made a busy tunnel wait behind thousands of idle
 * ones (3,000 tunnels: ~1,400 passes/s). This file owns the command line and config file,
 * the loop, the lws context and vhosts, the privilege drop after binding, signals and the
 * orderly shutdown. It never touches
 * WireGuard's configuration or keys; with --jit-socket it asks wgws-provisioner (jit.c). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ev.h>
#include <openssl/err.h>
#include <systemd/sd-daemon.h>

#include "conf.h"
#include "sandbox.h"
#include "log.h"
#include "procmetrics.h"
#include "relay.h"

struct relay relay;

enum { SHUTDOWN_GRACE_MS = 3000 };

static struct ev_loop *loop;
static ev_check pass_start;  /* after each poll, before any callback */
static ev_prepare pass_end;  /* before the next poll, after every callback and adoption */
static uint64_t pass_t0_us;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t relay_pass_elapsed_us(void)
{
	return pass_t0_us ? now_us() - pass_t0_us : 0;
}

/* lws's libev glue runs this from an ev_idle watcher, which libev invokes only in a pass
 * with no other event pending: during a burst of new connections there is always one, and a
 * tunnel whose records are decrypted and waiting (SSL_pending: lws's buffer was full, see
 * wsmask.c's drain) waited for a quiet moment. So every pass runs it. Exported by lws 4.1.6
 * (Debian), not declared in its headers. */
int _lws_plat_service_forced_tsi(struct lws_context *context, int tsi);

static void service_pending(void)
{
	if (relay.ctx && !lws_service_adjust_timeout(relay.ctx, 1, 0))
		_lws_plat_service_forced_tsi(relay.ctx, 0);
}

/* How long each pass of the loop works between two polls: what a datagram arriving for an
 * open tunnel may wait (wgws_relay_loop_pass_seconds). */
static void on_pass_start(struct ev_loop *l, ev_check *w, int revents)
{
	pass_t0_us = now_us();
}

static void on_pass_end(struct ev_loop *l, ev_prepare *w, int revents)
{
	static const uint64_t le_us[RELAY_PASS_BUCKETS - 1] = { 1000, 5000, 20000, 100000, 500000 };
	uint64_t d;
	int i;

	service_pending();
	handshake_free_some(false);
	if (!pass_t0_us)
		return;
	d = now_us() - pass_t0_us;
	pass_t0_us = 0;
	for (i = 0; i < RELAY_PASS_BUCKETS - 1 && d > le_us[i]; i++)
		;
	relay.st.pass_le[i]++;
	relay.st.pass_count++;
	relay.st.pass_sum_us += d;
	if (d > relay.st.pass_max_us)
		relay.st.pass_max_us = d;
}
static ev_signal sig_watch[3]; /* SIGTERM, SIGINT, SIGHUP */
static ev_timer shutdown_timer;
static uint64_t shutdown_deadline;

static const char usage_text[] =
	"usage: wgws-relay --listen ADDR:PORT --cert FILE --key FILE [options]\n"
	"       wgws-relay --listen-ws ADDR:PORT|unix:PATH [options]\n"
	"\n"
	"Relays WireGuard over WebSockets: clients (wgws-shim) connect with wss:// to PATH and\n"
	"their datagrams go to the local WireGuard port, one UDP socket per connection.\n"
	"Once it serves it has no capabilities, no_new_privs and a seccomp allow-list.\n"
	"\n"
	"  --listen ADDR:PORT      HTTPS address, e.g. 0.0.0.0:443, [::]:443, 127.0.0.1:8443;\n"
	"                          not needed when systemd passes the listening socket\n"
	"                          (wgws-relay.socket: port 443 without ever being root)\n"
	"  --cert FILE             TLS certificate chain (PEM)\n"
	"  --key FILE              TLS private key (PEM)\n"
	"  --path PATH             the path that upgrades (default /wg; not /healthz or\n"
	"                          /metrics, the relay's own)\n"
	"  --wg ADDR:PORT          WireGuard's UDP address (default 127.0.0.1:51820)\n"
	"  --max-conns N           most tunnels at once (default 1024)\n"
	"  --max-conns-per-ip N    most tunnels from one client address (default 128, 0 = no\n"
	"                          limit): one address cannot take more than an eighth of the\n"
	"                          default --max-conns, and an office of up to 128 users\n"
	"                          behind one NAT still fits; raise it for bigger ones\n"
	"  --max-pending N         connections allowed at once before they upgrade (TLS,\n"
	"                          request); when full, the oldest is closed (default 256)\n"
	"  --max-pending-per-ip N  of those, from one address (an IPv6 /64 counts as one);\n"
	"                          one more closes that address's oldest (default 32)\n"
	"  --rate-per-ip N         new connections per second from one address, in bursts of\n"
	"                          4 s worth; the rest are closed at once (default 16: a TLS\n"
	"                          handshake costs the relay ~1 ms of CPU; 0 = no limit)\n"
	"  --max-record N          longest datagram, bytes (default 65535); a longer record\n"
	"                          from a client closes its tunnel with 1009, a longer one\n"
	"                          from WireGuard is dropped; keep it >= WireGuard's MTU + 32\n"
	"  --queue-bytes N         send queue toward each client; datagrams that do not fit\n"
	"                          are dropped and counted (default 65536)\n"
	"  --idle-timeout SECONDS  close a tunnel with no datagrams either way (default 600,\n"
	"                          0 = never)\n"
	"  --keepalive SECONDS     ping each client this often (default 30); close one that\n"
	"                          has not answered 45 s later\n"
	"  --header-timeout SECONDS  time allowed for TLS and the upgrade request (default 10);\n"
	"                          a connection that sends nothing at all is closed after 3 s\n"
	"  --metrics ADDR:PORT     serve Prometheus text at http://ADDR:PORT/metrics (at most\n"
	"                          8 connections at once: keep it local)\n"
	"  --jit-socket PATH       ask wgws-provisioner (its --jit-socket) about each handshake\n"
	"                          initiation, holding it up to 3 s: forwarded when the peer\n"
	"                          is installed, dropped when unknown or refused; while the\n"
	"                          provisioner is unreachable, initiations go on at once\n"
	"  --flyctl yes|no         also serve flyctl's WireGuard-over-WebSocket client (fly\n"
	"                          wireguard websockets): path /, no subprotocol, its own\n"
	"                          framing, with the same limits, tokens and JIT (default yes)\n"
	"  --tokens FILE           only clients that send \"Authorization: Bearer TOKEN\" with\n"
	"                          a token FILE holds may open tunnels; FILE has one line per\n"
	"                          token: NAME SHA256-HEX-OF-THE-TOKEN [MOST-TUNNELS] (it holds\n"
	"                          hashes, not tokens: printf %%s TOKEN | sha256sum). Others get\n"
	"                          401; SIGHUP reloads it and closes (1008) the tunnels of a\n"
	"                          token that is gone\n"
	"  --proxy-protocol-from CIDR[,CIDR...]  connections from these front ends (haproxy,\n"
	"                          a load balancer) start with a PROXY protocol v2 header:\n"
	"                          its client address is the tunnel's, for the per-address\n"
	"                          limits and the logs. Their connections without a valid\n"
	"                          header are closed; other sources never send one. May be\n"
	"                          repeated: the networks add up\n"
	"  --listen-ws ADDR:PORT|unix:PATH  also plain ws:// (no TLS), for a reverse proxy on\n"
	"                          this host that ends TLS (nginx): a loopback address or a\n"
	"                          unix socket (created 0660, owned by --user and its group),\n"
	"                          nothing else. Alone (no --listen), --cert and --key are\n"
	"                          not needed, and refused\n"
	"  --forwarded-from CIDR[,CIDR...]|unix  on --listen-ws, the client of a connection from\n"
	"                          these sources (unix: every peer of a unix socket) is the\n"
	"                          one its X-Forwarded-For names (the rightmost address not\n"
	"                          itself in the list), for the limits and the logs; their\n"
	"                          upgrades without a valid one get 400. Other sources'\n"
	"                          X-Forwarded-For is ignored. May be repeated, as above\n"
	"  --user NAME             user to run as after binding, when started as root\n"
	"                          (default wgws, a system user of its own: not nobody, whose\n"
	"                          other processes could then reach what the relay can; root:\n"
	"                          stay root)\n"
	"  -c, --config FILE       read options from FILE ([Relay] section, Key = Value;\n"
	"                          keys are the long option names); flags override it\n"
	"  --check-config          validate the configuration and exit\n"
	"  -v, --verbose           more logging (twice: libwebsockets' own notices too)\n"
	"  -h, --help              this text\n"
	"  --version               print the version\n"
	"\n"
	"Signals: SIGTERM or SIGINT close every tunnel and exit. SIGHUP reloads the -c file,\n"
	"the flags and the certificate and key: new connections get the new certificate,\n"
	"open tunnels keep theirs; --rate-per-ip, --max-conns-per-ip, --max-pending-per-ip\n"
	"and --idle-timeout change at once, any other change is logged and waits for a\n"
	"restart; a reload that fails changes nothing and says why. It runs as --user, so\n"
	"the key must be readable by that user (e.g. group wgws, mode 640).\n"
	"\n"
	"Exit status: 0 after SIGTERM/SIGINT (or --check-config succeeded), 1 when it cannot\n"
	"run (a listener that cannot bind, a key that does not match), 2 for a usage or\n"
	"configuration error, named with the option at fault.\n";

enum opt_id {
	OPT_LISTEN = 256, OPT_CERT, OPT_KEY, OPT_PATH, OPT_WG, OPT_MAX_CONNS, OPT_MAX_CONNS_PER_IP,
	OPT_MAX_PENDING, OPT_MAX_PENDING_PER_IP, OPT_RATE_PER_IP, OPT_MAX_RECORD,
	OPT_QUEUE_BYTES, OPT_IDLE_TIMEOUT, OPT_KEEPALIVE, OPT_HEADER_TIMEOUT, OPT_METRICS,
	OPT_USER, OPT_JIT_SOCKET, OPT_TOKENS, OPT_PROXY_FROM, OPT_LISTEN_WS,
	OPT_FWD_FROM, OPT_FLYCTL, OPT_CHECK_CONFIG, OPT_VERSION,
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "path", required_argument, NULL, OPT_PATH },
	{ "wg", required_argument, NULL, OPT_WG },
	{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
	{ "max-conns-per-ip", required_argument, NULL, OPT_MAX_CONNS_PER_IP },
	{ "max-pending", required_argument, NULL, OPT_MAX_PENDING },
	{ "max-pending-per-ip", required_argument, NULL, OPT_MAX_PENDING_PER_IP },
	{ "rate-per-ip", required_argument, NULL, OPT_RATE_PER_IP },
	{ "max-record", required_argument, NULL, OPT_MAX_RECORD },
	{ "queue-bytes", required_argument, NULL, OPT_QUEUE_BYTES },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "keepalive", required_argument, NULL, OPT_KEEPALIVE },
	{ "header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "user", required_argument, NULL, OPT_USER },
	{ "jit-socket", required_argument, NULL, OPT_JIT_SOCKET },
	{ "tokens", required_argument, NULL, OPT_TOKENS },
	{ "proxy-protocol-from", required_argument, NULL, OPT_PROXY_FROM },
	{ "listen-ws", required_argument, NULL, OPT_LISTEN_WS },
	{ "forwarded-from", required_argument, NULL, OPT_FWD_FROM },
	{ "flyctl", required_argument, NULL, OPT_FLYCTL },
	{ "config", required_argument, NULL, 'c' },
	{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* The options whose values add up when repeated, in the -c file as on the command line;
 * any other is given once in a file. */
static const int repeatable_opts[] = { OPT_PROXY_FROM, OPT_FWD_FROM, 0 };

static int set_uint(const char *name, const char *v, unsigned long min, unsigned long max,
		    unsigned long *out, char *err)
{
	if (conf_parse_uint(v, min, max, out) < 0) {
		snprintf(err, CONF_ERR_LEN, "--%s: '%s' is not a number from %lu to %lu", name, v,
			 min, max);
		return -EINVAL;
	}
	return 0;
}

static int set_addr(const char *name, const char *v, struct sockaddr_storage *ss,
		    socklen_t *len, char *err)
{
	if (addr_parse(v, ss, len) < 0) {
		snprintf(err, CONF_ERR_LEN,
			 "--%s: '%s' is not a numeric IPv4:PORT or [IPv6]:PORT address", name, v);
		return -EINVAL;
	}
	return 0;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

/* --proxy-protocol-from and --forwarded-from: CIDR[,CIDR...], repeatable, into list (up to
 * 16); the word "unix" sets *unix_ok when it is not NULL. */
static int set_cidrs(const char *name, const char *v, struct cidr list[static 16], unsigned *n,
		     bool *unix_ok, char *err)
{
	char buf[256], *save = NULL;

	if (strlen(v) >= sizeof(buf)) {
		snprintf(err, CONF_ERR_LEN, "--%s: list too long", name);
		return -EINVAL;
	}
	strcpy(buf, v);
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (unix_ok && !strcmp(t, "unix")) {
			*unix_ok = true;
			continue;
		}
		if (*n == 16) {
			snprintf(err, CONF_ERR_LEN, "--%s: at most 16 networks", name);
			return -EINVAL;
		}
		if (cidr_parse(t, &list[*n]) < 0) {
			snprintf(err, CONF_ERR_LEN, "--%s: '%.60s' is not an address or "
				 "ADDRESS/PREFIX (with no host bits)%s", name, t,
				 unix_ok ? ", nor unix" : "");
			return -EINVAL;
		}
		(*n)++;
	}
	return 0;
}

/* --listen-ws: unix:/PATH, or a loopback ADDR:PORT. Plain WebSocket is for a proxy on this
 * host: anywhere else it would put tokens and the tunnel's metadata on the wire in clear. */
static int set_listen_ws(struct relay_cfg *cfg, const char *v, char *err)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&cfg->listen_ws;
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&cfg->listen_ws;

	cfg->has_listen_ws = true;
	memset(&cfg->listen_ws, 0, sizeof(cfg->listen_ws));
	if (!strncmp(v, "unix:", 5)) {
		if (v[5] != '/' || strlen(v + 5) >= sizeof(un->sun_path)) {
			snprintf(err, CONF_ERR_LEN, "--listen-ws: '%s' is not unix:/ABSOLUTE/PATH of "
				 "fewer than %zu bytes", v, sizeof(un->sun_path));
			return -EINVAL;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, v + 5);
		cfg->listen_ws_len = sizeof(*un);
		return 0;
	}
	if (addr_parse(v, &cfg->listen_ws, &cfg->listen_ws_len) < 0 ||
	    !((cfg->listen_ws.ss_family == AF_INET &&
	       ((const uint8_t *)&((const struct sockaddr_in *)&cfg->listen_ws)->sin_addr)[0] ==
		       127) ||
	      (cfg->listen_ws.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)))) {
		snprintf(err, CONF_ERR_LEN, "--listen-ws: '%s' is neither a loopback address "
			 "(127.0.0.1:PORT, [::1]:PORT) nor unix:/PATH: plain ws:// is only for a "
			 "reverse proxy on this host (from elsewhere, use --listen: TLS)", v);
		return -EINVAL;
	}
	return 0;
}

bool relay_proxy_trusted(const struct sockaddr_storage *peer)
{
	return cidr_list_has(relay.cfg.proxy_from, relay.cfg.n_proxy_from, peer);
}

bool relay_forwarder(const struct sockaddr_storage *peer)
{
	if (peer->ss_family == AF_UNIX)
		return relay.cfg.fwd_unix;
	return cidr_list_has(relay.cfg.fwd_from, relay.cfg.n_fwd_from, peer);
}

/* The one setter behind both the command line and the config file. */
static int set_option(void *arg, int id, const char *v, char err[static CONF_ERR_LEN])
{
	struct relay_cfg *cfg = arg;
	const char *name = "?";

	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == id)
			name = o->name;
	switch (id) {
	case OPT_LISTEN:
		cfg->has_listen = true;
		return set_addr(name, v, &cfg->listen, &cfg->listen_len, err);
	case OPT_WG:
		return set_addr(name, v, &cfg->wg, &cfg->wg_len, err);
	case OPT_METRICS:
		cfg->has_metrics = true;
		return set_addr(name, v, &cfg->metrics, &cfg->metrics_len, err);
	case OPT_CERT:
		return set_str(&cfg->cert, v);
	case OPT_KEY:
		return set_str(&cfg->key, v);
	case OPT_USER:
		return set_str(&cfg->user, v);
	case OPT_PATH:
		if (v[0] != '/' || strlen(v) >= RELAY_PATH_MAX || strpbrk(v, " ?#\t")) {
			snprintf(err, CONF_ERR_LEN,
				 "--path: '%s' must start with '/', have no spaces, '?' or '#', "
				 "and be shorter than %d bytes", v, RELAY_PATH_MAX);
			return -EINVAL;
		}
		/* The relay's own names. On the tunnel port http.c answers GET /healthz with
		 * 200 before it looks at the path: the tunnel would share its name with the
		 * health check (a plain GET there gets "ok", not the tunnel's 426). /metrics is
		 * the --metrics port's Prometheus text: kept for it, so that a path alone says
		 * what it reaches. */
		if (!strcmp(v, "/healthz") || !strcmp(v, "/metrics")) {
			snprintf(err, CONF_ERR_LEN, "--path: '%s' is the relay's own %s; choose "
				 "another path (the default is /wg)", v, strcmp(v, "/healthz") ?
				 "Prometheus path (--metrics)" :
				 "health check, answered on the tunnel port");
			return -EINVAL;
		}
		strcpy(cfg->path, v);
		return 0;
	case OPT_TOKENS:
		return set_str(&cfg->tokens, v);
	case OPT_PROXY_FROM:
		return set_cidrs(name, v, cfg->proxy_from, &cfg->n_proxy_from, NULL, err);
	case OPT_LISTEN_WS:
		return set_listen_ws(cfg, v, err);
	case OPT_FWD_FROM:
		return set_cidrs(name, v, cfg->fwd_from, &cfg->n_fwd_from, &cfg->fwd_unix, err);
	case OPT_FLYCTL:
		if (conf_parse_bool(v, &cfg->flyctl) < 0) {
			snprintf(err, CONF_ERR_LEN, "--flyctl: '%s' is not yes or no", v);
			return -EINVAL;
		}
		return 0;
	case OPT_JIT_SOCKET:
		/* The provisioner's spelling: an absolute path that fits a sockaddr_un. */
		if (v[0] != '/' || strlen(v) >= sizeof(cfg->jit_socket)) {
			snprintf(err, CONF_ERR_LEN, "--jit-socket: '%s' is not an absolute path of "
				 "fewer than %zu bytes", v, sizeof(cfg->jit_socket));
			return -EINVAL;
		}
		strcpy(cfg->jit_socket, v);
		return 0;
	case OPT_MAX_CONNS:
		return set_uint(name, v, 1, 1000000, &cfg->max_conns, err);
	case OPT_MAX_CONNS_PER_IP:
		return set_uint(name, v, 0, 1000000, &cfg->max_conns_per_ip, err);
	case OPT_MAX_PENDING:
		return set_uint(name, v, 1, 1000000, &cfg->max_pending, err);
	case OPT_MAX_PENDING_PER_IP:
		return set_uint(name, v, 1, 1000000, &cfg->max_pending_per_ip, err);
	case OPT_RATE_PER_IP:
		return set_uint(name, v, 0, 1000000, &cfg->rate_per_ip, err);
	case OPT_MAX_RECORD:
		return set_uint(name, v, 148, FRAME_MAX_LEN, &cfg->max_record, err);
	case OPT_QUEUE_BYTES:
		return set_uint(name, v, 4096, 16 << 20, &cfg->queue_bytes, err);
	case OPT_IDLE_TIMEOUT:
		return set_uint(name, v, 0, 86400 * 7, &cfg->idle_timeout_s, err);
	case OPT_KEEPALIVE:
		return set_uint(name, v, 1, 3600, &cfg->keepalive_s, err);
	case OPT_HEADER_TIMEOUT:
		return set_uint(name, v, 1, 300, &cfg->header_timeout_s, err);
	default:
		snprintf(err, CONF_ERR_LEN, "unknown option");
		return -EINVAL;
	}
}

static void cfg_defaults(struct relay_cfg *cfg)
{
	char err[CONF_ERR_LEN];

	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->path, "/wg");
	if (addr_parse("127.0.0.1:51820", &cfg->wg, &cfg->wg_len) < 0)
		fatalx("default --wg");
	cfg->max_conns = 1024;
	cfg->max_pending = 256;
	cfg->max_pending_per_ip = 32;
	cfg->rate_per_ip = 16;
	cfg->max_conns_per_ip = 128;
	cfg->max_record = FRAME_MAX_LEN;
	cfg->queue_bytes = 65536;
	cfg->idle_timeout_s = 600;
	cfg->keepalive_s = 30;
	cfg->header_timeout_s = 10;
	cfg->flyctl = true;
	if (set_str(&cfg->user, RELAY_USER) < 0)
		fatalx("out of memory");
	(void)err;
}

static void check_readable(const char *what, const char *path)
{
	FILE *f = fopen(path, "re");

	if (!f)
		fatal("%s %s", what, path);
	fclose(f);
}

/* Whether the relay serves TLS itself: --listen, or systemd's socket (443). Without, only
 * --listen-ws, behind a reverse proxy that ends TLS. */
static bool relay_tls(const struct relay_cfg *cfg)
{
	/* sd_listen_fds() unset LISTEN_FDS at start: a reload goes by relay.activated */
	return cfg->has_listen || relay.activated || getenv("LISTEN_FDS");
}

/* Parse -c first (file), then every other flag over it, into cfg (defaults first). For
 * start-up and for SIGHUP (reloading: -h and --version are ignored). 0, or -EINVAL with err
 * naming the option at fault. */
static int load_args(struct relay_cfg *cfg, int argc, char **argv, bool *check_only,
		     bool reloading, char err[static CONF_ERR_LEN])
{
	int c;

	cfg_defaults(cfg);
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "c:vh", long_opts, NULL)) != -1) {
		if (c == 'c' &&
		    conf_load_options(optarg, "Relay", long_opts, 'c', repeatable_opts, set_option,
				      cfg, err) < 0)
			return -EINVAL;
	}
	optind = 0;
	opterr = !reloading;
	while ((c = getopt_long(argc, argv, "c:vh", long_opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			break;
		case 'v':
			cfg->verbosity++;
			break;
		case 'h':
			if (reloading)
				break;
			fputs(usage_text, stdout);
			exit(0);
		case OPT_VERSION:
			if (reloading)
				break;
			printf("wgws-relay %s\n", RELAY_VERSION);
			exit(0);
		case OPT_CHECK_CONFIG:
			*check_only = true;
			break;
		case '?':
			if (reloading)
				break;
			fputs(usage_text, stderr);
			exit(2);
		default:
			if (set_option(cfg, c, optarg, err) < 0)
				return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, CONF_ERR_LEN, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!relay_tls(cfg) && !cfg->has_listen_ws) {
		/* LISTEN_FDS: systemd's socket, see main() */
		snprintf(err, CONF_ERR_LEN, "--listen ADDR:PORT is required (or a systemd socket, "
			 "or --listen-ws for a reverse proxy)");
		return -EINVAL;
	}
	if (relay_tls(cfg) && (!cfg->cert || !cfg->key)) {
		snprintf(err, CONF_ERR_LEN, "--cert FILE and --key FILE are required");
		return -EINVAL;
	}
	if (!relay_tls(cfg) && (cfg->cert || cfg->key)) {
		snprintf(err, CONF_ERR_LEN, "--cert and --key are for --listen (TLS), which is not "
			 "given: only --listen-ws (plain ws://)");
		return -EINVAL;
	}
	if ((cfg->n_fwd_from || cfg->fwd_unix) && !cfg->has_listen_ws) {
		snprintf(err, CONF_ERR_LEN, "--forwarded-from is for --listen-ws, which is not given");
		return -EINVAL;
	}
	if (cfg->has_listen_ws && (cfg->listen_ws.ss_family == AF_UNIX ? cfg->n_fwd_from > 0 :
				   cfg->fwd_unix)) {
		snprintf(err, CONF_ERR_LEN, "--forwarded-from: %s, but --listen-ws is %s",
			 cfg->fwd_unix ? "unix" : "networks", cfg->fwd_unix ? "TCP" : "a unix socket");
		return -EINVAL;
	}
	if (cfg->has_metrics && addr_equal((struct sockaddr *)&cfg->metrics,
					   (struct sockaddr *)&cfg->listen)) {
		snprintf(err, CONF_ERR_LEN, "--metrics and --listen must differ");
		return -EINVAL;
	}
	return 0;
}

static void parse_args(struct relay_cfg *cfg, int argc, char **argv, bool *check_only)
{
	char err[CONF_ERR_LEN];
	struct passwd *pw;

	if (load_args(cfg, argc, argv, check_only, false, err) < 0)
		fatal_usage("%s", err);
	if (cfg->tokens && tokens_load(cfg->tokens, &relay.tokens, err) < 0)
		fatal_usage("%s", err);
	if (relay_tls(cfg)) {
		check_readable("--cert", cfg->cert);
		check_readable("--key", cfg->key);
	}
	pw = getpwnam(cfg->user);
	if (getuid() == 0 && !pw)
		fatalx("--user: no such user '%s'%s", cfg->user, strcmp(cfg->user, RELAY_USER) ? "" :
		       " (create it: useradd --system --no-create-home --shell /usr/sbin/nologin "
		       "wgws; make deps and make install do)");
	relay.user_uid = pw ? pw->pw_uid : geteuid();
	relay.user_gid = pw ? pw->pw_gid : getegid();
	if (cfg->max_record < 1452)
		log_warnx("--max-record %lu is below 1452, the size of a full WireGuard packet at "
			  "the default MTU 1420: such packets will be refused", cfg->max_record);
}

static void cfg_free(struct relay_cfg *cfg)
{
	free(cfg->cert);
	free(cfg->key);
	free(cfg->user);
	free(cfg->tokens);
	cfg->cert = cfg->key = cfg->user = cfg->tokens = NULL;
}

/* OpenSSL's first queued error, in words (or fallback), the queue emptied. */
static const char *ssl_error(const char *fallback, char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", fallback);
	ERR_clear_error();
	return buf;
}

/* t as "2027-03-01 12:00 UTC" (a static buffer: one use per line). */
static const char *ctime_utc(time_t t)
{
	static char buf[32];
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
	return buf;
}

enum { CERT_WARN_DAYS = 30 };

/* Load cert and key as the relay will serve them (a real TLS context: the chain parsed, the
 * key matched against it) and say when the certificate expires: a warning within
 * CERT_WARN_DAYS, or once it has. NULL with err filled when they cannot be used. */
static SSL_CTX *tls_load(const char *cert, const char *key, time_t *not_after,
			 char err[static CONF_ERR_LEN])
{
	const char *what;
	char why[192];
	SSL_CTX *ctx = handshake_ctx_new(cert, key, &what);
	time_t now = time(NULL);

	if (!ctx) {
		snprintf(err, CONF_ERR_LEN, "%.64s: %.180s", what,
			 ssl_error("no detail from OpenSSL", why, sizeof(why)));
		return NULL;
	}
	*not_after = 0;
	if (handshake_cert_expiry(ctx, not_after) == 0) {
		if (*not_after <= now)
			log_warnx("--cert %s EXPIRED %ld day(s) ago: clients that verify it refuse "
				  "the relay (pinned ones still connect)", cert,
				  (long)((now - *not_after) / 86400));
		else if (*not_after - now < (time_t)CERT_WARN_DAYS * 86400)
			log_warnx("--cert %s expires in %ld day(s): renew it, then SIGHUP (new "
				  "connections get the new one, open tunnels stay)", cert,
				  (long)((*not_after - now) / 86400));
	}
	return ctx;
}

/* Whether path can be read now, as the user the relay runs as after start-up. */
static int readable_now(const char *opt, const char *path, char err[static CONF_ERR_LEN])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC); /* not access(): outside the sandbox's list */

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == EACCES && geteuid() != 0)
		snprintf(err, CONF_ERR_LEN, "%s %.100s: not readable by uid %u, whom the relay runs "
			 "as: let it read the file (e.g. chgrp %.32s FILE; chmod 640 FILE)", opt,
			 path, (unsigned)geteuid(), relay.cfg.user);
	else
		snprintf(err, CONF_ERR_LEN, "%s %.160s: %s", opt, path, strerror(errno));
	return -1;
}

/* A reload cannot start or stop serving TLS (the listener, the handshake thread). */
static int tls_kept(const struct relay_cfg *next, char err[static CONF_ERR_LEN])
{
	if (!next->cert == !relay.cfg.cert)
		return 0;
	snprintf(err, CONF_ERR_LEN, "--listen (TLS) %s: only a restart can do that",
		 next->cert ? "added" : "removed");
	return -EINVAL;
}

/* SIGHUP: the configuration again (file and flags, as at start) and the certificate and key.
 * New connections get the new certificate; open tunnels keep theirs. The few settings that
 * can change at once do; any other change is named and waits for a restart. A reload that
 * fails changes nothing and says why. */
static void reload(void)
{
	struct relay_cfg next;
	struct tokens *tokens = NULL;
	char err[CONF_ERR_LEN], changed[512] = "", restart[512] = "";
	bool check = false;
	SSL_CTX *ctx = NULL;
	time_t not_after = 0;

	log_info("SIGHUP: reloading the configuration, the certificate and the key");
	/* Everything read and checked before anything changes. */
	if (load_args(&next, relay.argc, relay.argv, &check, true, err) < 0 ||
	    tls_kept(&next, err) < 0 ||
	    (next.cert && (readable_now("--cert", next.cert, err) < 0 ||
			   readable_now("--key", next.key, err) < 0)) ||
	    (next.tokens && readable_now("--tokens", next.tokens, err) < 0) ||
	    (next.tokens && tokens_load(next.tokens, &tokens, err) < 0) ||
	    (next.cert && !(ctx = tls_load(next.cert, next.key, &not_after, err)))) {
		relay.st.reloads_failed++;
		log_warnx("reload failed, nothing changed (the old certificate stays): %s", err);
		tokens_free(tokens);
		cfg_free(&next);
		return;
	}
	if (ctx) {
		handshake_set_ctx(ctx);
		relay.cert_not_after = not_after;
	}
	if (relay.tokens || tokens) {
		unsigned before = tokens_count(relay.tokens);

		tokens_free(relay.tokens);
		relay.tokens = tokens;
		snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed),
			 " tokens %u -> %u%s;", before, tokens_count(tokens), tokens ? "" :
			 " (--tokens gone: anyone may connect)");
		conn_tokens_changed();
	}
	set_str(&relay.cfg.tokens, next.tokens ? next.tokens : "");
	if (!next.tokens) {
		free(relay.cfg.tokens);
		relay.cfg.tokens = NULL;
	}
#define LIVE(field, name)                                                                    	do {                                                                                 		if (next.field != relay.cfg.field) {                                         			snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed),       				 " %s %lu -> %lu;", name, relay.cfg.field, next.field);       			relay.cfg.field = next.field;                                        		}                                                                            	} while (0)
#define RESTART(differs, name)                                                               	do {                                                                                 		if (differs)                                                                 			snprintf(restart + strlen(restart), sizeof(restart) - strlen(restart),       				 " %s", name);                                               	} while (0)
	LIVE(rate_per_ip, "--rate-per-ip");
	LIVE(max_conns_per_ip, "--max-conns-per-ip");
	LIVE(max_pending_per_ip, "--max-pending-per-ip");
	LIVE(idle_timeout_s, "--idle-timeout");
	if (next.flyctl != relay.cfg.flyctl) {
		snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed),
			 " --flyctl %s;", next.flyctl ? "yes" : "no");
		relay.cfg.flyctl = next.flyctl; /* read at each upgrade */
	}
	if (next.n_proxy_from != relay.cfg.n_proxy_from ||
	    memcmp(next.proxy_from, relay.cfg.proxy_from, sizeof(next.proxy_from))) {
		snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed),
			 " --proxy-protocol-from %u -> %u networks;", relay.cfg.n_proxy_from,
			 next.n_proxy_from);
		memcpy(relay.cfg.proxy_from, next.proxy_from, sizeof(next.proxy_from));
		relay.cfg.n_proxy_from = next.n_proxy_from; /* read at each accept */
	}
	if (next.n_fwd_from != relay.cfg.n_fwd_from || next.fwd_unix != relay.cfg.fwd_unix ||
	    memcmp(next.fwd_from, relay.cfg.fwd_from, sizeof(next.fwd_from))) {
		snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed),
			 " --forwarded-from %u -> %u networks%s;", relay.cfg.n_fwd_from,
			 next.n_fwd_from, next.fwd_unix ? " and unix" : "");
		memcpy(relay.cfg.fwd_from, next.fwd_from, sizeof(next.fwd_from));
		relay.cfg.n_fwd_from = next.n_fwd_from; /* read at each accept */
		relay.cfg.fwd_unix = next.fwd_unix;
	}
	RESTART(next.has_listen_ws != relay.cfg.has_listen_ws ||
		(next.has_listen_ws && (next.listen_ws_len != relay.cfg.listen_ws_len ||
					memcmp(&next.listen_ws, &relay.cfg.listen_ws,
					       next.listen_ws_len))), "--listen-ws");
	RESTART(!relay.activated && !addr_equal((struct sockaddr *)&next.listen,
						 (struct sockaddr *)&relay.cfg.listen), "--listen");
	RESTART(next.has_metrics != relay.cfg.has_metrics ||
		(next.has_metrics && !addr_equal((struct sockaddr *)&next.metrics,
						 (struct sockaddr *)&relay.cfg.metrics)),
		"--metrics");
	RESTART(!addr_equal((struct sockaddr *)&next.wg, (struct sockaddr *)&relay.cfg.wg), "--wg");
	RESTART(strcmp(next.path, relay.cfg.path) != 0, "--path");
	RESTART(strcmp(next.user, relay.cfg.user) != 0, "--user");
	RESTART(strcmp(next.jit_socket, relay.cfg.jit_socket) != 0, "--jit-socket");
	RESTART(next.max_conns != relay.cfg.max_conns, "--max-conns");
	RESTART(next.max_pending != relay.cfg.max_pending, "--max-pending");
	RESTART(next.max_record != relay.cfg.max_record, "--max-record");
	RESTART(next.queue_bytes != relay.cfg.queue_bytes, "--queue-bytes");
	RESTART(next.keepalive_s != relay.cfg.keepalive_s, "--keepalive");
	RESTART(next.header_timeout_s != relay.cfg.header_timeout_s, "--header-timeout");
	RESTART(next.verbosity != relay.cfg.verbosity, "-v");
#undef LIVE
#undef RESTART
	if (next.cert && (strcmp(next.cert, relay.cfg.cert) || strcmp(next.key, relay.cfg.key))) {
		set_str(&relay.cfg.cert, next.cert);
		set_str(&relay.cfg.key, next.key);
	}
	relay.st.reloads++;
	if (relay.cfg.cert)
		log_info("reloaded: new connections get the certificate from %s (expires %s); open "
			 "tunnels (%u) keep theirs%s%s", relay.cfg.cert,
			 not_after ? ctime_utc(not_after) : "?", relay.conns_active,
			 changed[0] ? "; changed now:" : "", changed);
	else
		log_info("reloaded: open tunnels (%u) stay%s%s", relay.conns_active,
			 changed[0] ? "; changed now:" : "", changed);
	if (restart[0])
		log_warnx("reload: changed, but only a restart applies it:%s (the old values stay)",
			  restart);
	cfg_free(&next);
}

/* The address the kernel would send from toward --wg: tunnels' sockets bind to it (port 0)
 * so that only that path reaches them, and stay unconnected (see relay.h). */
static void find_udp_source(const struct relay_cfg *cfg)
{
	char addr[ADDR_STR_LEN];
	int fd = socket(cfg->wg.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	relay.udp_local_len = sizeof(relay.udp_local);
	if (fd < 0 || connect(fd, (const struct sockaddr *)&cfg->wg, cfg->wg_len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&relay.udp_local, &relay.udp_local_len) < 0)
		fatal("no route to --wg %s", addr_format((const struct sockaddr *)&cfg->wg, addr));
	close(fd);
	if (relay.udp_local.ss_family == AF_INET)
		((struct sockaddr_in *)&relay.udp_local)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&relay.udp_local)->sin6_port = 0;
}

static void lws_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && line[n - 1] == '\n')
		n--;
	if (level & LLL_ERR)
		log_warnx_ratelimited("lws: %.*s", (int)n, line);
	else
		log_debug("lws: %.*s", (int)n, line);
}

/* A client's upgrade may name only these: lws binds a subprotocol by name among its
 * vhost's protocols. */
static const struct lws_protocols tunnel_protocols[] = {
	{ "http", http_callback, 0, 0, 0, NULL, 0 },
	{ RELAY_SUBPROTOCOL, conn_ws_callback, 0 /* set at start */, 16384, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* Descriptors the relay adopts itself, on a vhost that never sees a client. */
static const struct lws_protocols internal_protocols[] = {
	{ "wgws-udp", conn_udp_callback, 0, 0, 0, NULL, 0 },
	{ "wgws-jit", jit_callback, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static struct lws_protocols protocols[LWS_ARRAY_SIZE(tunnel_protocols)];
static lws_retry_bo_t validity;

/* The vhosts have no listeners: admit.c accepts and hands connections over. */
static void create_vhosts(struct relay_cfg *cfg)
{
	struct lws_context_creation_info info;

	memcpy(protocols, tunnel_protocols, sizeof(protocols));
	/* flyctl's tunnels name no subprotocol: lws binds them to protocols[0] (http.c) */
	protocols[0].per_session_data_size = conn_user_size();
	protocols[1].per_session_data_size = conn_user_size();

	validity.secs_since_valid_ping = (uint16_t)cfg->keepalive_s;
	validity.secs_since_valid_hangup = (uint16_t)(cfg->keepalive_s + 45);

	memset(&info, 0, sizeof(info));
	info.vhost_name = "wgws";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	/* TLS on this vhost, unless only --listen-ws (whose connections are plain anyway) */
	info.options = cfg->cert ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
	info.protocols = protocols;
	info.ssl_cert_filepath = cfg->cert;
	info.ssl_private_key_filepath = cfg->key;
	info.ssl_options_set = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
	info.alpn = "http/1.1"; /* handshakes run in handshake.c, which answers the same */
	info.retry_and_idle_policy = &validity;
	/* Slowloris: a connection gets header_timeout for TLS, and as long again for its
	 * request once TLS is up (one that sends nothing is admit.c's, for 3 s). */
	info.keepalive_timeout = (int)cfg->header_timeout_s;
	info.timeout_secs_ah_idle = (int)cfg->header_timeout_s;
	relay.vhost = lws_create_vhost(relay.ctx, &info);
	if (!relay.vhost)
		fatalx("cannot use --cert %s --key %s (see the lws error above; is the key the "
		       "certificate's?)", cfg->cert, cfg->key);

	memset(&info, 0, sizeof(info));
	info.vhost_name = "internal";
	info.port = CONTEXT_PORT_NO_LISTEN; /* never the tunnel vhost's "port": see metrics.c */
	info.protocols = internal_protocols;
	relay.internal_vhost = lws_create_vhost(relay.ctx, &info);
	if (!relay.internal_vhost)
		fatalx("cannot create the internal vhost");
}

/* The listening socket systemd passed (wgws-relay.socket: 443 without ever being root), or
 * -1 when there is none. Its address becomes --listen's (for the logs and the checks). */
static int activated_listener(void)
{
	char a[ADDR_STR_LEN], b[ADDR_STR_LEN];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int n = sd_listen_fds(1), fd = SD_LISTEN_FDS_START;

	if (n <= 0)
		return -1;
	if (n > 1)
		fatalx("systemd passed %d sockets: the relay takes one (a single ListenStream=)", n);
	if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		fatalx("the socket systemd passed is not a listening TCP socket");
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		fatal("the socket systemd passed");
	if (relay.cfg.has_listen && !addr_equal((struct sockaddr *)&ss,
						(struct sockaddr *)&relay.cfg.listen))
		log_warnx("--listen %s ignored: systemd passed a socket on %s",
			  addr_format((struct sockaddr *)&relay.cfg.listen, a),
			  addr_format((struct sockaddr *)&ss, b));
	memcpy(&relay.cfg.listen, &ss, len);
	relay.cfg.listen_len = len;
	relay.cfg.has_listen = true;
	relay.activated = true;
	return fd;
}

/* "ADDR" (TLS), "ws://ADDR", "ws+unix:PATH" or both, for the start-up lines. */
static const char *listeners_text(char *buf, size_t size)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)&relay.cfg.listen_ws;
	char a[ADDR_STR_LEN], b[ADDR_STR_LEN];
	int n = 0;

	buf[0] = '\0';
	if (relay.cfg.has_listen)
		n = snprintf(buf, size, "%s%s",
			     addr_format((const struct sockaddr *)&relay.cfg.listen, a),
			     relay.activated ? " (a socket from systemd)" : "");
	if (relay.cfg.has_listen_ws && n >= 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, "%sws%s%s%s", n ? " and " : "",
			 un->sun_family == AF_UNIX ? "+unix:" : "://",
			 un->sun_family == AF_UNIX ? un->sun_path :
			 addr_format((const struct sockaddr *)&relay.cfg.listen_ws, b),
			 relay.cfg.n_fwd_from || relay.cfg.fwd_unix ?
			 " (X-Forwarded-For from --forwarded-from)" : "");
	return buf;
}

/* Bind one listener, or exit saying why. */
static int listen_or_die(const char *what, const struct sockaddr_storage *ss, socklen_t len)
{
	char addr[ADDR_STR_LEN], why[160];
	int fd = admit_listen(ss, len, relay.user_uid, relay.user_gid);

	if (fd >= 0)
		return fd;
	if (ss->ss_family == AF_UNIX)
		fatalx("%s unix:%s: %s", what, ((const struct sockaddr_un *)ss)->sun_path,
		       fd == -EEXIST ? "a file that is not a socket is there" :
		       fd == -EADDRINUSE ? "a process listens on that socket (another relay?)" :
		       strerror(-fd));
	fatalx("%s %s: %s", what, addr_format((const struct sockaddr *)ss, addr),
	       addr_bind_error(-fd, ss, why, sizeof(why)));
}

static void drop_privileges(const char *user)
{
	struct passwd *pw;

	if (getuid() != 0 && geteuid() != 0)
		return;
	pw = getpwnam(user);
	if (!pw)
		fatalx("--user: no such user '%s'", user);
	if (pw->pw_uid == getuid() && pw->pw_gid == getgid()) {
		/* --user root as root: nothing to drop (and in a user namespace such as
		 * unshare -Ur, where uid 0 may not call setgroups, nothing that could be) */
		log_info("running as %s (uid %u), as asked", user, (unsigned)pw->pw_uid);
		return;
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		fatal("cannot drop privileges to %s", user);
	if (pw->pw_uid != 0 && setuid(0) == 0)
		fatalx("privilege drop to %s did not stick", user);
	log_info("running as %s (uid %u)", user, (unsigned)pw->pw_uid);
}

/* What the relay may still do once it serves, beyond any daemon's loop (sandbox.c): a UDP
 * socket per tunnel, the unix socket to the provisioner, opening files read-only (what
 * libraries read lazily). Everything else kills it (SIGSYS): a parser bug cannot be turned
 * into exec(), ptrace() or a file written. */
static const char *const relay_calls[] = { "bind", "connect", "listen", "epoll_create1" };

static void confine(void)
{
	struct sandbox_list list;
	int ret;

	sandbox_list_init(&list);
	ret = sandbox_allow_daemon(&list);
	if (!ret)
		ret = sandbox_allow_names(&list, relay_calls, LWS_ARRAY_SIZE(relay_calls));
	if (!ret)
		ret = sandbox_allow_if(&list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_INET);
	if (!ret)
		ret = sandbox_allow_if(&list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_INET6);
	if (!ret)
		ret = sandbox_allow_if(&list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX);
	if (!ret)
		ret = sandbox_allow_if(&list, "openat", 2, SANDBOX_ARG_MASKED_EQ,
				       O_ACCMODE | O_CREAT, O_RDONLY);
	if (ret == -ENOENT)
		fatalx("seccomp: no system call '%s' on this architecture", list.bad_name);
	if (ret < 0 || (ret = sandbox_drop_caps()) < 0 ||
	    (ret = sandbox_enter(&list, SANDBOX_KILL)) < 0) {
		errno = -ret;
		fatal("cannot confine the relay (capabilities, no_new_privs, seccomp)");
	}
}

static void on_hup(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	if (!relay.shutting_down)
		reload();
}

/* While shutting down: leave the loop once every tunnel is closed, or at the deadline. */
static void shutdown_check(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (!relay.conns_active || relay_now_ms() > shutdown_deadline)
		ev_break(l, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)revents;
	if (relay.shutting_down)
		return;
	log_info("signal %d: closing %u tunnels and exiting", w->signum, relay.conns_active);
	relay.shutting_down = true;
	admit_stop_listening();
	shutdown_deadline = relay_now_ms() + SHUTDOWN_GRACE_MS;
	conn_close_all();
	ev_timer_init(&shutdown_timer, shutdown_check, 0., 0.02);
	ev_timer_start(l, &shutdown_timer);
}

static void sweep_cb(lws_sorted_usec_list_t *sul)
{
	uint64_t now_ms = relay_now_ms();

	conn_sweep(now_ms);
	admit_sweep(now_ms);
	if (++relay.sweeps % RELAY_WGPORT_SWEEPS == 0)
		wgport_check();
	/* After a burst, give the freed heap back: glibc keeps it (12 MiB after 201 tunnels
	 * came and went). Trimming walks the free lists; only worth it after many frees. */
	if (relay.conns_active > relay.conns_peak)
		relay.conns_peak = relay.conns_active;
	else if (relay.conns_peak - relay.conns_active >= RELAY_TRIM_AFTER) {
		malloc_trim(0);
		relay.conns_peak = relay.conns_active;
	}
	lws_sul_schedule(relay.ctx, 0, &relay.sweep, sweep_cb, RELAY_SWEEP_MS * LWS_US_PER_MS);
}

/* Each tunnel holds two descriptors (TCP, UDP), each pending connection one, and evicted
 * handshakes the thread has not let go of yet up to --max-pending more (admit.c): make sure
 * the limits fit in RLIMIT_NOFILE, or accept() fails with EMFILE and lws spins on it.
 *
 * The soft limit is set to what the limits need, lowered too when it is higher: lws sizes its
 * descriptor table from it, and Debian's lws 4.1.6 is a _DEBUG build whose every close scans
 * that whole table (sanity_assert_no_sockfd_traces): 160 KB at ulimit -n 20000, 8 MB under
 * LimitNOFILE=1048576, on the loop, per close. Then the kernel's descriptor table is grown to
 * the limit at once, while the relay has one thread: growing it later, with the handshake
 * thread sharing it, waits for an RCU grace period (expand_files), and the loop slept 10 ms
 * in the socket() of a new tunnel at each doubling during a burst (tests/e2e/test_churn.sh). */
static void fit_fd_limit(struct relay_cfg *cfg)
{
	enum { SPARE_FDS = 64 + METRICS_CONNS_MAX }; /* listeners, metrics, lws's own, log */
	struct rlimit rl;
	unsigned long need = cfg->max_conns * 2 + cfg->max_pending * 2 + SPARE_FDS;
	int null_fd, fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		fatal("getrlimit");
	if (rl.rlim_cur != need && (rl.rlim_cur > need || rl.rlim_cur < rl.rlim_max)) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot set the open-file limit to %lu", need);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need) {
		if (rl.rlim_cur < cfg->max_pending * 2 + SPARE_FDS + 2)
			fatalx("open-file limit %llu is too low for --max-pending %lu (raise ulimit -n)",
			       (unsigned long long)rl.rlim_cur, cfg->max_pending);
		cfg->max_conns = (rl.rlim_cur - cfg->max_pending * 2 - SPARE_FDS) / 2;
		log_warnx("open-file limit %llu: --max-conns lowered to %lu (raise ulimit -n for more)",
			  (unsigned long long)rl.rlim_cur, cfg->max_conns);
	}
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fd = null_fd < 0 ? -1 : fcntl(null_fd, F_DUPFD_CLOEXEC, (int)(rl.rlim_cur - 1));
	if (fd < 0)
		log_warn("cannot grow the descriptor table to %llu (later growth waits for RCU)",
			 (unsigned long long)rl.rlim_cur);
	else
		close(fd);
	if (null_fd >= 0)
		close(null_fd);
}

int main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct sigaction sa;
	char addr[ADDR_STR_LEN], addr_text[sizeof(((struct sockaddr_un *)0)->sun_path) + 96];
	bool check_only = false;
	char err[CONF_ERR_LEN];
	SSL_CTX *tls_ctx = NULL;
	void *foreign_loops[1];
	int tunnel_fd = -1, plain_fd = -1, metrics_fd = -1, ret;
	const char *what;

	log_init("wgws-relay", 0);
	procmetrics_init();
	relay.argc = argc;
	relay.argv = argv;
	parse_args(&relay.cfg, argc, argv, &check_only);
	log_init("wgws-relay", relay.cfg.verbosity);
	if (relay.cfg.cert &&
	    !(tls_ctx = tls_load(relay.cfg.cert, relay.cfg.key, &relay.cert_not_after, err)))
		fatalx("%s", err);
	if (check_only) {
		SSL_CTX_free(tls_ctx);
		printf("configuration ok\n");
		if (tls_ctx)
			printf("certificate and key match; the certificate expires %s\n",
			       relay.cert_not_after ? ctime_utc(relay.cert_not_after) : "(unknown)");
		else
			printf("no TLS listener: only --listen-ws (plain ws://)\n");
		if (relay.tokens)
			printf("--tokens: %u tokens\n", tokens_count(relay.tokens));
		return 0;
	}

	lws_set_log_level(relay.cfg.verbosity >= 2 ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR,
			  lws_emit);
	if (wsmask_init() < 0)
		fatalx("the frame check cannot see the TLS stream (SSL_read not interposed: a "
		       "build problem)");
	fit_fd_limit(&relay.cfg);
	find_udp_source(&relay.cfg);
	if (wgport_open() < 0)
		log_warn("sock_diag: WireGuard's port owner goes unchecked");
	wgport_check();
	relay.udp_buf = malloc((size_t)RELAY_UDP_BATCH * (relay.cfg.max_record + 1));
	if (!relay.udp_buf)
		fatalx("out of memory");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	loop = ev_loop_new(EVFLAG_AUTO);
	if (!loop)
		fatalx("cannot create the event loop (libev)");
	ev_signal_init(&sig_watch[0], on_signal, SIGTERM);
	ev_signal_init(&sig_watch[1], on_signal, SIGINT);
	ev_signal_init(&sig_watch[2], on_hup, SIGHUP);
	ev_signal_start(loop, &sig_watch[0]);
	ev_signal_start(loop, &sig_watch[1]);
	ev_signal_start(loop, &sig_watch[2]);
	ev_check_init(&pass_start, on_pass_start);
	ev_set_priority(&pass_start, EV_MAXPRI);
	ev_check_start(loop, &pass_start);
	ev_prepare_init(&pass_end, on_pass_end);
	ev_set_priority(&pass_end, EV_MINPRI);
	ev_prepare_start(loop, &pass_end);

	memset(&info, 0, sizeof(info));
	/* lws joins our libev loop (its evlib_ev plugin, from libwebsockets-evlib-ev) */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		       LWS_SERVER_OPTION_LIBEV;
	foreign_loops[0] = loop;
	info.foreign_loops = foreign_loops;
	info.timeout_secs = (unsigned)relay.cfg.header_timeout_s;
	info.pt_serv_buf_size = 32768;
	info.uid = (uid_t)-1;
	info.gid = (gid_t)-1;
	relay.ctx = lws_create_context(&info);
	if (!relay.ctx)
		fatalx("cannot create the libwebsockets context");
	create_vhosts(&relay.cfg);
	tunnel_fd = activated_listener();
	if (tunnel_fd < 0 && relay.cfg.has_listen)
		tunnel_fd = listen_or_die("--listen", &relay.cfg.listen, relay.cfg.listen_len);
	if (relay.cfg.has_listen_ws)
		plain_fd = listen_or_die("--listen-ws", &relay.cfg.listen_ws,
					 relay.cfg.listen_ws_len);
	if (relay.cfg.has_metrics)
		metrics_fd = listen_or_die("--metrics", &relay.cfg.metrics, relay.cfg.metrics_len);
	if (tls_ctx && (ret = handshake_init(tls_ctx, &what)) < 0)
		fatalx("cannot set up TLS for the handshake thread: %s", what);
	/* As root the first time; reconnects run as --user, whom the provisioner allows. */
	jit_start();
	drop_privileges(relay.cfg.user);
	if ((ret = admit_start(loop, tunnel_fd, plain_fd)) < 0) {
		errno = -ret;
		fatal("cannot start admission (its slots, the handshake thread)");
	}
	if (metrics_fd >= 0)
		metrics_start(loop, metrics_fd);
	/* Type=notify: serving from here on (before the sandbox: no new calls after it) */
	(void)sd_notifyf(0, "READY=1\nSTATUS=listening on %s",
			 listeners_text(addr_text, sizeof(addr_text)));
	confine();

	log_info("listening on %s, path %s, relaying to WireGuard at %s",
		 listeners_text(addr_text, sizeof(addr_text)), relay.cfg.path,
		 addr_format((struct sockaddr *)&relay.cfg.wg, (char[ADDR_STR_LEN]){ 0 }));
	if (relay.cfg.has_listen_ws && !relay.cfg.n_fwd_from && !relay.cfg.fwd_unix)
		log_warnx("--listen-ws without --forwarded-from: every tunnel through the reverse "
			  "proxy counts as one client for --rate-per-ip, --max-pending-per-ip and "
			  "--max-conns-per-ip");
	if (relay.cfg.has_metrics)
		log_info("metrics on http://%s/metrics",
			 addr_format((struct sockaddr *)&relay.cfg.metrics, addr));
	lws_sul_schedule(relay.ctx, 0, &relay.sweep, sweep_cb, RELAY_SWEEP_MS * LWS_US_PER_MS);

	ev_run(loop, 0);
	lws_sul_cancel(&relay.sweep);
	admit_stop();
	metrics_stop();
	wgport_close();
	jit_stop();
	lws_context_destroy(relay.ctx);
	handshake_free_some(true);
	ev_timer_stop(loop, &shutdown_timer);
	ev_check_stop(loop, &pass_start);
	ev_prepare_stop(loop, &pass_end);
	ev_signal_stop(loop, &sig_watch[0]);
	ev_signal_stop(loop, &sig_watch[1]);
	ev_signal_stop(loop, &sig_watch[2]);
	ev_loop_destroy(loop);
	free(relay.udp_buf);
	tokens_free(relay.tokens);
	cfg_free(&relay.cfg);
	return 0;
}
