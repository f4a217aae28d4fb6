/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the privileged half's request checker (priv_check_request in
 * provisioner/priv.c): the one function that stands between a compromised engine and the
 * process that holds the device and its key.
 *
 * Input: byte 0 bit 7 clear: byte 1 picks the op (0..PRIV_OP_MAX and PRIV_DUMP_PEER), the
 * header is made right for it (exact length, result 0) and the rest of the input is the body,
 * so the fuzzer spends its time on the fields; bit 7 set: the rest is the whole message, as
 * received. Sizes up to the largest message and 64 bytes past it.
 *
 * The oracle: a refusal is -EBADMSG with a reason; an accepted message is canonical, exactly
 * the bytes an honest engine would send for what it carries: a peer goes through
 * priv_peer_from_wire and priv_peer_to_wire unchanged; a REMOVE's keys past n, an interface
 * name's bytes past its NUL and every reserved field are zero; the header says the op, the
 * exact length and result 0. So no message the checker passes can carry anything a device
 * call does not see. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static union {
	union priv_msg m;
	uint8_t bytes[sizeof(union priv_msg) + 64];
} in, canon;

static uint32_t pick_op(uint8_t b)
{
	b %= PRIV_OP_MAX + 1;
	return b == PRIV_OP_MAX ? PRIV_DUMP_PEER : b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[PRIV_WHY_LEN];
	struct wgdev_peer p;
	size_t n;
	int ret;

	if (size < 2)
		return 0;
	memset(&in, 0, sizeof(in));
	if (!(data[0] & 0x80)) {
		uint32_t op = pick_op(data[1]);

		n = priv_msg_len(op, false);
		if (!n)
			n = sizeof(in.m.h);
		memcpy(in.bytes + sizeof(in.m.h), data + 2,
		       size - 2 < sizeof(in) - sizeof(in.m.h) ? size - 2
							 : sizeof(in) - sizeof(in.m.h));
		in.m.h.op = op;
		in.m.h.len = (uint32_t)n;
		in.m.h.seq = data[0];
	} else {
		n = size - 1 < sizeof(in) ? size - 1 : sizeof(in);
		memcpy(in.bytes, data + 1, n);
	}

	ret = priv_check_request(&in.m, n, why);
	if (ret != 0) {
		if (ret != -EBADMSG || !why[0])
			abort();
		return 0;
	}
	/* Accepted: rebuild it from what it means, and compare. */
	if (n != priv_msg_len(in.m.h.op, false) || in.m.h.len != n || in.m.h.result != 0)
		abort();
	memset(&canon, 0, sizeof(canon));
	canon.m.h = in.m.h;
	switch (in.m.h.op) {
	case PRIV_INSTALL:
	case PRIV_UPDATE:
		priv_peer_from_wire(&in.m.peer.p, &p);
		if (p.n_allowed > PROV_MAX_ALLOWED)
			abort();
		priv_peer_to_wire(&p, &canon.m.peer.p);
		break;
	case PRIV_REMOVE:
		canon.m.remove.r.n = in.m.remove.r.n;
		if (canon.m.remove.r.n < 1 || canon.m.remove.r.n > PRIV_REMOVE_MAX)
			abort();
		memcpy(canon.m.remove.r.keys, in.m.remove.r.keys,
		       canon.m.remove.r.n * (size_t)WG_KEY_LEN);
		break;
	case PRIV_CAPTURE_OPEN:
		if (strnlen(in.m.ifname.n.name, IF_NAMESIZE) >= IF_NAMESIZE)
			abort();
		strcpy(canon.m.ifname.n.name, in.m.ifname.n.name);
		break;
	case PRIV_DH:
		memcpy(canon.m.key.k.key, in.m.key.k.key, WG_KEY_LEN);
		break;
	default:
		break;
	}
	if (memcmp(canon.bytes, in.bytes, n) != 0)
		abort();
	return 0;
}
