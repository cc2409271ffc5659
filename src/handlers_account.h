/* handlers_account.h - Matrix client API for accounts: register, login,
 * logout, whoami, devices, profile. */
#ifndef AL_HANDLERS_ACCOUNT_H
#define AL_HANDLERS_ACCOUNT_H

#include "app.h"

int account_register_routes(struct app *app);

#endif
