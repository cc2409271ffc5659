/* handlers_room.h - client API for rooms: createRoom, aliases, membership,
 * send, state, redact, messages, context, members, joined_rooms, typing,
 * receipts and read markers. */
#ifndef AL_HANDLERS_ROOM_H
#define AL_HANDLERS_ROOM_H

#include "app.h"

/* Registers the room and sync routes and starts the sync module and the
 * room writers (room_queue.h). */
int rooms_start(struct app *app);
/* Stops the room writers after they answered what is queued: call while
 * the workers still run. */
void rooms_stop(struct app *app);

#endif
