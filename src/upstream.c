/* upstream.c - connections to backends: libcurl connects (through the worker's curlmux), ctxproxy owns the socket (plain) or watches it (TLS); per-worker idle pools. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config_route.h"
#include "context.h"
#include "curlmux.h"
#include "invariant.h"
#include "log.h"
#include "loop.h"
#include "upstream.h"

/* The connections to one upstream server: its pool key (the origin, and
 * for https the TLS settings). */
struct upool {
	char *origin;
	struct uconn *idle, *idle_old;   /* most recently used first (LIFO) */
	int nidle;
	struct upool *next;
};

struct uconn {
	struct loop_io io;               /* the taken socket, edge-triggered */
	struct upstream *up;
	struct upool *pool;
	struct uconn_user *user;         /* NULL while idle */
	CURL *easy;                      /* while connecting; for TLS, for
					    the connection's life */
	struct curl_slist *connect_to;   /* TLS with tls_server_name */
	char *errbuf;                    /* TLS: libcurl's reason for a failure */
	int fd;
	bool in_loop, reused, hup, idle, tls;
	int64_t idle_until;
	char peer[UCONN_PEER_SIZE];      /* "IP:PORT" once connected */
	struct uconn *all_prev, *all_next;   /* every connection, for free */
	struct uconn *pprev, *pnext;     /* in pool->idle, while idle */
	struct uconn *lprev, *lnext;     /* in up's idle LRU, while idle */
};

#define UPSTREAM_BUF_POOL 16          /* idle body buffers kept for reuse */

struct upstream {
	struct loop *loop;
	char *bufs[UPSTREAM_BUF_POOL];   /* idle UPSTREAM_BUF_SIZE blocks */
	int nbufs;
	struct curlmux *mux;             /* libcurl, connecting */
	CURLSH *share;                   /* TLS sessions, made on first use */
	struct upstream_job *jobs, *jobs_tail;
	int fins;                        /* FINs sent since the last dispatch */
	struct upool *pools;
	struct uconn *all;
	struct uconn *lru_new, *lru_old; /* idle connections, newest first */
};

/* ---- body buffers ---- */

char *upstream_buf_get(struct upstream *up)
{
	if (up->nbufs)
		return up->bufs[--up->nbufs];
	return malloc(UPSTREAM_BUF_SIZE);
}

void upstream_buf_put(struct upstream *up, char *buf)
{
	if (!buf)
		return;
	if (up->nbufs < UPSTREAM_BUF_POOL)
		up->bufs[up->nbufs++] = buf;
	else
		free(buf);
}

/* ---- deferred jobs ---- */

void upstream_defer(struct upstream *up, struct upstream_job *job)
{
	if (job->queued)
		return;
	job->queued = true;
	job->next = NULL;
	if (up->jobs_tail)
		up->jobs_tail->next = job;
	else
		up->jobs = job;
	up->jobs_tail = job;
}

void upstream_undefer(struct upstream *up, struct upstream_job *job)
{
	struct upstream_job *prev = NULL, *p;

	if (!job->queued)
		return;
	for (p = up->jobs; p && p != job; p = p->next)
		prev = p;
	ASSERT(p == job);
	if (prev)
		prev->next = job->next;
	else
		up->jobs = job->next;
	if (up->jobs_tail == job)
		up->jobs_tail = prev;
	job->queued = false;
}

int upstream_fins(const struct upstream *up)
{
	return up->fins;
}

void upstream_fin(struct upstream *up)
{
	up->fins++;
}

int upstream_dispatch(struct upstream *up)
{
	struct upstream_job *job;
	int n = 0;

	if (up->fins) {
		up->fins = 0;
		sched_yield();
	}
	while (up->jobs) {
		job = up->jobs;
		up->jobs = job->next;
		if (!up->jobs)
			up->jobs_tail = NULL;
		job->queued = false;
		n++;
		job->fn(job);            /* may free job's owner */
	}
	return n;
}

/* ---- pools and idle connections ---- */

