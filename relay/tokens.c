/* SPDX-License-Identifier: MIT */
/* Who may open tunnels (--tokens FILE, relay.h): a client sends "Authorization: Bearer
 * TOKEN" with its upgrade; the file holds, per line, a name, the SHA-256 of the token in hex
 * and optionally the most tunnels it may hold at once:
 *
 *     # name    sha256(token), hex                                                 max
 *     alice     3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b    4
 *
 * (printf '%s' "$TOKEN" | sha256sum). The relay never holds a token, only its hash: the
 * file is not a secret worth stealing. Matching hashes the offered token once and compares
 * it with every entry in constant time. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "relay.h"

struct tokens {
	unsigned n;
	struct token t[];
};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int parse_line(char *line, struct token *t, char err[static CONF_ERR_LEN])
{
	char *name = strtok(line, " \t"), *hex = strtok(NULL, " \t"), *max = strtok(NULL, " \t");
	unsigned long n = 0;

	if (!name || !hex || strtok(NULL, " \t")) {
		snprintf(err, CONF_ERR_LEN, "expected NAME SHA256-HEX [MAX-TUNNELS]");
		return -EINVAL;
	}
	if (strlen(name) > TOKEN_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyz"
					       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@") !=
						      strlen(name)) {
		snprintf(err, CONF_ERR_LEN, "name '%.40s': up to %d letters, digits, '.', '_', "
			 "'-' or '@'", name, TOKEN_NAME_MAX);
		return -EINVAL;
	}
	if (strlen(hex) != 64) {
		snprintf(err, CONF_ERR_LEN, "'%s': the SHA-256 of the token, 64 hex digits (not "
			 "the token itself: printf '%%s' TOKEN | sha256sum)", name);
		return -EINVAL;
	}
	for (int i = 0; i < 32; i++) {
		int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			snprintf(err, CONF_ERR_LEN, "'%s': the hash is not hexadecimal", name);
			return -EINVAL;
		}
		t->hash[i] = (uint8_t)(hi << 4 | lo);
	}
	if (max && conf_parse_uint(max, 1, 1000000, &n) < 0) {
		snprintf(err, CONF_ERR_LEN, "'%s': the most tunnels must be a number from 1 to "
			 "1000000, not '%.20s'", name, max);
		return -EINVAL;
	}
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->max_conns = n;
	return 0;
}

int tokens_load(const char *path, struct tokens **out, char err[static CONF_ERR_LEN])
{
	char line[512], why[CONF_ERR_LEN];
	struct tokens *ts = calloc(1, sizeof(*ts) + sizeof(struct token) * TOKENS_MAX);
	unsigned lineno = 0;
	FILE *f;

	*out = NULL;
	if (!ts)
		return -ENOMEM;
	if (!(f = fopen(path, "re"))) {
		int e = errno ? errno : EIO;

		snprintf(err, CONF_ERR_LEN, "--tokens %.200s: %s", path, strerror(e));
		free(ts);
		return -e;
	}
	while (fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");

		lineno++;
		p[strcspn(p, "\r\n")] = '\0';
		if (!*p || *p == '#')
			continue;
		if (ts->n == TOKENS_MAX) {
			snprintf(err, CONF_ERR_LEN, "%.200s:%u: more than %d tokens", path, lineno,
				 TOKENS_MAX);
			goto fail;
		}
		if (parse_line(p, &ts->t[ts->n], why) < 0) {
			snprintf(err, CONF_ERR_LEN, "%.60s:%u: %.180s", path, lineno, why);
			goto fail;
		}
		for (unsigned i = 0; i < ts->n; i++)
			if (!strcmp(ts->t[i].name, ts->t[ts->n].name) ||
			    !memcmp(ts->t[i].hash, ts->t[ts->n].hash, 32)) {
				snprintf(err, CONF_ERR_LEN, "%.200s:%u: '%s' repeats the name or the "
					 "hash of line %s", path, lineno, ts->t[ts->n].name,
					 ts->t[i].name);
				goto fail;
			}
		ts->n++;
	}
	fclose(f);
	*out = ts;
	return 0;
fail:
	fclose(f);
	free(ts);
	return -EINVAL;
}

void tokens_free(struct tokens *ts)
{
	free(ts);
}

unsigned tokens_count(const struct tokens *ts)
{
	return ts ? ts->n : 0;
}

const struct token *tokens_at(const struct tokens *ts, unsigned i)
{
	return ts && i < ts->n ? &ts->t[i] : NULL;
}

int tokens_find_hash(const struct tokens *ts, const uint8_t hash[static 32])
{
	int found = -1;

	for (unsigned i = 0; ts && i < ts->n; i++)
		if (!CRYPTO_memcmp(ts->t[i].hash, hash, 32))
			found = (int)i; /* no early exit: the time says nothing about which */
	return found;
}

int tokens_hash_bearer(const char *authorization, uint8_t hash[static 32])
{
	static const char scheme[] = "Bearer ";
	const char *tok;
	size_t n;
	unsigned int len = 0;

	if (!authorization || strncasecmp(authorization, scheme, sizeof(scheme) - 1))
		return -ENOENT;
	tok = authorization + sizeof(scheme) - 1;
	tok += strspn(tok, " ");
	n = strcspn(tok, " \t\r\n");
	if (n < TOKEN_MIN_LEN || n > TOKEN_MAX_LEN || tok[n + strspn(tok + n, " ")] != '\0')
		return -EINVAL;
	if (EVP_Digest(tok, n, hash, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return -EIO;
	return 0;
}
