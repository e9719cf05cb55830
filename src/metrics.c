/* metrics.c - per-worker counters, summed at scrape time into Prometheus text. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define CODE_MIN 100
#define CODE_MAX 599
#define NCODES (CODE_MAX - CODE_MIN + 1)

typedef _Atomic uint64_t counter_t;

/* Upper bounds in microseconds: upstream time to head, and propagation. */
static const uint64_t lat_bounds_us[] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};
#define NLAT (sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))

static const uint64_t prop_bounds_us[] = {
	50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000, 100000,
};
#define NPROP (sizeof(prop_bounds_us) / sizeof(prop_bounds_us[0]))

struct hist_lat {
	counter_t bucket[NLAT + 1];   /* the last is +Inf */
	counter_t sum_us, count;
};

struct hist_prop {
	counter_t bucket[NPROP + 1];
	counter_t sum_us, count;
};

struct metrics_route {
	counter_t requests[NCODES];
	counter_t cancels[CTX_CAUSE__COUNT];
	counter_t retries[RETRY_REASON__COUNT];
	struct hist_lat latency;
};

/* Attempt counters come in chunks of server slots, made on first use: a
 * worker pays for the servers it talks to, not for METRICS_MAX_SERVERS. */
#define SERVER_CHUNK 64
#define NCHUNKS (METRICS_MAX_SERVERS / SERVER_CHUNK)
_Static_assert(METRICS_MAX_SERVERS % SERVER_CHUNK == 0,
	       "server slots come in whole chunks");

struct metrics_servers {
	counter_t attempts[SERVER_CHUNK][RETRY_OUTCOME__COUNTED];
};

struct metrics_worker {
	_Atomic(struct metrics_route *) routes[METRICS_MAX_ROUTES];
	_Atomic(struct metrics_servers *) servers[NCHUNKS];
	counter_t inflight_up, inflight_down;
	counter_t invalid_deadline;
	counter_t tunnels_up, tunnels_down;
	counter_t tunnel_ends[CTX_CAUSE__COUNT];
	struct hist_prop propagation;
};

/* Route names by slot, and the registered workers: touched at start-up,
 * reload and scrape only. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static char *slot_names[METRICS_MAX_ROUTES];
static int nslots = 1;
static struct metrics_worker *workers[CONFIG_WORKERS_MAX];

/* Server slots, keyed by (route, origin).  A slot is filled under reg_lock
 * and then published by the release store of nservers, so the name getters
 * need no lock: a slot below the acquired count never changes again. */
struct server_slot {
	char *route;
	char *origin;       /* "http://host:port" */
	const char *name;   /* "host:port": points into origin */
};
static struct server_slot server_slots[METRICS_MAX_SERVERS];
static atomic_int nservers = 1;

/* Changed once per connection, not per request: one shared counter is
 * cheap enough, and the request path needs the total for max_connections. */
static atomic_long connections;

/* Once per TLS connection: shared like the connection count. */
static atomic_ulong tls_handshakes[METRICS_TLS_N];

/* Per batch of spans, from the exporter's thread (drops, from any). */
static atomic_ulong trace_spans[METRICS_SPAN_N];

static void bump(counter_t *c, uint64_t by)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
			      by, memory_order_relaxed);
}

