/* test.h - the smallest test harness: CHECK records a failure and goes on;
 * main returns test_summary(), which prints "N passed, N failed". */
#ifndef FD_TEST_H
#define FD_TEST_H

#include <stdio.h>

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                     \
	do {                                                                     \
		if (cond) {                                                          \
			test_passed++;                                                   \
		} else {                                                             \
			test_failed++;                                                   \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                    \
			fputc('\n', stderr);                                             \
		}                                                                    \
	} while (0)

static inline int test_summary(void)
{
	printf("%d passed, %d failed\n", test_passed, test_failed);
	return test_failed ? 1 : 0;
}

#endif
