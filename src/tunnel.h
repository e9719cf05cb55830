/* tunnel.h - a bidirectional byte relay between two non-blocking stream sockets in a worker's loop (an upgraded connection). */
#ifndef CTXPROXY_TUNNEL_H
#define CTXPROXY_TUNNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "context.h"

struct loop;
struct tunnel;

/*
 * Threading: a tunnel belongs to the thread of its loop and of its
 * contexts' tree.  Not wired into the daemon yet (issue 13).
 *
 * Memory: at most one TUNNEL_BUF_SIZE buffer per direction, taken when a
 * side has bytes to read and given back as soon as it is drained, so an
 * idle tunnel holds no buffer: it costs its struct (456 bytes on x86-64)
 * and, when idle_ms or max_ms is set, one timer context (136 bytes) and
 * its slot in the root's deadline heap.  Reading a side stops while its
 * buffer still holds bytes the other side has not taken (backpressure).
 *
 * The tunnel never close()s a socket: the owner does, after the report
 * (or after tunnel_free).  "Closed" below means shut down: the FIN (or,
 * with pending bytes, the reset) has left.
 */

#define TUNNEL_BUF_SIZE (64 * 1024)

enum tunnel_side { TUNNEL_CLIENT = 0, TUNNEL_UPSTREAM = 1 };

/* How the tunnel watches an end's fd in the loop (edge-triggered). */
enum tunnel_reg {
	TUNNEL_REG_ADD = 0,  /* not in the loop yet: loop_add, loop_del at the end */
	/* Already in the loop under another loop_io (the front's hang-up
	 * watch): loop_mod takes it over, loop_del at the end, so the old
	 * watch's later loop_del gets -ENOENT (DESIGN.md, Upgrade). */
	TUNNEL_REG_MOD,
	/* The owner keeps the registration (an upstream connection watched by
	 * upstream.c) and forwards its events with tunnel_ready(). */
	TUNNEL_REG_EXTERNAL,
};

/* An end's I/O.  All may be NULL: the defaults act on the end's fd with
 * recv(2), send(2) with MSG_NOSIGNAL, shutdown(SHUT_WR) and
 * shutdown(SHUT_RDWR).  recv returns the count, 0 at EOF, -EAGAIN or
 * another -errno; send the count, -EAGAIN or -errno (after -EAGAIN the
 * same bytes are offered again at the same address, as a TLS connection
 * needs); shutdown_write sends the FIN once everything is sent; abort
 * closes both ways at once (uconn_shutdown for an upstream connection). */
struct tunnel_end_ops {
	ssize_t (*recv)(void *io, void *buf, size_t len);
	ssize_t (*send)(void *io, const void *buf, size_t len);
	void (*shutdown_write)(void *io);
	void (*abort)(void *io);
};

/* One side.  Read during tunnel_new only (extra is copied). */
struct tunnel_end {
	int fd;                          /* non-blocking stream socket */
	enum tunnel_reg reg;
	const struct tunnel_end_ops *ops; /* NULL: all defaults */
	void *io;                        /* the ops' argument */
	/* Bytes already read from this side (libmicrohttpd's extra_in), sent
	 * to the other side before anything else; at most TUNNEL_BUF_SIZE. */
	const void *extra;
	size_t extra_len;
};

struct tunnel_conf {
	int64_t idle_ms;  /* silence both ways -> CTX_CAUSE_IDLE_TIMEOUT; 0 = off */
	int64_t max_ms;   /* lifetime -> CTX_CAUSE_DEADLINE_EXCEEDED; 0 = off */
};

enum tunnel_end_why {
	TUNNEL_END_CLOSED,    /* a side's EOF (or half-close): both shut */
	TUNNEL_END_ERROR,     /* a side reset or failed: both aborted */
	TUNNEL_END_CANCELLED, /* the context (or a timeout): both aborted */
};

/* What the owner hears once, when the tunnel has ended. */
struct tunnel_report {
	enum tunnel_end_why why;
	/* CLOSED: the side whose EOF ended it; ERROR: the side that
	 * failed; CANCELLED: -1. */
	int first;
	int err;             /* ERROR: the -errno; else 0 */
	/* CANCELLED: the context's cause; else CLIENT_DISCONNECT when the
	 * client ended first or failed, COMPLETED when the upstream ended
	 * first, UPSTREAM_ERROR when it failed (SPEC §10's causes). */
	ctx_cause_t cause;
	uint64_t bytes[2];   /* bytes[s]: read from side s and sent on */
	int64_t eof_at[2];   /* monotonic ns side s's EOF or error was seen, or 0 */
	int64_t closed_at[2]; /* monotonic ns side s was shut down, or 0 */
	int64_t started_at, ended_at;
	/* CANCELLED: when the cancel came (the context's own time, or when
	 * the idle or lifetime timeout fired); else 0. */
	int64_t cancelled_at;
};

/* The worker's parts the tunnel uses, and who hears the report. */
struct tunnel_owner {
	/* The worker's background context, whose ctx_expire() runs after each
	 * loop turn: the report is deferred through a timer below it. */
	ctx_t *root;
	/* Called once from the loop or ctx_expire(), never from inside a
	 * tunnel_* call; the owner may tunnel_free(t) in it. */
	void (*done)(struct tunnel *t, const struct tunnel_report *r, void *arg);
	void *arg;
	/* Buffers of TUNNEL_BUF_SIZE bytes (upstream_buf_get/put); NULL:
	 * malloc and free. */
	char *(*buf_get)(void *arg);
	void (*buf_put)(void *arg, char *buf);
	void *buf_arg;
};

/* A tunnel between client and upstream under ctx (a reference is taken;
 * cancelling it aborts both sides and reports its cause).  Nothing is
 * registered nor read before tunnel_start.  conf, the ends and owner are
 * read during this call only (owner's fields are copied).  NULL on
 * failure: errno ENOMEM, or EINVAL (extra_len too big, done NULL). */
struct tunnel *tunnel_new(struct loop *loop, ctx_t *ctx,
			  const struct tunnel_conf *conf,
			  const struct tunnel_end *client,
			  const struct tunnel_end *upstream,
			  const struct tunnel_owner *owner);

/* Register the ends and start relaying (the extra bytes first).  Returns
 * 0, or -errno from the loop (nothing registered, no report: free it; a
 * TUNNEL_REG_MOD fd is then out of the loop altogether).
 * A tunnel that ends at once still reports later, from the loop. */
int tunnel_start(struct tunnel *t);

/* The owner forwards epoll events of a TUNNEL_REG_EXTERNAL end. */
void tunnel_ready(struct tunnel *t, enum tunnel_side side, uint32_t events);

/* Bytes relayed so far, bytes[s] read from side s (for a live gauge). */
uint64_t tunnel_bytes(const struct tunnel *t, enum tunnel_side side);

/* Free t: a live tunnel is aborted first (both sides shut down, no
 * report); a pending report is dropped.  The fds stay open (the owner's).
 * tunnel_free(NULL) is a no-op. */
void tunnel_free(struct tunnel *t);

#endif
