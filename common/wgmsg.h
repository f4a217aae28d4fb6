/* The shapes of WireGuard messages, as the relay may check them without any key: the first
 * four bytes are a little-endian message type (1..4, the three high bytes zero) and each
 * type has a fixed size, or for transport data a size of at least 32 that is a multiple
 * of 16. Anything else is not WireGuard and never reaches the WireGuard port. */
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
};

/* The message type of p[0..len), or WGMSG_INVALID when it does not have a WireGuard shape. */
enum wgmsg_type wgmsg_classify(const uint8_t *p, size_t len);

/* A short name for a type ("initiation", …, "invalid"), for logs and metric labels. */
const char *wgmsg_type_name(enum wgmsg_type type);

#endif
