/* fetch.c - one upstream exchange: the request written and the response read by ctxproxy on a connection it owns. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "config.h"
#include "fetch.h"
#include "h1.h"
#include "headers.h"
#include "invariant.h"
#include "log.h"
#include "upstream.h"

#define FETCH_BUF_SIZE UPSTREAM_BUF_SIZE  /* each direction, taken lazily */
#define FETCH_HEAD_INLINE 1024            /* most request heads fit */
#define FETCH_RESUME_ROOM (16 * 1024)     /* read again once this is free */
/* The tail of the head written when the request goes out: the deadline
 * field's ": ", up to 20 digits and CRLF, then the empty line. */
#define FETCH_DL_ROOM 32
/* What a request-body chunk adds around its data, and the last chunk. */
#define FETCH_CHUNK_ROOM (H1_CHUNK_LINE_MAX + 2)
#define FETCH_LAST_CHUNK 5                /* "0\r\n\r\n" */

enum {
	PEND_HEAD = 1,
	PEND_BODY = 2,
	PEND_UPLOAD = 4,
	PEND_DONE = 8,
};

/* One direction's bounded byte buffer: bytes live in [off, off + len). */
struct fbuf {
	char *data;
	size_t off, len;
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
	int64_t idle_ns, last_read_ns;
	bool head_request, idempotent;

	/* the request: its head, then the body as framed upstream */
	char *head;                      /* head_inline or malloc'd */
	size_t head_len, head_cap, fields_len, head_sent;
	struct fbuf upbuf;
	bool chunked_up, up_eof, eof_framed, upload_blocked, req_sent;

	/* the response */
	struct fbuf downbuf;             /* the head, then the payload */
	size_t head_scanned;             /* of downbuf, without a head end */
	struct h1_body body;
	bool got_bytes, head_done, keep_alive, recv_paused;
	int status;
	int64_t content_length;
	char *hdr;                       /* "name\0value\0" pairs */
	size_t hdr_len, hdr_cap, nhdr;

	bool running, connected, ended, ok, retried;
	unsigned pending;
	int64_t started_ns, head_ns, closed_at;
	char head_inline[FETCH_HEAD_INLINE];
};

static void fetch_read(struct fetch *f);
static void fetch_write(struct fetch *f);

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
	struct fetch *f = (struct fetch *)((char *)job -
					   offsetof(struct fetch, job));
	static const unsigned order[] = { PEND_HEAD, PEND_UPLOAD, PEND_BODY,
					  PEND_DONE };
	unsigned what = f->pending, bit = 0;
	void (*fn)(void *) = NULL;
	size_t i;

	for (i = 0; i < sizeof(order) / sizeof(order[0]) && !bit; i++)
		if (what & order[i])
			bit = order[i];
	f->pending = what & ~bit;
	if (f->pending)
		upstream_defer(f->up, &f->job);
	if (bit == PEND_HEAD)
		fn = f->ops->on_head;
	else if (bit == PEND_UPLOAD)
		fn = f->ops->on_upload_space;
	else if (bit == PEND_BODY)
		fn = f->ops->on_body;
	else if (bit == PEND_DONE)
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
	static const char conn[] = "Connection";
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
	if (f->ka.max <= 0)
		h1_put_field(&w, conn, sizeof(conn) - 1, "close", 5);
	ASSERT(!w.full);
	f->fields_len = f->head_len = w.len;
	return 0;
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
	left = ctx_remaining_ns(f->ctx, ctx_now_ns());
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
		quiet = ctx_now_ns() - f->last_read_ns;
		if (f->recv_paused || quiet < f->idle_ns) {
			if (f->recv_paused)
				quiet = 0;
			fetch_phase_arm(f, (f->idle_ns - quiet) / 1000000 + 1,
					CTX_CAUSE_IDLE_TIMEOUT);
			return;
		}
	}
	ctx_cancel(f->ctx, cause);
}

/* ---- the end of an exchange ---- */

