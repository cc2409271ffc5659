/* auth.h - access tokens: Authorization: Bearer (or ?access_token=) ->
 * user and device. Tokens are 32 random bytes, sent as unpadded URL-safe
 * base64, stored only as their SHA-256. */
#ifndef AL_AUTH_H
#define AL_AUTH_H

#include <stdbool.h>

#include "http.h"

/* Authenticate the request. On success sets req->user_id and req->device_id
 * and returns 0. Otherwise replies 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN
 * (403 M_USER_SUSPENDED, the spec's code since v1.13, for suspended users;
 * 401 M_UNKNOWN_TOKEN for deactivated ones) and returns -1: the handler
 * must return without replying again. */
int auth_require(struct http_req *req);

/* As auth_require, and the user must be a server admin (config `admins` or
 * users.is_admin); others get 403 M_FORBIDDEN. */
int auth_require_admin(struct http_req *req);

/* As auth_require, also telling whether the account is a guest. */
int auth_require_ex(struct http_req *req, bool *is_guest);

/* Drop cached tokens of a user (device_id NULL: of every device). Call
 * after the transaction that revoked them committed. */
void auth_forget_user(struct app *app, const char *user_id, const char *device_id);

/* ---- module life cycle ---- */
int auth_start(struct app *app);
void auth_stop(struct app *app);

#endif
