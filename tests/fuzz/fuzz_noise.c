/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the Noise initiation decoder (provisioner/noise.c), which the
 * provisioner runs over every initiation a relay asks about or the capture sees.
 *
 * Input: the message. The responder's key is fixed: the responder of the wireguard-go vectors
 * (shared/vectors/wireguard-go-initiations.txt), whose initiations are the seeds. A 148-byte
 * input whose last byte is odd (a mac2 bit: the responder never checks mac2) first gets a
 * valid mac1 over its first 116 bytes, so mutated initiations get past mac1 about half the
 * time and reach the X25519 and AEAD code. Checked: mac1 alone, the one-call decode and the
 * two-step decode jit.c uses (with the static-static secret computed apart, and without) give
 * the same verdict; the output is written only on success, and a failed first step leaves the
 * handshake state wiped; a decoded initiation comes from the vectors' initiator, with the
 * sender index of the message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { OFF_MAC1 = 116 };

static const uint8_t responder_private[WG_KEY_LEN] = {
	0x88, 0x6b, 0x42, 0x6a, 0xb5, 0x19, 0x2a, 0xa4, 0x7d, 0x6b, 0xd8, 0x1c, 0xe1, 0xe8, 0x64,
	0x6c, 0x33, 0x54, 0x6d, 0x68, 0xa6, 0xf1, 0x67, 0xc0, 0xbe, 0x2d, 0x56, 0x6b, 0x48, 0x18,
	0x77, 0x7f,
};
static const uint8_t initiator_public[WG_KEY_LEN] = {
	0xa5, 0x0c, 0x0e, 0x53, 0xd2, 0x09, 0x2c, 0x18, 0x85, 0x5f, 0x5d, 0x66, 0xbd, 0x48, 0xe8,
	0xaa, 0x63, 0x45, 0x2d, 0xa3, 0xbf, 0x90, 0x1e, 0x28, 0xe2, 0x30, 0x8f, 0xa7, 0x1e, 0xa2,
	0x41, 0x07,
};

static struct noise_responder responder;
static EVP_MAC_CTX *mac;

static void init_once(void)
{
	size_t mac_len = NOISE_MAC_LEN;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &mac_len),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *alg = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL);

	if (!alg || !(mac = EVP_MAC_CTX_new(alg)) || !EVP_MAC_CTX_set_params(mac, params) ||
	    noise_responder_init_local(&responder, responder_private) != 0)
		abort();
	EVP_MAC_free(alg);
}

/* mac1 = MAC(HASH("mac1----" || responder public key), msg[0, 116)), as the initiator makes it. */
static void put_mac1(uint8_t *msg)
{
	size_t len = 0;

	if (EVP_MAC_init(mac, responder.mac1_key, WG_KEY_LEN, NULL) != 1 ||
	    EVP_MAC_update(mac, msg, OFF_MAC1) != 1 ||
	    EVP_MAC_final(mac, msg + OFF_MAC1, &len, NOISE_MAC_LEN) != 1 || len != NOISE_MAC_LEN)
		abort();
}

static bool is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* jit.c's way: the static key first, then the timestamp with ss given (or computed). */
static enum noise_result two_steps(const uint8_t *msg, size_t len, bool ss_apart,
				   uint8_t ts[static WG_TAI64N_LEN])
{
	struct noise_half h;
	uint8_t ss[WG_KEY_LEN];
	enum noise_result nr;

	memset(&h, 0x5a, sizeof(h));
	nr = noise_open_static(&responder, msg, len, &h);
	if (nr != NOISE_OK) {
		if (!is_zero(&h, sizeof(h)))
			abort(); /* a failed first step leaves nothing behind */
		return nr;
	}
	if (ss_apart && noise_static_secret(&responder, h.initiator_public, ss) < 0) {
		noise_half_wipe(&h);
		return NOISE_BAD_STATIC;
	}
	nr = noise_open_timestamp(&responder, &h, msg, ss_apart ? ss : NULL, ts);
	noise_half_wipe(&h);
	return nr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct noise_initiation out, untouched;
	uint8_t ts1[WG_TAI64N_LEN], ts2[WG_TAI64N_LEN], *msg;
	enum noise_result res;
	bool mac1, shaped;

	if (!mac)
		init_once();
	msg = malloc(size ? size : 1);
	if (!msg)
		abort();
	memcpy(msg, data, size);
	if (size == NOISE_INITIATION_LEN && (msg[size - 1] & 1))
		put_mac1(msg);
	shaped = size == NOISE_INITIATION_LEN && msg[0] == 1 && !msg[1] && !msg[2] && !msg[3];

	mac1 = noise_mac1_ok(&responder, msg, size);
	memset(&out, 0x5a, sizeof(out));
	memset(&untouched, 0x5a, sizeof(untouched));
	res = noise_decode_initiation(&responder, msg, size, &out);
	if ((res == NOISE_NOT_INITIATION) != !shaped ||
	    (res == NOISE_BAD_MAC1) != (shaped && !mac1))
		abort();
	if (res == NOISE_ERROR || two_steps(msg, size, true, ts1) != res ||
	    two_steps(msg, size, false, ts2) != res)
		abort();
	if (res != NOISE_OK) {
		if (memcmp(&out, &untouched, sizeof(out)) != 0)
			abort(); /* out is written only on success */
	} else {
		uint32_t sender = (uint32_t)msg[4] | (uint32_t)msg[5] << 8 |
				  (uint32_t)msg[6] << 16 | (uint32_t)msg[7] << 24;

		if (memcmp(out.initiator_public, initiator_public, WG_KEY_LEN) != 0 ||
		    out.sender_index != sender || memcmp(out.timestamp, ts1, WG_TAI64N_LEN) != 0 ||
		    memcmp(ts1, ts2, WG_TAI64N_LEN) != 0)
			abort();
	}
	free(msg);
	return 0;
}
