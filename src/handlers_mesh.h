/* handlers_mesh.h - HTTP endpoints of the mesh (mesh.c registers them). */
#ifndef AL_HANDLERS_MESH_H
#define AL_HANDLERS_MESH_H

#include "app.h"

int mesh_register_routes(struct app *app);

#endif
