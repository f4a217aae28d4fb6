/* SPDX-License-Identifier: MIT */
/* jit-initgen: client keys and valid WireGuard handshake initiations for the JIT tests, made
 * with the provisioner's own primitives (libsodium X25519 for the key pairs,
 * noise_create_initiation for the message), and the responder's check of them
 * (noise_decode_initiation). A test feeds the initiations to wgws-relay with jitload.py or
 * wsraw.py; nothing here does I/O beyond stdin/stdout.
 *
 *   jit-initgen keys N
 *       N fresh key pairs, one per line: "PRIVATE_B64 PUBLIC_B64" (wg(8)'s base64).
 *   jit-initgen init RESPONDER_PUBLIC_B64 [--ts-offset SECONDS] [--count K]
 *       For each key line on stdin ("PRIVATE_B64 ..."; more fields and '#' lines ignored):
 *       K (1) lines "PUBLIC_B64 INITIATION_HEX", each a 148-byte initiation to the responder
 *       with a random sender index, mac2 zero, and the TAI64N of now (+ SECONDS, which may be
 *       negative or fractional). Timestamps are strictly increasing within one run (a
 *       nanosecond is added when the clock has not moved), and a later run reads a later
 *       clock: a key's newest initiation is always the last one printed.
 *   jit-initgen check RESPONDER_PRIVATE_B64
 *       The responder's view of "PUBLIC_B64 INITIATION_HEX" lines on stdin: decodes each with
 *       noise_decode_initiation and prints "ok PUBLIC_B64 TAI64N_HEX SENDER_INDEX" or
 *       "bad PUBLIC_B64 REASON". Exit 0 only when every line decoded to the key it names and
 *       each key's timestamps strictly increase from line to line.
 *   jit-initgen selftest [N]
 *       N (100) keys through init and check in memory, plus a flipped bit in every field
 *       (mac1, ephemeral, static, timestamp): all refused at the right step. Exit 0 or 1.
 *
 * Exit status: 0 on success, 1 on a failed check, 2 on a usage or input error. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"

enum {
	INITGEN_LINE_MAX = 1024,
	INITGEN_MAX_COUNT = 1000000,
	INITGEN_TRACKED_KEYS = 65536, /* check: per-key timestamp order for this many keys */
};

/* Byte offsets in an initiation (WireGuard's wire layout), for the self-test's bit flips. */
enum {
	OFF_EPHEMERAL = 8,
	OFF_STATIC = 40,
	OFF_TIMESTAMP = 88,
	OFF_MAC1 = 116,
};

static void __attribute__((noreturn)) usage(FILE *f, int status)
{
	fputs("usage: jit-initgen keys N\n"
	      "       jit-initgen init RESPONDER_PUBLIC_B64 [--ts-offset SECONDS] [--count K]\n"
	      "           stdin \"PRIVATE_B64 ...\", stdout \"PUBLIC_B64 INITIATION_HEX\"\n"
	      "       jit-initgen check RESPONDER_PRIVATE_B64\n"
	      "           stdin \"PUBLIC_B64 INITIATION_HEX\", stdout \"ok|bad PUBLIC_B64 ...\"\n"
	      "       jit-initgen selftest [N]\n"
	      "Keys and valid handshake initiations for the wgws JIT tests (see the source's\n"
	      "header comment for the details). Timestamps strictly increase within a run.\n",
	      f);
	exit(status);
}

