/* fetch.c - one upstream exchange: its life, its connection (and the retry of a dead pooled one), the request going out; the response side is fetch_response.c. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "config.h"
#include "fetch.h"
#include "fetch_response.h"
#include "h1.h"
#include "invariant.h"
#include "log.h"
#include "retry.h"
#include "upstream.h"

#define FETCH_BUF_SIZE UPSTREAM_BUF_SIZE  /* each direction, taken lazily */
/* A short request head fits in the fetch (a browser's ~1 KiB gets a
 * block of its own); more would cost every held request its memory:
 * 1 KiB here measured 12.3 KiB per held long-poll, 512 bytes 11.8. */
#define FETCH_HEAD_INLINE 512
/* The tail of the head written when the request goes out: the deadline
 * field's ": ", up to 20 digits and CRLF, then the empty line. */
#define FETCH_DL_ROOM 32
/* What a request-body chunk adds around its data, and the last chunk. */
#define FETCH_CHUNK_ROOM (H1_CHUNK_LINE_MAX + 2)
#define FETCH_LAST_CHUNK 5                /* "0\r\n\r\n" */

/* What the owner is to hear (fetch_notify). */
enum {
	FETCH_PEND_HEAD = 1,
	FETCH_PEND_BODY = 2,
	FETCH_PEND_UPLOAD = 4,
	FETCH_PEND_DONE = 8,
};

struct fetch {
	struct upstream *up;
	struct uconn_user user;          /* events of its connection */
	struct upstream_job job;         /* notifications to the owner */
	struct uconn *conn;              /* connecting, or connected */
	ctx_t *ctx;
	ctx_watch_t cancel_watch;
	ctx_t *phase;                    /* header/idle watcher */
	ctx_watch_t phase_watch;
	const struct fetch_ops *ops;
	void *arg;
	struct fetch_request rq;
	struct upstream_keepalive ka;
	int64_t idle_ns;
	bool idempotent;

	/* the request: its head, then the body as framed upstream */
	char *head;                      /* head_inline or malloc'd */
	size_t head_len, head_cap, fields_len, head_sent;
	struct fetch_buf upbuf;
	bool chunked_up, up_eof, eof_framed, upload_blocked, req_sent;
	bool upbuf_pinned;               /* TLS send blocked: its bytes stay put */

	struct fetch_resp resp;          /* fetch_response.c's */

	bool running, ended, ok, retried;
	enum fetch_fail fail;
	unsigned pending;
	int64_t started_ns, closed_at;
	char peer[UCONN_PEER_SIZE];      /* of the last connection */
	char head_inline[FETCH_HEAD_INLINE];
};

static void fetch_write(struct fetch *f);
static void fetch_read(struct fetch *f);

/* The fetch whose member `member` p points to. */
#define FETCH_OF(p, member) \
	((struct fetch *)((char *)(p) - offsetof(struct fetch, member)))

/* No request body at all, or an empty one: nothing to hold back. */
static bool fetch_bodyless(const struct fetch *f)
{
	return f->rq.body_len == -1 || f->rq.body_len == 0;
}

/* ---- notifications, delivered from the loop ---- */

static void fetch_notify(struct fetch *f, unsigned what)
{
	f->pending |= what;
	upstream_defer(f->up, &f->job);
}

/* One notification per run, the rest queued again first: the owner may
 * free f in any of its callbacks. */
static void fetch_deliver(struct upstream_job *job)
{
	struct fetch *f = FETCH_OF(job, job);
	static const unsigned order[] = { FETCH_PEND_HEAD, FETCH_PEND_UPLOAD, FETCH_PEND_BODY,
					  FETCH_PEND_DONE };
	unsigned what = f->pending, bit = 0;
	void (*fn)(void *) = NULL;
	size_t i;

	for (i = 0; i < sizeof(order) / sizeof(order[0]) && !bit; i++)
		if (what & order[i])
			bit = order[i];
	f->pending = what & ~bit;
	if (f->pending)
		upstream_defer(f->up, &f->job);
	if (bit == FETCH_PEND_HEAD)
		fn = f->ops->on_head;
	else if (bit == FETCH_PEND_UPLOAD)
		fn = f->ops->on_upload_space;
	else if (bit == FETCH_PEND_BODY)
		fn = f->ops->on_body;
	else if (bit == FETCH_PEND_DONE)
		fn = f->ops->on_done;
	if (fn)
		fn(f->arg);
}

