/* SPDX-License-Identifier: MIT */
/* Logging for all wgws programs: one line per event on stderr, "prog: level: message" (or
 * to syslog, log_to_syslog()). Each line starts with the time (UTC, ms: 2026-12-02T04:10:11.123Z)
 * unless stderr is the journal's stream (JOURNAL_STREAM names it, as under systemd), which
 * stamps lines itself: there each line starts with its syslog priority instead ("<4>" for a
 * warning, sd-daemon(3)), so journalctl -p works.
 * Modelled on OpenBSD's log.c: log_warn() appends strerror(errno), log_warnx() does not;
 * fatal()/fatalx() log and exit(1). errno is preserved by every call. common/ modules
 * never log; they return errors and let the program decide. */
#ifndef WGWS_LOG_H
#define WGWS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_WARN = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_DEBUG = 2,
};

/* prog names the program in each line; verbosity is the number of -v flags (0 = info).
 * Looks at stderr again: call it after redirecting stderr. */
void log_init(const char *prog, int verbosity);
/* Whether stderr is the journal's stream (JOURNAL_STREAM's device and inode are stderr's). */
bool log_stderr_is_journal(void);
bool log_is_debug(void);
/* From now on, lines go to syslog (LOG_DAEMON, tagged prog[pid], the level as priority),
 * not stderr: for a program that has detached from its terminal (wgws-shim --background). */
void log_to_syslog(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_vemit(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A usage or configuration error, for the person at the terminal: "PROG: fatal: MESSAGE (see
 * --help)" on stderr, no time stamp, and exit 2 (runtime failures exit 1). */
void fatal_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Rate-limited lines, for events a remote peer can repeat at will. One struct log_ratelimit
 * per cause (a static at the call site, as the kernel's DEFINE_RATELIMIT_STATE): at most
 * burst lines per interval_ms; the next line printed after a suppression ends with
 * "(N similar lines suppressed)". A line below the verbosity counts for nothing. A count
 * left when the flood stops is shown with the next line of that cause, whenever it comes.
 * Monotonic clock; no allocation; not thread-safe (each thread its own states). */
struct log_ratelimit {
	uint32_t interval_ms; /* 0: no limit */
	uint32_t burst;       /* lines per interval, at least 1 */
	uint32_t printed;     /* lines printed in the current interval */
	uint32_t suppressed;  /* lines dropped since the last one printed */
	uint64_t begin_ms;    /* start of the current interval, once started */
	bool started;
};

enum {
	LOG_RATELIMIT_INTERVAL_MS = 5000,
	LOG_RATELIMIT_BURST = 10,
};

#define LOG_RATELIMIT_INIT(interval_ms_, burst_) \
	{ .interval_ms = (interval_ms_), .burst = (burst_) }
#define LOG_RATELIMIT_DEFAULT LOG_RATELIMIT_INIT(LOG_RATELIMIT_INTERVAL_MS, LOG_RATELIMIT_BURST)

/* As log_warn() (with_errno: strerror(errno) of the call appended), log_warnx(), log_info()
 * and log_debug() by level, through rl. */
void log_rl(struct log_ratelimit *rl, enum log_level level, bool with_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* One default state per call site (per expansion), like the kernel's pr_warn_ratelimited(). */
#define LOG_RL_CALL(level, with_errno, ...)                              \
	do {                                                             \
		static struct log_ratelimit rl_ = LOG_RATELIMIT_DEFAULT; \
		log_rl(&rl_, (level), (with_errno), __VA_ARGS__);        \
	} while (0)
#define log_warn_ratelimited(...) LOG_RL_CALL(LOG_LEVEL_WARN, true, __VA_ARGS__)
#define log_warnx_ratelimited(...) LOG_RL_CALL(LOG_LEVEL_WARN, false, __VA_ARGS__)
#define log_info_ratelimited(...) LOG_RL_CALL(LOG_LEVEL_INFO, false, __VA_ARGS__)
#define log_debug_ratelimited(...) LOG_RL_CALL(LOG_LEVEL_DEBUG, false, __VA_ARGS__)

/* Tests only: the clock the rate limits read, in ms; NULL restores CLOCK_MONOTONIC. */
void log_set_clock(uint64_t (*now_ms)(void));

#endif
