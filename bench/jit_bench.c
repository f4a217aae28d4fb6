/* SPDX-License-Identifier: MIT */
/* jit_bench: the cost of the provisioner's JIT decision (jit_decide in provisioner/jit.c),
 * called directly, no sockets, against a real SQLite store of N peers and a real device
 * (wireguard-go over UAPI unless -b says otherwise). Issue 4, "Performance".
 *
 *   (a) unknown keys, a new one each time: mac1, one X25519, a store miss
 *   (b) one unknown key again and again, each initiation new: mac1, one X25519, answered
 *       from the negative cache
 *   (c) keys already live in the device: X25519, store hit, the timestamp written (a commit)
 *   (d) a bad mac1: the cheapest refusal
 *   (e) stored but not installed: initiation -> peer live, against wgdev_install alone
 *   (f) one initiation again and again (a replay): answered from the memory of initiations
 *       decided lately (jitlimit.c), no public-key work
 *
 * (a)-(d) and (f) give decisions per second on one core (the main thread pins itself to one
 * CPU) and "X25519 equivalents": the mean time of a decision over the mean time of one
 * crypto_scalarmult, the two measured in alternating blocks so a noisy neighbour slows both
 * alike. (e) alternates its decisions with plain installs of other stored peers for the same
 * reason. Every verdict and the counter of the path taken are checked: a case that did not
 * go where it says fails the run. The components (mac1, a shed over the budget, Noise
 * halves, store calls) are timed alone as well, to show where a decision's time goes, and so
 * is the one device call that shares the event loop with the decisions on a timer: jit.c's
 * re-read of the device's key, every 10 minutes (a dump of the device: every installed peer
 * is listed).
 *
 * Initiations are made beforehand with noise_create_initiation and timestamps we choose:
 * each is newer than anything stored for its key, and a live key's next one comes
 * BENCH_LIVE_STEP_S later, so jit.c does not take it for a client retrying.
 *
 * The database is DIR/bench-peers-N.db with -d DIR, kept and reused (N random keys bulk-loaded
 * through store_create, BENCH_LOAD_TXN per transaction); otherwise a temporary file, removed.
 * Its pool is the one `wgws-provisioner serve --pool4 10.0.0.0/8 --pool6 fd00:6a:1700::/64`
 * configures, so that a copy of it serves the daemon too (bench/prov.sh: API creates with
 * 100k and 1M peers stored); -l only makes or tops up that file and exits (no device).
 * The bench keys (derived from their index, so a kept database already holds them) are
 * created when missing, and their installed marks and device entries are cleared at start
 * and at the end. WAL checkpoints run as in the daemon: ckpt.c's thread, on its own
 * connection and not pinned, started before anything is timed; after each timed block the
 * bench does what the daemon's once-a-second timer does (ckpt_kick when there were writes),
 * so the decisions' latencies include whatever those checkpoints cost the writer. Runner:
 * bench/jit.sh; `make jit-bench`. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "prov.h"

enum {
	BENCH_LOAD_TXN = 10000,     /* bulk-load creates per transaction */
	BENCH_PROGRESS = 100000,    /* a progress line every this many loaded peers */
	BENCH_CHUNK = 1000,         /* decisions per timed block; a loop_tick after each */
	BENCH_X25519_BLOCK = 50,    /* X25519s timed before each block of decisions */
	BENCH_LIVE_STEP_S = 20,     /* over jit.c's JIT_RETRY_S (10 s): not a retry */
	BENCH_REMOVE_BATCH = 64,
	BENCH_COMPONENT = 2000,     /* samples per component row */
	BENCH_X25519_NEAR = 300,    /* X25519s timed before each component */
	BENCH_MAX_ROWS = 26,
	BENCH_REREAD = 10,          /* device key re-reads timed, after (e) */
	BENCH_GOAL_RATE = 20000,    /* decisions/s on one core (issue 4) */
	BENCH_GOAL_P99_US = 2000,   /* initiation -> live, p99 (issue 4) */
};

struct prov prov;

double prov_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t prov_wall_s(void)
{
	return (int64_t)time(NULL);
}

/* The device opened here; prov.dev is it, or (-s) the privileged child's end of it. */
static struct wgdev *bench_dev;

static struct {
	uint64_t n_peers;
	const char *dir;
	const char *ifname;
	const char *uapi_dir;
	enum wgdev_kind backend;
	unsigned unknown, repeat, live_keys, live_rounds, bad_mac1, installs;
	const char *cases;
	int cpu;
	int verbosity;
	bool quick;
	bool load_only;
	bool privsep;    /* -s: the device and its key in a privileged child, as in the daemon */
} opt = { .backend = WGDEV_UAPI, .cases = "abcdef", .cpu = -2, .verbosity = -1 };

/* Latencies in ns, and the wall time of the blocks they were taken in. */
struct samples {
	int64_t *ns;
	size_t n, cap;
	int64_t block_ns;
};

struct row {
	char what[80];
	size_t n;
	double p50_us, p99_us, max_us, mean_us;
	double rate;     /* per second; 0: not a rate row */
	char base[20];   /* what ratio divides by */
	double ratio;    /* 0: none */
};

