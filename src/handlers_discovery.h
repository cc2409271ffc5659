/* handlers_discovery.h - versions, well-known and server key endpoints. */
#ifndef AL_HANDLERS_DISCOVERY_H
#define AL_HANDLERS_DISCOVERY_H

#include "app.h"

int discovery_register_routes(struct app *app);

#endif