static struct upool *pool_find(const struct upstream *up, const char *origin)
{
	struct upool *p;

	for (p = up->pools; p; p = p->next)
		if (strcmp(p->origin, origin) == 0)
			return p;
	return NULL;
}

/* The pool of origin, made on first use. */
static struct upool *pool_of(struct upstream *up, const char *origin)
{
	struct upool *p = pool_find(up, origin);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->origin = strdup(origin);
	if (!p->origin) {
		free(p);
		return NULL;
	}
	p->next = up->pools;
	up->pools = p;
	return p;
}

static void idle_unlink(struct uconn *c)
{
	struct upstream *up = c->up;

	ASSERT(c->idle && !c->user && c->pool->nidle > 0);
	if (c->pprev)
		c->pprev->pnext = c->pnext;
	else
		c->pool->idle = c->pnext;
	if (c->pnext)
		c->pnext->pprev = c->pprev;
	else
		c->pool->idle_old = c->pprev;
	if (c->lprev)
		c->lprev->lnext = c->lnext;
	else
		up->lru_new = c->lnext;
	if (c->lnext)
		c->lnext->lprev = c->lprev;
	else
		up->lru_old = c->lprev;
	c->pprev = c->pnext = c->lprev = c->lnext = NULL;
	c->pool->nidle--;
	c->idle = false;
}

static void idle_push(struct uconn *c, int64_t until)
{
	struct upstream *up = c->up;

	ASSERT(!c->idle);
	c->user = NULL;
	c->idle = true;
	c->idle_until = until;
	c->pnext = c->pool->idle;
	if (c->pnext)
		c->pnext->pprev = c;
	else
		c->pool->idle_old = c;
	c->pool->idle = c;
	c->lnext = up->lru_new;
	if (c->lnext)
		c->lnext->lprev = c;
	else
		up->lru_old = c;
	up->lru_new = c;
	c->pool->nidle++;
}

struct uconn *upstream_take_idle(struct upstream *up, const char *origin,
				 struct uconn_user *u)
{
	struct upool *p = pool_find(up, origin);
	struct uconn *c;

	if (!p || !p->idle)
		return NULL;
	c = p->idle;
	idle_unlink(c);
	c->user = u;
	c->reused = true;
	return c;
}

void uconn_release(struct uconn *c, bool reusable,
		   const struct upstream_keepalive *ka)
{
	struct uconn *old;

	if (!c)
		return;
	if (!reusable || c->fd < 0 || c->hup || !ka || ka->max <= 0) {
		uconn_close(c);
		return;
	}
	if (c->pool->nidle >= ka->max) {
		old = c->pool->idle_old;     /* as nginx: the least recently used goes */
		idle_unlink(old);
		uconn_close(old);
	}
	idle_push(c, ctx_now_ns() + ka->timeout_ns);
}

static void upstream_expire_idle(struct upstream *up, int64_t now)
{
	struct uconn *c;

	while (up->lru_old && up->lru_old->idle_until <= now) {
		c = up->lru_old;
		idle_unlink(c);
		uconn_close(c);
	}
}

/* ---- connections ---- */

/* Anything arriving on an idle connection (EOF, a reset, stray bytes)
 * ends it: a request must never meet it.  (A write edge is only the
 * acknowledgement of what was sent.)  Otherwise its user reads and
 * writes. */
static void uconn_on_io(struct loop_io *io, uint32_t events)
{
	struct uconn *c = io->data;

	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->hup = true;
	if (!c->user && !(events & ~(uint32_t)EPOLLOUT))
		return;
	if (!c->user) {
		idle_unlink(c);
		uconn_close(c);
		return;
	}
	c->user->ready(c->user, events);
}

static void uconn_link(struct upstream *up, struct uconn *c)
{
	c->all_next = up->all;
	if (up->all)
		up->all->all_prev = c;
	up->all = c;
}

static void uconn_unlink(struct uconn *c)
{
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		c->up->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
}

