/* SPDX-License-Identifier: MIT */
/* The JIT channel's address conversions, names and message checks (the contract is in
 * jitproto.h). */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "jitproto.h"

void jit_addr_from_sockaddr(struct jit_addr *ja, const struct sockaddr *sa)
{
	memset(ja, 0, sizeof(*ja));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		ja->family = AF_INET;
		ja->port = sin->sin_port;
		memcpy(ja->addr, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		ja->family = AF_INET6;
		ja->port = sin6->sin6_port;
		memcpy(ja->addr, &sin6->sin6_addr, 16);
	}
}

socklen_t jit_addr_to_sockaddr(const struct jit_addr *ja, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ja->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = ja->port;
		memcpy(&sin->sin_addr, ja->addr, 4);
		return sizeof(*sin);
	}
	if (ja->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = ja->port;
		memcpy(&sin6->sin6_addr, ja->addr, 16);
		return sizeof(*sin6);
	}
	return 0;
}

const char *jit_verdict_name(uint32_t verdict)
{
	static const char *const names[JIT_VERDICT_MAX] = {
		[JIT_INSTALLED] = "installed", [JIT_LIVE] = "live", [JIT_UNKNOWN] = "unknown",
		[JIT_REFUSED] = "refused",     [JIT_ERROR] = "error",
	};

	return verdict < JIT_VERDICT_MAX && names[verdict] ? names[verdict] : "invalid";
}

int jit_request_check(const struct jit_request *req, size_t n, struct sockaddr_storage *source)
{
	if (n != sizeof(*req) || req->magic != JIT_MAGIC_REQUEST ||
	    !jit_addr_to_sockaddr(&req->source, source))
		return -EBADMSG;
	return 0;
}

int jit_answer_check(const struct jit_answer *a, size_t n)
{
	if (n != sizeof(*a) || a->magic != JIT_MAGIC_ANSWER || !a->verdict ||
	    a->verdict >= JIT_VERDICT_MAX)
		return -EBADMSG;
	return 0;
}
