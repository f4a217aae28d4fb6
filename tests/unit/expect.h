/* SPDX-License-Identifier: MIT */
/* Checks for table-driven cmocka tests: each failure names the case being run (set cur_case
 * at the top of every case) and shows the expression, its value and the expected one.
 * Include after <cmocka.h>, once the file has its cur_case: a const char * it points at each
 * case's name, or a char array it formats the name into. */
#ifndef WGWS_TEST_EXPECT_H
#define WGWS_TEST_EXPECT_H

#include <string.h>

#define EXPECT(cond)                                                                       \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg("case %s: expected %s (%s:%d)", cur_case, #cond, __FILE__, \
				 __LINE__);                                                \
	} while (0)

#define EXPECT_EQ(got, want)                                                               \
	do {                                                                               \
		long long g_ = (long long)(got), w_ = (long long)(want);                   \
		if (g_ != w_)                                                              \
			fail_msg("case %s: %s is %lld, expected %lld (%s:%d)", cur_case, #got, \
				 g_, w_, __FILE__, __LINE__);                              \
	} while (0)

#define EXPECT_STREQ(got, want)                                                            \
	do {                                                                               \
		const char *g_ = (got), *w_ = (want);                                      \
		if (g_ == NULL || strcmp(g_, w_) != 0)                                     \
			fail_msg("case %s: %s is \"%s\", expected \"%s\" (%s:%d)", cur_case, \
				 #got, g_ ? g_ : "(null)", w_, __FILE__, __LINE__);        \
	} while (0)

#endif