static void __attribute__((format(printf, 1, 2), noreturn)) die(const char *fmt, ...)
{
	va_list ap;

	fputs("jit-initgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static unsigned long parse_count(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		die("'%s' is not a count in range", s);
	return v;
}

static void parse_key(const char *s, uint8_t key[static WG_KEY_LEN])
{
	if (key_from_base64(s, key) < 0)
		die("'%s' is not a base64 key", s);
}

static void keypair(uint8_t priv[static WG_KEY_LEN], uint8_t pub[static WG_KEY_LEN])
{
	randombytes_buf(priv, WG_KEY_LEN);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	if (crypto_scalarmult_base(pub, priv) != 0)
		die("crypto_scalarmult_base failed");
}

/* ---- TAI64N arithmetic: 8 bytes of seconds, 4 of nanoseconds, big-endian ---- */

static void ts_split(const uint8_t ts[static WG_TAI64N_LEN], uint64_t *sec, uint32_t *nsec)
{
	*sec = 0;
	*nsec = 0;
	for (int i = 0; i < 8; i++)
		*sec = *sec << 8 | ts[i];
	for (int i = 8; i < 12; i++)
		*nsec = *nsec << 8 | ts[i];
}

static void ts_join(uint8_t ts[static WG_TAI64N_LEN], uint64_t sec, uint32_t nsec)
{
	for (int i = 0; i < 8; i++)
		ts[i] = (uint8_t)(sec >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		ts[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

/* ts += offset_ns (either sign). */
static void ts_add(uint8_t ts[static WG_TAI64N_LEN], int64_t offset_ns)
{
	uint64_t sec;
	uint32_t nsec;
	int64_t n;

	ts_split(ts, &sec, &nsec);
	n = (int64_t)nsec + offset_ns % 1000000000;
	sec += (uint64_t)(offset_ns / 1000000000);
	if (n < 0) {
		n += 1000000000;
		sec--;
	} else if (n >= 1000000000) {
		n -= 1000000000;
		sec++;
	}
	ts_join(ts, sec, (uint32_t)n);
}

/* Now (+ offset), strictly after *last (which it updates). */
static void ts_next(uint8_t ts[static WG_TAI64N_LEN], int64_t offset_ns,
		    uint8_t last[static WG_TAI64N_LEN])
{
	noise_tai64n_now(ts);
	ts_add(ts, offset_ns);
	if (memcmp(ts, last, WG_TAI64N_LEN) <= 0) {
		memcpy(ts, last, WG_TAI64N_LEN);
		ts_add(ts, 1);
	}
	memcpy(last, ts, WG_TAI64N_LEN);
}

static void print_hex(const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		putchar(digits[p[i] >> 4]);
		putchar(digits[p[i] & 15]);
	}
}

/* The first whitespace-separated word of line into word (NUL-terminated), the rest after it.
 * Returns NULL for an empty or comment line. */
static char *first_word(char *line, char **rest)
{
	char *w = line + strspn(line, " \t\r\n");

	if (!*w || *w == '#')
		return NULL;
	*rest = w + strcspn(w, " \t\r\n");
	if (**rest) {
		**rest = '\0';
		(*rest)++;
	}
	return w;
}

static int cmd_keys(int argc, char **argv)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	char b64_priv[WG_KEY_B64_LEN + 1], b64_pub[WG_KEY_B64_LEN + 1];
	unsigned long n;

	if (argc != 2)
		usage(stderr, 2);
	n = parse_count(argv[1], INITGEN_MAX_COUNT);
	for (unsigned long i = 0; i < n; i++) {
		keypair(priv, pub);
		key_to_base64(priv, b64_priv);
		key_to_base64(pub, b64_pub);
		printf("%s %s\n", b64_priv, b64_pub);
	}
	sodium_memzero(priv, sizeof(priv));
	sodium_memzero(b64_priv, sizeof(b64_priv));
	return fflush(stdout) == 0 ? 0 : 2;
}

static int cmd_init(int argc, char **argv)
{
	uint8_t responder[WG_KEY_LEN], priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	uint8_t ts[WG_TAI64N_LEN], last[WG_TAI64N_LEN] = { 0 }, msg[NOISE_INITIATION_LEN];
	char line[INITGEN_LINE_MAX], b64_pub[WG_KEY_B64_LEN + 1], *word, *rest, *end;
	unsigned long count = 1;
	int64_t offset_ns = 0;
	double offset;
	int ret;

	if (argc < 2)
		usage(stderr, 2);
	parse_key(argv[1], responder);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--ts-offset") && i + 1 < argc) {
			offset = strtod(argv[++i], &end);
			if (end == argv[i] || *end || offset < -1e9 || offset > 1e9)
				die("--ts-offset: '%s' is not a number of seconds", argv[i]);
			offset_ns = (int64_t)(offset * 1e9);
		} else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
			count = parse_count(argv[++i], INITGEN_MAX_COUNT);
		} else {
			usage(stderr, 2);
		}
	}
	while (fgets(line, sizeof(line), stdin)) {
		word = first_word(line, &rest);
		if (!word)
			continue;
		parse_key(word, priv);
		if (crypto_scalarmult_base(pub, priv) != 0)
			die("crypto_scalarmult_base failed");
		key_to_base64(pub, b64_pub);
		for (unsigned long i = 0; i < count; i++) {
			ts_next(ts, offset_ns, last);
			ret = noise_create_initiation(priv, responder, ts, randombytes_random(),
						      msg);
			if (ret < 0)
				die("noise_create_initiation: %s", strerror(-ret));
			printf("%s ", b64_pub);
			print_hex(msg, sizeof(msg));
			putchar('\n');
		}
	}
	sodium_memzero(priv, sizeof(priv));
	sodium_memzero(line, sizeof(line));
	return fflush(stdout) == 0 && !ferror(stdin) ? 0 : 2;
}

