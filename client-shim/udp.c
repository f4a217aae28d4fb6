/* SPDX-License-Identifier: MIT */
/* The shim's local UDP socket (session.h has the whole picture): datagrams from WireGuard
 * come in by recvmmsg and go to their source's session; records from the relay go back to
 * WireGuard by sendmmsg, runs of one length as UDP GSO messages. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "session.h"

/* The kernel refused the GSO message m: GSO off for good, m's datagrams one by one. */
static void sendq_gso_fallback(struct shim *sh, struct session *s, struct msghdr *m, int err)
{
	size_t bytes;
	unsigned n;

	sh->gso_off = true;
	log_warnx("UDP GSO refused by the kernel (%s): datagrams to WireGuard go one by one",
		  strerror(err));
	n = udp_gso_send_each(sh->udp_fd, m, &bytes);
	s->rx_pkts += n;
	s->drop_udp += m->msg_iovlen - n;
}

void sendq_flush(struct shim *sh)
{
	struct session *s = sh->ssess;
	unsigned i = 0, m;

	if (!sh->sn)
		goto out;
	m = udp_gso_build(sh->smsg, sh->scmsg, sh->siov, sh->sn, &s->src, s->src_len,
			  !sh->gso_off && sh->siov[0].iov_len >= SHIM_GSO_MIN_LEN);
	while (i < m) {
		struct msghdr *h = &sh->smsg[i].msg_hdr;
		int r = sendmmsg(sh->udp_fd, sh->smsg + i, m - i, MSG_DONTWAIT);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && udp_gso_refused(h, errno)) {
			sendq_gso_fallback(sh, s, h, errno);
			i++;
			continue;
		}
		if (r < 0 && errno == EMSGSIZE) {
			s->drop_udp += h->msg_iovlen; /* this message: go on with the next */
			i++;
			continue;
		}
		if (r <= 0) {
			/* One destination for the whole batch: socket full or WireGuard gone,
			 * the rest would fail the same way. Drop them, don't retry each. */
			for (; i < m; i++)
				s->drop_udp += sh->smsg[i].msg_hdr.msg_iovlen;
			break;
		}
		for (int k = 0; k < r; k++)
			s->rx_pkts += sh->smsg[i + (unsigned)k].msg_hdr.msg_iovlen;
		i += (unsigned)r;
	}
out:
	sh->sn = 0;
	sh->ssess = NULL;
}

/* Send s's pending batch first if one of its views points into p[0..len), which the
 * caller is about to overwrite. */
void sendq_release(struct session *s, const uint8_t *p, size_t len)
{
	struct shim *sh = s->sh;

	if (sh->ssess != s)
		return;
	for (unsigned i = 0; i < sh->sn; i++) {
		uintptr_t v = (uintptr_t)sh->siov[i].iov_base;

		if (v < (uintptr_t)p + len && v + sh->siov[i].iov_len > (uintptr_t)p) {
			sendq_flush(sh);
			return;
		}
	}
}

void sendq_add(struct session *s, const uint8_t *rec, size_t len)
{
	struct shim *sh = s->sh;
	unsigned i;

	if (sh->ssess != s && sh->sn)
		sendq_flush(sh);
	sh->ssess = s;
	i = sh->sn++;
	sh->siov[i].iov_base = (void *)rec;
	sh->siov[i].iov_len = len;
	if (sh->sn == SHIM_BATCH)
		sendq_flush(sh);
}

void shim_on_udp(struct shim *sh)
{
	for (int round = 0; round < 8; round++) {
		int n;

		for (unsigned i = 0; i < SHIM_BATCH; i++) {
			sh->riov[i].iov_base = sh->rbuf + (size_t)i * SHIM_DGRAM_BUF;
			sh->riov[i].iov_len = SHIM_DGRAM_BUF;
			memset(&sh->rmsg[i].msg_hdr, 0, sizeof(sh->rmsg[i].msg_hdr));
			sh->rmsg[i].msg_hdr.msg_name = &sh->raddr[i];
			sh->rmsg[i].msg_hdr.msg_namelen = sizeof(sh->raddr[i]);
			sh->rmsg[i].msg_hdr.msg_iov = &sh->riov[i];
			sh->rmsg[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(sh->udp_fd, sh->rmsg, SHIM_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				log_warn("recvmmsg");
			return;
		}
		sh->rn = (unsigned)n;
		for (unsigned i = 0; i < sh->rn; i++) {
			struct session *s;

			sh->rsess[i] = NULL;
			sh->rskip[i] = false;
			s = session_lookup(sh, &sh->raddr[i]);
			if (!s) {
				s = session_new(sh, &sh->raddr[i], sh->rmsg[i].msg_hdr.msg_namelen);
				if (!s) {
					sh->drop_nosession++;
					continue;
				}
				sh->rsess[i] = s;
				s->batch_n = 0;
				log_info("%s: new local source, connecting to %s", s->name,
					 sh->conf->relay_strs[sh->relay_cur]);
				session_connect(s); /* may fail at once, but never frees s */
			}
			sh->rsess[i] = s;
			s->last_local = sh->now;
			s->batch_n++;
			if ((sh->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) ||
			    sh->rmsg[i].msg_len > FRAME_MAX_LEN) {
				sh->rskip[i] = true;
				s->drop_big++;
			}
		}
		for (unsigned i = 0; i < sh->rn; i++) {
			struct session *s = sh->rsess[i];

			if (!s || !s->batch_n)
				continue;
			s->batch_n = 0;
			if (s->state == S_OPEN) {
				emit_batch(sh, s, i);
				if (!s->want_write) /* else EPOLLOUT is armed and will write */
					(void)session_flush(s);
				continue;
			}
			for (unsigned j = i; j < sh->rn; j++)
				if (sh->rsess[j] == s && !sh->rskip[j])
					queue_push(s, sh->riov[j].iov_base, sh->rmsg[j].msg_len);
		}
		sh->rn = 0;
		if (n < SHIM_BATCH)
			return;
	}
}
