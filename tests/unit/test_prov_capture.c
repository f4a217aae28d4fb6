/* SPDX-License-Identifier: MIT */
/* Unit tests for the AF_PACKET capture of handshake initiations (provisioner/capture.c)
 * through prov.h.
 *
 * The filter is run here by a small classic-BPF interpreter (only the instructions the
 * program may use; anything else fails the test, as does a backward or out-of-range jump)
 * over crafted IPv4 and IPv6 packets around a real initiation captured from wireguard-go
 * (shared/vectors/wireguard-go-initiations.txt). Each case states what the filter and
 * what capture_parse() must say: they agree, except where the parser knows more (a lying
 * IP length) or the filter does (the ethertype and packet type, which are not in the
 * packet's bytes). Random single-byte corruptions check that agreement beyond the table.
 * The kernel's own checker validates the program on an ordinary UDP socket (no privilege
 * needed); capture_drain() runs on a socketpair. As root, a last test captures real
 * initiations sent over loopback in a private network namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "bpf_interp.h"
#include "prov.h"

static char cur_case[96] = "?";

#define CASE(...) snprintf(cur_case, sizeof(cur_case), __VA_ARGS__)

#include "expect.h"

enum {
	PORT = 51820,
	SRC_PORT = 40000,
	PKT_MAX = 600,
	INIT_LEN = 148,
};

/* The first initiation of the captured vectors (any 148 bytes starting 01 00 00 00 would
 * do: the filter looks no further; this one is real). */
static const char initiation_hex[] =
	"01000000d3b72c11d5a1e2662f294fd0588a5c2db348afab37a7ee7463653438ded521257ea16474b816b377"
	"3ddb9d9539cb1d01071b5a97025a601723cebd53865a8a74fdc41850ac29cfff9f1f0a371da0ee035be90e06"
	"e023aed0b7f0eedbdcf98761c00e09b45039c104b2e9938e832dc8147765711e314a1e9b0c52b9b1d11367bd"
	"00000000000000000000000000000000";

static uint8_t initiation[INIT_LEN];

static int setup(void **state)
{
	size_t len = 0;

	(void)state;
	if (sodium_hex2bin(initiation, sizeof(initiation), initiation_hex, strlen(initiation_hex),
			   NULL, &len, NULL) != 0 || len != INIT_LEN)
		return -1;
	return 0;
}


/* --- packets ------------------------------------------------------------------------------ */

/* One packet as the AF_PACKET socket presents it. Zero fields take the default: a good
 * initiation from 192.0.2.7:40000 or [2001:db8::7]:40000 to PORT. */
struct pkt_spec {
	int family;           /* 4 or 6 */
	unsigned ihl;         /* IPv4 header words (5; 6..15 with NOP options) */
	uint8_t version;      /* the version nibble written */
	uint8_t proto;        /* IPv4 protocol / IPv6 next header */
	uint16_t frag;        /* IPv4 flags and fragment offset */
	uint16_t dport;
	size_t payload_len;   /* UDP payload bytes (148) */
	int udp_len_delta;    /* the UDP length field minus the true one */
	int ip_len_delta;     /* IPv4 total length / IPv6 payload length, likewise */
	uint32_t type;        /* first payload word, big-endian as BPF sees it (0x01000000) */
	bool hop_by_hop;      /* IPv6: an 8-byte hop-by-hop header before UDP */
	bool link_local;      /* IPv6: the source is fe80::7 */
	size_t trailer;       /* bytes after the IP datagram (a frame check sequence) */
	size_t cut;           /* bytes missing from the end (truncated) */
	uint16_t ethertype;   /* skb->protocol (the family's by default) */
	uint32_t pkttype;     /* 0 = PACKET_HOST */
};

