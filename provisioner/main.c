/* SPDX-License-Identifier: MIT */
/* wgws-provisioner: keeps WireGuard peers in SQLite and puts them into the device one at a
 * time. `serve` is the daemon: one libwebsockets event loop runs the API (unix socket by
 * default), the GC and WAL checkpoints; the store and device calls it makes take tens of
 * microseconds, so they run inline; WAL checkpoints (milliseconds of fsync) run in a
 * thread of their own (ckpt.c). `peer …` is the command-line client of that API
 * (cli.c). Needs CAP_NET_ADMIN for a kernel device, root for wireguard-go's socket. `serve`
 * forks its privileged half (priv.c) as soon as the device is open: that process keeps the
 * device and its private key; everything else here, the engine, goes through it. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <libwebsockets.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "conf.h"
#include "log.h"
#include "procmetrics.h"
#include "prov.h"
#include "sandbox.h"

#define PROV_DEFAULT_API "/run/wgws/provisioner.sock"
#define GC_IDLE_UNSET 0xffffffffu

struct prov prov;
static volatile sig_atomic_t got_signal;

static const char usage_text[] =
	"usage: wgws-provisioner serve --interface IF --db FILE [options]\n"
	"       wgws-provisioner peer add|del|show|list [...]   (see 'peer --help')\n"
	"       wgws-provisioner db init|migrate|status --source URL   (see 'db --help')\n"
	"\n"
	"serve: keep peers in SQLite (FILE) and install them into the WireGuard device IF,\n"
	"one peer at a time, never a full sync. Options:\n"
	"  --interface IF          the WireGuard device (kernel or wireguard-go)\n"
	"  --db FILE               the SQLite peer store (created if missing)\n"
	"  --api unix:PATH         the API socket (default unix:" PROV_DEFAULT_API ")\n"
	"  --api-group GROUP       the API socket is root:GROUP, mode 0660, so members of\n"
	"                          GROUP can use 'peer' (default: root's alone, 0600)\n"
	"  --api tcp:ADDR:PORT     the API on TCP instead; needs --token-file\n"
	"  --token-file FILE       the bearer token TCP clients must send\n"
	"  --pool4 CIDR            IPv4 addresses for peers, e.g. 10.64.0.0/16 (the first\n"
	"                          host address is left for the gateway)\n"
	"  --pool6 PREFIX/64       IPv6 prefix for peers (the host part comes from the key)\n"
	"  --hold-down SECONDS     before a deleted peer's IPv4 address is reused (default 180)\n"
	"  --gc-interval SECONDS   how often the GC runs (default 60)\n"
	"  --gc-idle SECONDS       remove peers idle this long from the device; they stay in the\n"
	"                          store (default 900 with --jit; 0 = never, the default\n"
	"                          without: an idle peer removed then would not come back)\n"
	"  --gc-batch N            peers removed per device call (default 16)\n"
	"  --jit                   just in time: a created peer is only stored; it goes into the\n"
	"                          device when its first handshake initiation arrives (needs\n"
	"                          --jit-socket and/or --capture)\n"
	"  --jit-socket PATH       where wgws-relay asks about initiations it holds (its\n"
	"                          --jit-socket); unknown keys never reach the device\n"
	"  --jit-user USER         besides root, the user the relay runs as (default wgws)\n"
	"  --user USER             the engine (everything but device operations) runs as USER,\n"
	"                          with no capabilities, no_new_privs and a seccomp allow-list,\n"
	"                          once its files and sockets are open (default wgws; root:\n"
	"                          stay root). The store's files become USER's.\n"
	"  --capture IFNAME        see initiations from plain UDP clients on IFNAME (AF_PACKET,\n"
	"                          needs CAP_NET_RAW); the peer is installed with the sender as\n"
	"                          its endpoint and the device initiates back at once\n"
	"  --jit-negative-ttl SECONDS  how long an unknown key is answered from memory (default 10)\n"
	"  --jit-rate N            initiations per second per client address (port ignored,\n"
	"                          IPv6 by /64), however many tunnels it opens, before any\n"
	"                          public-key work (default 20, bursts of 2N: a client rekeys\n"
	"                          every 2 minutes, so 2,400 of them behind one NAT or proxy)\n"
	"  --jit-budget N          decisions with public-key work per second, all clients\n"
	"                          together (default 5000, as many at once): each costs ~50-70\n"
	"                          us (one X25519, ~20,000/s a core, and the store), so about a\n"
	"                          third of a core; past it only sources answered live lately\n"
	"                          pass, unchecked (WireGuard checks the handshake itself)\n"
	"  --metrics ADDR:PORT     Prometheus text at http://ADDR:PORT/metrics (also GET\n"
	"                          /metrics on the API)\n"
	"  --backend auto|netlink|uapi  how to reach the device (default auto)\n"
	"  --uapi-dir DIR          where wireguard-go's IF.sock lives (default /var/run/wireguard)\n"
	"  --client-endpoint ADDR:PORT  Endpoint in generated configs (default 127.0.0.1:51820,\n"
	"                          a local wgws-shim)\n"
	"  --relay-url URL         the relay (wss://HOST[:PORT]/PATH): generated configs start\n"
	"                          wgws-shim towards it from wg-quick's PreUp and stop it\n"
	"                          in PostDown. Repeat it for every gateway's relay: the\n"
	"                          shim tries them in turn (at most 8)\n"
	"  --relay-pin sha256//BASE64  the relay's public key pin for those shims (wgws-shim\n"
	"                          --pin; repeat while rotating keys); without it the shim\n"
	"                          verifies the relay's certificate against the system CAs\n"
	"  --client-mtu N          MTU in generated configs (default 1420, WireGuard's own for\n"
	"                          a 1500-byte path). Every packet crosses the relay as one\n"
	"                          record of up to MTU + 32 bytes, so the relay's --max-record\n"
	"                          must be at least that. Without an MTU line wg-quick would\n"
	"                          take the local route to the shim's (lo: 65536), and the\n"
	"                          first large packet would close the tunnel\n"
	"  --client-allowed-ips CIDR[,CIDR...]  AllowedIPs in generated configs (default: the\n"
	"                          pools)\n"
	"  --source URL            several gateways, one source of truth: the peers live in\n"
	"                          PostgreSQL (a libpq URL or connection string; give the\n"
	"                          host by address: a name is resolved in the event loop),\n"
	"                          FILE is this gateway's cache of them. Created there (by\n"
	"                          the API or plain SQL), looked up at their first handshake\n"
	"                          here, removed here within a second of a delete anywhere.\n"
	"                          Needs --jit (docs/SCALEOUT.md)\n"
	"  -c, --config FILE       options from FILE ([Provisioner], Key = Value)\n"
	"  --check-config          validate and exit\n"
	"  -v, --verbose           more logging\n"
	"  -h, --help, --version\n";

enum opt_id {
	OPT_INTERFACE = 256, OPT_DB, OPT_API, OPT_TOKEN_FILE, OPT_POOL4, OPT_POOL6, OPT_HOLD_DOWN,
	OPT_GC_INTERVAL, OPT_GC_IDLE, OPT_GC_BATCH, OPT_METRICS, OPT_BACKEND, OPT_UAPI_DIR,
	OPT_CLIENT_ENDPOINT, OPT_RELAY_URL, OPT_CLIENT_ALLOWED, OPT_CHECK_CONFIG, OPT_VERSION,
	OPT_JIT, OPT_JIT_SOCKET, OPT_JIT_USER, OPT_USER, OPT_CAPTURE, OPT_JIT_NEGATIVE_TTL, OPT_JIT_RATE,
	OPT_JIT_BUDGET, OPT_RELAY_PIN, OPT_CLIENT_MTU, OPT_API_GROUP, OPT_SOURCE,
};

static const struct option long_opts[] = {
	{ "interface", required_argument, NULL, OPT_INTERFACE },
	{ "db", required_argument, NULL, OPT_DB },
	{ "api", required_argument, NULL, OPT_API },
	{ "api-group", required_argument, NULL, OPT_API_GROUP },
	{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
	{ "pool4", required_argument, NULL, OPT_POOL4 },
	{ "pool6", required_argument, NULL, OPT_POOL6 },
	{ "hold-down", required_argument, NULL, OPT_HOLD_DOWN },
	{ "gc-interval", required_argument, NULL, OPT_GC_INTERVAL },
	{ "gc-idle", required_argument, NULL, OPT_GC_IDLE },
	{ "gc-batch", required_argument, NULL, OPT_GC_BATCH },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "backend", required_argument, NULL, OPT_BACKEND },
	{ "uapi-dir", required_argument, NULL, OPT_UAPI_DIR },
	{ "client-endpoint", required_argument, NULL, OPT_CLIENT_ENDPOINT },
	{ "relay-url", required_argument, NULL, OPT_RELAY_URL },
	{ "relay-pin", required_argument, NULL, OPT_RELAY_PIN },
	{ "client-mtu", required_argument, NULL, OPT_CLIENT_MTU },
	{ "client-allowed-ips", required_argument, NULL, OPT_CLIENT_ALLOWED },
	{ "jit", optional_argument, NULL, OPT_JIT },
	{ "jit-socket", required_argument, NULL, OPT_JIT_SOCKET },
	{ "jit-user", required_argument, NULL, OPT_JIT_USER },
	{ "user", required_argument, NULL, OPT_USER },
	{ "capture", required_argument, NULL, OPT_CAPTURE },
	{ "jit-negative-ttl", required_argument, NULL, OPT_JIT_NEGATIVE_TTL },
	{ "jit-rate", required_argument, NULL, OPT_JIT_RATE },
	{ "jit-budget", required_argument, NULL, OPT_JIT_BUDGET },
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "config", required_argument, NULL, 'c' },
	{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* The options whose values add up when repeated, in the -c file as on the command line;
 * any other is given once in a file. */
