/* handlers_aura_id.h - /_auralink/client/v1/aura_id... endpoints. */
#ifndef AL_HANDLERS_AURA_ID_H
#define AL_HANDLERS_AURA_ID_H

#include "app.h"

/* Starts the aura_id module (cache, batches, verifier) and registers its
 * routes. Undo with aura_id_stop (aura_id.h). */
int aura_id_handlers_start(struct app *app);

#endif
