/* SPDX-License-Identifier: MIT */
/* `wgws-provisioner peer add|del|show|list`: a small blocking HTTP/1.1 client of the daemon's
 * API (unix socket by default, or TCP with the bearer token). It prints what the daemon
 * says: JSON, a wg-quick config (--config), or one line per peer (list). A daemon that
 * cannot be reached or answers an error is reported in plain words, exit status 1. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "conf.h"
#include "log.h"
#include "prov.h"

enum { CLI_REPLY_MAX = 16 << 20, CLI_TIMEOUT_S = 10 };

static const char cli_usage[] =
	"usage: wgws-provisioner peer add [--public-key KEY] [--ttl SECONDS] [--name NAME]\n"
	"                                 [--allowed-ip CIDR]... [--config]\n"
	"       wgws-provisioner peer del KEY\n"
	"       wgws-provisioner peer show KEY [--config]\n"
	"       wgws-provisioner peer list [--after KEY] [--limit N]\n"
	"common options: --api unix:PATH (default unix:/run/wgws/provisioner.sock)\n"
	"                --api tcp:IP:PORT --token-file FILE\n"
	"add without --public-key makes a key pair on the daemon and shows the private key\n"
	"once; --config prints a ready wg-quick file for a client behind wgws-shim.\n"
	"KEY is base64, standard or URL-safe; put -- before a key that starts with '-'.\n";

struct cli {
	const char *api;
	char token[PROV_TOKEN_MAX + 1];
};

/* Why the socket refused us decides the advice. No socket, or no one listening on it, is a
 * daemon that does not run; a permission refused is one that runs for others, and "is it
 * running?" would send the operator the wrong way. */
static void __attribute__((noreturn)) unix_unreachable(const char *api, const char *path)
{
	struct stat st;
	struct passwd *pw;
	struct group *gr;
	char owner[24];

	if (errno == ENOENT || errno == ECONNREFUSED)
		fatal("cannot reach the daemon at %s (is 'wgws-provisioner serve' running?)", api);
	if (errno != EACCES && errno != EPERM)
		fatal("cannot reach the daemon at %s", api);
	if (stat(path, &st) < 0)
		fatalx("permission denied on %s: a directory on its path is closed to you; run as "
		       "root", path);
	pw = getpwuid(st.st_uid);
	snprintf(owner, sizeof(owner), "%s", pw ? pw->pw_name : "?");
	gr = getgrgid(st.st_gid);
	if (st.st_gid && (st.st_mode & 0060) == 0060 && gr)
		fatalx("permission denied on %s: it is %s's, shared with group %s (mode %04o); "
		       "run as root, or as a member of %s (log in again after joining it)", path,
		       owner, gr->gr_name, (unsigned)(st.st_mode & 07777), gr->gr_name);
	fatalx("permission denied on %s: it is %s's (mode %04o); run as root, or start serve "
	       "with --api-group GROUP and be in that group", path, owner,
	       (unsigned)(st.st_mode & 07777));
}

static int connect_api(const struct cli *c)
{
	struct timeval tv = { .tv_sec = CLI_TIMEOUT_S };
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (!strncmp(c->api, "unix:", 5)) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(c->api + 5) >= sizeof(sun.sun_path))
			fatalx("--api %s: path too long", c->api);
		strcpy(sun.sun_path, c->api + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			unix_unreachable(c->api, sun.sun_path);
	} else if (!strncmp(c->api, "tcp:", 4) && addr_parse(c->api + 4, &ss, &len) == 0) {
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) < 0)
			fatal("cannot reach the daemon at %s", c->api);
	} else {
		fatalx("--api %s: neither unix:/PATH nor tcp:IP:PORT", c->api);
	}
	if (fd < 0)
		fatal("socket");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fatal("sending the request");
		p += n;
		len -= (size_t)n;
	}
}

/* One request; returns the HTTP status and the parsed JSON body (NULL if none). */
static int request(const struct cli *c, const char *method, const char *path, const char *body,
		   json_t **out)
{
	char head[1024], *reply = malloc(CLI_REPLY_MAX + 1), *p;
	size_t got = 0, blen = body ? strlen(body) : 0;
	int fd = connect_api(c), status;
	json_error_t jerr;

	if (!reply)
		fatalx("out of memory");
	snprintf(head, sizeof(head),
		 "%s %s HTTP/1.1\r\nHost: wgws-provisioner\r\nConnection: close\r\n"
		 "%s%s%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 method, path, c->token[0] ? "Authorization: Bearer " : "", c->token,
		 c->token[0] ? "\r\n" : "", blen);
	write_all(fd, head, strlen(head));
	if (blen)
		write_all(fd, body, blen);
	for (;;) {
		ssize_t n = read(fd, reply + got, CLI_REPLY_MAX - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fatal("reading the reply from %s", c->api);
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == CLI_REPLY_MAX)
			fatalx("the reply from %s is over %d bytes", c->api, CLI_REPLY_MAX);
	}
	close(fd);
	reply[got] = '\0';
	if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
		fatalx("not an HTTP reply from %s", c->api);
	p = strstr(reply, "\r\n\r\n");
	*out = NULL;
	if (p && p[4])
		*out = json_loads(p + 4, 0, &jerr);
	free(reply);
	return status;
}

