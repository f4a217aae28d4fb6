/* SPDX-License-Identifier: MIT */
/* The responder's half of WireGuard's first handshake message (Noise_IKpsk2, reference §2.4):
 * check mac1, recover the initiator's static public key, decrypt its TAI64N timestamp. This is
 * what lets the provisioner learn who is knocking before the kernel knows the peer. The
 * initiator's half is here too, so tests and load tools can make valid initiations.
 *
 * Primitives: BLAKE2s, keyed BLAKE2s with a 16-byte digest (mac1) and HMAC-BLAKE2s from OpenSSL
 * 3.0 (libsodium has only BLAKE2b); X25519 and ChaCha20-Poly1305 from libsodium. The OpenSSL
 * algorithms are fetched once per process and their contexts allocated once per thread and
 * reused: no EVP fetch or context per packet. (OpenSSL 3.0 still mallocs inside each HMAC and
 * digest init, ~50 small blocks per full decode; the mac1 check allocates nothing.)
 *
 * It must never do public-key work before mac1 has verified, never write *out unless the whole
 * message verified, and never leave a chaining key, shared secret or AEAD key behind: every
 * intermediate lives on the stack and is wiped at one exit, and the reused HMAC context is
 * re-keyed with zeros there (OpenSSL keeps a copy of the last HMAC key). No I/O, no logging.
 * The responder's private key is not needed here: its two X25519s (es and ss) go through the
 * responder's dh function, the privileged process in the daemon (priv.c), a key kept in the
 * responder for tests and tools (noise_responder_init_local). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "prov.h"

enum {
	HASH_LEN = 32,
	AEAD_TAG_LEN = 16,
	OFF_SENDER = 4,
	OFF_EPHEMERAL = 8,
	OFF_STATIC = 40,
	OFF_TIMESTAMP = 88,
	OFF_MAC1 = 116,
	OFF_MAC2 = 132,
	ENC_STATIC_LEN = WG_KEY_LEN + AEAD_TAG_LEN,
	ENC_TIMESTAMP_LEN = WG_TAI64N_LEN + AEAD_TAG_LEN,
};

_Static_assert(OFF_STATIC == OFF_EPHEMERAL + WG_KEY_LEN, "wire layout");
_Static_assert(OFF_TIMESTAMP == OFF_STATIC + ENC_STATIC_LEN, "wire layout");
_Static_assert(OFF_MAC1 == OFF_TIMESTAMP + ENC_TIMESTAMP_LEN, "wire layout");
_Static_assert(OFF_MAC2 == OFF_MAC1 + NOISE_MAC_LEN, "wire layout");
_Static_assert(NOISE_INITIATION_LEN == OFF_MAC2 + NOISE_MAC_LEN, "wire layout");

/* C0 = HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), H0 = HASH(C0 || "WireGuard v1 zx2c4
 * Jason@zx2c4.com"), no NUL hashed; the unit test recomputes both from the strings. */
static const uint8_t noise_c0[HASH_LEN] = {
	0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0,
	0x2e, 0xc3, 0x35, 0xe2, 0xa0, 0x25, 0xd2, 0xd0,
	0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72, 0x77, 0xf5,
	0x2d, 0x38, 0xd1, 0x98, 0x8b, 0x78, 0xcd, 0x36,
};
static const uint8_t noise_h0[HASH_LEN] = {
	0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66,
	0x69, 0x12, 0x43, 0xdb, 0x45, 0x8a, 0xd5, 0x32,
	0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93, 0xe8, 0xb7,
	0x0e, 0xe1, 0x9c, 0x65, 0xba, 0x07, 0x9e, 0xf3,
};
static const char label_mac1[] = "mac1----";
/* Every handshake AEAD uses counter 0: an all-zero IETF nonce. */
static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

/* Per-thread OpenSSL contexts, reused for every call on that thread (contexts are not
 * thread-safe; the fetched algorithms are). Freed by the key's destructor when a thread exits;
 * the main thread's stay for the life of the process. */
struct noise_crypto {
	EVP_MD_CTX *hash;
	EVP_MAC_CTX *hmac;
	EVP_MAC_CTX *mac;
};

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static bool algs_ok;
static EVP_MD *alg_blake2s;
static EVP_MAC *alg_hmac, *alg_blake2smac;
static pthread_key_t crypto_key;
static __thread struct noise_crypto *crypto_tls;

