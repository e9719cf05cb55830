/* fetch_response.c - an upstream response being read: heads parsed, the body decoded in place, the payload handed out; the fetch's life is fetch.c's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "fetch_response.h"
#include "h1.h"
#include "headers.h"
#include "upstream.h"

#define RESP_BUF_SIZE UPSTREAM_BUF_SIZE

void fetch_resp_init(struct fetch_resp *r, bool head_request, bool upgrade)
{
	memset(r, 0, sizeof(*r));
	r->head_request = head_request;
	r->upgrade = upgrade;
	r->content_length = -1;
}

void fetch_resp_free(struct fetch_resp *r, struct upstream *up)
{
	upstream_buf_put(up, r->buf.data);
	r->buf.data = NULL;
	free(r->hdr);
	r->hdr = NULL;
}

void fetch_buf_compact(struct fetch_buf *b)
{
	if (b->off && b->len)
		memmove(b->data, b->data + b->off, b->len);
	b->off = 0;
}

static int hdr_reserve(struct fetch_resp *r, size_t need)
{
	size_t cap = r->hdr_cap ? r->hdr_cap : 1024;
	char *p;

	if (r->hdr_len + need <= r->hdr_cap)
		return 0;
	while (cap < r->hdr_len + need)
		cap *= 2;
	p = realloc(r->hdr, cap);
	if (!p)
		return -ENOMEM;
	r->hdr = p;
	r->hdr_cap = cap;
	return 0;
}

/* Keep the fields the client may see, as "name\0value\0" pairs (MHD
 * takes C strings): not hop-by-hop, not named by the response's
 * Connection. */
static int resp_take_head(struct fetch_resp *r, const struct h1_head *h)
{
	const struct headers_field *fl;
	char *p;
	size_t i;

	for (i = 0; i < h->n; i++) {
		fl = &h->f[i];
		if (!headers_response_forwarded(fl, h->f, h->n))
			continue;
		if (hdr_reserve(r, fl->name_len + fl->value_len + 2) < 0)
			return -ENOMEM;
		p = r->hdr + r->hdr_len;
		memcpy(p, fl->name, fl->name_len);
		p[fl->name_len] = '\0';
		memcpy(p + fl->name_len + 1, fl->value, fl->value_len);
		p[fl->name_len + 1 + fl->value_len] = '\0';
		r->hdr_len += fl->name_len + fl->value_len + 2;
		r->nhdr++;
	}
	return 0;
}

/* Decode body bytes just read at p (the end of the payload), in place. */
static unsigned resp_decode(struct fetch_resp *r, char *p, size_t n,
			    const char **why)
{
	size_t out = 0;
	ssize_t used;

	used = h1_body_decode(&r->body, p, n, p, &out, why);
	if (used < 0)
		return FETCH_RESP_REFUSED;
	if ((size_t)used < n)
		r->keep_alive = false;       /* bytes after the response */
	r->buf.len += out;
	if (!out)
		return 0;
	r->last_read_ns = ctx_now_ns();
	return FETCH_RESP_BODY;
}

/* A 101 to an upgrade request: no body follows, the connection now
 * carries the protocol switched to, and what came after the head stays in
 * the buffer for the tunnel. */
static unsigned resp_upgraded(struct fetch_resp *r, struct h1_head *h,
			      size_t end, const char **why)
{
	struct fetch_buf *b = &r->buf;

	if (resp_take_head(r, h) < 0) {
		*why = "out of memory";
		return FETCH_RESP_REFUSED;
	}
	r->status = 101;
	r->keep_alive = false;
	r->head_done = r->upgraded = true;
	r->head_ns = r->last_read_ns = ctx_now_ns();
	memmove(b->data, b->data + end, b->len - end);
	b->off = 0;
	b->len -= end;
	return FETCH_RESP_HEAD | FETCH_RESP_UPGRADED;
}

/* The final head: what the client will see, and the body's framing. */
static unsigned resp_final_head(struct fetch_resp *r, struct h1_head *h,
				size_t end, const char **why)
{
	struct fetch_buf *b = &r->buf;
	size_t rest = b->len - end;

	if (h->status == 101 && !r->upgrade) {
		*why = "101 Switching Protocols to a request without Upgrade";
		return FETCH_RESP_REFUSED;
	}
	if (h->status == 101)
		return resp_upgraded(r, h, end, why);
	if (h1_body_init(&r->body, h, r->head_request, why) < 0)
		return FETCH_RESP_REFUSED;
	if (resp_take_head(r, h) < 0) {
		*why = "out of memory";
		return FETCH_RESP_REFUSED;
	}
	r->status = h->status;
	r->content_length = r->body.length;
	r->keep_alive = h->keep_alive;
	r->head_done = true;
	r->head_ns = r->last_read_ns = ctx_now_ns();
	memmove(b->data, b->data + end, rest);
	b->off = b->len = 0;
	return FETCH_RESP_HEAD | (rest ? resp_decode(r, b->data, rest, why) : 0);
}

