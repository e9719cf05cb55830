/* request_log.c - what a request reports when it ends, once: its access line, its metrics and, when sampled, its span. */
#include <string.h>
#include <time.h>

#include "exchange.h"
#include "fetch.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "request_life.h"

/* A sampled request's server span (SPEC §11), as its access line has it;
 * the wall clock is read for sampled requests only. */
static void req_span(const struct req *r, const struct log_access *a,
		     int64_t propagation_ns)
{
	struct otlp_span s;
	struct timespec now;
	int64_t end;

	if (!r->env->otlp || !r->traced || !(r->trace.flags & 1))
		return;
	memset(&s, 0, offsetof(struct otlp_span, method));
	clock_gettime(CLOCK_REALTIME, &now);
	end = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	memcpy(s.trace_id, r->trace.trace_id, sizeof(s.trace_id));
	memcpy(s.span_id, r->trace.span_id, sizeof(s.span_id));
	memcpy(s.parent_id, r->trace.parent_id, sizeof(s.parent_id));
	s.has_parent = r->trace.joined;
	s.end_unix_ns = end;
	s.start_unix_ns = end - a->duration_ns;
	req_copy_trunc(s.method, sizeof(s.method), a->method);
	req_copy_trunc(s.route, sizeof(s.route), a->route);
	req_copy_trunc(s.path, sizeof(s.path), a->path);
	s.status = a->status;
	s.upstream_status = a->upstream_status;
	s.attempts = a->attempts;
	s.cause = a->cause;
	s.phase = a->phase;
	s.propagation_ns = propagation_ns;
	s.error = a->status >= 500 || strcmp(a->cause, "completed") != 0;
	otlp_submit(r->env->otlp, &s);
}

void req_log(struct req *r)
{
	int64_t propagation;
	struct log_access a = { 0 };
	char trace_id[TRACE_ID_HEX], span_id[TRACE_SPAN_HEX];
	int64_t attempt_at;
	struct fetch *f = req_fetch(r);
	ctx_cause_t cause = r->ctx ? ctx_cause(r->ctx) : CTX_CAUSE_COMPLETED;
	ctx_cause_t child = r->child ? ctx_cause(r->child) : CTX_CAUSE_NONE;

	r->logged = true;
	/* The most telling cause: the fetch's own when it failed first. */
	if (child != CTX_CAUSE_NONE && child != cause &&
	    cause == CTX_CAUSE_COMPLETED)
		cause = child;
	a.id = r->id;
	if (r->traced) {
		trace_hex(r->trace.trace_id, sizeof(r->trace.trace_id), trace_id);
		trace_hex(r->trace.span_id, sizeof(r->trace.span_id), span_id);
		a.trace_id = trace_id;
		a.span_id = span_id;
	}
	a.client = r->client;
	a.tls = r->tls;
	a.method = r->method;
	a.path = r->uri;
	a.route = r->route ? r->route->name : NULL;
	/* No answer went out: the client left (or was dropped) first. */
	a.status = cause == CTX_CAUSE_CLIENT_DISCONNECT || !r->status ?
		499 : r->status;
	a.upstream_status = f ? fetch_status(f) : 0;
	a.attempts = r->x ? exchange_attempts(r->x) : 0;
	a.upstream_addr = r->x ? exchange_upstream_addr(r->x) : NULL;
	a.bytes_in = r->bytes_in;
	a.bytes_out = r->bytes_out;
	a.duration_ns = ctx_now_ns() - r->t0;
	a.cause = ctx_cause_name(cause);
	a.phase = r->cancel_phase && cause != CTX_CAUSE_COMPLETED ?
		r->cancel_phase : req_phase_name(PH_DONE);
	if (r->tunneled) {              /* request_tunnel.c's figures */
		a.status = 101;
		a.cancel_ns = r->tun_end_ns;
		a.upstream_close_ns = r->tun_close_ns;
	} else if (cause != CTX_CAUSE_COMPLETED) {
		a.cancel_ns = r->child && ctx_is_cancelled(r->child) ?
			ctx_cancelled_at(r->child) : ctx_cancelled_at(r->ctx);
		/* An attempt's own end (a timeout of its phase, a reset, a
		 * refused response) came first: that closed the upstream. */
		attempt_at = r->x ? exchange_attempt_cancelled_at(r->x) : 0;
		if (attempt_at && attempt_at < a.cancel_ns)
			a.cancel_ns = attempt_at;
		a.upstream_close_ns = f ? fetch_closed_at(f) : 0;
	}
	log_access(r->env->log, &a);
	propagation = a.cancel_ns && a.upstream_close_ns >= a.cancel_ns ?
		a.upstream_close_ns - a.cancel_ns : -1;
	metrics_request_done(r->env->metrics,
			     r->route ? r->route->metrics_slot : 0, a.status,
			     cause, f ? fetch_head_latency(f) : -1, propagation);
	req_span(r, &a, propagation);
	if (cause != CTX_CAUSE_COMPLETED)
		req_watch_cancel(r, &a, propagation);
	metrics_inflight_add(r->env->metrics, -1);
}