static void die_on_error(int status, json_t *j)
{
	json_t *e = j ? json_object_get(j, "error") : NULL;

	if (status >= 200 && status < 300)
		return;
	fprintf(stderr, "wgws-provisioner: %d: %s\n", status,
		json_is_string(e) ? json_string_value(e) : "(no message)");
	exit(1);
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

static void print_config(json_t *j)
{
	json_t *cfg = json_object_get(j, "config");

	if (!json_is_string(cfg))
		fatalx("the daemon sent no config");
	fputs(json_string_value(cfg), stdout);
}

static void url_key(const char *s, char out[static WG_KEY_B64_LEN + 1])
{
	uint8_t key[WG_KEY_LEN];

	if (key_from_base64(s, key) < 0)
		fatalx("'%s' is not a base64 WireGuard public key", s);
	key_to_base64url(key, out);
}

static void load_token(struct cli *c, const char *path)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		fatal("--token-file %s", path);
	n = fread(c->token, 1, sizeof(c->token) - 1, f);
	fclose(f);
	c->token[n] = '\0';
	while (n && (c->token[n - 1] == '\n' || c->token[n - 1] == '\r'))
		c->token[--n] = '\0';
	if (strpbrk(c->token, "\r\n"))
		fatalx("--token-file %s: the token must be one line", path);
}

int cli_peer(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api", required_argument, NULL, 'a' },
		{ "token-file", required_argument, NULL, 't' },
		{ "public-key", required_argument, NULL, 'k' },
		{ "ttl", required_argument, NULL, 'T' },
		{ "name", required_argument, NULL, 'n' },
		{ "allowed-ip", required_argument, NULL, 'i' },
		{ "config", no_argument, NULL, 'C' },
		{ "after", required_argument, NULL, 'A' },
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli c = { .api = "unix:/run/wgws/provisioner.sock" };
	json_t *body, *ips, *reply = NULL;
	const char *verb, *after = NULL;
	bool want_config = false;
	unsigned long ul, limit = 0;
	char path[256], key[WG_KEY_B64_LEN + 1];
	int ch, status;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(cli_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	verb = argv[1];
	body = json_object();
	ips = json_array();
	if (!body || !ips)
		fatalx("out of memory");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			c.api = optarg;
			break;
		case 't':
			load_token(&c, optarg);
			break;
		case 'k':
			json_object_set_new(body, "public_key", json_string(optarg));
			break;
		case 'T':
			if (conf_parse_uint(optarg, 1, 315360000, &ul) < 0)
				fatalx("--ttl: '%s' is not a number of seconds", optarg);
			json_object_set_new(body, "ttl_seconds", json_integer((json_int_t)ul));
			break;
		case 'n':
			json_object_set_new(body, "name", json_string(optarg));
			break;
		case 'i':
			json_array_append_new(ips, json_string(optarg));
			break;
		case 'C':
			want_config = true;
			break;
		case 'A':
			after = optarg;
			break;
		case 'l':
			if (conf_parse_uint(optarg, 1, 1000, &limit) < 0)
				fatalx("--limit: a number from 1 to 1000");
			break;
		case 'h':
		default:
			json_decref(body);
			json_decref(ips);
			fputs(cli_usage, ch == 'h' ? stdout : stderr);
			return ch == 'h' ? 0 : 2;
		}
	}
	if (json_array_size(ips))
		json_object_set(body, "allowed_ips", ips);
	json_decref(ips);

	if (!strcmp(verb, "add") && optind == argc) {
		char *text = json_dumps(body, JSON_COMPACT);

		status = request(&c, "POST", "/v1/peers", text, &reply);
		free(text);
		die_on_error(status, reply);
		want_config ? print_config(reply) : print_json(reply);
	} else if ((!strcmp(verb, "del") || !strcmp(verb, "show")) && optind == argc - 1) {
		url_key(argv[optind], key);
		snprintf(path, sizeof(path), "/v1/peers/%s", key);
		status = request(&c, !strcmp(verb, "del") ? "DELETE" : "GET", path, NULL, &reply);
		die_on_error(status, reply);
		if (!strcmp(verb, "show") && want_config)
			print_config(reply);
		else if (!strcmp(verb, "show"))
			print_json(reply);
		else
			printf("deleted %s\n", argv[optind]);
	} else if (!strcmp(verb, "list") && optind == argc) {
		/* Follows "next" through every page unless --limit asks for one page. */
		char next[WG_KEY_B64_LEN + 1] = "";

		if (after)
			url_key(after, next);
		do {
			json_t *peers, *p, *n;
			size_t i;

			snprintf(path, sizeof(path), "/v1/peers?limit=%lu%s%s", limit ? limit : 1000,
				 next[0] ? "&after=" : "", next);
			status = request(&c, "GET", path, NULL, &reply);
			die_on_error(status, reply);
			peers = json_object_get(reply, "peers");
			json_array_foreach(peers, i, p) {
				json_t *a = json_object_get(p, "addresses"), *e;
				const char *name = json_string_value(json_object_get(p, "name"));
				size_t k;

				printf("%s\t", json_string_value(json_object_get(p, "public_key")));
				json_array_foreach(a, k, e)
					printf("%s%s", k ? "," : "", json_string_value(e));
				printf("\t%s\t%s\n",
				       json_is_true(json_object_get(p, "installed")) ? "installed" : "-",
				       name ? name : "");
			}
			n = json_object_get(reply, "next");
			snprintf(next, sizeof(next), "%s", json_is_string(n) ? json_string_value(n) : "");
			json_decref(reply);
			reply = NULL;
		} while (next[0] && !limit);
	} else {
		fputs(cli_usage, stderr);
		return 2;
	}
	json_decref(reply);
	json_decref(body);
	return 0;
}