/* ---- the request head ---- */

static int head_reserve(struct fetch *f, size_t more)
{
	size_t cap = f->head_cap;
	char *p;

	if (f->head_len + more <= cap)
		return 0;
	while (cap < f->head_len + more)
		cap *= 2;
	p = malloc(cap);
	if (!p)
		return -ENOMEM;
	memcpy(p, f->head, f->head_len);
	if (f->head != f->head_inline)
		free(f->head);
	f->head = p;
	f->head_cap = cap;
	return 0;
}

static void head_writer(struct fetch *f, struct h1_writer *w)
{
	w->buf = f->head;
	w->cap = f->head_cap;
	w->len = f->head_len;
	w->full = false;
}

int fetch_head_add(struct fetch *f, const char *name, size_t name_len,
		   const char *value, size_t value_len)
{
	struct h1_writer w;

	if (head_reserve(f, name_len + value_len + 4) < 0)
		return -ENOMEM;
	head_writer(f, &w);
	h1_put_field(&w, name, name_len, value, value_len);
	ASSERT(!w.full);
	f->head_len = w.len;
	return 0;
}

/* The framing fields, then room for the deadline and the end. */
static int head_finish_fields(struct fetch *f)
{
	static const char cl[] = "Content-Length", te[] = "Transfer-Encoding";
	static const char conn[] = "Connection", upg[] = "Upgrade";
	struct h1_writer w;
	size_t dl = f->rq.deadline_header ? strlen(f->rq.deadline_header) : 0;

	if (head_reserve(f, 64 + dl + FETCH_DL_ROOM) < 0)
		return -ENOMEM;
	head_writer(f, &w);
	if (f->rq.body_len >= 0)
		h1_put_field_u64(&w, cl, sizeof(cl) - 1,
				 (uint64_t)f->rq.body_len);
	else if (f->chunked_up)
		h1_put_field(&w, te, sizeof(te) - 1, "chunked", 7);
	if (f->rq.upgrade) {
		h1_put_field(&w, conn, sizeof(conn) - 1, "upgrade", 7);
		h1_put_field(&w, upg, sizeof(upg) - 1, "websocket", 9);
	} else if (f->ka.max <= 0) {
		h1_put_field(&w, conn, sizeof(conn) - 1, "close", 5);
	}
	ASSERT(!w.full);
	f->fields_len = f->head_len = w.len;
	return 0;
}

/* An upgrade's budget as the deadline header announces it. */
static int64_t fetch_tunnel_left(const struct fetch *f)
{
	int64_t left = CTX_NO_DEADLINE;

	if (f->rq.tunnel_deadline != CTX_NO_DEADLINE)
		left = f->rq.tunnel_deadline - ctx_now_ns();
	if (f->rq.tunnel_max_ms > 0 &&
	    (left == CTX_NO_DEADLINE || f->rq.tunnel_max_ms * 1000000 < left))
		left = f->rq.tunnel_max_ms * 1000000;
	return left;
}

/* Written as the request goes out (again on a retry), so the budget is
 * what is left then, not when the fetch was queued. */
static void head_write_deadline(struct fetch *f)
{
	const char *name = f->rq.deadline_header;
	struct h1_writer w;
	int64_t left;

	f->head_len = f->fields_len;
	head_writer(f, &w);
	left = f->rq.upgrade ? fetch_tunnel_left(f) :
		ctx_remaining_ns(f->ctx, ctx_now_ns());
	if (name && *name && left != CTX_NO_DEADLINE)
		h1_put_field_u64(&w, name, strlen(name),
				 left > 0 ? (uint64_t)left / 1000000 : 0);
	h1_put_end(&w);
	ASSERT(!w.full);
	f->head_len = w.len;
	f->head_sent = 0;
}

/* ---- phase timeouts: response head, body silence ---- */

static void fetch_phase_clear(struct fetch *f)
{
	ctx_timer_stop(&f->phase, &f->phase_watch);
}