static const int repeatable_opts[] = { OPT_RELAY_URL, OPT_RELAY_PIN, 0 };

double prov_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t prov_wall_s(void)
{
	return (int64_t)time(NULL);
}

static char *token_path;

static int set_uint(const char *name, const char *v, unsigned long min, unsigned long max,
		    unsigned *out, char *err)
{
	unsigned long n;

	if (conf_parse_uint(v, min, max, &n) < 0) {
		snprintf(err, CONF_ERR_LEN, "--%s: '%s' is not a number from %lu to %lu", name, v,
			 min, max);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

static int set_api(struct prov_cfg *cfg, const char *v, char *err)
{
	if (!strncmp(v, "unix:", 5) && v[5] == '/' && strlen(v + 5) < sizeof(cfg->api_path)) {
		cfg->api_tcp = false;
		strcpy(cfg->api_path, v + 5);
		return 0;
	}
	if (!strncmp(v, "tcp:", 4) && addr_parse(v + 4, &cfg->api_addr, &cfg->api_len) == 0) {
		cfg->api_tcp = true;
		return 0;
	}
	snprintf(err, CONF_ERR_LEN, "--api: '%s' is neither unix:/ABSOLUTE/PATH nor "
		 "tcp:IP:PORT", v);
	return -EINVAL;
}

static int set_cidr_list(struct prov_cfg *cfg, const char *v, char *err)
{
	char *copy = strdup(v), *save = NULL, *tok;

	if (!copy)
		return -ENOMEM;
	cfg->n_client_allowed = 0;
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (cfg->n_client_allowed == PROV_MAX_ALLOWED ||
		    cidr_parse(tok, &cfg->client_allowed[cfg->n_client_allowed]) < 0) {
			snprintf(err, CONF_ERR_LEN, "--client-allowed-ips: '%s' is not a CIDR (or "
				 "more than %d)", tok, PROV_MAX_ALLOWED);
			free(copy);
			return -EINVAL;
		}
		cfg->n_client_allowed++;
	}
	free(copy);
	return 0;
}

/* The one setter behind both the command line and the config file. */
static int set_option(void *arg, int id, const char *v, char err[static CONF_ERR_LEN])
{
	struct prov_cfg *cfg = arg;
	const char *name = "?";
	socklen_t len;

	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == id)
			name = o->name;
	switch (id) {
	case OPT_INTERFACE:
		if (!*v || strlen(v) >= IF_NAMESIZE || strchr(v, '/')) {
			snprintf(err, CONF_ERR_LEN, "--interface: '%s' is not an interface name", v);
			return -EINVAL;
		}
		strcpy(cfg->ifname, v);
		return 0;
	case OPT_DB:
		return set_str(&cfg->db_path, v);
	case OPT_API:
		return set_api(cfg, v, err);
	case OPT_API_GROUP: {
		struct group *gr = getgrnam(v);

		if (!gr) {
			snprintf(err, CONF_ERR_LEN, "--api-group: no group '%s' (create it: "
				 "groupadd --system %s)", v, v);
			return -EINVAL;
		}
		cfg->has_api_group = true;
		cfg->api_gid = gr->gr_gid;
		return 0;
	}
	case OPT_TOKEN_FILE:
		return set_str(&token_path, v);
	case OPT_POOL4:
		if (cidr_parse(v, &cfg->pool4) < 0 || cfg->pool4.family != AF_INET ||
		    cfg->pool4.bits > 29) {
			snprintf(err, CONF_ERR_LEN, "--pool4: '%s' is not an IPv4 network of /29 or "
				 "larger, such as 10.64.0.0/16", v);
			return -EINVAL;
		}
		cfg->has_pool4 = true;
		return 0;
	case OPT_POOL6:
		if (cidr_parse(v, &cfg->pool6) < 0 || cfg->pool6.family != AF_INET6 ||
		    cfg->pool6.bits != 64) {
			snprintf(err, CONF_ERR_LEN, "--pool6: '%s' is not an IPv6 /64 prefix such as "
				 "fd00:64::/64", v);
			return -EINVAL;
		}
		cfg->has_pool6 = true;
		return 0;
	case OPT_HOLD_DOWN:
		return set_uint(name, v, 180, 86400 * 30, &cfg->pool.hold_down_s, err);
	case OPT_GC_INTERVAL:
		return set_uint(name, v, 1, 86400, &cfg->gc_interval_s, err);
	case OPT_GC_IDLE:
		return set_uint(name, v, 0, 86400 * 365, &cfg->gc_idle_s, err);
	case OPT_GC_BATCH:
		return set_uint(name, v, 1, 256, &cfg->gc_batch, err);
	case OPT_METRICS:
		cfg->has_metrics = true;
		if (addr_parse(v, &cfg->metrics, &len) < 0) {
			snprintf(err, CONF_ERR_LEN, "--metrics: '%s' is not IP:PORT", v);
			return -EINVAL;
		}
		return 0;
	case OPT_BACKEND:
		if (!strcmp(v, "auto"))
			cfg->backend = WGDEV_AUTO;
		else if (!strcmp(v, "netlink"))
			cfg->backend = WGDEV_NETLINK;
		else if (!strcmp(v, "uapi"))
			cfg->backend = WGDEV_UAPI;
		else {
			snprintf(err, CONF_ERR_LEN, "--backend: '%s' is not auto, netlink or uapi", v);
			return -EINVAL;
		}
		return 0;
	case OPT_UAPI_DIR:
		return set_str(&cfg->uapi_dir, v);
	case OPT_CLIENT_ENDPOINT: {
		struct sockaddr_storage ss;

		if (addr_parse(v, &ss, &len) < 0 || strlen(v) >= sizeof(cfg->client_endpoint)) {
			snprintf(err, CONF_ERR_LEN, "--client-endpoint: '%s' is not IP:PORT", v);
			return -EINVAL;
		}
		strcpy(cfg->client_endpoint, v);
		return 0;
	}
	case OPT_RELAY_URL:
		/* It goes into a PreUp line, which wg-quick runs with bash: only the characters
		 * of a host, a port and a plain path. */
		if (cfg->n_relay_urls == PROV_MAX_RELAYS) {
			snprintf(err, CONF_ERR_LEN, "--relay-url: at most %d", PROV_MAX_RELAYS);
			return -EINVAL;
		}
		if (strncmp(v, "wss://", 6) || !v[6] || v[6] == '/' ||
		    strlen(v) > PROV_RELAY_URL_MAX ||
		    v[strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			       ".-_~:/[]%")]) {
			snprintf(err, CONF_ERR_LEN, "--relay-url: '%s' is not wss://HOST[:PORT]/PATH "
				 "(letters, digits and . - _ ~ : / [ ] %% only)", v);
			return -EINVAL;
		}
		strcpy(cfg->relay_urls[cfg->n_relay_urls++], v);
		return 0;
	case OPT_RELAY_PIN: {
		uint8_t raw[64];
		size_t n;

		if (cfg->n_relay_pins == PROV_MAX_PINS) {
			snprintf(err, CONF_ERR_LEN, "--relay-pin: at most %d", PROV_MAX_PINS);
			return -EINVAL;
		}
		if (strncmp(v, "sha256//", 8) || strlen(v) != 8 + 44 ||
		    sodium_base642bin(raw, sizeof(raw), v + 8, 44, NULL, &n, NULL,
				      sodium_base64_VARIANT_ORIGINAL) < 0 || n != 32) {
			snprintf(err, CONF_ERR_LEN, "--relay-pin: '%s' is not sha256// followed by "
				 "the base64 of a SHA-256 (wgws-shim's --pin)", v);
			return -EINVAL;
		}
		strcpy(cfg->relay_pins[cfg->n_relay_pins++], v);
		return 0;
	}
	case OPT_CLIENT_MTU:
		return set_uint(name, v, 1280, 65535 - 32, &cfg->client_mtu, err);
	case OPT_CLIENT_ALLOWED:
		return set_cidr_list(cfg, v, err);
	case OPT_JIT:
		/* A flag on the command line; "Jit = yes|no" in a file. */
		cfg->jit = true;
		if (v && conf_parse_bool(v, &cfg->jit) < 0) {
			snprintf(err, CONF_ERR_LEN, "--jit: expected yes or no, got '%s'", v);
			return -EINVAL;
		}
		return 0;
	case OPT_SOURCE:
		free(cfg->source);
		cfg->source = strdup(v);
		return cfg->source ? 0 : -ENOMEM;
	case OPT_JIT_SOCKET:
		if (v[0] != '/' || strlen(v) >= sizeof(cfg->jit_socket)) {
			snprintf(err, CONF_ERR_LEN, "--jit-socket: '%s' is not an absolute path of "
				 "fewer than %zu bytes", v, sizeof(cfg->jit_socket));
			return -EINVAL;
		}
		strcpy(cfg->jit_socket, v);
		return 0;
	case OPT_JIT_USER: {
		struct passwd *pw = getpwnam(v);

		if (!pw) {
			snprintf(err, CONF_ERR_LEN, "--jit-user: no user '%s'", v);
			return -EINVAL;
		}
		cfg->jit_uid = pw->pw_uid;
		return 0;
	}
	case OPT_USER:
		if (strcmp(v, "root") && !getpwnam(v)) {
			snprintf(err, CONF_ERR_LEN, "--user: no user '%s'%s", v, strcmp(v, "wgws") ? "" :
				 " (create it: useradd --system --no-create-home --shell "
				 "/usr/sbin/nologin wgws; make deps does)");
			return -EINVAL;
		}
		free(cfg->user);
		cfg->user = strdup(v);
		return cfg->user ? 0 : -ENOMEM;
	case OPT_CAPTURE:
		if (!*v || strlen(v) >= IF_NAMESIZE || strchr(v, '/')) {
			snprintf(err, CONF_ERR_LEN, "--capture: '%s' is not an interface name", v);
			return -EINVAL;
		}
		strcpy(cfg->capture_if, v);
		return 0;
	case OPT_JIT_NEGATIVE_TTL:
		return set_uint(name, v, 0, 3600, &cfg->jit_negative_ttl_s, err);
	case OPT_JIT_RATE:
		return set_uint(name, v, 1, 1000000, &cfg->jit_rate, err);
	case OPT_JIT_BUDGET:
		return set_uint(name, v, 1, 1000000, &cfg->jit_budget, err);
	default:
		snprintf(err, CONF_ERR_LEN, "unknown option");
		return -EINVAL;
	}
}

