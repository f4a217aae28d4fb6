/* SPDX-License-Identifier: MIT */
/* The seccomp allow-list and capability drops of sandbox.h. Capabilities go through the raw
 * capget/capset system calls (no libcap); the filter through libseccomp. Never logs: a daemon
 * must be able to report why its sandbox failed, and then stop. */
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <seccomp.h>

#include "sandbox.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A process that cannot exit, or return from a signal handler, is no use to anyone. */
static const char *const always_allowed[] = { "exit", "exit_group", "rt_sigreturn",
					      "restart_syscall" };

void sandbox_list_init(struct sandbox_list *list)
{
	memset(list, 0, sizeof(*list));
}

static int add_rule(struct sandbox_list *list, const struct sandbox_rule *r)
{
	for (size_t i = 0; i < list->n; i++)
		if (!memcmp(&list->rules[i], r, sizeof(*r)))
			return 0;
	if (list->n >= SANDBOX_MAX_RULES)
		return -ENOSPC;
	list->rules[list->n++] = *r;
	return 0;
}

/* A call this architecture lacks (poll on arm64) resolves to a negative pseudo-number that
 * libseccomp accepts and matches nothing: one list serves every architecture. Only a name
 * libseccomp does not know at all is an error. */
static int resolve(struct sandbox_list *list, const char *name, int *nr)
{
	*nr = seccomp_syscall_resolve_name(name);
	if (*nr == __NR_SCMP_ERROR) {
		list->bad_name = name;
		return -ENOENT;
	}
	return 0;
}

int sandbox_allow_nr(struct sandbox_list *list, int nr)
{
	struct sandbox_rule r;

	if (nr < 0)
		return -EINVAL;
	memset(&r, 0, sizeof(r)); /* padding too: add_rule compares bytes */
	r.nr = nr;
	r.arg = -1;
	return add_rule(list, &r);
}

int sandbox_allow(struct sandbox_list *list, const char *name)
{
	int nr, ret = resolve(list, name, &nr);

	return ret < 0 ? ret : sandbox_allow_nr(list, nr);
}

int sandbox_allow_names(struct sandbox_list *list, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int ret = sandbox_allow(list, names[i]);

		if (ret < 0)
			return ret;
	}
	return 0;
}

/* What any of our daemons does once it serves: an event loop over descriptors it already
 * has, memory, time, signals, randomness, threads it already started. */
static const char *const daemon_calls[] = {
	"read", "readv", "write", "writev", "pread64", "pwrite64", "close", "fstat", "newfstatat",
	"lseek", "mmap", "munmap", "mremap", "mprotect", "brk", "madvise",
	"epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll",
	"accept", "accept4", "setsockopt", "getsockopt", "getsockname", "getpeername", "shutdown",
	"sendmsg", "sendmmsg", "recvmsg", "recvmmsg", "sendto", "recvfrom",
	"fcntl", "ioctl", "pipe2", "eventfd2", "dup", "dup3",
	"clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
	"futex", "getrandom", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	"getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "sched_yield",
	"sched_getaffinity", "uname", "getrusage", "prlimit64", "tgkill",
	"getdents64", /* process_open_fds: /proc/self/fd listed (procmetrics.c) */
};

/* AddressSanitizer's runtime at exit: LeakSanitizer stops the world from a tracer of its own
 * (clone, ptrace, /proc/self/task), which a killed tracer would leave spinning. */
static const char *const sanitizer_calls[] = {
	"prctl", "readlink", "readlinkat", "openat", "open", "getdents", "getdents64",
	"set_robust_list", "rseq", "arch_prctl", "pipe", "wait4", "waitid", "clone", "clone3",
	"exit", "getppid", "ptrace", "process_vm_readv",
};

int sandbox_allow_daemon(struct sandbox_list *list)
{
	int ret = sandbox_allow_names(list, daemon_calls, ARRAY_LEN(daemon_calls));

#if defined(__SANITIZE_ADDRESS__)
	if (!ret)
		ret = sandbox_allow_names(list, sanitizer_calls, ARRAY_LEN(sanitizer_calls));
#else
	(void)sanitizer_calls;
#endif
	return ret;
}

int sandbox_allow_if(struct sandbox_list *list, const char *name, int arg, enum sandbox_cmp cmp,
		     uint64_t mask, uint64_t value)
{
	struct sandbox_rule r;
	int nr, ret;

	if (arg < 0 || arg > 5 || (cmp != SANDBOX_ARG_EQ && cmp != SANDBOX_ARG_MASKED_EQ))
		return -EINVAL;
	ret = resolve(list, name, &nr);
	if (ret < 0)
		return ret;
	memset(&r, 0, sizeof(r));
	r.nr = nr;
	r.arg = arg;
	r.cmp = cmp;
	r.mask = cmp == SANDBOX_ARG_MASKED_EQ ? mask : 0;
	r.value = value;
	return add_rule(list, &r);
}

static int add_to_filter(scmp_filter_ctx ctx, const struct sandbox_rule *r)
{
	struct scmp_arg_cmp c;

	if (r->arg < 0)
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 0);
	if (r->arg > 5)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.arg = (unsigned)r->arg;
	if (r->cmp == SANDBOX_ARG_EQ) {
		c.op = SCMP_CMP_EQ;
		c.datum_a = r->value;
	} else if (r->cmp == SANDBOX_ARG_MASKED_EQ) {
		c.op = SCMP_CMP_MASKED_EQ;
		c.datum_a = r->mask;
		c.datum_b = r->value;
	} else {
		return -EINVAL;
	}
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, r->nr, 1, &c);
}

