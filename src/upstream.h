/* upstream.h - upstream fetches over libcurl multi, driven by a worker loop. */
#ifndef CTXPROXY_UPSTREAM_H
#define CTXPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "context.h"
#include "loop.h"

struct upstream;
struct fetch;

/*
 * Threading: an upstream and its fetches belong to one worker thread.
 * Notifications to the fetch's owner are never made from inside libcurl or
 * from inside a fetch_* call: they are queued and delivered by
 * upstream_dispatch(), which the worker calls from its loop.
 */

/* What the owner of a fetch hears; each may be NULL. */
struct fetch_ops {
	void (*on_head)(void *arg);         /* the final response head arrived */
	void (*on_body)(void *arg);         /* body bytes or the end: try fetch_recv */
	void (*on_upload_space)(void *arg); /* fetch_send accepts bytes again */
	void (*on_done)(void *arg);         /* the transfer ended, well or not */
};

/* The request head's extra lines for libcurl, built without a malloc per
 * line (the fetch copies them into its own block): each line NUL-ended,
 * back to back in buf, line i ending just before end[i]. */
#define FETCH_HEAD_BYTES 32768
#define FETCH_HEAD_LINES 160
struct fetch_head {
	size_t len, n;
	uint32_t end[FETCH_HEAD_LINES];
	char buf[FETCH_HEAD_BYTES];
};

/* Start an empty head (only len and n need clearing). */
void fetch_head_init(struct fetch_head *h);

/* Send "name: value"; an empty value sends the field empty.  -ENOSPC when
 * the head is full. */
int fetch_head_add(struct fetch_head *h, const char *name, size_t name_len,
		   const char *value, size_t value_len);

/* Keep libcurl from sending its own field of this name.  -ENOSPC when
 * full. */
int fetch_head_drop(struct fetch_head *h, const char *name, size_t name_len);

struct fetch_request {
	const char *method;
	const char *origin;          /* "http://host:port" */
	const char *target;          /* sent byte for byte: "/path?query" */
	const struct fetch_head *head;  /* copied: the caller keeps it */
	int64_t body_len;            /* -1 no body, FETCH_BODY_CHUNKED, or bytes */
	const struct config_timeouts *timeouts;
	const char *deadline_header; /* NULL or "" = don't send one */
};
#define FETCH_BODY_CHUNKED (-2)

/* Returned by fetch_recv besides byte counts. */
#define FETCH_RECV_AGAIN 0             /* nothing yet: wait for on_body */
#define FETCH_RECV_END (-ESHUTDOWN)    /* body complete */
#define FETCH_RECV_ABORTED (-ECANCELED)/* ended early: truncate */

/* A curl multi driven by loop.  NULL on failure. */
struct upstream *upstream_new(struct loop *loop);

/* Aborts what still runs.  upstream_free(NULL) is a no-op. */
void upstream_free(struct upstream *up);

/* When curl next wants upstream_on_timer() (monotonic ns), or
 * CTX_NO_DEADLINE. */
int64_t upstream_next_timer(const struct upstream *up);
void upstream_on_timer(struct upstream *up);

/* Upstream FINs sent by cancellations since the last upstream_dispatch().
 * Their libcurl teardown waits for that dispatch, which first yields the
 * CPU once, so a backend on this machine woken by the FIN runs first. */
int upstream_fins(const struct upstream *up);

/* Deliver queued notifications.  Returns how many fetches were notified. */
int upstream_dispatch(struct upstream *up);

/* Start a fetch under ctx (normally the request's child context: the fetch
 * keeps a reference).  Cancelling ctx aborts the transfer and closes its
 * connection.  The route's connect, header and idle timeouts cancel ctx
 * with their own causes.  Returns NULL on failure. */
struct fetch *fetch_start(struct upstream *up, ctx_t *ctx,
			  const struct fetch_request *rq,
			  const struct fetch_ops *ops, void *arg);

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

/* True once the transfer ended; fetch_ok when it ended cleanly. */
bool fetch_ended(const struct fetch *f);
bool fetch_ok(const struct fetch *f);

/* Nanoseconds from fetch_start to the response head, or -1 without one. */
int64_t fetch_head_latency(const struct fetch *f);

/* Monotonic ns when the upstream connection was closed because the fetch
 * was cancelled or failed, or 0. */
int64_t fetch_closed_at(const struct fetch *f);

#endif
