/* SPDX-License-Identifier: MIT */
/* wg-style configuration files: "[Section]" lines and "Key = Value" lines, blank lines, and
 * comments from a '#' at the start of a line or after a space or tab to the end of the
 * line ("Token = ab#cd" keeps its '#'). An empty value is an error. A UTF-8 byte-order
 * mark is skipped at the start of the file and refused anywhere else. conf_parse_line()
 * parses one line in place (easy to fuzz); conf_load() reads a file, keeps only the given
 * section and hands each key to a callback. Keys are the programs' long option names,
 * compared without case, '-' or '_' ("MaxConns" is --max-conns), so a file and the
 * command line share one table and one setter. */
#ifndef WGWS_CONF_H
#define WGWS_CONF_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

enum conf_kind {
	CONF_BLANK,   /* empty or comment */
	CONF_SECTION, /* key holds the section name */
	CONF_PAIR,    /* key and value */
};

struct conf_line {
	enum conf_kind kind;
	char *key;   /* views into the parsed line, NUL-terminated, trimmed */
	char *value;
};

enum { CONF_ERR_LEN = 256 };

/* Parse line (modified in place; trailing newline allowed). Returns 0, or -EINVAL with a
 * message in err ("expected 'Key = Value'"). */
int conf_parse_line(char *line, struct conf_line *out, char err[static CONF_ERR_LEN])
	__attribute__((warn_unused_result));

/* Called for each pair in the wanted section; returns 0 or -errno with a message in err. */
typedef int (*conf_pair_fn)(void *arg, const char *key, const char *value,
			    char err[static CONF_ERR_LEN]);

/* Read path; pairs under [section] go to fn. Another section, a pair before any section,
 * a line over 1023 bytes or an error from fn stops the load. Returns 0 or -errno with
 * "path:line: message" in err. */
int conf_load(const char *path, const char *section, conf_pair_fn fn, void *arg,
	      char err[static CONF_ERR_LEN]) __attribute__((warn_unused_result));

/* A program's one setter for an option, by its getopt_long id; 0 or -errno with a message. */
typedef int (*conf_option_fn)(void *arg, int id, const char *value,
			      char err[static CONF_ERR_LEN]);

/* conf_load() through a getopt_long table: each key must name one of opts' long options that
 * take an argument, required or optional (not skip_id, the -c option itself); set gets its id
 * and the value. An optional_argument flag ("--jit", "--jit=no") is "Jit = yes" in a file.
 * An option may be given once in the file ("MaxConns" and "max-conns" are one option: the
 * second is refused, naming the first's line), unless its id is in repeatable (0-terminated,
 * or NULL for none): the options whose values add up on the command line too. */
int conf_load_options(const char *path, const char *section, const struct option *opts,
		      int skip_id, const int *repeatable, conf_option_fn set, void *arg,
		      char err[static CONF_ERR_LEN]) __attribute__((warn_unused_result));

/* True when a config key names the long option opt ("MaxConns" matches "max-conns"). */
bool conf_key_matches(const char *key, const char *opt);

/* yes/true/on/1 or no/false/off/0 (case-insensitive); returns 0 or -EINVAL. */
int conf_parse_bool(const char *s, bool *out) __attribute__((warn_unused_result));

/* Parse an unsigned decimal in [min, max]; returns 0 or -EINVAL / -ERANGE. */
int conf_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
	__attribute__((warn_unused_result));

#endif
