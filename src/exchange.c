/* exchange.c - one request's upstream exchange: the attempts under its budget, the server of each, the body held for a retry. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "exchange.h"
#include "invariant.h"
#include "metrics.h"
#include "pool.h"
#include "retry.h"
#include "upstream.h"

/* The request body kept for another attempt: one pooled block. */
#define EXCHANGE_HOLD_MAX UPSTREAM_BUF_SIZE

struct exchange {
	struct upstream *up;
	ctx_t *ctx;                      /* the exchange's */
	ctx_t *attempt;                  /* the last attempt's */
	ctx_watch_t attempt_watch;
	int64_t attempt_cancelled_at;    /* the last failed attempt's cancel */
	struct fetch *fetch;             /* the last attempt's */
	const struct fetch_ops *ops;
	void *arg;
	struct exchange_request xr;
	struct fetch_request rq;         /* each attempt's, but its origin */
	int server;                      /* index of the last attempt's */
	uint64_t tried;                  /* bit i: server i had an attempt */
	int attempts;
	bool begun, retrying, head_passed, failed, idempotent;
	bool open;                       /* its server has no verdict yet */
	bool busy;                       /* it counts in flight on its server */

	/* waiting for a retry slot: the reason, the wake-up, the deadline */
	struct pool_waiter waiter;
	struct upstream_job job;
	ctx_watch_t wait_watch;
	enum retry_reason wait_why;

	/* the request body, held whole while it fits and no head came */
	char *hold;
	size_t hold_len, hold_sent;
	bool holdable, client_eof, eof_sent;
	bool hold_own;                   /* malloc'd to the body's size */
	char target[];                   /* sent byte for byte, each attempt */
};

static void x_on_head(void *arg);
static void x_on_body(void *arg);
static void x_on_upload_space(void *arg);
static void x_on_done(void *arg);
static void x_wait_cancelled(ctx_t *ctx, void *arg);
static void x_wait_granted(struct pool_waiter *w);
static void x_wait_over(struct upstream_job *job);

static const struct fetch_ops x_fetch_ops = {
	.on_head = x_on_head,
	.on_body = x_on_body,
	.on_upload_space = x_on_upload_space,
	.on_done = x_on_done,
};

static const struct config_server *x_server(const struct exchange *x)
{
	return &x->xr.route->servers[x->server];
}

/* ---- the held body ---- */

static size_t hold_cap(const struct exchange *x)
{
	if (x->xr.body_len > 0 && x->xr.body_len < EXCHANGE_HOLD_MAX)
		return (size_t)x->xr.body_len;
	return EXCHANGE_HOLD_MAX;
}

/* A body of known length takes its own size (a held 1 KiB upload costs
 * 1 KiB, not a block); a chunked one, a pooled block. */
static char *hold_get(struct exchange *x)
{
	if (hold_cap(x) < EXCHANGE_HOLD_MAX) {
		x->hold_own = true;
		return malloc((size_t)x->xr.body_len);
	}
	return upstream_buf_get(x->up);
}

static void hold_drop(struct exchange *x)
{
	if (x->hold_own)
		free(x->hold);
	else
		upstream_buf_put(x->up, x->hold);
	x->hold_own = false;
	x->hold = NULL;
	x->hold_len = x->hold_sent = 0;
}

/* What the attempt has not had of the held body goes to it; then the end,
 * once the client's body ended.  No longer held: freed once sent. */
static void x_pump(struct exchange *x)
{
	ssize_t n;

	while (x->hold_sent < x->hold_len) {
		n = fetch_send(x->fetch, x->hold + x->hold_sent,
			       x->hold_len - x->hold_sent);
		if (n <= 0)
			break;
		x->hold_sent += (size_t)n;
	}
	if (x->hold_sent < x->hold_len)
		return;
	if (!x->holdable && x->hold)
		hold_drop(x);
	if (x->client_eof && !x->eof_sent) {
		x->eof_sent = true;
		fetch_send_eof(x->fetch);
	}
}

ssize_t exchange_send(struct exchange *x, const char *data, size_t len)
{
	if (x->failed || !x->fetch)
		return -ECANCELED;
	if (x->holdable && x->hold_len + len <= hold_cap(x)) {
		if (!x->hold)
			x->hold = hold_get(x);
		if (x->hold) {
			memcpy(x->hold + x->hold_len, data, len);
			x->hold_len += len;
			x_pump(x);
			return (ssize_t)len;
		}
	}
	x->holdable = false;             /* too big to send again */
	x_pump(x);
	if (x->hold_sent < x->hold_len)
		return 0;                    /* on_upload_space comes */
	return fetch_send(x->fetch, data, len);
}

