/* SPDX-License-Identifier: MIT */
/* The kernel backend: WireGuard's generic netlink family through libmnl
 * (reference/wireguard-jit.md §3).
 *
 * Two sockets per device. The SET socket carries one SET_DEVICE at a time, naming one peer
 * (install, update) or a small batch of keys (remove), always with NLM_F_ACK; the reply is
 * matched on sequence number and port id, and late replies to a request that timed out are
 * skipped. Never WGDEVICE_F_REPLACE_PEERS: nothing here is O(other peers) except a dump.
 *
 * The dump socket carries GET_DEVICE dumps and is always read into a 32 KiB buffer: the
 * kernel sizes each dump batch by the largest receive it has seen (capped at 32 KiB), and a
 * smaller buffer would truncate batches and lose peers (libmnl 1.0.4 has no
 * MNL_SOCKET_DUMP_SIZE). Dumps are parsed by our own loop rather than mnl_cb_run(), which
 * stops at NLM_F_DUMP_INTR: an interrupted dump is reported as it is, once, and read to
 * NLMSG_DONE. A peer whose allowed IPs did not fit one batch continues in the next with only
 * its key and the rest of its allowed IPs; the current peer is therefore held back until the
 * next element names another key or the dump ends, so the callback sees each peer once.
 * The receive loop takes its datagrams from a source, the socket or memory: wgnl_parse_dump()
 * runs the real dump parser over bytes for the unit tests and the fuzzer.
 *
 * Replies are untrusted: every attribute's type and exact length is checked before use, and
 * a lie ends the operation with -EBADMSG. Every wait is bounded by SO_RCVTIMEO. The receive
 * buffer of every dump holds the device's private key, and a request may hold a preshared
 * key: both buffers are wiped after use. Nothing here logs. */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "prov.h"
/* After prov.h: this header #defines WG_KEY_LEN, which prov.h declares as an enum. */
#include <linux/time_types.h>
#include <linux/wireguard.h>

enum {
	WGNL_RECV_LEN = 32768,    /* the kernel's largest dump batch (SKB_WITH_OVERHEAD(32K)) */
	WGNL_SEND_LEN = 8192,     /* a peer with PROV_MAX_ALLOWED IPs is < 600 bytes */
	WGNL_REMOVE_BATCH = 64,   /* keys per SET_DEVICE: 32 + 64 × 48 bytes fits WGNL_SEND_LEN */
	WGNL_TIMEOUT_S = 5,       /* per receive; a SET holds rtnl_lock, so this is generous */
	WGNL_STALE_MAX = 256,     /* foreign replies skipped while waiting for ours */
	WGNL_DUMP_MSGS_MAX = 1 << 22, /* > MAX_PEERS_PER_DEVICE: a dump that never ends lies */
};

struct wgnl {
	struct mnl_socket *set_sock, *dump_sock;
	uint32_t set_portid, dump_portid;
	uint16_t family;
	uint32_t seq;
	char ifname[IF_NAMESIZE];
	/* Replies on either socket (only one operation runs at a time) and requests. */
	_Alignas(8) uint8_t rx[WGNL_RECV_LEN];
	_Alignas(8) uint8_t tx[WGNL_SEND_LEN];
};

/* ---- message builders ---- */

static bool ifname_ok(const char *ifname)
{
	return ifname && *ifname && strnlen(ifname, IF_NAMESIZE) < IF_NAMESIZE;
}

/* nlmsghdr + genlmsghdr + IFNAME, or NULL when size cannot hold them. */
static struct nlmsghdr *put_request(void *buf, size_t size, uint16_t type, uint16_t flags,
				    uint32_t seq, uint8_t cmd, const char *ifname)
{
	struct genlmsghdr *genl;
	struct nlmsghdr *nlh;

	if (size < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(*genl)))
		return NULL;
	/* libmnl 1.0.4 does not zero attribute padding: without this, stale bytes of an
	 * earlier request (a preshared key) would go to the kernel as padding. */
	memset(buf, 0, size);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	genl = mnl_nlmsg_put_extra_header(nlh, sizeof(*genl));
	genl->cmd = cmd;
	genl->version = WG_GENL_VERSION;
	if (!mnl_attr_put_strz_check(nlh, size, WGDEVICE_A_IFNAME, ifname))
		return NULL;
	return nlh;
}

