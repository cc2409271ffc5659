/* handlers_account_manage.h - device deletion, password change,
 * deactivation (user-interactive auth), capabilities. */
#ifndef AL_HANDLERS_ACCOUNT_MANAGE_H
#define AL_HANDLERS_ACCOUNT_MANAGE_H

#include "app.h"

int account_manage_register_routes(struct app *app);

#endif
