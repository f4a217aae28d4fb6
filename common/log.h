/* Logging for all wgws programs: one line per event on stderr, with a level prefix.
 * Modelled on OpenBSD's log.c: log_warn() appends strerror(errno), log_warnx() does not;
 * fatal()/fatalx() log and exit(1). errno is preserved by every call. common/ modules
 * never log; they return errors and let the program decide. */
#ifndef WGWS_LOG_H
#define WGWS_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LOG_LEVEL_WARN = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_DEBUG = 2,
};

/* prog names the program in each line; verbosity is the number of -v flags (0 = info). */
void log_init(const char *prog, int verbosity);
bool log_is_debug(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_vemit(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