/* The endpoint as the kernel wants it: exactly a sockaddr_in or a sockaddr_in6, with only
 * the fields that mean something copied (no stray bytes from the caller's storage). */
static int put_endpoint(struct nlmsghdr *nlh, size_t size, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		struct sockaddr_in sin = { .sin_family = AF_INET };

		sin.sin_port = in->sin_port;
		sin.sin_addr = in->sin_addr;
		return mnl_attr_put_check(nlh, size, WGPEER_A_ENDPOINT, sizeof(sin), &sin) ? 0
											: -EMSGSIZE;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

		sin6.sin6_port = in6->sin6_port;
		sin6.sin6_addr = in6->sin6_addr;
		sin6.sin6_scope_id = in6->sin6_scope_id;
		return mnl_attr_put_check(nlh, size, WGPEER_A_ENDPOINT, sizeof(sin6), &sin6)
			       ? 0
			       : -EMSGSIZE;
	}
	return -EINVAL;
}

static int put_allowedip(struct nlmsghdr *nlh, size_t size, const struct cidr *c)
{
	struct nlattr *nest = mnl_attr_nest_start_check(nlh, size, 0);
	size_t len = c->family == AF_INET ? 4 : 16;

	if (!nest || !mnl_attr_put_u16_check(nlh, size, WGALLOWEDIP_A_FAMILY, c->family) ||
	    !mnl_attr_put_check(nlh, size, WGALLOWEDIP_A_IPADDR, len, c->addr) ||
	    !mnl_attr_put_u8_check(nlh, size, WGALLOWEDIP_A_CIDR_MASK, c->bits))
		return -EMSGSIZE;
	mnl_attr_nest_end(nlh, nest);
	return 0;
}

static bool cidr_ok(const struct cidr *c)
{
	return (c->family == AF_INET && c->bits <= 32) || (c->family == AF_INET6 && c->bits <= 128);
}

/* Allowed IPs are written only with WGPEER_F_REPLACE_ALLOWEDIPS, as the peer's exact list:
 * without it the kernel would add them to the old ones (and an update must not touch them). */
ssize_t wgnl_build_set_peer(void *buf, size_t size, uint16_t family, uint32_t seq,
			    const char *ifname, const struct wgdev_peer *p, uint32_t peer_flags)
{
	bool with_ips = peer_flags & WGPEER_F_REPLACE_ALLOWEDIPS;
	struct nlattr *peers, *peer, *ips;
	struct nlmsghdr *nlh;
	int ret;

	if (!ifname_ok(ifname) || p->keepalive_s > 65535 || p->n_allowed > PROV_MAX_ALLOWED ||
	    (p->endpoint.ss_family && p->endpoint.ss_family != AF_INET &&
	     p->endpoint.ss_family != AF_INET6))
		return -EINVAL;
	for (unsigned i = 0; with_ips && i < p->n_allowed; i++)
		if (!cidr_ok(&p->allowed[i]))
			return -EINVAL;

	nlh = put_request(buf, size, family, NLM_F_REQUEST | NLM_F_ACK, seq, WG_CMD_SET_DEVICE,
			  ifname);
	if (!nlh || !(peers = mnl_attr_nest_start_check(nlh, size, WGDEVICE_A_PEERS)) ||
	    !(peer = mnl_attr_nest_start_check(nlh, size, 0)) ||
	    !mnl_attr_put_check(nlh, size, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, p->pubkey) ||
	    !mnl_attr_put_u32_check(nlh, size, WGPEER_A_FLAGS, peer_flags))
		return -EMSGSIZE;
	if (p->has_psk &&
	    !mnl_attr_put_check(nlh, size, WGPEER_A_PRESHARED_KEY, WG_KEY_LEN, p->psk))
		return -EMSGSIZE;
	if (p->endpoint.ss_family) {
		ret = put_endpoint(nlh, size, &p->endpoint);
		if (ret < 0)
			return ret;
	}
	if (p->keepalive_s >= 0 &&
	    !mnl_attr_put_u16_check(nlh, size, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
				    (uint16_t)p->keepalive_s))
		return -EMSGSIZE;
	if (with_ips && p->n_allowed) {
		ips = mnl_attr_nest_start_check(nlh, size, WGPEER_A_ALLOWEDIPS);
		if (!ips)
			return -EMSGSIZE;
		for (unsigned i = 0; i < p->n_allowed; i++) {
			ret = put_allowedip(nlh, size, &p->allowed[i]);
			if (ret < 0)
				return ret;
		}
		mnl_attr_nest_end(nlh, ips);
	}
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	return nlh->nlmsg_len;
}