static uint64_t get(counter_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static int slot_of(const char *name)
{
	int i;

	for (i = 1; i < nslots; i++)
		if (strcmp(slot_names[i], name) == 0)
			return i;
	if (nslots == METRICS_MAX_ROUTES)
		return 0;
	slot_names[nslots] = strdup(name);
	return slot_names[nslots] ? nslots++ : 0;
}

/* origin without its scheme: the `server` label. */
static const char *origin_name(const char *origin)
{
	if (strncmp(origin, "http://", 7) == 0)
		return origin + 7;
	if (strncmp(origin, "https://", 8) == 0)
		return origin + 8;
	return origin;
}

/* The slot of (route, origin), made when new; 0 when full or on ENOMEM.
 * Under reg_lock: the main thread is the only writer. */
static int server_slot_of(const char *route, const char *origin)
{
	int n = atomic_load_explicit(&nservers, memory_order_relaxed);
	struct server_slot *s;
	int i;

	for (i = 1; i < n; i++)
		if (strcmp(server_slots[i].origin, origin) == 0 &&
		    strcmp(server_slots[i].route, route) == 0)
			return i;
	if (n == METRICS_MAX_SERVERS)
		return 0;
	s = &server_slots[n];
	s->route = strdup(route);
	s->origin = strdup(origin);
	if (!s->route || !s->origin) {
		free(s->route);
		free(s->origin);
		s->route = s->origin = NULL;
		return 0;
	}
	s->name = origin_name(s->origin);
	atomic_store_explicit(&nservers, n + 1, memory_order_release);
	return n;
}

int metrics_assign_slots(struct config *cfg)
{
	struct config_route *r;
	int rc = 0;
	size_t i, j;

	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		r->metrics_slot = slot_of(r->name);
		if (!r->metrics_slot)
			rc = -ENOSPC;
		for (j = 0; j < r->nservers; j++) {
			r->servers[j].slot = server_slot_of(r->name,
							    r->servers[j].origin);
			if (!r->servers[j].slot)
				rc = -ENOSPC;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

static const struct server_slot *server_slot(int slot)
{
	if (slot <= 0 ||
	    slot >= atomic_load_explicit(&nservers, memory_order_acquire))
		return NULL;
	return &server_slots[slot];
}

const char *metrics_server_name(int slot)
{
	const struct server_slot *s = server_slot(slot);

	return s ? s->name : NULL;
}

const char *metrics_server_route(int slot)
{
	const struct server_slot *s = server_slot(slot);

	return s ? s->route : NULL;
}

struct metrics_worker *metrics_worker_new(void)
{
	struct metrics_worker *m = calloc(1, sizeof(*m));
	int i;

	if (!m)
		return NULL;
	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < CONFIG_WORKERS_MAX && workers[i]; i++)
		;
	if (i < CONFIG_WORKERS_MAX)
		workers[i] = m;
	pthread_mutex_unlock(&reg_lock);
	if (i == CONFIG_WORKERS_MAX) {
		free(m);
		return NULL;
	}
	return m;
}

void metrics_worker_free(struct metrics_worker *m)
{
	int i;

	if (!m)
		return;
	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < CONFIG_WORKERS_MAX; i++)
		if (workers[i] == m)
			workers[i] = NULL;
	pthread_mutex_unlock(&reg_lock);
	for (i = 0; i < METRICS_MAX_ROUTES; i++)
		free(atomic_load(&m->routes[i]));
	for (i = 0; i < NCHUNKS; i++)
		free(atomic_load(&m->servers[i]));
	free(m);
}

/* The route's block, made on first use by the owner thread. */
static struct metrics_route *route_block(struct metrics_worker *m, int slot)
{
	struct metrics_route *r;

	if (slot < 0 || slot >= METRICS_MAX_ROUTES)
		slot = 0;
	r = atomic_load_explicit(&m->routes[slot], memory_order_relaxed);
	if (r)
		return r;
	r = calloc(1, sizeof(*r));
	if (r)
		atomic_store_explicit(&m->routes[slot], r, memory_order_release);
	return r;
}

static void observe(counter_t *bucket, const uint64_t *bounds, size_t n,
		    counter_t *sum, counter_t *count, uint64_t us)
{
	size_t i;

	for (i = 0; i < n && us > bounds[i]; i++)
		;
	bump(&bucket[i], 1);
	bump(sum, us);
	bump(count, 1);
}

void metrics_request_done(struct metrics_worker *m, int slot, int status,
			  ctx_cause_t cause, int64_t upstream_ns,
			  int64_t propagation_ns)
{
	struct metrics_route *r = route_block(m, slot);

	if (!r)
		return;
	if (status >= CODE_MIN && status <= CODE_MAX)
		bump(&r->requests[status - CODE_MIN], 1);
	if (cause != CTX_CAUSE_COMPLETED && cause > CTX_CAUSE_NONE &&
	    cause < CTX_CAUSE__COUNT)
		bump(&r->cancels[cause], 1);
	if (upstream_ns >= 0)
		observe(r->latency.bucket, lat_bounds_us, NLAT,
			&r->latency.sum_us, &r->latency.count,
			(uint64_t)upstream_ns / 1000);
	if (propagation_ns >= 0)
		observe(m->propagation.bucket, prop_bounds_us, NPROP,
			&m->propagation.sum_us, &m->propagation.count,
			(uint64_t)propagation_ns / 1000);
}

/* The chunk holding server `slot`, made on first use by the owner thread;
 * NULL for slot 0, out of range or ENOMEM (the attempt goes uncounted). */
static struct metrics_servers *server_chunk(struct metrics_worker *m,
					    int slot)
{
	struct metrics_servers *c;
	int k;

	if (slot <= 0 || slot >= METRICS_MAX_SERVERS)
		return NULL;
	k = slot / SERVER_CHUNK;
	c = atomic_load_explicit(&m->servers[k], memory_order_relaxed);
	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (c)
		atomic_store_explicit(&m->servers[k], c, memory_order_release);
	return c;
}

void metrics_attempt(struct metrics_worker *m, int server_slot,
		     enum retry_outcome o)
{
	struct metrics_servers *c;

	if ((int)o < 0 || o >= RETRY_OUTCOME__COUNTED)
		return;
	c = server_chunk(m, server_slot);
	if (c)
		bump(&c->attempts[server_slot % SERVER_CHUNK][o], 1);
}

void metrics_retry(struct metrics_worker *m, int route_slot,
		   enum retry_reason why)
{
	struct metrics_route *r;

	if ((int)why < 0 || why >= RETRY_REASON__COUNT)
		return;
	r = route_block(m, route_slot);
	if (r)
		bump(&r->retries[why], 1);
}

void metrics_inflight_add(struct metrics_worker *m, int delta)
{
	if (delta > 0)
		bump(&m->inflight_up, (uint64_t)delta);
	else
		bump(&m->inflight_down, (uint64_t)-delta);
}

void metrics_tunnel_open(struct metrics_worker *m)
{
	bump(&m->tunnels_up, 1);
}

void metrics_tunnel_done(struct metrics_worker *m, ctx_cause_t cause)
{
	bump(&m->tunnels_down, 1);
	if (cause > CTX_CAUSE_NONE && cause < CTX_CAUSE__COUNT)
		bump(&m->tunnel_ends[cause], 1);
}

long metrics_inflight(const struct metrics_worker *m)
{
	return (long)(get((counter_t *)&m->inflight_up) -
		      get((counter_t *)&m->inflight_down));
}

void metrics_invalid_deadline(struct metrics_worker *m)
{
	bump(&m->invalid_deadline, 1);
}

/* ---- scraping: sums over the registered workers ---- */

struct sum_route {
	uint64_t requests[NCODES];
	uint64_t cancels[CTX_CAUSE__COUNT];
	uint64_t retries[RETRY_REASON__COUNT];
	uint64_t lat[NLAT + 1], lat_sum_us, lat_count;
	bool used;
};

struct sums {
	struct sum_route route[METRICS_MAX_ROUTES];
	uint64_t attempts[METRICS_MAX_SERVERS][RETRY_OUTCOME__COUNTED];
	uint64_t prop[NPROP + 1], prop_sum_us, prop_count;
	uint64_t inflight_up, inflight_down, invalid_deadline;
	uint64_t tunnels_up, tunnels_down, tunnel_ends[CTX_CAUSE__COUNT];
};

static void sum_route(struct sum_route *s, struct metrics_route *r)
{
	size_t i;

	s->used = true;
	for (i = 0; i < NCODES; i++)
		s->requests[i] += get(&r->requests[i]);
	for (i = 0; i < CTX_CAUSE__COUNT; i++)
		s->cancels[i] += get(&r->cancels[i]);
	for (i = 0; i < RETRY_REASON__COUNT; i++)
		s->retries[i] += get(&r->retries[i]);
	for (i = 0; i <= NLAT; i++)
		s->lat[i] += get(&r->latency.bucket[i]);
	s->lat_sum_us += get(&r->latency.sum_us);
	s->lat_count += get(&r->latency.count);
}

static void sum_servers(struct sums *s, struct metrics_worker *m)
{
	struct metrics_servers *c;
	size_t k, i, o;

	for (k = 0; k < NCHUNKS; k++) {
		c = atomic_load_explicit(&m->servers[k], memory_order_acquire);
		if (!c)
			continue;
		for (i = 0; i < SERVER_CHUNK; i++)
			for (o = 0; o < RETRY_OUTCOME__COUNTED; o++)
				s->attempts[k * SERVER_CHUNK + i][o] +=
					get(&c->attempts[i][o]);
	}
}

static void sum_worker(struct sums *s, struct metrics_worker *m)
{
	struct metrics_route *r;
	size_t i;

	for (i = 0; i < METRICS_MAX_ROUTES; i++) {
		r = atomic_load_explicit(&m->routes[i], memory_order_acquire);
		if (r)
			sum_route(&s->route[i], r);
	}
	sum_servers(s, m);
	for (i = 0; i <= NPROP; i++)
		s->prop[i] += get(&m->propagation.bucket[i]);
	s->prop_sum_us += get(&m->propagation.sum_us);
	s->prop_count += get(&m->propagation.count);
	s->inflight_up += get(&m->inflight_up);
	s->inflight_down += get(&m->inflight_down);
	s->invalid_deadline += get(&m->invalid_deadline);
	s->tunnels_up += get(&m->tunnels_up);
	s->tunnels_down += get(&m->tunnels_down);
	for (i = 0; i < CTX_CAUSE__COUNT; i++)
		s->tunnel_ends[i] += get(&m->tunnel_ends[i]);
}

static void family(FILE *out, const char *name, const char *type,
		   const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *slot_name(int slot)
{
	return slot ? slot_names[slot] : "-";
}

static void write_requests(FILE *out, const struct sums *s)
{
	int slot, i;

	family(out, "ctxproxy_requests_total", "counter",
	       "Requests answered, by route and status code (499: the client left).");
	for (slot = 0; slot < nslots; slot++)
		for (i = 0; i < NCODES; i++)
			if (s->route[slot].requests[i])
				fprintf(out, "ctxproxy_requests_total{route=\"%s\","
					"code=\"%d\"} %llu\n", slot_name(slot),
					i + CODE_MIN, (unsigned long long)
					s->route[slot].requests[i]);
	family(out, "ctxproxy_cancellations_total", "counter",
	       "Requests cancelled, by route and cause.");
	for (slot = 0; slot < nslots; slot++)
		for (i = CTX_CAUSE_CLIENT_DISCONNECT; i < CTX_CAUSE__COUNT; i++)
			if (s->route[slot].used)
				fprintf(out, "ctxproxy_cancellations_total{route="
					"\"%s\",cause=\"%s\"} %llu\n",
					slot_name(slot), ctx_cause_name(i),
					(unsigned long long)s->route[slot].cancels[i]);
}

/* Like requests_total: only the series that counted something. */
static void write_upstream(FILE *out, const struct sums *s)
{
	int n = atomic_load_explicit(&nservers, memory_order_relaxed);
	int slot, i;

	family(out, "ctxproxy_upstream_attempts_total", "counter",
	       "Upstream attempts, by route, server and outcome.");
	for (slot = 1; slot < n; slot++)
		for (i = 0; i < RETRY_OUTCOME__COUNTED; i++)
			if (s->attempts[slot][i])
				fprintf(out, "ctxproxy_upstream_attempts_total{"
					"route=\"%s\",server=\"%s\",outcome=\"%s\"}"
					" %llu\n", server_slots[slot].route,
					server_slots[slot].name,
					retry_outcome_name(i), (unsigned long long)
					s->attempts[slot][i]);
	family(out, "ctxproxy_retries_total", "counter",
	       "Extra upstream attempts, by route and the failure retried.");
	for (slot = 0; slot < nslots; slot++)
		for (i = 0; i < RETRY_REASON__COUNT; i++)
			if (s->route[slot].retries[i])
				fprintf(out, "ctxproxy_retries_total{route=\"%s\","
					"reason=\"%s\"} %llu\n",
					slot_name(slot), retry_reason_name(i),
					(unsigned long long)s->route[slot].retries[i]);
}

/* One histogram series: cumulative buckets, sum and count. */
static void write_hist(FILE *out, const char *name, const char *labels,
		       const uint64_t *bounds, const uint64_t *bucket,
		       size_t n, uint64_t sum_us, uint64_t count)
{
	const char *sep = *labels ? "," : "";
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		cum += bucket[i];
		fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
			(double)bounds[i] / 1e6, (unsigned long long)cum);
	}
	cum += bucket[n];
	fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		(unsigned long long)cum);
	fprintf(out, "%s_sum%s%s%s %.6f\n", name, *labels ? "{" : "", labels,
		*labels ? "}" : "", (double)sum_us / 1e6);
	fprintf(out, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels,
		*labels ? "}" : "", (unsigned long long)count);
}

