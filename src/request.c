/* request.c - one client request: check, route, contexts, fetch, reply, log. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <microhttpd.h>

#include "exchange.h"
#include "fetch.h"
#include "gen.h"
#include "headers.h"
#include "invariant.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "request.h"
#include "route.h"

/* xorshift128+: request ids need to be unique, not secret. */
static uint64_t req_rand(struct req_env *env)
{
	uint64_t s1 = env->rng[0];
	const uint64_t s0 = env->rng[1];

	env->rng[0] = s0;
	s1 ^= s1 << 23;
	env->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return env->rng[1] + s0;
}

static uint64_t req_trace_rand(void *arg)
{
	return req_rand(arg);
}

/* SPEC §11: join the client's trace (one valid traceparent), or begin a
 * new one. */
static void req_begin_trace(struct req *r, const struct field_vec *v)
{
	const struct headers_field *tp;
	size_t count;

	if (!r->cfg->trace_context)
		return;
	count = headers_count(v->f, v->n, "traceparent", &tp);
	trace_begin(&r->trace, tp ? tp->value : NULL, tp ? tp->value_len : 0,
		    (int)count, r->cfg->trace_sample_percent, req_trace_rand,
		    r->env);
	r->traced = true;
}

void req_env_init(struct req_env *env)
{
	if (getrandom(env->rng, sizeof(env->rng), 0) != sizeof(env->rng))
		env->rng[0] = (uint64_t)ctx_now_ns() | 1;
}

void req_new_id(struct req_env *env, char out[33])
{
	static const char digits[] = "0123456789abcdef";
	uint64_t v = 0;
	int i;

	for (i = 0; i < 32; i++) {
		if (i % 16 == 0)
			v = req_rand(env);
		out[i] = digits[v >> 60];
		v <<= 4;
	}
	out[32] = '\0';
}

static bool req_id_sane(const char *v)
{
	size_t n = 0;

	if (!v)
		return false;
	for (; v[n]; n++)
		if (v[n] <= ' ' || v[n] > '~')
			return false;
	return n >= 1 && n <= 128;
}

static void req_set_id(struct req *r)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						    "X-Request-Id");

	if (req_id_sane(v)) {
		req_copy_trunc(r->id, sizeof(r->id), v);
		return;
	}
	req_new_id(r->env, r->id);
}

static void req_on_cancel(ctx_t *ctx, void *arg)
{
	struct req *r = arg;

	(void)ctx;
	r->cancel_phase = req_phase_name(r->phase);
}

/* ---- the fetch's notifications: wake the suspended connection ---- */

static void req_on_fetch(void *arg)
{
	req_resume(arg);
}

static const struct fetch_ops req_fetch_ops = {
	.on_head = req_on_fetch,
	.on_body = req_on_fetch,
	.on_upload_space = req_on_fetch,
	.on_done = req_on_fetch,
};

/* ---- checking the head and starting the upstream fetch ---- */

static enum MHD_Result collect_field(void *cls, enum MHD_ValueKind kind,
				     const char *key, size_t key_size,
				     const char *value, size_t value_size)
{
	struct field_vec *v = cls;

	(void)kind;
	if (v->n == REQ_MAX_FIELDS) {
		v->overflow = true;
		return MHD_NO;
	}
	v->f[v->n].name = key ? key : "";
	v->f[v->n].name_len = key ? key_size : 0;
	v->f[v->n].value = value ? value : "";
	v->f[v->n].value_len = value ? value_size : 0;
	v->n++;
	return MHD_YES;
}

static int head_emit(void *arg, const char *name, size_t name_len,
		     const char *value, size_t value_len)
{
	return fetch_head_add(arg, name, name_len, value, value_len);
}

/* The client's address without the port, for X-Forwarded-For. */
static void req_client_ip(const struct req *r, char *ip, size_t len)
{
	bool v6 = r->client[0] == '[';
	size_t n = v6 ? strcspn(r->client + 1, "]") : strcspn(r->client, ":");

	snprintf(ip, len, "%.*s", (int)n, r->client + v6);
}