ssize_t wgnl_build_remove(void *buf, size_t size, uint16_t family, uint32_t seq,
			  const char *ifname, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	struct nlattr *peers, *peer;
	struct nlmsghdr *nlh;

	if (!ifname_ok(ifname) || n == 0)
		return -EINVAL;
	nlh = put_request(buf, size, family, NLM_F_REQUEST | NLM_F_ACK, seq, WG_CMD_SET_DEVICE,
			  ifname);
	if (!nlh || !(peers = mnl_attr_nest_start_check(nlh, size, WGDEVICE_A_PEERS)))
		return -EMSGSIZE;
	for (unsigned i = 0; i < n; i++) {
		peer = mnl_attr_nest_start_check(nlh, size, 0);
		if (!peer ||
		    !mnl_attr_put_check(nlh, size, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, keys[i]) ||
		    !mnl_attr_put_u32_check(nlh, size, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME))
			return -EMSGSIZE;
		mnl_attr_nest_end(nlh, peer);
	}
	mnl_attr_nest_end(nlh, peers);
	return nlh->nlmsg_len;
}

ssize_t wgnl_build_dump(void *buf, size_t size, uint16_t family, uint32_t seq, const char *ifname)
{
	struct nlmsghdr *nlh;

	if (!ifname_ok(ifname))
		return -EINVAL;
	nlh = put_request(buf, size, family, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP, seq,
			  WG_CMD_GET_DEVICE, ifname);
	return nlh ? (ssize_t)nlh->nlmsg_len : -EMSGSIZE;
}

/* ---- sending and receiving ---- */

/* Called for each reply to our request that is neither NLMSG_ERROR nor NLMSG_DONE. */
typedef int (*reply_fn)(const struct nlmsghdr *nlh, void *arg);

static int sock_open(struct mnl_socket **out, uint32_t *portid)
{
	struct timeval tv = { .tv_sec = WGNL_TIMEOUT_S };
	struct mnl_socket *s;
	int one = 1, ret;

	s = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
	if (!s)
		return -errno;
	if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		ret = -errno;
		goto out_close_sock;
	}
	/* Acks without a copy of our request (a remove batch is 3 KiB); best effort. */
	(void)mnl_socket_setsockopt(s, NETLINK_CAP_ACK, &one, sizeof(one));
	*portid = mnl_socket_get_portid(s);
	*out = s;
	return 0;

out_close_sock:
	mnl_socket_close(s);
	return ret;
}

/* Where replies come from: the socket, or datagrams already in memory (wgnl_parse_dump).
 * next() gives one datagram: its length, with *buf set, or -errno (-ETIMEDOUT when nothing
 * came in time, -EMSGSIZE for a batch bigger than our buffer). */
struct source {
	ssize_t (*next)(struct source *src, const void **buf);
};

struct sock_source {
	struct source src; /* first: a struct source * is a struct sock_source * */
	struct wgnl *nl;
	struct mnl_socket *s;
};

