/* SPDX-License-Identifier: MIT */
/* Copies of WireGuard handshake initiations that plain UDP clients send to the device
 * (reference §5.2): an AF_PACKET socket on one interface with a hand-written classic BPF
 * filter, so the kernel copies only the datagrams that look like an initiation to the
 * device's port and the provisioner wakes up for nothing else. The device still gets (and
 * drops, for an unknown peer) the original; jit.c installs the peer with the sender as its
 * endpoint so that the device initiates back.
 *
 * This file opens, filters, reads and parses; it has no event loop, keeps no state and
 * never logs. It trusts no packet: capture_parse() checks everything the filter checks,
 * every length included, because a filter that did not run (or a bug in it) must not put
 * a lying length into the decoder. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "prov.h"
#include "wgmsg.h"

enum {
	CAPTURE_IP4_MIN_HLEN = 20,
	CAPTURE_IP6_HLEN = 40, /* extension headers are not followed: next header must be UDP */
	CAPTURE_UDP_HLEN = 8,
	CAPTURE_UDP_LEN = CAPTURE_UDP_HLEN + WGMSG_INITIATION_LEN, /* 156 */
	CAPTURE_IP4_FRAG = 0x3fff, /* MF and the fragment offset; DF may be set */
	CAPTURE_SNAP = 0xffff,     /* the filter keeps the whole packet */
	/* Room for the largest packet that can pass: 60 bytes of IPv4 header, the datagram
	 * and any link-layer trailer (a frame check sequence). Longer ones arrive with
	 * MSG_TRUNC and are bad. */
	CAPTURE_PKT_MAX = 512,
	CAPTURE_BATCH = 8,         /* datagrams per recvmmsg */
	CAPTURE_RCVBUF = 1 << 21,  /* a burst of a few thousand initiations */
};

/* The first four bytes of an initiation as a big-endian BPF word: type 1, little-endian. */
#define CAPTURE_INITIATION_WORD 0x01000000u

unsigned capture_filter(uint16_t port, struct sock_filter prog[static CAPTURE_FILTER_MAX])
{
	/* Labels are instruction numbers: classic BPF jumps are relative and forward only.
	 * skb->protocol (an ancillary load) picks IPv4 or IPv6: with SOCK_DGRAM the filter
	 * sees the packet from the network header on, so the ethertype is not in the data,
	 * and the version nibble alone would let a non-IP frame whose first byte happens to
	 * be 0x45 be read as IPv4. The version nibble is checked as well, as the kernel's
	 * ip_rcv() would. pkttype keeps what the host itself receives: not our own
	 * transmissions, not other hosts' traffic seen in promiscuous mode. */
	enum {
		L_PKTTYPE = 0, L_PROTO = 2, L_V4 = 5, L_V6 = 14, L_UDP = 20, L_ACCEPT = 27,
		L_REJECT = 28, L_END = 29,
	};
#define J(at, to) ((to) - (at) - 1)
	const struct sock_filter p[] = {
		[L_PKTTYPE] = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_HOST, 0, J(1, L_REJECT)),
		[L_PROTO] = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_PROTOCOL),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, J(3, L_V4), 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, J(4, L_V6), J(4, L_REJECT)),
		/* IPv4: version 4 and a header of at least 20 bytes are one byte, 0x45..0x4f. */
		[L_V4] = BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x45, 0, J(6, L_REJECT)),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 0x4f, J(7, L_REJECT), 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9), /* protocol */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, J(9, L_REJECT)),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6), /* flags and fragment offset */
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CAPTURE_IP4_FRAG, J(11, L_REJECT), 0),
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0), /* X = 4 * IHL: the UDP header */
		BPF_STMT(BPF_JMP | BPF_JA, J(13, L_UDP)),
		/* IPv6, no extension headers: the UDP header right after the fixed header. */
		[L_V6] = BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x60, 0, J(16, L_REJECT)),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6), /* next header */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, J(18, L_REJECT)),
		BPF_STMT(BPF_LDX | BPF_W | BPF_IMM, CAPTURE_IP6_HLEN),
		/* UDP at X. A load past the end of the packet ends the filter with 0: loading
		 * the message's last byte rejects a packet shorter than the UDP length. */
		[L_UDP] = BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2), /* destination port */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, J(21, L_REJECT)),
		BPF_STMT(BPF_LD | BPF_H | BPF_IND, 4), /* UDP length */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CAPTURE_UDP_LEN, 0, J(23, L_REJECT)),
		BPF_STMT(BPF_LD | BPF_W | BPF_IND, CAPTURE_UDP_HLEN), /* message type */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CAPTURE_INITIATION_WORD, 0, J(25, L_REJECT)),
		BPF_STMT(BPF_LD | BPF_B | BPF_IND, CAPTURE_UDP_LEN - 1),
		[L_ACCEPT] = BPF_STMT(BPF_RET | BPF_K, CAPTURE_SNAP),
		[L_REJECT] = BPF_STMT(BPF_RET | BPF_K, 0),
	};
#undef J
	_Static_assert(sizeof(p) / sizeof(p[0]) == L_END, "labels match the program");
	_Static_assert((int)L_END <= (int)CAPTURE_FILTER_MAX, "the program fits");

	memcpy(prog, p, sizeof(p));
	return L_END;
}

