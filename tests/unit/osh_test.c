// SPDX-License-Identifier: GPL-2.0
#include "osh_test.h"

int osh_test_failed_checks;
const char *osh_test_current;

/* Run every test (or those named on the command line); exit 1 on failure. */
int osh_test_main(const struct osh_test *tests, size_t n, int argc,
		  char **argv)
{
	int failed = 0;
	size_t i;
	int a;

	for (i = 0; i < n; i++) {
		bool selected = argc < 2;
		long warnings_before = osh_shim_warnings;

		for (a = 1; a < argc; a++)
			if (!strcmp(argv[a], tests[i].name))
				selected = true;
		if (!selected)
			continue;
		osh_test_current = tests[i].name;
		osh_test_failed_checks = 0;
		osh_shim_fail_alloc_in = 0;
		tests[i].fn();
		osh_shim_rcu_barrier();
		if (osh_shim_warnings != warnings_before) {
			printf("  %ld kernel-style warning(s) fired\n",
			       osh_shim_warnings - warnings_before);
			osh_test_failed_checks++;
		}
		if (osh_test_failed_checks) {
			printf("FAIL %s: %d check(s) failed\n", tests[i].name,
			       osh_test_failed_checks);
			failed++;
		} else {
			printf("PASS %s\n", tests[i].name);
		}
		fflush(stdout);
	}
	return failed ? 1 : 0;
}