static ssize_t sock_next(struct source *src, const void **buf)
{
	struct sock_source *ss = (struct sock_source *)src;

	for (;;) {
		ssize_t n = mnl_socket_recvfrom(ss->s, ss->nl->rx, sizeof(ss->nl->rx));

		if (n >= 0) {
			*buf = ss->nl->rx;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -ETIMEDOUT;
		return errno == ENOSPC ? -EMSGSIZE : -errno;
	}
}

/* mnl_nlmsg_ok() without its (int) cast of nlmsg_len: libmnl 1.0.4 lets a length of 2^31 or
 * more through, and the loop would then step gigabytes past the datagram. */
static bool nlmsg_fits(const struct nlmsghdr *nlh, int len)
{
	return len >= (int)sizeof(*nlh) && nlh->nlmsg_len >= sizeof(*nlh) &&
	       nlh->nlmsg_len <= (unsigned)len;
}

/* Read replies to (portid, seq) until the ack (NLMSG_ERROR) or, for a dump, NLMSG_DONE.
 * Returns the kernel's 0/-errno, an error from fn, or a local error: -ETIMEDOUT, -EMSGSIZE
 * (a batch bigger than our buffer), -EBADMSG (a malformed reply). After fn fails the rest
 * of the reply is still read, so the socket is left clean. */
static int recv_reply(struct source *src, uint32_t portid, uint32_t seq, bool dump, reply_fn fn,
		      void *arg)
{
	unsigned stale = 0, msgs = 0;
	int ret = 0;

	for (;;) {
		const void *buf;
		ssize_t n = src->next(src, &buf);
		int len = (int)n;
		const struct nlmsghdr *nlh;

		if (n < 0)
			return (int)n;
		for (nlh = buf; nlmsg_fits(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid) {
				/* A late reply to a request that timed out. */
				if (++stale > WGNL_STALE_MAX)
					return -EPROTO;
				continue;
			}
			if (++msgs > WGNL_DUMP_MSGS_MAX)
				return -EBADMSG;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

				if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e) || e->error > 0)
					return -EBADMSG;
				return e->error ? e->error : ret;
			}
			if (nlh->nlmsg_type == NLMSG_DONE) {
				int err = 0;

				if (!dump)
					return -EBADMSG;
				if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(err))
					memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
				if (err > 0)
					return -EBADMSG;
				return err ? err : ret;
			}
			if (nlh->nlmsg_type == NLMSG_OVERRUN)
				return -ENOBUFS;
			if (nlh->nlmsg_type == NLMSG_NOOP || ret < 0)
				continue;
			ret = fn ? fn(nlh, arg) : -EBADMSG;
		}
		if (len > 0)
			return -EBADMSG; /* a truncated message */
	}
}

static int send_tx(struct wgnl *nl, struct mnl_socket *s, size_t len)
{
	ssize_t n = mnl_socket_sendto(s, nl->tx, len);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* Send len bytes of nl->tx on the SET socket and wait for the ack. */
static int request(struct wgnl *nl, size_t len, reply_fn fn, void *arg)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)nl->tx;
	struct sock_source src = { { sock_next }, nl, nl->set_sock };
	int ret = send_tx(nl, nl->set_sock, len);

	if (ret < 0)
		return ret;
	return recv_reply(&src.src, nl->set_portid, nlh->nlmsg_seq, false, fn, arg);
}

/* ---- family resolution ---- */

static int family_reply(const struct nlmsghdr *nlh, void *arg)
{
	const struct nlattr *attr;
	uint16_t *family = arg;

	if (nlh->nlmsg_type != GENL_ID_CTRL ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(struct genlmsghdr))
		return -EBADMSG;
	mnl_attr_for_each(attr, nlh, sizeof(struct genlmsghdr)) {
		if (mnl_attr_get_type(attr) != CTRL_ATTR_FAMILY_ID)
			continue;
		if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
			return -EBADMSG;
		*family = mnl_attr_get_u16(attr);
	}
	return 0;
}

static int resolve_family(struct wgnl *nl)
{
	struct genlmsghdr *genl;
	struct nlmsghdr *nlh;
	uint16_t family = 0;
	int ret;

	memset(nl->tx, 0, sizeof(nl->tx)); /* padding, as in put_request() */
	nlh = mnl_nlmsg_put_header(nl->tx);
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++nl->seq;
	genl = mnl_nlmsg_put_extra_header(nlh, sizeof(*genl));
	genl->cmd = CTRL_CMD_GETFAMILY;
	genl->version = 1;
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	ret = request(nl, nlh->nlmsg_len, family_reply, &family);
	if (ret == -ENOENT)
		return -EPROTONOSUPPORT; /* no wireguard module */
	if (ret < 0)
		return ret;
	if (family == 0 || family == GENL_ID_CTRL)
		return -EBADMSG;
	nl->family = family;
	return 0;
}

