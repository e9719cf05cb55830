/* fuzz_h1.c - libFuzzer target for src/h1.c: a response stream read whole and in pieces must give one outcome. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1.h"

/*
 * Input: byte 0 flags (bit 0: the request was HEAD; bit 1: decode the
 * pieces in place), bytes 1-2 the offset where the split read cuts, byte 3
 * the piece size of the small-pieces read; the rest is the bytes an
 * upstream sent.  Every read must agree on status, fields, payload, where
 * it stopped (and why) and how many bytes were left after the body.
 */

#define STREAM_MAX 8192
#define check(x) do { if (!(x)) __builtin_trap(); } while (0)

enum stage { ST_OK, ST_HEAD, ST_INIT, ST_BODY, ST_EOF, ST_SHORT };

struct outcome {
	enum stage stage;
	const char *why;
	int status, minor, framing, interim;
	bool keep_alive;
	size_t n, rest;
	size_t fields_len, payload_len;
	char fields[2 * STREAM_MAX];
	char payload[STREAM_MAX];
};

struct reader {
	bool head_request, in_place, in_body, over;
	size_t acc_len;
	struct h1_head head;
	struct h1_body body;
	struct outcome *o;
	char acc[STREAM_MAX];
};

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

static void stop(struct reader *r, enum stage st, const char *why)
{
	r->o->stage = st;
	r->o->why = why;
	r->over = true;
}

static void append(char *buf, size_t *len, size_t cap, const char *s,
		   size_t n)
{
	check(n <= cap - *len);
	memcpy(buf + *len, s, n);
	*len += n;
}

/* What a parsed head promises: tokens for names, trimmed values without
 * CR, LF or NUL. */
static void check_head(const struct h1_head *h)
{
	const struct headers_field *f;
	size_t i;

	check(h->status >= 100 && h->status <= 599);
	check(h->minor == 0 || h->minor == 1);
	check(h->n <= H1_FIELDS_MAX);
	for (i = 0; i < h->n; i++) {
		f = &h->f[i];
		check(headers_is_token(f->name, f->name_len));
		check(!memchr(f->value, '\r', f->value_len));
		check(!memchr(f->value, '\n', f->value_len));
		check(!memchr(f->value, '\0', f->value_len));
		check(!f->value_len || (!blank(f->value[0]) &&
					!blank(f->value[f->value_len - 1])));
	}
}

static void note_fields(struct outcome *o, const struct h1_head *h)
{
	size_t i;

	o->n = h->n;
	for (i = 0; i < h->n; i++) {
		append(o->fields, &o->fields_len, sizeof(o->fields),
		       h->f[i].name, h->f[i].name_len);
		append(o->fields, &o->fields_len, sizeof(o->fields), ":", 1);
		append(o->fields, &o->fields_len, sizeof(o->fields),
		       h->f[i].value, h->f[i].value_len);
		append(o->fields, &o->fields_len, sizeof(o->fields), "\n", 1);
	}
}

static void decode(struct reader *r, const char *p, size_t n)
{
	static char in[STREAM_MAX], sep[STREAM_MAX];
	char *out = r->in_place ? in : sep;
	const char *why = NULL;
	size_t out_len = SIZE_MAX, again;
	ssize_t got;

	memcpy(in, p, n);
	got = h1_body_decode(&r->body, in, n, out, &out_len, &why);
	check(out_len <= n);
	append(r->o->payload, &r->o->payload_len, sizeof(r->o->payload), out,
	       out_len);
	if (got < 0) {
		check(got == -EINVAL && why);
		stop(r, ST_BODY, why);
		return;
	}
	check((size_t)got <= n && out_len <= (size_t)got);
	check((size_t)got == n || r->body.done);
	if (!r->body.done)
		return;
	/* Done is done: nothing more is consumed. */
	check(h1_body_decode(&r->body, in, n, out, &again, &why) == 0 &&
	      again == 0);
	check(h1_body_eof(&r->body) == 0);
	r->o->rest += n - (size_t)got;
	r->over = true;
}

/* The head ended at e: true when it was interim and skipped. */
static bool take_head(struct reader *r, size_t e)
{
	const char *why = NULL;

	if (h1_parse_head(r->acc, e, &r->head, &why) < 0) {
		check(why);
		stop(r, ST_HEAD, why);
		return false;
	}
	check_head(&r->head);
	r->o->status = r->head.status;
	r->o->minor = r->head.minor;
	if (h1_is_interim(r->head.status)) {
		r->o->interim++;
		memmove(r->acc, r->acc + e, r->acc_len - e);
		r->acc_len -= e;
		return true;
	}
	note_fields(r->o, &r->head);
	if (h1_body_init(&r->body, &r->head, r->head_request, &why) < 0) {
		check(why);
		stop(r, ST_INIT, why);
		return false;
	}
	check(r->body.framing != H1_UNTIL_CLOSE || !r->head.keep_alive);
	r->o->keep_alive = r->head.keep_alive;
	r->o->framing = (int)r->body.framing;
	r->in_body = true;
	if (r->body.done) {
		r->over = true;
		r->o->rest += r->acc_len - e;
	} else {
		decode(r, r->acc + e, r->acc_len - e);
	}
	return false;
}

