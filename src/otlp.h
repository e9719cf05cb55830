/* otlp.h - sampled request spans exported as OTLP/HTTP JSON, from a bounded queue, on a thread of their own. */
#ifndef CTXPROXY_OTLP_H
#define CTXPROXY_OTLP_H

#include <stdbool.h>
#include <stdint.h>

/*
 * One exporter per daemon (SPEC §11 `otlp_endpoint`).  Workers hand it
 * finished spans with otlp_submit(), which copies the span into a bounded
 * queue and never blocks nor allocates on the request path; a full queue
 * drops the span (counted).  The exporter's thread sends batches of at
 * most OTLP_BATCH_MAX spans, or what has waited OTLP_BATCH_NS, as one
 * OTLP/HTTP JSON ExportTraceServiceRequest POSTed with libcurl; a failed
 * POST (no connection, a timeout, a 5xx or 429) is retried with backoff,
 * and a batch that still fails is dropped (counted).  A slow or dead
 * collector therefore costs requests nothing but the copy.
 *
 * The POST: Content-Type application/json, 5 s timeout (2 s to connect),
 * never through an environment proxy; tried at most 4 times, 100, 400 and
 * 1600 ms apart; any other non-2xx answer (3xx, 4xx) drops the batch at
 * once.  Every drop also counts in ctxproxy_trace_spans_dropped_total and
 * every accepted span in ctxproxy_trace_spans_exported_total
 * (metrics_trace_spans).  The log
 * gets one line when export starts failing and one when it works again,
 * not one per batch.
 *
 * The body, per OTLP JSON: one resourceSpans (service.name) with one
 * scopeSpans (scope "ctxproxy"); ids as lowercase hex strings; times and
 * intValue attributes as decimal strings (proto3 JSON's 64-bit form);
 * kind 2 (server); name "METHOD route", or "METHOD" without a route.
 * Attributes: http.request.method, url.path, http.response.status_code,
 * and when set ctxproxy.upstream_status, http.route, ctxproxy.cause,
 * ctxproxy.phase, ctxproxy.propagation_us, ctxproxy.attempts; status
 * {code: 2} when error, else no status.  Every string is escaped to valid
 * JSON in valid UTF-8: bytes that are not well-formed UTF-8 become U+FFFD.
 *
 * Threading: otlp_submit() and otlp_stats() from any thread; the rest
 * from the main thread.  libcurl must be initialised (curl_global_init)
 * before otlp_new and cleaned up only after otlp_free.
 */

#define OTLP_QUEUE_MAX 8192              /* spans waiting; more are dropped */
#define OTLP_BATCH_MAX 512
#define OTLP_BATCH_NS (1000LL * 1000000) /* the oldest waits at most 1 s */

/* Lengths of the strings a span carries (truncated to fit, NUL-ended). */
#define OTLP_METHOD_MAX 16
#define OTLP_ROUTE_MAX 64
#define OTLP_PATH_MAX 256

/* One server span: a request as this hop saw it.  Plain data, copied. */
struct otlp_span {
	uint8_t trace_id[16];
	uint8_t span_id[8];              /* this hop's */
	uint8_t parent_id[8];            /* the caller's span, if has_parent */
	bool has_parent;
	int64_t start_unix_ns, end_unix_ns;
	char method[OTLP_METHOD_MAX];
	char route[OTLP_ROUTE_MAX];      /* "" = no route matched */
	char path[OTLP_PATH_MAX];        /* the raw target */
	int status;                      /* sent to the client (499: it left) */
	int upstream_status;             /* 0 = none */
	int attempts;                    /* upstream attempts; 0 = none */
	const char *cause;               /* static: ctx_cause_name(); NULL: none */
	const char *phase;               /* static: where it was cancelled;
					    NULL: none (not cancelled) */
	int64_t propagation_ns;          /* cancel -> upstream closed; -1 n/a */
	bool error;                      /* 5xx, or cancelled but completed */
};

/* Counters since otlp_new (any thread, relaxed). */
struct otlp_stats {
	uint64_t exported;               /* spans a collector accepted */
	uint64_t dropped;                /* queue full, or a batch given up */
	uint64_t failed_posts;           /* POSTs that failed (each try) */
};

struct otlp;

/* An exporter to endpoint ("http[s]://host:port/v1/traces"), its thread
 * started; service_name is the resource's service.name ("ctxproxy").  Both
 * strings are copied.  Makes no connection (the first batch does); the
 * queue is allocated here, whole (OTLP_QUEUE_MAX spans, about 3.7 MB,
 * touched only as it fills).  NULL on failure, errno EINVAL (not an
 * http:// or https:// URL), ENOMEM, or pthread_create's. */
struct otlp *otlp_new(const char *endpoint, const char *service_name);

/* Queue a copy of span s (its strings must be NUL-ended; cause and phase
 * are kept as pointers).  Returns 0, or -ENOSPC when the queue is full or
 * the exporter is stopped (the span is dropped and counted).  Any thread;
 * takes a mutex for the copy, never blocks on I/O, never allocates. */
int otlp_submit(struct otlp *o, const struct otlp_span *s);

/* Send what is queued, at once and for at most grace_ms (spans submitted
 * meanwhile too), then stop the thread: a POST still in flight at the end
 * of the grace is cut, a retry whose backoff would outlast it is not made,
 * and what is left is dropped, counted, and told in one log line.  Returns
 * after about grace_ms at most.  Idempotent; later submits are dropped. */
void otlp_stop(struct otlp *o, int64_t grace_ms);

/* The counters (any thread). */
void otlp_stats(const struct otlp *o, struct otlp_stats *out);

/* Stop (no grace) and free.  otlp_free(NULL) is a no-op. */
void otlp_free(struct otlp *o);

#endif
