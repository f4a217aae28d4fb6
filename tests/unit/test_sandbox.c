/* SPDX-License-Identifier: MIT */
/* Unit tests for common/sandbox.h. Every case runs in a forked child, since a sandbox cannot
 * be left: the child enters it with a small allow-list and does one thing; the parent checks
 * how the child ended (exit 0, or killed by SIGSYS) and, for the capability cases, what
 * /proc/self/status said inside. The user-switch cases need root and say so when skipped.
 * The allow-list (base_calls) also carries what ASan's runtime needs, for SANITIZE=1. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"

static const char *cur_case = "?";
#include "expect.h"

/* What the children do once inside (strace -f): report through a pipe, read
 * /proc/self/status (openat, read-only: build_list()), getpid; ASan's runtime calls
 * sigaltstack on its way out. */
static const char *const base_calls[] = { "write", "read", "close", "getpid", "sigaltstack" };

/* Exit codes of a child that failed before its test: named, so the parent can say which. */
enum {
	CHILD_OK = 0,
	CHILD_LIST_FAILED = 90,
	CHILD_ENTER_FAILED,
	CHILD_CAPS_FAILED,
	CHILD_WORK_FAILED,
	CHILD_DID_NOT_DIE,
};

enum outcome {
	EXITS_0,
	KILLED_BY_SIGSYS,
};

/* The child's report: /proc/self/status lines of interest, through a pipe. */
static int report_fd = -1;

/* Copy the lines of /proc/self/status that start with one of the keys to report_fd. */
static int report_status(void)
{
	static const char *const keys[] = { "Uid:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
					    "CapAmb:", "NoNewPrivs:", "Seccomp:" };
	static char buf[8192];
	ssize_t n, len = 0;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - (size_t)len)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';
	for (char *line = buf, *end; *line; line = end + 1) {
		end = strchr(line, '\n');
		if (!end)
			break;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!strncmp(line, keys[k], strlen(keys[k])) &&
			    write(report_fd, line, (size_t)(end - line + 1)) != end - line + 1)
				return -1;
	}
	return 0;
}

/* --- seccomp cases ------------------------------------------------------------------ */

static int do_nothing(void)
{
	return 0;
}

static int do_getpid_write(void)
{
	return getpid() > 0 && write(report_fd, "ok\n", 3) == 3 ? 0 : -1;
}

static int do_socket_inet(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd >= 0)
		close(fd);
	return 0;
}

static int do_socket_unix(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int do_ptrace(void)
{
	syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
	return 0;
}

static int do_open_rdonly(void)
{
	int fd = open("/proc/self/status", O_RDONLY);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int do_open_create(void)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/wgws-sandbox-test.%d", (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	return 0;
}

static int do_status(void)
{
	return report_status();
}

#ifdef __x86_64__
/* getpid through the x32 ABI (the syscall number with bit 30 set): another ABI, so killed
 * whether or not this kernel has x32. */
static int do_x32_getpid(void)
{
	syscall(0x40000000 | SYS_getpid);
	return 0;
}
#endif

static volatile sig_atomic_t trapped_nr = -1;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	trapped_nr = si->si_syscall;
}

/* Under SANDBOX_TRAP, the forbidden getppid raises SIGSYS, handled, and returns -ENOSYS. */
static int do_trapped_getppid(void)
{
	syscall(SYS_getppid);
	return trapped_nr == SYS_getppid ? 0 : -1;
}

/* Under SANDBOX_LOG, the forbidden getppid goes through. */
static int do_logged_getppid(void)
{
	return syscall(SYS_getppid) == getppid() && getppid() > 0 ? 0 : -1;
}

struct extra_rule {
	const char *name;
	int arg; /* -1: unconditional */
	enum sandbox_cmp cmp;
	uint64_t mask, value;
};