/* A usage or configuration error: said, with a pointer to --help, exit 2 (runtime failures:
 * 1, fatalx). */
static void read_token(struct prov_cfg *cfg)
{
	struct stat st;
	FILE *f = fopen(token_path, "re");
	size_t n;

	if (!f)
		fatal("--token-file %s", token_path);
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077))
		log_warnx("--token-file %s is readable by others (chmod 600 it)", token_path);
	n = fread(cfg->token, 1, sizeof(cfg->token) - 1, f);
	fclose(f);
	cfg->token[n] = '\0';
	while (n && (cfg->token[n - 1] == '\n' || cfg->token[n - 1] == '\r'))
		cfg->token[--n] = '\0';
	if (n < 16 || n >= PROV_TOKEN_MAX || strpbrk(cfg->token, " \t\r\n"))
		fatalx("--token-file %s: the token must be 16 to %d characters on one line, "
		       "no blanks", token_path, PROV_TOKEN_MAX - 1);
}

static void parse_serve(struct prov_cfg *cfg, int argc, char **argv, bool *check_only)
{
	char err[CONF_ERR_LEN];
	unsigned cli_pins = 0, cli_urls = 0;
	int c;

	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->api_path, PROV_DEFAULT_API);
	strcpy(cfg->client_endpoint, "127.0.0.1:51820");
	cfg->client_mtu = PROV_DEFAULT_CLIENT_MTU;
	cfg->pool.hold_down_s = 180;
	cfg->gc_interval_s = 60;
	cfg->gc_idle_s = GC_IDLE_UNSET;
	cfg->gc_batch = 16;
	cfg->jit_negative_ttl_s = 10;
	cfg->jit_rate = 20;
	cfg->jit_budget = 5000;
	{
		struct passwd *pw = getpwnam("wgws");

		cfg->jit_uid = pw ? pw->pw_uid : geteuid();
		cfg->user = strdup("wgws");
		if (!cfg->user)
			fatalx("out of memory");
	}
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:vh", long_opts, NULL)) != -1)
		if (c == 'c' && conf_load_options(optarg, "Provisioner", long_opts, 'c',
						  repeatable_opts, set_option, cfg, err) < 0)
			fatal_usage("%s", err);
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:vh", long_opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			break;
		case 'v':
			cfg->verbosity++;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case OPT_VERSION:
			printf("wgws-provisioner %s\n", PROV_VERSION);
			exit(0);
		case OPT_CHECK_CONFIG:
			*check_only = true;
			break;
		case '?':
			fputs(usage_text, stderr);
			exit(2);
		default:
			/* The command line's pins replace the file's (as wgws-shim's --pin). */
			if (c == OPT_RELAY_PIN && !cli_pins++)
				cfg->n_relay_pins = 0;
			if (c == OPT_RELAY_URL && !cli_urls++)
				cfg->n_relay_urls = 0;
			if (set_option(cfg, c, optarg, err) < 0)
				fatal_usage("%s", err);
		}
	}
	if (optind < argc)
		fatal_usage("unexpected argument '%s'", argv[optind]);
	if (!cfg->ifname[0] || !cfg->db_path)
		fatal_usage("--interface IF and --db FILE are required");
	if (!cfg->has_pool4 && !cfg->has_pool6)
		fatal_usage("give --pool4 CIDR and/or --pool6 PREFIX/64: peers need addresses");
	if (cfg->jit && !cfg->jit_socket[0] && !cfg->capture_if[0])
		fatal_usage("--jit needs --jit-socket PATH (a relay) and/or --capture IFNAME (plain UDP "
		       "clients): otherwise no peer would ever be installed");
	if (!cfg->jit && (cfg->jit_socket[0] || cfg->capture_if[0]))
		fatal_usage("--jit-socket and --capture need --jit");
	if (cfg->source) {
		if (!cfg->jit)
			fatal_usage("--source needs --jit: peers come to this gateway at their first "
				    "handshake");
		if (source_init(cfg->source, err, sizeof(err)) < 0)
			fatal_usage("%s", err);
	}
	if (geteuid() == 0 && strcmp(cfg->user, "root") && !getpwnam(cfg->user))
		fatal_usage("--user: no user '%s' (create it: useradd --system --no-create-home --shell "
		       "/usr/sbin/nologin %s; make deps does it for wgws)", cfg->user, cfg->user);
	if (cfg->gc_idle_s == GC_IDLE_UNSET)
		cfg->gc_idle_s = cfg->jit ? 900 : 0;
	if (cfg->jit && cfg->gc_idle_s && cfg->gc_idle_s < 180)
		log_warnx("--gc-idle %u: a client keeps using its session for up to 180 s after a "
			  "handshake; a peer removed sooner loses its traffic until the client "
			  "initiates again", cfg->gc_idle_s);
	if (cfg->api_tcp && cfg->has_api_group)
		fatal_usage("--api-group is for the unix socket; --api tcp:… is guarded by its "
			    "--token-file");
	if (cfg->api_tcp && !token_path)
		fatal_usage("--api tcp:… needs --token-file: the API must not be open to anyone");
	if (token_path)
		read_token(cfg);
	if (cfg->has_pool4) {
		uint32_t net, size;

		memcpy(&net, cfg->pool4.addr, 4);
		net = ntohl(net);
		size = cfg->pool4.bits == 0 ? 0 : 1u << (32 - cfg->pool4.bits);
		cfg->pool.has_ip4 = true;
		cfg->pool.ip4_first = net + 2; /* net + 1 is the gateway's */
		cfg->pool.ip4_last = net + size - 2;
	}
	if (cfg->has_pool6) {
		cfg->pool.has_ip6 = true;
		memcpy(cfg->pool.ip6_prefix, cfg->pool6.addr, 8);
	}
	if (!cfg->n_client_allowed) {
		if (cfg->has_pool4)
			cfg->client_allowed[cfg->n_client_allowed++] = cfg->pool4;
		if (cfg->has_pool6)
			cfg->client_allowed[cfg->n_client_allowed++] = cfg->pool6;
	}
}

