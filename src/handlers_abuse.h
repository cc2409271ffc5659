/* handlers_abuse.h - POST /_auralink/client/v1/abuse_reports and the admin
 * side under /_auralink/admin/v1/abuse_reports. */
#ifndef AL_HANDLERS_ABUSE_H
#define AL_HANDLERS_ABUSE_H

#include "app.h"

int abuse_register_routes(struct app *app);

#endif
