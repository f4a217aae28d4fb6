/* SPDX-License-Identifier: MIT */
/* Unit tests for common/udpgso.h: how datagrams are grouped into UDP GSO messages (a table of
 * length sequences and the message sizes they must give), and the real kernel: the messages
 * sent with sendmmsg() to a loopback socket arrive as exactly the datagrams put in, in order.
 * (UDP_SEGMENT needs Linux >= 4.18; an older kernel refuses it and the test says so.) */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "udpgso.h"

static const char *cur_case = "?";
#include "expect.h"

enum { MAXN = 80 };

static const struct {
	const char *name;
	bool gso;
	unsigned n;
	size_t len[MAXN];  /* 0-terminated when n says so */
	unsigned want[MAXN]; /* datagrams per message, in order */
	unsigned nwant;
} cases[] = {
	{ "one datagram", true, 1, { 100 }, { 1 }, 1 },
	{ "a run of 4", true, 4, { 100, 100, 100, 100 }, { 4 }, 1 },
	{ "runs 3, 2, 1", true, 6, { 1412, 1412, 1412, 64, 64, 148 }, { 3, 2, 1 }, 3 },
	{ "alternating", true, 4, { 64, 100, 64, 100 }, { 1, 1, 1, 1 }, 4 },
	{ "shorter last is its own", true, 3, { 1412, 1412, 100 }, { 2, 1 }, 2 },
	{ "gso off", false, 4, { 100, 100, 100, 100 }, { 1, 1, 1, 1 }, 4 },
	/* 46 * 1412 = 64,952 <= 65,000; a 47th would not fit */
	{ "byte cap", true, 50, { [0 ... 49] = 1412 }, { 46, 4 }, 2 },
	/* 64 segments at most */
	{ "segment cap", true, 70, { [0 ... 69] = 32 }, { 64, 6 }, 2 },
};

static void test_build(void **state)
{
	static uint8_t data[MAXN][2048];
	struct mmsghdr msgs[MAXN];
	union udp_gso_cmsg cm[MAXN];
	struct iovec iov[MAXN];
	struct sockaddr_in to = { .sin_family = AF_INET };

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		unsigned m, k = 0;

		cur_case = cases[c].name;
		for (unsigned i = 0; i < cases[c].n; i++) {
			iov[i].iov_base = data[i];
			iov[i].iov_len = cases[c].len[i];
		}
		m = udp_gso_build(msgs, cm, iov, cases[c].n, &to, sizeof(to), cases[c].gso);
		EXPECT_EQ(m, cases[c].nwant);
		for (unsigned j = 0; j < m && j < cases[c].nwant; j++) {
			const struct msghdr *h = &msgs[j].msg_hdr;

			EXPECT_EQ(h->msg_iovlen, cases[c].want[j]);
			EXPECT(h->msg_iov == &iov[k]);
			EXPECT(h->msg_name == &to);
			EXPECT_EQ(h->msg_namelen, sizeof(to));
			if (h->msg_iovlen > 1) {
				const struct cmsghdr *cmh = CMSG_FIRSTHDR(h);
				uint16_t seg;

				EXPECT(cmh != NULL);
				EXPECT_EQ(cmh->cmsg_level, SOL_UDP);
				EXPECT_EQ(cmh->cmsg_type, UDP_SEGMENT);
				memcpy(&seg, CMSG_DATA(cmh), sizeof(seg));
				EXPECT_EQ(seg, iov[k].iov_len);
			} else {
				EXPECT(h->msg_control == NULL);
				EXPECT_EQ(h->msg_controllen, 0);
			}
			k += (unsigned)h->msg_iovlen;
		}
		EXPECT_EQ(k, cases[c].n);
	}
}

/* Datagrams 0..n-1 of the lengths given, each starting with its index, sent as built; the
 * receiving socket must see the same datagrams, whole and in order. */
