/* upstream.c - upstream fetches over libcurl multi, driven by a worker loop. */
#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <curl/curl.h>

#include "headers.h"
#include "log.h"
#include "upstream.h"

#define FETCH_BUF_SIZE (64 * 1024)     /* each direction, allocated lazily */
#define FETCH_HEAD_MAX (64 * 1024)     /* response head bytes we keep */
#define FETCH_MAX_HEADERS 100
#define UPSTREAM_EASY_POOL 64          /* idle easy handles kept for reuse */
#define UPSTREAM_BUF_POOL 16           /* idle body buffers kept for reuse */

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
	CURL *easy;
	ctx_t *ctx;
	ctx_watch_t cancel_watch;
	ctx_t *phase;                    /* connect/header/idle watcher */
	ctx_watch_t phase_watch;
	int64_t idle_ns;
	int64_t last_read_ns;
	const struct fetch_ops *ops;
	void *arg;
	struct curl_slist *lines;        /* the head's lines, in this block */
	curl_socket_t sock;              /* the connection it runs on, if known */
	char *dl_value;                  /* after the deadline's name, or NULL */
	int64_t req_body_len;
	const struct config_timeouts *t;

	struct fbuf upbuf, downbuf;
	bool up_eof, send_paused, recv_paused, upload_blocked;

	int64_t started_ns, head_ns;
	int status;                      /* of the current response head */
	bool head_done;
	int64_t content_length;
	char *hdr;                       /* "name\0value\0" pairs */
	size_t hdr_len, hdr_cap, nhdr;
	char *conn_tokens;               /* the Connection value, if any */

	bool running, ended, ok, in_pending, remove_pending, sent_eof;
	int64_t closed_at;
	unsigned pending;
	struct fetch *pend_next;
};

/* One upstream socket in the worker's epoll set.  It stays registered from
 * the first time libcurl wants it until libcurl closes it (the closesocket
 * callback), also while it idles in libcurl's connection cache, so a reused
 * connection costs no epoll_ctl per request. */
struct csock {
	struct loop_io io;
	struct upstream *up;
	uint32_t events;                 /* what epoll watches now */
	bool active;                     /* libcurl wants events from it */
	bool ours;                       /* opened by upstream_on_open */
	bool added;                      /* in the epoll set */
};

struct upstream {
	struct loop *loop;
	CURLM *multi;
	int64_t timer_at;
	int in_curl;                     /* >0 while inside libcurl */
	struct fetch *pend_head, *pend_tail;
	int fins;                        /* FINs sent since the last dispatch */
	CURL *pool[UPSTREAM_EASY_POOL];
	int npool;
	char *bufs[UPSTREAM_BUF_POOL];   /* idle FETCH_BUF_SIZE buffers */
	int nbufs;
	struct csock **socks;            /* by descriptor */
	size_t nsocks;
};

/* Body buffers are kept per worker: a 64 KiB block is a large chunk for
 * malloc, which costs more than its size suggests on every request. */
static char *upstream_buf_get(struct upstream *up)
{
	if (up->nbufs)
		return up->bufs[--up->nbufs];
	return malloc(FETCH_BUF_SIZE);
}

static void upstream_buf_put(struct upstream *up, char *buf)
{
	if (!buf)
		return;
	if (up->nbufs < UPSTREAM_BUF_POOL)
		up->bufs[up->nbufs++] = buf;
	else
		free(buf);
}

static void fetch_notify(struct fetch *f, unsigned what)
{
	struct upstream *up = f->up;

	f->pending |= what;
	if (f->in_pending)
		return;
	f->in_pending = true;
	f->pend_next = NULL;
	if (up->pend_tail)
		up->pend_tail->pend_next = f;
	else
		up->pend_head = f;
	up->pend_tail = f;
}

static void fetch_unpend(struct fetch *f)
{
	struct upstream *up = f->up;
	struct fetch *prev = NULL, *p;

	if (!f->in_pending)
		return;
	for (p = up->pend_head; p && p != f; p = p->pend_next)
		prev = p;
	if (prev)
		prev->pend_next = f->pend_next;
	else
		up->pend_head = f->pend_next;
	if (up->pend_tail == f)
		up->pend_tail = prev;
	f->in_pending = false;
	f->pending = 0;
}

