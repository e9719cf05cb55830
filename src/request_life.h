/* request_life.h - a request's life: what the worker keeps of requests (environment, connection link, a generation's pools, hang-up and shutdown calls), and the request itself as request*.c share it. */
#ifndef CTXPROXY_REQUEST_LIFE_H
#define CTXPROXY_REQUEST_LIFE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <microhttpd.h>

#include "context.h"
#include "exchange.h"
#include "headers.h"
#include "invariant.h"
#include "trace.h"

struct MHD_Connection;

/* libmicrohttpd's memory per client connection: the request head and the
 * response head are built in it (16 KiB holds a request head of up to
 * ~8 KiB and costs half of the default 32 KiB, which it clears for every
 * request). */
#define REQ_CONN_MEMORY (16 * 1024)
struct gen;
struct log_access;
struct log_buf;
struct loop;
struct otlp;
struct metrics_worker;
struct upstream;
struct req;
struct watch_ring;
struct watch_snap;

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
	struct loop *loop;               /* the worker's (tunnels) */
	struct upstream *up;
	struct metrics_worker *metrics;
	struct log_buf *log;             /* the worker's access-log buffer */
	struct otlp *otlp;               /* sampled spans go there; or NULL */
	struct watch_ring *watch;        /* the worker's last cancellations */
	int worker;                      /* the worker's number */
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
	/* A tunnel took the hang-up watch's registration in the loop over
	 * (and removes it): the front must not remove it again. */
	bool fd_taken;
	const char *tls;                 /* NULL: plain; TLS version, "1.3"... */
	char client[64];                 /* "ip:port" */
};

/* The client's FIN or RST arrived (rc->peer_gone is set): a suspended
 * request is cancelled with client_disconnect now, another at its next
 * suspension. */
void req_on_hangup(struct req_conn *rc);

/* The connection is closing: forget the link to its request. */
void req_conn_closed(struct req_conn *rc);

/* Cancel every live request with `cause` and resume what is suspended
 * (libmicrohttpd cannot stop a daemon with a suspended connection). */
void req_cancel_all(struct req_env *env, ctx_cause_t cause);

/* End every tunnel now, without waiting for the loop (the worker stops;
 * libmicrohttpd cannot stop a daemon with an upgraded connection open):
 * request_tunnel.c. */
void req_tunnels_end_now(struct req_env *env);

/* Add a row to s for every request in flight (request_watch.c; the
 * worker's thread, inside the wake-up that carries s). */
void req_watch(struct req_env *env, struct watch_snap *s);

/* ---- below: request.c, request_reply.c and request_life.c only ---- */
#define REQ_TARGET_MAX 8192
#define REQ_DEADLINE_MAX_MS (24LL * 3600 * 1000)
#define REQ_BODY_BAD (-3)      /* a malformed Content-Length */
#define REQ_MAX_FIELDS 128

enum req_phase { PH_UPLOADING, PH_AWAITING, PH_STREAMING, PH_TUNNEL,
		 PH_DONE };

/* "uploading", ..., "tunnel", "done": static strings, as the access log,
 * the spans and the live view have them. */
static inline const char *req_phase_name(enum req_phase ph)
{
	static const char *const names[] = {
		"uploading", "awaiting_headers", "streaming", "tunnel", "done",
	};

	return names[ph];
}

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
	struct trace trace;               /* its place in its W3C trace */
	bool traced;                      /* trace_context: trace is set */
	bool upgrade;                     /* a WebSocket upgrade goes upstream */
	struct req_tunnel *tun;           /* while a tunnel (request_tunnel.c) */
	bool tunneled;                    /* it became one: it logs itself */
	int64_t tun_end_ns, tun_close_ns; /* the proxy learnt of its end, and
					     closed the other side (0: n/a) */
	const struct field_vec *fields;   /* while the first attempt starts */
	enum req_phase phase;
	const char *cancel_phase;
	int err_status;
	const char *err_msg;
	bool body_expected, suspended, responded, eof_sent;
	bool logged;                      /* req_log ran: no longer in flight */
	int status;
	uint64_t bytes_in, bytes_out;
	int64_t t0;
	char method[16];
	char id[129];
	char client[64];
	const char *tls;                  /* static: NULL plain, else "1.3"... */
};

/* ---- request_log.c ---- */

/* The access line and the request's metrics; the request leaves the
 * in-flight gauge.  Once per request: a tunnel's when it ends. */
void req_log(struct req *r);

/* ---- request_watch.c ---- */

/* Record the cancelled request r, as its access line a has it, in the
 * worker's ring for the live view (propagation_ns < 0: none).  Called
 * for cancellations only: a completed request costs req_log one test. */
void req_watch_cancel(const struct req *r, const struct log_access *a,
		      int64_t propagation_ns);

/* snprintf(dst, cap, "%s", src) without the printf engine; NULL as "". */
static inline void req_copy_trunc(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

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

/* request_life.c: a new request on connection c, counted in env (one
 * reference, MHD's); NULL on ENOMEM. */
struct req *req_new(struct req_env *env, struct MHD_Connection *c);

/* Drop a reference; the last frees the request. */
void req_unref(struct req *r);

/* Suspend the connection while the request waits: false when the client
 * is gone (the request is then cancelled). */
bool req_suspend(struct req *r);

/* Resume it (a no-op when not suspended): libmicrohttpd runs again. */
void req_resume(struct req *r);

/* The answers (request_reply.c), each queued on the connection.  An
 * error of ctxproxy's own, with msg as its body: */
enum MHD_Result req_reply(struct req *r, int status, const char *msg,
			  bool close);

/* The upstream's response, streamed (the exchange has its head): */
enum MHD_Result req_reply_stream(struct req *r);

/* The exchange failed before a head: 502, 503 or 504 saying why. */
enum MHD_Result req_reply_failure(struct req *r);


/* ---- request_tunnel.c: a request that upgrades (SPEC §10) ---- */

/* Sets r->upgrade when the request (checked head: fields f[0, n)) is a
 * WebSocket upgrade to carry; on a TLS listener a 501 in r->err_status
 * instead. */
void req_upgrade_check(struct req *r, const char *version, int64_t body_len,
		       const struct headers_field *f, size_t n);
/* The response for the backend's 101 (its fields still to add): once it
 * is sent, libmicrohttpd hands over the client's socket and the tunnel
 * starts (it holds a reference to r until its end, when it logs r and
 * closes both connections).  NULL on ENOMEM. */
struct MHD_Response *req_upgrade_response(void);
/* End r's tunnel now, synchronously (the worker stops): cause shutdown
 * unless r's context has one.  A no-op without a live tunnel. */
void req_tunnel_end_now(struct req *r);


#endif
