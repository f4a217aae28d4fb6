/* SPDX-License-Identifier: MIT */
#include "udpgso.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>

unsigned udp_gso_build(struct mmsghdr *msgs, union udp_gso_cmsg *cm, struct iovec *iov,
		       unsigned n, void *name, socklen_t namelen, bool gso)
{
	unsigned m = 0;

	for (unsigned i = 0; i < n;) {
		size_t len = iov[i].iov_len;
		unsigned j = i + 1;

		while (gso && j < n && iov[j].iov_len == len && j - i < UDP_GSO_MAX_SEGS &&
		       (j - i + 1) * len <= UDP_GSO_MAX_BYTES)
			j++;
		memset(&msgs[m], 0, sizeof(msgs[m]));
		msgs[m].msg_hdr.msg_name = name;
		msgs[m].msg_hdr.msg_namelen = namelen;
		msgs[m].msg_hdr.msg_iov = &iov[i];
		msgs[m].msg_hdr.msg_iovlen = j - i;
		if (j - i > 1) {
			struct cmsghdr *c = &cm[m].align;
			uint16_t seg = (uint16_t)len;

			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(seg));
			memcpy(CMSG_DATA(c), &seg, sizeof(seg));
			msgs[m].msg_hdr.msg_control = cm[m].buf;
			msgs[m].msg_hdr.msg_controllen = sizeof(cm[m].buf);
		}
		m++;
		i = j;
	}
	return m;
}

unsigned udp_gso_send_each(int fd, const struct msghdr *m, size_t *bytes)
{
	struct msghdr one = *m;
	unsigned n = 0;

	*bytes = 0;
	one.msg_control = NULL;
	one.msg_controllen = 0;
	one.msg_iovlen = 1;
	for (size_t k = 0; k < m->msg_iovlen; k++) {
		one.msg_iov = &m->msg_iov[k];
		if (sendmsg(fd, &one, MSG_DONTWAIT) >= 0) {
			n++;
			*bytes += m->msg_iov[k].iov_len;
		}
	}
	return n;
}

bool udp_gso_refused(const struct msghdr *m, int err)
{
	return m->msg_iovlen > 1 &&
	       (err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT);
}