/* A fetch stopped from inside libcurl is removed here, once outside. */
static void fetch_remove_now(struct fetch *f)
{
	if (!f->remove_pending)
		return;
	f->remove_pending = false;
	curl_multi_remove_handle(f->up->multi, f->easy);
	if (!f->closed_at)
		f->closed_at = ctx_now_ns();
}

int upstream_dispatch(struct upstream *up)
{
	struct fetch *f;
	unsigned what;
	int n = 0;

	if (up->fins) {
		up->fins = 0;
		sched_yield();
	}
	while (up->pend_head) {
		f = up->pend_head;
		up->pend_head = f->pend_next;
		if (!up->pend_head)
			up->pend_tail = NULL;
		f->in_pending = false;
		what = f->pending;
		f->pending = 0;
		n++;
		fetch_remove_now(f);
		/* Each call may free f (and so unlink others): stop using f
		 * after the first call that could have. */
		if ((what & PEND_HEAD) && f->ops->on_head) {
			f->ops->on_head(f->arg);
			what &= ~(unsigned)PEND_HEAD;
			if (what)
				fetch_notify(f, what);
			continue;
		}
		if ((what & PEND_UPLOAD) && f->ops->on_upload_space) {
			what &= ~(unsigned)PEND_UPLOAD;
			if (what)
				fetch_notify(f, what);
			f->ops->on_upload_space(f->arg);
			continue;
		}
		if ((what & PEND_BODY) && f->ops->on_body) {
			what &= ~(unsigned)PEND_BODY;
			if (what)
				fetch_notify(f, what);
			f->ops->on_body(f->arg);
			continue;
		}
		if ((what & PEND_DONE) && f->ops->on_done)
			f->ops->on_done(f->arg);
	}
	return n;
}

/* ---- curl glue: sockets and timer ---- */

static void upstream_check_done(struct upstream *up);

static int csock_watch(struct csock *cs, uint32_t events)
{
	int rc;

	if (cs->added && cs->events == events)
		return 0;
	rc = cs->added ? loop_mod(cs->up->loop, &cs->io, events) :
		loop_add(cs->up->loop, &cs->io, events);
	if (rc == 0) {
		cs->added = true;
		cs->events = events;
	}
	return rc;
}

static void csock_drop(struct upstream *up, struct csock *cs)
{
	if (cs->added)
		loop_del(up->loop, &cs->io);
	up->socks[cs->io.fd] = NULL;
	free(cs);
}

static void csock_on_io(struct loop_io *io, uint32_t events)
{
	struct csock *cs = (struct csock *)io;
	struct upstream *up = cs->up;
	int mask = 0, running;

	if (!cs->active) {
		/* An idle cached connection spoke or closed: stop listening
		 * until libcurl wants it again (it checks it before reuse). */
		csock_watch(cs, 0);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
		mask |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		mask |= CURL_CSELECT_OUT;
	if (events & EPOLLERR)
		mask |= CURL_CSELECT_ERR;
	up->in_curl++;
	curl_multi_socket_action(up->multi, io->fd, mask, &running);
	up->in_curl--;
	upstream_check_done(up);
}

/* The table slot for s, growing the table as needed. */
static struct csock **csock_slot(struct upstream *up, curl_socket_t s)
{
	struct csock **t;
	size_t n;

	if ((size_t)s < up->nsocks)
		return &up->socks[s];
	n = up->nsocks ? up->nsocks : 64;
	while (n <= (size_t)s)
		n *= 2;
	t = realloc(up->socks, n * sizeof(*t));
	if (!t)
		return NULL;
	memset(t + up->nsocks, 0, (n - up->nsocks) * sizeof(*t));
	up->socks = t;
	up->nsocks = n;
	return &up->socks[s];
}

static struct csock *csock_new(struct upstream *up, curl_socket_t s, bool ours)
{
	struct csock **slot = csock_slot(up, s), *cs;

	if (!slot)
		return NULL;
	if (*slot)                       /* a stale entry: its file is gone */
		free(*slot);
	cs = calloc(1, sizeof(*cs));
	*slot = cs;
	if (!cs)
		return NULL;
	cs->io.fd = s;
	cs->io.fn = csock_on_io;
	cs->up = up;
	cs->ours = ours;
	return cs;
}

/* libcurl names the transfer with each socket it wants watched: that is
 * the connection fetch_stop() shuts down first.  The closing handle of a
 * REMOVE may be libcurl's own (private NULL). */
static void fetch_track_socket(CURL *easy, curl_socket_t s, int what)
{
	struct fetch *f = NULL;

	if (!easy || curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&f) !=
	    CURLE_OK || !f || !f->running)
		return;
	if (what != CURL_POLL_REMOVE)
		f->sock = s;
	else if (f->sock == s)
		f->sock = CURL_SOCKET_BAD;
}