static size_t build(const struct pkt_spec *s, uint8_t pkt[static PKT_MAX], size_t *hdr_len)
{
	size_t payload = s->payload_len ? s->payload_len : INIT_LEN;
	size_t udp_len = 8 + payload, hlen, len;
	uint32_t type = s->type ? s->type : 0x01000000u;
	uint8_t proto = s->proto ? s->proto : IPPROTO_UDP;
	uint16_t dport = s->dport ? s->dport : PORT;
	uint8_t *udp;

	memset(pkt, 0, PKT_MAX);
	if (s->family == 4) {
		unsigned ihl = s->ihl ? s->ihl : 5;
		size_t tot;

		hlen = ihl * 4; /* an IHL under 5 puts UDP over the addresses: it must not pass */
		tot = hlen + udp_len;
		pkt[0] = (uint8_t)((s->version ? s->version : 4) << 4 | ihl);
		pkt[2] = (uint8_t)((tot + s->ip_len_delta) >> 8);
		pkt[3] = (uint8_t)(tot + s->ip_len_delta);
		pkt[6] = (uint8_t)(s->frag >> 8);
		pkt[7] = (uint8_t)s->frag;
		pkt[8] = 64;
		pkt[9] = proto;
		memcpy(pkt + 12, "\xc0\x00\x02\x07", 4);
		memcpy(pkt + 16, "\xc0\x00\x02\x01", 4);
		if (hlen > 20)
			memset(pkt + 20, 1, hlen - 20); /* NOP options */
	} else {
		size_t ip_payload = udp_len + (s->hop_by_hop ? 8 : 0);

		hlen = 40 + (s->hop_by_hop ? 8 : 0);
		pkt[0] = (uint8_t)((s->version ? s->version : 6) << 4);
		pkt[4] = (uint8_t)((ip_payload + s->ip_len_delta) >> 8);
		pkt[5] = (uint8_t)(ip_payload + s->ip_len_delta);
		pkt[6] = s->hop_by_hop ? 0 : proto;
		pkt[7] = 64;
		memcpy(pkt + 8, s->link_local ? "\xfe\x80\x00\x00" : "\x20\x01\x0d\xb8", 4);
		pkt[23] = 7;
		memcpy(pkt + 24, "\x20\x01\x0d\xb8", 4);
		pkt[39] = 1;
		if (s->hop_by_hop) {
			pkt[40] = proto;
			pkt[42] = 1; /* PadN, 4 bytes */
			pkt[43] = 4;
		}
	}
	udp = pkt + hlen;
	udp[0] = SRC_PORT >> 8;
	udp[1] = SRC_PORT & 0xff;
	udp[2] = (uint8_t)(dport >> 8);
	udp[3] = (uint8_t)dport;
	udp[4] = (uint8_t)((udp_len + s->udp_len_delta) >> 8);
	udp[5] = (uint8_t)(udp_len + s->udp_len_delta);
	memcpy(udp + 8, initiation, payload < INIT_LEN ? payload : INIT_LEN);
	udp[8] = (uint8_t)(type >> 24);
	udp[9] = (uint8_t)(type >> 16);
	udp[10] = (uint8_t)(type >> 8);
	udp[11] = (uint8_t)type;
	len = hlen + udp_len + s->trailer;
	assert_true(len <= PKT_MAX && s->cut <= len);
	memset(pkt + hlen + udp_len, 0xee, s->trailer);
	*hdr_len = hlen;
	return len - s->cut;
}

static struct bpf_ctx ctx_of(const struct pkt_spec *s)
{
	struct bpf_ctx c = {
		.protocol = s->ethertype ? s->ethertype : s->family == 4 ? ETH_P_IP : ETH_P_IPV6,
		.pkttype = s->pkttype,
	};

	return c;
}

static uint32_t run_filter(const uint8_t *pkt, size_t len, const struct bpf_ctx *ctx)
{
	struct sock_filter prog[CAPTURE_FILTER_MAX];
	const char *bad;
	uint32_t verdict;
	unsigned n = capture_filter(PORT, prog);

	assert_true(n > 0 && n <= CAPTURE_FILTER_MAX);
	verdict = bpf_run(prog, n, pkt, len, ctx, &bad);
	if (bad)
		fail_msg("case %s: the interpreter met %s", cur_case, bad);
	return verdict;
}

