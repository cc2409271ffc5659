#include "b64.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static char *b64_encode_variant(const unsigned char *bin, size_t len, int variant)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, variant);
	char *s = malloc(cap);

	if (!s)
		return NULL;
	if (len == 0) {
		s[0] = '\0';
		return s;
	}
	sodium_bin2base64(s, cap, bin, len, variant);
	return s;
}

char *b64_encode(const unsigned char *bin, size_t len)
{
	return b64_encode_variant(bin, len, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

char *b64url_encode(const unsigned char *bin, size_t len)
{
	return b64_encode_variant(bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static const char b64_std_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Number of trailing '=' if the padding is well-formed, else -1. */
static int b64_padding(const char *s, size_t slen)
{
	size_t pad = 0;

	while (pad < slen && pad < 3 && s[slen - 1 - pad] == '=')
		pad++;
	if (pad == 0)
		return 0;
	if (pad > 2 || slen % 4 != 0 || (slen - pad) % 4 + pad != 4)
		return -1;
	return (int)pad;
}

static int b64_sodium_decode(const char *s, size_t slen, unsigned char *out, size_t outmax, size_t *n, int urlsafe)
{
	int variant = urlsafe ? sodium_base64_VARIANT_URLSAFE_NO_PADDING : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;

	*n = 0;
	if (slen == 0)
		return 0;
	return sodium_base642bin(out, outmax, s, slen, NULL, n, NULL, variant);
}

/* libsodium refuses a last character whose unused low bits are not zero,
 * but other encoders emit them (the spec's own test-vector seed ends in
 * such a character) and the spec asks decoders to be lenient. So full
 * 4-character groups go to libsodium as they are, and the final partial
 * group goes through a copy with those bits cleared. Foreign characters
 * are left for libsodium to reject. */
static int b64_decode_tail(const char *tail, size_t n, unsigned char *out, size_t outmax, size_t *outn, int urlsafe)
{
	const char *alphabet = urlsafe ? b64_url_alphabet : b64_std_alphabet;
	char t[3];
	const char *p;

	memcpy(t, tail, n);
	p = n >= 2 && t[n - 1] != '\0' ? strchr(alphabet, t[n - 1]) : NULL;
	if (p)
		t[n - 1] = alphabet[(p - alphabet) & (n == 2 ? 0x30 : 0x3C)];
	return b64_sodium_decode(t, n, out, outmax, outn, urlsafe);
}

int b64_decode(const char *s, size_t slen, unsigned char *out, size_t outmax, size_t *outlen)
{
	int urlsafe, pad;
	size_t data, head, n1, n2 = 0;

	if (outlen)
		*outlen = 0;
	if (!s)
		return -1;
	pad = b64_padding(s, slen);
	if (pad < 0)
		return -1;
	data = slen - (size_t)pad;
	head = data - data % 4;
	if (data > 0 && !out)
		return -1;
	urlsafe = memchr(s, '-', data) || memchr(s, '_', data);
	if (b64_sodium_decode(s, head, out, outmax, &n1, urlsafe) != 0)
		return -1;
	if (data > head && b64_decode_tail(s + head, data - head, out + n1, outmax - n1, &n2, urlsafe) != 0)
		return -1;
	if (outlen)
		*outlen = n1 + n2;
	return 0;
}