static int upstream_on_socket(CURL *easy, curl_socket_t s, int what,
			      void *userp, void *socketp)
{
	struct upstream *up = userp;
	struct csock *cs = (size_t)s < up->nsocks ? up->socks[s] : NULL;
	uint32_t ev = 0;

	(void)socketp;
	fetch_track_socket(easy, s, what);
	if (what == CURL_POLL_REMOVE) {
		if (!cs)
			return 0;
		cs->active = false;
		if (!cs->ours)                  /* e.g. the resolver's */
			csock_drop(up, cs);
		else if (cs->events & EPOLLOUT) /* idle: always writable */
			csock_watch(cs, cs->events & ~(uint32_t)EPOLLOUT);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (!cs)
		cs = csock_new(up, s, false);
	if (!cs)
		return -1;
	cs->active = true;
	return csock_watch(cs, ev) < 0 ? -1 : 0;
}

/* libcurl opens a connection: a socket we will learn the close of. */
static curl_socket_t upstream_on_open(void *clientp, curlsocktype purpose,
				      struct curl_sockaddr *a)
{
	struct upstream *up = clientp;
	curl_socket_t s;

	(void)purpose;
	s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (s < 0)
		return CURL_SOCKET_BAD;
	if (!csock_new(up, s, true)) {
		close(s);
		return CURL_SOCKET_BAD;
	}
	return s;
}

/* libcurl closes a socket: forget it first (the descriptor number will be
 * reused).  Set on every easy handle with the upstream as its data, which
 * outlives every connection. */
static int upstream_on_close(void *clientp, curl_socket_t s)
{
	struct upstream *up = clientp;
	struct csock *cs = (size_t)s < up->nsocks ? up->socks[s] : NULL;

	if (cs)
		csock_drop(up, cs);
	return close(s);
}

static int upstream_on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
	struct upstream *up = userp;

	(void)multi;
	if (timeout_ms < 0)
		up->timer_at = CTX_NO_DEADLINE;
	else
		up->timer_at = ctx_now_ns() + (int64_t)timeout_ms * 1000000;
	return 0;
}

int upstream_fins(const struct upstream *up)
{
	return up->fins;
}

int64_t upstream_next_timer(const struct upstream *up)
{
	return up->timer_at;
}

void upstream_on_timer(struct upstream *up)
{
	int running;

	up->timer_at = CTX_NO_DEADLINE;
	up->in_curl++;
	curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	up->in_curl--;
	upstream_check_done(up);
}

struct upstream *upstream_new(struct loop *loop)
{
	struct upstream *up = calloc(1, sizeof(*up));

	if (!up)
		return NULL;
	up->loop = loop;
	up->timer_at = CTX_NO_DEADLINE;
	up->multi = curl_multi_init();
	if (!up->multi) {
		free(up);
		return NULL;
	}
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, upstream_on_socket);
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, upstream_on_timer_set);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, 256L);
	return up;
}

void upstream_free(struct upstream *up)
{
	int i;

	if (!up)
		return;
	for (i = 0; i < up->npool; i++)
		curl_easy_cleanup(up->pool[i]);
	for (i = 0; i < up->nbufs; i++)
		free(up->bufs[i]);
	curl_multi_cleanup(up->multi);   /* closes through upstream_on_close */
	for (i = 0; i < (int)up->nsocks; i++)
		free(up->socks[i]);
	free(up->socks);
	free(up);
}

/* ---- the fetch's life ---- */

/* The port of a socket address (and its IP as text when ip is given), or
 * -1 for another family. */
static int sockaddr_port_ip(const struct sockaddr_storage *a, char *ip)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)a;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;

	if (a->ss_family == AF_INET) {
		if (ip && !inet_ntop(AF_INET, &in->sin_addr, ip, INET6_ADDRSTRLEN))
			return -1;
		return ntohs(in->sin_port);
	}
	if (a->ss_family == AF_INET6) {
		if (ip && !inet_ntop(AF_INET6, &in6->sin6_addr, ip,
				     INET6_ADDRSTRLEN))
			return -1;
		return ntohs(in6->sin6_port);
	}
	return -1;
}

