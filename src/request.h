/* request.h - one client request: check, route, contexts, fetch, reply, log. */
#ifndef CTXPROXY_REQUEST_H
#define CTXPROXY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"
#include "request_life.h"

struct MHD_Connection;
struct req;

/*
 * Threading: a request lives on its worker's thread, from the first call
 * of the access handler to the last reference (the response reader may
 * hold one after the request ended).
 *
 * A request is a state machine, in this order: check the head (SPEC §6),
 * decide an early answer (503, 400, 413, 404), make the request context
 * and the fetch's child context, start the fetch, stream the body up,
 * reply (streamed, or an error saying why), log.  Its phase only moves
 * forward: uploading -> awaiting_headers -> streaming -> done.
 */

/* Seed the id generator; the rest of env is the caller's. */
void req_env_init(struct req_env *env);

/* A new request id: 128 random bits as 32 lower-case hex digits. */
void req_new_id(struct req_env *env, char out[33]);

/* libmicrohttpd's access handler for a connection (rc may be NULL when
 * the front could not track the connection).  *con_cls is the request:
 * NULL on the first call, which makes it.  Returns MHD_YES or MHD_NO. */
int req_access(struct req_env *env, struct req_conn *rc,
	       struct MHD_Connection *c, const char *method,
	       const char *version, const char *upload_data,
	       size_t *upload_data_size, void **con_cls);

/* How libmicrohttpd ended a request. */
enum req_end { REQ_END_OK, REQ_END_SHUTDOWN, REQ_END_ABORTED };

/* The request is over for libmicrohttpd: cancel its context (cause from
 * `how` and the fetch), log it and drop MHD's reference. */
void req_end(struct req *r, enum req_end how);

#endif
