#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "b64.h"

/* The spec appendix "Unpadded Base64" examples. */
static const char *const spec_plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const spec_b64[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};

START_TEST(test_encode_spec_examples)
{
	for (size_t i = 0; i < sizeof(spec_plain) / sizeof(spec_plain[0]); i++) {
		char *s = b64_encode((const unsigned char *)spec_plain[i], strlen(spec_plain[i]));

		ck_assert_ptr_nonnull(s);
		ck_assert_str_eq(s, spec_b64[i]);
		free(s);
	}
}
END_TEST

START_TEST(test_alphabets)
{
	const unsigned char bin[] = {0xfb, 0xff, 0xbf};
	char *std = b64_encode(bin, sizeof(bin));
	char *url = b64url_encode(bin, sizeof(bin));

	ck_assert_str_eq(std, "+/+/");
	ck_assert_str_eq(url, "-_-_");
	free(std);
	free(url);
}
END_TEST

START_TEST(test_round_trip_both_alphabets)
{
	unsigned char bin[257], out[300];
	size_t n;

	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(bin); len++) {
		char *std = b64_encode(bin, len);
		char *url = b64url_encode(bin, len);

		ck_assert_ptr_nonnull(std);
		ck_assert_ptr_nonnull(url);
		ck_assert_ptr_null(strchr(std, '='));
		ck_assert_ptr_null(strchr(url, '='));
		ck_assert_int_eq(b64_decode(std, strlen(std), out, sizeof(out), &n), 0);
		ck_assert_uint_eq(n, len);
		ck_assert_mem_eq(out, bin, len);
		ck_assert_int_eq(b64_decode(url, strlen(url), out, sizeof(out), &n), 0);
		ck_assert_uint_eq(n, len);
		ck_assert_mem_eq(out, bin, len);
		free(std);
		free(url);
	}
}
END_TEST

START_TEST(test_decode_padded_and_unpadded)
{
	unsigned char out[16];
	size_t n;

	ck_assert_int_eq(b64_decode("Zg==", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_mem_eq(out, "f", 1);
	ck_assert_int_eq(b64_decode("Zg", 2, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(b64_decode("Zm8=", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "fo", 2);
	ck_assert_int_eq(b64_decode("Zm8", 3, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(b64_decode("-_-_", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(b64_decode("-w==", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0], 0xfb);
	/* slen bounds the input: trailing bytes are not read */
	ck_assert_int_eq(b64_decode("Zm9vGARBAGE", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(b64_decode("", 0, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_decode_rejects_garbage)
{
	static const char *const bad[] = {
		"Zg=",      /* wrong padding */
		"Zg===",    /* too much padding */
		"Z",        /* one leftover character */
		"Zm9v!",    /* foreign character */
		"Zm 9v",    /* whitespace */
		"Zm9v\n",   /* newline */
		"+/-_",     /* mixed alphabets */
		"=Zg",      /* padding first */
		"Zg=A",     /* padding before data */
		"Z===",     /* three pads */
		"Zm9v=",    /* pad after a full group */
		"==",       /* only padding */
		"Zm9vY",    /* one leftover character after a group */
		"Zm9v+/-_", /* mixed alphabets across groups */
		"Z+-A",     /* mixed alphabets in one group */
		"Zg==Zg==", /* padding in the middle */
	};
	unsigned char out[16];
	size_t n;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(b64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n) == -1, "accepted \"%s\"",
			      bad[i]);
	ck_assert_int_eq(b64_decode("Zm\0v", 4, out, sizeof(out), &n), -1);
	ck_assert_int_eq(b64_decode("Zm9\0", 4, out, sizeof(out), &n), -1);
}
END_TEST

/* Unused low bits in the last character are ignored, as Python's base64
 * (and so Synapse) does; the spec's signing test-vector seed needs it. */
START_TEST(test_decode_nonzero_trailing_bits)
{
	static const char seed[] = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
	unsigned char out[40];
	size_t n;

	ck_assert_int_eq(b64_decode("Zh", 2, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_mem_eq(out, "f", 1);
	ck_assert_int_eq(b64_decode("Zm9", 3, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "fo", 2);
	ck_assert_int_eq(b64_decode("Zm9=", 4, out, sizeof(out), &n), 0);
	ck_assert_mem_eq(out, "fo", 2);
	ck_assert_int_eq(b64_decode("-x", 2, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(out[0], 0xfb);
	ck_assert_int_eq(b64_decode(seed, strlen(seed), out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 32);
	ck_assert_uint_eq(out[0], 0x60);
	ck_assert_uint_eq(out[31], 0x0d);
}
END_TEST

START_TEST(test_decode_does_not_fit)
{
	unsigned char out[3];
	size_t n;

	ck_assert_int_eq(b64_decode("Zm9v", 4, out, 3, &n), 0);
	ck_assert_int_eq(b64_decode("Zm9vYg", 6, out, 3, &n), -1);
	ck_assert_int_eq(b64_decode("Zm9v", 4, out, 2, &n), -1);
	ck_assert_int_eq(b64_decode(NULL, 0, out, 3, &n), -1);
	ck_assert_int_eq(b64_decode("Zm9v", 4, NULL, 0, &n), -1);
	ck_assert_int_eq(b64_decode("", 0, NULL, 0, &n), 0);
	ck_assert_int_eq(b64_decode("Zm9vYmFy", 8, out, 3, NULL), -1);
	ck_assert_int_eq(b64_decode("Zm9vYm", 6, out, 3, &n), -1);
}
END_TEST

UNIT_MAIN("b64", test_encode_spec_examples, test_alphabets, test_round_trip_both_alphabets,
	  test_decode_padded_and_unpadded, test_decode_rejects_garbage, test_decode_nonzero_trailing_bits,
	  test_decode_does_not_fit)
