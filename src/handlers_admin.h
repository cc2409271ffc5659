/* handlers_admin.h - /_auralink/admin/v1: user suspension and the audit
 * log (list, verify). Server admins only. */
#ifndef AL_HANDLERS_ADMIN_H
#define AL_HANDLERS_ADMIN_H

#include "app.h"

int admin_register_routes(struct app *app);

#endif
