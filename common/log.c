/* Logging to stderr, one line per event: "prog: level: message". See log.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char *log_prog = "wgws";
static int log_verbosity;

void log_init(const char *prog, int verbosity)
{
	log_prog = prog;
	log_verbosity = verbosity;
}

bool log_is_debug(void)
{
	return log_verbosity >= LOG_LEVEL_DEBUG;
}

static void vlog(const char *level, const char *fmt, va_list ap, const char *suffix)
{
	char line[1024];
	int saved = errno;

	vsnprintf(line, sizeof(line), fmt, ap);
	if (suffix)
		fprintf(stderr, "%s: %s: %s: %s\n", log_prog, level, line, suffix);
	else
		fprintf(stderr, "%s: %s: %s\n", log_prog, level, line);
	errno = saved;
}

void log_vemit(enum log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = { "warning", "info", "debug" };

	if ((int)level > log_verbosity + 1)
		return;
	vlog(names[level], fmt, ap, NULL);
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
