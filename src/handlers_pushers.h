/* handlers_pushers.h - GET /pushers and POST /pushers/set. */
#ifndef AL_HANDLERS_PUSHERS_H
#define AL_HANDLERS_PUSHERS_H

#include "app.h"

int pushers_register_routes(struct app *app);

#endif