/* Where the head in the buffer ends (0: not yet).  Only the new bytes are
 * scanned, with the two before them, since a head's end ("\n\n" or
 * "\n\r\n") may straddle reads: a head trickled a byte at a time costs
 * linear time, not quadratic. */
static ssize_t resp_head_end(struct fetch_resp *r)
{
	struct fetch_buf *b = &r->buf;
	size_t from = r->head_scanned > 2 ? r->head_scanned - 2 : 0;
	ssize_t end = h1_head_end(b->data + from, b->len - from);

	r->head_scanned = b->len;
	return end > 0 ? end + (ssize_t)from : end;
}

/* Heads in the buffer: interim ones (1xx) are skipped, the final one
 * taken.  A head that does not fit the buffer is refused. */
static unsigned resp_parse_heads(struct fetch_resp *r, const char **why)
{
	struct fetch_buf *b = &r->buf;
	struct h1_head h;
	ssize_t end;

	for (;;) {
		end = resp_head_end(r);
		if (end == 0 && b->len < RESP_BUF_SIZE)
			return 0;
		if (end <= 0) {
			*why = "response head too large";
			return FETCH_RESP_REFUSED;
		}
		if (h1_parse_head(b->data, (size_t)end, &h, why) < 0)
			return FETCH_RESP_REFUSED;
		if (!h1_is_interim(h.status))
			return resp_final_head(r, &h, (size_t)end, why);
		memmove(b->data, b->data + end, b->len - (size_t)end);
		b->len -= (size_t)end;
		r->head_scanned = 0;
	}
}

/* Until the head is in.  EOF or a reset before any byte may be a dead
 * kept-alive connection (FETCH_RESP_DIED); after some, a 502. */
static unsigned resp_read_head(struct fetch_resp *r, struct uconn *c,
			       const char **why)
{
	struct fetch_buf *b = &r->buf;
	unsigned got = 0;
	ssize_t n;

	while (!r->head_done && !(got & FETCH_RESP_END)) {
		n = uconn_recv(c, b->data + b->len, RESP_BUF_SIZE - b->len);
		if (n == -EAGAIN)
			break;
		if (n <= 0 && !r->got_bytes)
			return FETCH_RESP_DIED;
		if (n <= 0) {
			*why = "connection closed within the response head";
			return FETCH_RESP_REFUSED;
		}
		r->got_bytes = true;
		b->len += (size_t)n;
		got |= resp_parse_heads(r, why);
	}
	return got;
}

/* The body, into what the client has not taken yet: reading stops while
 * the buffer is full (the client reads slowly) and goes on when
 * fetch_resp_take made room. */
static unsigned resp_read_body(struct fetch_resp *r, struct uconn *c,
			       const char **why)
{
	struct fetch_buf *b = &r->buf;
	unsigned got = 0;
	ssize_t n;
	char *p;

	while (!r->body.done && !(got & FETCH_RESP_END)) {
		if (b->off + b->len == RESP_BUF_SIZE) {
			if (!b->off) {
				r->paused = true;
				return got;
			}
			fetch_buf_compact(b);
		}
		p = b->data + b->off + b->len;
		n = uconn_recv(c, p, RESP_BUF_SIZE - b->off - b->len);
		if (n == -EAGAIN)
			return got;
		if (n == 0 && h1_body_eof(&r->body) == 0)
			break;                     /* until close: done */
		if (n <= 0)
			return got | FETCH_RESP_CUT;
		got |= resp_decode(r, p, (size_t)n, why);
	}
	return (got & FETCH_RESP_END) ? got : got | FETCH_RESP_DONE;
}

unsigned fetch_resp_read(struct fetch_resp *r, struct uconn *c,
			 struct upstream *up, const char **why)
{
	unsigned got = 0;

	if (!r->buf.data) {
		r->buf.data = upstream_buf_get(up);
		if (!r->buf.data) {
			*why = "out of memory";
			return FETCH_RESP_REFUSED;
		}
	}
	if (!r->head_done)
		got = resp_read_head(r, c, why);
	if (r->head_done && !r->upgraded && !(got & FETCH_RESP_END))
		got |= resp_read_body(r, c, why);
	return got;
}

size_t fetch_resp_take(struct fetch_resp *r, char *buf, size_t len)
{
	struct fetch_buf *b = &r->buf;

	if (len > b->len)
		len = b->len;
	memcpy(buf, b->data + b->off, len);
	b->off += len;
	b->len -= len;
	if (b->len == 0)
		b->off = 0;
	return len;
}

void fetch_resp_header(const struct fetch_resp *r, size_t i,
		       const char **name, const char **value)
{
	const char *p = r->hdr;

	for (; i > 0; i--) {
		p += strlen(p) + 1;
		p += strlen(p) + 1;
	}
	*name = p;
	*value = p + strlen(p) + 1;
}
