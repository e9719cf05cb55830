/* metrics.h - per-worker counters, summed at scrape time into Prometheus text. */
#ifndef CTXPROXY_METRICS_H
#define CTXPROXY_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "context.h"
#include "retry.h"

/*
 * Each worker owns one struct metrics_worker and is its only writer: a
 * counter moves with a relaxed load and store, no lock and no locked
 * instruction on the request path.  The scraper (any thread) sums every
 * registered worker's counters with relaxed loads.
 *
 * Routes are counted by slot: a route name keeps its slot for the life of
 * the process (across reloads); slot 0 is "no route".
 */

#define METRICS_MAX_ROUTES 256
#define METRICS_MAX_SERVERS 1024  /* (route name, server) pairs, process life */

struct metrics_worker;

/* Give every route of cfg its slot (cfg->routes[i].metrics_slot), creating
 * slots for names not seen before, and every server its slot
 * (routes[i].servers[j].slot, keyed by route name and origin).  Main
 * thread, before the config is used.  Returns 0, or -ENOSPC when there
 * are more than METRICS_MAX_ROUTES - 1 distinct names (those routes share
 * the "no route" slot) or METRICS_MAX_SERVERS - 1 servers (slot 0: not
 * counted). */
int metrics_assign_slots(struct config *cfg);

/* A worker's counters, registered for scraping.  NULL on ENOMEM. */
struct metrics_worker *metrics_worker_new(void);

/* Unregister and free.  metrics_worker_free(NULL) is a no-op. */
void metrics_worker_free(struct metrics_worker *m);

/* One request finished (owner thread).  status is what the client got (499
 * when it left), cause the request's cause (COMPLETED = not a cancellation),
 * upstream_ns the time to the upstream response head (< 0: none),
 * propagation_ns the time from the cancellation to the upstream connection
 * being closed (< 0: none). */
void metrics_request_done(struct metrics_worker *m, int slot, int status,
			  ctx_cause_t cause, int64_t upstream_ns,
			  int64_t propagation_ns);

/* One upstream attempt on server `slot` ended with outcome o (owner
 * thread); RETRY_OUT_CANCELLED is not counted. */
void metrics_attempt(struct metrics_worker *m, int server_slot,
		     enum retry_outcome o);

/* An exchange on route `slot` made another attempt because of `why`
 * (owner thread). */
void metrics_retry(struct metrics_worker *m, int route_slot,
		   enum retry_reason why);

/* The label of server `slot`: "host:port" (its origin without the
 * scheme), and its route's name.  NULL for slot 0 or out of range.  Any
 * thread: names never change once given. */
const char *metrics_server_name(int slot);
const char *metrics_server_route(int slot);

/* A request started or ended (owner thread): the in-flight gauge. */
void metrics_inflight_add(struct metrics_worker *m, int delta);

/* Requests in flight on this worker (any thread, approximate). */
long metrics_inflight(const struct metrics_worker *m);

/* A client sent an invalid deadline header (owner thread). */
void metrics_invalid_deadline(struct metrics_worker *m);

/* A tunnel began relaying, or ended with cause (worker thread only):
 * ctxproxy_tunnels_active and ctxproxy_tunnels_total{cause}. */
void metrics_tunnel_open(struct metrics_worker *m);
void metrics_tunnel_done(struct metrics_worker *m, ctx_cause_t cause);

/* A client connection opened (+1) or closed (-1).  Any thread. */
void metrics_connections_add(int delta);

/* How a TLS listener's handshake ended (see metrics_tls_handshake). */
enum metrics_tls { METRICS_TLS_OK, METRICS_TLS_FAILED, METRICS_TLS_TIMEOUT,
		   METRICS_TLS_N };

/* Count a TLS handshake: ok once the client's Finished arrived; timeout
 * when client_header_timeout_ms closed it first; failed when the
 * connection closed otherwise before that.  Any thread. */
void metrics_tls_handshake(enum metrics_tls result);

/* What became of exported trace spans (see metrics_trace_spans). */
enum metrics_span { METRICS_SPAN_EXPORTED, METRICS_SPAN_DROPPED,
		    METRICS_SPAN_N };

/* Count n trace spans: exported once a collector accepted their batch;
 * dropped when the exporter's queue was full, a batch was given up, or
 * the exporter stopped with spans left.  Any thread. */
void metrics_trace_spans(enum metrics_span what, uint64_t n);

/* Client connections open now, on every worker.  Any thread. */
long metrics_connections(void);

/* Requests since start by cause, every worker's summed as /metrics sums
 * them: out[cause] for each cancellation cause is
 * ctxproxy_cancellations_total over all routes; out[CTX_CAUSE_COMPLETED]
 * the requests answered that were not cancelled (ctxproxy_requests_total
 * less those); out[CTX_CAUSE_NONE] is 0.  Any thread (relaxed reads, so
 * a request ending meanwhile may be counted in one sum and not yet in
 * the other). */
void metrics_totals_by_cause(uint64_t out[CTX_CAUSE__COUNT]);

/* Write the Prometheus text exposition of every worker's counters summed,
 * plus the connections and `draining` gauges.  Any thread.  Returns 0 or
 * -errno. */
int metrics_write(FILE *out, int draining);

#endif