/* The exchange's head writer: the client's fields as SPEC §5 has them
 * for server s.  The first attempt uses the fields just checked; a retry
 * collects them again from libmicrohttpd (they live as long as the
 * request). */
static int req_upstream_head(void *arg, struct fetch *f,
			     const struct config_server *s)
{
	struct req *r = arg;
	struct headers_upstream u = { 0 };
	char ip[INET6_ADDRSTRLEN + 2];
	struct field_vec again;
	const struct field_vec *v = r->fields;
	char tp[TRACE_PARENT_LEN + 1];

	if (!v) {
		again.n = 0;
		again.overflow = false;
		MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND,
					    collect_field, &again);
		v = &again;
	}
	req_client_ip(r, ip, sizeof(ip));
	u.host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
	u.preserve_host = r->route->preserve_host;
	u.upstream_host = s->host;
	u.client_ip = ip;
	u.request_id = r->id;
	u.deadline_header = r->cfg->deadline_header;
	u.https = r->tls != NULL;
	if (r->traced) {
		trace_format(&r->trace, tp);
		u.traceparent = tp;
		u.tracestate = r->trace.joined;
	}
	return headers_rewrite_request(v->f, v->n, &u, head_emit, f);
}

/* A valid client deadline (1 ms .. one day) bounds the request context. */
static ctx_t *req_new_ctx(struct req *r)
{
	const char *name = r->cfg->deadline_header;
	const char *v = NULL;
	char *end;
	long long ms;

	if (name && *name)
		v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
	if (v && *v >= '0' && *v <= '9') {
		errno = 0;
		ms = strtoll(v, &end, 10);
		if (!errno && !*end && ms > 0 && ms <= REQ_DEADLINE_MAX_MS)
			return ctx_with_deadline(r->env->root,
						 r->t0 + ms * 1000000,
						 CTX_CAUSE_DEADLINE_EXCEEDED);
	}
	if (v)
		metrics_invalid_deadline(r->env->metrics);
	return ctx_with_cancel(r->env->root);
}

/* The head as MHD left it in its read buffer: from the end of the request
 * line (method and version point into it) to the end of the head. */
static int req_check_layout(struct req *r, const char *method,
			    const char *version, const struct field_vec *v)
{
	const union MHD_ConnectionInfo *ci;
	const char *from = version + strlen(version);

	ci = MHD_get_connection_info(r->conn,
				     MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (!ci || from < method || ci->header_size < (size_t)(from - method))
		return 0;                 /* not the layout we know: skip */
	if (r->rc && r->rc->uri_raw &&
	    headers_check_line_layout(method, r->rc->uri_raw, strlen(r->uri),
				      version, &r->err_msg) < 0)
		return -EINVAL;
	return headers_check_layout(from, method + ci->header_size, v->f, v->n,
				    &r->err_msg);
}

/* SPEC §6: refuse what libmicrohttpd lets through, before anything goes
 * upstream.  Returns the body length, FETCH_BODY_CHUNKED, -1 for none, or
 * REQ_BODY_BAD with r->err_msg set. */
static int64_t req_check_head(struct req *r, const char *method,
			      const char *version, struct field_vec *v)
{
	struct headers_framing fr;
	int rc;

	v->n = 0;
	v->overflow = false;
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, collect_field, v);
	rc = headers_check_target(r->uri, &r->err_msg);
	if (rc == 0 && v->overflow) {
		r->err_msg = "too many header fields";
		rc = -EINVAL;
	}
	if (rc == 0)
		rc = req_check_layout(r, method, version, v);
	if (rc == 0)
		rc = headers_check_request(version, v->f, v->n, &fr, &r->err_msg);
	if (rc < 0)
		return REQ_BODY_BAD;
	if (fr.chunked)
		return FETCH_BODY_CHUNKED;
	return fr.content_length;
}

/* The contexts first (the exchange's is cancelled whenever the request's
 * is, and on its own), then the exchange under it, and its first attempt. */
