/* unit.h - the one main() every unit test program shares. */
#ifndef AL_UNIT_H
#define AL_UNIT_H

#include <check.h>
#include <sodium.h>
#include <stdlib.h>

/* Runs one suite of the given tests, each between setup and teardown (both
 * may be NULL); exit status 1 on failure. */
static inline int unit_run(const char *name, void (*setup)(void), void (*teardown)(void), const TTest *const *tests,
			   size_t n)
{
	if (sodium_init() < 0)
		return 1;
	Suite *s = suite_create(name);
	TCase *tc = tcase_create("core");
	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#define UNIT_MAIN_WITH_FIXTURE(name, setup, teardown, ...)                                       \
	int main(void)                                                                           \
	{                                                                                        \
		const TTest *tests[] = {__VA_ARGS__};                                            \
		return unit_run(name, setup, teardown, tests, sizeof(tests) / sizeof(tests[0])); \
	}

#define UNIT_MAIN(name, ...) UNIT_MAIN_WITH_FIXTURE(name, NULL, NULL, __VA_ARGS__)

#endif