/* ---- dump parsing ---- */

struct dump_ctx {
	uint16_t family;
	bool interrupted;             /* NLM_F_DUMP_INTR seen: reported as it is */
	struct wgdev_info *info;      /* may be NULL */
	uint8_t private_key[WG_KEY_LEN];
	bool has_private_key;
	wgdev_peer_fn fn;             /* NULL: peers are checked, not delivered */
	void *arg;
	int fn_ret;                   /* non-zero: fn asked to stop; no more deliveries */
	bool has_cur;
	struct wgdev_peer_info cur;   /* held back until the next key differs or the dump ends */
};

static int parse_allowedip(const struct nlattr *nest, struct cidr *c)
{
	const struct nlattr *attr;
	uint16_t family = 0;
	bool has_addr = false, has_bits = false;
	size_t addr_len = 0;

	memset(c, 0, sizeof(*c));
	mnl_attr_for_each_nested(attr, nest) {
		switch (mnl_attr_get_type(attr)) {
		case WGALLOWEDIP_A_FAMILY:
			if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
				return -EBADMSG;
			family = mnl_attr_get_u16(attr);
			break;
		case WGALLOWEDIP_A_IPADDR:
			addr_len = mnl_attr_get_payload_len(attr);
			if (addr_len != 4 && addr_len != 16)
				return -EBADMSG;
			memcpy(c->addr, mnl_attr_get_payload(attr), addr_len);
			has_addr = true;
			break;
		case WGALLOWEDIP_A_CIDR_MASK:
			if (mnl_attr_validate(attr, MNL_TYPE_U8) < 0)
				return -EBADMSG;
			c->bits = mnl_attr_get_u8(attr);
			has_bits = true;
			break;
		default: /* newer attributes (WGALLOWEDIP_A_FLAGS) */
			break;
		}
	}
	if (!has_addr || !has_bits || (family != AF_INET && family != AF_INET6) ||
	    addr_len != (family == AF_INET ? 4u : 16u))
		return -EBADMSG;
	c->family = (uint8_t)family;
	return cidr_ok(c) ? 0 : -EBADMSG;
}

static int parse_endpoint(const struct nlattr *attr, struct sockaddr_storage *ss)
{
	size_t len = mnl_attr_get_payload_len(attr);
	sa_family_t af;

	if (len < sizeof(af))
		return -EBADMSG;
	memcpy(&af, mnl_attr_get_payload(attr), sizeof(af));
	if (!((af == AF_INET && len == sizeof(struct sockaddr_in)) ||
	      (af == AF_INET6 && len == sizeof(struct sockaddr_in6))))
		return -EBADMSG;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, mnl_attr_get_payload(attr), len);
	return 0;
}

