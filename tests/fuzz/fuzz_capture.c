/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the capture packet parser (provisioner/capture.c, capture_parse: every
 * packet the AF_PACKET socket hands over, from the IP header on), checked against the socket
 * filter it stands behind.
 *
 * Input: one packet, in an exact heap copy (ASan sees a read past it); the device's port is
 * 51820. A small classic-BPF interpreter (the instructions capture_filter() uses; anything else
 * aborts) runs the real filter over the same bytes, the ethertype taken from the version
 * nibble and the packet addressed to this host. The two must agree: what the parser accepts,
 * the filter keeps; what the filter keeps, the parser accepts, unless the IP length field
 * disagrees with the datagram (the filter does not read it). An accepted packet gives a
 * 148-byte initiation inside the packet and the UDP source as the sender. */
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { PORT = 51820, UDP_LEN = 8 + NOISE_INITIATION_LEN };

static uint32_t load(const uint8_t *p, size_t len, uint32_t off, unsigned size, bool *ok)
{
	uint32_t v = 0;

	if (off > len || size > len - off) {
		*ok = false; /* the kernel ends the filter with 0 */
		return 0;
	}
	for (unsigned i = 0; i < size; i++)
		v = v << 8 | p[off + i];
	return v;
}

/* The filter's verdict on pkt: bytes to keep, 0 to drop. */
static uint32_t bpf_run(const struct sock_filter *prog, unsigned n, const uint8_t *pkt,
			size_t len, uint16_t protocol)
{
	uint32_t a = 0, x = 0;
	bool ok = true;

	for (unsigned pc = 0; pc < n; pc++) {
		const struct sock_filter *f = &prog[pc];
		unsigned size = BPF_SIZE(f->code) == BPF_W ? 4 : BPF_SIZE(f->code) == BPF_H ? 2 : 1;
		uint32_t jump = 0;

		switch (f->code) {
		case BPF_LD | BPF_W | BPF_ABS:
		case BPF_LD | BPF_H | BPF_ABS:
		case BPF_LD | BPF_B | BPF_ABS:
			if (f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL))
				a = protocol;
			else if (f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE))
				a = PACKET_HOST;
			else if (f->k >= (uint32_t)SKF_AD_OFF)
				abort();
			else
				a = load(pkt, len, f->k, size, &ok);
			break;
		case BPF_LD | BPF_W | BPF_IND:
		case BPF_LD | BPF_H | BPF_IND:
		case BPF_LD | BPF_B | BPF_IND:
			a = load(pkt, len, x + f->k, size, &ok);
			break;
		case BPF_LDX | BPF_B | BPF_MSH:
			x = (load(pkt, len, f->k, 1, &ok) & 0xf) * 4;
			break;
		case BPF_LDX | BPF_W | BPF_IMM:
			x = f->k;
			break;
		case BPF_ALU | BPF_AND | BPF_K:
			a &= f->k;
			break;
		case BPF_JMP | BPF_JA:
			jump = f->k;
			break;
		case BPF_JMP | BPF_JEQ | BPF_K:
			jump = a == f->k ? f->jt : f->jf;
			break;
		case BPF_JMP | BPF_JGT | BPF_K:
			jump = a > f->k ? f->jt : f->jf;
			break;
		case BPF_JMP | BPF_JGE | BPF_K:
			jump = a >= f->k ? f->jt : f->jf;
			break;
		case BPF_JMP | BPF_JSET | BPF_K:
			jump = (a & f->k) ? f->jt : f->jf;
			break;
		case BPF_RET | BPF_K:
			return f->k;
		default:
			abort(); /* not an instruction capture_filter() uses */
		}
		if (!ok)
			return 0;
		if (jump >= n - pc - 1)
			abort(); /* out of the program */
		pc += jump;
	}
	abort(); /* ran off the end */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sock_filter prog[CAPTURE_FILTER_MAX];
	static unsigned n;
	struct sockaddr_storage src;
	const uint8_t *msg = NULL;
	uint8_t *pkt;
	bool parsed, kept, ip_len_ok = true;
	int version = size ? data[0] >> 4 : 0;

	if (!n)
		n = capture_filter(PORT, prog);
	pkt = malloc(size ? size : 1);
	if (!pkt)
		abort();
	memcpy(pkt, data, size);
	memset(&src, 0xa5, sizeof(src));

	parsed = capture_parse(pkt, size, PORT, &msg, &src) == 0;
	kept = bpf_run(prog, n, pkt, size, version == 6 ? ETH_P_IPV6 : ETH_P_IP) != 0;
	if (version == 4 && size >= 4)
		ip_len_ok = (size_t)(pkt[2] << 8 | pkt[3]) == (pkt[0] & 0x0fu) * 4 + UDP_LEN;
	if (version == 6 && size >= 6)
		ip_len_ok = (pkt[4] << 8 | pkt[5]) == UDP_LEN;
	if (parsed != (kept && ip_len_ok))
		abort();
	if (parsed) {
		const uint8_t *udp = msg - 8;
		uint16_t sport;

		if (msg < pkt + 8 || msg + NOISE_INITIATION_LEN > pkt + size ||
		    msg[0] != 1 || msg[1] || msg[2] || msg[3])
			abort();
		memcpy(&sport, udp, 2);
		if (src.ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&src;

			if (version != 4 || sin->sin_port != sport ||
			    memcmp(&sin->sin_addr, pkt + 12, 4))
				abort();
		} else if (src.ss_family == AF_INET6) {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&src;

			if (version != 6 || sin6->sin6_port != sport ||
			    memcmp(&sin6->sin6_addr, pkt + 8, 16) || sin6->sin6_scope_id)
				abort();
		} else {
			abort();
		}
	}
	free(pkt);
	return 0;
}
