/* SPDX-License-Identifier: MIT */
/* Unit tests for common/conf.h: the one-line parser, the file loader (on temporary files
 * under /tmp, removed afterwards), the loader through a getopt table, key matching and
 * bounded unsigned parsing. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

static const char *cur_case = "?";
#include "expect.h"

/* True when s is NUL-terminated within CONF_ERR_LEN and not empty. */
static bool err_is_message(const char *err)
{
	size_t n = strnlen(err, CONF_ERR_LEN);

	return n > 0 && n < CONF_ERR_LEN;
}

/* --- conf_parse_line ------------------------------------------------------------------ */

enum { RES_ERR = -1 };

static const struct {
	const char *name;
	const char *line;
	int kind; /* enum conf_kind, or RES_ERR for -EINVAL */
	const char *key, *value;
} lines[] = {
	{ "section", "[Relay]", CONF_SECTION, "Relay", NULL },
	{ "section with newline", "[Relay]\n", CONF_SECTION, "Relay", NULL },
	{ "section with surrounding blanks", "  [Relay] \t\n", CONF_SECTION, "Relay", NULL },
	{ "pair", "Listen = 0.0.0.0:443", CONF_PAIR, "Listen", "0.0.0.0:443" },
	{ "pair, no spaces", "Listen=0.0.0.0:443", CONF_PAIR, "Listen", "0.0.0.0:443" },
	{ "pair, many spaces and newline", "   MaxConns    =    100   \n", CONF_PAIR, "MaxConns",
	  "100" },
	{ "pair, tabs", "\tMaxConns\t=\t100\t", CONF_PAIR, "MaxConns", "100" },
	{ "pair, inner spaces kept", "Path = /var/lib/my dir/x", CONF_PAIR, "Path",
	  "/var/lib/my dir/x" },
	{ "pair, '=' in value", "Token = abc==", CONF_PAIR, "Token", "abc==" },
	{ "pair, base64 key value", "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
	  CONF_PAIR, "PrivateKey", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=" },
	/* Empty value: rejected here, with file:line, rather than left to each setter
	 * (no wgws option takes an empty argument; the err example is "expected
	 * 'Key = Value'"). */
	{ "empty value", "Key=", RES_ERR, NULL, NULL },
	{ "empty value with spaces", "Key =   \n", RES_ERR, NULL, NULL },
	{ "empty value, comment", "Key = # nothing", RES_ERR, NULL, NULL },
	/* '#' starts a comment at the start of a line or after a space or tab */
	{ "hash inside a value", "Token = ab#cd", CONF_PAIR, "Token", "ab#cd" },
	{ "hash after a tab", "Token = ab\t#cd", CONF_PAIR, "Token", "ab" },
	{ "inline comment after value", "MaxConns = 100 # per worker", CONF_PAIR, "MaxConns",
	  "100" },
	{ "inline comment after section", "[Relay] # the relay", CONF_SECTION, "Relay", NULL },
	{ "CRLF", "Listen = 1\r\n", CONF_PAIR, "Listen", "1" },
	{ "comment", "# a comment", CONF_BLANK, NULL, NULL },
	{ "comment, no space", "#Listen = 1", CONF_BLANK, NULL, NULL },
	{ "indented comment", "   \t# a comment\n", CONF_BLANK, NULL, NULL },
	{ "empty", "", CONF_BLANK, NULL, NULL },
	{ "newline", "\n", CONF_BLANK, NULL, NULL },
	{ "blanks", "  \t  \n", CONF_BLANK, NULL, NULL },
	{ "missing '='", "Listen 0.0.0.0:443", RES_ERR, NULL, NULL },
	{ "key only", "Listen", RES_ERR, NULL, NULL },
	{ "empty key", "= 5", RES_ERR, NULL, NULL },
	{ "blank key", "   = 5", RES_ERR, NULL, NULL },
	{ "unterminated section", "[bad", RES_ERR, NULL, NULL },
	{ "unterminated section, newline", "[bad\n", RES_ERR, NULL, NULL },
	{ "unopened section", "bad]", RES_ERR, NULL, NULL },
	{ "garbage after ']'", "[Relay] junk", RES_ERR, NULL, NULL },
	{ "garbage right after ']'", "[Relay]x", RES_ERR, NULL, NULL },
	{ "second ']'", "[Relay]]", RES_ERR, NULL, NULL },
	{ "empty section name", "[]", RES_ERR, NULL, NULL },
	{ "blank section name", "[ ]", RES_ERR, NULL, NULL },
	{ "section name with a space", "[Re lay]", RES_ERR, NULL, NULL },
};

static void test_parse_line(void **state)
{
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		char line[256], err[CONF_ERR_LEN];
		struct conf_line out;
		size_t n = strlen(lines[i].line);
		int rc;

		cur_case = lines[i].name;
		memcpy(line, lines[i].line, n + 1);
		memset(err, 0, sizeof(err));
		memset(&out, 0, sizeof(out));
		rc = conf_parse_line(line, &out, err);
		if (lines[i].kind == RES_ERR) {
			EXPECT_EQ(rc, -EINVAL);
			EXPECT(err_is_message(err));
			continue;
		}
		if (rc != 0)
			fail_msg("case %s: rc %d, err \"%.*s\"", cur_case, rc, CONF_ERR_LEN, err);
		EXPECT_EQ(out.kind, lines[i].kind);
		if (lines[i].key) {
			EXPECT_STREQ(out.key, lines[i].key);
			/* views into the line, not copies */
			EXPECT(out.key >= line && out.key < line + n);
		}
		if (lines[i].value) {
			EXPECT_STREQ(out.value, lines[i].value);
			EXPECT(out.value >= line && out.value <= line + n);
		}
	}
}

