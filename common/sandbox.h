/* SPDX-License-Identifier: MIT */
/* Confinement for the daemons, once they hold what they need and before they read their first
 * byte from the network: a user switch that keeps at most one capability, every capability
 * set emptied, PR_SET_NO_NEW_PRIVS, and a seccomp allow-list (libseccomp) that kills the
 * whole process on any other system call.
 *
 * Each daemon builds its own list with sandbox_allow*() (names or numbers, optionally with
 * one argument condition), then calls sandbox_enter(). Nothing here logs: every function
 * returns 0 or -errno, and a name this architecture does not know is left in
 * list->bad_name for the caller's message. Linux only; the kill-process action needs
 * Linux >= 4.14 (older kernels get kill-thread, the same for a single-threaded daemon). */
#ifndef WGWS_SANDBOX_H
#define WGWS_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	SANDBOX_MAX_RULES = 256,
	SANDBOX_NO_CAP = -1, /* sandbox_switch_user(): keep no capability */
};

/* What a system call outside the list does. */
enum sandbox_action {
	SANDBOX_KILL = 0, /* the process dies of SIGSYS (SCMP_ACT_KILL_PROCESS) */
	SANDBOX_TRAP,     /* SIGSYS to the thread, si_syscall says which (for a debug handler) */
	SANDBOX_LOG,      /* allowed, and logged by the kernel (audit / dmesg): list bring-up */
};

/* How one argument must compare for the call to be allowed (libseccomp's scmp_compare). */
enum sandbox_cmp {
	SANDBOX_ARG_EQ = 1,	/* arg == value */
	SANDBOX_ARG_MASKED_EQ, /* (arg & mask) == value */
};

struct sandbox_rule {
	int nr;		  /* system call number on this architecture */
	int arg;	  /* argument index 0..5, or -1: any arguments */
	enum sandbox_cmp cmp;
	uint64_t mask, value;
};

/* An allow-list under construction; the caller owns it (on the stack is fine). */
struct sandbox_list {
	struct sandbox_rule rules[SANDBOX_MAX_RULES];
	size_t n;
	const char *bad_name; /* after -ENOENT: the name that did not resolve */
};

/* Empty list. exit, exit_group, rt_sigreturn and restart_syscall are always allowed. */
void sandbox_list_init(struct sandbox_list *list);

/* Allow a call by name ("recvmmsg"), with any arguments. -ENOENT: unknown name (see
 * bad_name); -ENOSPC: list full. Adding a call twice is harmless. */
int sandbox_allow(struct sandbox_list *list, const char *name) __attribute__((warn_unused_result));

/* Allow each of names[0..n), as sandbox_allow(); stops at the first error. */
int sandbox_allow_names(struct sandbox_list *list, const char *const *names, size_t n)
	__attribute__((warn_unused_result));

/* Allow what every daemon of ours needs once it serves (its loop over descriptors it has,
 * memory, time, signals, randomness; and, in sanitizer builds, what their runtime needs at
 * exit). The caller adds its own: socket families, files, and so on. */
int sandbox_allow_daemon(struct sandbox_list *list) __attribute__((warn_unused_result));

/* Allow a call by number (__NR_read), with any arguments. -EINVAL: negative; -ENOSPC. */
int sandbox_allow_nr(struct sandbox_list *list, int nr) __attribute__((warn_unused_result));

/* Allow a call by name only when argument arg (0..5) compares as cmp says: e.g.
 * ("socket", 0, SANDBOX_ARG_EQ, 0, AF_INET), or ("openat", 2, SANDBOX_ARG_MASKED_EQ,
 * O_ACCMODE | O_CREAT, O_RDONLY) for read-only opens. Several rules for one call are OR-ed;
 * a rule without condition for the same call makes them moot. -ENOENT, -EINVAL, -ENOSPC. */
int sandbox_allow_if(struct sandbox_list *list, const char *name, int arg, enum sandbox_cmp cmp,
		     uint64_t mask, uint64_t value) __attribute__((warn_unused_result));

/* Set PR_SET_NO_NEW_PRIVS, then load a filter allowing list's calls (this architecture's
 * ABI only: a call through another ABI, i386 or x32, kills too) and doing action on every
 * other call, in every thread of the process (TSYNC). Irreversible; list may be freed after.
 * -EINVAL for a bad list, -ENOSYS without seccomp, else libseccomp's -errno. */
int sandbox_enter(const struct sandbox_list *list, enum sandbox_action action)
	__attribute__((warn_unused_result));

/* Empty the effective, permitted, inheritable and ambient capability sets of the calling
 * thread; also the bounding set, and lock the securebits so uid 0 gains nothing back by
 * execve, when CAP_SETPCAP is still effective. Call it after leaving root (as root, it also
 * gives up CAP_SETUID); a process that already left root keeps a full bounding set, which
 * NO_NEW_PRIVS makes harmless. */
int sandbox_drop_caps(void) __attribute__((warn_unused_result));

/* As root (CAP_SETUID, CAP_SETGID, CAP_SETPCAP): become uid/gid (supplementary groups: gid
 * alone) keeping exactly capability keep_cap (e.g. CAP_NET_ADMIN) effective and permitted,
 * or none with SANDBOX_NO_CAP; the bounding set shrinks to keep_cap, the inheritable and
 * ambient sets are emptied, and uid 0 gains nothing back by execve. -EINVAL: keep_cap is not
 * a capability of this kernel; -EPERM: not privileged enough; -EACCES: the result was not
 * what was asked (checked with capget). */
int sandbox_switch_user(uid_t uid, gid_t gid, int keep_cap) __attribute__((warn_unused_result));

#endif
