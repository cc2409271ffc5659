#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int al_error_set(struct al_error *err, int status, const char *errcode, const char *fmt, ...)
{
	if (!err)
		return -1;
	err->status = status;
	snprintf(err->errcode, sizeof(err->errcode), "%s", errcode);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

void al_error_clear(struct al_error *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}