/* capture_parse agrees on pkt, and on success says where the message and the sender are. */
static void check_parse(const struct pkt_spec *s, const uint8_t *pkt, size_t len, size_t hlen,
			bool want)
{
	struct sockaddr_storage src;
	const uint8_t *msg = NULL;
	int ret;

	memset(&src, 0xaa, sizeof(src));
	ret = capture_parse(pkt, len, PORT, &msg, &src);
	EXPECT_EQ(ret, want ? 0 : -EINVAL);
	if (!want)
		return;
	EXPECT(msg == pkt + hlen + 8);
	EXPECT(msg[0] == 1 && memcmp(msg + 4, initiation + 4, INIT_LEN - 4) == 0);
	if (s->family == 4) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&src;

		EXPECT_EQ(sin->sin_family, AF_INET);
		EXPECT_EQ(ntohs(sin->sin_port), SRC_PORT);
		EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0xc0000207);
		EXPECT(memcmp(sin->sin_zero, "\0\0\0\0\0\0\0\0", 8) == 0);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&src;
		struct in6_addr want6;

		assert_int_equal(inet_pton(AF_INET6, s->link_local ? "fe80::7" : "2001:db8::7",
					   &want6), 1);
		EXPECT_EQ(sin6->sin6_family, AF_INET6);
		EXPECT_EQ(ntohs(sin6->sin6_port), SRC_PORT);
		EXPECT(memcmp(&sin6->sin6_addr, &want6, 16) == 0);
		EXPECT_EQ(sin6->sin6_scope_id, 0);
		EXPECT_EQ(sin6->sin6_flowinfo, 0);
	}
}

/* --- the table ------------------------------------------------------------------------- */

struct pkt_case {
	const char *name;
	struct pkt_spec s;
	bool filter, parse; /* accepted by each */
};

