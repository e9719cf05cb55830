/* fetch_int.h - what fetch.c and fetch_response.c share: one exchange's state; no other room includes it. */
#ifndef CTXPROXY_FETCH_INT_H
#define CTXPROXY_FETCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"
#include "fetch.h"
#include "h1.h"
#include "upstream.h"

#define FETCH_BUF_SIZE UPSTREAM_BUF_SIZE  /* each direction, taken lazily */
/* A short request head fits in the fetch (a browser's ~1 KiB gets a
 * block of its own); more would cost every held request its memory:
 * 1 KiB here measured 12.3 KiB per held long-poll, 512 bytes 11.8. */
#define FETCH_HEAD_INLINE 512
#define FETCH_RESUME_ROOM (16 * 1024)     /* read again once this is free */
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

/* Queue notifications for the owner (delivered from the loop). */
void fetch_notify(struct fetch *f, unsigned what);

/* Start the header or idle watcher (0 ms: none). */
void fetch_phase_arm(struct fetch *f, int64_t ms, ctx_cause_t cause);

/* The whole response is in: release the connection, tell the owner. */
void fetch_finish(struct fetch *f);

/* The response cannot be forwarded: 502 (cause upstream_error). */
void fetch_refuse(struct fetch *f, const char *why);

/* The connection died before any response byte: retry or fail. */
void fetch_conn_died(struct fetch *f);

/* Read what the connection holds (fetch_response.c). */
void fetch_read(struct fetch *f);

/* Move a buffer's bytes to its start. */
void fetch_buf_compact(struct fbuf *b);

#endif