static const char *result_name(enum noise_result r)
{
	switch (r) {
	case NOISE_OK: return "ok";
	case NOISE_NOT_INITIATION: return "not_initiation";
	case NOISE_BAD_MAC1: return "bad_mac1";
	case NOISE_BAD_STATIC: return "bad_static";
	case NOISE_BAD_TIMESTAMP: return "bad_timestamp";
	case NOISE_ERROR: return "error";
	}
	return "invalid";
}

/* Per-key last timestamp for check's ordering test: an open-addressed table. */
struct seen {
	uint8_t key[WG_KEY_LEN];
	uint8_t ts[WG_TAI64N_LEN];
	bool used;
};

static struct seen *seen_slot(struct seen *tab, const uint8_t key[static WG_KEY_LEN])
{
	uint32_t h;

	memcpy(&h, key, sizeof(h)); /* public keys are uniformly distributed */
	for (unsigned i = 0; i < INITGEN_TRACKED_KEYS; i++) {
		struct seen *s = &tab[(h + i) % INITGEN_TRACKED_KEYS];

		if (!s->used || !memcmp(s->key, key, WG_KEY_LEN))
			return s;
	}
	return NULL;
}

static int cmd_check(int argc, char **argv)
{
	uint8_t priv[WG_KEY_LEN], want[WG_KEY_LEN], msg[NOISE_INITIATION_LEN];
	char line[INITGEN_LINE_MAX], *word, *hex, *rest;
	struct noise_responder r;
	struct noise_initiation in;
	enum noise_result res;
	unsigned long n = 0, bad = 0;
	struct seen *tab, *s;
	size_t len;

	if (argc != 2)
		usage(stderr, 2);
	parse_key(argv[1], priv);
	if (noise_responder_init_local(&r, priv) < 0)
		die("noise_responder_init failed");
	sodium_memzero(priv, sizeof(priv));
	tab = calloc(INITGEN_TRACKED_KEYS, sizeof(*tab));
	if (!tab)
		die("out of memory");
	while (fgets(line, sizeof(line), stdin)) {
		word = first_word(line, &rest);
		if (!word)
			continue;
		parse_key(word, want);
		hex = first_word(rest, &rest);
		if (!hex || sodium_hex2bin(msg, sizeof(msg), hex, strlen(hex), NULL, &len, NULL) ||
		    len != sizeof(msg))
			die("%s: expected 148 bytes of hex after the key", word);
		n++;
		res = noise_decode_initiation(&r, msg, len, &in);
		if (res != NOISE_OK) {
			printf("bad %s %s\n", word, result_name(res));
			bad++;
			continue;
		}
		if (memcmp(in.initiator_public, want, WG_KEY_LEN)) {
			printf("bad %s other_key\n", word);
			bad++;
			continue;
		}
		s = seen_slot(tab, want);
		if (s && s->used && memcmp(in.timestamp, s->ts, WG_TAI64N_LEN) <= 0) {
			printf("bad %s timestamp_not_newer\n", word);
			bad++;
			continue;
		}
		if (s) {
			s->used = true;
			memcpy(s->key, want, WG_KEY_LEN);
			memcpy(s->ts, in.timestamp, WG_TAI64N_LEN);
		}
		printf("ok %s ", word);
		print_hex(in.timestamp, WG_TAI64N_LEN);
		printf(" %" PRIu32 "\n", in.sender_index);
	}
	free(tab);
	noise_responder_wipe(&r);
	fprintf(stderr, "jit-initgen check: %lu initiations, %lu bad\n", n, bad);
	if (fflush(stdout) != 0 || ferror(stdin))
		return 2;
	return bad || !n ? 1 : 0;
}

/* mac1 = keyed BLAKE2s-128 of msg[0, 116) under the responder's mac1 key, as a sender puts
 * it: lets the self-test reach the steps after mac1 with a tampered message. */
static bool mac1_set(const struct noise_responder *r, uint8_t msg[static NOISE_INITIATION_LEN])
{
	size_t mac_len = NOISE_MAC_LEN, len = 0;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &mac_len),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *alg = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL);
	EVP_MAC_CTX *ctx = alg ? EVP_MAC_CTX_new(alg) : NULL;
	bool ok = ctx && EVP_MAC_init(ctx, r->mac1_key, WG_KEY_LEN, params) == 1 &&
		  EVP_MAC_update(ctx, msg, OFF_MAC1) == 1 &&
		  EVP_MAC_final(ctx, msg + OFF_MAC1, &len, NOISE_MAC_LEN) == 1 &&
		  len == NOISE_MAC_LEN;

	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(alg);
	return ok;
}

/* msg with one bit flipped at off (and mac1 made valid again when remac) must be refused
 * with want. */
static bool flip_refused(const struct noise_responder *r,
			 const uint8_t msg[static NOISE_INITIATION_LEN], size_t off, bool remac,
			 enum noise_result want)
{
	uint8_t m[NOISE_INITIATION_LEN];
	struct noise_initiation in;
	enum noise_result got;

