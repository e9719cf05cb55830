/* request.h - one client request: check, route, contexts, fetch, reply, log. */
#ifndef CTXPROXY_REQUEST_H
#define CTXPROXY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"

struct MHD_Connection;

/* libmicrohttpd's memory per client connection: the request head and the
 * response head are built in it (16 KiB holds a request head of up to
 * ~8 KiB and costs half of the default 32 KiB, which it clears for every
 * request). */
#define REQ_CONN_MEMORY (16 * 1024)
struct gen;
struct log_buf;
struct metrics_worker;
struct upstream;
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

/* A configuration generation as one worker uses it: `live` counts the
 * worker's requests under it, so no request touches a shared counter.  The
 * front owns it and frees it once it is replaced and live is 0. */
struct req_gen {
	struct gen *g;
	long live;
	struct pool **pools;             /* the worker's, one per route */
	struct req_gen *next;            /* the front's list of replaced ones */
};

/* The worker's side of generation g (a reference is taken): a server pool
 * for every route, carrying the passive health of prev's routes of the
 * same name (prev may be NULL).  NULL on ENOMEM. */
struct req_gen *req_gen_new(struct gen *g, const struct req_gen *prev);

/* Drop the pools and the reference.  req_gen_free(NULL) is a no-op. */
void req_gen_free(struct req_gen *rg);

/* The worker's side of every request; owned by the front, it outlives
 * every request (the front frees its requests first). */
struct req_env {
	ctx_t *root;                     /* the worker's background context */
	struct upstream *up;
	struct metrics_worker *metrics;
	struct log_buf *log;             /* the worker's access-log buffer */
	struct req_gen *gen;             /* new requests start under it */
	struct req *live;                /* every request not yet freed */
	uint64_t rng[2];                 /* request ids */
	bool draining;                   /* new requests get 503 + close */
	bool need_run;                   /* a connection was resumed: run MHD */
};

/* What a request sees of its client connection; embedded in the front's
 * connection, which outlives the requests it links to. */
struct req_conn {
	struct req *req;                 /* the request being handled, if any */
	const char *uri;                 /* its raw target (a copy), or NULL */
	const char *uri_raw;             /* the target in MHD's read buffer */
	bool peer_gone;                  /* the client's FIN or RST was seen */
	const char *tls;                 /* NULL: plain; TLS version, "1.3"... */
	char client[64];                 /* "ip:port" */
};

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

/* The client's FIN or RST arrived (rc->peer_gone is set): a suspended
 * request is cancelled with client_disconnect now, another at its next
 * suspension. */
void req_on_hangup(struct req_conn *rc);

/* The connection is closing: forget the link to its request. */
void req_conn_closed(struct req_conn *rc);

/* Cancel every live request with `cause` and resume what is suspended
 * (libmicrohttpd cannot stop a daemon with a suspended connection). */
void req_cancel_all(struct req_env *env, ctx_cause_t cause);

#endif