void uconn_close(struct uconn *c)
{
	if (!c)
		return;
	ASSERT(!c->idle);                /* idle ones are unlinked first */
	/* out of the loop before libcurl closes a TLS one's socket */
	if (c->in_loop)
		loop_del(c->up->loop, &c->io);
	if (c->easy) {
		/* closes its socket through the mux (for TLS, the removal
		 * does: CONNECT_ONLY) */
		curlmux_remove(c->up->mux, c->easy);
		curl_easy_cleanup(c->easy);
	} else if (c->fd >= 0) {
		close(c->fd);
	}
	curl_slist_free_all(c->connect_to);
	free(c->errbuf);
	uconn_unlink(c);
	free(c);
}

/* A TLS connection failed after its handshake: libcurl's reason, e.g.
 * the server refused it once it ended on our side (TLS 1.3: "alert
 * certificate required"). */
static void tls_log_failure(const struct uconn *c, const char *msg,
			    CURLcode rc)
{
	log_msg(LOG_WARN, msg, "origin=\"%.*s\" error=\"%s\"",
		(int)strcspn(c->pool->origin, "\n"), c->pool->origin,
		*c->errbuf ? c->errbuf : curl_easy_strerror(rc));
}

/* Through libcurl's TLS, one buffer at a time.  OpenSSL must be given
 * the same bytes at the same address again after CURLE_AGAIN: the caller
 * keeps them there (uconn_tls). */
static ssize_t tls_send(struct uconn *c, const struct iovec *iov, int n)
{
	CURLcode rc = CURLE_OK;
	size_t done = 0, k;
	int i;

	for (i = 0; i < n; i++) {
		k = 0;
		rc = curl_easy_send(c->easy, iov[i].iov_base, iov[i].iov_len, &k);
		done += k;
		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK && done)
			return (ssize_t)done;    /* the error comes again */
		if (rc != CURLE_OK) {
			tls_log_failure(c, "upstream TLS send failed", rc);
			return -EPIPE;
		}
		if (k < iov[i].iov_len)
			break;
	}
	if (!done && rc == CURLE_AGAIN)
		return -EAGAIN;
	return (ssize_t)done;
}

ssize_t uconn_send(struct uconn *c, const struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = n };
	ssize_t rc;

	if (c->tls)
		return tls_send(c, iov, n);
	do {
		rc = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return rc;
}

/* libcurl may hold decrypted bytes no new EPOLLIN announces: callers
 * read until -EAGAIN. */
static ssize_t tls_recv(struct uconn *c, void *buf, size_t len)
{
	size_t k = 0;
	CURLcode rc = curl_easy_recv(c->easy, buf, len, &k);

	if (rc == CURLE_AGAIN)
		return -EAGAIN;
	if (rc != CURLE_OK) {
		tls_log_failure(c, "upstream TLS read failed", rc);
		return -ECONNRESET;
	}
	return (ssize_t)k;
}