static void crypto_free(void *arg)
{
	struct noise_crypto *c = arg;

	if (!c)
		return;
	EVP_MD_CTX_free(c->hash);
	EVP_MAC_CTX_free(c->hmac);
	EVP_MAC_CTX_free(c->mac);
	free(c);
}

static void algs_fetch(void)
{
	if (sodium_init() < 0) /* picks the fast X25519/ChaCha20 code; idempotent */
		return;
	alg_blake2s = EVP_MD_fetch(NULL, "BLAKE2S-256", NULL);
	alg_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	alg_blake2smac = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL);
	algs_ok = alg_blake2s && alg_hmac && alg_blake2smac &&
		  pthread_key_create(&crypto_key, crypto_free) == 0;
}

static struct noise_crypto *crypto_get(void)
{
	struct noise_crypto *c = crypto_tls;
	char digest[] = "BLAKE2S-256";
	size_t mac_len = NOISE_MAC_LEN;
	OSSL_PARAM hmac_params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	OSSL_PARAM mac_params[] = {
		OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &mac_len),
		OSSL_PARAM_construct_end(),
	};

	if (c)
		return c;
	if (pthread_once(&algs_once, algs_fetch) != 0 || !algs_ok)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->hash = EVP_MD_CTX_new();
	c->hmac = EVP_MAC_CTX_new(alg_hmac);
	c->mac = EVP_MAC_CTX_new(alg_blake2smac);
	if (!c->hash || !c->hmac || !c->mac || !EVP_MAC_CTX_set_params(c->hmac, hmac_params) ||
	    !EVP_MAC_CTX_set_params(c->mac, mac_params) ||
	    pthread_setspecific(crypto_key, c) != 0) {
		crypto_free(c);
		return NULL;
	}
	crypto_tls = c;
	return c;
}

/* HASH(a || b) */
static bool hash2(struct noise_crypto *c, uint8_t out[static HASH_LEN], const void *a,
		  size_t a_len, const void *b, size_t b_len)
{
	unsigned int len = 0;

	return EVP_DigestInit_ex2(c->hash, alg_blake2s, NULL) == 1 &&
	       EVP_DigestUpdate(c->hash, a, a_len) == 1 &&
	       EVP_DigestUpdate(c->hash, b, b_len) == 1 &&
	       EVP_DigestFinal_ex(c->hash, out, &len) == 1 && len == HASH_LEN;
}

/* HMAC-BLAKE2s(key, a || b) */
static bool hmac2(struct noise_crypto *c, uint8_t out[static HASH_LEN],
		  const uint8_t key[static HASH_LEN], const void *a, size_t a_len, const void *b,
		  size_t b_len)
{
	size_t len = 0;

	return EVP_MAC_init(c->hmac, key, HASH_LEN, NULL) == 1 &&
	       EVP_MAC_update(c->hmac, a, a_len) == 1 && EVP_MAC_update(c->hmac, b, b_len) == 1 &&
	       EVP_MAC_final(c->hmac, out, &len, HASH_LEN) == 1 && len == HASH_LEN;
}

/* Leave no key-derived state in the reused HMAC context. */
static void hmac_scrub(struct noise_crypto *c)
{
	static const uint8_t zero_key[HASH_LEN];

	(void)EVP_MAC_init(c->hmac, zero_key, sizeof(zero_key), NULL);
}

/* KDF1 (t2 == NULL) or KDF2 of the reference §2.3. t1 may alias ck. */
static bool kdf(struct noise_crypto *c, uint8_t t1[static HASH_LEN], uint8_t *t2,
		const uint8_t ck[static HASH_LEN], const uint8_t *x, size_t x_len)
{
	static const uint8_t one = 1, two = 2;
	uint8_t t0[HASH_LEN];
	bool ok;

	ok = hmac2(c, t0, ck, x, x_len, NULL, 0) && hmac2(c, t1, t0, &one, 1, NULL, 0) &&
	     (!t2 || hmac2(c, t2, t0, t1, HASH_LEN, &two, 1));
	sodium_memzero(t0, sizeof(t0));
	return ok;
}

