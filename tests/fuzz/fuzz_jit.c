/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the relay<->provisioner JIT messages (common/jitproto.c): the checks
 * the provisioner makes of a request (jit_request_check, provisioner/jit.c) and the relay of
 * an answer (jit_answer_check, relay/jit.c) before either trusts a byte, the address
 * conversions and the verdict names. What the provisioner then does with the initiation in a
 * request is fuzz_noise's.
 *
 * Input: one message as received: its size is the size recv() reports, the struct gets the
 * first bytes (zero-filled when shorter, as the receive buffer is zeroed). Both checks see
 * every input. Checked: only exact sizes and magics pass; an accepted request's source is an
 * IPv4 or IPv6 address that converts back to the same bytes; the client address converts
 * whatever it holds; an accepted answer's verdict has a name, a refused one's is "invalid"
 * unless only size or magic were wrong. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jitproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* jit_addr_from_sockaddr() of what jit_addr_to_sockaddr() made must give the same address. */
static void check_round_trip(const struct jit_addr *ja, const struct sockaddr_storage *ss,
			     socklen_t len)
{
	struct jit_addr back;
	size_t alen = ja->family == AF_INET ? 4 : 16;

	if ((ja->family == AF_INET && len != sizeof(struct sockaddr_in)) ||
	    (ja->family == AF_INET6 && len != sizeof(struct sockaddr_in6)) ||
	    ss->ss_family != ja->family)
		abort();
	jit_addr_from_sockaddr(&back, (const struct sockaddr *)ss);
	if (back.family != ja->family || back.port != ja->port || memcmp(back.addr, ja->addr, alen))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jit_request req = { 0 };
	struct jit_answer ans = { 0 };
	struct sockaddr_storage source, client;
	socklen_t len;
	const char *name;
	int ret;

	memcpy(&req, data, size < sizeof(req) ? size : sizeof(req));
	memcpy(&ans, data, size < sizeof(ans) ? size : sizeof(ans));

	ret = jit_request_check(&req, size, &source);
	if (ret != 0 && ret != -EBADMSG)
		abort();
	if (ret == 0) {
		if (size != sizeof(req) || req.magic != JIT_MAGIC_REQUEST)
			abort();
		len = jit_addr_to_sockaddr(&req.source, &source);
		if (!len)
			abort();
		check_round_trip(&req.source, &source, len);
	} else if (size == sizeof(req) && req.magic == JIT_MAGIC_REQUEST &&
		   (req.source.family == AF_INET || req.source.family == AF_INET6)) {
		abort(); /* refused a good request */
	}
	len = jit_addr_to_sockaddr(&req.client, &client);
	if (len)
		check_round_trip(&req.client, &client, len);
	else if (req.client.family == AF_INET || req.client.family == AF_INET6 || client.ss_family)
		abort();

	ret = jit_answer_check(&ans, size);
	name = jit_verdict_name(ans.verdict);
	if (!name || (ret != 0 && ret != -EBADMSG))
		abort();
	if (ret == 0 && (size != sizeof(ans) || ans.magic != JIT_MAGIC_ANSWER ||
			 !strcmp(name, "invalid")))
		abort();
	if (ret != 0 && size == sizeof(ans) && ans.magic == JIT_MAGIC_ANSWER &&
	    strcmp(name, "invalid") != 0)
		abort(); /* refused a good answer */
	return 0;
}
