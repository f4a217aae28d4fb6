/* SPDX-License-Identifier: MIT */
/* Unit tests for common/log.h's rate-limited lines: scripted calls on a fake clock, each with
 * the exact line it must print on stderr (captured in a memfd) or none: the burst, the lines
 * suppressed after it, the count shown once the interval has passed, the verbosity filter,
 * errno, and the per-call-site macros. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static char cur_case[128] = "?";
#include "expect.h"

static uint64_t fake_now_ms;
static int capture_fd = -1, saved_stderr = -1;

static uint64_t fake_clock(void)
{
	return fake_now_ms;
}

static int setup(void **state)
{
	(void)state;
	capture_fd = memfd_create("stderr", 0);
	saved_stderr = dup(STDERR_FILENO);
	if (capture_fd < 0 || saved_stderr < 0)
		return -1;
	log_set_clock(fake_clock);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_clock(NULL);
	close(capture_fd);
	close(saved_stderr);
	return 0;
}

/* stderr into the memfd, emptied; restore() puts the real one back (cmocka reports there). */
static void capture(void)
{
	fflush(stderr);
	if (ftruncate(capture_fd, 0) < 0 || lseek(capture_fd, 0, SEEK_SET) < 0 ||
	    dup2(capture_fd, STDERR_FILENO) < 0)
		fail_msg("cannot capture stderr: %s", strerror(errno));
}