static const struct seccomp_case {
	const char *name;
	enum sandbox_action action;
	struct extra_rule extra[4];
	int nextra;
	int (*work)(void);
	enum outcome want;
	const char *want_report; /* NULL: not checked */
} seccomp_cases[] = {
	{ "allowed work exits 0", SANDBOX_KILL, {}, 0, do_getpid_write, EXITS_0, "ok\n" },
	{ "only the implicit calls: exit", SANDBOX_KILL, {}, 0, do_nothing, EXITS_0, "" },
	{ "socket is not in the list", SANDBOX_KILL, {}, 0, do_socket_inet, KILLED_BY_SIGSYS,
	  NULL },
	{ "ptrace is not in the list", SANDBOX_KILL, {}, 0, do_ptrace, KILLED_BY_SIGSYS, NULL },
	{ "socket(AF_UNIX) allowed by its condition", SANDBOX_KILL,
	  { { "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX } }, 1, do_socket_unix, EXITS_0, NULL },
	{ "socket(AF_INET) fails the condition", SANDBOX_KILL,
	  { { "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX } }, 1, do_socket_inet, KILLED_BY_SIGSYS,
	  NULL },
	{ "socket: two conditions are OR-ed", SANDBOX_KILL,
	  { { "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX },
	    { "socket", 0, SANDBOX_ARG_EQ, 0, AF_INET } }, 2, do_socket_inet, EXITS_0, NULL },
	{ "socket: an unconditional rule wins", SANDBOX_KILL,
	  { { "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX }, { "socket", -1, 0, 0, 0 } }, 2,
	  do_socket_inet, EXITS_0, NULL },
	{ "read-only open allowed", SANDBOX_KILL, {}, 0, do_open_rdonly, EXITS_0, NULL },
	{ "open for writing killed", SANDBOX_KILL, {}, 0, do_open_create, KILLED_BY_SIGSYS, NULL },
#ifdef __x86_64__
	{ "another ABI (x32) killed", SANDBOX_KILL, {}, 0, do_x32_getpid, KILLED_BY_SIGSYS, NULL },
#endif
	{ "status inside: NoNewPrivs 1, Seccomp 2", SANDBOX_KILL, {}, 0, do_status, EXITS_0,
	  NULL },
	{ "SANDBOX_TRAP: SIGSYS names the call", SANDBOX_TRAP, {}, 0, do_trapped_getppid,
	  EXITS_0, NULL },
	{ "SANDBOX_LOG: the call goes through", SANDBOX_LOG, {}, 0, do_logged_getppid, EXITS_0,
	  NULL },
};

/* The base list, openat read-only (as a daemon reading its certificates would), extra. */
static int build_list(struct sandbox_list *list, const struct extra_rule *extra, int nextra)
{
	int ret;

	sandbox_list_init(list);
	ret = sandbox_allow_names(list, base_calls, sizeof(base_calls) / sizeof(base_calls[0]));
	if (ret == 0)
		ret = sandbox_allow_if(list, "openat", 2, SANDBOX_ARG_MASKED_EQ,
				       O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
	for (int i = 0; ret == 0 && i < nextra; i++) {
		if (extra[i].arg < 0)
			ret = sandbox_allow(list, extra[i].name);
		else
			ret = sandbox_allow_if(list, extra[i].name, extra[i].arg, extra[i].cmp,
					       extra[i].mask, extra[i].value);
	}
	return ret;
}

/* Fork; the child runs body() and _exit()s with what it returns (no atexit: LeakSanitizer's
 * check would need ptrace). The parent gets the wait status and what the child reported. */
static int run_child(int (*body)(const void *), const void *arg, char *report, size_t size)
{
	int p[2], status;
	ssize_t n, len = 0;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		close(p[0]);
		report_fd = p[1];
		setrlimit(RLIMIT_CORE, &no_core); /* a SIGSYS death would dump core */
		_exit(body(arg));
	}
	close(p[1]);
	while ((size_t)len < size - 1 &&
	       (n = read(p[0], report + len, size - 1 - (size_t)len)) > 0)
		len += n;
	report[len] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static int seccomp_child(const void *arg)
{
	const struct seccomp_case *c = arg;
	struct sandbox_list list;

	if (c->action == SANDBOX_TRAP) {
		struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

		sigaction(SIGSYS, &sa, NULL);
	}
	if (build_list(&list, c->extra, c->nextra) < 0)
		return CHILD_LIST_FAILED;
	if (sandbox_enter(&list, c->action) < 0)
		return CHILD_ENTER_FAILED;
	if (c->work() < 0)
		return CHILD_WORK_FAILED;
	return c->want == KILLED_BY_SIGSYS ? CHILD_DID_NOT_DIE : CHILD_OK;
}

static void expect_status(int status, enum outcome want)
{
	if (want == EXITS_0) {
		if (WIFSIGNALED(status))
			fail_msg("case %s: killed by signal %d, expected exit 0", cur_case,
				 WTERMSIG(status));
		EXPECT(WIFEXITED(status));
		EXPECT_EQ(WEXITSTATUS(status), CHILD_OK);
	} else {
		if (WIFEXITED(status))
			fail_msg("case %s: exited %d, expected death by SIGSYS", cur_case,
				 WEXITSTATUS(status));
		EXPECT(WIFSIGNALED(status));
		EXPECT_EQ(WTERMSIG(status), SIGSYS);
	}
}

static void test_seccomp(void **state)
{
	char report[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(seccomp_cases) / sizeof(seccomp_cases[0]); i++) {
		const struct seccomp_case *c = &seccomp_cases[i];
		int status;

		cur_case = c->name;
		status = run_child(seccomp_child, c, report, sizeof(report));
		expect_status(status, c->want);
		if (c->want_report)
			EXPECT_STREQ(report, c->want_report);
		if (c->work == do_status) {
			EXPECT(strstr(report, "NoNewPrivs:\t1\n"));
			EXPECT(strstr(report, "Seccomp:\t2\n"));
		}
	}
}

/* --- the list builder --------------------------------------------------------------- */

static void test_list(void **state)
{
	static const char *const names[] = { "read", "no_such_call", "write" };
	struct sandbox_list *list = malloc(sizeof(*list));
	int ret;

	(void)state;
	assert_non_null(list);
	cur_case = "an unknown name";
	sandbox_list_init(list);
	ret = sandbox_allow_names(list, names, 3);
	EXPECT_EQ(ret, -ENOENT);
	EXPECT_STREQ(list->bad_name, "no_such_call");
	EXPECT_EQ(list->n, 1);

	cur_case = "a call twice is one rule";
	sandbox_list_init(list);
	EXPECT_EQ(sandbox_allow(list, "read"), 0);
	EXPECT_EQ(sandbox_allow(list, "read"), 0);
	EXPECT_EQ(sandbox_allow_nr(list, SYS_read), 0);
	EXPECT_EQ(list->n, 1);
	EXPECT_EQ(sandbox_allow_if(list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX), 0);
	EXPECT_EQ(sandbox_allow_if(list, "socket", 0, SANDBOX_ARG_EQ, 0, AF_UNIX), 0);
	EXPECT_EQ(list->n, 2);

	cur_case = "bad arguments";
	EXPECT_EQ(sandbox_allow_nr(list, -1), -EINVAL);
	EXPECT_EQ(sandbox_allow_if(list, "socket", 6, SANDBOX_ARG_EQ, 0, 0), -EINVAL);
	EXPECT_EQ(sandbox_allow_if(list, "socket", -1, SANDBOX_ARG_EQ, 0, 0), -EINVAL);
	EXPECT_EQ(sandbox_allow_if(list, "socket", 0, (enum sandbox_cmp)99, 0, 0), -EINVAL);
	EXPECT_EQ(list->n, 2);

	cur_case = "a full list";
	sandbox_list_init(list);
	for (int nr = 0; nr < SANDBOX_MAX_RULES; nr++)
		EXPECT_EQ(sandbox_allow_nr(list, nr), 0);
	EXPECT_EQ(sandbox_allow_nr(list, SANDBOX_MAX_RULES), -ENOSPC);
	EXPECT_EQ(sandbox_allow_nr(list, 0), 0); /* already there */
	EXPECT_EQ(list->n, SANDBOX_MAX_RULES);
	free(list);
}

/* --- capabilities ------------------------------------------------------------------- */

static bool is_root(void)
{
	if (geteuid() == 0)
		return true;
	print_message("skipped: needs root (capabilities and a user switch)\n");
	skip();
	return false;
}

/* The hex value of a "Key:\tvalue" line in a report, or -1. */
static long long status_hex(const char *report, const char *key)
{
	const char *p = strstr(report, key);

	return p ? strtoll(p + strlen(key), NULL, 16) : -1;
}

static int drop_caps_child(const void *arg)
{
	struct sandbox_list list;

	(void)arg;
	if (sandbox_drop_caps() < 0)
		return CHILD_CAPS_FAILED;
	if (build_list(&list, NULL, 0) < 0)
		return CHILD_LIST_FAILED;
	if (sandbox_enter(&list, SANDBOX_KILL) < 0)
		return CHILD_ENTER_FAILED;
	return report_status() < 0 ? CHILD_WORK_FAILED : CHILD_OK;
}

/* As root, everything goes; not as root, the sets are empty anyway and the result the same. */
static void test_drop_caps(void **state)
{
	char report[4096];

	(void)state;
	cur_case = "sandbox_drop_caps, then sandbox_enter";
	expect_status(run_child(drop_caps_child, NULL, report, sizeof(report)), EXITS_0);
	EXPECT_EQ(status_hex(report, "CapEff:"), 0);
	EXPECT_EQ(status_hex(report, "CapPrm:"), 0);
	EXPECT_EQ(status_hex(report, "CapInh:"), 0);
	EXPECT_EQ(status_hex(report, "CapAmb:"), 0);
	EXPECT(strstr(report, "NoNewPrivs:\t1\n"));
	EXPECT(strstr(report, "Seccomp:\t2\n"));
	if (geteuid() == 0)
		EXPECT_EQ(status_hex(report, "CapBnd:"), 0); /* root had CAP_SETPCAP */
}

enum { NOBODY = 65534 };

struct switch_case {
	const char *name;
	uid_t uid;
	int keep_cap;
	int want_ret;
	long long want_caps; /* effective = permitted = bounding */
	int so_mark_errno;   /* SO_MARK needs CAP_NET_ADMIN: 0 when kept */
};

static const struct switch_case switch_cases[] = {
	{ "nobody, keeping CAP_NET_ADMIN", NOBODY, CAP_NET_ADMIN, 0, 1LL << CAP_NET_ADMIN, 0 },
	{ "nobody, keeping nothing", NOBODY, SANDBOX_NO_CAP, 0, 0, EPERM },
	{ "root stays root, keeping CAP_NET_ADMIN", 0, CAP_NET_ADMIN, 0, 1LL << CAP_NET_ADMIN, 0 },
	{ "not a capability", NOBODY, 99, -EINVAL, -1, 0 },
};

static int switch_child(const void *arg)
{
	const struct switch_case *c = arg;
	int fd, mark = 1, ret = sandbox_switch_user(c->uid, c->uid, c->keep_cap);
	char line[64];

	snprintf(line, sizeof(line), "ret:\t%d\n", ret);
	if (write(report_fd, line, strlen(line)) < 0 || ret < 0)
		return CHILD_OK;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ret = setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0 ? errno : 0;
	snprintf(line, sizeof(line), "so_mark:\t%d\n", ret);
	if (fd < 0 || write(report_fd, line, strlen(line)) < 0)
		return CHILD_WORK_FAILED;
	close(fd);
	return report_status() < 0 ? CHILD_WORK_FAILED : CHILD_OK;
}

static void test_switch_user(void **state)
{
	char report[4096], uids[64];

	(void)state;
	if (!is_root())
		return;
	for (size_t i = 0; i < sizeof(switch_cases) / sizeof(switch_cases[0]); i++) {
		const struct switch_case *c = &switch_cases[i];
		const char *p;

		cur_case = c->name;
		expect_status(run_child(switch_child, c, report, sizeof(report)), EXITS_0);
		p = strstr(report, "ret:\t");
		EXPECT(p);
		EXPECT_EQ(atoi(p + 5), c->want_ret);
		if (c->want_ret < 0)
			continue;
		snprintf(uids, sizeof(uids), "Uid:\t%u\t%u\t%u\t%u\n", (unsigned)c->uid,
			 (unsigned)c->uid, (unsigned)c->uid, (unsigned)c->uid);
		EXPECT(strstr(report, uids));
		EXPECT_EQ(status_hex(report, "CapEff:"), c->want_caps);
		EXPECT_EQ(status_hex(report, "CapPrm:"), c->want_caps);
		EXPECT_EQ(status_hex(report, "CapBnd:"), c->want_caps);
		EXPECT_EQ(status_hex(report, "CapInh:"), 0);
		EXPECT_EQ(status_hex(report, "CapAmb:"), 0);
		p = strstr(report, "so_mark:\t");
		EXPECT(p);
		EXPECT_EQ(atoi(p + 9), c->so_mark_errno);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_seccomp),
		cmocka_unit_test(test_drop_caps),
		cmocka_unit_test(test_switch_user),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
