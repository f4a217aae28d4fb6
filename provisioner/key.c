/* WireGuard keys as text: standard base64 (what wg(8) prints and wg-quick reads) and URL-safe
 * base64 (what goes in API paths). libsodium does the decoding, constant-time. */
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