void exchange_send_eof(struct exchange *x)
{
	x->client_eof = true;
	if (x->fetch && !x->failed)
		x_pump(x);
}

/* ---- attempts ---- */

/* The attempt's server judged and counted: at its failure, or at the
 * response head (x->busy: it stays in flight on the server until the
 * response is over, attempt_done). */
static void attempt_close(struct exchange *x, enum retry_outcome o)
{
	if (!x->open)
		return;
	x->open = false;
	if (x->busy)
		pool_verdict(x->xr.pool, x->server, o, ctx_now_ns());
	else
		pool_end(x->xr.pool, x->server, o, ctx_now_ns());
	metrics_attempt(x->xr.metrics, x_server(x)->slot, o);
}

static void attempt_done(struct exchange *x)
{
	if (!x->busy)
		return;
	x->busy = false;
	pool_done(x->xr.pool, x->server);
}

static void attempt_drop(struct exchange *x)
{
	ctx_unwatch(&x->attempt_watch);
	fetch_free(x->fetch);
	x->fetch = NULL;
	if (x->attempt)
		ctx_cancel(x->attempt, CTX_CAUSE_COMPLETED);
	ctx_unref(x->attempt);
	x->attempt = NULL;
}

/* Once the owner has the head, the attempt's failure is the exchange's
 * at once (a response cut or gone silent), as the owner reads its cause. */
static void x_on_attempt_cancel(ctx_t *attempt, void *arg)
{
	struct exchange *x = arg;
	ctx_cause_t cause = ctx_cause(attempt);

	if (cause != CTX_CAUSE_COMPLETED)
		x->attempt_cancelled_at = ctx_cancelled_at(attempt);
	if (x->head_passed && cause != CTX_CAUSE_COMPLETED)
		ctx_cancel(x->ctx, cause);
}

/* A server from the pool, a context under the exchange's bounded by
 * per_try_timeout_ms, a fetch with its head, and the held body again. */
static int attempt_start(struct exchange *x)
{
	const struct config_route *r = x->xr.route;
	int64_t now = ctx_now_ns();
	int rc;

	x->server = pool_pick(x->xr.pool, x->tried, now);
	x->tried |= 1ull << x->server;
	x->attempts++;
	x->open = true;
	x->attempt = r->per_try_timeout_ms > 0 ?
		ctx_with_deadline(x->ctx, now + r->per_try_timeout_ms * 1000000,
				  CTX_CAUSE_DEADLINE_EXCEEDED) :
		ctx_with_cancel(x->ctx);
	if (!x->attempt)
		return -ENOMEM;
	if (ctx_watch(x->attempt, &x->attempt_watch, x_on_attempt_cancel, x) < 0)
		return -ECANCELED;
	x->rq.origin = x_server(x)->origin;
	x->rq.pool_key = x_server(x)->pool_key;
	x->rq.tls = x_server(x)->tls ? &r->tls : NULL;
	x->rq.target = x->target;
	x->fetch = fetch_new(x->up, x->attempt, &x->rq, &x_fetch_ops, x);
	if (!x->fetch)
		return -ENOMEM;
	rc = x->xr.write_head(x->arg, x->fetch, x_server(x));
	if (rc == 0)
		rc = fetch_start(x->fetch);
	if (rc < 0)
		return rc;
	x->hold_sent = 0;
	x->eof_sent = false;
	x_pump(x);
	return 0;
}

/* No more attempts: the exchange fails with the last attempt's cause,
 * which the owner answers from. */
static void x_fail(struct exchange *x, ctx_cause_t cause)
{
	x->failed = true;
	if (cause == CTX_CAUSE_NONE || cause == CTX_CAUSE_COMPLETED)
		cause = CTX_CAUSE_UPSTREAM_ERROR;
	ctx_cancel(x->ctx, cause);
	if (x->ops->on_done)
		x->ops->on_done(x->arg);
}

static bool x_may_retry(struct exchange *x, enum retry_reason why)
{
	struct retry_in in = {
		.reason = why,
		.retry_on = x->xr.route->retry_on,
		.responded = x->head_passed,
		.idempotent = x->idempotent,
		/* none (or empty), or all of it still in the hold */
		.body_held = x->xr.body_len == -1 || x->xr.body_len == 0 ||
			x->holdable,
		.attempts = x->attempts,
		.retries = x->xr.route->retries,
		.budget_left = ctx_remaining_ns(x->ctx, ctx_now_ns()) > 0,
		/* the worker's retry budget says when, not whether: over
		 * it the retry waits for a slot (x_retry) */
		.retry_budget = true,
	};

	return retry_decide(&in);
}