static int req_start_fetch(struct req *r, int64_t body_len,
			   const struct field_vec *v)
{
	struct exchange_request xr = { 0 };
	char target[REQ_TARGET_MAX];
	int n;

	n = route_upstream_target(r->route, r->path, r->query, target,
				  sizeof(target));
	if (n < 0)
		return n;
	r->ctx = req_new_ctx(r);
	if (!r->ctx)
		return -ENOMEM;
	xr.route_deadline = ctx_now_ns() + r->route->t.timeout_ms * 1000000;
	r->child = ctx_with_deadline(r->ctx, xr.route_deadline,
				     CTX_CAUSE_DEADLINE_EXCEEDED);
	if (!r->child)
		return -ENOMEM;
	ctx_watch(r->child, &r->ctx_watch, req_on_cancel, r);
	xr.method = r->method;
	xr.target = target;
	xr.body_len = body_len;
	xr.upgrade = r->upgrade;
	if (r->upgrade) {
		xr.tunnel_deadline = ctx_deadline(r->ctx);
		xr.tunnel_max_ms = r->route->tunnel_max_ms;
	}
	xr.route = r->route;
	xr.cfg = r->cfg;
	xr.pool = r->gen->pools[r->route - r->cfg->routes];
	xr.metrics = r->env->metrics;
	xr.write_head = req_upstream_head;
	r->x = exchange_new(r->env->up, r->child, &xr, &req_fetch_ops, r);
	if (!r->x)
		return -ENOMEM;
	r->fields = v;
	n = exchange_start(r->x);
	r->fields = NULL;
	return n;
}

/* ---- the access handler, in its three stages ---- */

static void req_decide_error(struct req *r, int64_t body_len)
{
	const struct config *cfg = r->cfg;
	const char *host;

	if (r->env->draining) {
		r->err_status = 503;
		r->err_msg = "shutting down";
		return;
	}
	if (metrics_connections() > cfg->max_connections) {
		r->err_status = 503;
		r->err_msg = "too many connections";
		return;
	}
	if (body_len == REQ_BODY_BAD) {
		r->err_status = 400;
		return;
	}
	if (body_len > cfg->max_body_bytes) {
		r->err_status = 413;
		r->err_msg = "request body too large";
		return;
	}
	host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
	r->route = route_match(r->gen->g->routes, host, r->path);
	if (!r->route) {
		r->err_status = 404;
		r->err_msg = "no route";
	}
}

static bool err_closes(int status)
{
	return status == 400 || status == 503 || status == 413;
}

static enum MHD_Result req_begin(struct req *r, const char *method,
				 const char *version)
{
	struct field_vec vec, *v = &vec;
	int64_t body_len;

	body_len = req_check_head(r, method, version, v);
	req_begin_trace(r, v);
	req_decide_error(r, body_len);
	if (!r->err_status)
		req_upgrade_check(r, version, body_len, v->f, v->n);
	r->body_expected = body_len > 0 || body_len == FETCH_BODY_CHUNKED;
	if (!r->err_status && req_start_fetch(r, body_len, v) < 0) {
		r->err_status = 502;
		r->err_msg = "cannot start upstream request";
	}
	if (r->err_status) {
		/* With a body unread (or unknown), answer now: MHD then closes. */
		if (r->body_expected || body_len == REQ_BODY_BAD)
			return req_reply(r, r->err_status, r->err_msg, true);
		return MHD_YES;
	}
	req_set_phase(r, r->body_expected ? PH_UPLOADING : PH_AWAITING);
	return MHD_YES;
}

/* The first call: the head is in.  Take the raw target the front kept
 * (MHD unescapes its own copy and drops the query) and the request id. */
static enum MHD_Result req_first(struct req *r, struct req_conn *rc,
				 const char *method, const char *version)
{
	req_copy_trunc(r->method, sizeof(r->method), method);
	r->uri = strdup(rc && rc->uri ? rc->uri : "/");
	if (!r->uri)
		return MHD_NO;
	r->query = strchr(r->uri, '?');
	r->path = strndup(r->uri, r->query ? (size_t)(r->query - r->uri) :
			  strlen(r->uri));
	if (!r->path)
		return MHD_NO;
	if (r->query)
		r->query++;
	req_copy_trunc(r->client, sizeof(r->client), rc ? rc->client : "-");
	r->tls = rc ? rc->tls : NULL;
	req_set_id(r);
	r->rc = rc;
	if (rc)
		rc->req = r;
	return req_begin(r, method, version);
}

