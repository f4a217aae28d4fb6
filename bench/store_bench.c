/* SPDX-License-Identifier: MIT */
/* store_create latency at 0, 100k and 1M stored peers (provisioner/store.c), and the query
 * plan of every statement the store prepares.
 *
 * It includes store.c itself so that it can EXPLAIN QUERY PLAN the store's own prepared
 * statements (a "SCAN" on anything but a listing would be an O(n) statement). Bulk loading
 * goes through store_create too, 10,000 per store_begin/store_commit. Each measured create is
 * its own BEGIN IMMEDIATE ... COMMIT, as in the API; a PASSIVE checkpoint runs every 1,000
 * creates outside the timed region, as the provisioner's writer would.
 *
 *   make B=build build/store_bench       (or by hand, from the top of the tree:
 *   cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Iprovisioner -Icommon -o build/store_bench \
 *      bench/store_bench.c provisioner/cidr.c $(pkg-config --cflags --libs sqlite3 libsodium))
 *   build/store_bench [-d DIR] [-n SAMPLES] [SIZE...]     (default: 0 100000 1000000)
 * The database goes to a mkdtemp() directory under DIR (default /tmp) and is removed.
 *
 *   build/store_bench -f FILE [-n SAMPLES]
 * times SAMPLES creates in an existing store FILE instead (no load, no query plans; FILE is
 * written to and kept: give it a copy) and ends with one line
 * "result stored=N samples=S mean_us=… p50_us=… p99_us=… max_us=…". bench/prov.sh runs it on
 * a copy of jit_bench's cached store, next to the same creates through the daemon's API. The
 * pool is the one `wgws-provisioner serve --pool4 10.0.0.0/8 --pool6 fd00:6a:1700::/64`
 * (and jit_bench) use. */
#include "../provisioner/store.c"

#include <getopt.h>
#include <time.h>

