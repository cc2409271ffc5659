/* handlers_apps.h - /_auralink/client/v1/apps and /notification_preferences. */
#ifndef AL_HANDLERS_APPS_H
#define AL_HANDLERS_APPS_H

#include "app.h"

int apps_register_routes(struct app *app);

#endif
