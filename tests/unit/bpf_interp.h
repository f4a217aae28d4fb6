/* SPDX-License-Identifier: MIT */
/* A classic-BPF interpreter for what provisioner/capture.c's socket filter uses, run as the
 * kernel runs it on an AF_PACKET socket: loads past the packet end the filter with 0,
 * SKF_AD_PROTOCOL and SKF_AD_PKTTYPE come from ctx. Header-only, for the two programs that
 * check the filter against the parser: tests/unit/test_prov_capture.c and
 * tests/fuzz/fuzz_capture.c. bpf_run() returns the verdict (bytes to keep, 0 = drop), or
 * sets *bad to what it could not run (an unknown instruction or ancillary load, a jump out
 * of the program, running off its end) and returns 0. */
#ifndef WGWS_TESTS_BPF_INTERP_H
#define WGWS_TESTS_BPF_INTERP_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bpf_ctx {
	uint16_t protocol; /* skb->protocol, host order (SKF_AD_PROTOCOL) */
	uint32_t pkttype;  /* skb->pkt_type (SKF_AD_PKTTYPE) */
};

static inline uint32_t bpf_load(const uint8_t *p, size_t len, uint32_t off, unsigned size,
				bool *ok)
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

static inline uint32_t bpf_run(const struct sock_filter *prog, unsigned n, const uint8_t *pkt,
			       size_t len, const struct bpf_ctx *ctx, const char **bad)
{
	uint32_t a = 0, x = 0;
	bool ok = true;

	*bad = NULL;
	for (unsigned pc = 0; pc < n; pc++) {
		const struct sock_filter *f = &prog[pc];
		unsigned size = BPF_SIZE(f->code) == BPF_W ? 4 : BPF_SIZE(f->code) == BPF_H ? 2 : 1;
		uint32_t jump = 0;

		switch (f->code) {
		case BPF_LD | BPF_W | BPF_ABS:
		case BPF_LD | BPF_H | BPF_ABS:
		case BPF_LD | BPF_B | BPF_ABS:
			if (f->code == (BPF_LD | BPF_W | BPF_ABS) &&
			    f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL))
				a = ctx->protocol;
			else if (f->code == (BPF_LD | BPF_W | BPF_ABS) &&
				 f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE))
				a = ctx->pkttype;
			else if (f->k >= (uint32_t)SKF_AD_OFF)
				return *bad = "an ancillary load it does not know", 0;
			else
				a = bpf_load(pkt, len, f->k, size, &ok);
			break;
		case BPF_LD | BPF_W | BPF_IND:
		case BPF_LD | BPF_H | BPF_IND:
		case BPF_LD | BPF_B | BPF_IND:
			a = bpf_load(pkt, len, x + f->k, size, &ok);
			break;
		case BPF_LDX | BPF_B | BPF_MSH:
			x = (bpf_load(pkt, len, f->k, 1, &ok) & 0xf) * 4;
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
			return *bad = "an instruction it does not know", 0;
		}
		if (!ok)
			return 0;
		if (jump >= n - pc - 1)
			return *bad = "a jump out of the program", 0;
		pc += jump;
	}
	return *bad = "running off the end of the program", 0;
}

#endif