/* Whether f->sock is still this transfer's connection: the socket callback
 * does not always name the transfer that uses a socket, so the addresses
 * libcurl keeps for the transfer's connection decide (a TCP 4-tuple is
 * unique).  Before the connection is up they are unset: no match. */
static bool fetch_owns_socket(const struct fetch *f)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof(a);
	char ip[INET6_ADDRSTRLEN], *peer_ip = NULL;
	long local_port = 0, peer_port = 0;

	if (f->sock == CURL_SOCKET_BAD ||
	    curl_easy_getinfo(f->easy, CURLINFO_LOCAL_PORT, &local_port) ||
	    curl_easy_getinfo(f->easy, CURLINFO_PRIMARY_PORT, &peer_port) ||
	    curl_easy_getinfo(f->easy, CURLINFO_PRIMARY_IP, &peer_ip) ||
	    local_port <= 0 || !peer_ip)
		return false;
	if (getsockname(f->sock, (struct sockaddr *)&a, &len) < 0 ||
	    sockaddr_port_ip(&a, NULL) != local_port)
		return false;
	len = sizeof(a);
	if (getpeername(f->sock, (struct sockaddr *)&a, &len) < 0 ||
	    sockaddr_port_ip(&a, ip) != peer_port)
		return false;
	return strcmp(ip, peer_ip) == 0;
}

/* The backend must learn of a cancellation first: the FIN goes out at once
 * (shutdown), and libcurl's teardown, which takes longer than the FIN, runs
 * after the current batch of events, so a hundred hang-ups at once send
 * their hundred FINs before any teardown.  Inside libcurl the socket is
 * left alone: libcurl is using it. */
static void fetch_stop(struct fetch *f)
{
	if (!f->running)
		return;
	f->running = false;
	f->ended = true;
	f->ok = false;
	if (!f->up->in_curl && fetch_owns_socket(f)) {
		shutdown(f->sock, SHUT_RDWR);
		f->closed_at = ctx_now_ns();
		f->up->fins++;
		/* libcurl must not read the EOF this causes before the
		 * teardown: on a reused connection it would take it for a
		 * dead one and send the request again on a fresh one. */
		curl_easy_pause(f->easy, CURLPAUSE_ALL);
	}
	f->remove_pending = true;
	fetch_notify(f, PEND_DONE | PEND_BODY | PEND_UPLOAD);
}

static void fetch_on_cancel(ctx_t *ctx, void *arg)
{
	struct fetch *f = arg;

	(void)ctx;
	fetch_stop(f);
}

