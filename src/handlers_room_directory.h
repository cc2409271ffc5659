/* handlers_room_directory.h - GET and POST /publicRooms, GET and PUT
 * /directory/list/room/{roomId}. */
#ifndef AL_HANDLERS_ROOM_DIRECTORY_H
#define AL_HANDLERS_ROOM_DIRECTORY_H

#include "app.h"

int room_directory_register_routes(struct app *app);

#endif
