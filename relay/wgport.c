/* SPDX-License-Identifier: MIT */
/* Who owns WireGuard's UDP port (--wg). Every datagram the relay carries goes there: while
 * WireGuard is down, any local user may bind that port and receive every client's
 * handshakes and data (encrypted, but theirs to drop or to study). The relay cannot prevent
 * it; it can notice. Each check is one sock_diag request (the kernel looks the socket up as
 * a datagram from the relay to --wg would find it: O(1)), answered with the socket's owner.
 * Kernel WireGuard's socket and a root wireguard-go report uid 0; any other owner is logged
 * and exported (wgws_relay_wg_port_owner_uid; -1 when nothing is bound). The netlink socket
 * is opened at start, before the sandbox, which then only lets it send and receive. */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"

static int diag_fd = -1;

int wgport_open(void)
{
	relay.wg_owner_uid = WGPORT_UNKNOWN;
	diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
	return diag_fd < 0 ? -errno : 0;
}

void wgport_close(void)
{
	if (diag_fd >= 0)
		close(diag_fd);
	diag_fd = -1;
}

/* The owner's uid, -1 when nothing is bound there, or -errno (-EAGAIN: no answer yet). */
static long query(void)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} q = {
		.nlh = { .nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 1 },
		.req = { .sdiag_family = (uint8_t)relay.cfg.wg.ss_family,
			 .sdiag_protocol = IPPROTO_UDP, .idiag_states = ~0u,
			 .id.idiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE } },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	union {
		struct nlmsghdr nlh;
		uint8_t buf[1024];
	} a;
	ssize_t n;

	/* "src and dst are swapped for historical reasons": the lookup is that of a datagram
	 * from id.src:sport to id.dst:dport, which is what a tunnel sends. */
	if (relay.cfg.wg.ss_family == AF_INET) {
		const struct sockaddr_in *wg = (const void *)&relay.cfg.wg;
		const struct sockaddr_in *lo = (const void *)&relay.udp_local;

		memcpy(q.req.id.idiag_dst, &wg->sin_addr, 4);
		memcpy(q.req.id.idiag_src, &lo->sin_addr, 4);
		q.req.id.idiag_dport = wg->sin_port;
	} else {
		const struct sockaddr_in6 *wg = (const void *)&relay.cfg.wg;
		const struct sockaddr_in6 *lo = (const void *)&relay.udp_local;

		memcpy(q.req.id.idiag_dst, &wg->sin6_addr, 16);
		memcpy(q.req.id.idiag_src, &lo->sin6_addr, 16);
		q.req.id.idiag_dport = wg->sin6_port;
	}
	q.req.id.idiag_sport = htons(1);
	if (sendto(diag_fd, &q, sizeof(q), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	/* The kernel answers within sendto(); a reply not there now is not coming. */
	n = recv(diag_fd, &a, sizeof(a), MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(a.nlh) || a.nlh.nlmsg_len > (size_t)n)
		return -EBADMSG;
	if (a.nlh.nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(&a.nlh);

		if (a.nlh.nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
			return -EBADMSG;
		return e->error == -ENOENT ? -1 : (e->error < 0 ? e->error : -EBADMSG);
	}
	if (a.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
	    a.nlh.nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
		return -EBADMSG;
	return ((const struct inet_diag_msg *)NLMSG_DATA(&a.nlh))->idiag_uid;
}

void wgport_check(void)
{
	char addr[ADDR_STR_LEN];
	long prev = relay.wg_owner_uid, owner;

	if (diag_fd < 0)
		return;
	owner = query();
	if (owner < -1) {
		log_debug("wg port check: %s", strerror((int)-owner));
		relay.wg_owner_uid = WGPORT_UNKNOWN;
		return;
	}
	relay.wg_owner_uid = owner;
	if (owner == prev)
		return;
	addr_format((const struct sockaddr *)&relay.cfg.wg, addr);
	if (owner == -1)
		log_warnx("nothing listens on WireGuard's port %s: tunnels' datagrams are lost, and "
			  "any local user could bind it and receive them", addr);
	else if (owner != 0)
		log_warnx("WireGuard's port %s is bound by uid %ld, not root: if that is not your "
			  "WireGuard, it receives every client's datagrams", addr, owner);
	else if (prev != WGPORT_UNKNOWN)
		log_info("WireGuard's port %s is bound by root again", addr);
}
