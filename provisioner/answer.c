/* SPDX-License-Identifier: MIT */
/* Response bodies in buffers the API owns, with room in front for libwebsockets' header
 * (LWS_PRE), from the handler that prepares them to the WRITEABLE callback that sends them.
 *
 * One answer carries a secret: the private key of a key pair the server made for a client,
 * in "private_key" and in the wg-quick "config". It is built here straight into its answer
 * buffer, never through jansson (whose strings, dump buffers and their reallocations are
 * freed without being wiped), and an answer marked secret is wiped whole, every byte that
 * was allocated, before it is freed. No I/O, no globals, nothing logged. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"

int answer_copy(struct answer *a, size_t pre, const void *body, size_t len)
{
	memset(a, 0, sizeof(*a));
	if (len > SIZE_MAX - pre - 1)
		return -ENOMEM;
	a->buf = malloc(pre + len + 1);
	if (!a->buf)
		return -ENOMEM;
	a->pre = pre;
	a->len = len;
	a->cap = pre + len + 1;
	if (len)
		memcpy(a->buf + pre, body, len);
	a->buf[pre + len] = '\0';
	return 0;
}

/* Bytes config takes as the inside of a JSON string, or 0 when it is not UTF-8 (a JSON text
 * must be). Overlong forms and surrogates are let through: the text is the operator's. */
static size_t json_string_len(const char *config)
{
	const unsigned char *s = (const unsigned char *)config;
	size_t n = 0;

	while (*s) {
		unsigned follow = *s < 0x80 ? 0 : (*s & 0xe0) == 0xc0 ? 1 :
				  (*s & 0xf0) == 0xe0 ? 2 : (*s & 0xf8) == 0xf0 ? 3 : 4;

		if (follow == 4)
			return 0;
		if (follow == 0) {
			n += *s == '"' || *s == '\\' || *s == '\n' || *s == '\t' || *s == '\r' ? 2 :
			     *s < 0x20 || *s == 0x7f ? 6 : 1;
			s++;
			continue;
		}
		for (unsigned i = 1; i <= follow; i++)
			if ((s[i] & 0xc0) != 0x80)
				return 0;
		n += follow + 1;
		s += follow + 1;
	}
	return n + 1; /* +1: an empty config is not "not UTF-8" */
}

static char *put_json_string(char *p, const char *config)
{
	static const char hex[] = "0123456789abcdef";

	for (const unsigned char *s = (const unsigned char *)config; *s; s++) {
		switch (*s) {
		case '"':
		case '\\':
			*p++ = '\\';
			*p++ = (char)*s;
			break;
		case '\n':
			*p++ = '\\';
			*p++ = 'n';
			break;
		case '\t':
			*p++ = '\\';
			*p++ = 't';
			break;
		case '\r':
			*p++ = '\\';
			*p++ = 'r';
			break;
		default:
			if (*s < 0x20 || *s == 0x7f) {
				memcpy(p, "\\u00", 4);
				p[4] = hex[*s >> 4];
				p[5] = hex[*s & 15];
				p += 6;
			} else {
				*p++ = (char)*s;
			}
		}
	}
	return p;
}

int answer_secret(struct answer *a, size_t pre, const char *public_json,
		  const uint8_t private_key[static WG_KEY_LEN], const char *config)
{
	static const char k_priv[] = "\"private_key\":\"", k_config[] = "\",\"config\":\"";
	size_t pub_len = strlen(public_json), cfg_len = json_string_len(config), need;
	char *p;

	memset(a, 0, sizeof(*a));
	/* A compact object: "{", its members, "}"; ours go before the "}". */
	if (pub_len < 2 || public_json[0] != '{' || public_json[pub_len - 1] != '}')
		return -EINVAL;
	if (!cfg_len)
		return -EILSEQ;
	cfg_len--;
	need = pre + pub_len + 1 + (sizeof(k_priv) - 1) + WG_KEY_B64_LEN + (sizeof(k_config) - 1) +
	       cfg_len + 2 + 1;
	a->buf = malloc(need);
	if (!a->buf)
		return -ENOMEM;
	a->pre = pre;
	a->cap = need;
	a->secret = true;
	p = (char *)a->buf + pre;
	memcpy(p, public_json, pub_len - 1);
	p += pub_len - 1;
	if (pub_len > 2)
		*p++ = ',';
	memcpy(p, k_priv, sizeof(k_priv) - 1);
	p += sizeof(k_priv) - 1;
	/* Straight into the answer: no copy of the key in base64 anywhere else. */
	key_to_base64(private_key, p);
	p += WG_KEY_B64_LEN;
	memcpy(p, k_config, sizeof(k_config) - 1);
	p += sizeof(k_config) - 1;
	p = put_json_string(p, config);
	*p++ = '"';
	*p++ = '}';
	*p = '\0';
	a->len = (size_t)(p - ((char *)a->buf + pre));
	return 0;
}

void answer_wipe(struct answer *a)
{
	if (a->buf && a->secret)
		sodium_memzero(a->buf, a->cap);
}

void answer_free(struct answer *a)
{
	answer_wipe(a);
	free(a->buf);
	memset(a, 0, sizeof(*a));
}