/* --- conf_load ------------------------------------------------------------------------ */

struct collect {
	size_t n;
	char keys[16][64];
	char values[16][1200];
	const char *fail_key;  /* the callback refuses this key */
	int fail_rc;
};

static int collect_pair(void *arg, const char *key, const char *value,
			char err[static CONF_ERR_LEN])
{
	struct collect *c = arg;

	if (c->fail_key && strcmp(key, c->fail_key) == 0) {
		snprintf(err, CONF_ERR_LEN, "callback refused %s", key);
		return c->fail_rc;
	}
	if (c->n >= 16)
		return -E2BIG;
	snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
	snprintf(c->values[c->n], sizeof(c->values[0]), "%s", value);
	c->n++;
	return 0;
}

/* Write text to a fresh file under /tmp; path receives its name. */
static void write_temp(char path[static 64], const char *text, size_t len)
{
	int fd;

	snprintf(path, 64, "/tmp/wgws-test-conf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

struct pair {
	const char *key, *value;
};

static const struct {
	const char *name;
	const char *text;
	const char *section;
	int rc;               /* 0, or the expected -errno; 1 means "any negative" */
	int err_line;         /* line number expected in "path:line:" when rc != 0 */
	const char *fail_key; /* the callback refuses this key with -ERANGE */
	struct pair pairs[6]; /* pairs delivered, in order, NULL-terminated */
} loads[] = {
	{ "pairs in order",
	  "# wgws relay\n[Relay]\nListen = 0.0.0.0:443\n\n# limits\nMaxConns = 100\n"
	  "Path=/wg\n",
	  "Relay", 0, 0, NULL,
	  { { "Listen", "0.0.0.0:443" }, { "MaxConns", "100" }, { "Path", "/wg" } } },
	{ "no newline at end", "[Relay]\nListen = 1\nPath = /wg", "Relay", 0, 0, NULL,
	  { { "Listen", "1" }, { "Path", "/wg" } } },
	{ "empty section", "[Relay]\n", "Relay", 0, 0, NULL, { { NULL, NULL } } },
	{ "unknown section", "[Relay]\nListen = 1\n\n[Shim]\nRelay = wss://x/wg\n", "Relay", 1,
	  4, NULL, { { "Listen", "1" } } },
	{ "only another section", "# c\n[Provisioner]\nA = 1\n", "Relay", 1, 2, NULL,
	  { { NULL, NULL } } },
	{ "pair before any section", "Listen = 1\n[Relay]\nPath = /wg\n", "Relay", 1, 1, NULL,
	  { { NULL, NULL } } },
	{ "syntax error", "[Relay]\nListen = 1\n# c\nnonsense\nPath = /wg\n", "Relay", -EINVAL,
	  4, NULL, { { "Listen", "1" } } },
	{ "bad section line", "[Relay]\nListen = 1\n[Relay\n", "Relay", -EINVAL, 3, NULL,
	  { { "Listen", "1" } } },
	{ "callback error", "[Relay]\nListen = 1\n\n# c\nMaxConns = 99999999\nPath = /wg\n",
	  "Relay", -ERANGE, 5, "MaxConns", { { "Listen", "1" } } },
	/* A UTF-8 byte-order mark (EF BB BF) marks the file: skipped at its very start only. */
	{ "BOM before the section", "\xef\xbb\xbf[Relay]\nListen = 1\n", "Relay", 0, 0, NULL,
	  { { "Listen", "1" } } },
	{ "BOM before a comment", "\xef\xbb\xbf# c\n[Relay]\nListen = 1\n", "Relay", 0, 0, NULL,
	  { { "Listen", "1" } } },
	{ "BOM, CRLF", "\xef\xbb\xbf[Relay]\r\nListen = 1\r\n", "Relay", 0, 0, NULL,
	  { { "Listen", "1" } } },
	{ "BOM on line 2", "[Relay]\n\xef\xbb\xbfListen = 1\nPath = /wg\n", "Relay", -EINVAL, 2,
	  NULL, { { NULL, NULL } } },
	{ "BOM on a later section line", "[Relay]\nListen = 1\n\xef\xbb\xbf[Relay]\n", "Relay",
	  -EINVAL, 3, NULL, { { "Listen", "1" } } },
	{ "BOM after a blank", " \xef\xbb\xbf[Relay]\nListen = 1\n", "Relay", -EINVAL, 1, NULL,
	  { { NULL, NULL } } },
	{ "two BOMs", "\xef\xbb\xbf\xef\xbb\xbf[Relay]\nListen = 1\n", "Relay", -EINVAL, 1, NULL,
	  { { NULL, NULL } } },
	{ "BOM alone, then a pair before any section", "\xef\xbb\xbf\nListen = 1\n[Relay]\n",
	  "Relay", 1, 2, NULL, { { NULL, NULL } } },
};

static void check_err_prefix(const char *err, const char *path, int line)
{
	char want[96];

	snprintf(want, sizeof(want), "%s:%d: ", path, line);
	EXPECT(strnlen(err, CONF_ERR_LEN) < CONF_ERR_LEN);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("case %s: err \"%s\", expected prefix \"%s\"", cur_case, err, want);
	/* and a message after it */
	EXPECT(strlen(err) > strlen(want));
}

static void test_load(void **state)
{
	for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
		char path[64], err[CONF_ERR_LEN];
		struct collect c;
		size_t npairs = 0;
		int rc;

		cur_case = loads[i].name;
		memset(&c, 0, sizeof(c));
		c.fail_key = loads[i].fail_key;
		c.fail_rc = -ERANGE;
		write_temp(path, loads[i].text, strlen(loads[i].text));
		memset(err, 0, sizeof(err));
		rc = conf_load(path, loads[i].section, collect_pair, &c, err);
		unlink(path);
		if (loads[i].rc == 0 && rc != 0)
			fail_msg("case %s: rc %d, err \"%.*s\"", cur_case, rc, CONF_ERR_LEN, err);
		if (loads[i].rc == 1)
			EXPECT(rc < 0);
		else
			EXPECT_EQ(rc, loads[i].rc);
		if (loads[i].rc != 0)
			check_err_prefix(err, path, loads[i].err_line);
		if (loads[i].fail_key && !strstr(err, "callback refused"))
			fail_msg("case %s: the callback's message is lost: \"%s\"", cur_case, err);
		while (npairs < 6 && loads[i].pairs[npairs].key)
			npairs++;
		EXPECT_EQ(c.n, npairs);
		for (size_t j = 0; j < npairs; j++) {
			EXPECT_STREQ(c.keys[j], loads[i].pairs[j].key);
			EXPECT_STREQ(c.values[j], loads[i].pairs[j].value);
		}
	}
}

static void test_load_missing_file(void **state)
{
	char path[64], err[CONF_ERR_LEN];
	struct collect c;

	cur_case = "missing file";
	memset(&c, 0, sizeof(c));
	write_temp(path, "", 0);
	unlink(path);
	memset(err, 0, sizeof(err));
	EXPECT_EQ(conf_load(path, "Relay", collect_pair, &c, err), -ENOENT);
	EXPECT(strnlen(err, CONF_ERR_LEN) < CONF_ERR_LEN);
	EXPECT(strstr(err, path) != NULL);
	EXPECT_EQ(c.n, 0);
}

static int refuse_silently(void *arg, const char *key, const char *value,
			   char err[static CONF_ERR_LEN])
{
	return -EPERM;
}

/* Fill the stack below us with non-NUL bytes, so that a buffer conf_load leaves
 * uninitialised is not accidentally a valid empty string. */
static void __attribute__((noinline)) dirty_stack(void)
{
	volatile char junk[16384];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = 'J';
}

static void test_load_callback_without_message(void **state)
{
	/* The callback breaks its contract and leaves err alone: conf_load must still
	 * produce a bounded "path:line: ..." message, never stack garbage. */
	static const char text[] = "[Relay]\n# c\nListen = 1\n";
	char tmp[64], path[64], err[CONF_ERR_LEN];
	int fd, rc;

	cur_case = "callback error without a message";
	/* This one may abort under ASan inside conf_load: unlink first, read via the fd. */
	write_temp(tmp, text, strlen(text));
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	unlink(tmp);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	memset(err, 0, sizeof(err));
	dirty_stack();
	rc = conf_load(path, "Relay", refuse_silently, NULL, err);
	close(fd);
	EXPECT_EQ(rc, -EPERM);
	EXPECT(strnlen(err, CONF_ERR_LEN) < CONF_ERR_LEN);
	{
		char want[96];

		snprintf(want, sizeof(want), "%s:3: ", path);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("case %s: err \"%.*s\", expected prefix \"%s\"", cur_case,
				 CONF_ERR_LEN, err, want);
		if (strchr(err + strlen(want), 'J'))
			fail_msg("case %s: err holds uninitialised stack bytes: \"%.*s\"",
				 cur_case, CONF_ERR_LEN, err);
	}
}

/* Line 3 is "Key = " followed by fill bytes of 'x'. A 1024-byte line is at most what the
 * loader accepts ("over 1023 bytes" rejected), however the newline is counted; the tail of
 * the long lines is itself a valid pair, so a loader that silently splits the line would
 * deliver it. */
static void test_load_long_lines(void **state)
{
	static const struct {
		const char *name;
		size_t fill;
		bool newline;
		bool ok;
	} cases[] = {
		{ "line of 1022 bytes + newline", 1022 - 6, true, true },
		{ "line of 1024 bytes + newline", 1024 - 6, true, false },
		{ "line of 1100 bytes + newline", 1100 - 6, true, false },
		{ "line of 4096 bytes + newline", 4096 - 6, true, false },
		{ "last line of 1024 bytes, no newline", 1024 - 6, false, false },
		{ "last line of 1022 bytes, no newline", 1022 - 6, false, true },
	};
	static const char head[] = "[Relay]\nListen = 1\n";
	static const char tail[] = "Path = /wg\n";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t cap = sizeof(head) + 6 + cases[i].fill + 16 + sizeof(tail), n = 0;
		char *text = malloc(cap), path[64], err[CONF_ERR_LEN];
		struct collect c;
		int rc;

		cur_case = cases[i].name;
		assert_non_null(text);
		memcpy(text + n, head, strlen(head));
		n += strlen(head);
		memcpy(text + n, "Key = ", 6);
		n += 6;
		memset(text + n, 'x', cases[i].fill);
		/* something that parses as "xx... = y" if the line is cut */
		memcpy(text + n + cases[i].fill - 8, " = tail", 7);
		n += cases[i].fill;
		if (cases[i].newline) {
			text[n++] = '\n';
			memcpy(text + n, tail, strlen(tail));
			n += strlen(tail);
		}
		memset(&c, 0, sizeof(c));
		write_temp(path, text, n);
		memset(err, 0, sizeof(err));
		rc = conf_load(path, "Relay", collect_pair, &c, err);
		unlink(path);
		if (cases[i].ok) {
			if (rc != 0)
				fail_msg("case %s: rc %d, err \"%.*s\"", cur_case, rc, CONF_ERR_LEN,
					 err);
			EXPECT_EQ(c.n, cases[i].newline ? 3 : 2);
			EXPECT_STREQ(c.keys[1], "Key");
			EXPECT_EQ(strlen(c.values[1]), cases[i].fill);
		} else {
			EXPECT(rc < 0);
			check_err_prefix(err, path, 3);
			/* only the pair before the long line was delivered */
			EXPECT_EQ(c.n, 1);
		}
		free(text);
	}
}

