/* handlers_room.h - client API for rooms: createRoom, aliases, membership,
 * send, state, redact, messages, context, members, joined_rooms, typing,
 * receipts and read markers. */
#ifndef AL_HANDLERS_ROOM_H
#define AL_HANDLERS_ROOM_H

#include "app.h"

/* Registers the room and sync routes and starts the sync module. */
int rooms_start(struct app *app);

#endif
