/* fetch_response.c - the response side of an upstream exchange: heads parsed, the body decoded in place and handed to the client side. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fetch_int.h"
#include "h1.h"
#include "headers.h"
#include "upstream.h"

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
		fetch_notify(f, FETCH_PEND_BODY);
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
	fetch_notify(f, FETCH_PEND_HEAD);
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
			fetch_buf_compact(b);
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

void fetch_read(struct fetch *f)
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

const char *fetch_peek(const struct fetch *f, size_t *len)
{
	*len = f->downbuf.len;
	return f->downbuf.data ? f->downbuf.data + f->downbuf.off : "";
}