	memcpy(m, msg, sizeof(m));
	m[off] ^= 0x10;
	if (remac && !mac1_set(r, m))
		die("BLAKE2SMAC failed");
	got = noise_decode_initiation(r, m, sizeof(m), &in);
	if (got != want)
		fprintf(stderr, "selftest: bit flipped at %zu%s: %s, expected %s\n", off,
			remac ? " (mac1 redone)" : "", result_name(got), result_name(want));
	return got == want;
}

static int cmd_selftest(int argc, char **argv)
{
	uint8_t rpriv[WG_KEY_LEN], rpub[WG_KEY_LEN], priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	uint8_t ts[WG_TAI64N_LEN], last[WG_TAI64N_LEN] = { 0 }, prev[WG_TAI64N_LEN] = { 0 };
	uint8_t msg[NOISE_INITIATION_LEN];
	struct noise_responder r;
	struct noise_initiation in;
	unsigned long n = 100, failed = 0;
	uint32_t sender;
	int ret;

	if (argc > 2)
		usage(stderr, 2);
	if (argc == 2)
		n = parse_count(argv[1], INITGEN_MAX_COUNT);
	keypair(rpriv, rpub);
	if (noise_responder_init_local(&r, rpriv) < 0 || memcmp(r.public_key, rpub, WG_KEY_LEN))
		die("noise_responder_init failed");
	for (unsigned long i = 0; i < n; i++) {
		keypair(priv, pub);
		/* Every third key gets a second initiation: the later one must be newer. */
		for (int k = 0; k < 1 + (i % 3 == 0); k++) {
			ts_next(ts, k ? 0 : -1000000000LL * (int64_t)(i % 5), last);
			sender = randombytes_random();
			ret = noise_create_initiation(priv, rpub, ts, sender, msg);
			if (ret < 0 ||
			    noise_decode_initiation(&r, msg, sizeof(msg), &in) != NOISE_OK ||
			    memcmp(in.initiator_public, pub, WG_KEY_LEN) ||
			    memcmp(in.timestamp, ts, WG_TAI64N_LEN) || in.sender_index != sender ||
			    (k && memcmp(in.timestamp, prev, WG_TAI64N_LEN) <= 0)) {
				fprintf(stderr, "selftest: key %lu initiation %d does not decode "
					"as made\n", i, k);
				failed++;
			}
			memcpy(prev, ts, WG_TAI64N_LEN);
		}
		if (i < 8) {
			/* mac1 covers every byte before it; with mac1 redone, each field fails
			 * at the step that uses it. */
			failed += !flip_refused(&r, msg, 0, false, NOISE_NOT_INITIATION);
			failed += !flip_refused(&r, msg, OFF_MAC1 + i, false, NOISE_BAD_MAC1);
			failed += !flip_refused(&r, msg, OFF_EPHEMERAL + i, false, NOISE_BAD_MAC1);
			failed += !flip_refused(&r, msg, OFF_TIMESTAMP + i, false, NOISE_BAD_MAC1);
			failed += !flip_refused(&r, msg, OFF_EPHEMERAL + 4 * i, true,
						NOISE_BAD_STATIC);
			failed += !flip_refused(&r, msg, OFF_STATIC + 6 * i, true,
						NOISE_BAD_STATIC);
			failed += !flip_refused(&r, msg, OFF_TIMESTAMP + 3 * i, true,
						NOISE_BAD_TIMESTAMP);
		}
	}
	/* Another gateway's key: not for it (mac1). */
	{
		uint8_t opriv[WG_KEY_LEN], opub[WG_KEY_LEN];
		struct noise_responder other;

		keypair(opriv, opub);
		if (noise_responder_init_local(&other, opriv) < 0)
			die("noise_responder_init failed");
		if (noise_decode_initiation(&other, msg, sizeof(msg), &in) != NOISE_BAD_MAC1) {
			fprintf(stderr, "selftest: another responder accepted the initiation\n");
			failed++;
		}
		noise_responder_wipe(&other);
		sodium_memzero(opriv, sizeof(opriv));
	}
	noise_responder_wipe(&r);
	sodium_memzero(rpriv, sizeof(rpriv));
	sodium_memzero(priv, sizeof(priv));
	printf("selftest: %lu keys, %lu failures\n", n, failed);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		die("sodium_init failed");
	if (argc < 2)
		usage(stderr, 2);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		usage(stdout, 0);
	if (!strcmp(argv[1], "keys"))
		return cmd_keys(argc - 1, argv + 1);
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "selftest"))
		return cmd_selftest(argc - 1, argv + 1);
	usage(stderr, 2);
}
