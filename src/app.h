/* app.h - the daemon's shared context, built in main and handed to every
 * request. Each member is owned by its module. */
#ifndef AL_APP_H
#define AL_APP_H

#include "config.h"

struct keys;
struct router;

struct app {
	struct al_config cfg;
	struct keys *keys;
	struct router *router;
};

#endif