ssize_t uconn_recv(struct uconn *c, void *buf, size_t len)
{
	ssize_t rc;

	if (c->tls)
		return tls_recv(c, buf, len);
	do {
		rc = recv(c->fd, buf, len, MSG_DONTWAIT);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return rc;
}

void uconn_shutdown(struct uconn *c)
{
	if (c && c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

void uconn_shutdown_write(struct uconn *c)
{
	if (c && c->fd >= 0)
		shutdown(c->fd, SHUT_WR);
}

void uconn_set_user(struct uconn *c, struct uconn_user *u)
{
	ASSERT(c->user && !c->idle && u);
	c->user = u;
}

bool uconn_connected(const struct uconn *c)
{
	return c->fd >= 0;
}

bool uconn_reused(const struct uconn *c)
{
	return c->reused;
}

bool uconn_tls(const struct uconn *c)
{
	return c->tls;
}

/* ---- connecting: libcurl's part ---- */

static int map_connect_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	default:
		return -EIO;
	}
}

/* Where libcurl connected, for the access log: read once per
 * connection, never per request. */
static void uconn_note_peer(struct uconn *c)
{
	char *ip = NULL;
	long port = 0;

	if (curl_easy_getinfo(c->easy, CURLINFO_PRIMARY_IP, &ip) != CURLE_OK ||
	    !ip || !*ip ||
	    curl_easy_getinfo(c->easy, CURLINFO_PRIMARY_PORT, &port) != CURLE_OK)
		return;
	snprintf(c->peer, sizeof(c->peer), strchr(ip, ':') ? "[%s]:%ld" :
		 "%s:%ld", ip, port);
}

/* Connected over TLS: the TLS state is the handle's, so it stays in the
 * multi (removing it would close the connection) and bytes go through
 * curl_easy_send/recv; the socket is registered in the loop as a plain
 * one is, libcurl no longer asking for events on it. */
static int uconn_watch_tls(struct uconn *c, curl_socket_t s)
{
	curlmux_quiet(c->up->mux, s);
	c->errbuf[0] = '\0';            /* libcurl writes it for the connection's life */
	c->fd = s;
	c->io.fd = s;
	if (loop_add(c->up->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
		     EPOLLET) < 0)
		return -errno;
	c->in_loop = true;
	return 0;
}

/* Connected: the socket becomes ours, in the loop once, edge-triggered,
 * for the connection's whole life. */
static int uconn_take_socket(struct uconn *c)
{
	struct upstream *up = c->up;
	curl_socket_t s = CURL_SOCKET_BAD;

	if (curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK ||
	    s == CURL_SOCKET_BAD)
		return -EIO;
	uconn_note_peer(c);
	if (c->tls)
		return uconn_watch_tls(c, s);
	curlmux_take_over(up->mux, c->easy, s);
	c->easy = NULL;
	c->fd = s;
	c->io.fd = s;
	if (loop_add(up->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
		     EPOLLET) < 0)
		return -errno;
	c->in_loop = true;
	return 0;
}

static void uconn_connect_done(struct uconn *c, CURLcode rc)
{
	struct uconn_user *u = c->user;
	int err = rc == CURLE_OK ? uconn_take_socket(c) : map_connect_error(rc);

	if (err) {
		if (rc != CURLE_OK && c->tls)
			/* a certificate or handshake problem is a configuration
			 * problem: say it where an operator looks */
			log_msg(LOG_WARN, "upstream TLS connect failed",
				"origin=\"%.*s\" error=\"%s\"",
				(int)strcspn(c->pool->origin, "\n"),
				c->pool->origin,
				c->errbuf && *c->errbuf ? c->errbuf :
				curl_easy_strerror(rc));
		else if (rc != CURLE_OK)
			log_msg(LOG_DEBUG, "upstream connect failed",
				"error=\"%s\"", curl_easy_strerror(rc));
		uconn_close(c);
		c = NULL;
	}
	u->connected(u, c, err);
}

/* The mux's report: a connect ended. */
static void upstream_connect_ended(CURL *easy, CURLcode rc)
{
	struct uconn *c = NULL;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
	if (c)
		uconn_connect_done(c, rc);
}

static CURL *upstream_easy(struct uconn *c,
			   const char *origin, int64_t connect_timeout_ms)
{
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, origin);
	curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
	return e;
}

/* The worker's TLS session cache, shared by its handles (one thread: no
 * lock callbacks). */