static ctx_cause_t fetch_map_error(const struct fetch *f, CURLcode rc)
{
	curl_off_t connect_us = 0;

	if (rc == CURLE_OPERATION_TIMEDOUT) {
		curl_easy_getinfo(f->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
		return connect_us ? CTX_CAUSE_DEADLINE_EXCEEDED :
			CTX_CAUSE_CONNECT_TIMEOUT;
	}
	return CTX_CAUSE_UPSTREAM_ERROR;
}

static void fetch_on_done(struct fetch *f, CURLcode rc)
{
	bool was_running = f->running;

	f->remove_pending = false;
	curl_multi_remove_handle(f->up->multi, f->easy);
	if (!was_running) {
		/* Stopped from inside a callback: curl has closed it now. */
		if (!f->closed_at)
			f->closed_at = ctx_now_ns();
		return;
	}
	f->running = false;
	f->ended = true;
	f->ok = rc == CURLE_OK && f->head_done;
	if (!f->ok) {
		if (rc != CURLE_OK)
			log_msg(LOG_DEBUG, "upstream transfer failed",
				"error=\"%s\"", curl_easy_strerror(rc));
		ctx_cancel(f->ctx, fetch_map_error(f, rc));
		f->closed_at = ctx_now_ns();
	}
	fetch_notify(f, PEND_DONE | PEND_BODY | PEND_UPLOAD);
}

static void upstream_check_done(struct upstream *up)
{
	struct fetch *f = NULL;
	CURLMsg *m;
	int left;

	for (;;) {
		m = curl_multi_info_read(up->multi, &left);
		if (!m)
			break;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
		if (f)
			fetch_on_done(f, m->data.result);
	}
}

/* ---- phase timeouts: connect, response head, body silence ---- */

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

/* ---- curl callbacks ---- */


static void fetch_set_deadline(struct fetch *f);

/* Connected (or reused): the request is about to go out. */
static int fetch_on_prereq(void *arg, char *conn_primary_ip,
			   char *conn_local_ip, int conn_primary_port,
			   int conn_local_port)
{
	struct fetch *f = arg;

	(void)conn_primary_ip;
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	if (!f->running)
		return CURL_PREREQFUNC_ABORT;
	fetch_set_deadline(f);
	fetch_phase_clear(f);
	if (f->req_body_len == -1 || f->req_body_len == 0)
		fetch_phase_arm(f, f->t->header_timeout_ms,
				CTX_CAUSE_HEADER_TIMEOUT);
	return CURL_PREREQFUNC_OK;
}

static void fbuf_compact(struct fbuf *b)
{
	if (b->off && b->len)
		memmove(b->data, b->data + b->off, b->len);
	b->off = 0;
}

static size_t fetch_on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct fetch *f = arg;
	size_t n = size * nitems;

	if (!f->running)
		return CURL_READFUNC_ABORT;
	if (f->upbuf.len == 0) {
		if (f->up_eof) {
			if (!f->sent_eof)
				fetch_phase_arm(f, f->t->header_timeout_ms,
						CTX_CAUSE_HEADER_TIMEOUT);
			f->sent_eof = true;
			return 0;
		}
		f->send_paused = true;
		return CURL_READFUNC_PAUSE;
	}
	if (n > f->upbuf.len)
		n = f->upbuf.len;
	memcpy(buf, f->upbuf.data + f->upbuf.off, n);
	f->upbuf.off += n;
	f->upbuf.len -= n;
	if (f->upbuf.len == 0)
		f->upbuf.off = 0;
	if (f->upload_blocked) {
		f->upload_blocked = false;
		fetch_notify(f, PEND_UPLOAD);
	}
	return n;
}

static void fetch_reset_head(struct fetch *f)
{
	f->hdr_len = 0;
	f->nhdr = 0;
	f->content_length = -1;
	free(f->conn_tokens);
	f->conn_tokens = NULL;
}

static bool fetch_add_header(struct fetch *f, const char *name, size_t nlen,
			     const char *value, size_t vlen)
{
	size_t need = nlen + vlen + 2;
	char *p;

	if (f->nhdr >= FETCH_MAX_HEADERS || f->hdr_len + need > FETCH_HEAD_MAX)
		return false;
	if (f->hdr_len + need > f->hdr_cap) {
		f->hdr_cap = f->hdr_cap ? f->hdr_cap * 2 : 1024;
		while (f->hdr_cap < f->hdr_len + need)
			f->hdr_cap *= 2;
		p = realloc(f->hdr, f->hdr_cap);
		if (!p)
			return false;
		f->hdr = p;
	}
	memcpy(f->hdr + f->hdr_len, name, nlen);
	f->hdr[f->hdr_len + nlen] = '\0';
	memcpy(f->hdr + f->hdr_len + nlen + 1, value, vlen);
	f->hdr[f->hdr_len + need - 1] = '\0';
	f->hdr_len += need;
	f->nhdr++;
	return true;
}

/* One header line of the response (status line, field, or the blank end). */
static bool fetch_header_line(struct fetch *f, const char *line, size_t len)
{
	const char *colon, *v;
	char *end;
	long st;

	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		fetch_reset_head(f);
		v = memchr(line, ' ', len);
		st = v ? strtol(v + 1, &end, 10) : 0;
		f->status = (st >= 100 && st <= 999) ? (int)st : 0;
		return f->status != 0;
	}
	if (len == 0)
		return true;
	if (line[0] == ' ' || line[0] == '\t')
		return false;              /* obs-fold: refuse the response */
	colon = memchr(line, ':', len);
	if (!colon || colon == line)
		return false;
	v = colon + 1;
	while (v < line + len && (*v == ' ' || *v == '\t'))
		v++;
	while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	return fetch_add_header(f, line, (size_t)(colon - line), v,
				(size_t)(line + len - v));
}

/* The stored head as fields, for the rules in headers.c. */
static size_t fetch_fields(const struct fetch *f, struct headers_field *out)
{
	const char *p = f->hdr;
	size_t i;

	for (i = 0; i < f->nhdr; i++) {
		out[i].name = p;
		out[i].name_len = strlen(p);
		p += out[i].name_len + 1;
		out[i].value = p;
		out[i].value_len = strlen(p);
		p += out[i].value_len + 1;
	}
	return f->nhdr;
}