static int parse_peer(const struct nlattr *nest, struct wgdev_peer_info *p)
{
	const struct nlattr *attr, *ip;
	struct __kernel_timespec ts;
	bool has_key = false;
	int ret;

	memset(p, 0, sizeof(*p));
	mnl_attr_for_each_nested(attr, nest) {
		switch (mnl_attr_get_type(attr)) {
		case WGPEER_A_PUBLIC_KEY:
			if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, WG_KEY_LEN) < 0)
				return -EBADMSG;
			memcpy(p->pubkey, mnl_attr_get_payload(attr), WG_KEY_LEN);
			has_key = true;
			break;
		case WGPEER_A_LAST_HANDSHAKE_TIME:
			if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, sizeof(ts)) < 0)
				return -EBADMSG;
			memcpy(&ts, mnl_attr_get_payload(attr), sizeof(ts));
			p->last_handshake_s = ts.tv_sec > 0 ? (int64_t)ts.tv_sec : 0;
			break;
		case WGPEER_A_RX_BYTES:
			if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0)
				return -EBADMSG;
			p->rx_bytes = mnl_attr_get_u64(attr);
			break;
		case WGPEER_A_TX_BYTES:
			if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0)
				return -EBADMSG;
			p->tx_bytes = mnl_attr_get_u64(attr);
			break;
		case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
			if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
				return -EBADMSG;
			p->keepalive_s = mnl_attr_get_u16(attr);
			break;
		case WGPEER_A_ENDPOINT:
			ret = parse_endpoint(attr, &p->endpoint);
			if (ret < 0)
				return ret;
			break;
		case WGPEER_A_ALLOWEDIPS:
			if (mnl_attr_validate(attr, MNL_TYPE_NESTED) < 0)
				return -EBADMSG;
			mnl_attr_for_each_nested(ip, attr) {
				struct cidr c;

				if (mnl_attr_validate(ip, MNL_TYPE_NESTED) < 0)
					return -EBADMSG;
				ret = parse_allowedip(ip, &c);
				if (ret < 0)
					return ret;
				if (p->n_allowed < PROV_MAX_ALLOWED)
					p->allowed[p->n_allowed] = c;
				p->n_allowed++;
			}
			break;
		default: /* PRESHARED_KEY (not kept), PROTOCOL_VERSION, newer attributes */
			break;
		}
	}
	return has_key ? 0 : -EBADMSG;
}

static void deliver(struct dump_ctx *ctx)
{
	if (ctx->has_cur && ctx->fn && !ctx->fn_ret)
		ctx->fn_ret = ctx->fn(ctx->arg, &ctx->cur);
	ctx->has_cur = false;
}

/* One peer element: either the continuation of the held-back peer (the kernel split its
 * allowed IPs across batches) or a new peer, which releases the held-back one. */
static void add_peer(struct dump_ctx *ctx, const struct wgdev_peer_info *p)
{
	struct wgdev_peer_info *c = &ctx->cur;

	if (ctx->has_cur && !memcmp(c->pubkey, p->pubkey, WG_KEY_LEN)) {
		for (unsigned i = 0; i < p->n_allowed; i++) {
			if (i < PROV_MAX_ALLOWED && c->n_allowed < PROV_MAX_ALLOWED)
				c->allowed[c->n_allowed] = p->allowed[i];
			c->n_allowed++;
		}
		return;
	}
	deliver(ctx);
	*c = *p;
	ctx->has_cur = true;
}

static int dump_reply(const struct nlmsghdr *nlh, void *arg)
{
	const struct genlmsghdr *genl = mnl_nlmsg_get_payload(nlh);
	struct dump_ctx *ctx = arg;
	const struct nlattr *attr, *elt;
	struct wgdev_peer_info p;
	int ret;

	if (nlh->nlmsg_type != ctx->family || mnl_nlmsg_get_payload_len(nlh) < sizeof(*genl) ||
	    genl->cmd != WG_CMD_GET_DEVICE)
		return -EBADMSG;
	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		ctx->interrupted = true;
	mnl_attr_for_each(attr, nlh, sizeof(*genl)) {
		switch (mnl_attr_get_type(attr)) {
		case WGDEVICE_A_IFINDEX:
			if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
				return -EBADMSG;
			if (ctx->info)
				ctx->info->ifindex = mnl_attr_get_u32(attr);
			break;
		case WGDEVICE_A_LISTEN_PORT:
			if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
				return -EBADMSG;
			if (ctx->info)
				ctx->info->listen_port = mnl_attr_get_u16(attr);
			break;
		case WGDEVICE_A_PUBLIC_KEY:
			if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, WG_KEY_LEN) < 0)
				return -EBADMSG;
			if (ctx->info) {
				memcpy(ctx->info->public_key, mnl_attr_get_payload(attr),
				       WG_KEY_LEN);
				ctx->info->has_public_key = true;
			}
			break;
		case WGDEVICE_A_PRIVATE_KEY:
			if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, WG_KEY_LEN) < 0)
				return -EBADMSG;
			memcpy(ctx->private_key, mnl_attr_get_payload(attr), WG_KEY_LEN);
			ctx->has_private_key = true;
			break;
		case WGDEVICE_A_PEERS:
			if (mnl_attr_validate(attr, MNL_TYPE_NESTED) < 0)
				return -EBADMSG;
			mnl_attr_for_each_nested(elt, attr) {
				if (mnl_attr_validate(elt, MNL_TYPE_NESTED) < 0)
					return -EBADMSG;
				ret = parse_peer(elt, &p);
				if (ret < 0)
					return ret;
				add_peer(ctx, &p);
			}
			break;
		default: /* IFNAME, FWMARK, newer attributes */
			break;
		}
	}
	return 0;
}