static const char *restore(void)
{
	static char buf[4096];
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	n = pread(capture_fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

enum call { RL_WARNX, RL_WARN, RL_INFO, RL_DEBUG };

struct step {
	uint64_t at_ms;
	enum call call;
	const char *want; /* the exact output, "" for none */
};

enum { MAX_STEPS = 24 };

static const struct {
	const char *name;
	uint32_t interval_ms, burst;
	int verbosity;
	struct step steps[MAX_STEPS];
	int nsteps;
} cases[] = {
	{ "burst 3, 5 dropped, recovery after the interval", 1000, 3, 0, {
		{ 0, RL_WARNX, "t: warning: event\n" },
		{ 1, RL_WARNX, "t: warning: event\n" },
		{ 2, RL_WARNX, "t: warning: event\n" },
		{ 3, RL_WARNX, "" },
		{ 10, RL_WARNX, "" },
		{ 500, RL_WARNX, "" },
		{ 998, RL_WARNX, "" },
		{ 999, RL_WARNX, "" }, /* the interval is [0, 1000) */
		{ 1000, RL_WARNX, "t: warning: event (5 similar lines suppressed)\n" },
		{ 1001, RL_WARNX, "t: warning: event\n" },
		{ 1002, RL_WARNX, "t: warning: event\n" },
		{ 1003, RL_WARNX, "" },
		{ 2003, RL_WARNX, "t: warning: event (1 similar line suppressed)\n" },
	}, 13 },
	{ "a quiet spell: no note, a full burst again", 1000, 2, 0, {
		{ 100, RL_INFO, "t: info: event\n" },
		{ 5000, RL_INFO, "t: info: event\n" },
		{ 5001, RL_INFO, "t: info: event\n" },
		{ 5002, RL_INFO, "" },
		{ 60000, RL_INFO, "t: info: event (1 similar line suppressed)\n" },
	}, 5 },
	{ "the count waits for the next line, however late", 1000, 1, 0, {
		{ 0, RL_WARNX, "t: warning: event\n" },
		{ 1, RL_WARNX, "" },
		{ 2, RL_WARNX, "" },
		{ 3600000, RL_WARNX, "t: warning: event (2 similar lines suppressed)\n" },
	}, 4 },
	{ "warn appends strerror, then the count", 1000, 1, 0, {
		{ 0, RL_WARN, "t: warning: event: No such file or directory\n" },
		{ 1, RL_WARN, "" },
		{ 1000, RL_WARN,
		  "t: warning: event: No such file or directory (1 similar line suppressed)\n" },
	}, 3 },
	{ "debug below the verbosity counts for nothing", 1000, 1, 0, {
		{ 0, RL_DEBUG, "" },
		{ 1, RL_DEBUG, "" },
		{ 2, RL_DEBUG, "" },
		{ 3, RL_INFO, "t: info: event\n" }, /* the same state: nothing was counted */
		{ 4, RL_INFO, "" },
	}, 5 },
	{ "debug at -vv", 1000, 2, 2, {
		{ 0, RL_DEBUG, "t: debug: event\n" },
		{ 1, RL_DEBUG, "t: debug: event\n" },
		{ 2, RL_DEBUG, "" },
		{ 1000, RL_DEBUG, "t: debug: event (1 similar line suppressed)\n" },
	}, 4 },
	{ "interval 0: no limit", 0, 1, 0, {
		{ 0, RL_WARNX, "t: warning: event\n" },
		{ 0, RL_WARNX, "t: warning: event\n" },
		{ 0, RL_WARNX, "t: warning: event\n" },
	}, 3 },
	{ "a clock that starts far from 0", 1000, 1, 0, {
		{ 123456789, RL_WARNX, "t: warning: event\n" },
		{ 123457788, RL_WARNX, "" },
		{ 123457789, RL_WARNX, "t: warning: event (1 similar line suppressed)\n" },
	}, 3 },
};

static void call(struct log_ratelimit *rl, enum call c)
{
	switch (c) {
	case RL_WARNX:
		log_rl(rl, LOG_LEVEL_WARN, false, "%s", "event");
		break;
	case RL_WARN:
		log_rl(rl, LOG_LEVEL_WARN, true, "%s", "event");
		break;
	case RL_INFO:
		log_rl(rl, LOG_LEVEL_INFO, false, "%s", "event");
		break;
	case RL_DEBUG:
		log_rl(rl, LOG_LEVEL_DEBUG, false, "%s", "event");
		break;
	}
}

static void test_script(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct log_ratelimit rl = LOG_RATELIMIT_INIT(cases[c].interval_ms, cases[c].burst);

		log_init("t", cases[c].verbosity);
		for (int i = 0; i < cases[c].nsteps; i++) {
			const struct step *s = &cases[c].steps[i];
			const char *got;

			snprintf(cur_case, sizeof(cur_case), "%s, step %d (t=%llu ms)",
				 cases[c].name, i, (unsigned long long)s->at_ms);
			fake_now_ms = s->at_ms;
			capture();
			errno = ENOENT;
			call(&rl, s->call);
			EXPECT_EQ(errno, ENOENT); /* preserved, printed or not */
			got = restore();
			EXPECT_STREQ(got, s->want);
		}
	}
}

/* Each expansion of a *_ratelimited macro has its own default state (10 lines per 5 s). */
static void two_sites(int i)
{
	log_warnx_ratelimited("site a %d", i);
	log_info_ratelimited("site b %d", i);
}

static void test_macros(void **state)
{
	const char *got;
	size_t lines_a = 0, lines_b = 0;

	(void)state;
	snprintf(cur_case, sizeof(cur_case), "two call sites, 15 calls each");
	log_init("t", 0);
	fake_now_ms = 1000000;
	capture();
	for (int i = 0; i < 15; i++)
		two_sites(i);
	got = restore();
	for (const char *p = got; (p = strstr(p, "site ")); p++)
		(*(p[5] == 'a' ? &lines_a : &lines_b))++;
	EXPECT_EQ(lines_a, LOG_RATELIMIT_BURST);
	EXPECT_EQ(lines_b, LOG_RATELIMIT_BURST);
	EXPECT(strstr(got, "t: warning: site a 9\n"));
	EXPECT(!strstr(got, "site a 10"));

	snprintf(cur_case, sizeof(cur_case), "the same call sites after the interval");
	fake_now_ms += LOG_RATELIMIT_INTERVAL_MS;
	capture();
	for (int i = 0; i < 2; i++)
		two_sites(i);
	got = restore();
	EXPECT_STREQ(got, "t: warning: site a 0 (5 similar lines suppressed)\n"
			  "t: info: site b 0 (5 similar lines suppressed)\n"
			  "t: warning: site a 1\n"
			  "t: info: site b 1\n");
}

/* The real clock: a burst of 1 per hour lets exactly one line through. */
static void test_monotonic(void **state)
{
	struct log_ratelimit rl = LOG_RATELIMIT_INIT(3600 * 1000, 1);
	const char *got;

	(void)state;
	snprintf(cur_case, sizeof(cur_case), "CLOCK_MONOTONIC");
	log_init("t", 0);
	log_set_clock(NULL);
	capture();
	for (int i = 0; i < 3; i++)
		log_rl(&rl, LOG_LEVEL_WARN, false, "once");
	got = restore();
	log_set_clock(fake_clock);
	EXPECT_STREQ(got, "t: warning: once\n");
	EXPECT_EQ(rl.suppressed, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_script),
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_monotonic),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