static const struct pkt_case cases[] = {
	/* IPv4 */
	{ "v4 initiation", { .family = 4 }, true, true },
	{ "v4 DF set", { .family = 4, .frag = 0x4000 }, true, true },
	{ "v4 IHL 6 (options)", { .family = 4, .ihl = 6 }, true, true },
	{ "v4 IHL 15", { .family = 4, .ihl = 15 }, true, true },
	{ "v4 link trailer (FCS)", { .family = 4, .trailer = 4 }, true, true },
	{ "v4 IHL 6 with trailer", { .family = 4, .ihl = 6, .trailer = 4 }, true, true },
	{ "v4 IHL 4", { .family = 4, .ihl = 4 }, false, false },
	{ "v4 MF set", { .family = 4, .frag = 0x2000 }, false, false },
	{ "v4 last fragment (offset)", { .family = 4, .frag = 0x0001 }, false, false },
	{ "v4 fragment offset and DF", { .family = 4, .frag = 0x4100 }, false, false },
	{ "v4 wrong port", { .family = 4, .dport = PORT + 1 }, false, false },
	{ "v4 port byte-swapped", { .family = 4, .dport = 0x6cca }, false, false },
	{ "v4 UDP length 157", { .family = 4, .udp_len_delta = 1 }, false, false },
	{ "v4 UDP length 155", { .family = 4, .udp_len_delta = -1 }, false, false },
	{ "v4 type 2 response (92)", { .family = 4, .payload_len = 92, .type = 0x02000000 },
	  false, false },
	{ "v4 type 2, 148 bytes", { .family = 4, .type = 0x02000000 }, false, false },
	{ "v4 type 3 cookie (64)", { .family = 4, .payload_len = 64, .type = 0x03000000 },
	  false, false },
	{ "v4 data, 148 bytes", { .family = 4, .type = 0x04000000 }, false, false },
	{ "v4 data, 160 bytes", { .family = 4, .payload_len = 160, .type = 0x04000000 },
	  false, false },
	{ "v4 type 01 00 00 01", { .family = 4, .type = 0x01000001 }, false, false },
	{ "v4 type 01 01 00 00", { .family = 4, .type = 0x01010000 }, false, false },
	{ "v4 TCP", { .family = 4, .proto = IPPROTO_TCP }, false, false },
	{ "v4 version 5", { .family = 4, .version = 5 }, false, false },
	{ "v4 bytes, IPv6 ethertype", { .family = 4, .ethertype = ETH_P_IPV6 }, false, true },
	{ "v4 bytes, ARP ethertype", { .family = 4, .ethertype = ETH_P_ARP }, false, true },
	{ "v4 our own transmission", { .family = 4, .pkttype = PACKET_OUTGOING }, false, true },
	{ "v4 another host's", { .family = 4, .pkttype = PACKET_OTHERHOST }, false, true },
	{ "v4 broadcast", { .family = 4, .pkttype = PACKET_BROADCAST }, false, true },
	{ "v4 truncated by 1", { .family = 4, .cut = 1 }, false, false },
	{ "v4 truncated to the type", { .family = 4, .cut = INIT_LEN - 4 }, false, false },
	{ "v4 truncated to the UDP header", { .family = 4, .cut = INIT_LEN }, false, false },
	{ "v4 truncated to 20", { .family = 4, .cut = INIT_LEN + 8 }, false, false },
	{ "v4 IHL 15 truncated by 1", { .family = 4, .ihl = 15, .cut = 1 }, false, false },
	{ "v4 total length +1 (lies)", { .family = 4, .ip_len_delta = 1 }, true, false },
	{ "v4 total length +4, 4 bytes follow", { .family = 4, .ip_len_delta = 4, .trailer = 4 },
	  true, false },
	{ "v4 total length -1", { .family = 4, .ip_len_delta = -1 }, true, false },
	{ "v4 total length 0", { .family = 4, .ip_len_delta = -176 }, true, false },
	/* IPv6 */
	{ "v6 initiation", { .family = 6 }, true, true },
	{ "v6 link-local source", { .family = 6, .link_local = true }, true, true },
	{ "v6 link trailer (FCS)", { .family = 6, .trailer = 4 }, true, true },
	{ "v6 wrong port", { .family = 6, .dport = PORT - 1 }, false, false },
	{ "v6 UDP length 157", { .family = 6, .udp_len_delta = 1 }, false, false },
	{ "v6 UDP length 148", { .family = 6, .udp_len_delta = -8 }, false, false },
	{ "v6 type 2 response (92)", { .family = 6, .payload_len = 92, .type = 0x02000000 },
	  false, false },
	{ "v6 type 2, 148 bytes", { .family = 6, .type = 0x02000000 }, false, false },
	{ "v6 data, 148 bytes", { .family = 6, .type = 0x04000000 }, false, false },
	{ "v6 TCP", { .family = 6, .proto = IPPROTO_TCP }, false, false },
	{ "v6 hop-by-hop header", { .family = 6, .hop_by_hop = true }, false, false },
	{ "v6 version 4 nibble", { .family = 6, .version = 4 }, false, false },
	{ "v6 bytes, IPv4 ethertype", { .family = 6, .ethertype = ETH_P_IP }, false, true },
	{ "v6 our own transmission", { .family = 6, .pkttype = PACKET_OUTGOING }, false, true },
	{ "v6 truncated by 1", { .family = 6, .cut = 1 }, false, false },
	{ "v6 truncated to the type", { .family = 6, .cut = INIT_LEN - 4 }, false, false },
	{ "v6 truncated to 40", { .family = 6, .cut = INIT_LEN + 8 }, false, false },
	{ "v6 payload length +1 (lies)", { .family = 6, .ip_len_delta = 1 }, true, false },
	{ "v6 payload length -1", { .family = 6, .ip_len_delta = -1 }, true, false },
	{ "v6 payload length +4, 4 bytes follow", { .family = 6, .ip_len_delta = 4, .trailer = 4 },
	  true, false },
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pkt_case *c = &cases[i];
		uint8_t pkt[PKT_MAX];
		size_t hlen, len = build(&c->s, pkt, &hlen);
		struct bpf_ctx ctx = ctx_of(&c->s);

		uint32_t snap = run_filter(pkt, len, &ctx);

		CASE("%s (filter)", c->name);
		EXPECT_EQ(snap != 0, c->filter);
		if (snap)
			EXPECT(snap >= len); /* the whole packet */
		CASE("%s (parse)", c->name);
		check_parse(&c->s, pkt, len, hlen, c->parse);
	}
}

/* The port is a parameter: a program for another port accepts that port only. */
static void test_other_ports(void **state)
{
	static const uint16_t ports[] = { 1, 443, 0x00ff, 0xff00, 51821, 65535 };

	(void)state;
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		struct sock_filter prog[CAPTURE_FILTER_MAX];
		unsigned n = capture_filter(ports[i], prog);

		for (int fam = 4; fam <= 6; fam += 2) {
			struct pkt_spec s = { .family = fam, .dport = ports[i] };
			struct pkt_spec other = { .family = fam };
			struct bpf_ctx ctx = ctx_of(&s);
			uint8_t pkt[PKT_MAX];
			size_t hlen, len = build(&s, pkt, &hlen);
			struct sockaddr_storage src;
			const uint8_t *msg;
			const char *bad;

			CASE("port %u, IPv%d", ports[i], fam);
			EXPECT(bpf_run(prog, n, pkt, len, &ctx, &bad) >= len && !bad);
			EXPECT_EQ(capture_parse(pkt, len, ports[i], &msg, &src), 0);
			len = build(&other, pkt, &hlen);
			EXPECT(bpf_run(prog, n, pkt, len, &ctx, &bad) == 0 && !bad);
			EXPECT_EQ(capture_parse(pkt, len, ports[i], &msg, &src), -EINVAL);
		}
	}
}

