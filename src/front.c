/* front.c - the client side: libmicrohttpd daemons and the request path. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "front.h"
#include "headers.h"
#include "log.h"

#define FRONT_BLOCK_SIZE (16 * 1024)
#define FRONT_POOL_SIZE (16 * 1024)
#define FRONT_URL_MAX 8192
#define FRONT_DEADLINE_MAX_MS (24LL * 3600 * 1000)
#define REQ_BODY_BAD (-3)      /* a malformed Content-Length */

enum req_phase { PH_UPLOADING, PH_AWAITING, PH_STREAMING, PH_DONE };

static const char *const phase_names[] = {
	"uploading", "awaiting_headers", "streaming", "done",
};

/* Per client connection: the raw request target of its current request
 * (MHD unescapes its own copy and drops the query string). */
struct fconn {
	struct front *fr;
	struct req *req;                  /* the request being handled, if any */
	struct loop_io hup;               /* EPOLLRDHUP | EPOLLET, accept to close */
	bool peer_gone;                   /* the client's FIN or RST was seen */
	const char *uri_raw;              /* the target in MHD's read buffer */
	char *uri;
	size_t cap;
	int fd;
	ctx_t *head_timer;                /* client_header_timeout_ms */
	ctx_watch_t head_watch;
	char client[64];
};

/* A generation as this worker uses it: `live` counts its requests, so the
 * worker drops the generation without a shared counter per request. */
struct fgen {
	struct gen *g;
	long live;
	struct fgen *next;                /* in fr->old */
};

struct front {
	struct front_env env;
	struct fgen *cur;
	struct fgen *old;                 /* replaced, still used by requests */
	struct MHD_Daemon *d[CONFIG_LISTEN_MAX];
	struct loop_io dio[CONFIG_LISTEN_MAX];
	int nd;
	bool need_run;
	bool draining;
	uint64_t rng[2];
	struct req *reqs;                 /* every live request */
};

struct req {
	struct front *fr;
	struct fgen *fg;                  /* the generation it started under */
	const struct config *cfg;         /* fg's config */
	struct req *prev, *next;          /* in fr->reqs */
	struct MHD_Connection *conn;
	int refs;
	char *uri;                        /* raw target, owned */
	char *path;                       /* its path part, owned */
	const char *query;                /* in uri, after '?', or NULL */
	const struct config_route *route;
	ctx_t *ctx;                       /* the request context */
	ctx_t *child;                     /* the upstream fetch's context */
	ctx_watch_t ctx_watch;
	struct fetch *fetch;
	enum req_phase phase;
	const char *cancel_phase;
	int err_status;
	const char *err_msg;
	bool body_expected, suspended, responded, eof_sent;
	struct fconn *fc;                 /* until the request completes */
	int status;
	uint64_t bytes_in, bytes_out;
	int64_t t0;
	char method[16];
	char id[129];
	char client[64];
};

static atomic_long front_nconn;

long front_connections(void)
{
	return atomic_load_explicit(&front_nconn, memory_order_relaxed);
}