static void test_kernel(void **state)
{
	static const size_t lens[] = { 1412, 1412, 1412, 1412, 64, 64, 148, 32, 32, 32, 1412, 100 };
	enum { N = sizeof(lens) / sizeof(lens[0]) };
	static uint8_t data[N][1412];
	struct mmsghdr msgs[N];
	union udp_gso_cmsg cm[N];
	struct iovec iov[N];
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t tl = sizeof(to);
	int rx, tx, r;
	unsigned m, sent = 0;
	uint8_t buf[2048];
	struct timeval tv = { .tv_sec = 2 };

	(void)state;
	cur_case = "kernel: GSO to 127.0.0.1";
	rx = socket(AF_INET, SOCK_DGRAM, 0);
	tx = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(rx >= 0 && tx >= 0);
	assert_int_equal(bind(rx, (struct sockaddr *)&to, sizeof(to)), 0);
	assert_int_equal(getsockname(rx, (struct sockaddr *)&to, &tl), 0);
	assert_int_equal(setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	for (unsigned i = 0; i < N; i++) {
		memset(data[i], 0xa5, lens[i]);
		data[i][0] = (uint8_t)i;
		iov[i].iov_base = data[i];
		iov[i].iov_len = lens[i];
	}
	m = udp_gso_build(msgs, cm, iov, N, &to, sizeof(to), true);
	EXPECT_EQ(m, 6); /* runs of 4, 2, 1, 3, 1 and 1 */
	while (sent < m) {
		r = sendmmsg(tx, msgs + sent, m - sent, 0);
		if (r < 0 && udp_gso_refused(&msgs[sent].msg_hdr, errno))
			fail_msg("this kernel refuses UDP GSO (%s): wgws falls back to one datagram "
				 "per send there", strerror(errno));
		assert_true(r > 0);
		sent += (unsigned)r;
	}
	for (unsigned i = 0; i < N; i++) {
		ssize_t got = recv(rx, buf, sizeof(buf), 0);

		EXPECT_EQ(got, lens[i]);
		EXPECT_EQ(buf[0], i);
		EXPECT(got < 2 || buf[got - 1] == 0xa5);
	}
	close(rx);
	close(tx);
}

/* The fallback: a GSO message's datagrams sent one by one arrive as the same datagrams. */
static void test_send_each(void **state)
{
	uint8_t a[300], b[300], buf[1024];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, 120 } };
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t tl = sizeof(to);
	struct msghdr m = { .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = iov,
			    .msg_iovlen = 2 };
	struct timeval tv = { .tv_sec = 2 };
	size_t bytes = 0;
	int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);

	(void)state;
	cur_case = "send_each";
	assert_true(rx >= 0 && tx >= 0);
	assert_int_equal(bind(rx, (struct sockaddr *)&to, sizeof(to)), 0);
	assert_int_equal(getsockname(rx, (struct sockaddr *)&to, &tl), 0);
	assert_int_equal(setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	memset(a, 1, sizeof(a));
	memset(b, 2, sizeof(b));
	EXPECT_EQ(udp_gso_send_each(tx, &m, &bytes), 2);
	EXPECT_EQ(bytes, 420);
	EXPECT_EQ(recv(rx, buf, sizeof(buf), 0), 300);
	EXPECT_EQ(buf[0], 1);
	EXPECT_EQ(recv(rx, buf, sizeof(buf), 0), 120);
	EXPECT_EQ(buf[0], 2);
	close(rx);
	close(tx);
}

static void test_refused(void **state)
{
	struct iovec iov[2] = { { NULL, 10 }, { NULL, 10 } };
	struct msghdr one = { .msg_iov = iov, .msg_iovlen = 1 };
	struct msghdr two = { .msg_iov = iov, .msg_iovlen = 2 };

	(void)state;
	cur_case = "refused";
	EXPECT(udp_gso_refused(&two, EIO));
	EXPECT(udp_gso_refused(&two, EINVAL));
	EXPECT(udp_gso_refused(&two, EOPNOTSUPP));
	EXPECT(!udp_gso_refused(&two, EAGAIN));
	EXPECT(!udp_gso_refused(&two, ECONNREFUSED));
	EXPECT(!udp_gso_refused(&one, EINVAL)); /* not a GSO message: a real error */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_kernel),
		cmocka_unit_test(test_send_each),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
