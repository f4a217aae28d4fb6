/* SPDX-License-Identifier: MIT */
/* wg-style configuration files, parsed one line at a time. See conf.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

enum { CONF_LINE_MAX = 1024 };

#define CONF_BOM "\xef\xbb\xbf" /* U+FEFF in UTF-8 */

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

static bool is_key_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_';
}

int conf_parse_line(char *line, struct conf_line *out, char err[static CONF_ERR_LEN])
{
	char *s, *eq, *p;

	memset(out, 0, sizeof(*out));
	/* '#' starts a comment at the start of a line or after blank space, so a value
	 * such as a token may still hold one. */
	for (p = line; *p; p++) {
		if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	}
	s = trim(line);
	if (!*s) {
		out->kind = CONF_BLANK;
		return 0;
	}
	if (*s == '[') {
		char *close = strchr(s, ']');

		if (!close || close[1] != '\0') {
			snprintf(err, CONF_ERR_LEN, "expected '[Section]'");
			return -EINVAL;
		}
		*close = '\0';
		out->kind = CONF_SECTION;
		out->key = trim(s + 1);
		if (!*out->key) {
			snprintf(err, CONF_ERR_LEN, "empty section name");
			return -EINVAL;
		}
		for (p = out->key; *p; p++) {
			if (!is_key_char(*p)) {
				snprintf(err, CONF_ERR_LEN, "bad section name");
				return -EINVAL;
			}
		}
		return 0;
	}
	eq = strchr(s, '=');
	if (!eq) {
		snprintf(err, CONF_ERR_LEN, "expected 'Key = Value'");
		return -EINVAL;
	}
	*eq = '\0';
	out->key = trim(s);
	out->value = trim(eq + 1);
	if (!*out->key) {
		snprintf(err, CONF_ERR_LEN, "missing key before '='");
		return -EINVAL;
	}
	for (p = out->key; *p; p++) {
		if (!is_key_char(*p)) {
			snprintf(err, CONF_ERR_LEN, "bad key '%s'", out->key);
			return -EINVAL;
		}
	}
	if (!*out->value) {
		snprintf(err, CONF_ERR_LEN, "missing value for '%s'", out->key);
		return -EINVAL;
	}
	out->kind = CONF_PAIR;
	return 0;
}

/* conf_load(), keeping *at_line at the line being read for fn's owner. */
static int load(const char *path, const char *section, conf_pair_fn fn, void *arg,
		unsigned *at_line, char err[static CONF_ERR_LEN])
{
	char line[CONF_LINE_MAX + 1], msg[CONF_ERR_LEN], *text;
	struct conf_line cl;
	unsigned lineno = 0;
	bool in_section = false;
	int ret = 0;
	FILE *f;

	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		snprintf(err, CONF_ERR_LEN, "%s: %s", path, strerror(errno));
		return ret;
	}
	while (fgets(line, sizeof(line), f)) {
		*at_line = ++lineno;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(msg, sizeof(msg), "line longer than %d bytes", CONF_LINE_MAX - 1);
			ret = -EINVAL;
			goto out_err;
		}
		/* Windows editors (Notepad) start a UTF-8 file with a byte-order mark. It marks
		 * the file, not a line: anywhere else it is most likely two files run together. */
		text = line;
		if (!strncmp(line, CONF_BOM, 3)) {
			if (lineno > 1) {
				snprintf(msg, sizeof(msg), "a byte-order mark (EF BB BF) is "
					 "allowed only at the start of the file");
				ret = -EINVAL;
				goto out_err;
			}
			text += 3;
		}
		ret = conf_parse_line(text, &cl, msg);
		if (ret < 0)
			goto out_err;
		if (cl.kind == CONF_SECTION) {
			if (strcasecmp(cl.key, section)) {
				snprintf(msg, sizeof(msg), "unknown section [%s] (expected [%s])",
					 cl.key, section);
				ret = -EINVAL;
				goto out_err;
			}
			in_section = true;
		} else if (cl.kind == CONF_PAIR) {
			if (!in_section) {
				snprintf(msg, sizeof(msg), "'%s' outside of [%s]", cl.key, section);
				ret = -EINVAL;
				goto out_err;
			}
			snprintf(msg, sizeof(msg), "bad value for '%s'", cl.key);
			ret = fn(arg, cl.key, cl.value, msg);
			if (ret < 0)
				goto out_err;
		}
	}
	if (ferror(f)) {
		ret = -EIO;
		snprintf(err, CONF_ERR_LEN, "%s: read error", path);
	}
	fclose(f);
	return ret;