static void fetch_on_phase(ctx_t *phase, void *arg);

static void fetch_phase_arm(struct fetch *f, int64_t ms, ctx_cause_t cause)
{
	fetch_phase_clear(f);
	if (ms <= 0 || !f->running)
		return;
	ctx_timer_start(&f->phase, &f->phase_watch, f->ctx,
			ctx_now_ns() + ms * 1000000, cause, fetch_on_phase, f);
}

static void fetch_on_phase(ctx_t *phase, void *arg)
{
	struct fetch *f = arg;
	ctx_cause_t cause = ctx_cause(phase);
	int64_t quiet;

	if (ctx_is_cancelled(f->ctx) || cause == CTX_CAUSE_COMPLETED)
		return;
	if (cause == CTX_CAUSE_IDLE_TIMEOUT) {
		/* Armed once per period, not per read: re-arm for the rest of
		 * the period, and never blame upstream for our own pause. */
		quiet = ctx_now_ns() - f->resp.last_read_ns;
		if (f->resp.paused || quiet < f->idle_ns) {
			if (f->resp.paused)
				quiet = 0;
			fetch_phase_arm(f, (f->idle_ns - quiet) / 1000000 + 1,
					CTX_CAUSE_IDLE_TIMEOUT);
			return;
		}
	}
	ctx_cancel(f->ctx, cause);
}

/* ---- the end of an exchange ---- */

/* The exchange is over, well (the whole response in) or not: its timers
 * stop and the owner hears of it. */
static void fetch_end(struct fetch *f, bool ok)
{
	f->running = false;
	f->ended = true;
	f->ok = ok;
	fetch_phase_clear(f);
	fetch_notify(f, FETCH_PEND_DONE | FETCH_PEND_BODY | FETCH_PEND_UPLOAD);
}

/* Cancelled (or failed): the backend must learn at once, so the FIN goes
 * out first (shutdown), then the socket is closed; never pooled. */
static void fetch_stop(struct fetch *f)
{
	if (!f->running)
		return;
	if (f->conn && uconn_connected(f->conn)) {
		uconn_shutdown(f->conn);
		upstream_fin(f->up);
	}
	uconn_close(f->conn);
	f->conn = NULL;
	if (!f->closed_at)
		f->closed_at = ctx_now_ns();
	fetch_end(f, false);
}

static void fetch_on_cancel(ctx_t *ctx, void *arg)
{
	(void)ctx;
	fetch_stop(arg);
}

/* The whole response is in: the connection goes back to its pool when
 * nothing else is pending on it. */
static void fetch_finish(struct fetch *f)
{
	uconn_release(f->conn, f->resp.keep_alive && f->req_sent, &f->ka);
	f->conn = NULL;
	fetch_end(f, true);
}

/* The response cannot be forwarded: 502 (cause upstream_error). */
static void fetch_refuse(struct fetch *f, const char *why)
{
	log_msg(LOG_WARN, "upstream response refused", "reason=\"%s\"", why);
	f->fail = FETCH_FAIL_REFUSED;
	ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
}

/* ---- connecting, and a dead kept-alive connection ---- */

/* Kept for the access log, which outlives the connection; a plain copy
 * (the buffers are the same size): a format costs ~1k instructions. */
static void fetch_note_peer(struct fetch *f)
{
	memcpy(f->peer, uconn_peer(f->conn), sizeof(f->peer));
	f->peer[sizeof(f->peer) - 1] = '\0';
}

static void fetch_on_connected(struct uconn_user *u, struct uconn *c,
			       int err)
{
	struct fetch *f = FETCH_OF(u, user);

	f->conn = c;
	if (err) {
		f->fail = FETCH_FAIL_CONNECT;
		ctx_cancel(f->ctx, err == -ETIMEDOUT ?
			   CTX_CAUSE_CONNECT_TIMEOUT : CTX_CAUSE_UPSTREAM_ERROR);
		return;
	}
	fetch_note_peer(f);
	head_write_deadline(f);
	fetch_write(f);
}

