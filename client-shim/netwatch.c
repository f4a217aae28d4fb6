/* SPDX-License-Identifier: MIT */
/* Watching the network for changes (contract in shim.h): an rtnetlink socket subscribed to
 * address and route changes, IPv4 and IPv6. What changed is not parsed: any change is a
 * reason to look at the connections again (session.c, shim_net_changed), which is cheap and
 * cannot be fooled by a message we did not foresee. Only the kernel can send on it: a
 * message from any other port is ignored. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "shim.h"

int netwatch_open(void)
{
	struct sockaddr_nl sa = {
		.nl_family = AF_NETLINK,
		/* Not RTMGRP_LINK: a laptop's Wi-Fi sends link messages all the time, and a
		 * link that goes down or up changes routes and addresses anyway. */
		.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
			     RTMGRP_IPV6_ROUTE,
	};
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

int netwatch_count(const void *buf, size_t len)
{
	const struct nlmsghdr *h = buf;
	size_t left = len, step;
	int changes = 0;

	while (left >= sizeof(*h) && h->nlmsg_len >= sizeof(*h) && h->nlmsg_len <= left) {
		switch (h->nlmsg_type) {
		case RTM_NEWADDR:
		case RTM_DELADDR:
		case RTM_NEWROUTE:
		case RTM_DELROUTE:
			changes++;
			break;
		}
		step = NLMSG_ALIGN(h->nlmsg_len);
		if (step >= left)
			break;
		left -= step;
		h = (const struct nlmsghdr *)((const char *)h + step);
	}
	return changes;
}

int netwatch_read(int fd)
{
	union {
		struct nlmsghdr h;
		char b[8192];
	} buf;
	int changes = 0;

	for (;;) {
		struct sockaddr_nl from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(fd, buf.b, sizeof(buf.b), 0, (struct sockaddr *)&from, &flen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* ENOBUFS: the kernel dropped some: something changed all the same */
			return errno == ENOBUFS ? changes + 1 : changes;
		}
		if (flen != sizeof(from) || from.nl_pid != 0)
			continue;
		changes += netwatch_count(buf.b, (size_t)n);
	}
}