/* A dump socket that saw a local error may still hold the rest of that dump (and the kernel
 * refuses a new dump while one runs): replace it. */
static int reset_dump_sock(struct wgnl *nl)
{
	mnl_socket_close(nl->dump_sock);
	nl->dump_sock = NULL;
	return sock_open(&nl->dump_sock, &nl->dump_portid);
}

/* The dump's replies are all in (ret: what recv_reply() said): the held-back peer goes out. */
static int dump_end(struct dump_ctx *ctx, int ret)
{
	if (ret < 0)
		return ret;
	deliver(ctx); /* the last peer: nothing can continue it now */
	return ctx->fn_ret;
}

/* get_info's part of a finished dump: the device's private key, or -ENOKEY. */
static int dump_take_key(const struct dump_ctx *ctx, int ret, uint8_t *private_key)
{
	if (ret == 0 && private_key) {
		if (ctx->has_private_key)
			memcpy(private_key, ctx->private_key, WG_KEY_LEN);
		else
			ret = -ENOKEY;
	}
	return ret;
}

static int run_dump(struct wgnl *nl, struct dump_ctx *ctx)
{
	struct sock_source src;
	ssize_t len;
	int ret;

	if (!nl->dump_sock) {
		ret = sock_open(&nl->dump_sock, &nl->dump_portid);
		if (ret < 0)
			return ret;
	}
	ctx->family = nl->family;
	len = wgnl_build_dump(nl->tx, sizeof(nl->tx), nl->family, ++nl->seq, nl->ifname);
	if (len < 0)
		return (int)len;
	ret = send_tx(nl, nl->dump_sock, (size_t)len);
	if (ret < 0)
		return ret;
	src = (struct sock_source){ { sock_next }, nl, nl->dump_sock };
	ret = recv_reply(&src.src, nl->dump_portid, nl->seq, true, dump_reply, ctx);
	sodium_memzero(nl->rx, sizeof(nl->rx)); /* the first batch holds the private key */
	if (ret == -ETIMEDOUT || ret == -EMSGSIZE || ret == -EBADMSG || ret == -EPROTO ||
	    ret == -ENOBUFS) {
		int r = reset_dump_sock(nl);

		(void)r; /* a failed reopen is retried by the next dump */
	}
	return dump_end(ctx, ret);
}

struct mem_source {
	struct source src; /* first, as in struct sock_source */
	const void *const *dgram;
	const size_t *len;
	unsigned n, next;
};

static ssize_t mem_next(struct source *src, const void **buf)
{
	struct mem_source *ms = (struct mem_source *)src;
	size_t len;

	if (ms->next == ms->n)
		return -ETIMEDOUT; /* the socket would have waited WGNL_TIMEOUT_S for more */
	len = ms->len[ms->next];
	if (len > WGNL_RECV_LEN)
		return -EMSGSIZE; /* the socket would have truncated it */
	*buf = ms->dgram[ms->next++];
	return (ssize_t)len;
}

int wgnl_parse_dump(const void *const *dgram, const size_t *len, unsigned n, uint16_t family,
		    uint32_t portid, uint32_t seq, struct wgdev_info *info, uint8_t *private_key,
		    wgdev_peer_fn fn, void *arg)
{
	struct mem_source src = { { mem_next }, dgram, len, n, 0 };
	struct dump_ctx ctx = { .family = family, .info = info, .fn = fn, .arg = arg };
	int ret;

	if (info)
		memset(info, 0, sizeof(*info));
	ret = recv_reply(&src.src, portid, seq, true, dump_reply, &ctx);
	ret = dump_end(&ctx, ret);
	ret = dump_take_key(&ctx, ret, private_key);
	sodium_memzero(ctx.private_key, sizeof(ctx.private_key));
	return ret;
}