int sandbox_enter(const struct sandbox_list *list, enum sandbox_action action)
{
	bool modern = seccomp_api_get() >= 3; /* KILL_PROCESS and LOG: Linux >= 4.14 */
	uint32_t deny;
	scmp_filter_ctx ctx;
	int ret;

	if (list->n > SANDBOX_MAX_RULES)
		return -EINVAL;
	switch (action) {
	case SANDBOX_KILL:
		deny = modern ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_KILL;
		break;
	case SANDBOX_TRAP:
		deny = SCMP_ACT_TRAP;
		break;
	case SANDBOX_LOG:
		if (!modern)
			return -EOPNOTSUPP;
		deny = SCMP_ACT_LOG;
		break;
	default:
		return -EINVAL;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	ctx = seccomp_init(deny);
	if (!ctx)
		return -ENOMEM;
	/* Through another ABI (i386's int 0x80, x32), a call has other numbers: deny it. */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, deny);
	if (ret == 0)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	for (size_t i = 0; ret == 0 && i < ARRAY_LEN(always_allowed); i++) {
		int nr = seccomp_syscall_resolve_name(always_allowed[i]);

		if (nr >= 0)
			ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	for (size_t i = 0; ret == 0 && i < list->n; i++)
		ret = add_to_filter(ctx, &list->rules[i]);
	if (ret == 0)
		ret = seccomp_load(ctx);
	seccomp_release(ctx);
	return ret > 0 ? -ret : ret;
}

/* --- capabilities ------------------------------------------------------------------- */

enum { CAP_WORDS = _LINUX_CAPABILITY_U32S_3 };

static int caps_get(struct __user_cap_data_struct d[static CAP_WORDS])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

	return syscall(SYS_capget, &h, d) < 0 ? -errno : 0;
}

static int caps_set(struct __user_cap_data_struct d[static CAP_WORDS])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static bool caps_has(const struct __user_cap_data_struct d[static CAP_WORDS], int cap,
		     bool permitted)
{
	uint32_t bit = 1u << (cap % 32);

	return (permitted ? d[cap / 32].permitted : d[cap / 32].effective) & bit;
}

/* The highest capability this kernel knows (cap_last_cap, without /proc). */
static int last_cap(void)
{
	int cap = CAP_LAST_CAP;

	while (cap < 63 && prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0)
		cap++;
	while (cap > 0 && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
		cap--;
	return cap;
}

/* Drop every bounding-set capability but keep (or SANDBOX_NO_CAP); needs CAP_SETPCAP. */
static int drop_bounding(int last, int keep)
{
	for (int cap = 0; cap <= last; cap++) {
		if (cap == keep || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return -errno;
	}
	return 0;
}

/* Add bits to the securebits (needs CAP_SETPCAP); locked bits already set stay. */
static int add_securebits(unsigned long bits)
{
	int cur = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);

	if (cur < 0)
		return -errno;
	if (prctl(PR_SET_SECUREBITS, (unsigned long)cur | bits, 0, 0, 0) < 0)
		return -errno;
	return 0;
}

/* The kernel's rule for raising ambient capabilities: none here (EINVAL: before Linux 4.3). */
static int clear_ambient(void)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

/* The sets are exactly keep (or nothing) in effective and permitted, nothing inheritable. */
static bool caps_are(int keep)
{
	struct __user_cap_data_struct d[CAP_WORDS];

	if (caps_get(d) < 0)
		return false;
	for (int i = 0; i < CAP_WORDS; i++) {
		uint32_t want = keep >= 0 && keep / 32 == i ? 1u << (keep % 32) : 0;

		if (d[i].effective != want || d[i].permitted != want || d[i].inheritable)
			return false;
	}
	return true;
}

/* uid 0 is not special for execve, and no capability can be made ambient: both locked. */
static const unsigned long lock_bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
				       SECBIT_NO_CAP_AMBIENT_RAISE |
				       SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

int sandbox_drop_caps(void)
{
	struct __user_cap_data_struct d[CAP_WORDS];
	int ret = caps_get(d);

	if (ret < 0)
		return ret;
	if (caps_has(d, CAP_SETPCAP, false)) {
		ret = drop_bounding(last_cap(), SANDBOX_NO_CAP);
		if (ret == 0)
			ret = add_securebits(lock_bits);
		if (ret < 0)
			return ret;
	}
	ret = clear_ambient();
	if (ret < 0)
		return ret;
	memset(d, 0, sizeof(d));
	ret = caps_set(d);
	if (ret < 0)
		return ret;
	return caps_are(SANDBOX_NO_CAP) ? 0 : -EACCES;
}

int sandbox_switch_user(uid_t uid, gid_t gid, int keep_cap)
{
	int last = last_cap(), ret;
	uid_t r, e, s;
	struct __user_cap_data_struct d[CAP_WORDS];

	if (keep_cap != SANDBOX_NO_CAP && (keep_cap < 0 || keep_cap > last))
		return -EINVAL;
	ret = caps_get(d);
	if (ret < 0)
		return ret;
	if (keep_cap >= 0 && !caps_has(d, keep_cap, true))
		return -EPERM; /* cannot keep what is not there */
	ret = drop_bounding(last, keep_cap);
	if (ret == 0)
		ret = add_securebits(lock_bits | (keep_cap >= 0 ? SECBIT_KEEP_CAPS : 0));
	if (ret < 0)
		return ret;
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -errno;
	memset(d, 0, sizeof(d));
	if (keep_cap >= 0) {
		d[keep_cap / 32].effective = 1u << (keep_cap % 32);
		d[keep_cap / 32].permitted = 1u << (keep_cap % 32);
	}
	ret = caps_set(d);
	if (ret < 0)
		return ret;
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return -errno;
	ret = clear_ambient();
	if (ret < 0)
		return ret;
	if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid)
		return -EACCES;
	return caps_are(keep_cap) ? 0 : -EACCES;
}