/* Cancelled (or failed): the backend must learn at once, so the FIN goes
 * out first (shutdown), then the socket is closed; never pooled. */
static void fetch_stop(struct fetch *f)
{
	if (!f->running)
		return;
	f->running = false;
	f->ended = true;
	f->ok = false;
	fetch_phase_clear(f);
	if (f->conn) {
		if (f->connected) {
			uconn_shutdown(f->conn);
			upstream_fin(f->up);
		}
		f->closed_at = ctx_now_ns();
		uconn_close(f->conn);
		f->conn = NULL;
	} else if (!f->closed_at) {
		f->closed_at = ctx_now_ns();
	}
	fetch_notify(f, PEND_DONE | PEND_BODY | PEND_UPLOAD);
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
	f->running = false;
	f->ended = true;
	f->ok = true;
	fetch_phase_clear(f);
	uconn_release(f->conn, f->keep_alive && f->req_sent, &f->ka);
	f->conn = NULL;
	fetch_notify(f, PEND_DONE | PEND_BODY | PEND_UPLOAD);
}

/* The response cannot be forwarded: 502 (cause upstream_error). */
static void fetch_refuse(struct fetch *f, const char *why)
{
	log_msg(LOG_WARN, "upstream response refused", "reason=\"%s\"", why);
	ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
}

/* ---- connecting, and a dead kept-alive connection ---- */

static void fetch_on_connected(struct uconn_user *u, struct uconn *c,
			       int err)
{
	struct fetch *f = (struct fetch *)((char *)u -
					   offsetof(struct fetch, user));

	f->conn = c;
	if (err) {
		ctx_cancel(f->ctx, err == -ETIMEDOUT ?
			   CTX_CAUSE_CONNECT_TIMEOUT : CTX_CAUSE_UPSTREAM_ERROR);
		return;
	}
	f->connected = true;
	head_write_deadline(f);
	fetch_write(f);
}