/* ---- the backend ---- */

static int wgnl_get_info(void *impl, struct wgdev_info *info, uint8_t *private_key)
{
	struct dump_ctx ctx = { .info = info };
	int ret;

	memset(info, 0, sizeof(*info));
	ret = run_dump(impl, &ctx);
	ret = dump_take_key(&ctx, ret, private_key);
	sodium_memzero(ctx.private_key, sizeof(ctx.private_key));
	return ret;
}

static int wgnl_dump(void *impl, wgdev_peer_fn fn, void *arg)
{
	struct dump_ctx ctx = { .fn = fn, .arg = arg };
	int ret = run_dump(impl, &ctx);

	sodium_memzero(ctx.private_key, sizeof(ctx.private_key));
	return ret;
}

static int set_peer(struct wgnl *nl, const struct wgdev_peer *p, uint32_t flags)
{
	ssize_t len = wgnl_build_set_peer(nl->tx, sizeof(nl->tx), nl->family, ++nl->seq,
					  nl->ifname, p, flags);
	int ret;

	if (len < 0)
		return (int)len;
	ret = request(nl, (size_t)len, NULL, NULL);
	sodium_memzero(nl->tx, (size_t)len); /* may hold a preshared key */
	return ret;
}

static int wgnl_install(void *impl, const struct wgdev_peer *p)
{
	return set_peer(impl, p, WGPEER_F_REPLACE_ALLOWEDIPS);
}

static int wgnl_update(void *impl, const struct wgdev_peer *p)
{
	return set_peer(impl, p, WGPEER_F_UPDATE_ONLY);
}

/* One message per WGNL_REMOVE_BATCH keys (callers pass small batches: each removal costs an
 * RCU grace period under rtnl_lock). */
static int wgnl_remove(void *impl, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	struct wgnl *nl = impl;

	for (unsigned i = 0; i < n; i += WGNL_REMOVE_BATCH) {
		unsigned k = n - i < WGNL_REMOVE_BATCH ? n - i : WGNL_REMOVE_BATCH;
		ssize_t len = wgnl_build_remove(nl->tx, sizeof(nl->tx), nl->family, ++nl->seq,
						nl->ifname, keys + i, k);
		int ret;

		if (len < 0)
			return (int)len;
		ret = request(nl, (size_t)len, NULL, NULL);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void wgnl_close(void *impl)
{
	struct wgnl *nl = impl;

	if (!nl)
		return;
	if (nl->set_sock)
		mnl_socket_close(nl->set_sock);
	if (nl->dump_sock)
		mnl_socket_close(nl->dump_sock);
	sodium_memzero(nl, sizeof(*nl));
	free(nl);
}

int wgnl_open(void **impl, const char *ifname)
{
	struct wgdev_info info;
	struct wgnl *nl;
	int ret;

	if (!ifname_ok(ifname))
		return -EINVAL;
	nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	strcpy(nl->ifname, ifname);
	nl->seq = (uint32_t)time(NULL);
	ret = sock_open(&nl->set_sock, &nl->set_portid);
	if (ret < 0)
		goto out_free;
	ret = sock_open(&nl->dump_sock, &nl->dump_portid);
	if (ret < 0)
		goto out_free;
	ret = resolve_family(nl);
	if (ret < 0)
		goto out_free;
	/* Is it ours? The only per-device read is a dump (of its peers too, once). */
	ret = wgnl_get_info(nl, &info, NULL);
	if (ret == -EOPNOTSUPP)
		ret = -ENODEV; /* a device, but not a WireGuard one (e.g. wireguard-go's TUN) */
	if (ret < 0)
		goto out_free;
	*impl = nl;
	return 0;

out_free:
	wgnl_close(nl);
	return ret;
}

const struct wgdev_ops wgnl_ops = {
	.name = "netlink",
	.install = wgnl_install,
	.update = wgnl_update,
	.remove = wgnl_remove,
	.dump = wgnl_dump,
	.get_info = wgnl_get_info,
	.close = wgnl_close,
};