static void write_histograms(FILE *out, const struct sums *s)
{
	char labels[300];
	int slot;

	family(out, "ctxproxy_upstream_latency_seconds", "histogram",
	       "Time from starting an upstream fetch to its response head, by route.");
	for (slot = 0; slot < nslots; slot++) {
		if (!s->route[slot].used)
			continue;
		snprintf(labels, sizeof(labels), "route=\"%s\"", slot_name(slot));
		write_hist(out, "ctxproxy_upstream_latency_seconds", labels,
			   lat_bounds_us, s->route[slot].lat, NLAT,
			   s->route[slot].lat_sum_us, s->route[slot].lat_count);
	}
	family(out, "ctxproxy_cancel_propagation_seconds", "histogram",
	       "Time from a cancellation to the upstream connection being closed.");
	write_hist(out, "ctxproxy_cancel_propagation_seconds", "",
		   prop_bounds_us, s->prop, NPROP, s->prop_sum_us,
		   s->prop_count);
}

static void write_tls(FILE *out)
{
	static const char *const names[METRICS_TLS_N] = {
		"ok", "failed", "timeout" };
	int i;

	family(out, "ctxproxy_tls_handshakes_total", "counter",
	       "TLS listener handshakes by result (ok, failed, timeout).");
	for (i = 0; i < METRICS_TLS_N; i++)
		fprintf(out, "ctxproxy_tls_handshakes_total{result=\"%s\"} %lu\n",
			names[i], atomic_load_explicit(&tls_handshakes[i],
						       memory_order_relaxed));
}