/* Another attempt, on another server when there is one.  The owner hears
 * upload space: a body it was told to hold back may flow again. */
static void x_retry_now(struct exchange *x, enum retry_reason why)
{
	metrics_retry(x->xr.metrics, x->xr.route->metrics_slot, why);
	attempt_drop(x);
	if (attempt_start(x) < 0) {
		attempt_close(x, RETRY_OUT_CANCELLED);
		x_fail(x, CTX_CAUSE_UPSTREAM_ERROR);
		return;
	}
	if (!x->client_eof && x->ops->on_upload_space)
		x->ops->on_upload_space(x->arg);
}

/* The worker's retry budget: this exchange's first retry takes a slot
 * (its later ones run on it); over the budget it waits for one, for no
 * longer than its own deadline. */
static void x_retry(struct exchange *x, enum retry_reason why)
{
	if (x->retrying || pool_retry_allowed(x->xr.pool)) {
		if (!x->retrying) {
			x->retrying = true;
			pool_retry_begin(x->xr.pool);
		}
		x_retry_now(x, why);
		return;
	}
	x->wait_why = why;
	if (ctx_watch(x->ctx, &x->wait_watch, x_wait_cancelled, x) < 0) {
		x_fail(x, ctx_cause(x->ctx));
		return;
	}
	pool_retry_wait(x->xr.pool, &x->waiter);
}

/* Granted a slot (counted for it already) or cancelled while waiting:
 * either way the loop acts, never the call that told. */
static void x_wait_granted(struct pool_waiter *w)
{
	struct exchange *x = (struct exchange *)((char *)w -
		offsetof(struct exchange, waiter));

	x->retrying = true;
	upstream_defer(x->up, &x->job);
}

static void x_wait_cancelled(ctx_t *ctx, void *arg)
{
	struct exchange *x = arg;

	(void)ctx;
	pool_retry_unwait(x->xr.pool, &x->waiter);
	upstream_defer(x->up, &x->job);
}

static void x_wait_over(struct upstream_job *job)
{
	struct exchange *x = (struct exchange *)((char *)job -
		offsetof(struct exchange, job));

	ctx_unwatch(&x->wait_watch);
	if (ctx_is_cancelled(x->ctx)) {
		x_fail(x, ctx_cause(x->ctx));
		return;
	}
	x_retry_now(x, x->wait_why);
}

/* ---- what the attempt's fetch reports ---- */

static void x_on_head(void *arg)
{
	struct exchange *x = arg;
	int status = fetch_status(x->fetch);
	int why = retry_reason_of_status(status);

	if (why >= 0 && x_may_retry(x, (enum retry_reason)why)) {
		attempt_close(x, RETRY_OUT_STATUS_5XX);
		x_retry(x, (enum retry_reason)why);
		return;
	}
	x->busy = true;
	attempt_close(x, status >= 500 ? RETRY_OUT_STATUS_5XX : RETRY_OUT_OK);
	x->head_passed = true;
	x->holdable = false;             /* never sent again from now on */
	if (x->hold_sent == x->hold_len && x->hold)
		hold_drop(x);
	if (x->ops->on_head)
		x->ops->on_head(x->arg);
}

static void x_on_body(void *arg)
{
	struct exchange *x = arg;

	if (x->head_passed && x->ops->on_body)
		x->ops->on_body(x->arg);
}

static void x_on_upload_space(void *arg)
{
	struct exchange *x = arg;

	x_pump(x);
	if (x->hold_sent == x->hold_len && x->ops->on_upload_space)
		x->ops->on_upload_space(x->arg);
}

/* The exchange's deadline is the client's (a shorter deadline header),
 * not the route's timeout_ms: when it passes, the server is not to blame. */
static bool x_client_bound(const struct exchange *x)
{
	return ctx_is_cancelled(x->ctx) &&
		ctx_deadline(x->ctx) < x->xr.route_deadline;
}

/* What failed, from the fetch's account and its context's cause: -1 when
 * the attempt was not the server's fault (the request went away). */