static enum MHD_Result req_upload(struct req *r, const char *data,
				  size_t *size)
{
	ssize_t n;

	if (r->responded || !r->x || ctx_is_cancelled(r->ctx)) {
		if (ctx_cause(r->ctx) == CTX_CAUSE_CLIENT_DISCONNECT)
			return MHD_NO;
		r->bytes_in += *size;
		*size = 0;                /* discard: the answer is known */
		return MHD_YES;
	}
	if (r->bytes_in + *size > (uint64_t)r->cfg->max_body_bytes) {
		r->status = 413;          /* chunked body grew too big */
		ctx_cancel(r->ctx, CTX_CAUSE_COMPLETED);
		return MHD_NO;
	}
	n = exchange_send(r->x, data, *size);
	if (n < 0) {
		r->bytes_in += *size;
		*size = 0;
		return MHD_YES;
	}
	r->bytes_in += (uint64_t)n;
	*size -= (size_t)n;
	if (*size && !req_suspend(r))
		return MHD_NO;
	return MHD_YES;
}

static enum MHD_Result req_complete(struct req *r)
{
	if (r->responded)
		return MHD_YES;
	if (r->err_status)
		return req_reply(r, r->err_status, r->err_msg,
				 err_closes(r->err_status));
	if (ctx_cause(r->ctx) == CTX_CAUSE_CLIENT_DISCONNECT)
		return MHD_NO;
	if (!r->eof_sent) {
		r->eof_sent = true;
		exchange_send_eof(r->x);
		req_set_phase(r, PH_AWAITING);
	}
	if (exchange_has_head(r->x))
		return req_reply_stream(r);
	if (exchange_ended(r->x) || ctx_is_cancelled(r->child))
		return req_reply_failure(r);
	return req_suspend(r) ? MHD_YES : MHD_NO;
}

int req_access(struct req_env *env, struct req_conn *rc,
	       struct MHD_Connection *c, const char *method,
	       const char *version, const char *upload_data,
	       size_t *upload_data_size, void **con_cls)
{
	struct req *r = *con_cls;

	if (!r) {
		r = req_new(env, c);
		if (!r)
			return MHD_NO;
		*con_cls = r;
		return req_first(r, rc, method, version);
	}
	if (*upload_data_size)
		return req_upload(r, upload_data, upload_data_size);
	return req_complete(r);
}

/* ---- the end ---- */

/* Why the request ended: a failed fetch explains an aborted response better
 * than the client does; otherwise an abnormal end means the client left. */
static ctx_cause_t req_end_cause(const struct req *r, enum req_end how)
{
	ctx_cause_t child = r->child ? ctx_cause(r->child) : CTX_CAUSE_NONE;

	if (how == REQ_END_OK)
		return CTX_CAUSE_COMPLETED;
	if (how == REQ_END_SHUTDOWN)
		return CTX_CAUSE_SHUTDOWN;
	if (child != CTX_CAUSE_NONE && child != CTX_CAUSE_COMPLETED)
		return child;
	return CTX_CAUSE_CLIENT_DISCONNECT;
}

void req_end(struct req *r, enum req_end how)
{
	if (r->rc && r->rc->req == r)
		r->rc->req = NULL;
	r->rc = NULL;
	/* A tunnel lives on past libmicrohttpd's end of the request, and
	 * logs it when it ends itself. */
	if (!r->tunneled) {
		if (r->ctx)
			ctx_cancel(r->ctx, req_end_cause(r, how));
		if (how == REQ_END_OK && r->phase == PH_STREAMING)
			req_set_phase(r, PH_DONE);
		req_log(r);
	}
	req_unref(r);
}