/* MAC(key, msg[0, 116)): keyed BLAKE2s with a 16-byte digest, not a truncated 32-byte one. */
static bool mac1_compute(struct noise_crypto *c, uint8_t out[static NOISE_MAC_LEN],
			 const uint8_t key[static WG_KEY_LEN], const uint8_t *msg)
{
	size_t len = 0;

	return EVP_MAC_init(c->mac, key, WG_KEY_LEN, NULL) == 1 &&
	       EVP_MAC_update(c->mac, msg, OFF_MAC1) == 1 &&
	       EVP_MAC_final(c->mac, out, &len, NOISE_MAC_LEN) == 1 && len == NOISE_MAC_LEN;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool is_initiation(const uint8_t *msg, size_t len)
{
	return len == NOISE_INITIATION_LEN && msg[0] == 1 && msg[1] == 0 && msg[2] == 0 &&
	       msg[3] == 0;
}

/* Hr and Kmac1 for a responder public key. */
static bool responder_hashes(struct noise_crypto *c, const uint8_t pub[static WG_KEY_LEN],
			     uint8_t hash0[static HASH_LEN], uint8_t mac1_key[static HASH_LEN])
{
	return hash2(c, hash0, noise_h0, HASH_LEN, pub, WG_KEY_LEN) &&
	       hash2(c, mac1_key, label_mac1, sizeof(label_mac1) - 1, pub, WG_KEY_LEN);
}

int noise_responder_init(struct noise_responder *r, const uint8_t public_key[static WG_KEY_LEN],
			 noise_dh_fn dh, void *dh_arg)
{
	struct noise_crypto *c = crypto_get();

	memset(r, 0, sizeof(*r));
	if (!c)
		return -EIO;
	if (sodium_is_zero(public_key, WG_KEY_LEN))
		return -EINVAL;
	memcpy(r->public_key, public_key, WG_KEY_LEN);
	r->dh = dh;
	r->dh_arg = dh_arg;
	if (!responder_hashes(c, r->public_key, r->hash0, r->mac1_key)) {
		noise_responder_wipe(r);
		return -EIO;
	}
	return 0;
}

int noise_dh_local(void *arg, uint8_t out[static WG_KEY_LEN], const uint8_t pub[static WG_KEY_LEN])
{
	/* libsodium refuses an all-zero result (a low-order pub), as the kernel does. */
	return crypto_scalarmult(out, arg, pub) == 0 ? 0 : -EINVAL;
}

int noise_responder_init_local(struct noise_responder *r,
			       const uint8_t private_key[static WG_KEY_LEN])
{
	uint8_t pub[WG_KEY_LEN];
	int ret;

	/* X25519 clamps, so any non-zero 32 bytes is a key; all-zero is wg(8)'s "no key". */
	if (sodium_is_zero(private_key, WG_KEY_LEN)) {
		memset(r, 0, sizeof(*r));
		return -EINVAL;
	}
	if (crypto_scalarmult_base(pub, private_key) != 0) {
		memset(r, 0, sizeof(*r));
		return -EIO;
	}
	ret = noise_responder_init(r, pub, noise_dh_local, NULL);
	if (ret < 0)
		return ret;
	memcpy(r->local_key, private_key, WG_KEY_LEN);
	r->dh_arg = r->local_key;
	return 0;
}

void noise_responder_wipe(struct noise_responder *r)
{
	sodium_memzero(r, sizeof(*r));
}

bool noise_mac1_ok(const struct noise_responder *r, const uint8_t *msg, size_t len)
{
	struct noise_crypto *c;
	uint8_t mac[NOISE_MAC_LEN];

	if (!is_initiation(msg, len) || !(c = crypto_get()))
		return false;
	return mac1_compute(c, mac, r->mac1_key, msg) &&
	       sodium_memcmp(mac, msg + OFF_MAC1, NOISE_MAC_LEN) == 0;
}

enum noise_result noise_open_static(const struct noise_responder *r, const uint8_t *msg,
				    size_t len, struct noise_half *h)
{
	const uint8_t *eph = msg + OFF_EPHEMERAL;
	uint8_t key[HASH_LEN], dh[WG_KEY_LEN], mac[NOISE_MAC_LEN];
	enum noise_result ret = NOISE_ERROR;
	struct noise_crypto *c;
	int dh_ret;

	memset(h, 0, sizeof(*h));
	if (!is_initiation(msg, len))
		return NOISE_NOT_INITIATION;
	c = crypto_get();
	if (!c)
		return NOISE_ERROR;
	if (!mac1_compute(c, mac, r->mac1_key, msg))
		return NOISE_ERROR;
	if (sodium_memcmp(mac, msg + OFF_MAC1, NOISE_MAC_LEN) != 0)
		return NOISE_BAD_MAC1;

	/* e: MixHash(e), and psk mode's MixKey(e) */
	if (!hash2(c, h->hash, r->hash0, HASH_LEN, eph, WG_KEY_LEN) ||
	    !kdf(c, h->chain, NULL, noise_c0, eph, WG_KEY_LEN))
		goto out;
	/* es; a low-order ephemeral gives an all-zero secret and is refused as the kernel does */
	dh_ret = r->dh(r->dh_arg, dh, eph);
	if (dh_ret < 0) {
		ret = dh_ret == -EINVAL ? NOISE_BAD_STATIC : NOISE_ERROR;
		goto out;
	}
	if (!kdf(c, h->chain, key, h->chain, dh, sizeof(dh)))
		goto out;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(h->initiator_public, NULL, NULL,
						      msg + OFF_STATIC, ENC_STATIC_LEN, h->hash,
						      HASH_LEN, zero_nonce, key) != 0) {
		ret = NOISE_BAD_STATIC;
		goto out;
	}
	if (!hash2(c, h->hash, h->hash, HASH_LEN, msg + OFF_STATIC, ENC_STATIC_LEN))
		goto out;
	h->sender_index = le32(msg + OFF_SENDER);
	ret = NOISE_OK;
out:
	hmac_scrub(c);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(dh, sizeof(dh));
	if (ret != NOISE_OK)
		noise_half_wipe(h);
	return ret;
}

