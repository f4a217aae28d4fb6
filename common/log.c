/* SPDX-License-Identifier: MIT */
/* Logging to stderr, one line per event: "TIME prog: level: message" (or "<PRIO>prog: level:
 * message" into the journal); or to syslog. See log.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_prog = "wgws";
static int log_verbosity;
static uint64_t (*log_clock)(void);
static bool log_syslog;
static bool log_journal;

bool log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js && fstat(STDERR_FILENO, &st) == 0 &&
	       sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	       dev == (unsigned long long)st.st_dev && ino == (unsigned long long)st.st_ino;
}

void log_init(const char *prog, int verbosity)
{
	log_prog = prog;
	log_verbosity = verbosity;
	log_journal = log_stderr_is_journal();
}

/* The start of a stderr line: the time, or the journal's priority. */
static const char *line_head(int prio, char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	if (log_journal) {
		snprintf(buf, len, "<%d>", prio);
		return buf;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ts.tv_nsec / 1000000));
	return buf;
}

void log_to_syslog(void)
{
	openlog(log_prog, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_syslog = true;
}

bool log_is_debug(void)
{
	return log_verbosity >= LOG_LEVEL_DEBUG;
}

/* suppressed: lines a rate limit dropped before this one (0: none, nothing added). */
static void __attribute__((format(printf, 2, 0)))
vlog_rl(const char *level, const char *fmt, va_list ap, const char *suffix, uint32_t suppressed)
{
	char line[1024], note[64] = "", head[64];
	int saved = errno;
	int prio = level[0] == 'f' ? LOG_ERR : level[0] == 'w' ? LOG_WARNING :
		   level[0] == 'i' ? LOG_INFO : LOG_DEBUG;

	vsnprintf(line, sizeof(line), fmt, ap);
	if (suppressed)
		snprintf(note, sizeof(note), " (%lu similar line%s suppressed)",
			 (unsigned long)suppressed, suppressed == 1 ? "" : "s");
	if (log_syslog)
		syslog(prio, "%s%s%s%s", line, suffix ? ": " : "", suffix ? suffix : "", note);
	else if (suffix)
		fprintf(stderr, "%s%s: %s: %s: %s%s\n", line_head(prio, head, sizeof(head)),
			log_prog, level, line, suffix, note);
	else
		fprintf(stderr, "%s%s: %s: %s%s\n", line_head(prio, head, sizeof(head)), log_prog,
			level, line, note);
	errno = saved;
}

static void __attribute__((format(printf, 2, 0)))
vlog(const char *level, const char *fmt, va_list ap, const char *suffix)
{
	vlog_rl(level, fmt, ap, suffix, 0);
}

static const char *const level_names[] = { "warning", "info", "debug" };

static bool level_shown(enum log_level level)
{
	return (int)level <= log_verbosity + 1;
}

void log_vemit(enum log_level level, const char *fmt, va_list ap)
{
	if (!level_shown(level))
		return;
	vlog(level_names[level], fmt, ap, NULL);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	const char *err = strerror(errno);

	va_start(ap, fmt);
	vlog("warning", fmt, ap, err);
	va_end(ap);
}

void log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_WARN, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_INFO, fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_DEBUG, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	const char *err = strerror(errno);

	va_start(ap, fmt);
	vlog("fatal", fmt, ap, err);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("fatal", fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

void fatal_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: fatal: ", log_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	exit(2);
}

void log_set_clock(uint64_t (*now_ms)(void))
{
	log_clock = now_ms;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	if (log_clock)
		return log_clock();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether rl lets one more line through now; *suppressed is then the count to report. */
static bool rl_allows(struct log_ratelimit *rl, uint32_t *suppressed)
{
	uint64_t now;

	*suppressed = 0;
	if (!rl->interval_ms)
		return true;
	now = now_ms();
	if (!rl->started || now - rl->begin_ms >= rl->interval_ms) {
		rl->started = true;
		rl->begin_ms = now;
		rl->printed = 0;
	}
	if (rl->printed >= rl->burst) {
		if (rl->suppressed < UINT32_MAX)
			rl->suppressed++;
		return false;
	}
	rl->printed++;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}

static void __attribute__((format(printf, 3, 0)))
vemit_rl(struct log_ratelimit *rl, enum log_level level, const char *fmt, va_list ap,
	 const char *suffix)
{
	uint32_t suppressed;

	/* vlog_rl keeps errno; nothing before it sets it. */
	if (level_shown(level) && rl_allows(rl, &suppressed))
		vlog_rl(level_names[level], fmt, ap, suffix, suppressed);
}

void log_rl(struct log_ratelimit *rl, enum log_level level, bool with_errno, const char *fmt, ...)
{
	va_list ap;
	const char *err = with_errno ? strerror(errno) : NULL;

	va_start(ap, fmt);
	vemit_rl(rl, level, fmt, ap, err);
	va_end(ap);
}