out_err:
	/* Truncating a long path in the message is fine. */
	if (snprintf(err, CONF_ERR_LEN, "%s:%u: %s", path, lineno, msg) >= CONF_ERR_LEN)
		err[CONF_ERR_LEN - 1] = '\0';
	fclose(f);
	return ret;
}

int conf_load(const char *path, const char *section, conf_pair_fn fn, void *arg,
	      char err[static CONF_ERR_LEN])
{
	unsigned line;

	return load(path, section, fn, arg, &line, err);
}

struct options_ctx {
	const struct option *opts;
	int skip_id;
	const int *repeatable;
	conf_option_fn set;
	void *arg;
	unsigned line;      /* being read */
	unsigned *given_on; /* per entry of opts: the line that gave it, or 0 */
};

static bool may_repeat(const int *repeatable, int id)
{
	for (; repeatable && *repeatable; repeatable++)
		if (*repeatable == id)
			return true;
	return false;
}

static int option_pair(void *arg, const char *key, const char *value, char err[static CONF_ERR_LEN])
{
	struct options_ctx *ctx = arg;

	for (size_t i = 0; ctx->opts[i].name; i++) {
		const struct option *o = &ctx->opts[i];

		if (o->has_arg == no_argument || o->val == ctx->skip_id ||
		    !conf_key_matches(key, o->name))
			continue;
		/* Two lines for one setting: the later one would win unseen, and which one
		 * was meant is a guess. */
		if (ctx->given_on[i] && !may_repeat(ctx->repeatable, o->val)) {
			snprintf(err, CONF_ERR_LEN, "'%s' was already given on line %u (--%s takes "
				 "one value)", key, ctx->given_on[i], o->name);
			return -EINVAL;
		}
		ctx->given_on[i] = ctx->line;
		return ctx->set(ctx->arg, o->val, value, err);
	}
	snprintf(err, CONF_ERR_LEN, "unknown key '%s'", key);
	return -EINVAL;
}

int conf_load_options(const char *path, const char *section, const struct option *opts,
		      int skip_id, const int *repeatable, conf_option_fn set, void *arg,
		      char err[static CONF_ERR_LEN])
{
	struct options_ctx ctx = { .opts = opts, .skip_id = skip_id, .repeatable = repeatable,
				   .set = set, .arg = arg };
	size_t n = 0;
	int ret;

	while (opts[n].name)
		n++;
	ctx.given_on = calloc(n + 1, sizeof(*ctx.given_on));
	if (!ctx.given_on) {
		snprintf(err, CONF_ERR_LEN, "%s: out of memory", path);
		return -ENOMEM;
	}
	ret = load(path, section, option_pair, &ctx, &ctx.line, err);
	free(ctx.given_on);
	return ret;
}

bool conf_key_matches(const char *key, const char *opt)
{
	for (;;) {
		while (*key == '-' || *key == '_')
			key++;
		while (*opt == '-' || *opt == '_')
			opt++;
		if (!*key || !*opt)
			return !*key && !*opt;
		if (tolower((unsigned char)*key) != tolower((unsigned char)*opt))
			return false;
		key++;
		opt++;
	}
}

int conf_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int conf_parse_bool(const char *s, bool *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on") ||
	    !strcmp(s, "1"))
		*out = true;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcasecmp(s, "off") ||
		 !strcmp(s, "0"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}
