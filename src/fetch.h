/* fetch.h - one upstream exchange: the request written and the response read by ctxproxy on a connection it owns. */
#ifndef CTXPROXY_FETCH_H
#define CTXPROXY_FETCH_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "context.h"

struct config_timeouts;
struct config_upstream_tls;
struct upstream;
struct fetch;

/*
 * Threading: a fetch belongs to its upstream's worker thread.
 * Notifications to the fetch's owner are never made from inside a fetch_*
 * call: they are queued and delivered by upstream_dispatch(), which the
 * worker calls from its loop.
 */

/* What the owner of a fetch hears; each may be NULL. */
struct fetch_ops {
	void (*on_head)(void *arg);         /* the final response head arrived */
	void (*on_body)(void *arg);         /* body bytes or the end: try fetch_recv */
	void (*on_upload_space)(void *arg); /* fetch_send accepts bytes again */
	void (*on_done)(void *arg);         /* the exchange ended, well or not */
};

struct fetch_request {
	const char *method;
	const char *origin;          /* "http[s]://host:port": where to connect */
	const char *pool_key;        /* its idle connections (config_server's) */
	const struct config_upstream_tls *tls;  /* NULL for http:// */
	const char *target;          /* sent byte for byte: "/path?query" */
	int64_t body_len;            /* -1 no body, FETCH_BODY_CHUNKED, or bytes */
	const struct config_timeouts *timeouts;
	const char *deadline_header; /* NULL or "" = don't send one */
	int keepalive_max;           /* idle connections kept per server */
	/* Ask to upgrade to a WebSocket (SPEC §10): the head carries
	 * "Connection: upgrade" and "Upgrade: websocket", and a 101 ends the
	 * exchange with the connection kept for fetch_take_conn(). */
	bool upgrade;
	/* For an upgrade, the deadline header announces the tunnel's budget,
	 * not the exchange's, which ends at the 101: the earlier of
	 * tunnel_deadline (the client's own; CTX_NO_DEADLINE for none) and
	 * tunnel_max_ms from when the head goes out (0 = none); neither: no
	 * header. */
	int64_t tunnel_deadline;
	int64_t tunnel_max_ms;
	int64_t keepalive_timeout_ms;
};
#define FETCH_BODY_CHUNKED (-2)

/* Returned by fetch_recv besides byte counts. */
#define FETCH_RECV_AGAIN 0             /* nothing yet: wait for on_body */
#define FETCH_RECV_END (-ESHUTDOWN)    /* body complete */
#define FETCH_RECV_ABORTED (-ECANCELED)/* ended early: truncate */

/* A fetch under ctx (normally the request's child context: the fetch keeps
 * a reference), not started yet: its head holds the request line (the
 * target is copied into it at once).  rq is copied; its other strings must
 * outlive the fetch.  NULL on ENOMEM. */
struct fetch *fetch_new(struct upstream *up, ctx_t *ctx,
			const struct fetch_request *rq,
			const struct fetch_ops *ops, void *arg);

/* Add the field "name: value" to the request head (before fetch_start).
 * The caller has checked both (SPEC §6): they are copied as they are.
 * -ENOMEM when the head cannot grow. */
int fetch_head_add(struct fetch *f, const char *name, size_t name_len,
		   const char *value, size_t value_len);

/* Start the exchange: on an idle pooled connection to the origin, or a new
 * one.  The deadline header (the remaining budget of ctx) is written when
 * the request goes out.  Cancelling ctx aborts the exchange and closes its
 * connection (the FIN goes out at once).  The route's connect, header and
 * idle timeouts cancel ctx with their own causes.  Returns 0, or -ECANCELED
 * when ctx is cancelled already, or -ENOMEM. */
int fetch_start(struct fetch *f);

/* Abort if still running, drop everything.  fetch_free(NULL) is a no-op.
 * No notification is made after this. */
void fetch_free(struct fetch *f);

/* Copy up to len request-body bytes into the fetch's bounded buffer.
 * Returns how many were taken (0 when full: wait for on_upload_space), or
 * -ECANCELED once the fetch has ended (the caller discards the body). */
ssize_t fetch_send(struct fetch *f, const char *data, size_t len);

/* The request body is complete. */
void fetch_send_eof(struct fetch *f);

/* Copy up to len response-body bytes out.  Returns a count, or one of
 * FETCH_RECV_AGAIN, FETCH_RECV_END, FETCH_RECV_ABORTED. */
ssize_t fetch_recv(struct fetch *f, char *buf, size_t len);

/* The response-body bytes buffered now (not consumed). */
const char *fetch_peek(const struct fetch *f, size_t *len);

/* After on_head: the status, the body length (-1 unknown) and the header
 * fields, hop-by-hop and framing fields already removed. */
int fetch_status(const struct fetch *f);
int64_t fetch_content_length(const struct fetch *f);
bool fetch_has_head(const struct fetch *f);
size_t fetch_header_count(const struct fetch *f);
void fetch_header(const struct fetch *f, size_t i, const char **name,
		  const char **value);

/* The bytes the kept header fields take as "name: value CRLF" lines. */
size_t fetch_header_bytes(const struct fetch *f);

/* True once the exchange ended; fetch_ok when it ended cleanly (the whole
 * response read). */
bool fetch_ended(const struct fetch *f);
bool fetch_ok(const struct fetch *f);

/* Nanoseconds from fetch_start to the response head, or -1 without one. */
int64_t fetch_head_latency(const struct fetch *f);

/* Why the exchange failed, as far as the fetch knows (timeouts show in
 * its context's cause): nothing sent (the connect failed or timed out),
 * the connection died or the response was cut, or the response was
 * refused as malformed. */
enum fetch_fail { FETCH_FAIL_NONE, FETCH_FAIL_CONNECT, FETCH_FAIL_RESET,
		  FETCH_FAIL_REFUSED };
enum fetch_fail fetch_failure(const struct fetch *f);

/* "IP:PORT" of the connection used last, or "" when none connected. */
const char *fetch_peer(const struct fetch *f);

/* After a 101 to an upgrade request (fetch_ok, status 101): the
 * connection, now the caller's (a connected uconn whose user must be set
 * with uconn_set_user before the next loop turn), and the bytes the
 * backend sent after its head, in *extra (valid until fetch_free).  NULL
 * otherwise, or once taken. */
struct uconn *fetch_take_conn(struct fetch *f, const char **extra,
			      size_t *extra_len);

/* Give the fetch's buffers back (an ended fetch whose connection was
 * taken: an idle tunnel must not keep the 64 KiB its 101 was read into).
 * fetch_peek and fetch_recv have nothing after it. */
void fetch_trim(struct fetch *f);

/* Monotonic ns when the upstream connection was closed because the fetch
 * was cancelled or failed, or 0. */
int64_t fetch_closed_at(const struct fetch *f);

#endif
