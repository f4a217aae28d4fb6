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

#include "../unit/bpf_interp.h"
#include "prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { PORT = 51820, UDP_LEN = 8 + NOISE_INITIATION_LEN };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sock_filter prog[CAPTURE_FILTER_MAX];
	static unsigned n;
	struct sockaddr_storage src;
	const uint8_t *msg = NULL;
	uint8_t *pkt;
	bool parsed, kept, ip_len_ok = true;
	int version = size ? data[0] >> 4 : 0;
	struct bpf_ctx ctx = { .pkttype = PACKET_HOST };
	const char *bad;

	if (!n)
		n = capture_filter(PORT, prog);
	pkt = malloc(size ? size : 1);
	if (!pkt)
		abort();
	memcpy(pkt, data, size);
	memset(&src, 0xa5, sizeof(src));

	parsed = capture_parse(pkt, size, PORT, &msg, &src) == 0;
	ctx.protocol = version == 6 ? ETH_P_IPV6 : ETH_P_IP;
	kept = bpf_run(prog, n, pkt, size, &ctx, &bad) != 0;
	if (bad)
		abort(); /* the filter uses what the interpreter does not know */
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