static struct row rows[BENCH_MAX_ROWS];
static unsigned n_rows;
static char notes[2048];                 /* printed under the table */
static char tmp_dir[256], db_path[320];
static bool db_is_tmp;
/* As main.c makes it from --pool4 10.0.0.0/8 --pool6 fd00:6a:1700::/64 (.1 is the gateway's). */
static const struct store_pool bench_pool = {
	.has_ip4 = true, .ip4_first = 0x0a000002, .ip4_last = 0x0afffffe,
	.has_ip6 = true, .ip6_prefix = { 0xfd, 0, 0, 0x6a, 0x17, 0, 0, 0 }, .hold_down_s = 180,
};
static struct sockaddr_storage source; /* the relay's UDP socket for the tunnel */
static uint8_t x_scalar[WG_KEY_LEN], x_point[WG_KEY_LEN];

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	va_list ap;

	fputs("jit_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A line for under the table. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	size_t len = strlen(notes);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(notes + len, sizeof(notes) - len, fmt, ap);
	va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("jit_bench: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the temporary database goes, whatever ends the run ---- */

static void remove_tmp_db(void)
{
	static const char *const sfx[] = { "", "-wal", "-shm" };
	char p[340];

	if (!db_is_tmp)
		return;
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", db_path, sfx[i]);
		unlink(p);
	}
	rmdir(tmp_dir);
}

static void on_signal(int sig)
{
	remove_tmp_db(); /* unlink and rmdir only: async-signal-safe */
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- samples and rows ---- */

static void samples_init(struct samples *s, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->ns = calloc(cap ? cap : 1, sizeof(*s->ns));
	if (!s->ns)
		die("out of memory for %zu samples", cap);
	s->cap = cap;
}

static void samples_add(struct samples *s, int64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		int64_t *p = realloc(s->ns, cap * sizeof(*p));

		if (!p)
			die("out of memory for %zu samples", cap);
		s->ns = p;
		s->cap = cap;
	}
	s->ns[s->n++] = ns;
}

static void samples_free(struct samples *s)
{
	free(s->ns);
	memset(s, 0, sizeof(*s));
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static double mean_us(const struct samples *s)
{
	double sum = 0;

	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->ns[i];
	return s->n ? sum / (double)s->n / 1e3 : 0;
}

/* A row from s (sorted here); rate from the blocks' wall time when s->block_ns is set. */
static struct row *row_add(const char *what, struct samples *s)
{
	struct row *r;

	if (n_rows == BENCH_MAX_ROWS)
		die("too many rows");
	r = &rows[n_rows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->what, sizeof(r->what), "%s", what);
	r->n = s->n;
	if (!s->n)
		return r;
	r->mean_us = mean_us(s);
	qsort(s->ns, s->n, sizeof(*s->ns), cmp_i64);
	r->p50_us = (double)s->ns[s->n / 2] / 1e3;
	r->p99_us = (double)s->ns[s->n * 99 / 100] / 1e3;
	r->max_us = (double)s->ns[s->n - 1] / 1e3;
	if (s->block_ns)
		r->rate = (double)s->n * 1e9 / (double)s->block_ns;
	progress("  %s: n=%zu p50 %.1f µs, p99 %.1f µs, max %.1f µs", r->what, r->n, r->p50_us,
		 r->p99_us, r->max_us);
	return r;
}

static void row_base(struct row *r, double ratio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void row_base(struct row *r, double ratio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->base, sizeof(r->base), fmt, ap);
	va_end(ap);
	r->ratio = ratio;
}

static void row_section(const char *title)
{
	struct row *r;

	if (n_rows == BENCH_MAX_ROWS)
		die("too many rows");
	r = &rows[n_rows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->what, sizeof(r->what), "%s", title);
	r->n = SIZE_MAX; /* a section title, not a measurement */
}

/* The row whose label starts with prefix, or NULL. */
static const struct row *row_find(const char *prefix)
{
	for (unsigned i = 0; i < n_rows; i++)
		if (!strncmp(rows[i].what, prefix, strlen(prefix)))
			return &rows[i];
	return NULL;
}

/* s in a column of width characters (not bytes: "µ" is two), left or right aligned. */
static void put_col(const char *s, int width, bool left)
{
	int chars = 0;

	for (const char *p = s; *p; p++)
		chars += ((unsigned char)*p & 0xc0) != 0x80;
	if (!left)
		printf("%*s", width > chars ? width - chars : 0, "");
	fputs(s, stdout);
	if (left)
		printf("%*s", width > chars ? width - chars : 0, "");
}

static void print_table(void)
{
	static const char *const head[] = { "samples", "p50 µs", "p99 µs", "max µs", "rate/s" };
	static const int width[] = { 9, 10, 10, 10, 11 };

	put_col("what", 44, true);
	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		put_col(head[i], width[i], false);
	fputs("  ", stdout);
	put_col("baseline", 18, true);
	put_col("ratio", 8, false);
	putchar('\n');
	for (unsigned i = 0; i < n_rows; i++) {
		const struct row *r = &rows[i];
		char rate[16] = "", ratio[16] = "";

		if (r->n == SIZE_MAX) {
			printf("%s\n", r->what);
			continue;
		}
		if (r->rate)
			snprintf(rate, sizeof(rate), "%.0f", r->rate);
		if (r->ratio)
			snprintf(ratio, sizeof(ratio), "%.2f", r->ratio);
		printf("  %-42s %8zu %9.1f %9.1f %9.1f %10s  ", r->what, r->n, r->p50_us, r->p99_us,
		       r->max_us, rate);
		put_col(r->base, 18, true);
		put_col(ratio, 8, false);
		putchar('\n');
	}
}

/* ---- keys, timestamps, initiations ---- */

struct bkey {
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
};

static void clamp(uint8_t k[static WG_KEY_LEN])
{
	k[0] &= 248;
	k[31] = (k[31] & 127) | 64;
}

/* Bench key i: the same in every run, so a kept database holds it already. */
static void bench_key(uint32_t i, struct bkey *k)
{
	uint8_t in[18] = "wgws-jit-bench";

	memcpy(in + 14, &i, sizeof(i));
	crypto_generichash(k->priv, WG_KEY_LEN, in, sizeof(in), NULL, 0);
	clamp(k->priv);
	if (crypto_scalarmult_base(k->pub, k->priv) != 0)
		die("crypto_scalarmult_base");
}

static void random_key(struct bkey *k)
{
	randombytes_buf(k->priv, WG_KEY_LEN);
	clamp(k->priv);
	if (crypto_scalarmult_base(k->pub, k->priv) != 0)
		die("crypto_scalarmult_base");
}

/* TAI64N seconds as they are on the wire: 2^62 plus the TAI second. */
static uint64_t tai_sec(const uint8_t ts[static WG_TAI64N_LEN])
{
	uint64_t s = 0;

	for (int i = 0; i < 8; i++)
		s = s << 8 | ts[i];
	return s;
}

static void tai_make(uint64_t sec, uint32_t nsec, uint8_t ts[static WG_TAI64N_LEN])
{
	for (int i = 0; i < 8; i++)
		ts[i] = (uint8_t)(sec >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		ts[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

/* One handshake initiation, as the relay would pass it on. */
struct msg {
	uint8_t b[NOISE_INITIATION_LEN];
};

static void make_initiation(const struct bkey *k, uint64_t sec, uint32_t nsec, struct msg *out)
{
	uint8_t ts[WG_TAI64N_LEN];
	int ret;

	tai_make(sec, nsec, ts);
	ret = noise_create_initiation(k->priv, prov.info.public_key, ts, randombytes_random(),
				      out->b);
	if (ret < 0)
		die("noise_create_initiation: %s", strerror(-ret));
}

static struct msg *msgs_alloc(size_t n)
{
	struct msg *m = calloc(n ? n : 1, sizeof(*m));

	if (!m)
		die("out of memory for %zu initiations", n);
	return m;
}

/* ---- the database ---- */

static int create_random(int64_t now)
{
	struct store_peer p;
	int ret;

	memset(&p, 0, sizeof(p));
	do {
		randombytes_buf(p.pubkey, sizeof(p.pubkey));
		ret = store_create(prov.store, &p, now);
	} while (ret == -EEXIST);
	return ret;
}

/* Returns the seconds spent loading (0 when the file held enough peers already); *loaded
 * gets how many were created. */
static double load_to(uint64_t target, uint64_t *loaded)
{
	int64_t t0 = now_ns(), now = prov_wall_s();
	uint64_t n, start;
	int ret;

	*loaded = 0;
	if ((ret = store_count(prov.store, &n, NULL)))
		die("store_count: %s", strerror(-ret));
	if (n >= target)
		return 0;
	start = n;
	progress("loading %llu random peers into %s (%llu there)",
		 (unsigned long long)(target - n), db_path, (unsigned long long)n);
	while (n < target) {
		if ((ret = store_begin(prov.store)))
			die("store_begin: %s", strerror(-ret));
		for (unsigned i = 0; i < BENCH_LOAD_TXN && n < target; i++, n++) {
			if ((ret = create_random(now)))
				die("store_create: %s", strerror(-ret));
			if (n % BENCH_PROGRESS == BENCH_PROGRESS - 1)
				progress("  %llu stored, %.0f creates/s", (unsigned long long)n + 1,
					 (double)(n + 1 - start) * 1e9 / (double)(now_ns() - t0));
		}
		if ((ret = store_commit(prov.store)))
			die("store_commit: %s", strerror(-ret));
	}
	if ((ret = store_checkpoint(prov.store, true)))
		die("store_checkpoint: %s", strerror(-ret));
	*loaded = n - start;
	return (double)(now_ns() - t0) / 1e9;
}

/* Create the missing bench keys, clear the installed marks left by an earlier run, and
 * return the newest TAI64N second stored for any of them (0: none). */
static uint64_t bench_keys_prepare(const struct bkey *keys, size_t n, unsigned *created)
{
	uint64_t newest = 0;
	struct store_peer sp;
	int ret;

	*created = 0;
	if ((ret = store_begin(prov.store)))
		die("store_begin: %s", strerror(-ret));
	for (size_t i = 0; i < n; i++) {
		ret = store_get(prov.store, keys[i].pub, &sp);
		if (ret == -ENOENT) {
			memset(&sp, 0, sizeof(sp));
			memcpy(sp.pubkey, keys[i].pub, WG_KEY_LEN);
			if ((ret = store_create(prov.store, &sp, prov_wall_s())))
				die("store_create: %s", strerror(-ret));
			(*created)++;
			continue;
		}
		if (ret < 0)
			die("store_get: %s", strerror(-ret));
		if (sp.has_last_ts && tai_sec(sp.last_ts) > newest)
			newest = tai_sec(sp.last_ts);
		if (sp.installed_at && (ret = store_set_installed(prov.store, sp.pubkey, 0)))
			die("store_set_installed: %s", strerror(-ret));
	}
	if ((ret = store_commit(prov.store)))
		die("store_commit: %s", strerror(-ret));
	return newest;
}

static void bench_keys_unmark(const struct bkey *keys, size_t n)
{
	int ret;

	if ((ret = store_begin(prov.store)))
		die("store_begin: %s", strerror(-ret));
	for (size_t i = 0; i < n; i++) {
		ret = store_set_installed(prov.store, keys[i].pub, 0);
		if (ret < 0 && ret != -ENOENT)
			die("store_set_installed: %s", strerror(-ret));
	}
	if ((ret = store_commit(prov.store)))
		die("store_commit: %s", strerror(-ret));
}

/* Out of the device (absent ones are no error). */
static void device_remove(const struct bkey *keys, size_t n)
{
	uint8_t batch[BENCH_REMOVE_BATCH][WG_KEY_LEN];

	for (size_t i = 0; i < n;) {
		unsigned m = 0;
		int ret;

		for (; m < BENCH_REMOVE_BATCH && i < n; m++, i++)
			memcpy(batch[m], keys[i].pub, WG_KEY_LEN);
		if ((ret = wgdev_remove(prov.dev, (const uint8_t(*)[WG_KEY_LEN])batch, m)))
			die("wgdev_remove: %s", strerror(-ret));
	}
}

/* A cold page cache in SQLite: a new connection. The checkpoint thread's connection keeps
 * the WAL as it is, as a restart of the daemon's writer alone would. */
static void store_reopen(void)
{
	char err[256];
	int ret;

	store_close(prov.store);
	if ((ret = store_open(&prov.store, db_path, &bench_pool, err, sizeof(err))))
		die("%s", err);
}

/* What the daemon's once-a-second timer does (main.c, checkpoint_cb): wake the checkpoint
 * thread when there were writes. Here after each timed block, off the clock. */
static void loop_tick(void)
{
	if (!prov.writes_since_checkpoint)
		return;
	ckpt_kick();
	prov.writes_since_checkpoint = false;
}

/* The checkpoint thread's counters at a mark, to say what it did while a case ran. */
struct ckpt_mark {
	uint64_t runs, failures;
	double sum_s, max_s;
	int wal_frames, copied_frames;
};

static void ckpt_mark_now(struct ckpt_mark *m)
{
	ckpt_stats(&m->runs, &m->failures, &m->sum_s, &m->max_s, &m->wal_frames,
		   &m->copied_frames);
}

/* The WAL file's size in MiB: it only shrinks by a TRUNCATE checkpoint, so at the end of a
 * run it is the largest the WAL has been; it stays small only if checkpoints keep up. */
static double wal_mib(void)
{
	char p[340];
	struct stat st;

	snprintf(p, sizeof(p), "%s-wal", db_path);
	return stat(p, &st) == 0 ? (double)st.st_size / (1024 * 1024) : 0;
}

static void ckpt_note(const char *what, const struct ckpt_mark *before)
{
	struct ckpt_mark now;
	uint64_t runs;

	ckpt_mark_now(&now);
	runs = now.runs - before->runs;
	if (!runs && now.failures == before->failures)
		return;
	note("%s: meanwhile the checkpoint thread ran %llu checkpoint%s (mean %.1f ms), %llu "
	     "failed.\n", what, (unsigned long long)runs, runs == 1 ? "" : "s",
	     runs ? (now.sum_s - before->sum_s) / (double)runs * 1e3 : 0.0,
	     (unsigned long long)(now.failures - before->failures));
}

/* A stored key picked at random: the first one after a random key (one index seek). */
static int first_after(void *arg, const struct store_peer *p)
{
	memcpy(arg, p->pubkey, WG_KEY_LEN);
	return 0;
}

static void random_stored_key(uint8_t key[static WG_KEY_LEN])
{
	uint8_t after[WG_KEY_LEN];
	int ret;

	do {
		randombytes_buf(after, sizeof(after));
		ret = store_list(prov.store, after, 1, first_after, key);
		if (ret < 0)
			die("store_list: %s", strerror(-ret));
	} while (ret == 0); /* after the last key: draw again */
}

/* ---- timing ---- */

static void x25519_block(struct samples *x, unsigned n)
{
	uint8_t q[WG_KEY_LEN];

	for (unsigned i = 0; i < n; i++) {
		int64_t a = now_ns();

		if (crypto_scalarmult(q, x_scalar, x_point) != 0)
			die("crypto_scalarmult");
		samples_add(x, now_ns() - a);
		memcpy(x_point, q, sizeof(q)); /* chained: nothing to hoist or skip */
	}
}

static enum jit_verdict decide(const uint8_t *msg)
{
	return jit_decide(msg, NOISE_INITIATION_LEN, &source, &source, JIT_PATH_RELAY,
			  prov_now_s(), NULL);
}

static void check_verdicts(const char *what, const uint64_t *got, enum jit_verdict want)
{
	bool bad = false;

	for (int v = 0; v < JIT_VERDICT_MAX; v++)
		if (v != (int)want && got[v]) {
			fprintf(stderr, "jit_bench: %s: %llu decisions were \"%s\", not \"%s\"\n",
				what, (unsigned long long)got[v], jit_verdict_name((uint32_t)v),
				jit_verdict_name(want));
			bad = true;
		}
	if (bad)
		die("%s did not take the path it measures (jit.c changed, or the device failed)",
		    what);
}

/* Decisions on msgs[i % nmsgs], samples of them, in blocks of BENCH_CHUNK with
 * BENCH_X25519_BLOCK X25519s before each (into x) and a loop_tick after. Adds the row; the
 * ratio is the mean decision over the mean X25519 of this case's blocks. *counter (the
 * jit_stats field of the path measured) must grow by exactly samples. */
static void run_rate(const char *what, const struct msg *msgs, size_t nmsgs, size_t samples,
		     enum jit_verdict want, const uint64_t *counter, struct samples *x_all)
{
	uint64_t verdicts[JIT_VERDICT_MAX] = { 0 }, before = *counter;
	struct samples d, x;
	struct ckpt_mark ck;
	struct row *r;
	double x_mean;

	ckpt_mark_now(&ck);
	progress("%s: %zu decisions", what, samples);
	samples_init(&d, samples);
	samples_init(&x, (samples / BENCH_CHUNK + 1) * BENCH_X25519_BLOCK);
	for (size_t done = 0; done < samples;) {
		size_t m = samples - done < BENCH_CHUNK ? samples - done : BENCH_CHUNK;
		int64_t t0, t1;

		x25519_block(&x, BENCH_X25519_BLOCK);
		t0 = now_ns();
		for (size_t i = done; i < done + m; i++) {
			int64_t a = now_ns();
			enum jit_verdict v = decide(msgs[i % nmsgs].b);

			samples_add(&d, now_ns() - a);
			verdicts[v < JIT_VERDICT_MAX ? v : 0]++;
		}
		t1 = now_ns();
		d.block_ns += t1 - t0;
		done += m;
		loop_tick();
	}
	check_verdicts(what, verdicts, want);
	if (*counter - before != samples)
		die("%s: the path's counter moved by %llu, not %zu", what,
		    (unsigned long long)(*counter - before), samples);
	x_mean = mean_us(&x);
	for (size_t i = 0; i < x.n; i++)
		samples_add(x_all, x.ns[i]);
	r = row_add(what, &d);
	row_base(r, (double)d.block_ns / (double)d.n / 1e3 / x_mean, "X25519 %.1f µs", x_mean);
	ckpt_note(what, &ck);
	samples_free(&d);
	samples_free(&x);
}

/* ---- components, alone ---- */

/* A block of X25519s now, into x_all; returns their mean (µs): each component's baseline. */
static double x25519_now(struct samples *x_all)
{
	struct samples x;
	double m;

	samples_init(&x, BENCH_X25519_NEAR);
	x25519_block(&x, BENCH_X25519_NEAR);
	m = mean_us(&x);
	for (size_t i = 0; i < x.n; i++)
		samples_add(x_all, x.ns[i]);
	samples_free(&x);
	return m;
}

static void component_row(const char *what, struct samples *s, double x_mean)
{
	struct row *r = row_add(what, s);

	row_base(r, r->mean_us / x_mean, "X25519 %.1f µs", x_mean);
	s->n = 0;
}

static void components(const struct noise_responder *resp, const uint8_t *known,
		       struct samples *x_all)
{
	uint8_t ss[WG_KEY_LEN], ts[WG_TAI64N_LEN], key[WG_KEY_LEN];
	struct noise_half h;
	struct store_peer sp;
	struct samples s;
	double x_mean;
	uint8_t (*keys)[WG_KEY_LEN];
	int ret;

	row_section("components, each alone (ratio: mean / mean X25519)");
	samples_init(&s, BENCH_COMPONENT);
	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		int64_t a = now_ns();
		bool ok = noise_mac1_ok(resp, known, NOISE_INITIATION_LEN);

		samples_add(&s, now_ns() - a);
		if (!ok)
			die("noise_mac1_ok refused a good initiation");
	}
	component_row("mac1 check (noise_mac1_ok)", &s, x_mean);

	/* What an initiation with a valid mac1 costs past it when it is shed: a miss in the
	 * memory of decided ones, a client's buckets, the spent budget, the live sources (the
	 * tables sized as jit.c sizes them; a new client address each time). */
	{
		const struct jitlimit_cfg lc = {
			.replay_slots = 4096, .sketch_cells = 8192, .live_slots = 8192,
			.replay_ttl_s = 60, .live_ttl_s = 180, .rate = 20, .burst = 40,
			.budget = 1, .budget_burst = 1,
		};
		struct sockaddr_storage cs = { .ss_family = AF_INET };
		struct jitlimit_id client, src;
		enum jitlimit_seen seen;
		struct jitlimit *lim;

		if (jitlimit_open(&lim, &lc) < 0)
			die("jitlimit_open");
		jitlimit_id_source(&src, &source);
		x_mean = x25519_now(x_all);
		for (uint32_t i = 0; i < BENCH_COMPONENT; i++) {
			int64_t a;
			bool shed;

			((struct sockaddr_in *)&cs)->sin_addr.s_addr = htonl(0x0a000000 + i);
			a = now_ns();
			jitlimit_id_client(&client, &cs);
			shed = jitlimit_recall(lim, known, 1, &seen, key) == JITLIMIT_MISS &&
			       jitlimit_admit(lim, &client, &src, 1, key) != JITLIMIT_ADMIT;
			samples_add(&s, now_ns() - a);
			if (!shed && i)
				die("jitlimit: initiation %u was not shed over the budget", i);
		}
		jitlimit_close(lim);
		component_row("shed over the budget (jitlimit.c)", &s, x_mean);
	}

	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		int64_t a = now_ns();
		enum noise_result nr = noise_open_static(resp, known, NOISE_INITIATION_LEN, &h);

		samples_add(&s, now_ns() - a);
		noise_half_wipe(&h);
		if (nr != NOISE_OK)
			die("noise_open_static: %d", nr);
	}
	component_row("noise_open_static (mac1 + 1 X25519)", &s, x_mean);

	if (noise_open_static(resp, known, NOISE_INITIATION_LEN, &h) != NOISE_OK ||
	    noise_static_secret(resp, h.initiator_public, ss) < 0)
		die("noise_open_static");
	noise_half_wipe(&h);
	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		enum noise_result nr = noise_open_static(resp, known, NOISE_INITIATION_LEN, &h);
		int64_t a = now_ns();

		if (nr == NOISE_OK)
			nr = noise_open_timestamp(resp, &h, known, ss, ts);
		samples_add(&s, now_ns() - a);
		noise_half_wipe(&h);
		if (nr != NOISE_OK)
			die("noise_open_timestamp: %d", nr);
	}
	component_row("noise_open_timestamp (secret cached)", &s, x_mean);
	sodium_memzero(ss, sizeof(ss));

	keys = calloc(BENCH_COMPONENT, sizeof(*keys));
	if (!keys)
		die("out of memory");
	for (int i = 0; i < BENCH_COMPONENT; i++)
		random_stored_key(keys[i]);
	store_reopen(); /* the lookups above must not have warmed the cache for the ones below */
	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		int64_t a = now_ns();

		ret = store_get(prov.store, keys[i], &sp);
		samples_add(&s, now_ns() - a);
		if (ret < 0)
			die("store_get: %s", strerror(-ret));
	}
	component_row("store_get, hit (random stored key)", &s, x_mean);

	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		int64_t a;

		randombytes_buf(key, sizeof(key));
		a = now_ns();
		ret = store_get(prov.store, key, &sp);
		samples_add(&s, now_ns() - a);
		if (ret != -ENOENT)
			die("store_get of a random key: %s", strerror(-ret));
	}
	component_row("store_get, miss", &s, x_mean);

	/* The same statement jit_decide runs for a valid initiation: one autocommit UPDATE. */
	noise_tai64n_now(ts);
	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		int64_t a = now_ns();

		ret = store_accept_timestamp(prov.store, keys[i], ts);
		samples_add(&s, now_ns() - a);
		if (ret < 0 && ret != -EALREADY)
			die("store_accept_timestamp: %s", strerror(-ret));
		if (i % BENCH_CHUNK == BENCH_CHUNK - 1) {
			prov.writes_since_checkpoint = true;
			loop_tick();
		}
	}
	component_row("store_accept_timestamp (one commit)", &s, x_mean);

	/* What peer.c does after a device install; the marks go again, off the clock. */
	x_mean = x25519_now(x_all);
	for (int i = 0; i < BENCH_COMPONENT; i++) {
		int64_t a = now_ns();

		ret = store_set_installed(prov.store, keys[i], prov_wall_s());
		samples_add(&s, now_ns() - a);
		if (ret < 0)
			die("store_set_installed: %s", strerror(-ret));
		if (i % BENCH_CHUNK == BENCH_CHUNK - 1) {
			prov.writes_since_checkpoint = true;
			loop_tick();
		}
	}
	component_row("store_set_installed (one commit)", &s, x_mean);
	if ((ret = store_begin(prov.store)))
		die("store_begin: %s", strerror(-ret));
	for (int i = 0; i < BENCH_COMPONENT; i++)
		if ((ret = store_set_installed(prov.store, keys[i], 0)))
			die("store_set_installed: %s", strerror(-ret));
	if ((ret = store_commit(prov.store)))
		die("store_commit: %s", strerror(-ret));
	prov.writes_since_checkpoint = true;
	loop_tick();
	free(keys);
	samples_free(&s);
}