static void write_trace(FILE *out)
{
	family(out, "ctxproxy_trace_spans_exported_total", "counter",
	       "Trace spans an OTLP collector accepted.");
	fprintf(out, "ctxproxy_trace_spans_exported_total %lu\n",
		atomic_load_explicit(&trace_spans[METRICS_SPAN_EXPORTED],
				     memory_order_relaxed));
	family(out, "ctxproxy_trace_spans_dropped_total", "counter",
	       "Trace spans not exported: the queue was full, the collector "
	       "kept failing, or they were left at stop.");
	fprintf(out, "ctxproxy_trace_spans_dropped_total %lu\n",
		atomic_load_explicit(&trace_spans[METRICS_SPAN_DROPPED],
				     memory_order_relaxed));
}

static void write_tunnels(FILE *out, const struct sums *s)
{
	int i;

	family(out, "ctxproxy_tunnels_active", "gauge",
	       "Upgraded (WebSocket) connections being relayed now.");
	fprintf(out, "ctxproxy_tunnels_active %lld\n",
		(long long)(s->tunnels_up - s->tunnels_down));
	family(out, "ctxproxy_tunnels_total", "counter",
	       "Tunnels ended, by cause.");
	for (i = CTX_CAUSE_COMPLETED; i < CTX_CAUSE__COUNT; i++)
		fprintf(out, "ctxproxy_tunnels_total{cause=\"%s\"} %llu\n",
			ctx_cause_name((ctx_cause_t)i),
			(unsigned long long)s->tunnel_ends[i]);
}

