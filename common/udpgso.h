/* SPDX-License-Identifier: MIT */
/* UDP GSO batches: several datagrams of one length to one destination handed to the kernel as
 * one message (UDP_SEGMENT, Linux >= 4.18), which takes them through its UDP/IP output once
 * and cuts them into the same datagrams. For the relay (WS -> WireGuard) and the shim
 * (relay -> WireGuard client): a full-size WireGuard stream is runs of equal lengths.
 *
 * udp_gso_build() only arranges the messages; the caller sends them with sendmmsg() and, when
 * the kernel refuses a GSO message (udp_gso_refused()), sends that message's datagrams one by
 * one and stops asking for GSO. */
#ifndef WGWS_UDPGSO_H
#define WGWS_UDPGSO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum {
	UDP_GSO_MAX_SEGS = 64,     /* datagrams per GSO message (the kernel allows more) */
	UDP_GSO_MAX_BYTES = 65000, /* payload per GSO message: under the 64 KiB of one skb */
};

/* Room for one message's UDP_SEGMENT control message. */
union udp_gso_cmsg {
	char buf[CMSG_SPACE(sizeof(uint16_t))];
	struct cmsghdr align;
};

/* Arrange iov[0..n) (one datagram each, in order) as messages to name: each run of equal
 * lengths (at most UDP_GSO_MAX_SEGS datagrams and UDP_GSO_MAX_BYTES) becomes one message with
 * as many iovecs and a UDP_SEGMENT control message in cm[m]; a datagram alone, or every
 * datagram when gso is false, is a plain message. msgs and cm need room for n. Returns the
 * number of messages; a message's msg_iovlen is its number of datagrams. */
unsigned udp_gso_build(struct mmsghdr *msgs, union udp_gso_cmsg *cm, struct iovec *iov,
		       unsigned n, void *name, socklen_t namelen, bool gso);

/* True when sendmmsg() failed on a GSO message with an errno that means "no GSO here"
 * (EIO, EINVAL, EOPNOTSUPP, ENOPROTOOPT) rather than a lost datagram. */
bool udp_gso_refused(const struct msghdr *m, int err);

/* Send the datagrams of m (a GSO message the kernel refused) one by one on fd, without
 * blocking. Returns how many went; *bytes gets their payload bytes. */
unsigned udp_gso_send_each(int fd, const struct msghdr *m, size_t *bytes);

#endif