static volatile sig_atomic_t got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_signal = sig;
	if (prov.ctx)
		lws_cancel_service(prov.ctx);
}

static lws_sorted_usec_list_t ckpt_sul;

static void checkpoint_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	if (prov.writes_since_checkpoint) {
		ckpt_kick();
		prov.writes_since_checkpoint = false;
	}
	/* Without its privileged half the daemon can do nothing right: end, and be restarted,
	 * rather than wait for the next device call to find out. */
	if (priv_is_gone(prov.priv))
		fatalx("priv: the privileged process is gone");
	lws_sul_schedule(prov.ctx, 0, &ckpt_sul, checkpoint_cb, LWS_US_PER_SEC);
}

/* A socket file left by a daemon that died is removed; one a live daemon answers on is not. */
static void clear_stale_socket(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0)
		return;
	if (!S_ISSOCK(st.st_mode))
		fatalx("--api %s exists and is not a socket", path);
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		fatalx("another daemon answers on %s", path);
	if (fd >= 0)
		close(fd);
	if (unlink(path) < 0)
		fatal("cannot remove the stale socket %s", path);
}

static void make_parent_dir(const char *path)
{
	char dir[sizeof(prov.cfg.api_path)];
	char *slash;

	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		fatal("cannot create %s", dir);
}

