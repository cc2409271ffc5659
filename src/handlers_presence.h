/* handlers_presence.h - GET and PUT /presence/{userId}/status. */
#ifndef AL_HANDLERS_PRESENCE_H
#define AL_HANDLERS_PRESENCE_H

#include "app.h"

int presence_register_routes(struct app *app);

#endif
