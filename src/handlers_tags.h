/* handlers_tags.h - GET /user/{userId}/rooms/{roomId}/tags, PUT and DELETE
 * /user/{userId}/rooms/{roomId}/tags/{tag}. */
#ifndef AL_HANDLERS_TAGS_H
#define AL_HANDLERS_TAGS_H

#include "app.h"

int tags_register_routes(struct app *app);

#endif