/* --api-group sets the socket's group and mode by path, after lws made it: only safe in a
 * directory where no one but us can put something else under that name in between. */
static void check_api_dir(const char *path)
{
	char dir[sizeof(prov.cfg.api_path)];
	struct stat st;

	strcpy(dir, path);
	*strrchr(dir, '/') = '\0'; /* set_api made sure of an absolute path */
	if (stat(dir[0] ? dir : "/", &st) < 0)
		fatal("--api-group: %s", dir);
	if (st.st_uid != geteuid() || (st.st_mode & 0022))
		fatalx("--api-group: %s is not root's alone (uid %u, mode %04o): others could swap "
		       "the socket before its group and mode are set; put it in a directory only "
		       "root can write", dir[0] ? dir : "/", (unsigned)st.st_uid,
		       (unsigned)(st.st_mode & 07777));
}

/* Group first, then the group's bits: root:root 0600, root:GROUP 0600, root:GROUP 0660; at no
 * moment open to anyone the final mode does not name. lchown: never through a symlink. */
static void share_api_socket(const char *path, gid_t gid)
{
	struct group *gr;

	if (lchown(path, (uid_t)-1, gid) < 0)
		fatal("--api-group: chown %s", path);
	if (chmod(path, 0660) < 0)
		fatal("--api-group: chmod %s", path);
	gr = getgrgid(gid);
	log_info("API socket %s: group %s, mode 0660", path, gr ? gr->gr_name : "?");
}

