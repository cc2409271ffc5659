/* handlers_calls.h - GET /_auralink/client/v1/calls (calls.h does the work). */
#ifndef AL_HANDLERS_CALLS_H
#define AL_HANDLERS_CALLS_H

#include "app.h"

/* Routes and the call tracking module (the expiry sweeper). */
int calls_handlers_start(struct app *app);

#endif
