/* SPDX-License-Identifier: MIT */
/* Unit tests for the provisioner's key checks and encodings (provisioner/key.c) through
 * prov.h only. The small-order points are listed here again, from their definitions and not
 * from key.c, and libsodium's X25519 is the independent witness: it must refuse every point
 * key_check_public() calls small-order, and accept the random keys it lets through. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "prov.h"

static char cur_case[160] = "?";
#include "expect.h"

/* 64 hex digits, little-endian as on the wire, into key. */
static void hex_key(const char *hex, uint8_t key[static WG_KEY_LEN])
{
	size_t len;

	assert_int_equal(sodium_hex2bin(key, WG_KEY_LEN, hex, strlen(hex), NULL, &len, NULL), 0);
	assert_int_equal(len, WG_KEY_LEN);
}

/* Every u-coordinate of a point of order 1, 2, 4 or 8 on Curve25519 or its twist, and the
 * non-canonical encodings of those below 19 (u + p < 2^255). */
static const struct {
	const char *name, *hex;
} small_order[] = {
	{ "u = 0", "0000000000000000000000000000000000000000000000000000000000000000" },
	{ "u = 1", "0100000000000000000000000000000000000000000000000000000000000000" },
	{ "order 8 (e0eb...)", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800" },
	{ "order 8 (5f9c...)", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157" },
	{ "u = p - 1", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f" },
	{ "u = p (0, not canonical)",
	  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f" },
	{ "u = p + 1 (1, not canonical)",
	  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f" },
};

/* X25519 of a random scalar with u: libsodium refuses small-order inputs (and an all-zero
 * result). Returns its verdict. */
static int x25519_with(const uint8_t u[static WG_KEY_LEN])
{
	uint8_t sk[crypto_scalarmult_SCALARBYTES], out[crypto_scalarmult_BYTES];

	randombytes_buf(sk, sizeof(sk));
	return crypto_scalarmult(out, sk, u);
}

static void test_small_order(void **state)
{
	uint8_t key[WG_KEY_LEN];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(small_order) / sizeof(small_order[0]); i++) {
		for (int top = 0; top < 2; top++) {
			snprintf(cur_case, sizeof(cur_case), "%s%s", small_order[i].name,
				 top ? ", top bit set" : "");
			hex_key(small_order[i].hex, key);
			key[31] |= (uint8_t)(top << 7);
			EXPECT_EQ(key_check_public(key, NULL, &why), -EINVAL);
			EXPECT(why != NULL);
			EXPECT(x25519_with(key) != 0);
		}
	}
}

static void test_refused(void **state)
{
	static const struct {
		const char *name, *hex, *why;
	} cases[] = {
		{ "all zero", "0000000000000000000000000000000000000000000000000000000000000000",
		  "all zero" },
		{ "u = 0 with the top bit set",
		  "0000000000000000000000000000000000000000000000000000000000000080", "top bit" },
		{ "u = p", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		  "2^255 - 19" },
		{ "u = p + 18", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		  "2^255 - 19" },
		{ "u = p + 2", "efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		  "2^255 - 19" },
		{ "u = 9 with the top bit set",
		  "0900000000000000000000000000000000000000000000000000000000000080", "top bit" },
		{ "u = 1", "0100000000000000000000000000000000000000000000000000000000000000",
		  "small order" },
		{ "order 8", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		  "small order" },
		{ "u = p - 1", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		  "small order" },
	};
	uint8_t key[WG_KEY_LEN];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cur_case, sizeof(cur_case), "%s", cases[i].name);
		hex_key(cases[i].hex, key);
		EXPECT_EQ(key_check_public(key, NULL, &why), -EINVAL);
		if (!why || !strstr(why, cases[i].why))
			fail_msg("case %s: why is \"%s\", expected it to say \"%s\"", cur_case,
				 why ? why : "(null)", cases[i].why);
	}
}

static void test_accepted(void **state)
{
	static const struct {
		const char *name, *hex;
	} cases[] = {
		{ "u = 9 (the base point)",
		  "0900000000000000000000000000000000000000000000000000000000000000" },
		{ "u = 2", "0200000000000000000000000000000000000000000000000000000000000000" },
		{ "u = p - 2", "ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f" },
		{ "u = 2^254", "0000000000000000000000000000000000000000000000000000000000000040" },
	};
	uint8_t key[WG_KEY_LEN], sk[WG_KEY_LEN];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cur_case, sizeof(cur_case), "%s", cases[i].name);
		hex_key(cases[i].hex, key);
		EXPECT_EQ(key_check_public(key, NULL, &why), 0);
		EXPECT(why == NULL);
		EXPECT_EQ(x25519_with(key), 0);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(cur_case, sizeof(cur_case), "random key pair %d", i);
		randombytes_buf(sk, sizeof(sk));
		assert_int_equal(crypto_scalarmult_base(key, sk), 0);
		EXPECT_EQ(key_check_public(key, NULL, &why), 0);
		EXPECT_EQ(x25519_with(key), 0);
	}
}

static void test_device_key(void **state)
{
	uint8_t dev[WG_KEY_LEN], key[WG_KEY_LEN], sk[WG_KEY_LEN];
	const char *why;

	(void)state;
	randombytes_buf(sk, sizeof(sk));
	assert_int_equal(crypto_scalarmult_base(dev, sk), 0);
	snprintf(cur_case, sizeof(cur_case), "the device's own key");
	EXPECT_EQ(key_check_public(dev, dev, &why), -EINVAL);
	EXPECT(why && strstr(why, "device's own"));
	snprintf(cur_case, sizeof(cur_case), "the device's key unknown");
	EXPECT_EQ(key_check_public(dev, NULL, &why), 0);
	snprintf(cur_case, sizeof(cur_case), "one bit off the device's key");
	memcpy(key, dev, sizeof(key));
	key[0] ^= 1;
	EXPECT_EQ(key_check_public(key, dev, &why), 0);
}

static void test_base64(void **state)
{
	static const struct {
		const char *name, *text;
		int want;
	} cases[] = {
		{ "standard", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", 0 },
		{ "URL-safe", "yAnz5TF-lXXJte14tji3zlMNq-hd2rYUIgJBgB3fBmk=", 0 },
		{ "URL-safe without padding", "yAnz5TF-lXXJte14tji3zlMNq-hd2rYUIgJBgB3fBmk", 0 },
		{ "31 bytes", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBg==", -EINVAL },
		{ "one character more", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmkA", -EINVAL },
		{ "a character outside base64", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm!=",
		  -EINVAL },
		{ "empty", "", -EINVAL },
	};
	uint8_t key[WG_KEY_LEN];
	char b64[WG_KEY_B64_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cur_case, sizeof(cur_case), "%s", cases[i].name);
		EXPECT_EQ(key_from_base64(cases[i].text, key), cases[i].want);
		if (cases[i].want == 0) {
			key_to_base64(key, b64);
			EXPECT_STREQ(b64, cases[0].text);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_order),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_accepted),
		cmocka_unit_test(test_device_key),
		cmocka_unit_test(test_base64),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