enum { BENCH_LOAD_TXN = 10000, BENCH_CKPT_EVERY = 1000 };

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void remove_db_files(const char *path)
{
	char p[320];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static void explain_all(struct store *st)
{
	printf("query plans:\n");
	for (int i = 0; i < S_MAX; i++) {
		char sql[1024];
		sqlite3_stmt *e;

		if (i <= S_ROLLBACK_TO)
			continue;
		snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", sqlite3_sql(st->stmt[i]));
		if (sqlite3_prepare_v2(st->db, sql, -1, &e, NULL) != SQLITE_OK) {
			printf("  %-60.60s: %s\n", stmt_sql[i], sqlite3_errmsg(st->db));
			continue;
		}
		printf("  %.70s\n", stmt_sql[i]);
		while (sqlite3_step(e) == SQLITE_ROW)
			printf("      %s\n", (const char *)sqlite3_column_text(e, 3));
		sqlite3_finalize(e);
	}
}

static int create_random(struct store *st, int64_t now)
{
	struct store_peer p;
	int ret;

	memset(&p, 0, sizeof(p));
	do {
		randombytes_buf(p.pubkey, sizeof(p.pubkey));
		ret = store_create(st, &p, now);
	} while (ret == -EEXIST);
	return ret;
}

static int load_to(struct store *st, uint64_t target)
{
	uint64_t n;
	int ret;

	if ((ret = store_count(st, &n, NULL)))
		return ret;
	while (n < target) {
		if ((ret = store_begin(st)))
			return ret;
		for (unsigned i = 0; i < BENCH_LOAD_TXN && n < target; i++, n++)
			if ((ret = create_random(st, 1000)))
				return ret;
		if ((ret = store_commit(st)))
			return ret;
	}
	return store_checkpoint(st, true);
}

/* SAMPLES creates, each timed, into lat; 0 or -errno. */
static int time_creates(struct store *st, int64_t *lat, unsigned samples)
{
	for (unsigned s = 0; s < samples; s++) {
		int64_t a = now_ns();
		int ret = create_random(st, 2000);

		lat[s] = now_ns() - a;
		if (ret)
			return ret;
		if (s % BENCH_CKPT_EVERY == BENCH_CKPT_EVERY - 1)
			(void)store_checkpoint(st, false);
	}
	return 0;
}

/* -f: creates into an existing store (a copy: it is written to), one result line. */
static int time_file(const char *path, const struct store_pool *pool, unsigned samples)
{
	struct store *st;
	char err[256];
	uint64_t stored;
	int64_t *lat, sum = 0;
	int ret;

	if ((ret = store_open(&st, path, pool, err, sizeof(err)))) {
		fprintf(stderr, "store_bench: %s\n", err);
		return 1;
	}
	lat = calloc(samples, sizeof(*lat));
	if (!lat || (ret = store_count(st, &stored, NULL))) {
		fprintf(stderr, "store_bench: %s\n", lat ? strerror(-ret) : "out of memory");
		return 1;
	}
	if ((ret = time_creates(st, lat, samples))) {
		fprintf(stderr, "store_bench: create: %s\n", strerror(-ret));
		return 1;
	}
	(void)store_checkpoint(st, true);
	store_close(st);
	for (unsigned s = 0; s < samples; s++)
		sum += lat[s];
	qsort(lat, samples, sizeof(*lat), cmp_i64);
	printf("result stored=%llu samples=%u mean_us=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
	       (unsigned long long)stored, samples, (double)sum / samples / 1e3,
	       (double)lat[samples / 2] / 1e3, (double)lat[(size_t)samples * 99 / 100] / 1e3,
	       (double)lat[samples - 1] / 1e3);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	static const uint64_t default_sizes[] = { 0, 100000, 1000000 };
	const char *base = "/tmp";
	unsigned samples = 5000;
	char dir[256], path[300], err[256];
	struct store_pool pool = {
		.has_ip4 = true, .ip4_first = 0x0a000002, .ip4_last = 0x0afffffe,
		.has_ip6 = true, .ip6_prefix = { 0xfd, 0, 0, 0x6a, 0x17, 0, 0, 0 }, .hold_down_s = 180,
	};
	const char *file = NULL;
	struct store *st;
	int64_t *lat;
	int opt, ret;

	while ((opt = getopt(argc, argv, "d:f:n:")) != -1) {
		switch (opt) {
		case 'd': base = optarg; break;
		case 'f': file = optarg; break;
		case 'n': samples = (unsigned)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: %s [-d DIR] [-n SAMPLES] [SIZE...]\n"
					"       %s -f FILE [-n SAMPLES]\n", argv[0], argv[0]);
			return 2;
		}
	}
	if (!samples || sodium_init() < 0)
		return 2;
	if (file)
		return time_file(file, &pool, samples);
	snprintf(dir, sizeof(dir), "%s/store-bench-XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/peers.db", dir);
	if ((ret = store_open(&st, path, &pool, err, sizeof(err)))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	explain_all(st);
	lat = calloc(samples, sizeof(*lat));
	if (!lat)
		return 1;
	printf("\nstore_create, one transaction each (%s, SQLite %s), %u samples\n", path,
	       sqlite3_libversion(), samples);
	printf("%10s %10s %10s %10s %10s %10s\n", "stored", "mean µs", "p50 µs", "p99 µs",
	       "max µs", "load s");
	size_t nsizes = argc > optind ? (size_t)(argc - optind) : 3;
	for (size_t i = 0; i < nsizes; i++) {
		uint64_t size = argc > optind ? strtoull(argv[optind + i], NULL, 10)
					      : default_sizes[i];
		int64_t t0 = now_ns(), sum = 0;
		double load_s;

		if ((ret = load_to(st, size))) {
			fprintf(stderr, "loading %llu peers: %s\n", (unsigned long long)size,
				strerror(-ret));
			return 1;
		}
		load_s = (double)(now_ns() - t0) / 1e9;
		if ((ret = time_creates(st, lat, samples))) {
			fprintf(stderr, "create: %s\n", strerror(-ret));
			return 1;
		}
		for (unsigned s = 0; s < samples; s++)
			sum += lat[s];
		qsort(lat, samples, sizeof(*lat), cmp_i64);
		printf("%10llu %10.1f %10.1f %10.1f %10.1f %10.1f\n", (unsigned long long)size,
		       (double)sum / samples / 1e3, (double)lat[samples / 2] / 1e3,
		       (double)lat[(size_t)samples * 99 / 100] / 1e3,
		       (double)lat[samples - 1] / 1e3,
		       load_s);
		fflush(stdout);
	}
	store_close(st);
	free(lat);
	remove_db_files(path);
	rmdir(dir);
	return 0;
}
