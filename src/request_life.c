/* request_life.c - a request's life: the object and its references, the worker's pools of a generation, suspension, resumption and hang-ups. */
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "exchange.h"
#include "gen.h"
#include "invariant.h"
#include "metrics.h"
#include "pool.h"
#include "request_life.h"

/* ---- the request object ---- */

struct req *req_new(struct req_env *env, struct MHD_Connection *c)
{
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->env = env;
	r->conn = c;
	r->refs = 1;
	r->t0 = ctx_now_ns();
	r->gen = env->gen;
	r->gen->live++;
	r->cfg = r->gen->g->cfg;
	r->next = env->live;
	if (env->live)
		env->live->prev = r;
	env->live = r;
	metrics_inflight_add(env->metrics, 1);
	return r;
}

void req_unref(struct req *r)
{
	if (!r)
		return;
	ASSERT(r->refs > 0);
	if (--r->refs > 0)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		r->env->live = r->next;
	if (r->next)
		r->next->prev = r->prev;
	ctx_unwatch(&r->ctx_watch);
	ASSERT(!r->tun);                  /* it holds a reference */
	exchange_free(r->x);
	ctx_unref(r->child);
	ctx_unref(r->ctx);
	ASSERT(r->gen->live > 0);
	r->gen->live--;                   /* the front frees it once replaced */
	free(r->path);
	free(r->uri);
	free(r);
}

/* ---- a generation as the worker uses it ---- */

static const struct pool *req_gen_pool_named(const struct req_gen *rg,
					     const char *name)
{
	const struct config *cfg;
	size_t i;

	if (!rg)
		return NULL;
	cfg = rg->g->cfg;
	for (i = 0; i < cfg->nroutes; i++)
		if (strcmp(cfg->routes[i].name, name) == 0)
			return rg->pools[i];
	return NULL;
}

struct req_gen *req_gen_new(struct gen *g, const struct req_gen *prev)
{
	const struct config *cfg = g->cfg;
	struct req_gen *rg = calloc(1, sizeof(*rg));
	size_t i;

	if (!rg)
		return NULL;
	rg->g = gen_ref(g);
	rg->pools = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*rg->pools));
	if (!rg->pools)
		goto free_rg;
	for (i = 0; i < cfg->nroutes; i++) {
		rg->pools[i] = pool_new(&cfg->routes[i],
					req_gen_pool_named(prev, cfg->routes[i].name));
		if (!rg->pools[i])
			goto free_rg;
	}
	return rg;
free_rg:
	req_gen_free(rg);
	return NULL;
}

void req_gen_free(struct req_gen *rg)
{
	size_t i;

	if (!rg)
		return;
	if (rg->pools)
		for (i = 0; i < rg->g->cfg->nroutes; i++)
			pool_free(rg->pools[i]);
	free(rg->pools);
	gen_unref(rg->g);
	free(rg);
}

/* ---- suspend, resume and hang-ups ---- */

/* libmicrohttpd does not watch a suspended connection: the front's
 * hang-up watch does, and a FIN that came while the request was not
 * suspended turns the next suspension into a cancellation instead. */
bool req_suspend(struct req *r)
{
	if (r->suspended)
		return true;
	if (r->rc && r->rc->peer_gone) {
		ctx_cancel(r->ctx, CTX_CAUSE_CLIENT_DISCONNECT);
		return false;
	}
	MHD_suspend_connection(r->conn);
	r->suspended = true;
	return true;
}

void req_resume(struct req *r)
{
	if (!r->suspended)
		return;
	r->suspended = false;
	MHD_resume_connection(r->conn);
	/* 0.9.75 external mode: resuming wakes nothing; MHD must be run. */
	r->env->need_run = true;
}

void req_on_hangup(struct req_conn *rc)
{
	struct req *r = rc->req;

	if (r && r->suspended) {
		ctx_cancel(r->ctx, CTX_CAUSE_CLIENT_DISCONNECT);
		req_resume(r);
	}
}

void req_conn_closed(struct req_conn *rc)
{
	if (rc->req)
		rc->req->rc = NULL;
	rc->req = NULL;
}

void req_cancel_all(struct req_env *env, ctx_cause_t cause)
{
	struct req *r;

	for (r = env->live; r; r = r->next) {
		if (r->ctx)
			ctx_cancel(r->ctx, cause);
		req_resume(r);
	}
}
