/* SPDX-License-Identifier: MIT */
/* Unit tests for the API's answer buffers (provisioner/answer.c) through prov.h only: the
 * create answer that carries a server-made private key is valid JSON with every field the
 * public part had, its config survives JSON escaping byte for byte, and after answer_wipe()
 * not one byte of the buffer is left: no base64 of the key, no part of the config, nothing
 * in the headroom or past the body. jansson is only the witness (it parses the answer). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "prov.h"

static const char *cur_case = "?";
#include "expect.h"

enum { PRE = 16 }; /* headroom, as LWS_PRE would be */

static const char public_json[] =
	"{\"public_key\":\"f8bs3gy5f9NHYOuFsPRX6nFZwUDIWnlkEvv4Oq8bIEE=\",\"addresses\":"
	"[\"10.203.0.2/32\"],\"installed\":true,\"expires_at\":null}";

static bool has(const struct answer *a, const char *needle)
{
	return memmem(a->buf, a->cap, needle, strlen(needle)) != NULL;
}

/* Every byte allocated is zero, and neither the key (base64) nor the config is found. */
static void expect_wiped(const struct answer *a, const char *b64, const char *config)
{
	for (size_t i = 0; i < a->cap; i++)
		if (a->buf[i])
			fail_msg("case %s: byte %zu of %zu is 0x%02x after answer_wipe", cur_case,
				 i, a->cap, a->buf[i]);
	EXPECT(!has(a, b64));
	EXPECT(!config[0] || !has(a, config));
}

/* The template with its "%s", if any, replaced by the key. */
static void fill_key(char *out, size_t size, const char *tmpl, const char *b64)
{
	const char *at = strstr(tmpl, "%s");

	if (!at)
		snprintf(out, size, "%s", tmpl);
	else
		snprintf(out, size, "%.*s%s%s", (int)(at - tmpl), tmpl, b64, at + 2);
}

static void test_secret_answer(void **state)
{
	static const struct {
		const char *name, *config;
	} cases[] = {
		{ "a wg-quick config",
		  "[Interface]\nPrivateKey = %s\nAddress = 10.203.0.2/32\n\n[Peer]\n"
		  "AllowedIPs = 10.203.0.0/24\n# wgws-shim --relay wss://gw/wg\n" },
		{ "quotes, backslashes, tabs, CR, DEL, a control character and UTF-8",
		  "a \"quoted\" \\path\\ \t\r\x7f\x01 caf\xc3\xa9 \xe2\x82\xac "
		  "\xf0\x9f\x94\x91 %s" },
		{ "empty config", "" },
	};
	uint8_t priv[WG_KEY_LEN];
	char b64[WG_KEY_B64_LEN + 1], config[512];
	json_error_t jerr;
	struct answer a;
	json_t *root;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cur_case = cases[i].name;
		randombytes_buf(priv, sizeof(priv));
		key_to_base64(priv, b64);
		fill_key(config, sizeof(config), cases[i].config, b64);
		assert_int_equal(answer_secret(&a, PRE, public_json, priv, config), 0);
		EXPECT(a.secret);
		EXPECT_EQ(a.pre, PRE);
		EXPECT(a.pre + a.len < a.cap);
		EXPECT_EQ(a.buf[a.pre + a.len], '\0');
		root = json_loadb((const char *)a.buf + a.pre, a.len, JSON_REJECT_DUPLICATES,
				  &jerr);
		if (!root)
			fail_msg("case %s: not JSON (%s): %s", cur_case, jerr.text, a.buf + a.pre);
		EXPECT_STREQ(json_string_value(json_object_get(root, "private_key")), b64);
		EXPECT_STREQ(json_string_value(json_object_get(root, "config")), config);
		EXPECT_STREQ(json_string_value(json_object_get(root, "public_key")),
			     "f8bs3gy5f9NHYOuFsPRX6nFZwUDIWnlkEvv4Oq8bIEE=");
		EXPECT(json_is_true(json_object_get(root, "installed")));
		EXPECT(json_is_null(json_object_get(root, "expires_at")));
		EXPECT_EQ(json_object_size(root), 6);
		json_decref(root);
		EXPECT(has(&a, b64));
		answer_wipe(&a);
		expect_wiped(&a, b64, config);
		answer_free(&a);
		EXPECT(a.buf == NULL);
	}
}

static void test_secret_answer_empty_object(void **state)
{
	uint8_t priv[WG_KEY_LEN] = { 1, 2, 3 };
	char b64[WG_KEY_B64_LEN + 1];
	struct answer a;

	(void)state;
	cur_case = "{}";
	key_to_base64(priv, b64);
	assert_int_equal(answer_secret(&a, 0, "{}", priv, "x"), 0);
	EXPECT_STREQ((const char *)a.buf,
		     "{\"private_key\":\"AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
		     "\"config\":\"x\"}");
	answer_wipe(&a);
	expect_wiped(&a, b64, "x");
	answer_free(&a);
}

static void test_secret_answer_refused(void **state)
{
	static const struct {
		const char *name, *public_json, *config;
		int want;
	} cases[] = {
		{ "public part empty", "", "x", -EINVAL },
		{ "public part an array", "[1]", "x", -EINVAL },
		{ "public part cut short", "{\"a\":1", "x", -EINVAL },
		{ "config with a stray continuation byte", "{}", "a\x80z", -EILSEQ },
		{ "config with a cut UTF-8 sequence", "{}", "a\xe2\x82", -EILSEQ },
		{ "config with an 0xff byte", "{}", "\xff", -EILSEQ },
	};
	uint8_t priv[WG_KEY_LEN] = { 0 };
	struct answer a;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cur_case = cases[i].name;
		EXPECT_EQ(answer_secret(&a, PRE, cases[i].public_json, priv, cases[i].config),
			  cases[i].want);
		EXPECT(a.buf == NULL);
		answer_free(&a); /* an empty answer: a no-op */
	}
}

/* A plain answer is a copy, not wiped by answer_wipe (nothing secret in it). */
static void test_copy(void **state)
{
	struct answer a;

	(void)state;
	cur_case = "copy";
	assert_int_equal(answer_copy(&a, PRE, "{\"ok\":1}", 8), 0);
	EXPECT(!a.secret);
	EXPECT_EQ(a.len, 8);
	EXPECT_STREQ((const char *)a.buf + PRE, "{\"ok\":1}");
	answer_wipe(&a);
	EXPECT_STREQ((const char *)a.buf + PRE, "{\"ok\":1}");
	answer_free(&a);
	cur_case = "empty body";
	assert_int_equal(answer_copy(&a, PRE, NULL, 0), 0);
	EXPECT_EQ(a.len, 0);
	answer_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_answer),
		cmocka_unit_test(test_secret_answer_empty_object),
		cmocka_unit_test(test_secret_answer_refused),
		cmocka_unit_test(test_copy),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