static CURLSH *upstream_share(struct upstream *up)
{
	if (up->share)
		return up->share;
	up->share = curl_share_init();
	if (up->share &&
	    curl_share_setopt(up->share, CURLSHOPT_SHARE,
			      CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
		curl_share_cleanup(up->share);
		up->share = NULL;
	}
	return up->share;
}

/* "name:port:" for CURLOPT_CONNECT_TO: the URL names the server name
 * (SNI and the verified name) and the TCP connection goes to the
 * origin's host and port. */
static int tls_connect_to(struct uconn *c, const char *origin,
			  const char *name, char *url, size_t cap)
{
	const char *hostport = origin + strlen("https://");
	const char *colon = strrchr(hostport, ':');
	char line[512];
	int n;

	if (!colon)
		return -EINVAL;
	n = snprintf(line, sizeof(line), "%s%s:%s", name, colon, hostport);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	n = snprintf(url, cap, "https://%s%s/", name, colon);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	c->connect_to = curl_slist_append(NULL, line);
	return c->connect_to ? 0 : -ENOMEM;
}

/* The TLS options of route settings t on e (c's connect). */
static int upstream_easy_tls(struct upstream *up, struct uconn *c, CURL *e,
			     const char *origin,
			     const struct config_upstream_tls *t)
{
	char url[300];
	CURLSH *sh = upstream_share(up);

	c->errbuf = calloc(1, CURL_ERROR_SIZE);
	if (!sh || !c->errbuf)
		return -ENOMEM;
	if (t->server_name) {
		if (tls_connect_to(c, origin, t->server_name, url,
				   sizeof(url)) < 0)
			return -ENOMEM;
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->connect_to);
	}
	curl_easy_setopt(e, CURLOPT_SHARE, sh);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, t->verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, t->verify ? 2L : 0L);
	if (t->ca)
		curl_easy_setopt(e, CURLOPT_CAINFO, t->ca);
	if (t->client_cert) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, t->client_cert);
		curl_easy_setopt(e, CURLOPT_SSLKEY, t->client_key);
	}
	/* libcurl's idle-connection pruning must never pick one of ours:
	 * our pools decide how long a connection lives */
	curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, (long)INT32_MAX);
	return 0;
}

struct uconn *upstream_connect(struct upstream *up, const char *origin,
			       const char *pool_key,
			       const struct config_upstream_tls *tls,
			       int64_t connect_timeout_ms,
			       struct uconn_user *u)
{
	struct uconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->up = up;
	c->user = u;
	c->fd = -1;
	c->tls = tls != NULL;
	c->io.fn = uconn_on_io;
	c->io.data = c;
	c->pool = pool_of(up, pool_key);
	if (!c->pool)
		goto free_conn;
	c->easy = upstream_easy(c, origin, connect_timeout_ms);
	if (!c->easy)
		goto free_conn;
	if (tls && upstream_easy_tls(up, c, c->easy, origin, tls) < 0)
		goto cleanup_easy;
	if (curlmux_add(up->mux, c->easy) < 0)
		goto cleanup_easy;
	uconn_link(up, c);
	return c;

cleanup_easy:
	curl_easy_cleanup(c->easy);
free_conn:
	curl_slist_free_all(c->connect_to);
	free(c->errbuf);
	free(c);
	return NULL;
}

/* ---- the worker's side ---- */

int64_t upstream_next_timer(const struct upstream *up)
{
	int64_t at = curlmux_next_timer(up->mux);

	if (up->lru_old && up->lru_old->idle_until < at)
		at = up->lru_old->idle_until;
	return at;
}

void upstream_on_timer(struct upstream *up)
{
	int64_t now = ctx_now_ns();

	curlmux_on_timer(up->mux, now);
	upstream_expire_idle(up, now);
}

struct upstream *upstream_new(struct loop *loop)
{
	struct upstream *up = calloc(1, sizeof(*up));

	if (!up)
		return NULL;
	up->loop = loop;
	up->mux = curlmux_new(loop, upstream_connect_ended);
	if (!up->mux) {
		free(up);
		return NULL;
	}
	return up;
}

void upstream_free(struct upstream *up)
{
	struct upool *p;

	if (!up)
		return;
	while (up->lru_old)
		upstream_expire_idle(up, INT64_MAX);
	while (up->all)                  /* their users are gone already */
		uconn_close(up->all);
	curlmux_free(up->mux);
	curl_share_cleanup(up->share);   /* after every handle using it */
	while (up->nbufs)
		free(up->bufs[--up->nbufs]);
	while (up->pools) {
		p = up->pools;
		up->pools = p->next;
		free(p->origin);
		free(p);
	}
	free(up);
}

const char *uconn_peer(const struct uconn *c)
{
	return c->peer;
}
