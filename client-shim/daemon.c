/* SPDX-License-Identifier: MIT */
/* The shim in the background, for wg-quick's PreUp and PostDown (contract in shim.h).
 *
 * The pid file is also the liveness proof: the running shim holds an exclusive flock on it,
 * taken by the parent before the fork and kept by the child through the shared open file
 * description, so "is it running?" is "is the file locked?", never "does that pid exist?"
 * (a pid is reused; a lock dies with its holder). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "shim.h"

static struct {
	const char *path;
	int fd;    /* the locked pid file */
	int ready; /* write end of the pipe to the waiting parent */
	pid_t pid; /* the child's, for the atexit removal */
} dm = { .fd = -1, .ready = -1 };

static void pidfile_remove(void)
{
	if (dm.fd >= 0 && getpid() == dm.pid) {
		(void)unlink(dm.path);
		close(dm.fd);
		dm.fd = -1;
	}
}

/* The parent: wait for "ready" (exit 0) or the child's end (exit with its status). */
static void __attribute__((noreturn)) parent_wait(int rd, pid_t child)
{
	char c;
	ssize_t n;
	pid_t r;
	int st = 0;

	while ((n = read(rd, &c, 1)) < 0 && errno == EINTR)
		;
	if (n == 1)
		_exit(0);
	while ((r = waitpid(child, &st, 0)) < 0 && errno == EINTR)
		;
	/* the child ended before it was ready: its status, or 1 whatever else happened */
	_exit(r == child && WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
}

int daemon_start(const char *pidfile, char err[static SHIM_ERR_LEN])
{
	int fd, p[2];
	pid_t child;

	fd = open(pidfile, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		snprintf(err, SHIM_ERR_LEN, "cannot open the pid file %s: %s", pidfile,
			 strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char buf[16] = "";

		(void)!pread(fd, buf, sizeof(buf) - 1, 0);
		buf[strcspn(buf, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			snprintf(err, SHIM_ERR_LEN,
				 "another wgws-shim (pid %s) already runs with %s",
				 buf[0] ? buf : "?", pidfile);
		else
			snprintf(err, SHIM_ERR_LEN, "cannot lock the pid file %s: %s", pidfile,
				 strerror(e));
		return -e;
	}
	/* A crash's leftover pid must not be read by a --stop meanwhile: empty until the child
	 * writes its own. */
	if (ftruncate(fd, 0) < 0 || pipe2(p, O_CLOEXEC) < 0 || (child = fork()) < 0) {
		snprintf(err, SHIM_ERR_LEN, "cannot go to the background: %s", strerror(errno));
		close(fd);
		return -errno;
	}
	if (child > 0) {
		close(p[1]);
		parent_wait(p[0], child);
	}
	close(p[0]);
	(void)setsid(); /* no controlling terminal: the user's logout does not end the tunnel */
	dm.path = pidfile;
	dm.fd = fd;
	dm.ready = p[1];
	dm.pid = getpid();
	atexit(pidfile_remove); /* fatalx() before daemon_ready() too */
	if (dprintf(fd, "%ld\n", (long)dm.pid) < 0) {
		snprintf(err, SHIM_ERR_LEN, "cannot write the pid file %s: %s", pidfile,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* Whether stderr may stay: a file, or the journal (JOURNAL_STREAM names it). Not a
 * terminal (the user's, which the shim outlives) nor a pipe: `out=$(wg-quick up x 2>&1)`
 * would wait for the shim's end. */
static bool keep_stderr(void)
{
	struct stat st;

	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return S_ISREG(st.st_mode) || log_stderr_is_journal();
}

void daemon_ready(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	bool keep = keep_stderr();

	if (dm.ready < 0)
		return;
	if (!keep)
		log_to_syslog();
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (!keep)
			dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	(void)!write(dm.ready, "1", 1);
	close(dm.ready);
	dm.ready = -1;
}

/* Whether a shim holds fd's lock: 1, 0, or -1 when flock cannot tell (then nothing is
 * removed: a live shim's file must not go). */
static int locked(int fd)
{
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		flock(fd, LOCK_UN);
		return 0;
	}
	return errno == EWOULDBLOCK ? 1 : -1;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Wait up to ms for fd's lock to be released. */
static bool released_within(int fd, unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 20) {
		if (locked(fd) == 0)
			return true;
		nap_ms(20);
	}
	return locked(fd) == 0;
}

/* Whether pid is gone (or a zombie: it has exited, its parent has not reaped it) within
 * ms. */
static bool gone_within(pid_t pid, unsigned ms)
{
	for (unsigned waited = 0;; waited += 10) {
		char path[64], stat[256] = "", *p;
		FILE *f;

		if (kill(pid, 0) < 0 && errno == ESRCH)
			return true;
		snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
		if ((f = fopen(path, "re"))) {
			if (!fgets(stat, sizeof(stat), f))
				stat[0] = '\0';
			fclose(f);
		}
		p = strrchr(stat, ')');
		if (p && p[1] == ' ' && p[2] == 'Z')
			return true;
		if (waited >= ms)
			return false;
		nap_ms(10);
	}
}

int daemon_stop(const char *pidfile)
{
	char buf[24] = "";
	long pid = 0;
	int fd;

	fd = open(pidfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT) {
			printf("wgws-shim: not running (no %s)\n", pidfile);
			return 0;
		}
		fprintf(stderr, "wgws-shim: cannot open %s: %s\n", pidfile, strerror(errno));
		return 1;
	}
	switch (locked(fd)) {
	case -1:
		fprintf(stderr, "wgws-shim: cannot tell whether a shim holds %s: %s\n", pidfile,
			strerror(errno));
		close(fd);
		return 1;
	case 0:
		(void)unlink(pidfile);
		close(fd);
		printf("wgws-shim: not running (removed the stale %s)\n", pidfile);
		return 0;
	}
	/* Locked: a shim holds it; its pid is written before its parent returns. */
	for (int i = 0; i < 50 && pid <= 1; i++) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		char *end;

		buf[n > 0 ? n : 0] = '\0';
		pid = strtol(buf, &end, 10);
		if (end == buf || (*end && *end != '\n'))
			pid = 0;
		if (pid <= 1)
			nap_ms(20);
	}
	if (pid <= 1) {
		fprintf(stderr, "wgws-shim: %s is locked but holds no pid\n", pidfile);
		close(fd);
		return 1;
	}
	if (kill((pid_t)pid, SIGTERM) < 0 && errno != ESRCH) {
		fprintf(stderr, "wgws-shim: cannot stop pid %ld: %s\n", pid, strerror(errno));
		close(fd);
		return 1;
	}
	if (!released_within(fd, DAEMON_STOP_WAIT_MS)) {
		fprintf(stderr, "wgws-shim: pid %ld still runs %u s after SIGTERM: SIGKILL\n", pid,
			DAEMON_STOP_WAIT_MS / 1000);
		(void)kill((pid_t)pid, SIGKILL);
		if (!released_within(fd, 1000)) {
			fprintf(stderr, "wgws-shim: pid %ld does not exit\n", pid);
			close(fd);
			return 1;
		}
		(void)unlink(pidfile);
	}
	close(fd);
	/* The lock goes with the pid file, in an exit handler: the process may still be
	 * finishing (the sanitizers' checks at exit take a while). Gone means gone. */
	if (!gone_within((pid_t)pid, DAEMON_STOP_WAIT_MS))
		fprintf(stderr, "wgws-shim: pid %ld released %s but has not exited yet\n", pid,
			pidfile);
	printf("wgws-shim: stopped pid %ld\n", pid);
	return 0;
}
