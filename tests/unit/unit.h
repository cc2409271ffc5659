/* unit.h - the one main() every unit test program shares. */
#ifndef AL_UNIT_H
#define AL_UNIT_H

#include <check.h>
#include <sodium.h>
#include <stdlib.h>

/* Runs one suite built from the listed tests; exit status 1 on failure. */
#define UNIT_MAIN(name, ...)                                                        \
	int main(void)                                                              \
	{                                                                           \
		if (sodium_init() < 0)                                              \
			return 1;                                                   \
		const TTest *tests[] = {__VA_ARGS__};                                    \
		Suite *s = suite_create(name);                                      \
		TCase *tc = tcase_create("core");                                   \
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)       \
			tcase_add_test(tc, tests[i]);                             \
		suite_add_tcase(s, tc);                                             \
		SRunner *sr = srunner_create(s);                                    \
		srunner_run_all(sr, CK_NORMAL);                                     \
		int failed = srunner_ntests_failed(sr);                             \
		srunner_free(sr);                                                   \
		return failed ? 1 : 0;                                              \
	}

#endif