static void lws_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && line[n - 1] == '\n')
		n--;
	if (level & LLL_ERR)
		log_warnx("lws: %.*s", (int)n, line);
	else
		log_debug("lws: %.*s", (int)n, line);
}

/* lws 4.1.6 creates a TCP vhost whose bind failed and says nothing: bind it ourselves first
 * (and let go), so that a listener that cannot be had is fatal, with the reason. */
static void bind_or_die(const char *what, const struct sockaddr_storage *ss)
{
	char addr[ADDR_STR_LEN], why[160];
	socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
						   sizeof(struct sockaddr_in6);
	int ret = addr_bind_probe(ss, len);

	if (ret < 0)
		fatalx("%s%s: %s", what, addr_format((const struct sockaddr *)ss, addr),
		       addr_bind_error(-ret, ss, why, sizeof(why)));
}

static void create_vhosts(struct prov_cfg *cfg)
{
	struct lws_vhost *vh;
	mode_t old_mask;
	struct lws_context_creation_info info;
	char iface[INET6_ADDRSTRLEN], addr[ADDR_STR_LEN];

	memset(&info, 0, sizeof(info));
	info.vhost_name = "api";
	info.protocols = api_protocols();
	info.keepalive_timeout = 10;
	info.timeout_secs_ah_idle = 10;
	if (cfg->api_tcp) {
		const struct sockaddr *sa = (const struct sockaddr *)&cfg->api_addr;

		if (sa->sa_family == AF_INET) {
			info.port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, iface,
				  sizeof(iface));
			info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
		} else {
			info.port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, iface,
				  sizeof(iface));
		}
		info.iface = iface;
	} else {
		make_parent_dir(cfg->api_path);
		if (cfg->has_api_group)
			check_api_dir(cfg->api_path);
		clear_stale_socket(cfg->api_path);
		info.options |= LWS_SERVER_OPTION_UNIX_SOCK;
		info.iface = cfg->api_path;
		info.port = 0;
	}
	if (cfg->api_tcp)
		bind_or_die("--api tcp:", &cfg->api_addr);
	/* A unix socket is created 0600 (umask): never wider, not even until a chmod
	 * (--api-group's chmod comes after its chown: share_api_socket). */
	old_mask = umask(0177);
	vh = lws_create_vhost(prov.ctx, &info);
	umask(old_mask);
	if (!vh)
		fatalx("cannot listen for the API on %s",
		       cfg->api_tcp ? addr_format((struct sockaddr *)&cfg->api_addr, addr)
				    : cfg->api_path);
	if (cfg->has_api_group)
		share_api_socket(cfg->api_path, cfg->api_gid);

	if (cfg->has_metrics) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->metrics;

		memset(&info, 0, sizeof(info));
		info.vhost_name = "metrics";
		info.protocols = api_metrics_protocols();
		if (cfg->metrics.ss_family == AF_INET) {
			info.port = ntohs(sin->sin_port);
			inet_ntop(AF_INET, &sin->sin_addr, iface, sizeof(iface));
			info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
		} else {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg->metrics;

			info.port = ntohs(sin6->sin6_port);
			inet_ntop(AF_INET6, &sin6->sin6_addr, iface, sizeof(iface));
		}
		info.iface = iface;
		bind_or_die("--metrics ", &cfg->metrics);
		if (!lws_create_vhost(prov.ctx, &info))
			fatalx("cannot listen on --metrics %s",
			       addr_format((struct sockaddr *)&cfg->metrics, addr));
	}
}

