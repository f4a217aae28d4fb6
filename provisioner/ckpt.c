/* SPDX-License-Identifier: MIT */
/* WAL checkpoints in a thread of their own, on a connection of their own.
 *
 * The store runs with automatic checkpoints off, so commits stay a WAL append. Copying the
 * WAL back into the database costs fsyncs: tens of milliseconds, up to a few hundred on a
 * busy disk. Done in the event loop, that stalled every relay waiting for a JIT answer and
 * every API request behind it. Here a PASSIVE checkpoint, which never waits for the writer
 * and never makes it wait, runs at most once a second after the loop said there were writes.
 * The writer never truncates the WAL either (journal_size_limit would make the first write
 * after each checkpoint pay an ftruncate of several milliseconds): when the file has grown
 * past CKPT_WAL_MAX and the writer has been quiet for a few seconds, this thread cuts it back
 * with a TRUNCATE checkpoint, which gives up at once (busy timeout 0) if the writer is in. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "log.h"
#include "prov.h"

enum {
	CKPT_PERIOD_MS = 1000,
	CKPT_QUIET_TICKS = 3,             /* ticks without writes before a truncate */
	CKPT_WAL_MAX = 4 * 1024 * 1024,   /* bytes of WAL file worth cutting back */
};

static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool running, stop;
	sqlite3 *db;
	char wal_path[4096];
	atomic_bool kicked;
	atomic_uint_least64_t runs, failures, usec_sum, usec_max;
	atomic_int last_log, last_ckpt; /* frames in the WAL, and copied, at the last one */
} ck = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void checkpoint(int mode)
{
	uint64_t t0 = now_us(), us;
	int log_frames = -1, ckpt_frames = -1;
	int rc = sqlite3_wal_checkpoint_v2(ck.db, NULL, mode, &log_frames, &ckpt_frames);

	if (rc != SQLITE_OK) {
		/* BUSY is expected for TRUNCATE while the writer is in; PASSIVE does not fail
		 * that way. Either way the next tick tries again. */
		if (mode == SQLITE_CHECKPOINT_PASSIVE)
			atomic_fetch_add(&ck.failures, 1);
		return;
	}
	us = now_us() - t0;
	atomic_store(&ck.last_log, log_frames);
	atomic_store(&ck.last_ckpt, ckpt_frames);
	atomic_fetch_add(&ck.runs, 1);
	atomic_fetch_add(&ck.usec_sum, us);
	if (us > atomic_load(&ck.usec_max))
		atomic_store(&ck.usec_max, us);
}

static void *ckpt_main(void *arg)
{
	unsigned quiet = 0;

	(void)arg;
	pthread_mutex_lock(&ck.lock);
	while (!ck.stop) {
		struct timespec until;
		struct stat st;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += CKPT_PERIOD_MS / 1000;
		(void)pthread_cond_timedwait(&ck.cond, &ck.lock, &until);
		if (ck.stop)
			break;
		pthread_mutex_unlock(&ck.lock);
		if (atomic_exchange(&ck.kicked, false)) {
			quiet = 0;
			checkpoint(SQLITE_CHECKPOINT_PASSIVE);
		} else if (++quiet == CKPT_QUIET_TICKS && stat(ck.wal_path, &st) == 0 &&
			   st.st_size > CKPT_WAL_MAX) {
			checkpoint(SQLITE_CHECKPOINT_TRUNCATE);
		}
		pthread_mutex_lock(&ck.lock);
	}
	pthread_mutex_unlock(&ck.lock);
	return NULL;
}

int ckpt_start(const char *db_path)
{
	int rc;

	if (snprintf(ck.wal_path, sizeof(ck.wal_path), "%s-wal", db_path) >= (int)sizeof(ck.wal_path))
		return -ENAMETOOLONG;
	rc = sqlite3_open_v2(db_path, &ck.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_close(ck.db);
		ck.db = NULL;
		return -EIO;
	}
	/* A connection opens the WAL at its first read; until then a checkpoint returns OK
	 * having copied nothing. */
	if (sqlite3_exec(ck.db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(ck.db);
		ck.db = NULL;
		return -EIO;
	}
	sqlite3_busy_timeout(ck.db, 0);
	rc = pthread_create(&ck.thread, NULL, ckpt_main, NULL);
	if (rc) {
		sqlite3_close(ck.db);
		ck.db = NULL;
		return -rc;
	}
	ck.running = true;
	return 0;
}

void ckpt_kick(void)
{
	atomic_store(&ck.kicked, true);
}

void ckpt_stop(void)
{
	if (!ck.running)
		return;
	pthread_mutex_lock(&ck.lock);
	ck.stop = true;
	pthread_cond_signal(&ck.cond);
	pthread_mutex_unlock(&ck.lock);
	pthread_join(ck.thread, NULL);
	sqlite3_close(ck.db);
	ck.db = NULL;
	ck.running = false;
}

void ckpt_stats(uint64_t *runs, uint64_t *failures, double *seconds_sum, double *seconds_max,
		int *wal_frames, int *copied_frames)
{
	*wal_frames = atomic_load(&ck.last_log);
	*copied_frames = atomic_load(&ck.last_ckpt);
	*runs = atomic_load(&ck.runs);
	*failures = atomic_load(&ck.failures);
	*seconds_sum = (double)atomic_load(&ck.usec_sum) / 1e6;
	*seconds_max = (double)atomic_load(&ck.usec_max) / 1e6;
}
