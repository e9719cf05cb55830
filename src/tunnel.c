/* tunnel.c - a bidirectional byte relay between two non-blocking stream sockets in a worker's loop (an upgraded connection). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "context.h"
#include "invariant.h"
#include "loop.h"
#include "tunnel.h"

#define TUNNEL_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

/* One socket: its I/O, its watch and what epoll last told of it (edge-
 * triggered: ready until a call answers -EAGAIN). */
struct tunnel_sock {
	int fd;
	enum tunnel_reg reg;
	const struct tunnel_end_ops *ops;
	void *io;
	struct loop_io lio;
	bool registered;
	bool in_ready, out_ready;
	struct tunnel *t;
};

/* Bytes read from one side on their way to the other: buf[off, len). */
struct tunnel_dir {
	char *buf;
	size_t off, len;
	bool eof;      /* the source side sent its EOF */
};

struct tunnel {
	struct loop *loop;
	ctx_t *ctx;                /* the request's; a reference */
	ctx_watch_t cancel_w;
	/* Idle and lifetime checks while live (a child of ctx), then the
	 * deferred report (a child of the root, due at once). */
	ctx_t *timer;
	ctx_watch_t timer_w;
	struct tunnel_owner owner;
	int64_t idle_ns, max_at;   /* 0 = off */
	int64_t active_at;
	struct tunnel_sock sock[2];
	struct tunnel_dir dir[2];  /* dir[s]: from side s to the other */
	struct tunnel_report rep;
	bool started, ended;
};

/* ---- buffers and I/O ---- */

static char *buf_get(struct tunnel *t)
{
	if (t->owner.buf_get)
		return t->owner.buf_get(t->owner.buf_arg);
	return malloc(TUNNEL_BUF_SIZE);
}

static void buf_put(struct tunnel *t, struct tunnel_dir *d)
{
	if (!d->buf)
		return;
	if (t->owner.buf_put)
		t->owner.buf_put(t->owner.buf_arg, d->buf);
	else
		free(d->buf);
	d->buf = NULL;
	d->off = d->len = 0;
}