/* --- conf_load_options ---------------------------------------------------------------- */

enum { T_LISTEN = 256, T_MAX_CONNS, T_PEER, T_JIT };

static const struct option t_opts[] = {
	{ "listen", required_argument, NULL, T_LISTEN },
	{ "max-conns", required_argument, NULL, T_MAX_CONNS },
	{ "peer", required_argument, NULL, T_PEER },
	{ "jit", optional_argument, NULL, T_JIT },
	{ "config", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ NULL, 0, NULL, 0 },
};

static const int t_peer_repeats[] = { T_PEER, 0 };

struct collect_ids {
	size_t n;
	int ids[16];
};

static int collect_option(void *arg, int id, const char *value, char err[static CONF_ERR_LEN])
{
	struct collect_ids *c = arg;

	if (c->n >= 16)
		return -E2BIG;
	c->ids[c->n++] = id;
	return 0;
}

/* A key names one option however it is spelled; a second line for the same option is an
 * error naming both lines, unless the option is one of the repeatable ones. */
static void test_load_options(void **state)
{
	static const struct {
		const char *name;
		const char *text;
		const int *repeatable;
		int err_line;     /* 0: loads; else the error's line, with -EINVAL */
		const char *want; /* in the message */
		size_t nset;      /* options set before the end or the error */
	} cases[] = {
		{ "each option once", "[Relay]\nListen = a\nMaxConns = 1\nPeer = p\nJit = yes\n",
		  t_peer_repeats, 0, NULL, 4 },
		{ "same key twice", "[Relay]\nListen = a\nMaxConns = 1\nListen = b\n",
		  t_peer_repeats, 4, "'Listen' was already given on line 2", 2 },
		{ "same option, other spelling", "[Relay]\nMaxConns = 1\n\n# c\nmax_conns = 2\n",
		  t_peer_repeats, 5, "'max_conns' was already given on line 2", 1 },
		{ "same option, kebab then upper case", "[Relay]\nmax-conns = 1\nMAX-CONNS = 2\n",
		  t_peer_repeats, 3, "on line 2", 1 },
		{ "the message names the option", "[Relay]\nListen = a\nlisten = a\n", NULL, 3,
		  "--listen", 1 },
		{ "an on/off key twice", "[Relay]\nJit = yes\nJit = no\n", t_peer_repeats, 3,
		  "on line 2", 1 },
		{ "same value twice", "[Relay]\nMaxConns = 1\nMaxConns = 1\n", t_peer_repeats, 3,
		  "on line 2", 1 },
		{ "under a second [Relay] header", "[Relay]\nListen = a\n[relay]\nListen = b\n",
		  t_peer_repeats, 4, "on line 2", 1 },
		{ "a repeatable option adds up",
		  "[Relay]\nPeer = a\nListen = x\npeer = b\nPEER = c\n", t_peer_repeats, 0, NULL,
		  4 },
		{ "a repeatable one does not excuse others",
		  "[Relay]\nPeer = a\nListen = x\nPeer = b\nListen = y\n", t_peer_repeats, 5,
		  "'Listen' was already given on line 3", 3 },
		{ "no repeatable list", "[Relay]\nPeer = a\nPeer = b\n", NULL, 3,
		  "'Peer' was already given on line 2", 1 },
		{ "after a byte-order mark", "\xef\xbb\xbf[Relay]\nListen = a\nListen = b\n",
		  t_peer_repeats, 3, "on line 2", 1 },
		{ "a flag is not a key", "[Relay]\nVerbose = yes\n", t_peer_repeats, 2,
		  "unknown key 'Verbose'", 0 },
		{ "the -c option is not a key", "[Relay]\nConfig = x\n", t_peer_repeats, 2,
		  "unknown key 'Config'", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[64], err[CONF_ERR_LEN];
		struct collect_ids c;
		int rc;

		cur_case = cases[i].name;
		memset(&c, 0, sizeof(c));
		write_temp(path, cases[i].text, strlen(cases[i].text));
		memset(err, 0, sizeof(err));
		rc = conf_load_options(path, "Relay", t_opts, 'c', cases[i].repeatable,
				       collect_option, &c, err);
		unlink(path);
		if (!cases[i].err_line && rc != 0)
			fail_msg("case %s: rc %d, err \"%.*s\"", cur_case, rc, CONF_ERR_LEN, err);
		if (cases[i].err_line) {
			EXPECT_EQ(rc, -EINVAL);
			check_err_prefix(err, path, cases[i].err_line);
			if (!strstr(err, cases[i].want))
				fail_msg("case %s: err \"%s\" does not say \"%s\"", cur_case, err,
					 cases[i].want);
		}
		EXPECT_EQ(c.n, cases[i].nset);
	}
}

/* --- conf_key_matches ----------------------------------------------------------------- */

static void test_key_matches(void **state)
{
	static const struct {
		const char *key, *opt;
		bool want;
	} cases[] = {
		{ "MaxConns", "max-conns", true },
		{ "max_conns", "max-conns", true },
		{ "MAXCONNS", "max-conns", true },
		{ "max-conns", "max-conns", true },
		{ "Max-Conns", "max-conns", true },
		{ "maxconns", "max-conns", true },
		{ "Listen", "listen", true },
		{ "IdleTimeoutMs", "idle-timeout-ms", true },
		{ "MaxConn", "max-conns", false },
		{ "MaxConnsX", "max-conns", false },
		{ "MaxConns", "max-conn", false },
		{ "Max", "max-conns", false },
		{ "", "max-conns", false },
		{ "Listen", "listen-addr", false },
		{ "MaxConns", "max-cons", false },
		{ "MinConns", "max-conns", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[64];

		snprintf(name, sizeof(name), "\"%s\" ~ \"%s\"", cases[i].key, cases[i].opt);
		cur_case = name;
		EXPECT_EQ(conf_key_matches(cases[i].key, cases[i].opt), cases[i].want);
	}
}

/* --- conf_parse_uint ------------------------------------------------------------------ */

static void test_parse_uint(void **state)
{
	static const struct {
		const char *s;
		unsigned long min, max;
		int want;
		unsigned long out;
	} cases[] = {
		{ "0", 0, 10, 0, 0 },
		{ "10", 0, 10, 0, 10 },
		{ "7", 7, 7, 0, 7 },
		{ "007", 0, 10, 0, 7 },
		{ "11", 0, 10, -ERANGE, 0 },
		{ "5", 6, 10, -ERANGE, 0 },
		{ "0", 1, 65535, -ERANGE, 0 },
		{ "65535", 1, 65535, 0, 65535 },
		{ "65536", 1, 65535, -ERANGE, 0 },
		{ "4294967296", 0, 4294967295ul, -ERANGE, 0 },
		{ "18446744073709551615", 0, ULONG_MAX, 0, ULONG_MAX },
		{ "18446744073709551616", 0, ULONG_MAX, -ERANGE, 0 },
		{ "99999999999999999999999", 0, ULONG_MAX, -ERANGE, 0 },
		{ "", 0, 10, -EINVAL, 0 },
		{ "-1", 0, ULONG_MAX, -EINVAL, 0 },
		{ "-0", 0, 10, -EINVAL, 0 },
		{ "+5", 0, 10, -EINVAL, 0 },
		{ "12x", 0, 100, -EINVAL, 0 },
		{ " 5", 0, 10, -EINVAL, 0 },
		{ "5 ", 0, 10, -EINVAL, 0 },
		{ "0x10", 0, 100, -EINVAL, 0 },
		{ "1e3", 0, 10000, -EINVAL, 0 },
		{ "1.5", 0, 10, -EINVAL, 0 },
		{ "x", 0, 10, -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[64];
		unsigned long out = 12345;

		snprintf(name, sizeof(name), "uint \"%s\" in [%lu, %lu]", cases[i].s, cases[i].min,
			 cases[i].max);
		cur_case = name;
		EXPECT_EQ(conf_parse_uint(cases[i].s, cases[i].min, cases[i].max, &out),
			  cases[i].want);
		if (cases[i].want == 0 && out != cases[i].out)
			fail_msg("case %s: out is %lu, expected %lu", cur_case, out, cases[i].out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_line),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_callback_without_message),
		cmocka_unit_test(test_load_long_lines),
		cmocka_unit_test(test_load_options),
		cmocka_unit_test(test_key_matches),
		cmocka_unit_test(test_parse_uint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