/* Every Connection field's tokens, joined: they all name hop-by-hop fields. */
static bool fetch_join_connection(struct fetch *f,
				  const struct headers_field *fl, size_t n)
{
	size_t i, len = 0;
	char *p;

	for (i = 0; i < n; i++)
		if (strcasecmp(fl[i].name, "connection") == 0)
			len += fl[i].value_len + 1;
	if (!len)
		return true;
	p = malloc(len);
	if (!p)
		return false;
	f->conn_tokens = p;
	for (i = 0; i < n; i++) {
		if (strcasecmp(fl[i].name, "connection") != 0)
			continue;
		memcpy(p, fl[i].value, fl[i].value_len);
		p += fl[i].value_len;
		*p++ = ',';
	}
	p[-1] = '\0';
	return true;
}

/* The head is complete: learn the framing (refusing an ambiguous one) and
 * drop the hop-by-hop fields.  Returns false for a response to refuse. */
static bool fetch_finish_head(struct fetch *f)
{
	struct headers_field fl[FETCH_MAX_HEADERS] = { { 0 } };
	size_t i, n = fetch_fields(f, fl), w = 0, keep = 0;
	const char *why;
	long long len;

	if (headers_response_length(fl, n, &len, &why) < 0) {
		log_msg(LOG_WARN, "upstream response refused", "reason=\"%s\"",
			why);
		return false;
	}
	f->content_length = len;
	if (!fetch_join_connection(f, fl, n))
		return false;
	/* Compact the kept pairs in place; they only move backwards. */
	for (i = 0; i < n; i++) {
		size_t sz = fl[i].name_len + fl[i].value_len + 2;

		if (!headers_keep_response(fl[i].name, f->conn_tokens))
			continue;
		memmove(f->hdr + w, fl[i].name, sz);
		w += sz;
		keep++;
	}
	f->hdr_len = w;
	f->nhdr = keep;
	f->head_done = true;
	return true;
}

static size_t fetch_on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;
	size_t len = size * n;

	if (!f->running || f->head_done)
		return f->running ? len : 0;
	if (!fetch_header_line(f, buf, len)) {
		ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
		return 0;
	}
	if ((len == 2 && buf[0] == '\r') || (len == 1 && buf[0] == '\n')) {
		if (f->status < 200)
			return len;        /* 1xx: curl goes on to the real one */
		if (!fetch_finish_head(f)) {
			ctx_cancel(f->ctx, CTX_CAUSE_UPSTREAM_ERROR);
			return 0;
		}
		f->last_read_ns = ctx_now_ns();
		f->head_ns = f->last_read_ns;
		fetch_phase_arm(f, f->t->idle_timeout_ms, CTX_CAUSE_IDLE_TIMEOUT);
		fetch_notify(f, PEND_HEAD);
	}
	return len;
}