static struct fconn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static int conn_fd(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

/* ---- configuration generations ---- */

static void fgen_release(struct front *fr, struct fgen *fg)
{
	struct fgen **pp;

	if (--fg->live > 0 || fg == fr->cur)
		return;
	for (pp = &fr->old; *pp; pp = &(*pp)->next) {
		if (*pp == fg) {
			*pp = fg->next;
			break;
		}
	}
	gen_unref(fg->g);
	free(fg);
}

int front_set_gen(struct front *fr, struct gen *g)
{
	struct fgen *fg = calloc(1, sizeof(*fg)), *old = fr->cur;

	if (!fg)
		return -ENOMEM;
	fg->g = gen_ref(g);
	fr->cur = fg;
	if (!old)
		return 0;
	old->next = fr->old;
	fr->old = old;
	old->live++;                      /* released just below */
	fgen_release(fr, old);
	return 0;
}

/* ---- request objects ---- */

static void req_unref(struct req *r)
{
	if (!r || --r->refs > 0)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		r->fr->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	ctx_unwatch(&r->ctx_watch);
	fetch_free(r->fetch);
	ctx_unref(r->child);
	ctx_unref(r->ctx);
	fgen_release(r->fr, r->fg);
	free(r->path);
	free(r->uri);
	free(r);
}

/* xorshift128+: request ids need to be unique, not secret. */
static uint64_t front_rand(struct front *fr)
{
	uint64_t s1 = fr->rng[0];
	const uint64_t s0 = fr->rng[1];

	fr->rng[0] = s0;
	s1 ^= s1 << 23;
	fr->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return fr->rng[1] + s0;
}

/* snprintf(dst, cap, "%s", src) without the printf engine. */
static void copy_trunc(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* A new request id: 128 random bits as 32 lower-case hex digits. */
static void front_new_id(struct front *fr, char out[33])
{
	static const char digits[] = "0123456789abcdef";
	uint64_t v = 0;
	int i;

	for (i = 0; i < 32; i++) {
		if (i % 16 == 0)
			v = front_rand(fr);
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
		copy_trunc(r->id, sizeof(r->id), v);
		return;
	}
	front_new_id(r->fr, r->id);
}

/* ---- suspend, resume and the hang-up watch ---- */

/* MHD stops watching a suspended socket, and reads it only while it waits
 * for request bytes, so each connection carries its own edge-triggered
 * EPOLLRDHUP watch from accept to close (no epoll_ctl per request).  A FIN
 * that comes while the request is not suspended is remembered, and the
 * next suspension turns into a cancellation instead. */
static bool req_suspend(struct req *r)
{
	if (r->suspended)
		return true;
	if (r->fc && r->fc->peer_gone) {
		ctx_cancel(r->ctx, CTX_CAUSE_CLIENT_DISCONNECT);
		return false;
	}
	MHD_suspend_connection(r->conn);
	r->suspended = true;
	return true;
}

static void req_resume(struct req *r)
{
	if (!r->suspended)
		return;
	r->suspended = false;
	MHD_resume_connection(r->conn);
	/* 0.9.75 external mode: resuming wakes nothing; run MHD ourselves. */
	r->fr->need_run = true;
}

static void conn_on_hup(struct loop_io *io, uint32_t events)
{
	struct fconn *fc = io->data;
	struct req *r = fc->req;

	if (!(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		return;
	fc->peer_gone = true;
	if (r && r->suspended) {
		ctx_cancel(r->ctx, CTX_CAUSE_CLIENT_DISCONNECT);
		req_resume(r);
	}
}

static void req_on_cancel(ctx_t *ctx, void *arg)
{
	struct req *r = arg;

	(void)ctx;
	r->cancel_phase = phase_names[r->phase];
}

/* ---- answers ---- */

static enum MHD_Result req_reply(struct req *r, int status, const char *msg,
				 bool close)
{
	struct MHD_Response *resp;
	char body[128];
	int n;
	enum MHD_Result rc;

	n = snprintf(body, sizeof(body), "%s\n", msg);
	resp = MHD_create_response_from_buffer((size_t)n, body,
					       MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	if (close)
		MHD_add_response_header(resp, "Connection", "close");
	rc = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	r->status = status;
	r->bytes_out = (uint64_t)n;
	r->phase = PH_DONE;
	return rc;
}

static ssize_t req_read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct req *r = cls;
	ssize_t n;

	(void)pos;
	n = fetch_recv(r->fetch, buf, max);
	if (n > 0) {
		r->bytes_out += (uint64_t)n;
		return n;
	}
	if (n == FETCH_RECV_END)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n == FETCH_RECV_ABORTED || ctx_is_cancelled(r->ctx) ||
	    !req_suspend(r))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return 0;
}

static void req_body_free(void *cls)
{
	req_unref(cls);
}

static bool status_is_bodyless(int status)
{
	return status < 200 || status == 204 || status == 304;
}

/* When the whole body is in already (the common small response), hand it
 * over as a buffer: MHD then sends head and body in one system call, and
 * keeps no reader (whose 16 KiB block it would allocate and clear). */
static struct MHD_Response *req_whole_body(struct req *r, int64_t len)
{
	struct MHD_Response *resp;
	const char *body;
	size_t have;

	if (!fetch_ended(r->fetch) || !fetch_ok(r->fetch) ||
	    strcmp(r->method, "HEAD") == 0)
		return NULL;
	body = fetch_peek(r->fetch, &have);
	if (len >= 0 && (uint64_t)len != have)
		return NULL;
	resp = MHD_create_response_from_buffer(have, (void *)body,
					       MHD_RESPMEM_MUST_COPY);
	if (resp)
		r->bytes_out = have;
	return resp;
}

static enum MHD_Result req_reply_stream(struct req *r)
{
	struct MHD_Response *resp;
	int status = fetch_status(r->fetch);
	int64_t len = fetch_content_length(r->fetch);
	const char *name, *value;
	enum MHD_Result rc;
	size_t i;

	if (status_is_bodyless(status))
		len = 0;
	resp = req_whole_body(r, len);
	if (!resp) {
		resp = MHD_create_response_from_callback(len >= 0 ? (uint64_t)len :
							 MHD_SIZE_UNKNOWN,
							 FRONT_BLOCK_SIZE,
							 req_read_body, r,
							 req_body_free);
		if (!resp)
			return MHD_NO;
		r->refs++;
	}
	for (i = 0; i < fetch_header_count(r->fetch); i++) {
		fetch_header(r->fetch, i, &name, &value);
		MHD_add_response_header(resp, name, value);
	}
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	rc = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	r->status = status;
	r->phase = PH_STREAMING;
	return rc;
}

/* The fetch ended before a response head: say why. */
static enum MHD_Result req_reply_failure(struct req *r)
{
	ctx_cause_t cause = ctx_cause(r->child);

	switch (cause) {
	case CTX_CAUSE_CONNECT_TIMEOUT:
		return req_reply(r, 504, "upstream connect timeout", false);
	case CTX_CAUSE_HEADER_TIMEOUT:
		return req_reply(r, 504, "upstream header timeout", false);
	case CTX_CAUSE_DEADLINE_EXCEEDED:
		return req_reply(r, 504, "upstream timeout", false);
	case CTX_CAUSE_SHUTDOWN:
		return req_reply(r, 503, "shutting down", true);
	default:
		return req_reply(r, 502, "upstream unavailable", false);
	}
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

/* ---- starting the upstream fetch ---- */

#define REQ_MAX_FIELDS 128

struct field_vec {
	struct headers_field f[REQ_MAX_FIELDS];
	size_t n;
	bool overflow;
};

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

/* SPEC §6: refuse what libmicrohttpd lets through, before anything goes
 * upstream.  Returns the body length, FETCH_BODY_CHUNKED, -1 for none, or
 * REQ_BODY_BAD with r->err_msg set. */
/* The proxy's own empty fields exist to switch libcurl's defaults off. */
static bool own_empty(const char *name, size_t len)
{
	return (len == 6 && strncasecmp(name, "Accept", 6) == 0) ||
	       (len == 6 && strncasecmp(name, "Expect", 6) == 0);
}

static int head_emit(void *arg, const char *name, size_t name_len,
		     const char *value, size_t value_len)
{
	if (!value_len && own_empty(name, name_len))
		return fetch_head_drop(arg, name, name_len);
	return fetch_head_add(arg, name, name_len, value, value_len);
}

/* The client's address without the port, for X-Forwarded-For. */
static void req_client_ip(const struct req *r, char *ip, size_t len)
{
	bool v6 = r->client[0] == '[';
	size_t n = v6 ? strcspn(r->client + 1, "]") : strcspn(r->client, ":");

	snprintf(ip, len, "%.*s", (int)n, r->client + v6);
}

static int req_upstream_head(struct req *r, const struct field_vec *v,
			     struct fetch_head *h)
{
	struct headers_upstream u = { 0 };
	char ip[INET6_ADDRSTRLEN + 2];

	req_client_ip(r, ip, sizeof(ip));
	u.host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
	u.preserve_host = r->route->preserve_host;
	u.client_ip = ip;
	u.request_id = r->id;
	u.deadline_header = r->cfg->deadline_header;
	fetch_head_init(h);
	return headers_rewrite_request(v->f, v->n, &u, head_emit, h);
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
		if (!errno && !*end && ms > 0 && ms <= FRONT_DEADLINE_MAX_MS)
			return ctx_with_deadline(r->fr->env.root,
						 r->t0 + ms * 1000000,
						 CTX_CAUSE_DEADLINE_EXCEEDED);
	}
	if (v)
		metrics_invalid_deadline(r->fr->env.metrics);
	return ctx_with_cancel(r->fr->env.root);
}

/* The head as MHD left it in its read buffer: from the end of the request
 * line (method and version point into it) to the end of the head. */
static int req_check_layout(struct req *r, const char *method,
			    const char *version, const struct field_vec *v)
{
	const union MHD_ConnectionInfo *ci;
	const char *from = version + strlen(version);

	struct fconn *fc = conn_of(r->conn);

	ci = MHD_get_connection_info(r->conn,
				     MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (!ci || from < method || ci->header_size < (size_t)(from - method))
		return 0;                 /* not the layout we know: skip */
	if (fc && fc->uri_raw &&
	    headers_check_line_layout(method, fc->uri_raw, strlen(r->uri),
				      version, &r->err_msg) < 0)
		return -EINVAL;
	return headers_check_layout(from, method + ci->header_size, v->f, v->n,
				    &r->err_msg);
}

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

static int req_start_fetch(struct req *r, int64_t body_len,
			   const struct field_vec *v)
{
	struct fetch_request rq = { 0 };
	struct fetch_head head;
	char target[FRONT_URL_MAX];
	int n;

	n = route_upstream_target(r->route, r->path, r->query, target,
				  sizeof(target));
	if (n < 0)
		return n;
	r->ctx = req_new_ctx(r);
	if (!r->ctx)
		return -ENOMEM;
	r->child = ctx_with_timeout(r->ctx, r->route->t.timeout_ms * 1000000);
	if (!r->child)
		return -ENOMEM;
	/* The child is cancelled whenever the request is, and on its own. */
	ctx_watch(r->child, &r->ctx_watch, req_on_cancel, r);
	rq.method = r->method;
	rq.origin = r->route->upstream_origin;
	rq.target = target;
	n = req_upstream_head(r, v, &head);
	if (n < 0)
		return n;
	rq.head = &head;
	rq.body_len = body_len;
	rq.timeouts = &r->route->t;
	rq.deadline_header = r->cfg->deadline_header;
	r->fetch = fetch_start(r->fr->env.up, r->child, &rq, &req_fetch_ops, r);
	return r->fetch ? 0 : -ENOMEM;
}

/* ---- the access handler, in its three stages ---- */

static enum MHD_Result front_begin(struct req *r, struct MHD_Connection *c,
				   const char *method, const char *version);

static void req_decide_error(struct req *r, int64_t body_len)
{
	const struct config *cfg = r->cfg;
	const char *host;

	if (r->fr->draining) {
		r->err_status = 503;
		r->err_msg = "shutting down";
		return;
	}
	if (front_connections() > cfg->max_connections) {
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
	r->route = route_match(r->fg->g->routes, host, r->path);
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
	int rc = -1;

	body_len = req_check_head(r, method, version, v);
	req_decide_error(r, body_len);
	r->body_expected = body_len > 0 || body_len == FETCH_BODY_CHUNKED;
	if (!r->err_status) {
		rc = req_start_fetch(r, body_len, v);
		if (rc < 0) {
			r->err_status = 502;
			r->err_msg = "cannot start upstream request";
		}
	}
	if (r->err_status) {
		/* With a body unread (or unknown), answer now: MHD then closes. */
		if (r->body_expected || body_len == REQ_BODY_BAD)
			return req_reply(r, r->err_status, r->err_msg, true);
		return MHD_YES;
	}
	r->phase = r->body_expected ? PH_UPLOADING : PH_AWAITING;
	return MHD_YES;
}

static enum MHD_Result req_upload(struct req *r, const char *data,
				  size_t *size)
{
	ssize_t n;

	if (r->responded || !r->fetch || ctx_is_cancelled(r->ctx)) {
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
	n = fetch_send(r->fetch, data, *size);
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
		fetch_send_eof(r->fetch);
		r->phase = PH_AWAITING;
	}
	if (fetch_has_head(r->fetch))
		return req_reply_stream(r);
	if (fetch_ended(r->fetch) || ctx_is_cancelled(r->child))
		return req_reply_failure(r);
	return req_suspend(r) ? MHD_YES : MHD_NO;
}

static enum MHD_Result front_on_request(void *cls, struct MHD_Connection *c,
					const char *url, const char *method,
					const char *version,
					const char *upload_data,
					size_t *upload_data_size, void **con_cls)
{
	struct front *fr = cls;
	struct req *r = *con_cls;

	(void)url;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		r->fr = fr;
		r->conn = c;
		r->refs = 1;
		r->t0 = ctx_now_ns();
		r->fg = fr->cur;
		r->fg->live++;
		r->cfg = r->fg->g->cfg;
		r->next = fr->reqs;
		if (fr->reqs)
			fr->reqs->prev = r;
		fr->reqs = r;
		metrics_inflight_add(fr->env.metrics, 1);
		return front_begin(r, c, method, version);
	}
	if (*upload_data_size)
		return req_upload(r, upload_data, upload_data_size);
	return req_complete(r);
}

/* ---- connection and request bookkeeping ---- */


/* The head did not arrive in time (libmicrohttpd only bounds silence, so a
 * trickle would go on forever): answer 408 on the socket ourselves, since
 * MHD has written nothing for this request, and shut it so MHD closes. */
static void conn_on_head_timeout(ctx_t *t, void *arg)
{
	static const char body[] = "request head timeout\n";
	struct fconn *fc = arg;
	struct log_access a = { 0 };
	char resp[256], id[33];
	int n;

	if (ctx_cause(t) != CTX_CAUSE_DEADLINE_EXCEEDED)
		return;
	front_new_id(fc->fr, id);
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 408 Request Timeout\r\n"
		     "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
		     "X-Request-Id: %s\r\nConnection: close\r\n\r\n%s",
		     sizeof(body) - 1, id, body);
	if (send(fc->fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		n = 0;
	shutdown(fc->fd, SHUT_RDWR);
	a.id = id;
	a.client = fc->client;
	a.method = "-";
	a.path = "-";
	a.status = 408;
	a.bytes_out = n ? sizeof(body) - 1 : 0;
	a.cause = "client_header_timeout";
	a.phase = "reading_head";
	log_access(fc->fr->env.log, &a);
	metrics_request_done(fc->fr->env.metrics, 0, 408, CTX_CAUSE_COMPLETED,
			     -1, -1);
}

static void conn_head_arm(struct fconn *fc)
{
	const struct config *cfg = fc->fr->cur->g->cfg;

	if (fc->head_timer || fc->fd < 0)
		return;
	ctx_timer_start(&fc->head_timer, &fc->head_watch, fc->fr->env.root,
			ctx_now_ns() + cfg->client_header_timeout_ms * 1000000,
			CTX_CAUSE_DEADLINE_EXCEEDED, conn_on_head_timeout, fc);
}

/* The request line of a new request is in: keep its raw target (MHD
 * unescapes its own copy and drops the query), and start the clock on
 * the rest of its head when this is not the connection's first request
 * (whose clock started at accept). */
static void *front_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct fconn *fc = conn_of(c);
	size_t n = strlen(uri) + 1;
	char *p;

	(void)cls;
	if (!fc)
		return NULL;
	conn_head_arm(fc);
	if (n > fc->cap) {
		p = realloc(fc->uri, n);
		if (!p)
			return NULL;
		fc->uri = p;
		fc->cap = n;
	}
	memcpy(fc->uri, uri, n);
	fc->uri_raw = uri;
	return NULL;                      /* the request is made later */
}

static void conn_client_addr(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	char ip[INET6_ADDRSTRLEN] = "?";

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sa = ci ? ci->client_addr : NULL;
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%d", ip, ntohs(in->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%d", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "-");
	}
}

static void front_on_connection(void *cls, struct MHD_Connection *c,
				void **socket_context,
				enum MHD_ConnectionNotificationCode toe)
{
	struct fconn *fc = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		fc = calloc(1, sizeof(*fc));
		*socket_context = fc;
		atomic_fetch_add_explicit(&front_nconn, 1, memory_order_relaxed);
		if (!fc)
			return;
		fc->fr = cls;
		fc->fd = conn_fd(c);
		conn_client_addr(c, fc->client, sizeof(fc->client));
		conn_head_arm(fc);
		fc->hup.fd = fc->fd;
		fc->hup.fn = conn_on_hup;
		fc->hup.data = fc;
		if (fc->fd < 0 || loop_add(fc->fr->env.loop, &fc->hup,
					   EPOLLRDHUP | EPOLLET) < 0)
			fc->hup.fd = -1;
		return;
	}
	if (fc) {
		/* MHD closes the socket right after this notification. */
		if (fc->hup.fd >= 0)
			loop_del(fc->fr->env.loop, &fc->hup);
		if (fc->req)
			fc->req->fc = NULL;
		ctx_timer_stop(&fc->head_timer, &fc->head_watch);
		free(fc->uri);
		free(fc);
	}
	*socket_context = NULL;
	atomic_fetch_sub_explicit(&front_nconn, 1, memory_order_relaxed);
}

static enum MHD_Result front_begin(struct req *r, struct MHD_Connection *c,
				   const char *method, const char *version)
{
	struct fconn *fc = conn_of(c);

	copy_trunc(r->method, sizeof(r->method), method);
	if (fc)
		ctx_timer_stop(&fc->head_timer, &fc->head_watch);     /* the whole head is in */
	r->uri = strdup(fc && fc->uri ? fc->uri : "/");
	if (!r->uri)
		return MHD_NO;
	r->query = strchr(r->uri, '?');
	r->path = strndup(r->uri, r->query ? (size_t)(r->query - r->uri) :
			  strlen(r->uri));
	if (!r->path)
		return MHD_NO;
	if (r->query)
		r->query++;
	if (fc)
		copy_trunc(r->client, sizeof(r->client), fc->client);
	else
		conn_client_addr(c, r->client, sizeof(r->client));
	req_set_id(r);
	r->fc = fc;
	if (fc)
		fc->req = r;
	return req_begin(r, method, version);
}

static void req_log(struct req *r)
{
	struct log_access a = { 0 };
	ctx_cause_t cause = r->ctx ? ctx_cause(r->ctx) : CTX_CAUSE_COMPLETED;
	ctx_cause_t child = r->child ? ctx_cause(r->child) : CTX_CAUSE_NONE;

	/* The most telling cause: the fetch's own when it failed first. */
	if (child != CTX_CAUSE_NONE && child != cause &&
	    cause == CTX_CAUSE_COMPLETED)
		cause = child;
	a.id = r->id;
	a.client = r->client;
	a.method = r->method;
	a.path = r->uri;
	a.route = r->route ? r->route->name : NULL;
	/* No answer went out: the client left (or was dropped) first. */
	a.status = cause == CTX_CAUSE_CLIENT_DISCONNECT || !r->status ?
		499 : r->status;
	a.upstream_status = r->fetch ? fetch_status(r->fetch) : 0;
	a.bytes_in = r->bytes_in;
	a.bytes_out = r->bytes_out;
	a.duration_ns = ctx_now_ns() - r->t0;
	a.cause = ctx_cause_name(cause);
	a.phase = r->cancel_phase && cause != CTX_CAUSE_COMPLETED ?
		r->cancel_phase : phase_names[PH_DONE];
	if (cause != CTX_CAUSE_COMPLETED) {
		a.cancel_ns = r->child && ctx_is_cancelled(r->child) ?
			ctx_cancelled_at(r->child) : ctx_cancelled_at(r->ctx);
		a.upstream_close_ns = r->fetch ? fetch_closed_at(r->fetch) : 0;
	}
	log_access(r->fr->env.log, &a);
	metrics_request_done(r->fr->env.metrics,
			     r->route ? r->route->metrics_slot : 0, a.status,
			     cause, r->fetch ? fetch_head_latency(r->fetch) : -1,
			     a.cancel_ns && a.upstream_close_ns >= a.cancel_ns ?
			     a.upstream_close_ns - a.cancel_ns : -1);
}

/* Why the request ended: a failed fetch explains an aborted response better
 * than the client does; otherwise an abnormal end means the client left. */
static ctx_cause_t req_end_cause(const struct req *r,
				 enum MHD_RequestTerminationCode toe)
{
	ctx_cause_t child = r->child ? ctx_cause(r->child) : CTX_CAUSE_NONE;

	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		return CTX_CAUSE_COMPLETED;
	if (toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
		return CTX_CAUSE_SHUTDOWN;
	if (child != CTX_CAUSE_NONE && child != CTX_CAUSE_COMPLETED)
		return child;
	return CTX_CAUSE_CLIENT_DISCONNECT;
}

static void front_on_completed(void *cls, struct MHD_Connection *c,
			       void **con_cls,
			       enum MHD_RequestTerminationCode toe)
{
	struct front *fr = cls;
	struct req *r = *con_cls;

	(void)c;
	if (!r)
		return;
	*con_cls = NULL;
	if (r->fc && r->fc->req == r)
		r->fc->req = NULL;
	r->fc = NULL;
	if (r->ctx)
		ctx_cancel(r->ctx, req_end_cause(r, toe));
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->phase == PH_STREAMING)
		r->phase = PH_DONE;
	req_log(r);
	metrics_inflight_add(fr->env.metrics, -1);
	req_unref(r);
}

static enum MHD_Result front_accept(void *cls, const struct sockaddr *addr,
				    socklen_t addrlen)
{
	struct front *fr = cls;

	(void)addr;
	(void)addrlen;
	return fr->draining ? MHD_NO : MHD_YES;
}

static void front_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_msg(LOG_DEBUG, msg, "src=mhd");
}

