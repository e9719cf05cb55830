/* request_watch.c - what the live view sees of a worker's requests: a row for each in flight, a record of each cancellation. */
#include <time.h>

#include "config.h"
#include "gen.h"
#include "log.h"
#include "request_life.h"
#include "watch.h"

/* The query string may carry tokens: shown only when the configuration
 * in force says so (a reload applies from the next look). */
static bool req_watch_query(const struct req_env *env)
{
	return env->gen->g->cfg->admin_show_query;
}

static const char *req_watch_path(const struct req *r, bool query)
{
	return query ? r->uri : r->path;
}

/* Time left to the deadline of the exchange (else of the request), in
 * µs; -1 when there is none. */
static int64_t req_budget_left_us(const struct req *r, int64_t now)
{
	const ctx_t *c = r->child ? r->child : r->ctx;
	int64_t at = c ? ctx_deadline(c) : CTX_NO_DEADLINE;

	if (at == CTX_NO_DEADLINE)
		return -1;
	return at > now ? (at - now) / 1000 : 0;
}

static void req_watch_row(const struct req *r, bool query, int64_t now,
			  struct watch_req *w)
{
	req_copy_trunc(w->id, sizeof(w->id), r->id);
	req_copy_trunc(w->method, sizeof(w->method), r->method);
	req_copy_trunc(w->path, sizeof(w->path), req_watch_path(r, query));
	req_copy_trunc(w->route, sizeof(w->route),
		       r->route ? r->route->name : NULL);
	w->phase = req_phase_name(r->phase);
	w->worker = r->env->worker;
	w->attempts = r->x ? exchange_attempts(r->x) : 0;
	w->age_us = (now - r->t0) / 1000;
	w->budget_left_us = req_budget_left_us(r, now);
}

void req_watch(struct req_env *env, struct watch_snap *s)
{
	bool query = req_watch_query(env);
	int64_t now = ctx_now_ns();
	const struct req *r;
	struct watch_req w;

	for (r = env->live; r; r = r->next) {
		if (r->logged)            /* only a reference keeps it */
			continue;
		req_watch_row(r, query, now, &w);
		watch_snap_add_req(s, &w);
	}
}

void req_watch_cancel(const struct req *r, const struct log_access *a,
		      int64_t propagation_ns)
{
	struct watch_cancel c;
	struct timespec now;

	if (!r->env->watch)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	c.seq = 0;                        /* the ring numbers it */
	c.worker = r->env->worker;
	c.unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	req_copy_trunc(c.id, sizeof(c.id), r->id);
	req_copy_trunc(c.method, sizeof(c.method), r->method);
	req_copy_trunc(c.path, sizeof(c.path),
		       req_watch_path(r, req_watch_query(r->env)));
	req_copy_trunc(c.route, sizeof(c.route), a->route);
	c.cause = a->cause;
	c.phase = a->phase;
	c.status = a->status;
	c.propagation_us = propagation_ns < 0 ? -1 : propagation_ns / 1000;
	watch_ring_push(r->env->watch, &c);
}