static ssize_t sock_recv(struct tunnel_sock *k, void *buf, size_t len)
{
	ssize_t n;

	if (k->ops && k->ops->recv)
		return k->ops->recv(k->io, buf, len);
	do
		n = recv(k->fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t sock_send(struct tunnel_sock *k, const void *buf, size_t len)
{
	ssize_t n;

	if (k->ops && k->ops->send)
		return k->ops->send(k->io, buf, len);
	do
		n = send(k->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static void sock_shutdown_write(struct tunnel_sock *k)
{
	if (k->ops && k->ops->shutdown_write)
		k->ops->shutdown_write(k->io);
	else
		shutdown(k->fd, SHUT_WR);
}

static void sock_abort(struct tunnel_sock *k)
{
	if (k->ops && k->ops->abort)
		k->ops->abort(k->io);
	else
		shutdown(k->fd, SHUT_RDWR);
}

/* ---- the end ---- */

static void on_report(ctx_t *timer, void *arg)
{
	struct tunnel *t = arg;
	/* Copied: the owner may free t in the call. */
	struct tunnel_report r = t->rep;

	(void)timer;
	t->owner.done(t, &r, t->owner.arg);
}

static void sock_unregister(struct tunnel *t, struct tunnel_sock *k)
{
	if (!k->registered)
		return;
	loop_del(t->loop, &k->lio);
	k->registered = false;
}

/* Both sides are shut down now (the aborted ones at once), every watch is
 * dropped, and the report waits for the next ctx_expire() of the root: it
 * never reaches the owner from inside one of its own calls. */
static void finish(struct tunnel *t, enum tunnel_end_why why, int first,
		   int err, ctx_cause_t cause)
{
	int64_t now = ctx_now_ns();
	int s;

	if (t->ended)
		return;
	t->ended = true;
	for (s = 0; s < 2; s++) {
		if (why != TUNNEL_END_CLOSED)
			sock_abort(&t->sock[s]);
		if (!t->rep.closed_at[s])
			t->rep.closed_at[s] = now;
		sock_unregister(t, &t->sock[s]);
		buf_put(t, &t->dir[s]);
	}
	ctx_unwatch(&t->cancel_w);
	t->rep.why = why;
	t->rep.first = first;
	t->rep.err = err;
	t->rep.cause = cause;
	t->rep.ended_at = now;
	/* Only when memory ran out (or the root was cancelled: the worker is
	 * gone) is the report made at once. */
	if (ctx_timer_start(&t->timer, &t->timer_w, t->owner.root, 0,
			    CTX_CAUSE_COMPLETED, on_report, t) < 0)
		on_report(NULL, t);
}

static void fail(struct tunnel *t, int side, int err)
{
	if (!t->rep.eof_at[side])
		t->rep.eof_at[side] = ctx_now_ns();
	finish(t, TUNNEL_END_ERROR, side, err,
	       side == TUNNEL_CLIENT ? CTX_CAUSE_CLIENT_DISCONNECT
				     : CTX_CAUSE_UPSTREAM_ERROR);
}

static void cancel(struct tunnel *t, ctx_cause_t cause)
{
	if (!t->ended)
		t->rep.cancelled_at = ctx_is_cancelled(t->ctx) ?
			ctx_cancelled_at(t->ctx) : ctx_now_ns();
	finish(t, TUNNEL_END_CANCELLED, -1, 0, cause);
}

/* ---- relaying ---- */

/* Send what dir s holds to the other side.  False when it must wait (or
 * the tunnel ended). */
static bool dir_flush(struct tunnel *t, int s)
{
	struct tunnel_dir *d = &t->dir[s];
	struct tunnel_sock *to = &t->sock[!s];
	ssize_t n;

	if (!to->out_ready)
		return false;
	n = sock_send(to, d->buf + d->off, d->len - d->off);
	if (n == -EAGAIN) {
		to->out_ready = false;
		return false;
	}
	if (n < 0) {
		fail(t, !s, (int)n);
		return false;
	}
	d->off += (size_t)n;
	t->rep.bytes[s] += (uint64_t)n;
	t->active_at = ctx_now_ns();
	if (d->off == d->len)
		d->off = d->len = 0;
	return true;
}

/* Read side s into its empty buffer.  False when the tunnel ended. */
static bool dir_fill(struct tunnel *t, int s)
{
	struct tunnel_dir *d = &t->dir[s];
	struct tunnel_sock *from = &t->sock[s];
	ssize_t n;

	if (!d->buf)
		d->buf = buf_get(t);
	if (!d->buf) {
		fail(t, s, -ENOMEM);
		return false;
	}
	n = sock_recv(from, d->buf, TUNNEL_BUF_SIZE);
	if (n == -EAGAIN) {
		from->in_ready = false;
	} else if (n == 0) {
		d->eof = true;
		t->rep.eof_at[s] = ctx_now_ns();
	} else if (n < 0) {
		fail(t, s, (int)n);
		return false;
	} else {
		d->len = (size_t)n;
		t->active_at = ctx_now_ns();
	}
	return true;
}

/* Side s's EOF, once the bytes it sent before it have gone on.  Either
 * side closing ends the tunnel (SPEC §10, as nginx does): the other side
 * gets its FIN at once and s's own connection is shut too; what was on
 * its way to s is dropped, since s is gone. */
static void dir_close(struct tunnel *t, int s)
{
	buf_put(t, &t->dir[s]);
	sock_shutdown_write(&t->sock[!s]);
	/* Stamped once the FIN has left, as the request path does. */
	t->rep.closed_at[!s] = ctx_now_ns();
	sock_shutdown_write(&t->sock[s]);
	t->rep.closed_at[s] = t->rep.closed_at[!s];
	finish(t, TUNNEL_END_CLOSED, s, 0,
	       s == TUNNEL_CLIENT ? CTX_CAUSE_CLIENT_DISCONNECT
				  : CTX_CAUSE_COMPLETED);
}

/* Move bytes from side s to the other until one of them must wait.  One
 * buffer per direction, and nothing is read while it holds bytes: that
 * is the backpressure. */
static void dir_pump(struct tunnel *t, int s)
{
	struct tunnel_dir *d = &t->dir[s];

	while (!t->ended) {
		if (d->off < d->len) {
			if (!dir_flush(t, s))
				return;
		} else if (d->eof) {
			dir_close(t, s);
			return;
		} else if (!t->sock[s].in_ready) {
			buf_put(t, d);
			return;
		} else if (!dir_fill(t, s)) {
			return;
		}
	}
}

static void sock_events(struct tunnel *t, int s, uint32_t events)
{
	struct tunnel_sock *k = &t->sock[s];

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		k->in_ready = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		k->out_ready = true;
	/* What waits for this side first: it frees the other's buffer. */
	dir_pump(t, !s);
	dir_pump(t, s);
}

static void on_io(struct loop_io *lio, uint32_t events)
{
	struct tunnel_sock *k = lio->data;
	struct tunnel *t = k->t;

	sock_events(t, (int)(k - t->sock), events);
}

/* ---- timers and cancellation ---- */

static void on_cancel(ctx_t *ctx, void *arg)
{
	cancel(arg, ctx_cause(ctx));
}

static void on_timer(ctx_t *timer, void *arg);

/* The next check: the lifetime's end or when silence would have lasted
 * idle_ns.  Activity does not move the timer (no system call or
 * allocation per read); a check that comes early sets the next one. */
static int timer_arm(struct tunnel *t)
{
	int64_t at = CTX_NO_DEADLINE;

	if (t->idle_ns)
		at = t->active_at + t->idle_ns;
	if (t->max_at && t->max_at < at)
		at = t->max_at;
	if (at == CTX_NO_DEADLINE)
		return 0;
	return ctx_timer_start(&t->timer, &t->timer_w, t->ctx, at,
			       CTX_CAUSE_IDLE_TIMEOUT, on_timer, t);
}

static void on_timer(ctx_t *timer, void *arg)
{
	struct tunnel *t = arg;
	int64_t now = ctx_now_ns();

	(void)timer;
	/* A cancelled parent reaches on_cancel as well. */
	if (t->ended || ctx_is_cancelled(t->ctx))
		return;
	if (t->max_at && now >= t->max_at)
		cancel(t, CTX_CAUSE_DEADLINE_EXCEEDED);
	else if (t->idle_ns && now - t->active_at >= t->idle_ns)
		cancel(t, CTX_CAUSE_IDLE_TIMEOUT);
	else if (timer_arm(t) < 0)
		finish(t, TUNNEL_END_ERROR, -1, -ENOMEM, CTX_CAUSE_NONE);
}

/* ---- the API ---- */

static void sock_init(struct tunnel *t, int s, const struct tunnel_end *e)
{
	struct tunnel_sock *k = &t->sock[s];

	k->fd = e->fd;
	k->reg = e->reg;
	k->ops = e->ops;
	k->io = e->io;
	k->lio.fd = e->fd;
	k->lio.fn = on_io;
	k->lio.data = k;
	k->t = t;
}

static int dir_preload(struct tunnel *t, int s, const struct tunnel_end *e)
{
	struct tunnel_dir *d = &t->dir[s];

	if (!e->extra_len)
		return 0;
	d->buf = buf_get(t);
	if (!d->buf)
		return -ENOMEM;
	memcpy(d->buf, e->extra, e->extra_len);
	d->len = e->extra_len;
	return 0;
}

struct tunnel *tunnel_new(struct loop *loop, ctx_t *ctx,
			  const struct tunnel_conf *conf,
			  const struct tunnel_end *client,
			  const struct tunnel_end *upstream,
			  const struct tunnel_owner *owner)
{
	struct tunnel *t;

	if (!loop || !ctx || !owner->done || !owner->root ||
	    client->extra_len > TUNNEL_BUF_SIZE ||
	    upstream->extra_len > TUNNEL_BUF_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->loop = loop;
	t->ctx = ctx_ref(ctx);
	t->owner = *owner;
	t->idle_ns = conf->idle_ms > 0 ? conf->idle_ms * 1000000 : 0;
	t->rep.first = -1;
	t->rep.started_at = t->active_at = ctx_now_ns();
	if (conf->max_ms > 0)
		t->max_at = t->rep.started_at + conf->max_ms * 1000000;
	sock_init(t, TUNNEL_CLIENT, client);
	sock_init(t, TUNNEL_UPSTREAM, upstream);
	if (dir_preload(t, TUNNEL_CLIENT, client) < 0 ||
	    dir_preload(t, TUNNEL_UPSTREAM, upstream) < 0) {
		tunnel_free(t);
		errno = ENOMEM;
		return NULL;
	}
	return t;
}

static int sock_register(struct tunnel *t, struct tunnel_sock *k)
{
	int rc = 0;

	if (k->reg == TUNNEL_REG_ADD)
		rc = loop_add(t->loop, &k->lio, TUNNEL_EVENTS);
	else if (k->reg == TUNNEL_REG_MOD)
		rc = loop_mod(t->loop, &k->lio, TUNNEL_EVENTS);
	else
		return 0;
	if (rc == 0)
		k->registered = true;
	return rc;
}

int tunnel_start(struct tunnel *t)
{
	int rc, s;

	ASSERT(!t->started);
	rc = sock_register(t, &t->sock[TUNNEL_CLIENT]);
	if (rc < 0)
		return rc;
	rc = sock_register(t, &t->sock[TUNNEL_UPSTREAM]);
	if (rc < 0) {
		sock_unregister(t, &t->sock[TUNNEL_CLIENT]);
		return rc;
	}
	t->started = true;
	if (ctx_watch(t->ctx, &t->cancel_w, on_cancel, t) < 0) {
		cancel(t, ctx_cause(t->ctx));
		return 0;
	}
	if (timer_arm(t) < 0) {
		finish(t, TUNNEL_END_ERROR, -1, -ENOMEM, CTX_CAUSE_NONE);
		return 0;
	}
	/* Events may have come before the watches did: try everything. */
	for (s = 0; s < 2; s++)
		t->sock[s].in_ready = t->sock[s].out_ready = true;
	dir_pump(t, TUNNEL_CLIENT);
	dir_pump(t, TUNNEL_UPSTREAM);
	return 0;
}

void tunnel_ready(struct tunnel *t, enum tunnel_side side, uint32_t events)
{
	if (!t->started || t->ended)
		return;
	sock_events(t, side, events);
}

uint64_t tunnel_bytes(const struct tunnel *t, enum tunnel_side side)
{
	return t->rep.bytes[side];
}

void tunnel_free(struct tunnel *t)
{
	int s;

	if (!t)
		return;
	for (s = 0; s < 2; s++) {
		if (t->started && !t->ended)
			sock_abort(&t->sock[s]);
		sock_unregister(t, &t->sock[s]);
		buf_put(t, &t->dir[s]);
	}
	ctx_unwatch(&t->cancel_w);
	ctx_timer_stop(&t->timer, &t->timer_w);
	ctx_unref(t->ctx);
	free(t);
}