/* ---- daemons ---- */

static void front_on_daemon_io(struct loop_io *io, uint32_t events)
{
	struct front *fr = io->data;

	(void)events;
	fr->need_run = true;
}

static struct MHD_Daemon *front_start_daemon(struct front *fr, int fd)
{
	const struct config *cfg = fr->cur->g->cfg;
	unsigned int timeout_s = (unsigned int)
		((cfg->client_idle_timeout_ms + 999) / 1000);

	return MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
				MHD_USE_ERROR_LOG,
				0, front_accept, fr, front_on_request, fr,
				MHD_OPTION_EXTERNAL_LOGGER, front_mhd_log, fr,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT,
				(unsigned int)(cfg->max_connections + 64),
				MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
				/* MHD clears the pool for every request: 16 KiB
				 * holds a head of up to ~8 KiB and costs half of
				 * the default 32 KiB. */
				MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				(size_t)FRONT_POOL_SIZE,
				MHD_OPTION_NOTIFY_COMPLETED, front_on_completed, fr,
				MHD_OPTION_NOTIFY_CONNECTION, front_on_connection, fr,
				MHD_OPTION_URI_LOG_CALLBACK, front_on_uri, fr,
				MHD_OPTION_END);
}

struct front *front_new(const struct front_env *env)
{
	struct front *fr = calloc(1, sizeof(*fr));
	const union MHD_DaemonInfo *di;
	size_t i;