static void write_gauges(FILE *out, const struct sums *s, int draining)
{
	family(out, "ctxproxy_inflight_requests", "gauge",
	       "Requests being handled now.");
	fprintf(out, "ctxproxy_inflight_requests %lld\n",
		(long long)(s->inflight_up - s->inflight_down));
	family(out, "ctxproxy_client_connections", "gauge",
	       "Client connections open now.");
	fprintf(out, "ctxproxy_client_connections %ld\n",
		metrics_connections());
	family(out, "ctxproxy_draining", "gauge",
	       "1 while the daemon stops gracefully.");
	fprintf(out, "ctxproxy_draining %d\n", draining ? 1 : 0);
	family(out, "ctxproxy_invalid_deadline_headers_total", "counter",
	       "Client deadline headers ignored as invalid.");
	fprintf(out, "ctxproxy_invalid_deadline_headers_total %llu\n",
		(unsigned long long)s->invalid_deadline);
	write_tunnels(out, s);
	write_tls(out);
	write_trace(out);
}

void metrics_tls_handshake(enum metrics_tls result)
{
	if (result < METRICS_TLS_N)
		atomic_fetch_add_explicit(&tls_handshakes[result], 1,
					  memory_order_relaxed);
}

void metrics_trace_spans(enum metrics_span what, uint64_t n)
{
	if (what < METRICS_SPAN_N)
		atomic_fetch_add_explicit(&trace_spans[what], n,
					  memory_order_relaxed);
}

