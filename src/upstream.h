/* upstream.h - connections to backends: libcurl connects, ctxproxy owns the socket (plain) or watches it (TLS); per-worker idle pools. */
#ifndef CTXPROXY_UPSTREAM_H
#define CTXPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct config_upstream_tls;
struct loop;
struct upstream;
struct uconn;

/*
 * Threading: an upstream, its connections and its jobs belong to one
 * worker thread.
 *
 * libcurl is only the connector: name resolution, the TCP connect and its
 * timeout (CURLOPT_CONNECT_ONLY).  Once connected, the socket is taken
 * over: it is registered in the worker's epoll set once, edge-triggered,
 * and stays there until it is closed, also while it idles in its pool, so
 * a reused connection costs no system call to check: an EOF, a reset or
 * stray bytes seen while idle close it at once.
 *
 * A TLS connection cannot be taken over: its easy handle stays in the
 * worker's multi for the connection's life and bytes go through
 * curl_easy_send/recv, but its socket is in the epoll set the same way.
 * The worker's handles share one TLS session cache (sessions resume).
 */

/* A deferred call, run by upstream_dispatch() from the loop: never from
 * inside libcurl or from inside the call that queued it.  Embedded in its
 * owner, which must upstream_undefer() it before freeing it. */
struct upstream_job {
	void (*fn)(struct upstream_job *job);
	struct upstream_job *next;
	bool queued;
};

/* What the user of a connection hears; embedded in the user. */
struct uconn_user {
	/* The connect ended: c is the connection (now the user's), or NULL
	 * with err -ETIMEDOUT (connect_timeout_ms passed) or another
	 * negative errno. */
	void (*connected)(struct uconn_user *u, struct uconn *c, int err);
	/* Epoll events on the user's connection (edge-triggered: read and
	 * write until EAGAIN). */
	void (*ready)(struct uconn_user *u, uint32_t events);
};

/* How long idle connections are kept, per worker and upstream server. */
struct upstream_keepalive {
	int max;                 /* idle connections kept; 0 = none */
	int64_t timeout_ns;      /* how long one may stay idle */
};

/* A worker's upstream side, driven by loop.  NULL on failure. */
struct upstream *upstream_new(struct loop *loop);

/* Close every connection and abort every connect.  upstream_free(NULL) is
 * a no-op. */
void upstream_free(struct upstream *up);

/* When upstream_on_timer() is due next (monotonic ns: libcurl's timer or
 * the first idle connection to expire), or CTX_NO_DEADLINE. */
int64_t upstream_next_timer(const struct upstream *up);
void upstream_on_timer(struct upstream *up);

/* A 64 KiB block for a body buffer, kept per worker for reuse (malloc
 * costs more than a block's size suggests on every request).  NULL on
 * ENOMEM.  upstream_buf_put(up, NULL) is a no-op. */
#define UPSTREAM_BUF_SIZE (64 * 1024)
char *upstream_buf_get(struct upstream *up);
void upstream_buf_put(struct upstream *up, char *buf);

/* Queue job (a no-op when it is queued already), or take it back. */
void upstream_defer(struct upstream *up, struct upstream_job *job);
void upstream_undefer(struct upstream *up, struct upstream_job *job);

/* Upstream FINs sent by cancellations since the last upstream_dispatch();
 * upstream_fin() counts one. */
int upstream_fins(const struct upstream *up);
void upstream_fin(struct upstream *up);

/* Run the queued jobs, after yielding the CPU once when FINs were sent (a
 * backend on this machine woken by them runs first).  Returns how many
 * ran. */
int upstream_dispatch(struct upstream *up);

/* An idle connection of pool_key (struct config_server's), now u's, or
 * NULL when the pool has none. */
struct uconn *upstream_take_idle(struct upstream *up, const char *pool_key,
				 struct uconn_user *u);

/* Start connecting to origin ("http[s]://host:port") for u, the
 * connection to go to pool_key's pool; tls (NULL for http://; else read
 * during this call only) says how to verify and what client certificate
 * to show.  u->connected() reports the end (never from inside this call);
 * a failed handshake or verification is -EIO, its reason logged.  Returns
 * the connection being made (abort it with uconn_close) or NULL on
 * failure. */
struct uconn *upstream_connect(struct upstream *up, const char *origin,
			       const char *pool_key,
			       const struct config_upstream_tls *tls,
			       int64_t connect_timeout_ms,
			       struct uconn_user *u);

/* Send what iov holds, as much as the socket takes.  Returns the bytes
 * sent, -EAGAIN (wait for ready() with EPOLLOUT), or another -errno (the
 * connection is dead).  After -EAGAIN on a TLS connection (uconn_tls),
 * the unsent bytes must be offered again at the same address. */
ssize_t uconn_send(struct uconn *c, const struct iovec *iov, int n);

/* Read up to len bytes.  Returns the count, 0 at EOF, -EAGAIN, or another
 * -errno.  Read until -EAGAIN before waiting for ready(): a TLS connection
 * may hold bytes already read from the socket. */
ssize_t uconn_recv(struct uconn *c, void *buf, size_t len);

/* Send the FIN now (shutdown both ways): the backend learns at once. */
void uconn_shutdown(struct uconn *c);

/* Send the FIN, keep reading (a tunnel's end closing; for TLS the
 * close_notify is not sent: the TCP FIN is what the backend sees). */
void uconn_shutdown_write(struct uconn *c);

/* Hand a connected connection to another user (its events go to u from
 * now on): an upgraded connection leaving its fetch for a tunnel. */
void uconn_set_user(struct uconn *c, struct uconn_user *u);

/* The user is done with c: keep it idle in its pool when reusable and the
 * pool has room under ka (it is then closed when it idles longer than ka's
 * timeout, or when anything arrives on it), else close it.  An unfinished
 * connect is aborted.  uconn_release(NULL, ...) is a no-op. */
void uconn_release(struct uconn *c, bool reusable,
		   const struct upstream_keepalive *ka);

/* Close c (or abort its connect) now.  uconn_close(NULL) is a no-op. */
void uconn_close(struct uconn *c);

/* Whether c is connected (taken over), not still connecting. */
bool uconn_connected(const struct uconn *c);

/* The address c is connected to, "IP:PORT" ("[v6]:PORT"), or "" while
 * it connects: a buffer of UCONN_PEER_SIZE bytes that lives as long as c. */
#define UCONN_PEER_SIZE 48
const char *uconn_peer(const struct uconn *c);

/* Whether c came from the pool (it served a request before). */
bool uconn_reused(const struct uconn *c);

/* Whether c is a TLS connection. */
bool uconn_tls(const struct uconn *c);

#endif
