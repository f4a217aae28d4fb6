/* SPDX-License-Identifier: MIT */
/* WireGuard keys as text: standard base64 (what wg(8) prints and wg-quick reads) and URL-safe
 * base64 (what goes in API paths). libsodium does the decoding, constant-time. And which
 * public keys a peer may not have: only canonical u-coordinates of points that are not of
 * small order, and never the device's own key. */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "prov.h"

int key_from_base64(const char *s, uint8_t key[static WG_KEY_LEN])
{
	static const int variants[] = {
		sodium_base64_VARIANT_ORIGINAL,
		sodium_base64_VARIANT_URLSAFE,
		sodium_base64_VARIANT_URLSAFE_NO_PADDING,
	};
	size_t len = strlen(s), bin_len;
	const char *end;

	if (len != WG_KEY_B64_LEN && len != WG_KEY_B64_LEN - 1)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		if (sodium_base642bin(key, WG_KEY_LEN, s, len, NULL, &bin_len, &end, variants[i]) == 0 &&
		    bin_len == WG_KEY_LEN && end == s + len)
			return 0;
	}
	return -EINVAL;
}

void key_to_base64(const uint8_t key[static WG_KEY_LEN], char out[static WG_KEY_B64_LEN + 1])
{
	sodium_bin2base64(out, WG_KEY_B64_LEN + 1, key, WG_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

void key_to_base64url(const uint8_t key[static WG_KEY_LEN], char out[static WG_KEY_B64_LEN + 1])
{
	sodium_bin2base64(out, WG_KEY_B64_LEN + 1, key, WG_KEY_LEN,
			  sodium_base64_VARIANT_URLSAFE);
}

/* The u-coordinates of the Curve25519 points of small order (on the curve or its twist), with
 * the top bit clear, that key_check_public's earlier checks let through: 1, the two of order
 * 8 and p-1 (0 is "all zero"; p and p+1 are not reduced). X25519 with any of them gives a
 * shared secret that does not depend on our key (libsodium's crypto_scalarmult refuses
 * exactly these seven; the unit test checks the two agree). */
static const uint8_t low_order[][WG_KEY_LEN] = {
	{ 1 },
	{ 0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
	  0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
	  0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00 },
	{ 0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
	  0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
	  0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57 },
	{ 0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
};

/* u >= p = 2^255 - 19 (top bit already known clear): bytes 1..30 all 0xff, byte 31 0x7f and
 * byte 0 at least 0xed. */
static bool is_not_reduced(const uint8_t k[static WG_KEY_LEN])
{
	if (k[31] != 0x7f || k[0] < 0xed)
		return false;
	for (int i = 1; i < 31; i++)
		if (k[i] != 0xff)
			return false;
	return true;
}

int key_check_public(const uint8_t key[static WG_KEY_LEN], const uint8_t *device_key,
		     const char **why)
{
	*why = NULL;
	if (sodium_is_zero(key, WG_KEY_LEN))
		*why = "all zero";
	else if (key[31] & 0x80)
		*why = "not canonical (the top bit is set)";
	else if (is_not_reduced(key))
		*why = "not canonical (at least 2^255 - 19)";
	if (*why)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
		if (sodium_memcmp(key, low_order[i], WG_KEY_LEN) == 0) {
			*why = "a point of small order (any shared secret with it is predictable)";
			return -EINVAL;
		}
	}
	if (device_key && sodium_memcmp(key, device_key, WG_KEY_LEN) == 0) {
		*why = "the WireGuard device's own public key";
		return -EINVAL;
	}
	return 0;
}