static void fetch_on_ready(struct uconn_user *u, uint32_t events)
{
	struct fetch *f = (struct fetch *)((char *)u -
					   offsetof(struct fetch, user));

	if (f->running && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		fetch_write(f);
	/* Only when something came: a held request takes no read buffer. */
	if (f->running && f->conn &&
	    (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		fetch_read(f);
}

static int fetch_connect(struct fetch *f)
{
	f->conn = upstream_connect(f->up, f->rq.origin,
				   f->rq.timeouts->connect_timeout_ms,
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
	bool again = uconn_reused(f->conn) && !f->retried && !f->got_bytes &&
		f->idempotent && f->rq.body_len <= 0 && !f->chunked_up;

	if (!again) {
		ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
		return;
	}
	f->retried = true;
	uconn_close(f->conn);
	f->conn = NULL;
	f->connected = false;
	f->req_sent = false;
	fetch_phase_clear(f);
	if (fetch_connect(f) < 0)
		ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
}

/* ---- the request going out ---- */

static bool fetch_body_complete(const struct fetch *f)
{
	if (f->rq.body_len == -1 || f->rq.body_len == 0)
		return true;
	return f->up_eof && f->upbuf.len == 0 &&
		(!f->chunked_up || f->eof_framed);
}

/* The head, then the framed body: as much as the socket takes, in one
 * system call when both are waiting. */
static void fetch_write(struct fetch *f)
{
	struct iovec iov[2];
	struct fbuf *b = &f->upbuf;
	ssize_t n;
	size_t k;
	int cnt;

	while (f->running && f->connected && !f->req_sent) {
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
			if (!f->head_done)
				fetch_phase_arm(f, f->rq.timeouts->header_timeout_ms,
						CTX_CAUSE_HEADER_TIMEOUT);
			return;
		}
		n = uconn_send(f->conn, iov, cnt);
		if (n == -EAGAIN)
			return;                    /* EPOLLOUT comes */
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
			fetch_notify(f, PEND_UPLOAD);
		}
	}
}

static void fbuf_compact(struct fbuf *b)
{
	if (b->off && b->len)
		memmove(b->data, b->data + b->off, b->len);
	b->off = 0;
}

/* Append to the upload buffer, framed: a chunk line and CRLF around the
 * data when the client's body is chunked (room is kept for the last
 * chunk).  Returns the body bytes taken. */
static size_t upbuf_put(struct fetch *f, const char *data, size_t len)
{
	struct fbuf *b = &f->upbuf;
	size_t room, extra = f->chunked_up ? FETCH_CHUNK_ROOM +
		FETCH_LAST_CHUNK : 0;
	char *p;

	fbuf_compact(b);
	room = FETCH_BUF_SIZE - b->len;
	room = room > extra ? room - extra : 0;
	if (len > room)
		len = room;
	if (!len)
		return 0;
	p = b->data + b->len;
	if (f->chunked_up)
		p += h1_chunk_line(p, len);
	memcpy(p, data, len);
	p += len;
	if (f->chunked_up) {
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	b->len = (size_t)(p - b->data);
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
	struct fbuf *b = &f->upbuf;

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
		fbuf_compact(b);             /* upbuf_put kept the room */
		b->len += h1_chunk_line(b->data + b->len, 0);
		f->eof_framed = true;
	}
	fetch_write(f);
}

/* ---- the response coming in ---- */

static int hdr_reserve(struct fetch *f, size_t need)
{
	size_t cap = f->hdr_cap ? f->hdr_cap : 1024;
	char *p;

	if (f->hdr_len + need <= f->hdr_cap)
		return 0;
	while (cap < f->hdr_len + need)
		cap *= 2;
	p = realloc(f->hdr, cap);
	if (!p)
		return -ENOMEM;
	f->hdr = p;
	f->hdr_cap = cap;
	return 0;
}

/* Keep the fields the client may see, as "name\0value\0" pairs (MHD
 * takes C strings): not hop-by-hop, not named by the response's
 * Connection. */
static int fetch_take_head(struct fetch *f, const struct h1_head *h)
{
	const struct headers_field *fl;
	char *p;
	size_t i;

	for (i = 0; i < h->n; i++) {
		fl = &h->f[i];
		if (!headers_response_forwarded(fl, h->f, h->n))
			continue;
		if (hdr_reserve(f, fl->name_len + fl->value_len + 2) < 0)
			return -ENOMEM;
		p = f->hdr + f->hdr_len;
		memcpy(p, fl->name, fl->name_len);
		p[fl->name_len] = '\0';
		memcpy(p + fl->name_len + 1, fl->value, fl->value_len);
		p[fl->name_len + 1 + fl->value_len] = '\0';
		f->hdr_len += fl->name_len + fl->value_len + 2;
		f->nhdr++;
	}
	return 0;
}

/* Decode body bytes just read at p (the end of the payload buffer), in
 * place.  False when the body is malformed (refused). */
static bool fetch_decode(struct fetch *f, char *p, size_t n)
{
	struct fbuf *b = &f->downbuf;
	const char *why = NULL;
	size_t out = 0;
	ssize_t used;

	used = h1_body_decode(&f->body, p, n, p, &out, &why);
	if (used < 0) {
		fetch_refuse(f, why);
		return false;
	}
	if ((size_t)used < n)
		f->keep_alive = false;       /* bytes after the response */
	b->len += out;
	if (out) {
		f->last_read_ns = ctx_now_ns();
		fetch_notify(f, PEND_BODY);
	}
	return true;
}

/* The final head: what the client will see, and the body's framing. */
static void fetch_final_head(struct fetch *f, struct h1_head *h, size_t end)
{
	struct fbuf *b = &f->downbuf;
	const char *why = NULL;
	size_t rest = b->len - end;

	if (h->status == 101) {
		fetch_refuse(f, "101 Switching Protocols to a request without Upgrade");
		return;
	}
	if (h1_body_init(&f->body, h, f->head_request, &why) < 0) {
		fetch_refuse(f, why);
		return;
	}
	if (fetch_take_head(f, h) < 0) {
		fetch_refuse(f, "out of memory");
		return;
	}
	f->status = h->status;
	f->content_length = f->body.length;
	f->keep_alive = h->keep_alive;
	f->head_done = true;
	f->head_ns = f->last_read_ns = ctx_now_ns();
	memmove(b->data, b->data + end, rest);
	b->off = b->len = 0;
	fetch_phase_arm(f, f->rq.timeouts->idle_timeout_ms,
			CTX_CAUSE_IDLE_TIMEOUT);
	fetch_notify(f, PEND_HEAD);
	if (rest)
		fetch_decode(f, b->data, rest);
}

/* Where the head in the buffer ends (0: not yet).  Only the new bytes are
 * scanned, with the two before them, since a head's end ("\n\n" or
 * "\n\r\n") may straddle reads: a head trickled a byte at a time costs
 * linear time, not quadratic. */
static ssize_t fetch_head_end(struct fetch *f)
{
	struct fbuf *b = &f->downbuf;
	size_t from = f->head_scanned > 2 ? f->head_scanned - 2 : 0;
	ssize_t end = h1_head_end(b->data + from, b->len - from);

	f->head_scanned = b->len;
	return end > 0 ? end + (ssize_t)from : end;
}

/* Heads in the buffer: interim ones (1xx) are skipped, the final one
 * taken.  A head that does not fit the buffer is refused. */
static void fetch_parse_heads(struct fetch *f)
{
	struct fbuf *b = &f->downbuf;
	struct h1_head h;
	const char *why = NULL;
	ssize_t end;

	while (f->running && !f->head_done) {
		end = fetch_head_end(f);
		if (end == 0 && b->len < FETCH_BUF_SIZE)
			return;
		if (end <= 0) {
			fetch_refuse(f, "response head too large");
			return;
		}
		if (h1_parse_head(b->data, (size_t)end, &h, &why) < 0) {
			fetch_refuse(f, why);
			return;
		}
		if (!h1_is_interim(h.status)) {
			fetch_final_head(f, &h, (size_t)end);
			return;
		}
		memmove(b->data, b->data + end, b->len - (size_t)end);
		b->len -= (size_t)end;
		f->head_scanned = 0;
	}
}

/* Until the head is in: EOF or a reset before any byte may be a dead
 * kept-alive connection (fetch_conn_died); after some, a 502. */
static void fetch_read_head(struct fetch *f)
{
	struct fbuf *b = &f->downbuf;
	ssize_t n;

	while (f->running && !f->head_done) {
		n = uconn_recv(f->conn, b->data + b->len,
			       FETCH_BUF_SIZE - b->len);
		if (n == -EAGAIN)
			return;
		if (n <= 0 && !f->got_bytes) {
			fetch_conn_died(f);
			return;
		}
		if (n <= 0) {
			fetch_refuse(f, "connection closed within the response head");
			return;
		}
		f->got_bytes = true;
		b->len += (size_t)n;
		fetch_parse_heads(f);
	}
}

/* The body, into what the client has not taken yet: reading stops while
 * the buffer is full (the client reads slowly) and goes on from
 * fetch_recv. */
static void fetch_read_body(struct fetch *f)
{
	struct fbuf *b = &f->downbuf;
	ssize_t n;
	char *p;

	while (f->running) {
		if (f->body.done) {
			fetch_finish(f);
			return;
		}
		if (b->off + b->len == FETCH_BUF_SIZE) {
			if (!b->off) {
				f->recv_paused = true;
				return;
			}
			fbuf_compact(b);
		}
		p = b->data + b->off + b->len;
		n = uconn_recv(f->conn, p, FETCH_BUF_SIZE - b->off - b->len);
		if (n == -EAGAIN)
			return;
		if (n == 0 && h1_body_eof(&f->body) == 0)
			continue;                  /* until close: done */
		if (n <= 0) {
			ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
			return;
		}
		if (!fetch_decode(f, p, (size_t)n))
			return;
	}
}

static void fetch_read(struct fetch *f)
{
	if (!f->downbuf.data) {
		f->downbuf.data = upstream_buf_get(f->up);
		if (!f->downbuf.data) {
			ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
			return;
		}
	}
	if (!f->head_done)
		fetch_read_head(f);
	if (f->head_done)
		fetch_read_body(f);
}

ssize_t fetch_recv(struct fetch *f, char *buf, size_t len)
{
	struct fbuf *b = &f->downbuf;

	if (b->len == 0) {
		if (!f->ended)
			return FETCH_RECV_AGAIN;
		return f->ok ? FETCH_RECV_END : FETCH_RECV_ABORTED;
	}
	if (len > b->len)
		len = b->len;
	memcpy(buf, b->data + b->off, len);
	b->off += len;
	b->len -= len;
	if (b->len == 0)
		b->off = 0;
	if (f->recv_paused && FETCH_BUF_SIZE - b->len >= FETCH_RESUME_ROOM) {
		f->recv_paused = false;
		f->last_read_ns = ctx_now_ns();
		if (f->running)
			fetch_read(f);       /* edge-triggered: nothing new fires */
	}
	return (ssize_t)len;
}

/* ---- the fetch's life ---- */

static bool method_idempotent(const char *m)
{
	static const char *const set[] = { "GET", "HEAD", "OPTIONS", "PUT",
					   "DELETE", "TRACE" };
	size_t i;

	for (i = 0; i < sizeof(set) / sizeof(set[0]); i++)
		if (strcmp(m, set[i]) == 0)
			return true;
	return false;
}

struct fetch *fetch_new(struct upstream *up, ctx_t *ctx,
			const struct fetch_request *rq,
			const struct fetch_ops *ops, void *arg)
{
	struct fetch *f = calloc(1, sizeof(*f));
	struct h1_writer w;

	if (!f)
		return NULL;
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
	f->head_request = strcmp(rq->method, "HEAD") == 0;
	f->idempotent = method_idempotent(rq->method);
	f->chunked_up = rq->body_len == FETCH_BODY_CHUNKED;
	f->content_length = -1;
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
	f->conn = upstream_take_idle(f->up, f->rq.origin, &f->user);
	if (f->conn) {
		f->connected = true;
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
	upstream_buf_put(f->up, f->downbuf.data);
	if (f->head != f->head_inline)
		free(f->head);
	free(f->hdr);
	free(f);
}

int fetch_status(const struct fetch *f)
{
	return f->head_done ? f->status : 0;
}

int64_t fetch_content_length(const struct fetch *f)
{
	return f->content_length;
}

bool fetch_has_head(const struct fetch *f)
{
	return f->head_done;
}

size_t fetch_header_count(const struct fetch *f)
{
	return f->nhdr;
}

void fetch_header(const struct fetch *f, size_t i, const char **name,
		  const char **value)
{
	const char *p = f->hdr;

	for (; i > 0; i--) {
		p += strlen(p) + 1;
		p += strlen(p) + 1;
	}
	*name = p;
	*value = p + strlen(p) + 1;
}

size_t fetch_header_bytes(const struct fetch *f)
{
	return f->hdr_len + 2 * f->nhdr;     /* NUL, NUL -> ": ", CRLF */
}

bool fetch_ended(const struct fetch *f)
{
	return f->ended;
}

bool fetch_ok(const struct fetch *f)
{
	return f->ok;
}

int64_t fetch_closed_at(const struct fetch *f)
{
	return f->closed_at;
}

int64_t fetch_head_latency(const struct fetch *f)
{
	return f->head_ns ? f->head_ns - f->started_ns : -1;
}

const char *fetch_peek(const struct fetch *f, size_t *len)
{
	*len = f->downbuf.len;
	return f->downbuf.data ? f->downbuf.data + f->downbuf.off : "";
}