	if (!fr)
		return NULL;
	fr->env = *env;
	if (front_set_gen(fr, env->gen) < 0) {
		free(fr);
		return NULL;
	}
	if (getrandom(fr->rng, sizeof(fr->rng), 0) != sizeof(fr->rng))
		fr->rng[0] = (uint64_t)ctx_now_ns() | 1;
	for (i = 0; i < env->gen->cfg->nlisten && i < CONFIG_LISTEN_MAX; i++) {
		fr->d[fr->nd] = front_start_daemon(fr, env->listen_fds[i]);
		if (!fr->d[fr->nd])
			goto fail;
		di = MHD_get_daemon_info(fr->d[fr->nd],
					 MHD_DAEMON_INFO_EPOLL_FD);
		fr->dio[fr->nd].fd = di->epoll_fd;
		fr->dio[fr->nd].fn = front_on_daemon_io;
		fr->dio[fr->nd].data = fr;
		fr->nd++;
		if (loop_add(env->loop, &fr->dio[fr->nd - 1], EPOLLIN) < 0)
			goto fail;
	}
	return fr;
fail:
	log_msg(LOG_ERROR, "cannot start the HTTP daemon", "worker=%d",
		env->worker_id);
	front_free(fr);
	return NULL;
}

void front_free(struct front *fr)
{
	struct req *r;
	int i;

	if (!fr)
		return;
	/* MHD_stop_daemon aborts the process while a connection is suspended. */
	for (r = fr->reqs; r; r = r->next) {
		if (r->ctx)
			ctx_cancel(r->ctx, CTX_CAUSE_SHUTDOWN);
		req_resume(r);
	}
	front_run(fr);
	for (i = 0; i < fr->nd; i++) {
		loop_del(fr->env.loop, &fr->dio[i]);
		MHD_stop_daemon(fr->d[i]);
	}
	/* Every request is gone now, so are their holds on generations. */
	while (fr->old) {
		struct fgen *fg = fr->old;

		fr->old = fg->next;
		gen_unref(fg->g);
		free(fg);
	}
	if (fr->cur) {
		gen_unref(fr->cur->g);
		free(fr->cur);
	}
	free(fr);
}

int64_t front_next_timeout(struct front *fr)
{
	MHD_UNSIGNED_LONG_LONG ms;
	int64_t best = CTX_NO_DEADLINE, at;
	int i;

	if (fr->need_run)
		return ctx_now_ns();
	for (i = 0; i < fr->nd; i++) {
		if (MHD_get_timeout(fr->d[i], &ms) != MHD_YES)
			continue;
		at = ctx_now_ns() + (int64_t)ms * 1000000;
		if (at < best)
			best = at;
	}
	return best;
}

void front_run(struct front *fr)
{
	int i;

	fr->need_run = false;
	for (i = 0; i < fr->nd; i++)
		MHD_run(fr->d[i]);
}

void front_drain(struct front *fr)
{
	fr->draining = true;
}