static void feed(struct reader *r, const char *p, size_t n)
{
	ssize_t e;

	if (r->over) {
		if (r->o->stage == ST_OK)
			r->o->rest += n;
		return;
	}
	if (r->in_body) {
		decode(r, p, n);
		return;
	}
	append(r->acc, &r->acc_len, sizeof(r->acc), p, n);
	do {
		e = h1_head_end(r->acc, r->acc_len);
		check(e <= (ssize_t)r->acc_len);
		if (e < 0) {
			check(e == -EMSGSIZE);
			stop(r, ST_HEAD, "head too large");
			return;
		}
	} while (e > 0 && take_head(r, (size_t)e));
}

static void finish(struct reader *r)
{
	if (r->over)
		return;
	if (!r->in_body) {
		stop(r, ST_SHORT, NULL);
		return;
	}
	if (h1_body_eof(&r->body) < 0) {
		check(!r->body.done);
		stop(r, ST_EOF, NULL);
		return;
	}
	check(r->body.done);
}

/* Read s[0, len) cut at `cut` (piece == 0) or in pieces of `piece`. */
static void run(const char *s, size_t len, size_t cut, size_t piece,
		bool head_request, bool in_place, struct outcome *o)
{
	static struct reader r;
	size_t at = 0, to;

	memset(&r, 0, sizeof(r));
	o->stage = ST_OK;
	o->why = NULL;
	o->status = o->minor = o->framing = o->interim = 0;
	o->keep_alive = false;
	o->n = o->rest = o->fields_len = o->payload_len = 0;
	r.head_request = head_request;
	r.in_place = in_place;
	r.o = o;
	while (at < len) {
		if (piece)
			to = len - at < piece ? len : at + piece;
		else
			to = at < cut ? cut : len;
		feed(&r, s + at, to - at);
		at = to;
	}
	finish(&r);
	check(o->payload_len <= len && o->rest <= len);
}

static void same(const struct outcome *a, const struct outcome *b)
{
	check(a->stage == b->stage && a->why == b->why);
	check(a->status == b->status && a->minor == b->minor);
	check(a->framing == b->framing && a->interim == b->interim);
	check(a->keep_alive == b->keep_alive && a->n == b->n);
	check(a->rest == b->rest);
	check(a->fields_len == b->fields_len &&
	      memcmp(a->fields, b->fields, a->fields_len) == 0);
	check(a->payload_len == b->payload_len &&
	      memcmp(a->payload, b->payload, a->payload_len) == 0);
}

/* The writer never writes past cap (the buffer is exactly cap bytes, so
 * ASan sees any overrun) and a fitting head is byte for byte. */
static void fuzz_writer(const char *s, size_t len, size_t cap)
{
	char *buf = malloc(cap ? cap : 1);
	struct h1_writer w = { buf, cap, 0, false };
	char line[H1_CHUNK_LINE_MAX];
	uint64_t n = 0, back = 0;
	size_t i, k;

	check(buf);
	h1_put_request_line(&w, "GET", s, len);
	h1_put_field_u64(&w, "Content-Length", 14, len);
	h1_put_end(&w);
	check(w.len <= cap);
	check(w.full == (len + 4 + 11 + 16 + (len > 9 ? len > 99 ? len > 999 ?
					4 : 3 : 2 : 1) + 4 > cap));
	if (!w.full)
		check(memcmp(buf + 4, s, len) == 0);
	free(buf);
	for (i = 0; i < 8 && i < len; i++)
		n = n << 8 | (uint8_t)s[i];
	k = h1_chunk_line(line, n);
	check(k <= H1_CHUNK_LINE_MAX && k >= 3);
	for (i = 0; line[i] != '\r'; i++)
		back = back << 4 | (uint64_t)(line[i] <= '9' ? line[i] - '0' :
					      line[i] - 'a' + 10);
	check(back == n && (n == 0 || line[0] != '0'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct outcome whole, part;
	const char *s = (const char *)data + 4;
	size_t len, cut, piece;
	bool head_request, in_place;

	if (size < 4 || size - 4 > STREAM_MAX)
		return 0;
	len = size - 4;
	head_request = data[0] & 1;
	in_place = data[0] & 2;
	cut = ((size_t)data[1] << 8 | data[2]) % (len + 1);
	piece = 1 + data[3] % 16;
	run(s, len, 0, 0, head_request, false, &whole);
	run(s, len, cut, 0, head_request, in_place, &part);
	same(&whole, &part);
	if (len <= 2048) {
		run(s, len, 0, piece, head_request, !in_place, &part);
		same(&whole, &part);
	}
	fuzz_writer(s, len, ((size_t)data[1] << 8 | data[2]) % (len + 48));
	return 0;
}
