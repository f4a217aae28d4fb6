/* SPDX-License-Identifier: MIT */
/* Unit tests for common/log.h's rate-limited lines: scripted calls on a fake clock, each with
 * the exact line it must print on stderr (captured in a memfd) or none: the burst, the lines
 * suppressed after it, the count shown once the interval has passed, the verbosity filter,
 * errno, and the per-call-site macros. Every line starts with the time (checked, then cut
 * off before the comparison), or with its syslog priority when stderr is the journal's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
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

static const char *restore_raw(void)
{
	static char buf[4096];
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	n = pread(capture_fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

enum { STAMP_LEN = 25 }; /* "2026-12-02T04:10:11.123Z " */

/* Whether p starts with a time stamp as log.c writes it. */
static bool is_stamp(const char *p)
{
	static const char form[] = "dddd-dd-ddTdd:dd:dd.dddZ ";

	for (int i = 0; i < STAMP_LEN; i++)
		if (form[i] == 'd' ? p[i] < '0' || p[i] > '9' : p[i] != form[i])
			return false;
	return true;
}

/* What was printed, each line's time stamp checked and cut off. */
static const char *restore(void)
{
	static char out[4096];
	const char *in = restore_raw();
	size_t o = 0;

	while (*in) {
		const char *nl = strchr(in, '\n');
		size_t len = nl ? (size_t)(nl + 1 - in) : strlen(in);

		EXPECT(is_stamp(in));
		if (!is_stamp(in) || len < STAMP_LEN)
			return in;
		memcpy(out + o, in + STAMP_LEN, len - STAMP_LEN);
		o += len - STAMP_LEN;
		in += len;
	}
	out[o] = '\0';
	return out;
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

/* The time stamp is now's, in UTC; into the journal's stream the priority replaces it. */
static void test_heads(void **state)
{
	char want[32], js[64];
	const char *got;
	struct stat st;
	struct tm tm;
	time_t now = time(NULL);

	(void)state;
	snprintf(cur_case, sizeof(cur_case), "the time stamp");
	log_init("t", 0);
	capture();
	log_info("now");
	got = restore_raw();
	gmtime_r(&now, &tm);
	strftime(want, sizeof(want), "%Y-%m-%dT%H:", &tm); /* to the hour: not flaky at :59 */
	EXPECT(is_stamp(got));
	EXPECT(strncmp(got, want, strlen(want)) == 0 || tm.tm_min == 59);
	EXPECT_STREQ(got + STAMP_LEN, "t: info: now\n");

	snprintf(cur_case, sizeof(cur_case), "stderr is the journal's stream");
	EXPECT_EQ(fstat(capture_fd, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	capture();
	log_init("t", 1);
	log_warnx("w");
	log_info("i");
	log_debug("d");
	got = restore_raw();
	EXPECT_STREQ(got, "<4>t: warning: w\n<6>t: info: i\n<7>t: debug: d\n");

	snprintf(cur_case, sizeof(cur_case), "JOURNAL_STREAM names another file");
	setenv("JOURNAL_STREAM", "1:2", 1);
	capture();
	log_init("t", 0);
	log_warnx("w");
	got = restore_raw();
	EXPECT(is_stamp(got));
	unsetenv("JOURNAL_STREAM");
	log_init("t", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_script),
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_monotonic),
		cmocka_unit_test(test_heads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