int capture_open(const char *ifname, uint16_t port)
{
	struct sock_filter code[CAPTURE_FILTER_MAX];
	struct sock_fprog fprog = { .filter = code };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	int one = 1, rcvbuf = CAPTURE_RCVBUF;
	int fd, ret;

	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (sll.sll_ifindex == 0)
		return -ENODEV;
	fprog.len = (unsigned short)capture_filter(port, code);
	/* Protocol 0: the socket receives nothing until bind() names one, and by then the
	 * filter is in place, so no unfiltered packet is ever queued. */
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) < 0)
		goto out_errno;
	/* Before 4.20 there is no such option; the filter's pkttype test does the same. */
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0 &&
	    errno != ENOPROTOOPT)
		goto out_errno;
	/* Past net.core.rmem_max needs CAP_NET_ADMIN, which the provisioner has; without it
	 * the capped size still works. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		goto out_errno;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		goto out_errno;
	return fd;

out_errno:
	ret = -errno;
	close(fd);
	return ret;
}

static bool is_initiation_udp(const uint8_t *udp, uint16_t port)
{
	static const uint8_t type[4] = { WGMSG_INITIATION, 0, 0, 0 };

	return (udp[2] << 8 | udp[3]) == port && (udp[4] << 8 | udp[5]) == CAPTURE_UDP_LEN &&
	       memcmp(udp + CAPTURE_UDP_HLEN, type, sizeof(type)) == 0;
}

/* Bytes past the IP datagram are the link layer's (padding, a frame check sequence): the
 * kernel trims them, and so do we. An IP length that claims more than arrived, or an IP
 * payload other than exactly the UDP datagram, is a lie. */
int capture_parse(const uint8_t *pkt, size_t len, uint16_t port, const uint8_t **msg,
		  struct sockaddr_storage *src)
{
	const uint8_t *udp;

	if (len < 1)
		return -EINVAL;
	if (pkt[0] >> 4 == 4) {
		size_t hlen = (size_t)(pkt[0] & 0x0f) * 4;
		struct sockaddr_in *sin = (struct sockaddr_in *)src;

		if (len < CAPTURE_IP4_MIN_HLEN || hlen < CAPTURE_IP4_MIN_HLEN)
			return -EINVAL;
		if ((size_t)(pkt[2] << 8 | pkt[3]) != hlen + CAPTURE_UDP_LEN ||
		    len < hlen + CAPTURE_UDP_LEN)
			return -EINVAL;
		if (pkt[9] != IPPROTO_UDP || ((pkt[6] << 8 | pkt[7]) & CAPTURE_IP4_FRAG))
			return -EINVAL;
		udp = pkt + hlen;
		if (!is_initiation_udp(udp, port))
			return -EINVAL;
		memset(src, 0, sizeof(*src));
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, pkt + 12, 4);
		memcpy(&sin->sin_port, udp, 2);
	} else if (pkt[0] >> 4 == 6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)src;

		if (len < CAPTURE_IP6_HLEN + CAPTURE_UDP_LEN)
			return -EINVAL;
		if ((pkt[4] << 8 | pkt[5]) != CAPTURE_UDP_LEN || pkt[6] != IPPROTO_UDP)
			return -EINVAL;
		udp = pkt + CAPTURE_IP6_HLEN;
		if (!is_initiation_udp(udp, port))
			return -EINVAL;
		memset(src, 0, sizeof(*src));
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, pkt + 8, 16);
		memcpy(&sin6->sin6_port, udp, 2);
	} else {
		return -EINVAL;
	}
	*msg = udp + CAPTURE_UDP_HLEN;
	return 0;
}

/* One datagram as read: the link-layer address is checked when the socket gives one (an
 * AF_PACKET socket always does; a test's socketpair does not). */
static bool deliver(const uint8_t *pkt, const struct mmsghdr *m, uint16_t port, capture_fn fn,
		    void *arg)
{
	const struct sockaddr_ll *sll = m->msg_hdr.msg_name;
	struct sockaddr_storage src;
	const uint8_t *msg;
	bool has_sll = m->msg_hdr.msg_namelen >= offsetof(struct sockaddr_ll, sll_addr) &&
		       sll->sll_family == AF_PACKET;

	if (m->msg_hdr.msg_flags & MSG_TRUNC)
		return false;
	if (has_sll && sll->sll_pkttype != PACKET_HOST)
		return false;
	if (capture_parse(pkt, m->msg_len, port, &msg, &src) < 0)
		return false;
	/* A link-local sender is only reachable through the interface it came in on. */
	if (has_sll && src.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)&src)->sin6_addr))
		((struct sockaddr_in6 *)&src)->sin6_scope_id = (uint32_t)sll->sll_ifindex;
	fn(arg, msg, &src);
	return true;
}

int capture_drain(int fd, uint16_t port, unsigned max, capture_fn fn, void *arg, uint64_t *bad)
{
	uint8_t buf[CAPTURE_BATCH][CAPTURE_PKT_MAX];
	struct sockaddr_ll names[CAPTURE_BATCH];
	struct iovec iov[CAPTURE_BATCH];
	struct mmsghdr msgs[CAPTURE_BATCH];
	unsigned done = 0;

	while (done < max) {
		unsigned want = max - done < CAPTURE_BATCH ? max - done : CAPTURE_BATCH;
		int n;

		for (unsigned i = 0; i < want; i++) {
			iov[i] = (struct iovec){ .iov_base = buf[i], .iov_len = sizeof(buf[i]) };
			msgs[i] = (struct mmsghdr){ .msg_hdr = {
				.msg_name = &names[i], .msg_namelen = sizeof(names[i]),
				.msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		n = recvmmsg(fd, msgs, want, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno; /* what came before went to fn already */
		}
		for (int i = 0; i < n; i++) {
			if (!deliver(buf[i], &msgs[i], port, fn, arg) && bad)
				(*bad)++;
		}
		done += (unsigned)n;
		if ((unsigned)n < want)
			break; /* the queue is empty */
	}
	return (int)done;
}
