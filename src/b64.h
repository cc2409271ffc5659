/* b64.h - unpadded base64 (Matrix spec appendix "Unpadded Base64"). */
#ifndef AL_B64_H
#define AL_B64_H

#include <stddef.h>

/* Standard alphabet (+/), no '=' padding. Returns a malloc'd NUL-terminated
 * string the caller frees, or NULL when out of memory. */
char *b64_encode(const unsigned char *bin, size_t len);

/* URL-safe alphabet (-_), no '=' padding. Same ownership as b64_encode. */
char *b64url_encode(const unsigned char *bin, size_t len);

/* Decode slen characters of s (NUL termination not required). Accepts the
 * standard or the URL-safe alphabet (not both mixed), with correct '='
 * padding or none. No whitespace. Writes at most outmax bytes to out and the
 * decoded length to *outlen (if non-NULL). Returns 0, or -1 if the input is
 * invalid or does not fit. */
int b64_decode(const char *s, size_t slen, unsigned char *out, size_t outmax, size_t *outlen);

#endif