int noise_static_secret(const struct noise_responder *r,
			const uint8_t initiator_public[static WG_KEY_LEN],
			uint8_t ss[static WG_KEY_LEN])
{
	/* A low-order initiator key gives an all-zero secret: no usable key (-EINVAL). */
	return r->dh(r->dh_arg, ss, initiator_public);
}

enum noise_result noise_open_timestamp(const struct noise_responder *r, struct noise_half *h,
				       const uint8_t *msg, const uint8_t *ss,
				       uint8_t ts[static WG_TAI64N_LEN])
{
	uint8_t key[HASH_LEN], dh[WG_KEY_LEN];
	enum noise_result ret = NOISE_ERROR;
	struct noise_crypto *c = crypto_get();

	if (!c)
		return NOISE_ERROR;
	if (ss) {
		memcpy(dh, ss, WG_KEY_LEN);
	} else {
		int dh_ret = noise_static_secret(r, h->initiator_public, dh);

		if (dh_ret < 0) {
			ret = dh_ret == -EINVAL ? NOISE_BAD_STATIC : NOISE_ERROR;
			goto out;
		}
	}
	if (!kdf(c, h->chain, key, h->chain, dh, sizeof(dh)))
		goto out;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(ts, NULL, NULL, msg + OFF_TIMESTAMP,
						      ENC_TIMESTAMP_LEN, h->hash, HASH_LEN,
						      zero_nonce, key) != 0) {
		ret = NOISE_BAD_TIMESTAMP;
		goto out;
	}
	/* The final MixHash(encrypted timestamp) only matters to whoever sends the response. */
	ret = NOISE_OK;
out:
	hmac_scrub(c);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(dh, sizeof(dh));
	return ret;
}

void noise_half_wipe(struct noise_half *h)
{
	sodium_memzero(h, sizeof(*h));
}

enum noise_result noise_decode_initiation(const struct noise_responder *r, const uint8_t *msg,
					  size_t len, struct noise_initiation *out)
{
	struct noise_half h;
	uint8_t ts[WG_TAI64N_LEN];
	enum noise_result ret = noise_open_static(r, msg, len, &h);

	if (ret == NOISE_OK)
		ret = noise_open_timestamp(r, &h, msg, NULL, ts);
	if (ret == NOISE_OK) {
		out->sender_index = h.sender_index;
		memcpy(out->initiator_public, h.initiator_public, WG_KEY_LEN);
		memcpy(out->timestamp, ts, WG_TAI64N_LEN);
	}
	noise_half_wipe(&h);
	sodium_memzero(ts, sizeof(ts));
	return ret;
}