/* ---- the device's key, re-read by jit.c every 10 minutes in the event loop ---- */

static int count_peer(void *arg, const struct wgdev_peer_info *p)
{
	(void)p;
	(*(size_t *)arg)++;
	return 0;
}

/* responder_refresh's device call, timed alone with the peers the cases left installed: not
 * on any decision's path, but the event loop, and every decision queued behind it, waits for
 * it once every JIT_KEY_REFRESH_S. */
static void device_key_reread(void)
{
	uint8_t priv[WG_KEY_LEN];
	struct wgdev_info info;
	struct samples s;
	size_t peers = 0;
	char what[80];
	int ret;

	if ((ret = wgdev_dump(prov.dev, count_peer, &peers)))
		die("wgdev_dump: %s", strerror(-ret));
	samples_init(&s, BENCH_REREAD);
	for (int i = 0; i < BENCH_REREAD; i++) {
		int64_t a = now_ns();

		ret = wgdev_get_info(bench_dev, &info, priv);
		samples_add(&s, now_ns() - a);
		if (ret < 0)
			die("wgdev_get_info: %s", strerror(-ret));
	}
	sodium_memzero(priv, sizeof(priv));
	snprintf(what, sizeof(what), "device key re-read, %zu peers installed", peers);
	row_add(what, &s);
	note("The key re-read is jit.c's 10-minute timer (responder_refresh -> wgdev_get_info, "
	     "a dump of the whole\n    device: a UAPI get=1 or a netlink dump, every installed "
	     "peer listed), timed alone; no decision makes it.\n");
	samples_free(&s);
}