static size_t fetch_on_write(char *data, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;
	struct fbuf *b = &f->downbuf;
	size_t len = size * n;

	if (!f->running)
		return 0;
	if (!b->data) {
		b->data = upstream_buf_get(f->up);
		if (!b->data)
			return 0;
	}
	if (FETCH_BUF_SIZE - b->len < len) {
		f->recv_paused = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (b->off + b->len + len > FETCH_BUF_SIZE)
		fbuf_compact(b);
	memcpy(b->data + b->off + b->len, data, len);
	b->len += len;
	f->last_read_ns = ctx_now_ns();
	fetch_notify(f, PEND_BODY);
	return len;
}

/* ---- setting up a transfer ---- */

void fetch_head_init(struct fetch_head *h)
{
	h->len = 0;
	h->n = 0;
}

/* name, sep, then value (or nothing), NUL-ended. */
static int fetch_head_put(struct fetch_head *h, const char *name,
			  size_t name_len, const char *sep, size_t sep_len,
			  const char *value, size_t value_len)
{
	size_t need = name_len + sep_len + value_len + 1;
	char *p = h->buf + h->len;

	if (h->n == FETCH_HEAD_LINES || need > FETCH_HEAD_BYTES - h->len)
		return -ENOSPC;
	memcpy(p, name, name_len);
	memcpy(p + name_len, sep, sep_len);
	memcpy(p + name_len + sep_len, value, value_len);
	p[need - 1] = '\0';
	h->len += need;
	h->end[h->n++] = (uint32_t)h->len;
	return 0;
}

/* libcurl reads "Name: value"; "Name;" sends the field with an empty
 * value, while "Name:" alone only removes libcurl's own. */
int fetch_head_add(struct fetch_head *h, const char *name, size_t name_len,
		   const char *value, size_t value_len)
{
	if (!value_len)
		return fetch_head_put(h, name, name_len, ";", 1, "", 0);
	return fetch_head_put(h, name, name_len, ": ", 2, value, value_len);
}

int fetch_head_drop(struct fetch_head *h, const char *name, size_t name_len)
{
	return fetch_head_put(h, name, name_len, ":", 1, "", 0);
}

/* ": " and a budget in ms (at most 20 digits), NUL-ended. */
#define FETCH_DL_ROOM 24

/* The fetch and its head in one block: the curl_slist nodes, the lines,
 * then the deadline line, whose value is written when the request goes out.
 * Only the struct itself is cleared. */
static struct fetch *fetch_alloc(const struct fetch_request *rq)
{
	const struct fetch_head *h = rq->head;
	size_t dl = rq->deadline_header ? strlen(rq->deadline_header) : 0;
	size_t n = h->n + (dl ? 1 : 0), i, from = 0;
	struct curl_slist *node;
	struct fetch *f;
	char *text;

	f = malloc(sizeof(*f) + n * sizeof(*node) + h->len +
		   (dl ? dl + FETCH_DL_ROOM : 0));
	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	node = (struct curl_slist *)(f + 1);
	text = (char *)(node + n);
	memcpy(text, h->buf, h->len);
	for (i = 0; i < h->n; i++) {
		node[i].data = text + from;
		from = h->end[i];
	}
	if (dl) {
		node[h->n].data = text + h->len;
		memcpy(node[h->n].data, rq->deadline_header, dl);
		f->dl_value = node[h->n].data + dl;
		memcpy(f->dl_value, ":", 2);   /* sends nothing until prereq */
	}
	for (i = 0; i < n; i++)
		node[i].next = i + 1 < n ? &node[i + 1] : NULL;
	f->lines = n ? node : NULL;
	return f;
}

/* Rewrite the deadline line in place (curl reads the list when it builds
 * the request, after the prereq callback), so the budget is measured when
 * the request is sent, not when the fetch was queued.  "Name:" alone sends
 * nothing when there is no deadline. */
static void fetch_set_deadline(struct fetch *f)
{
	int64_t left;
	char digits[20], *p = f->dl_value;
	uint64_t ms;
	int n = 0;

	if (!p)
		return;
	left = ctx_remaining_ns(f->ctx, ctx_now_ns());
	*p++ = ':';
	if (left != CTX_NO_DEADLINE) {
		ms = left > 0 ? (uint64_t)left / 1000000 : 0;
		do {
			digits[n++] = (char)('0' + ms % 10);
			ms /= 10;
		} while (ms);
		*p++ = ' ';
		while (n)
			*p++ = digits[--n];
	}
	*p = '\0';
}

/* What every transfer shares is set once per easy handle; a pooled handle
 * is reused as it is (no curl_easy_reset), and fetch_setup() sets every
 * option that differs between transfers. */
static CURL *upstream_easy(struct upstream *up)
{
	CURL *e;

	if (up->npool)
		return up->pool[--up->npool];
	e = curl_easy_init();
	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fetch_on_header);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_on_write);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, fetch_on_read);
	/* As large as our own body buffer: 16 KiB writes cost 0.9-1.1x
	 * nginx's upload rate, 64 KiB 1.25-1.66x (bench/RESULTS.md).  libcurl
	 * allocates it only for uploads. */
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)FETCH_BUF_SIZE);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, upstream_on_open);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, up);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, upstream_on_close);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, up);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, fetch_on_prereq);
	return e;
}

static void upstream_easy_put(struct upstream *up, CURL *e)
{
	if (up->npool < UPSTREAM_EASY_POOL)
		up->pool[up->npool++] = e;
	else
		curl_easy_cleanup(e);
}

/* HTTPGET undoes a previous transfer's UPLOAD and NOBODY. */
static void fetch_set_method(struct fetch *f, const char *method)
{
	CURL *e = f->easy;
	bool body = f->req_body_len != -1;
	bool head = strcmp(method, "HEAD") == 0;
	bool plain_get = !body && strcmp(method, "GET") == 0;

	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
			 (curl_off_t)(f->req_body_len >= 0 ? f->req_body_len : -1));
	if (body)
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	if (head)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
			 head || plain_get ? NULL : method);
}