/* The privileged half (priv.c) gets the device and its key, before the engine opens the store
 * or reads a byte from the network; from here on the engine reaches the device through
 * prov.dev = privsep_ops and the key through priv_dh (the engine's own confinement is
 * confine_engine's, the privileged half's priv.c's drop_to_net_admin). */
static void start_privileged(struct wgdev *dev)
{
	int ret;

	ret = priv_start(&prov.priv, dev, prov.cfg.capture_if[0] ? prov.cfg.capture_if : NULL);
	if (ret < 0)
		fatalx("cannot start the privileged process: %s", strerror(-ret));
	log_info("privileged process %ld keeps %s (%s) and its private key",
		 (long)priv_pid(prov.priv), prov.cfg.ifname, dev->ops->name);
	wgdev_close(dev); /* the engine's copy: the child has its own */
	ret = priv_open_device(&prov.dev, prov.priv, prov.cfg.ifname);
	if (ret < 0)
		fatalx("privsep device: %s", strerror(-ret));
}

/* What the engine may still do once it serves, beyond any daemon's loop (sandbox.c): the
 * store's file operations (SQLite's unix VFS on descriptors opened before), its unix sockets
 * (the API, the relay's JIT channel, the privileged half) and the capture socket. No exec,
 * no ptrace, no new sockets but unix ones: a parser bug cannot become any of those. */
static const char *const engine_calls[] = {
	"openat", "unlink", "fsync", "fdatasync", "ftruncate", "fallocate", "flock", "getcwd",
	"readlink", "lstat", "stat", "access", "faccessat", "faccessat2", "fchmod", "fchown",
	"mkdir", "rmdir", "rename", "statfs", "fstatfs", "epoll_create1", "bind", "listen",
	"connect", "wait4", "waitid", /* reaping the privileged half at exit */
	"mlock", "munlock", /* libsodium's guarded memory (ASan's mlock does nothing) */
};

/* The store's files become the engine's: SQLite writes its WAL through them. */
static void chown_store(uid_t uid, gid_t gid)
{
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	char path[PATH_MAX];

	for (unsigned i = 0; i < LWS_ARRAY_SIZE(suffixes); i++) {
		if (snprintf(path, sizeof(path), "%s%s", prov.cfg.db_path, suffixes[i]) >=
		    (int)sizeof(path))
			fatalx("--db %s: path too long", prov.cfg.db_path);
		if (chown(path, uid, gid) < 0 && errno != ENOENT)
			fatal("chown %s", path);
	}
}

/* From here on the engine holds no privilege: --user, no capabilities, no_new_privs, and a
 * seccomp allow-list that kills it (SIGSYS) on anything else. Everything it needs is open. */
static void confine_engine(void)
{
	struct sandbox_list list;
	struct passwd *pw;
	int ret;

	if (geteuid() == 0 && strcmp(prov.cfg.user, "root")) {
		pw = getpwnam(prov.cfg.user);
		if (!pw)
			fatalx("--user: no user '%s'", prov.cfg.user);
		chown_store(pw->pw_uid, pw->pw_gid);
		ret = sandbox_switch_user(pw->pw_uid, pw->pw_gid, SANDBOX_NO_CAP);
		if (ret < 0) {
			errno = -ret;
			fatal("cannot run as %s", prov.cfg.user);
		}
		/* libpq (--source) looks in $HOME for client certificates and passwords: the
		 * user's own, not root's, which it may not read (EACCES fails the connection). */
		if (setenv("HOME", pw->pw_dir, 1) < 0)
			fatal("setenv HOME");
		log_info("engine running as %s (uid %u)", prov.cfg.user, (unsigned)pw->pw_uid);
	}
	sandbox_list_init(&list);
	ret = sandbox_allow_daemon(&list);
	if (!ret)
		ret = sandbox_allow_names(&list, engine_calls, LWS_ARRAY_SIZE(engine_calls));
	if (!ret)
		ret = sandbox_allow_if(&list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX);
	/* --source: PostgreSQL over TCP (and a name's lookup), reconnecting for good */
	if (!ret && prov.cfg.source)
		ret = sandbox_allow_if(&list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_INET);
	if (!ret && prov.cfg.source)
		ret = sandbox_allow_if(&list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_INET6);
	/* and OpenSSL for sslmode= (it sizes its buffers by the machine's memory: sysinfo) */
	if (!ret && prov.cfg.source)
		ret = sandbox_allow_names(&list, (const char *const[]){ "sysinfo" }, 1);
	if (ret == -ENOENT)
		fatalx("seccomp: no system call '%s' on this architecture", list.bad_name);
	if (ret < 0 || (ret = sandbox_drop_caps()) < 0 ||
	    (ret = sandbox_enter(&list, SANDBOX_KILL)) < 0) {
		errno = -ret;
		fatal("cannot confine the engine (capabilities, no_new_privs, seccomp)");
	}
}

