/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the shim's reading of rtnetlink datagrams (client-shim/netwatch.c,
 * netwatch_count): the input is one datagram as the kernel would send it, copied into a
 * buffer aligned like the receive buffer (struct nlmsghdr), of exactly its length so that ASan
 * sees any read past it.
 *
 * The oracle walks the same bytes a second way, by offsets into the input (the kernel's
 * NLMSG_OK/NLMSG_NEXT rules: a header, a length covering it and within what is left, the
 * next message 4-aligned after it): both must count the same address and route messages. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "shim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int ref_count(const uint8_t *p, size_t size)
{
	size_t off = 0;
	int n = 0;

	while (size - off >= sizeof(struct nlmsghdr)) {
		struct nlmsghdr h;

		memcpy(&h, p + off, sizeof(h));
		if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > size - off)
			break;
		n += h.nlmsg_type == RTM_NEWADDR || h.nlmsg_type == RTM_DELADDR ||
		     h.nlmsg_type == RTM_NEWROUTE || h.nlmsg_type == RTM_DELROUTE;
		if ((size_t)NLMSG_ALIGN(h.nlmsg_len) >= size - off)
			break;
		off += NLMSG_ALIGN(h.nlmsg_len);
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nlmsghdr *buf;

	if (size > 8192)
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (netwatch_count(buf, size) != ref_count(data, size))
		abort();
	free(buf);
	return 0;
}