/* ---- (e): installs, each decision next to a plain install of another stored peer ---- */

struct seen {
	const struct bkey *keys;
	size_t n;
	size_t found;
};

static int count_seen(void *arg, const struct wgdev_peer_info *p)
{
	struct seen *s = arg;

	for (size_t i = 0; i < s->n; i++)
		if (!memcmp(s->keys[i].pub, p->pubkey, WG_KEY_LEN)) {
			s->found++;
			break;
		}
	return 0;
}

/* The device backend behind a stopwatch, so the install inside a decision is timed alone. */
static const struct wgdev_ops *real_ops;
static struct wgdev_ops timed_ops;
static int64_t last_install_ns;

static int timed_install(void *impl, const struct wgdev_peer *p)
{
	int64_t a = now_ns();
	int ret = real_ops->install(impl, p);

	last_install_ns = now_ns() - a;
	return ret;
}

static void run_installs(const struct bkey *ekeys, const struct bkey *bkeys, size_t n,
			 uint64_t sec)
{
	uint64_t verdicts[JIT_VERDICT_MAX] = { 0 }, installs0 = prov.jit.installs;
	struct hist inst0 = prov.st.install_latency, lat0 = prov.jit.latency;
	struct wgdev_peer *dps = calloc(n ? n : 1, sizeof(*dps));
	struct msg *msgs = msgs_alloc(n);
	struct samples d, b, dev, rest;
	struct seen seen = { ekeys, n, 0 };
	struct ckpt_mark ck;
	double dev_in_decision, hist_in_decision, base_p50, base_p99, e_p50;
	struct row *rd, *rb;
	int ret;

	if (!dps)
		die("out of memory");
	progress("(e): %zu initiations of stored, uninstalled peers, each next to a plain "
		 "wgdev_install of another one", n);
	for (size_t i = 0; i < n; i++) {
		struct store_peer sp;

		make_initiation(&ekeys[i], sec, 0, &msgs[i]);
		if ((ret = store_get(prov.store, bkeys[i].pub, &sp)))
			die("store_get: %s", strerror(-ret));
		peer_to_device(&sp, &dps[i]);
	}
	samples_init(&d, n);
	samples_init(&b, n);
	samples_init(&dev, n);
	samples_init(&rest, n);
	real_ops = prov.dev->ops;
	timed_ops = *real_ops;
	timed_ops.install = timed_install;
	prov.dev->ops = &timed_ops;
	ckpt_mark_now(&ck);
	for (size_t i = 0; i < n; i++) {
		/* Alternate which goes first, so neither always follows the other. */
		for (int k = 0; k < 2; k++) {
			int64_t a = now_ns();

			if ((k == 0) == (i % 2 == 0)) {
				enum jit_verdict v;
				int64_t t;

				last_install_ns = 0;
				v = decide(msgs[i].b);
				t = now_ns() - a;
				samples_add(&d, t);
				samples_add(&dev, last_install_ns);
				samples_add(&rest, t - last_install_ns);
				verdicts[v < JIT_VERDICT_MAX ? v : 0]++;
			} else {
				ret = wgdev_install(prov.dev, &dps[i]);
				samples_add(&b, now_ns() - a);
				if (ret < 0)
					die("wgdev_install: %s", strerror(-ret));
			}
		}
		loop_tick(); /* a pair takes a millisecond or less: kick at once, off the clock */
	}
	prov.dev->ops = real_ops;
	check_verdicts("(e)", verdicts, JIT_INSTALLED);
	if (prov.jit.installs - installs0 != n)
		die("(e): %llu installs counted, not %zu",
		    (unsigned long long)(prov.jit.installs - installs0), n);
	if ((ret = wgdev_dump(prov.dev, count_seen, &seen)))
		die("wgdev_dump: %s", strerror(-ret));
	if (seen.found != n)
		die("(e): %zu of the %zu installed peers are in the device", seen.found, n);
	progress("(e): the device lists all %zu peers installed by decisions", n);

	/* The device's share inside the decisions (peer.c's histogram), and jit.c's own view. */
	dev_in_decision = (prov.st.install_latency.sum - inst0.sum) /
			  (double)(prov.st.install_latency.count - inst0.count) * 1e6;
	hist_in_decision = (prov.jit.latency.sum - lat0.sum) /
			   (double)(prov.jit.latency.count - lat0.count) * 1e6;

	rb = row_add("install only (wgdev_install)", &b);
	base_p50 = rb->p50_us;
	base_p99 = rb->p99_us;
	rd = row_add("(e) initiation -> peer live", &d);
	row_base(rd, rd->p50_us / base_p50, "install %.0f µs", base_p50);
	note("(e) p99 / install-only p99: %.0f / %.0f µs = %.2f. Cross-check, means: jit.c's "
	     "initiation -> live histogram %.0f µs,\n    peer.c's install histogram %.0f µs "
	     "(%llu installs).\n", rd->p99_us, base_p99, rd->p99_us / base_p99, hist_in_decision,
	     dev_in_decision, (unsigned long long)(prov.jit.latency.count - lat0.count));
	ckpt_note("(e)", &ck);
	e_p50 = rd->p50_us;
	rb = row_add("  (e), its wgdev_install", &dev);
	row_base(rb, rb->p50_us / e_p50, "of (e) p50");
	rb = row_add("  (e), the rest (crypto, store)", &rest);
	row_base(rb, rb->p50_us / e_p50, "of (e) p50");
	samples_free(&d);
	samples_free(&b);
	samples_free(&dev);
	samples_free(&rest);
	free(msgs);
	free(dps);
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fputs("usage: jit_bench -i IFNAME [-q] [-n PEERS] [-d DIR] [-b uapi|netlink|auto] "
	      "[-u UAPI_DIR]\n"
	      "                 [-C CASES] [-a N] [-r N] [-L KEYS] [-R ROUNDS] [-m N] [-e N] "
	      "[-P CPU] [-s] [-v]\n"
	      "       jit_bench -l -d DIR [-q] [-n PEERS]\n"
	      "  -i IFNAME   the WireGuard device (its private key must be set)\n"
	      "  -l          only make (or top up) DIR/bench-peers-PEERS.db and exit: no device\n"
	      "  -n PEERS    random peers stored (default 1000000; -q: 100000)\n"
	      "  -q          quick: 100,000 peers, about a tenth of the samples\n"
	      "  -d DIR      keep the database as DIR/bench-peers-PEERS.db and reuse it\n"
	      "              (default: a temporary file, removed)\n"
	      "  -b KIND     device backend (default uapi); -u DIR: UAPI socket directory\n"
	      "  -C CASES    any of abcdef (default all); the components and the key re-read\n"
	      "              always run\n"
	      "  -a N        (a) unknown keys, distinct (default 20000)\n"
	      "  -r N        (b) initiations of one unknown key, and (f) repeats of one\n"
	      "              initiation (default 20000)\n"
	      "  -L KEYS     (c) live keys (default 1000), -R ROUNDS initiations each (10)\n"
	      "  -m N        (d) bad-mac1 initiations (default 200000)\n"
	      "  -e N        (e) installs, and as many install-only baselines (default 2000)\n"
	      "  -P CPU      pin the decisions to this CPU (default: the one they start on;\n"
	      "              -1: do not pin); the checkpoint thread is never pinned\n"
	      "  -s          as the daemon runs: the device and its private key in a privileged\n"
	      "              child (priv.c), every X25519 with the key a round trip to it\n"
	      "  -v          the provisioner's log lines (repeat for debug)\n",
	      f);
}