/* Test-only (WGWS_TEST_SECCOMP=1 in the environment at start): SIGUSR2 makes the engine do
 * what a compromised engine would want and its list forbids, a raw packet socket, which must
 * kill it. */
static void on_test_sigusr2(int sig)
{
	(void)sig;
	syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0);
}

static int serve(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct sigaction sa;
	struct wgdev *dev;
	char err[512], b64[WG_KEY_B64_LEN + 1];
	bool check_only = false;
	uint64_t stored = 0, installed = 0;
	int ret;

	parse_serve(&prov.cfg, argc, argv, &check_only);
	log_init("wgws-provisioner", prov.cfg.verbosity);
	if (check_only) {
		printf("configuration ok\n");
		return 0;
	}
	if (sodium_init() < 0)
		fatalx("libsodium failed to initialise");
	ret = wgdev_open(&dev, prov.cfg.ifname, prov.cfg.backend, prov.cfg.uapi_dir);
	if (ret < 0)
		fatalx("--interface %s: %s%s", prov.cfg.ifname, strerror(-ret),
		       ret == -ENODEV ? " (no such WireGuard device, kernel or wireguard-go)" : "");
	start_privileged(dev);
	ret = store_open(&prov.store, prov.cfg.db_path, &prov.cfg.pool, err, sizeof(err));
	if (ret < 0)
		fatalx("--db %s: %s", prov.cfg.db_path, err);
	if (err[0])
		log_warnx("%s", err);
	ret = ckpt_start(prov.cfg.db_path);
	if (ret < 0)
		fatalx("--db %s: cannot start the checkpoint thread: %s", prov.cfg.db_path,
		       strerror(-ret));
	ret = wgdev_get_info(prov.dev, &prov.info, NULL);
	if (ret < 0)
		fatalx("--interface %s: cannot read the device: %s", prov.cfg.ifname, strerror(-ret));
	if (!prov.info.has_public_key)
		log_warnx("%s has no private key yet: generated configs will lack the gateway's "
			  "PublicKey", prov.cfg.ifname);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	lws_set_log_level(prov.cfg.verbosity >= 2 ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR,
			  lws_emit);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	/* 0, not -1: lws then neither changes user nor chmods unix sockets to 0660 (it does
	 * whenever both are non-zero); the engine drops privileges itself (confine_engine). */
	info.uid = 0;
	info.gid = 0;
	prov.ctx = lws_create_context(&info);
	if (!prov.ctx)
		fatalx("cannot create the libwebsockets context");
	create_vhosts(&prov.cfg);
	jit_start();
	source_start();
	gc_start();
	gc_reconcile_start();
	lws_sul_schedule(prov.ctx, 0, &ckpt_sul, checkpoint_cb, LWS_US_PER_SEC);
	if (getenv("WGWS_TEST_SECCOMP")) {
		sa.sa_handler = on_test_sigusr2;
		sigaction(SIGUSR2, &sa, NULL);
	}
	/* Type=notify: serving from here on (before the sandbox: no new calls after it) */
	(void)sd_notifyf(0, "READY=1\nSTATUS=serving %s", prov.cfg.ifname);
	confine_engine();

	(void)store_count(prov.store, &stored, &installed);
	if (prov.info.has_public_key)
		key_to_base64(prov.info.public_key, b64);
	log_info("serving %s (%s backend, public key %s): %llu peers stored, API on %s%s", prov.cfg.ifname,
		 prov.dev->ops->name, prov.info.has_public_key ? b64 : "none",
		 (unsigned long long)stored, prov.cfg.api_tcp ? "tcp:" : "unix:",
		 prov.cfg.api_tcp ? addr_format((struct sockaddr *)&prov.cfg.api_addr,
						(char[ADDR_STR_LEN]){ 0 })
				  : prov.cfg.api_path);
	while (!got_signal && lws_service(prov.ctx, 0) >= 0) {
		if (got_hup) {
			got_hup = 0;
			/* Its settings shape the store (pools) and the device: read at start only. */
			log_info("SIGHUP: nothing to reload (the provisioner reads its settings at "
				 "start: restart it to change them); still serving");
		}
	}
	log_info("signal %d: stopping", (int)got_signal);
	source_stop();
	jit_stop();
	lws_context_destroy(prov.ctx);
	ckpt_stop();
	(void)store_checkpoint(prov.store, true);
	store_close(prov.store);
	wgdev_close(prov.dev);
	if (!prov.cfg.api_tcp)
		unlink(prov.cfg.api_path);
	return 0;
}

int main(int argc, char **argv)
{
	log_init("wgws-provisioner", 0);
	procmetrics_init();
	if (argc >= 2 && !strcmp(argv[1], "serve"))
		return serve(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "peer"))
		return cli_peer(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "db"))
		return source_db_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("wgws-provisioner %s\n", PROV_VERSION);
		return 0;
	}
	fputs(usage_text, argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
				  ? stdout
				  : stderr);
	return argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : 2;
}
