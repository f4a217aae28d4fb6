/* SPDX-License-Identifier: MIT */
/* WireGuard message shapes (type word and size), checked without any key. */
#include "wgmsg.h"

enum wgmsg_type wgmsg_classify(const uint8_t *p, size_t len)
{
	if (len < 4 || p[1] != 0 || p[2] != 0 || p[3] != 0)
		return WGMSG_INVALID;
	switch (p[0]) {
	case WGMSG_INITIATION:
		return len == WGMSG_INITIATION_LEN ? WGMSG_INITIATION : WGMSG_INVALID;
	case WGMSG_RESPONSE:
		return len == WGMSG_RESPONSE_LEN ? WGMSG_RESPONSE : WGMSG_INVALID;
	case WGMSG_COOKIE:
		return len == WGMSG_COOKIE_LEN ? WGMSG_COOKIE : WGMSG_INVALID;
	case WGMSG_DATA:
		if (len >= WGMSG_DATA_MIN_LEN &&
		    (len % WGMSG_DATA_ALIGN == 0 || len >= WGMSG_DATA_MIN_MTU_LEN))
			return WGMSG_DATA;
		return WGMSG_INVALID;
	default:
		return WGMSG_INVALID;
	}
}

const char *wgmsg_type_name(enum wgmsg_type type)
{
	switch (type) {
	case WGMSG_INITIATION:
		return "initiation";
	case WGMSG_RESPONSE:
		return "response";
	case WGMSG_COOKIE:
		return "cookie";
	case WGMSG_DATA:
		return "data";
	default:
		return "invalid";
	}
}