static void fetch_on_ready(struct uconn_user *u, uint32_t events)
{
	struct fetch *f = FETCH_OF(u, user);

	if (f->running && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		fetch_write(f);
	/* Only when something came: a held request takes no read buffer. */
	if (f->running && f->conn &&
	    (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		fetch_read(f);
}

static int fetch_connect(struct fetch *f)
{
	f->conn = upstream_connect(f->up, f->rq.origin, f->rq.pool_key,
				   f->rq.tls, f->rq.timeouts->connect_timeout_ms,
				   &f->user);
	return f->conn ? 0 : -ENOMEM;
}

/* The connection died before any response byte.  A kept-alive one may
 * have been closed by the backend just as it was reused: an idempotent
 * request whose body the proxy still holds whole (none) is sent once more
 * on a fresh connection.  Anything else is a 502: a non-idempotent request
 * never goes out twice. */
static void fetch_conn_died(struct fetch *f)
{
	bool again = uconn_reused(f->conn) && !f->retried &&
		!f->resp.got_bytes && f->idempotent && fetch_bodyless(f);

	if (!again) {
		f->fail = FETCH_FAIL_RESET;
		ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
		return;
	}
	f->retried = true;
	uconn_close(f->conn);
	f->conn = NULL;
	f->req_sent = false;
	fetch_phase_clear(f);
	if (fetch_connect(f) < 0)
		ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
}

/* ---- the request going out ---- */

static bool fetch_body_complete(const struct fetch *f)
{
	if (fetch_bodyless(f))
		return true;
	return f->up_eof && f->upbuf.len == 0 &&
		(!f->chunked_up || f->eof_framed);
}

/* The head, then the framed body: as much as the socket takes, in one
 * system call when both are waiting. */
static void fetch_write(struct fetch *f)
{
	struct iovec iov[2];
	struct fetch_buf *b = &f->upbuf;
	ssize_t n;
	size_t k;
	int cnt;

	while (f->running && f->conn && uconn_connected(f->conn) &&
	       !f->req_sent) {
		cnt = 0;
		if (f->head_sent < f->head_len)
			iov[cnt++] = (struct iovec){ f->head + f->head_sent,
						     f->head_len - f->head_sent };
		if (b->len)
			iov[cnt++] = (struct iovec){ b->data + b->off, b->len };
		if (!cnt) {
			if (!fetch_body_complete(f))
				return;            /* wait for fetch_send */
			f->req_sent = true;
			if (!f->resp.head_done)
				fetch_phase_arm(f, f->rq.timeouts->header_timeout_ms,
						CTX_CAUSE_HEADER_TIMEOUT);
			return;
		}
		n = uconn_send(f->conn, iov, cnt);
		if (n == -EAGAIN) {
			f->upbuf_pinned = uconn_tls(f->conn);
			return;                    /* EPOLLOUT comes */
		}
		f->upbuf_pinned = false;
		if (n < 0) {
			fetch_conn_died(f);
			return;
		}
		k = (size_t)n < f->head_len - f->head_sent ?
			(size_t)n : f->head_len - f->head_sent;
		f->head_sent += k;
		b->off += (size_t)n - k;
		b->len -= (size_t)n - k;
		if (!b->len)
			b->off = 0;
		if (f->upload_blocked && n > 0) {
			f->upload_blocked = false;
			fetch_notify(f, FETCH_PEND_UPLOAD);
		}
	}
}

/* Append to the upload buffer, framed: a chunk line and CRLF around the
 * data when the client's body is chunked (room is kept for the last
 * chunk).  Returns the body bytes taken. */
static size_t upbuf_put(struct fetch *f, const char *data, size_t len)
{
	struct fetch_buf *b = &f->upbuf;
	size_t room, extra = f->chunked_up ? FETCH_CHUNK_ROOM +
		FETCH_LAST_CHUNK : 0;
	char *p;

	if (!f->upbuf_pinned)
		fetch_buf_compact(b);
	room = FETCH_BUF_SIZE - b->off - b->len;
	room = room > extra ? room - extra : 0;
	if (len > room)
		len = room;
	if (!len)
		return 0;
	p = b->data + b->off + b->len;
	if (f->chunked_up)
		p += h1_chunk_line(p, len);
	memcpy(p, data, len);
	p += len;
	if (f->chunked_up) {
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	b->len = (size_t)(p - b->data - b->off);
	return len;
}

ssize_t fetch_send(struct fetch *f, const char *data, size_t len)
{
	size_t took;

	if (f->ended)
		return -ECANCELED;
	if (!f->upbuf.data) {
		f->upbuf.data = upstream_buf_get(f->up);
		if (!f->upbuf.data)
			return -ENOMEM;
	}
	took = upbuf_put(f, data, len);
	if (took < len)
		f->upload_blocked = true;
	fetch_write(f);
	return (ssize_t)took;
}

void fetch_send_eof(struct fetch *f)
{
	struct fetch_buf *b = &f->upbuf;

	if (f->up_eof)
		return;
	f->up_eof = true;
	if (f->chunked_up && !f->ended) {
		if (!b->data)
			b->data = upstream_buf_get(f->up);
		if (!b->data) {
			ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
			return;
		}
		if (!f->upbuf_pinned)
			fetch_buf_compact(b);
		/* upbuf_put kept the room */
		b->len += h1_chunk_line(b->data + b->off + b->len, 0);
		f->eof_framed = true;
	}
	fetch_write(f);
}

/* ---- the response, read by fetch_response.c ---- */

/* Act on what the response side found: the owner hears of the head and
 * the body; the end, a refusal or a dead connection end the exchange. */
static void fetch_read(struct fetch *f)
{
	const char *why = NULL;
	unsigned got = fetch_resp_read(&f->resp, f->conn, f->up, &why);

	if (got & FETCH_RESP_HEAD) {
		fetch_phase_arm(f, f->rq.timeouts->idle_timeout_ms,
				CTX_CAUSE_IDLE_TIMEOUT);
		fetch_notify(f, FETCH_PEND_HEAD);
	}
	if (got & FETCH_RESP_BODY)
		fetch_notify(f, FETCH_PEND_BODY);
	if (got & FETCH_RESP_UPGRADED)
		fetch_end(f, true);          /* f->conn waits for its taker */
	else if (got & FETCH_RESP_REFUSED)
		fetch_refuse(f, why);
	else if (got & FETCH_RESP_DIED)
		fetch_conn_died(f);
	else if (got & FETCH_RESP_CUT) {
		f->fail = FETCH_FAIL_RESET;
		ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
	}
	else if (got & FETCH_RESP_DONE)
		fetch_finish(f);
}

ssize_t fetch_recv(struct fetch *f, char *buf, size_t len)
{
	ssize_t n;

	if (f->resp.buf.len == 0) {
		if (!f->ended)
			return FETCH_RECV_AGAIN;
		return f->ok ? FETCH_RECV_END : FETCH_RECV_ABORTED;
	}
	n = (ssize_t)fetch_resp_take(&f->resp, buf, len);
	if (f->resp.paused &&
	    FETCH_BUF_SIZE - f->resp.buf.len >= FETCH_RESP_RESUME_ROOM) {
		f->resp.paused = false;
		f->resp.last_read_ns = ctx_now_ns();
		if (f->running)
			fetch_read(f);       /* edge-triggered: nothing new fires */
	}
	return n;
}

/* ---- the fetch's life ---- */

struct fetch *fetch_new(struct upstream *up, ctx_t *ctx,
			const struct fetch_request *rq,
			const struct fetch_ops *ops, void *arg)
{
	struct fetch *f = malloc(sizeof(*f));
	struct h1_writer w;

	if (!f)
		return NULL;
	/* The inline head is written before it is read: clearing it would
	 * only make every held request's memory resident. */
	memset(f, 0, offsetof(struct fetch, head_inline));
	f->up = up;
	f->ctx = ctx_ref(ctx);
	f->ops = ops;
	f->arg = arg;
	f->rq = *rq;
	f->user.connected = fetch_on_connected;
	f->user.ready = fetch_on_ready;
	f->job.fn = fetch_deliver;
	f->ka.max = rq->keepalive_max;
	f->ka.timeout_ns = rq->keepalive_timeout_ms * 1000000;
	f->idle_ns = rq->timeouts->idle_timeout_ms * 1000000;
	fetch_resp_init(&f->resp, strcmp(rq->method, "HEAD") == 0,
			rq->upgrade);
	f->idempotent = retry_idempotent(rq->method);
	f->chunked_up = rq->body_len == FETCH_BODY_CHUNKED;
	f->head = f->head_inline;
	f->head_cap = sizeof(f->head_inline);
	if (head_reserve(f, strlen(rq->method) + strlen(rq->target) + 16) < 0) {
		fetch_free(f);
		return NULL;
	}
	head_writer(f, &w);
	h1_put_request_line(&w, rq->method, rq->target, strlen(rq->target));
	f->head_len = w.len;
	f->rq.target = NULL;             /* the caller's; in the head now */
	return f;
}

int fetch_start(struct fetch *f)
{
	int rc = head_finish_fields(f);

	if (rc < 0)
		return rc;
	if (ctx_watch(f->ctx, &f->cancel_watch, fetch_on_cancel, f) < 0)
		return -ECANCELED;
	f->running = true;
	f->started_ns = ctx_now_ns();
	f->conn = upstream_take_idle(f->up, f->rq.pool_key, &f->user);
	if (f->conn) {
		fetch_note_peer(f);
		head_write_deadline(f);
		fetch_write(f);
		return 0;
	}
	rc = fetch_connect(f);
	if (rc < 0) {
		f->running = false;
		ctx_unwatch(&f->cancel_watch);
	}
	return rc;
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	ctx_unwatch(&f->cancel_watch);
	fetch_phase_clear(f);
	uconn_close(f->conn);            /* still running: aborted */
	upstream_undefer(f->up, &f->job);
	ctx_unref(f->ctx);
	upstream_buf_put(f->up, f->upbuf.data);
	fetch_resp_free(&f->resp, f->up);
	if (f->head != f->head_inline)
		free(f->head);
	free(f);
}

bool fetch_ended(const struct fetch *f)
{
	return f->ended;
}

bool fetch_ok(const struct fetch *f)
{
	return f->ok;
}

enum fetch_fail fetch_failure(const struct fetch *f)
{
	return f->fail;
}

const char *fetch_peer(const struct fetch *f)
{
	return f->peer;
}

struct uconn *fetch_take_conn(struct fetch *f, const char **extra,
			      size_t *extra_len)
{
	struct uconn *c = f->conn;

	if (!f->resp.upgraded || !c)
		return NULL;
	f->conn = NULL;
	*extra = f->resp.buf.data + f->resp.buf.off;
	*extra_len = f->resp.buf.len;
	return c;
}

void fetch_trim(struct fetch *f)
{
	ASSERT(f->ended && !f->conn);
	upstream_buf_put(f->up, f->upbuf.data);
	f->upbuf.data = NULL;
	f->upbuf.off = f->upbuf.len = 0;
	upstream_buf_put(f->up, f->resp.buf.data);
	f->resp.buf.data = NULL;
	f->resp.buf.off = f->resp.buf.len = 0;
}

int64_t fetch_closed_at(const struct fetch *f)
{
	return f->closed_at;
}

int64_t fetch_head_latency(const struct fetch *f)
{
	return f->resp.head_ns ? f->resp.head_ns - f->started_ns : -1;
}

int fetch_status(const struct fetch *f)
{
	return f->resp.head_done ? f->resp.status : 0;
}

int64_t fetch_content_length(const struct fetch *f)
{
	return f->resp.content_length;
}

bool fetch_has_head(const struct fetch *f)
{
	return f->resp.head_done;
}

size_t fetch_header_count(const struct fetch *f)
{
	return f->resp.nhdr;
}

void fetch_header(const struct fetch *f, size_t i, const char **name,
		  const char **value)
{
	fetch_resp_header(&f->resp, i, name, value);
}

size_t fetch_header_bytes(const struct fetch *f)
{
	return f->resp.hdr_len + 2 * f->resp.nhdr;  /* NUL, NUL: ": ", CRLF */
}

const char *fetch_peek(const struct fetch *f, size_t *len)
{
	*len = f->resp.buf.len;
	return f->resp.buf.data ? f->resp.buf.data + f->resp.buf.off : "";
}