static void fetch_setup(struct fetch *f, const struct fetch_request *rq)
{
	CURL *e = f->easy;

	/* libcurl's URL parser percent-encodes bytes >= 0x80: it only learns
	 * where to connect, and the target goes out as the client sent it. */
	curl_easy_setopt(e, CURLOPT_URL, rq->origin);
	curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, rq->target);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)f);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->lines);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(e, CURLOPT_READDATA, f);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, f);
	/* curl times the connect itself (most fetches reuse a connection, so
	 * a watcher per fetch would be wasted); its timeout is mapped to the
	 * connect_timeout cause in fetch_map_error(). */
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)rq->timeouts->connect_timeout_ms);
	fetch_set_method(f, rq->method);
}

struct fetch *fetch_start(struct upstream *up, ctx_t *ctx,
			  const struct fetch_request *rq,
			  const struct fetch_ops *ops, void *arg)
{
	struct fetch *f = fetch_alloc(rq);

	if (!f)
		return NULL;
	f->up = up;
	f->ops = ops;
	f->arg = arg;
	f->req_body_len = rq->body_len;
	f->t = rq->timeouts;
	f->idle_ns = rq->timeouts->idle_timeout_ms * 1000000;
	f->content_length = -1;
	f->sock = CURL_SOCKET_BAD;
	f->started_ns = ctx_now_ns();
	f->ctx = ctx_ref(ctx);
	f->easy = upstream_easy(up);
	if (!f->easy)
		goto free_fetch;
	fetch_setup(f, rq);
	if (ctx_watch(ctx, &f->cancel_watch, fetch_on_cancel, f) < 0)
		goto put_easy;           /* born cancelled: nothing to start */
	if (curl_multi_add_handle(up->multi, f->easy) != CURLM_OK)
		goto unwatch;
	f->running = true;
	return f;

unwatch:
	ctx_unwatch(&f->cancel_watch);
put_easy:
	upstream_easy_put(up, f->easy);
free_fetch:
	ctx_unref(f->ctx);
	free(f);
	return NULL;
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	ctx_unwatch(&f->cancel_watch);
	fetch_phase_clear(f);
	if (f->running || f->remove_pending) {
		f->running = false;
		curl_multi_remove_handle(f->up->multi, f->easy);
	}
	fetch_unpend(f);
	upstream_easy_put(f->up, f->easy);
	ctx_unref(f->ctx);
	upstream_buf_put(f->up, f->upbuf.data);
	upstream_buf_put(f->up, f->downbuf.data);
	free(f->hdr);
	free(f->conn_tokens);
	free(f);
}

/* Apply the wanted pause state (outside curl callbacks only). */
static void fetch_apply_pause(struct fetch *f)
{
	int bits = (f->send_paused ? CURLPAUSE_SEND : 0) |
		   (f->recv_paused ? CURLPAUSE_RECV : 0);

	if (f->running)
		curl_easy_pause(f->easy, bits);
}

ssize_t fetch_send(struct fetch *f, const char *data, size_t len)
{
	struct fbuf *b = &f->upbuf;
	size_t room;

	if (f->ended)
		return -ECANCELED;
	if (!b->data) {
		b->data = upstream_buf_get(f->up);
		if (!b->data)
			return -ENOMEM;
	}
	fbuf_compact(b);
	room = FETCH_BUF_SIZE - b->len;
	if (len > room) {
		len = room;
		f->upload_blocked = true;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	if (len && f->send_paused) {
		f->send_paused = false;
		fetch_apply_pause(f);
	}
	return (ssize_t)len;
}

void fetch_send_eof(struct fetch *f)
{
	if (f->up_eof)
		return;
	f->up_eof = true;
	if (f->send_paused) {
		f->send_paused = false;
		fetch_apply_pause(f);
	}
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
	/* Resume upstream once a whole curl write (16 KiB) fits again. */
	if (f->recv_paused && FETCH_BUF_SIZE - b->len >= CURL_MAX_WRITE_SIZE) {
		f->recv_paused = false;
		f->last_read_ns = ctx_now_ns();
		fetch_apply_pause(f);
	}
	return (ssize_t)len;
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
