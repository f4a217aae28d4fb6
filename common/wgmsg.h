/* SPDX-License-Identifier: MIT */
/* The shapes of WireGuard messages, as the relay may check them without any key: the first
 * four bytes are a little-endian message type (1..4, the three high bytes zero) and each
 * type has a fixed size. Transport data is 32 bytes of header and tag around a plaintext
 * padded to a multiple of 16, except that padding stops at the interface MTU: a full-size
 * packet is 32 + MTU bytes, whatever the MTU (1452 at the default 1420). So data is at
 * least 32 bytes and either a multiple of 16 or at least 32 + 68 (the smallest MTU).
 * Anything else is not WireGuard and never reaches the WireGuard port. */
#ifndef WGWS_WGMSG_H
#define WGWS_WGMSG_H

#include <stddef.h>
#include <stdint.h>

enum wgmsg_type {
	WGMSG_INVALID = 0,
	WGMSG_INITIATION = 1,
	WGMSG_RESPONSE = 2,
	WGMSG_COOKIE = 3,
	WGMSG_DATA = 4,
};

enum {
	WGMSG_INITIATION_LEN = 148,
	WGMSG_RESPONSE_LEN = 92,
	WGMSG_COOKIE_LEN = 64,
	WGMSG_DATA_MIN_LEN = 32, /* a keepalive: 16-byte header + 16-byte tag */
	WGMSG_DATA_ALIGN = 16,
	WGMSG_DATA_MIN_MTU_LEN = 32 + 68, /* a packet as long as the smallest MTU allows */
};

/* The message type of p[0..len), or WGMSG_INVALID when it does not have a WireGuard shape. */
enum wgmsg_type wgmsg_classify(const uint8_t *p, size_t len);

/* A short name for a type ("initiation", …, "invalid"), for logs and metric labels. */
const char *wgmsg_type_name(enum wgmsg_type type);

#endif