int noise_create_initiation(const uint8_t initiator_private[static WG_KEY_LEN],
			    const uint8_t responder_public[static WG_KEY_LEN],
			    const uint8_t timestamp[static WG_TAI64N_LEN], uint32_t sender_index,
			    uint8_t out[static NOISE_INITIATION_LEN])
{
	uint8_t chain[HASH_LEN], hash[HASH_LEN], key[HASH_LEN], dh[WG_KEY_LEN];
	uint8_t eph_private[WG_KEY_LEN], initiator_public[WG_KEY_LEN], mac1_key[HASH_LEN];
	uint8_t *eph = out + OFF_EPHEMERAL;
	struct noise_crypto *c = crypto_get();
	int ret = -EIO;

	memset(out, 0, NOISE_INITIATION_LEN);
	if (!c)
		return -EIO;
	randombytes_buf(eph_private, sizeof(eph_private));
	eph_private[0] &= 248;
	eph_private[31] = (eph_private[31] & 127) | 64;

	out[0] = 1;
	out[OFF_SENDER] = sender_index & 0xff;
	out[OFF_SENDER + 1] = sender_index >> 8 & 0xff;
	out[OFF_SENDER + 2] = sender_index >> 16 & 0xff;
	out[OFF_SENDER + 3] = sender_index >> 24;
	if (crypto_scalarmult_base(initiator_public, initiator_private) != 0 ||
	    crypto_scalarmult_base(eph, eph_private) != 0 ||
	    !responder_hashes(c, responder_public, hash, mac1_key))
		goto out;
	if (!hash2(c, hash, hash, HASH_LEN, eph, WG_KEY_LEN) ||
	    !kdf(c, chain, NULL, noise_c0, eph, WG_KEY_LEN))
		goto out;
	if (crypto_scalarmult(dh, eph_private, responder_public) != 0) {
		ret = -EINVAL; /* low-order responder key */
		goto out;
	}
	if (!kdf(c, chain, key, chain, dh, sizeof(dh)))
		goto out;
	crypto_aead_chacha20poly1305_ietf_encrypt(out + OFF_STATIC, NULL, initiator_public,
						  WG_KEY_LEN, hash, HASH_LEN, NULL, zero_nonce,
						  key);
	if (!hash2(c, hash, hash, HASH_LEN, out + OFF_STATIC, ENC_STATIC_LEN))
		goto out;
	if (crypto_scalarmult(dh, initiator_private, responder_public) != 0) {
		ret = -EINVAL;
		goto out;
	}
	if (!kdf(c, chain, key, chain, dh, sizeof(dh)))
		goto out;
	crypto_aead_chacha20poly1305_ietf_encrypt(out + OFF_TIMESTAMP, NULL, timestamp,
						  WG_TAI64N_LEN, hash, HASH_LEN, NULL, zero_nonce,
						  key);
	if (!mac1_compute(c, out + OFF_MAC1, mac1_key, out))
		goto out;
	ret = 0; /* mac2 stays zero: no cookie */
out:
	hmac_scrub(c);
	if (ret)
		memset(out, 0, NOISE_INITIATION_LEN);
	sodium_memzero(chain, sizeof(chain));
	sodium_memzero(key, sizeof(key));
	sodium_memzero(dh, sizeof(dh));
	sodium_memzero(eph_private, sizeof(eph_private));
	sodium_memzero(hash, sizeof(hash));
	return ret;
}

/* Not coarsened to 2^24 ns as the kernel and wireguard-go do: a load tool may send several
 * initiations for one key within 16.7 ms and wants them all to be newer. */
void noise_tai64n_now(uint8_t out[static WG_TAI64N_LEN])
{
	struct timespec now;
	uint64_t sec;
	uint32_t nsec;

	clock_gettime(CLOCK_REALTIME, &now);
	sec = 0x400000000000000aULL + (uint64_t)now.tv_sec;
	nsec = (uint32_t)now.tv_nsec;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(sec >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}
