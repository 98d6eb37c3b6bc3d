/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal unit-test harness.  Each test prints "PASS name" or
 * "FAIL name: reason"; tests/run counts those lines.
 */
#ifndef OSH_TEST_H
#define OSH_TEST_H

#include "osh_env.h"

struct osh_test {
	const char *name;
	void (*fn)(void);
};

extern int osh_test_failed_checks;
extern const char *osh_test_current;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("  check failed: %s (%s:%d)\n", #cond, __FILE__,	\
		       __LINE__);					\
		osh_test_failed_checks++;				\
	}								\
} while (0)

#define CHECK_EQ(a, b) do {						\
	long long __a = (long long)(a), __b = (long long)(b);		\
	if (__a != __b) {						\
		printf("  check failed: %s == %s (%lld != %lld) (%s:%d)\n", \
		       #a, #b, __a, __b, __FILE__, __LINE__);		\
		osh_test_failed_checks++;				\
	}								\
} while (0)

int osh_test_main(const struct osh_test *tests, size_t n, int argc,
		  char **argv);

#define OSH_TEST_MAIN(table)						\
	int main(int argc, char **argv)					\
	{								\
		return osh_test_main(table, ARRAY_SIZE(table), argc, argv); \
	}

#endif /* OSH_TEST_H */