static int x_failure(const struct exchange *x, enum retry_outcome *o)
{
	ctx_cause_t cause = ctx_cause(x->attempt);

	switch (fetch_failure(x->fetch)) {
	case FETCH_FAIL_CONNECT:
		*o = RETRY_OUT_CONNECT_FAILURE;
		return RETRY_CONNECT_FAILURE;
	case FETCH_FAIL_RESET:
		*o = RETRY_OUT_RESET;
		return RETRY_RESET;
	case FETCH_FAIL_REFUSED:
		*o = RETRY_OUT_RESET;            /* a broken response: not resent */
		return -1;
	case FETCH_FAIL_NONE:
		break;
	}
	if (cause == CTX_CAUSE_HEADER_TIMEOUT ||
	    (cause == CTX_CAUSE_DEADLINE_EXCEEDED && !x_client_bound(x))) {
		*o = RETRY_OUT_TIMEOUT;
		return RETRY_TIMEOUT;
	}
	*o = RETRY_OUT_CANCELLED;
	return -1;
}

static void x_on_done(void *arg)
{
	struct exchange *x = arg;
	enum retry_outcome o;
	int why;

	if (x->head_passed) {
		attempt_done(x);             /* the response is in, or cut */
		if (x->ops->on_done)
			x->ops->on_done(x->arg);
		return;
	}
	why = x_failure(x, &o);
	attempt_close(x, o);
	if (why >= 0 && !ctx_is_cancelled(x->ctx) &&
	    x_may_retry(x, (enum retry_reason)why)) {
		x_retry(x, (enum retry_reason)why);
		return;
	}
	x_fail(x, ctx_cause(x->attempt));
}

/* ---- the exchange's life ---- */

struct exchange *exchange_new(struct upstream *up, ctx_t *ctx,
			      const struct exchange_request *xr,
			      const struct fetch_ops *ops, void *arg)
{
	size_t len = strlen(xr->target);
	struct exchange *x = calloc(1, sizeof(*x) + len + 1);

	if (!x)
		return NULL;
	memcpy(x->target, xr->target, len + 1);
	x->up = up;
	x->ctx = ctx_ref(ctx);
	x->ops = ops;
	x->arg = arg;
	x->xr = *xr;
	x->xr.target = NULL;             /* the caller's: x->target is ours */
	x->rq.method = xr->method;
	x->rq.body_len = xr->body_len;
	x->rq.upgrade = xr->upgrade;
	x->rq.tunnel_deadline = xr->tunnel_deadline;
	x->rq.tunnel_max_ms = xr->tunnel_max_ms;
	x->rq.timeouts = &xr->route->t;
	x->rq.deadline_header = xr->cfg->deadline_header;
	x->rq.keepalive_max = xr->cfg->upstream_keepalive;
	x->rq.keepalive_timeout_ms = xr->cfg->upstream_keepalive_timeout_ms;
	x->idempotent = retry_idempotent(xr->method);
	x->waiter.granted = x_wait_granted;
	x->job.fn = x_wait_over;
	x->holdable = xr->body_len == FETCH_BODY_CHUNKED ||
		(xr->body_len > 0 && xr->body_len <= EXCHANGE_HOLD_MAX);
	return x;
}

int exchange_start(struct exchange *x)
{
	int rc;

	if (ctx_is_cancelled(x->ctx))
		return -ECANCELED;
	x->begun = true;
	pool_exchange_begin(x->xr.pool);
	rc = attempt_start(x);
	if (rc < 0) {
		attempt_close(x, RETRY_OUT_CANCELLED);
		attempt_drop(x);
		x->failed = true;
	}
	return rc;
}

void exchange_free(struct exchange *x)
{
	if (!x)
		return;
	attempt_close(x, RETRY_OUT_CANCELLED);
	attempt_done(x);
	attempt_drop(x);
	ctx_unwatch(&x->wait_watch);
	pool_retry_unwait(x->xr.pool, &x->waiter);
	upstream_undefer(x->up, &x->job);
	if (x->begun)
		pool_exchange_end(x->xr.pool, x->retrying);
	hold_drop(x);
	ctx_unref(x->ctx);
	free(x);
}

struct fetch *exchange_fetch(const struct exchange *x)
{
	return x->fetch;
}

bool exchange_has_head(const struct exchange *x)
{
	return x->head_passed;
}

bool exchange_ended(const struct exchange *x)
{
	return x->failed || !x->fetch ||
		(x->head_passed && fetch_ended(x->fetch));
}

int64_t exchange_attempt_cancelled_at(const struct exchange *x)
{
	return x->attempt_cancelled_at;
}

int exchange_attempts(const struct exchange *x)
{
	return x->attempts;
}

const char *exchange_upstream_addr(const struct exchange *x)
{
	const char *peer = x->fetch ? fetch_peer(x->fetch) : "";

	if (*peer || !x->attempts)
		return peer;
	return strstr(x_server(x)->origin, "://") + 3;
}
