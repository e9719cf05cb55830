/* front.h - the client side: libmicrohttpd daemons, client connections and configuration generations. */
#ifndef CTXPROXY_FRONT_H
#define CTXPROXY_FRONT_H

#include <stdint.h>

#include "context.h"

struct front;
struct gen;
struct log_buf;
struct loop;
struct metrics_worker;
struct upstream;
struct watch_ring;
struct watch_snap;

/* What a front needs from its worker; all of it outlives the front. */
struct otlp;

struct front_env {
	struct loop *loop;
	struct upstream *up;
	ctx_t *root;                     /* the worker's background context */
	struct gen *gen;                 /* the first configuration (a ref is taken) */
	const int *listen_fds;           /* one per cfg->listen entry */
	struct metrics_worker *metrics;
	struct log_buf *log;             /* the worker's access-log buffer */
	struct otlp *otlp;               /* the span exporter, or NULL */
	struct watch_ring *watch;        /* the worker's last cancellations */
	int worker_id;
};

/*
 * Threading: a front, its connections and its requests live on their
 * worker's thread.  The requests themselves are request.c's: the front
 * hands them what they need (struct req_env, struct req_conn) and calls
 * req_* from libmicrohttpd's callbacks and its hang-up watch.
 */

/* Start one MHD daemon per listening socket (at most CONFIG_LISTEN_MAX,
 * which config_load enforces), in external epoll mode, with its epoll fd
 * added to env->loop.  NULL on failure (logged). */
struct front *front_new(const struct front_env *env);

/* Stop the daemons (resuming what is suspended first) and free what is
 * left.  front_free(NULL) is a no-op. */
void front_free(struct front *fr);

/* Monotonic ns by which front_run() must be called, or CTX_NO_DEADLINE;
 * "now" when it has work already. */
int64_t front_next_timeout(struct front *fr);

/* Let MHD do its work (read, parse, call handlers, write), then free the
 * replaced configuration generations no request uses any more. */
void front_run(struct front *fr);

/* Switch to a new configuration generation (a ref is taken): requests that
 * start from now on use it; running ones keep theirs. */
int front_set_gen(struct front *fr, struct gen *g);

/* Stop accepting; new requests on open connections get 503 and close. */
void front_drain(struct front *fr);

/* Add a row to s for each request in flight (the worker's thread). */
void front_watch(struct front *fr, struct watch_snap *s);

#endif
