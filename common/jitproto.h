/* SPDX-License-Identifier: MIT */
/* The JIT channel between wgws-relay and wgws-provisioner on one gateway.
 *
 * A unix SOCK_SEQPACKET socket the provisioner listens on (--jit-socket); the relay
 * connects. One message per packet, each exactly the size of its struct (same host, same
 * build: no byte-order or padding games beyond what the compiler does for both); any other
 * size or a wrong magic is a protocol error and the receiver closes the connection.
 *
 * The relay sends a jit_request for each handshake initiation a client sends through it and
 * holds the datagram (one per connection, the newest, at most JIT_HOLD_MS) until the
 * jit_answer with the same id arrives, then forwards it (INSTALLED, LIVE, ERROR) or drops
 * it (UNKNOWN, REFUSED). No answer in time, or no provisioner: it forwards, as without JIT.
 * The provisioner checks the sender's credentials (SO_PEERCRED) when it accepts. */
#ifndef WGWS_JITPROTO_H
#define WGWS_JITPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum {
	JIT_MAGIC_REQUEST = 0x51544a57, /* "WJTQ" as little-endian bytes */
	JIT_MAGIC_ANSWER = 0x41544a57,  /* "WJTA" */
	JIT_INITIATION_LEN = 148,
	JIT_HOLD_MS = 3000,             /* < REKEY_TIMEOUT (5 s): a timed-out hold still beats a retry */
};

enum jit_verdict {
	JIT_INSTALLED = 1, /* the peer was put into the device: forward */
	JIT_LIVE,          /* the peer was already in the device: forward */
	JIT_UNKNOWN,       /* no such stored peer (or expired): drop */
	JIT_REFUSED,       /* replayed, malformed, rate-limited: drop */
	JIT_ERROR,         /* the provisioner could not decide (device error): forward */
	JIT_VERDICT_MAX,
};

/* An IPv4 or IPv6 address and port, fixed size. */
struct jit_addr {
	uint16_t family; /* AF_INET, AF_INET6, or 0 = none */
	uint16_t port;   /* network byte order */
	uint8_t addr[16]; /* the first 4 bytes for AF_INET */
};

struct jit_request {
	uint32_t magic;   /* JIT_MAGIC_REQUEST */
	uint32_t reserved; /* 0 */
	uint64_t id;      /* chosen by the relay, echoed in the answer */
	struct jit_addr source; /* the relay's UDP socket for this tunnel: what WireGuard sees */
	struct jit_addr client; /* the tunnel's client (its TCP peer address): --jit-rate's key */
	uint8_t initiation[JIT_INITIATION_LEN];
	uint8_t pad[4];   /* 0: makes the size explicit (no hidden padding) */
};

struct jit_answer {
	uint32_t magic;   /* JIT_MAGIC_ANSWER */
	uint32_t verdict; /* enum jit_verdict */
	uint64_t id;
	uint8_t key[32];  /* the initiator's public key when the provisioner learned it (all
			   * zero otherwise): the relay names the tunnel's WireGuard peer in its
			   * log, so an operator goes from `wg show` to a client and back */
};

_Static_assert(sizeof(struct jit_request) == 208, "jit_request layout");
_Static_assert(sizeof(struct jit_answer) == 48, "jit_answer layout");

/* Conversions; from_sockaddr gives family 0 for anything but AF_INET/AF_INET6. to_sockaddr
 * returns the sockaddr length, or 0 for family 0 or an unknown family. */
void jit_addr_from_sockaddr(struct jit_addr *ja, const struct sockaddr *sa);
socklen_t jit_addr_to_sockaddr(const struct jit_addr *ja, struct sockaddr_storage *ss);
/* "installed", "live", "unknown", "refused", "error" or "invalid". */
const char *jit_verdict_name(uint32_t verdict);

/* What each side checks of a message as received into req (or a) before trusting it: n is the
 * size recv() reported (with MSG_TRUNC, the real size). A request must be exactly one struct
 * with the magic and a source that converts (into *source); an answer exactly one struct
 * with the magic and a verdict from JIT_INSTALLED to JIT_ERROR. Returns 0 or -EBADMSG. */
int jit_request_check(const struct jit_request *req, size_t n, struct sockaddr_storage *source)
	__attribute__((warn_unused_result));
int jit_answer_check(const struct jit_answer *a, size_t n) __attribute__((warn_unused_result));

#endif