/* Every single-byte change to a good packet: the parser never accepts what the filter
 * rejects, and the filter accepts what the parser rejects only when the change was to
 * the IP length field (which the filter does not read). */
static void test_corruptions(void **state)
{
	static const struct pkt_spec bases[] = {
		{ .family = 4 }, { .family = 4, .ihl = 7 }, { .family = 6 },
	};
	static const uint8_t values[] = { 0x00, 0x01, 0x04, 0x06, 0x11, 0x20, 0x3f, 0x45,
					  0x46, 0x4f, 0x60, 0x80, 0x9c, 0xca, 0x6c, 0xff };
	unsigned both = 0, neither = 0, length_only = 0;

	(void)state;
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		uint8_t good[PKT_MAX];
		size_t hlen, len = build(&bases[b], good, &hlen);
		struct bpf_ctx ctx = ctx_of(&bases[b]);
		size_t len_at = bases[b].family == 4 ? 2 : 4;

		for (size_t at = 0; at < len; at++) {
			for (size_t v = 0; v < sizeof(values); v++) {
				uint8_t pkt[PKT_MAX];
				struct sockaddr_storage src;
				const uint8_t *msg;
				bool f, p;

				if (good[at] == values[v])
					continue;
				memcpy(pkt, good, len);
				pkt[at] = values[v];
				CASE("IPv%d base %zu, byte %zu = %#x", bases[b].family, b, at,
				     values[v]);
				f = run_filter(pkt, len, &ctx) != 0;
				p = capture_parse(pkt, len, PORT, &msg, &src) == 0;
				if (p)
					EXPECT(f);
				if (f && !p)
					EXPECT(at == len_at || at == len_at + 1);
				both += f && p;
				neither += !f && !p;
				length_only += f && !p;
			}
		}
	}
	/* Most bytes (addresses, payload) are not looked at; many are. */
	CASE("corruption totals");
	EXPECT(both > 1000 && neither > 300 && length_only > 0);
}

/* The kernel's checker (sk_chk_filter) takes the program; any socket will do for that. */
static void test_kernel_accepts_program(void **state)
{
	struct sock_filter prog[CAPTURE_FILTER_MAX];
	struct sock_fprog fprog = { .filter = prog };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	(void)state;
	CASE("SO_ATTACH_FILTER");
	assert_true(fd >= 0);
	fprog.len = (unsigned short)capture_filter(PORT, prog);
	EXPECT_EQ(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)), 0);
	close(fd);
}

