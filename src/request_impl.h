/* request_impl.h - what request.c and request_reply.c share of a request: its struct and the calls between them. */
#ifndef CTXPROXY_REQUEST_IMPL_H
#define CTXPROXY_REQUEST_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "exchange.h"
#include "headers.h"
#include "invariant.h"
#include "request.h"

#define REQ_TARGET_MAX 8192
#define REQ_DEADLINE_MAX_MS (24LL * 3600 * 1000)
#define REQ_BODY_BAD (-3)      /* a malformed Content-Length */
#define REQ_MAX_FIELDS 128

enum req_phase { PH_UPLOADING, PH_AWAITING, PH_STREAMING, PH_DONE };

struct field_vec {
	struct headers_field f[REQ_MAX_FIELDS];
	size_t n;
	bool overflow;
};

struct req {
	struct req_env *env;
	struct req_gen *gen;              /* the generation it started under */
	const struct config *cfg;         /* gen's config */
	struct req *prev, *next;          /* in env->live */
	struct MHD_Connection *conn;
	struct req_conn *rc;              /* until the request ends */
	int refs;
	char *uri;                        /* raw target, owned */
	char *path;                       /* its path part, owned */
	const char *query;                /* in uri, after '?', or NULL */
	const struct config_route *route;
	ctx_t *ctx;                       /* the request context */
	ctx_t *child;                     /* the upstream exchange's context */
	ctx_watch_t ctx_watch;
	struct exchange *x;
	const struct field_vec *fields;   /* while the first attempt starts */
	enum req_phase phase;
	const char *cancel_phase;
	int err_status;
	const char *err_msg;
	bool body_expected, suspended, responded, eof_sent;
	int status;
	uint64_t bytes_in, bytes_out;
	int64_t t0;
	char method[16];
	char id[129];
	char client[64];
	const char *tls;                  /* static: NULL plain, else "1.3"... */
};

/* Phases only move forward (a request never streams twice). */
static inline void req_set_phase(struct req *r, enum req_phase ph)
{
	ASSERT(ph >= r->phase);
	r->phase = ph;
}

/* The attempt the response comes from (NULL before the exchange). */
static inline struct fetch *req_fetch(const struct req *r)
{
	return r->x ? exchange_fetch(r->x) : NULL;
}

/* Suspend the connection while the request waits (request.c): false when
 * the client is gone (the request is then cancelled). */
bool req_suspend(struct req *r);

/* Drop a reference (request.c); the last frees the request. */
void req_unref(struct req *r);

/* The answers (request_reply.c), each queued on the connection.  An
 * error of ctxproxy's own, with msg as its body: */
enum MHD_Result req_reply(struct req *r, int status, const char *msg,
			  bool close);

/* The upstream's response, streamed (the exchange has its head): */
enum MHD_Result req_reply_stream(struct req *r);

/* The exchange failed before a head: 502, 503 or 504 saying why. */
enum MHD_Result req_reply_failure(struct req *r);

#endif