static unsigned parse_count(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v > UINT_MAX / 2)
		die("%s: '%s' is not a count", what, s);
	return (unsigned)v;
}

/* A count left at 0 takes the default of the mode. */
static unsigned or_default(unsigned v, unsigned full, unsigned quick)
{
	return v ? v : opt.quick ? quick : full;
}

static void parse_args(int argc, char **argv)
{
	unsigned long long n = 0;
	int c;

	while ((c = getopt(argc, argv, "i:n:qd:b:u:C:a:r:L:R:m:e:P:lsvh")) != -1) {
		switch (c) {
		case 'i': opt.ifname = optarg; break;
		case 'l': opt.load_only = true; break;
		case 's': opt.privsep = true; break;
		case 'n':
			n = strtoull(optarg, NULL, 10);
			if (!n)
				die("-n: '%s' is not a positive count", optarg);
			break;
		case 'q': opt.quick = true; break;
		case 'd': opt.dir = optarg; break;
		case 'b':
			if (!strcmp(optarg, "uapi"))
				opt.backend = WGDEV_UAPI;
			else if (!strcmp(optarg, "netlink"))
				opt.backend = WGDEV_NETLINK;
			else if (!strcmp(optarg, "auto"))
				opt.backend = WGDEV_AUTO;
			else
				die("-b: uapi, netlink or auto");
			break;
		case 'u': opt.uapi_dir = optarg; break;
		case 'C':
			if (strspn(optarg, "abcdef") != strlen(optarg))
				die("-C: letters from abcdef");
			opt.cases = optarg;
			break;
		case 'a': opt.unknown = parse_count(optarg, "-a"); break;
		case 'r': opt.repeat = parse_count(optarg, "-r"); break;
		case 'L': opt.live_keys = parse_count(optarg, "-L"); break;
		case 'R': opt.live_rounds = parse_count(optarg, "-R"); break;
		case 'm': opt.bad_mac1 = parse_count(optarg, "-m"); break;
		case 'e': opt.installs = parse_count(optarg, "-e"); break;
		case 'P': opt.cpu = atoi(optarg); break;
		case 'v': opt.verbosity++; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc || (opt.load_only ? !opt.dir : !opt.ifname)) {
		usage(stderr);
		exit(2);
	}
	opt.n_peers = n ? n : opt.quick ? 100000 : 1000000;
	opt.unknown = or_default(opt.unknown, 20000, 2000);
	opt.repeat = or_default(opt.repeat, 20000, 2000);
	opt.live_keys = or_default(opt.live_keys, 1000, 200);
	opt.live_rounds = or_default(opt.live_rounds, 10, 5);
	opt.bad_mac1 = or_default(opt.bad_mac1, 200000, 20000);
	opt.installs = or_default(opt.installs, 2000, 500);
}

static bool wants(char c)
{
	return strchr(opt.cases, c) != NULL;
}

static void pin_cpu(void)
{
	cpu_set_t set;

	if (opt.cpu == -1)
		return;
	if (opt.cpu == -2)
		opt.cpu = sched_getcpu();
	CPU_ZERO(&set);
	CPU_SET(opt.cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("pinning to CPU %d: %s", opt.cpu, strerror(errno));
}

int main(int argc, char **argv)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&source;
	uint8_t priv[WG_KEY_LEN], now_ts[WG_TAI64N_LEN];
	struct noise_responder *resp;
	struct wgdev_info info;
	struct samples x_all;
	struct bkey *keys, *live, *ekeys, *bkeys;
	size_t n_keys;
	uint64_t stored, newest, sec, loaded;
	const struct row *row_a, *row_c, *row_e;
	struct ckpt_mark ck;
	unsigned created;
	double load_s;
	char err[256];
	int ret;

	parse_args(argc, argv);
	if (sodium_init() < 0)
		die("sodium_init");
	log_init("jit_bench", opt.verbosity);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	atexit(remove_tmp_db);

	/* The store. */
	if (opt.dir) {
		if (mkdir(opt.dir, 0700) < 0 && errno != EEXIST)
			die("mkdir %s: %s", opt.dir, strerror(errno));
		snprintf(db_path, sizeof(db_path), "%s/bench-peers-%llu.db", opt.dir,
			 (unsigned long long)opt.n_peers);
	} else {
		snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/jit-bench-XXXXXX");
		if (!mkdtemp(tmp_dir))
			die("mkdtemp: %s", strerror(errno));
		snprintf(db_path, sizeof(db_path), "%s/peers.db", tmp_dir);
		db_is_tmp = true;
	}
	if ((ret = store_open(&prov.store, db_path, &bench_pool, err, sizeof(err))))
		die("%s", err);
	load_s = load_to(opt.n_peers, &loaded);
	if (opt.load_only) {
		if ((ret = store_count(prov.store, &stored, NULL)))
			die("store_count: %s", strerror(-ret));
		store_close(prov.store);
		printf("store %s: %llu peers, %s", db_path, (unsigned long long)stored,
		       load_s > 0 ? "" : "reused\n");
		if (load_s > 0)
			printf("%llu loaded in %.1f s\n", (unsigned long long)loaded, load_s);
		return 0;
	}

	/* The bench keys: (c) live ones, (e) installed by decisions, (e)'s plain installs. */
	n_keys = (size_t)opt.live_keys + 2 * (size_t)opt.installs;
	keys = calloc(n_keys, sizeof(*keys));
	if (!keys)
		die("out of memory");
	progress("deriving %zu bench keys", n_keys);
	for (size_t i = 0; i < n_keys; i++)
		bench_key((uint32_t)i, &keys[i]);
	live = keys;
	ekeys = keys + opt.live_keys;
	bkeys = ekeys + opt.installs;
	newest = bench_keys_prepare(keys, n_keys, &created);
	if ((ret = store_count(prov.store, &stored, NULL)))
		die("store_count: %s", strerror(-ret));

	/* The device, cleared of bench keys an earlier run may have left. */
	if ((ret = wgdev_open(&prov.dev, opt.ifname, opt.backend, opt.uapi_dir)))
		die("device %s: %s", opt.ifname, strerror(-ret));
	device_remove(keys, n_keys);
	/* As after a restart: the WAL emptied by the last clean stop (main.c), a cold page cache
	 * in SQLite, the checkpoint thread started on the database. */
	if ((ret = store_checkpoint(prov.store, true)))
		die("store_checkpoint: %s", strerror(-ret));
	store_reopen();
	if ((ret = ckpt_start(db_path)))
		die("ckpt_start on %s: %s", db_path, strerror(-ret));
	ckpt_mark_now(&ck);
	bench_dev = prov.dev;
	if (opt.privsep) {
		/* As serve does: the child gets the device, the engine reaches it through
		 * privsep_ops, and jit.c's responder its key through priv_dh. bench_dev stays
		 * open here for our own component timings. */
		if ((ret = priv_start(&prov.priv, bench_dev, NULL)) ||
		    (ret = priv_open_device(&prov.dev, prov.priv, opt.ifname)))
			die("privileged child: %s", strerror(-ret));
	}
	pin_cpu(); /* after ckpt_start: the checkpoint thread is not pinned, as in the daemon */

	/* What jit.c and peer.c read from the configuration. */
	snprintf(prov.cfg.ifname, sizeof(prov.cfg.ifname), "%s", opt.ifname);
	prov.cfg.jit = true;
	prov.cfg.jit_rate = 1000000000;   /* the per-client limit never bites */
	prov.cfg.jit_budget = 1000000000; /* nor the budget: every decision is made */
	prov.cfg.jit_negative_ttl_s = 600;
	prov.cfg.pool = bench_pool;
	prov.cfg.verbosity = opt.verbosity;
	if ((ret = jit_init()))
		die("jit_init on %s: %s", opt.ifname, strerror(-ret));
	/* Our own copy of the responder, for the component timings. */
	if ((ret = wgdev_get_info(bench_dev, &info, priv)))
		die("reading the private key of %s: %s", opt.ifname, strerror(-ret));
	resp = sodium_malloc(sizeof(*resp));
	if (!resp || noise_responder_init_local(resp, priv) < 0)
		die("noise_responder_init");
	sodium_memzero(priv, sizeof(priv));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(40000);
	sin->sin_addr.s_addr = htonl(0x7f000001);
	randombytes_buf(x_scalar, sizeof(x_scalar));
	clamp(x_scalar);
	if (crypto_scalarmult_base(x_point, x_scalar) != 0)
		die("crypto_scalarmult_base");

	/* Every timestamp from here on is newer than any stored for a bench key. */
	noise_tai64n_now(now_ts);
	sec = tai_sec(now_ts) > newest ? tai_sec(now_ts) : newest;
	sec += BENCH_LIVE_STEP_S;

	samples_init(&x_all, 0);
	printf("jit_bench: jit_decide (provisioner/jit.c) on one core (CPU %d), WAL checkpoints in "
	       "their own thread (ckpt.c),\n  SQLite %s, device %s (%s)\n", opt.cpu,
	       sqlite3_libversion(), opt.ifname, prov.dev->ops->name);
	printf("store %s: %llu peers (%llu random + bench keys), %s\n", db_path,
	       (unsigned long long)stored, (unsigned long long)opt.n_peers,
	       load_s > 0 ? "loaded now" : "reused");
	if (load_s > 0)
		printf("  bulk load: %llu peers in %.1f s, %.0f creates/s (store_create, %d per "
		       "transaction)\n", (unsigned long long)loaded, load_s,
		       (double)loaded / load_s, BENCH_LOAD_TXN);
	if (created)
		printf("  %u bench keys created now\n", created);
	printf("\n");

	{
		struct msg known;

		make_initiation(&live[0], sec, 0, &known);
		components(resp, known.b, &x_all);
	}
	row_section("decisions, jit_decide (ratio: mean decision / mean X25519 in between)");
	if (wants('a')) {
		struct msg *m = msgs_alloc(opt.unknown);
		struct bkey k;
		int64_t t0 = now_ns();

		for (size_t i = 0; i < opt.unknown; i++) {
			random_key(&k);
			make_initiation(&k, sec, 0, &m[i]);
		}
		progress("(a): %u initiations of random keys made in %.1f s", opt.unknown,
			 (double)(now_ns() - t0) / 1e9);
		run_rate("(a) unknown key, store miss", m, opt.unknown, opt.unknown, JIT_UNKNOWN,
			 &prov.jit.unknown_keys, &x_all);
		free(m);
	}
	if (wants('b')) {
		/* Each one new: the same bytes again would be answered from memory, case (f). */
		struct msg *m = msgs_alloc((size_t)opt.repeat + 1);
		struct bkey k;

		random_key(&k);
		for (size_t i = 0; i <= opt.repeat; i++)
			make_initiation(&k, sec, (uint32_t)i, &m[i]);
		if (decide(m[0].b) != JIT_UNKNOWN) /* the store miss that fills the negative cache */
			die("(b): a random key is not unknown");
		run_rate("(b) unknown key again, negative cache", m + 1, opt.repeat, opt.repeat,
			 JIT_UNKNOWN, &prov.jit.negative_hits, &x_all);
		free(m);
	}
	if (wants('c')) {
		size_t n = (size_t)opt.live_keys * opt.live_rounds;
		struct msg *m = msgs_alloc(n);
		char what[64];
		int64_t t0 = now_ns();

		progress("(c): installing %u live peers (peer_install), %zu initiations", opt.live_keys,
			 n);
		for (size_t k = 0; k < opt.live_keys; k++) {
			struct store_peer sp;

			if ((ret = store_get(prov.store, live[k].pub, &sp)) || (ret = peer_install(&sp)))
				die("(c): installing a live peer: %s", strerror(-ret));
		}
		/* Round-major: each key's initiations come BENCH_LIVE_STEP_S apart. */
		for (size_t r = 0; r < opt.live_rounds; r++)
			for (size_t k = 0; k < opt.live_keys; k++)
				make_initiation(&live[k], sec + BENCH_LIVE_STEP_S * (r + 1), 0,
						&m[r * opt.live_keys + k]);
		progress("(c): ready in %.1f s", (double)(now_ns() - t0) / 1e9);
		snprintf(what, sizeof(what), "(c) already live (%u keys)", opt.live_keys);
		run_rate(what, m, n, n, JIT_LIVE, &prov.jit.already_live, &x_all);
		free(m);
	}
	if (wants('d')) {
		struct msg *m = msgs_alloc(1);
		struct bkey k;

		random_key(&k);
		make_initiation(&k, sec, 0, &m[0]);
		m[0].b[NOISE_INITIATION_LEN - 2 * NOISE_MAC_LEN] ^= 1; /* the first byte of mac1 */
		run_rate("(d) bad mac1", m, 1, opt.bad_mac1, JIT_REFUSED, &prov.jit.mac1_failures,
			 &x_all);
		free(m);
	}
	if (wants('f')) {
		struct msg *m = msgs_alloc(1);
		struct bkey k;

		random_key(&k);
		make_initiation(&k, sec, 0, &m[0]);
		if (decide(m[0].b) != JIT_UNKNOWN) /* decided once, with the X25519 */
			die("(f): a random key is not unknown");
		run_rate("(f) the same initiation again, replay cache", m, 1, opt.repeat,
			 JIT_UNKNOWN, &prov.jit.recalled_unknown, &x_all);
		free(m);
	}
	if (wants('e')) {
		row_section("initiation -> peer live (ratio: p50 / p50 of install only)");
		run_installs(ekeys, bkeys, opt.installs, sec);
	}
	{
		struct row *r;

		row_section("off the decision path, on the same event loop");
		device_key_reread();
		row_section("baseline");
		r = row_add("X25519 (crypto_scalarmult), all blocks", &x_all);
		r->rate = 1e6 / r->mean_us;
	}

	progress("removing the bench peers from %s", opt.ifname);
	device_remove(keys, n_keys);
	bench_keys_unmark(keys, n_keys);
	jit_stop();
	noise_responder_wipe(resp);
	sodium_free(resp);
	/* As the daemon stops: the thread first, then the WAL emptied by the writer. */
	ckpt_stop();
	{
		struct ckpt_mark end;
		uint64_t runs;

		ckpt_mark_now(&end);
		runs = end.runs - ck.runs;
		note("The checkpoint thread (ckpt.c; its own connection, not pinned) ran %llu "
		     "checkpoint%s in all, mean %.1f ms,\n    longest %.1f ms, %llu failed; the event "
		     "loop's share is a ckpt_kick. The WAL file, empty at the start,\n    is %.1f "
		     "MiB at the end.\n", (unsigned long long)runs, runs == 1 ? "" : "s",
		     runs ? (end.sum_s - ck.sum_s) / (double)runs * 1e3 : 0.0, end.max_s * 1e3,
		     (unsigned long long)(end.failures - ck.failures), wal_mib());
	}
	if ((ret = store_checkpoint(prov.store, true)))
		die("store_checkpoint: %s", strerror(-ret));
	store_close(prov.store);
	wgdev_close(prov.dev);

	print_table();
	printf("\n%s", notes);
	row_a = row_find("(a)");
	row_c = row_find("(c)");
	row_e = row_find("(e)");
	if (row_a || row_c) {
		bool met = (!row_a || row_a->rate >= BENCH_GOAL_RATE) &&
			   (!row_c || row_c->rate >= BENCH_GOAL_RATE);

		printf("goal >= %d decisions/s on one core (X25519-bound):", BENCH_GOAL_RATE);
		if (row_a)
			printf(" (a) %.0f/s", row_a->rate);
		if (row_c)
			printf(" (c) %.0f/s", row_c->rate);
		printf(" -> %s\n", met ? "met" : "not met");
	}
	if (row_e)
		printf("goal p99 < %d µs initiation -> live with %llu stored: (e) p99 %.0f µs -> %s\n",
		       BENCH_GOAL_P99_US, (unsigned long long)stored, row_e->p99_us,
		       row_e->p99_us < BENCH_GOAL_P99_US ? "met" : "not met");
	samples_free(&x_all);
	free(keys);
	return 0;
}