static void test_open_errors(void **state)
{
	int fd;

	(void)state;
	CASE("unknown interface");
	EXPECT_EQ(capture_open("wgws-nonesuch0", PORT), -ENODEV);
	CASE("empty name");
	EXPECT_EQ(capture_open("", PORT), -ENODEV);
	CASE("name too long");
	EXPECT_EQ(capture_open("a-name-longer-than-ifnamsiz", PORT), -ENODEV);
	CASE("lo");
	fd = capture_open("lo", PORT);
	if (geteuid() != 0) {
		/* Without CAP_NET_RAW: the error jit.c turns into "needs CAP_NET_RAW". */
		EXPECT_EQ(fd, -EPERM);
		return;
	}
	EXPECT(fd >= 0);
	EXPECT((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	EXPECT((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	if (fd >= 0)
		close(fd);
}

/* --- capture_drain on a socketpair ------------------------------------------------------ */

struct seen {
	unsigned n;
	struct sockaddr_storage src[16];
};

static void on_msg(void *arg, const uint8_t *msg, const struct sockaddr_storage *src)
{
	struct seen *s = arg;

	if (s->n < 16) {
		s->src[s->n] = *src;
		EXPECT(memcmp(msg + 4, initiation + 4, INIT_LEN - 4) == 0);
	}
	s->n++;
}

static void send_spec(int fd, const struct pkt_spec *s)
{
	uint8_t pkt[PKT_MAX];
	size_t hlen, len = build(s, pkt, &hlen);

	assert_int_equal(send(fd, pkt, len, 0), (ssize_t)len);
}

static void test_drain(void **state)
{
	static const struct pkt_spec good4 = { .family = 4 }, good6 = { .family = 6 },
				     bad = { .family = 4, .dport = 9 },
				     trailer = { .family = 6, .trailer = PKT_MAX - 196 };
	int sv[2];
	uint64_t nbad = 0;
	struct seen seen = { 0 };
	int n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);

	CASE("empty queue");
	EXPECT_EQ(capture_drain(sv[0], PORT, 64, on_msg, &seen, &nbad), 0);
	EXPECT_EQ(seen.n, 0);

	CASE("good and bad, all read");
	send_spec(sv[1], &good4);
	send_spec(sv[1], &bad);
	send_spec(sv[1], &good6);
	EXPECT_EQ(capture_drain(sv[0], PORT, 64, on_msg, &seen, &nbad), 3);
	EXPECT_EQ(seen.n, 2);
	EXPECT_EQ(nbad, 1);
	EXPECT_EQ(seen.src[0].ss_family, AF_INET);
	EXPECT_EQ(seen.src[1].ss_family, AF_INET6);

	/* A packet longer than the read buffer arrives truncated: bad, even though its first
	 * bytes are a good initiation (only a trailer made it long). */
	CASE("truncated read");
	send_spec(sv[1], &trailer);
	nbad = 0;
	seen.n = 0;
	EXPECT_EQ(capture_drain(sv[0], PORT, 64, on_msg, &seen, NULL), 1);
	EXPECT_EQ(seen.n, 0);
	send_spec(sv[1], &trailer);
	EXPECT_EQ(capture_drain(sv[0], PORT, 64, on_msg, &seen, &nbad), 1);
	EXPECT_EQ(nbad, 1);

	/* At most max per call, across several recvmmsg batches; the rest stays queued. */
	CASE("max");
	for (int i = 0; i < 21; i++)
		send_spec(sv[1], i % 7 == 3 ? &bad : &good4);
	nbad = 0;
	seen.n = 0;
	EXPECT_EQ(capture_drain(sv[0], PORT, 0, on_msg, &seen, &nbad), 0);
	EXPECT_EQ(capture_drain(sv[0], PORT, 1, on_msg, &seen, &nbad), 1);
	EXPECT_EQ(capture_drain(sv[0], PORT, 11, on_msg, &seen, &nbad), 11);
	EXPECT_EQ(seen.n + nbad, 12);
	n = capture_drain(sv[0], PORT, 64, on_msg, &seen, &nbad);
	EXPECT_EQ(n, 9);
	EXPECT_EQ(seen.n, 18);
	EXPECT_EQ(nbad, 3);

	CASE("a broken descriptor");
	close(sv[0]);
	close(sv[1]);
	EXPECT_EQ(capture_drain(sv[0], PORT, 64, on_msg, &seen, &nbad), -EBADF);
}

/* --- root: real packets over loopback in a private network namespace ---------------------- */

static bool bring_up_lo(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
	ifr.ifr_flags |= IFF_UP;
	ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
	close(fd);
	return ok;
}

/* Sends len bytes starting with type from a socket bound to src_port, to dst:port. */
static bool send_udp(int family, const char *dst, uint16_t port, uint16_t src_port,
		     uint32_t type, size_t len)
{
	struct sockaddr_storage ss = { .ss_family = (sa_family_t)family };
	struct sockaddr_storage from = { .ss_family = (sa_family_t)family };
	socklen_t sl = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	uint8_t buf[INIT_LEN + 16];
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	if (family == AF_INET) {
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		((struct sockaddr_in *)&from)->sin_port = htons(src_port);
		inet_pton(AF_INET, dst, &((struct sockaddr_in *)&ss)->sin_addr);
	} else {
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		((struct sockaddr_in6 *)&from)->sin6_port = htons(src_port);
		inet_pton(AF_INET6, dst, &((struct sockaddr_in6 *)&ss)->sin6_addr);
	}
	memcpy(buf, initiation, INIT_LEN);
	memset(buf + INIT_LEN, 0, sizeof(buf) - INIT_LEN);
	buf[0] = (uint8_t)type;
	ok = bind(fd, (struct sockaddr *)&from, sl) == 0 &&
	     sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len;
	close(fd);
	return ok;
}

static void test_loopback_root(void **state)
{
	int orig, fd;
	uint64_t nbad = 0;
	struct seen seen = { 0 };
	bool v6;

	(void)state;
	if (geteuid() != 0)
		skip();
	orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(orig >= 0);
	if (unshare(CLONE_NEWNET) < 0) {
		close(orig);
		skip();
	}
	assert_true(bring_up_lo());
	fd = capture_open("lo", PORT);
	CASE("capture_open(lo) as root");
	EXPECT(fd >= 0);

	/* Decoys first: none may even be queued (the kernel filter drops them). */
	CASE("sending over lo");
	EXPECT(send_udp(AF_INET, "127.0.0.1", PORT + 1, SRC_PORT, 0x01, INIT_LEN));
	EXPECT(send_udp(AF_INET, "127.0.0.1", PORT, SRC_PORT, 0x02, 92));
	EXPECT(send_udp(AF_INET, "127.0.0.1", PORT, SRC_PORT, 0x01, INIT_LEN + 1));
	EXPECT(send_udp(AF_INET, "127.0.0.1", PORT, SRC_PORT, 0x04, INIT_LEN));
	EXPECT(send_udp(AF_INET, "127.0.0.1", PORT, SRC_PORT, 0x01, INIT_LEN));
	v6 = send_udp(AF_INET6, "::1", PORT, SRC_PORT + 1, 0x01, INIT_LEN);
	if (v6)
		EXPECT(send_udp(AF_INET6, "::1", PORT, SRC_PORT + 1, 0x01, INIT_LEN - 1));

	for (int i = 0; i < 100 && seen.n < 1u + v6; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n;

		poll(&pfd, 1, 10);
		n = capture_drain(fd, PORT, 64, on_msg, &seen, &nbad);
		CASE("drain on lo");
		EXPECT(n >= 0);
	}
	usleep(20 * 1000); /* anything late (a duplicate, a decoy) would show now */
	EXPECT_EQ(capture_drain(fd, PORT, 64, on_msg, &seen, &nbad), 0);
	CASE("what lo delivered");
	EXPECT_EQ(seen.n, 1u + v6);
	EXPECT_EQ(nbad, 0);
	EXPECT_EQ(seen.src[0].ss_family, AF_INET);
	EXPECT_EQ(ntohs(((struct sockaddr_in *)&seen.src[0])->sin_port), SRC_PORT);
	EXPECT_EQ(ntohl(((struct sockaddr_in *)&seen.src[0])->sin_addr.s_addr), 0x7f000001);
	if (v6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&seen.src[1];

		EXPECT_EQ(s6->sin6_family, AF_INET6);
		EXPECT_EQ(ntohs(s6->sin6_port), SRC_PORT + 1);
		EXPECT(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
	} else {
		print_message("no IPv6 on lo here: IPv4 only\n");
	}
	if (fd >= 0)
		close(fd);

	/* capture_drain itself drops what the host did not receive: on an unfiltered socket
	 * lo shows each datagram twice, once as our transmission. */
	CASE("unfiltered socket on lo");
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
	EXPECT(fd >= 0);
	if (fd >= 0) {
		struct sockaddr_ll sll = { .sll_family = AF_PACKET,
					   .sll_protocol = htons(ETH_P_ALL),
					   .sll_ifindex = (int)if_nametoindex("lo") };
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(PORT),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int sink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* no ICMP reply */
		int n = 0;

		EXPECT(bind(fd, (struct sockaddr *)&sll, sizeof(sll)) == 0);
		EXPECT(sink >= 0 && bind(sink, (struct sockaddr *)&sin, sizeof(sin)) == 0);
		EXPECT(send_udp(AF_INET, "127.0.0.1", PORT, SRC_PORT, 0x01, INIT_LEN));
		seen.n = 0;
		nbad = 0;
		for (int i = 0; i < 100 && n < 2; i++) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int r;

			poll(&pfd, 1, 10);
			r = capture_drain(fd, PORT, 64, on_msg, &seen, &nbad);
			EXPECT(r >= 0);
			n += r;
		}
		EXPECT_EQ(n, 2);
		EXPECT_EQ(seen.n, 1);
		EXPECT_EQ(nbad, 1);
		close(sink);
		close(fd);
	}
	assert_int_equal(setns(orig, CLONE_NEWNET), 0);
	close(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_other_ports),
		cmocka_unit_test(test_corruptions),
		cmocka_unit_test(test_kernel_accepts_program),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_loopback_root),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
