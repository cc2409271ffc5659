/* pwhash_cost.c - raw libsodium argon2id cost at the interactive limits
 * (what auralinkd uses when passwords.argon2_* are 0): the baseline for
 * bench/login.sh. Prints figures, never pass/fail. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10;
	if (sodium_init() < 0 || n < 1)
		return 1;
	char hash[crypto_pwhash_STRBYTES];
	const char *pw = "correct horse battery staple";
	double t0 = now_ms();
	for (int i = 0; i < n; i++)
		if (crypto_pwhash_str(hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
				      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
			return 1;
	double t1 = now_ms();
	for (int i = 0; i < n; i++)
		if (crypto_pwhash_str_verify(hash, pw, strlen(pw)) != 0)
			return 1;
	double t2 = now_ms();
	printf("raw crypto_pwhash_str (ops=%llu mem=%zu KiB): %.1f ms/call\n",
	       (unsigned long long)crypto_pwhash_OPSLIMIT_INTERACTIVE,
	       (size_t)crypto_pwhash_MEMLIMIT_INTERACTIVE / 1024, (t1 - t0) / n);
	printf("raw crypto_pwhash_str_verify: %.1f ms/call (%.1f/s on one core)\n", (t2 - t1) / n,
	       1000.0 * n / (t2 - t1));
	return 0;
}
