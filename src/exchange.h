/* exchange.h - one request's upstream exchange: the attempts under its budget, the server of each, the body held for a retry. */
#ifndef CTXPROXY_EXCHANGE_H
#define CTXPROXY_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "context.h"
#include "fetch.h"

struct config;
struct config_route;
struct config_server;
struct metrics_worker;
struct pool;
struct upstream;
struct exchange;

/*
 * Threading: an exchange belongs to its worker thread, as its fetches do.
 *
 * The context tree (SPEC §8): the exchange runs under ctx (the request's
 * child, deadline min(request, now + timeout_ms)); each attempt under a
 * child of it (deadline min(exchange, now + per_try_timeout_ms)).  A
 * failed attempt is retried when retry_decide() says so, on another
 * server when there is one; otherwise ctx is cancelled with the attempt's
 * cause, and the owner replies from that.  The owner hears what a fetch's
 * owner hears (struct fetch_ops), from the attempt whose head it gets.
 */

/* Writes the request head's fields for an attempt to server s (called
 * before each attempt starts); 0 or a negative errno. */
typedef int (*exchange_head_fn)(void *arg, struct fetch *f,
				const struct config_server *s);

struct exchange_request {
	const char *method;
	const char *target;          /* copied */
	int64_t body_len;            /* -1 none, FETCH_BODY_CHUNKED, or bytes */
	bool upgrade;                /* a WebSocket upgrade (fetch_request's) */
	int64_t tunnel_deadline;     /* ... and its budget (fetch_request's) */
	int64_t tunnel_max_ms;
	const struct config_route *route;
	int64_t route_deadline;      /* now + timeout_ms when ctx was made: an
					earlier deadline of ctx is the client's */
	const struct config *cfg;    /* deadline header, keep-alive */
	struct pool *pool;           /* the route's, this worker's */
	struct metrics_worker *metrics;
	exchange_head_fn write_head;
};

/* An exchange under ctx (a reference is kept), not started.  NULL on
 * ENOMEM. */
struct exchange *exchange_new(struct upstream *up, ctx_t *ctx,
			      const struct exchange_request *xr,
			      const struct fetch_ops *ops, void *arg);

/* Start the first attempt.  0, -ECANCELED (ctx is), or -ENOMEM. */
int exchange_start(struct exchange *x);

/* Abort what runs, drop everything; no notification after.
 * exchange_free(NULL) is a no-op. */
void exchange_free(struct exchange *x);

/* Request body in: as fetch_send (0 = wait for on_upload_space,
 * -ECANCELED once it is over).  Up to 64 KiB of it is held, so an attempt
 * can be made again, until a response head arrives. */
ssize_t exchange_send(struct exchange *x, const char *data, size_t len);
void exchange_send_eof(struct exchange *x);

/* The attempt the owner reads the response from: the last one made.
 * NULL before exchange_start. */
struct fetch *exchange_fetch(const struct exchange *x);

/* True once the owner was given a response head (on_head): from then
 * on the response is exchange_fetch()'s. */
bool exchange_has_head(const struct exchange *x);

/* True once no attempt runs and none will. */
bool exchange_ended(const struct exchange *x);

/* When the last attempt that did not complete was cancelled (its own
 * timeout or failure, or the exchange's cancel reaching it), or 0: the
 * moment that closed its connection. */
int64_t exchange_attempt_cancelled_at(const struct exchange *x);

/* Attempts made (0 before any), and the address of the last attempt's
 * server: "IP:PORT" once connected, else the configured "host:port". */
int exchange_attempts(const struct exchange *x);
const char *exchange_upstream_addr(const struct exchange *x);

#endif