void metrics_connections_add(int delta)
{
	atomic_fetch_add_explicit(&connections, delta, memory_order_relaxed);
}

long metrics_connections(void)
{
	return atomic_load_explicit(&connections, memory_order_relaxed);
}

void metrics_totals_by_cause(uint64_t out[CTX_CAUSE__COUNT])
{
	struct metrics_route *r;
	uint64_t answered = 0, cancelled = 0;
	int w, slot, i;

	memset(out, 0, CTX_CAUSE__COUNT * sizeof(out[0]));
	pthread_mutex_lock(&reg_lock);
	for (w = 0; w < CONFIG_WORKERS_MAX; w++) {
		if (!workers[w])
			continue;
		for (slot = 0; slot < METRICS_MAX_ROUTES; slot++) {
			r = atomic_load_explicit(&workers[w]->routes[slot],
						 memory_order_acquire);
			if (!r)
				continue;
			for (i = 0; i < NCODES; i++)
				answered += get(&r->requests[i]);
			for (i = CTX_CAUSE_CLIENT_DISCONNECT; i < CTX_CAUSE__COUNT; i++)
				out[i] += get(&r->cancels[i]);
		}
	}
	pthread_mutex_unlock(&reg_lock);
	for (i = CTX_CAUSE_CLIENT_DISCONNECT; i < CTX_CAUSE__COUNT; i++)
		cancelled += out[i];
	out[CTX_CAUSE_COMPLETED] = answered > cancelled ? answered - cancelled : 0;
}

int metrics_write(FILE *out, int draining)
{
	struct sums *s = calloc(1, sizeof(*s));
	int i;

	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < CONFIG_WORKERS_MAX; i++)
		if (workers[i])
			sum_worker(s, workers[i]);
	write_requests(out, s);
	write_upstream(out, s);
	write_histograms(out, s);
	pthread_mutex_unlock(&reg_lock);
	write_gauges(out, s, draining);
	free(s);
	return ferror(out) ? -EIO : 0;
}
