/* test_h1.c - unit tests for the HTTP/1.1 wire room of h1.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "h1.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, so NULs inside it count. */
#define IN(s) .in = (s), .len = sizeof(s) - 1
#define PL(s) .payload = (s), .payload_len = sizeof(s) - 1
#define STREAM_MAX 4096

/* Where a response stopped. */
enum stage {
	ST_OK,          /* head and body read (maybe with bytes after it) */
	ST_HEAD,        /* h1_head_end or h1_parse_head refused the head */
	ST_INIT,        /* h1_body_init refused the framing */
	ST_BODY,        /* h1_body_decode refused the body */
	ST_EOF,         /* EOF cut the body short */
	ST_SHORT,       /* EOF before the head ended */
};

/* Everything a response gave, compared whole between feeds. */
struct outcome {
	enum stage stage;
	const char *why;
	int status, minor, framing, interim;
	bool keep_alive;
	size_t n;
	char fields[STREAM_MAX];
	size_t fields_len;
	char payload[STREAM_MAX];
	size_t payload_len;
	size_t rest;                /* bytes left after the body was done */
};

/* A client reading one response: the head gathered in acc, the body
 * decoded piece by piece. */
struct reader {
	bool head_request, in_place, in_body, over;
	char acc[STREAM_MAX];
	size_t acc_len;
	struct h1_head head;
	struct h1_body body;
	struct outcome *o;
};

static void stop(struct reader *r, enum stage st, const char *why)
{
	r->o->stage = st;
	r->o->why = why;
	r->over = true;
}

static void note_fields(struct outcome *o, const struct h1_head *h)
{
	size_t i;
	int k;

	o->n = h->n;
	for (i = 0; i < h->n; i++) {
		k = snprintf(o->fields + o->fields_len,
			     sizeof(o->fields) - o->fields_len, "%.*s=[%.*s]\n",
			     (int)h->f[i].name_len, h->f[i].name,
			     (int)h->f[i].value_len, h->f[i].value);
		assert_true(k > 0 && (size_t)k < sizeof(o->fields) - o->fields_len);
		o->fields_len += (size_t)k;
	}
}

static void decode(struct reader *r, const char *p, size_t n)
{
	char in[STREAM_MAX], sep[STREAM_MAX];
	char *out = r->in_place ? in : sep;
	const char *why = NULL;
	size_t out_len = 12345;
	ssize_t got;

	assert_true(n <= sizeof(in));
	memcpy(in, p, n);
	got = h1_body_decode(&r->body, in, n, out, &out_len, &why);
	assert_true(out_len <= n);
	assert_true(r->o->payload_len + out_len <= sizeof(r->o->payload));
	memcpy(r->o->payload + r->o->payload_len, out, out_len);
	r->o->payload_len += out_len;
	if (got < 0) {
		assert_int_equal(got, -EINVAL);
		assert_non_null(why);
		stop(r, ST_BODY, why);
		return;
	}
	assert_true((size_t)got <= n);
	assert_true((size_t)got == n || r->body.done);
	if (r->body.done) {
		r->o->rest += n - (size_t)got;
		r->over = true;
	}
}

/* The head ended at e: parse it, skip it when interim, else start the
 * body on what followed it. */
static bool take_head(struct reader *r, size_t e)
{
	const char *why = NULL;

	if (h1_parse_head(r->acc, e, &r->head, &why) < 0) {
		stop(r, ST_HEAD, why);
		return false;
	}
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
		stop(r, ST_INIT, why);
		return false;
	}
	r->o->keep_alive = r->head.keep_alive;
	r->o->framing = (int)r->body.framing;
	r->in_body = true;
	if (r->body.done)
		r->over = true;
	r->o->rest += r->body.done ? r->acc_len - e : 0;
	if (!r->body.done)
		decode(r, r->acc + e, r->acc_len - e);
	return false;
}

static void feed(struct reader *r, const char *p, size_t n)
{
	ssize_t e;

	if (r->over) {               /* bytes after a body, or a refusal */
		if (r->o->stage == ST_OK)
			r->o->rest += n;
		return;
	}
	if (r->in_body) {
		decode(r, p, n);
		return;
	}
	assert_true(r->acc_len + n <= sizeof(r->acc));
	memcpy(r->acc + r->acc_len, p, n);
	r->acc_len += n;
	do {
		e = h1_head_end(r->acc, r->acc_len);
		if (e < 0) {
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
		assert_int_equal(h1_body_eof(&r->body), -EPIPE);
		stop(r, ST_EOF, NULL);
		return;
	}
	assert_true(r->body.done);
}

/* Read s[0, len) cut at cuts[0 .. ncuts) (ascending), or in pieces of
 * `piece` bytes when piece > 0. */
static void run(const char *s, size_t len, const size_t *cuts, size_t ncuts,
		size_t piece, bool head_request, bool in_place,
		struct outcome *o)
{
	static struct reader r;
	size_t at = 0, i, to;

	memset(&r, 0, sizeof(r));
	memset(o, 0, sizeof(*o));
	r.head_request = head_request;
	r.in_place = in_place;
	r.o = o;
	for (i = 0; at < len; i++) {
		if (piece)
			to = len - at < piece ? len : at + piece;
		else
			to = i < ncuts ? cuts[i] : len;
		feed(&r, s + at, to - at);
		at = to;
	}
	finish(&r);
}

static void assert_same(const struct outcome *a, const struct outcome *b,
			const char *what, const char *how)
{
	if (a->stage != b->stage || a->why != b->why ||
	    a->status != b->status || a->minor != b->minor ||
	    a->framing != b->framing || a->interim != b->interim ||
	    a->keep_alive != b->keep_alive || a->n != b->n ||
	    a->rest != b->rest || a->fields_len != b->fields_len ||
	    memcmp(a->fields, b->fields, a->fields_len) != 0 ||
	    a->payload_len != b->payload_len ||
	    memcmp(a->payload, b->payload, a->payload_len) != 0) {
		print_error("%s: %s differs from the whole read "
			    "(stage %d/%d, why %s/%s, payload %zu/%zu, rest %zu/%zu)\n",
			    what, how, a->stage, b->stage, a->why ? a->why : "-",
			    b->why ? b->why : "-", a->payload_len,
			    b->payload_len, a->rest, b->rest);
		fail();
	}
}

/* ---- whole responses, and every split of them ---- */

struct resp_case {
	const char *what;
	const char *in;
	size_t len;
	bool head_request;
	enum stage stage;
	const char *why;            /* a word of the reason, when refused */
	int status;
	bool keep_alive;
	enum h1_framing framing;
	const char *payload;
	size_t payload_len;
	size_t rest;
	size_t n;                   /* fields of the final head */
};

#define TE_CHUNKED "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
#define CHUNKED(body) IN(TE_CHUNKED body), .status = 200, \
	.keep_alive = true, .framing = H1_CHUNKED, .n = 1

static const struct resp_case resp_cases[] = {
	/* Content-Length */
	{ "length", IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH,
	  PL("hello"), .n = 1 },
	{ "length then pipelined bytes",
	  IN("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, PL("abc"),
	  .rest = 12, .n = 1 },
	{ "length 0", IN("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nxy"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, .rest = 2,
	  .n = 1 },
	{ "equal lengths in two fields",
	  IN("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabcd"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, PL("abc"),
	  .rest = 1, .n = 2 },
	{ "equal lengths in a list",
	  IN("HTTP/1.1 200 OK\r\nContent-Length: 3 ,3\r\n\r\nabc"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, PL("abc"),
	  .n = 1 },
	{ "length cut by EOF", IN("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
	  .stage = ST_EOF, .status = 200, .keep_alive = true,
	  .framing = H1_LENGTH, PL("abc"), .n = 1 },
	{ "Connection: close", IN("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\n"
				  "Content-Length: 1\r\n\r\nx"),
	  .status = 200, .framing = H1_LENGTH, PL("x"), .n = 2 },
	{ "1.0 keep-alive", IN("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
			       "Content-Length: 1\r\n\r\nx"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, PL("x"),
	  .n = 2 },
	{ "1.0 without keep-alive", IN("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"),
	  .status = 200, .framing = H1_LENGTH, PL("x"), .n = 1 },
	/* until close */
	{ "1.0 until close", IN("HTTP/1.0 200 OK\r\n\r\nbody until close"),
	  .status = 200, .framing = H1_UNTIL_CLOSE, PL("body until close") },
	{ "1.1 until close", IN("HTTP/1.1 200 OK\r\nX: y\r\n\r\nall\r\n0\r\n\r\n"),
	  .status = 200, .framing = H1_UNTIL_CLOSE, PL("all\r\n0\r\n\r\n"),
	  .n = 1 },
	{ "chunked, gzip: until close",
	  IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n"),
	  .status = 200, .framing = H1_UNTIL_CLOSE, PL("3\r\nabc\r\n"), .n = 1 },
	/* no body */
	{ "HEAD", IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnext"),
	  .head_request = true, .status = 200, .keep_alive = true,
	  .framing = H1_NO_BODY, .rest = 4, .n = 1 },
	{ "204", IN("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
	  .status = 204, .keep_alive = true, .framing = H1_NO_BODY, .n = 1 },
	{ "304", IN("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\nHTTP"),
	  .status = 304, .keep_alive = true, .framing = H1_NO_BODY, .rest = 4,
	  .n = 1 },
	{ "101", IN("HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n\x81\x05"),
	  .status = 101, .keep_alive = true, .framing = H1_NO_BODY, .rest = 2,
	  .n = 1 },
	{ "100 then 200", IN("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
			     "Content-Length: 2\r\n\r\nok"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, PL("ok"),
	  .n = 1 },
	{ "103 with fields then chunked", IN("HTTP/1.1 103 Early Hints\r\n"
	  "Link: </a.css>; rel=preload\r\n\r\n" TE_CHUNKED "2\r\nok\r\n0\r\n\r\n"),
	  .status = 200, .keep_alive = true, .framing = H1_CHUNKED, PL("ok"),
	  .n = 1 },
	/* head syntax that is fine */
	{ "no reason", IN("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, .n = 1 },
	{ "empty reason", IN("HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"),
	  .status = 599, .keep_alive = true, .framing = H1_LENGTH, .n = 1 },
	{ "reason with spaces, HTAB, obs-text",
	  IN("HTTP/1.1 100 \xc3\xa9t\xe9 ok \t it\r\n\r\nHTTP/1.0 200 a  b\r\n\r\n"),
	  .status = 200, .framing = H1_UNTIL_CLOSE },
	{ "bare LF line ends", IN("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"
				  "5\nhello\n0\nT: x\n\n"),
	  .status = 200, .keep_alive = true, .framing = H1_CHUNKED,
	  PL("hello"), .n = 1 },
	{ "mixed line ends", IN("HTTP/1.1 200 OK\r\nContent-Length: 1\n\r\nx"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, PL("x"),
	  .n = 1 },
	{ "OWS and empty values", IN("HTTP/1.1 200 OK\r\nA: \t v a l \t \r\nB:\r\n"
				     "C:   \r\nD:x\r\nContent-Length:0\r\n\r\n"),
	  .status = 200, .keep_alive = true, .framing = H1_LENGTH, .n = 5 },
	/* chunked */
	{ "one chunk", CHUNKED("5\r\nhello\r\n0\r\n\r\n"), PL("hello") },
	{ "hex both cases", CHUNKED("a\r\n0123456789\r\nA\r\nabcdefghij\r\n"
		"1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n"),
	  PL("0123456789abcdefghij0123456789012345678901234567890") },
	{ "leading zeros", CHUNKED("0005\r\nhello\r\n000\r\n\r\n"), PL("hello") },
	{ "extensions", CHUNKED("5;name=value\r\nhello\r\n"
		"3 ; a = \"x;y\\\"z\\\\\" ;b ;c=d\r\nabc\r\n2;q=\"\"\r\nde\r\n"
		"0;last\r\n\r\n"), PL("helloabcde") },
	{ "trailers, pipelined bytes after", CHUNKED("2\r\nhi\r\n0\r\nX-Sum: abc\r\n"
		"X-E:\r\nX-T: \t\x80\xff v\r\n\r\nNEXT"), PL("hi"), .rest = 4 },
	{ "chunked last among codings", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip"
		", , chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"), .status = 200,
	  .keep_alive = true, .framing = H1_CHUNKED, PL("z"), .n = 1 },
	{ "codings over two fields", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
		"Transfer-Encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
	  .status = 200, .keep_alive = true, .framing = H1_CHUNKED, PL("z"),
	  .n = 2 },
	{ "chunked cut by EOF", CHUNKED("5\r\nhel"), .stage = ST_EOF, PL("hel") },
	{ "chunked cut in trailers", CHUNKED("1\r\na\r\n0\r\nX: y\r\n"),
	  .stage = ST_EOF, PL("a") },
	{ "largest chunk size", CHUNKED("fffffffffffffff\r\nab"),
	  .stage = ST_EOF, PL("ab") },
	/* chunked, refused */
	{ "no CRLF after data", CHUNKED("5\r\nhelloX\r\n0\r\n\r\n"),
	  .stage = ST_BODY, .why = "CRLF", PL("hello") },
	{ "CR then no LF after data", CHUNKED("5\r\nhello\rX"),
	  .stage = ST_BODY, .why = "CRLF", PL("hello") },
	{ "bad hex", CHUNKED("5g\r\nhello\r\n"), .stage = ST_BODY,
	  .why = "extension" },
	{ "not hex", CHUNKED("x\r\n"), .stage = ST_BODY, .why = "size" },
	{ "empty size", CHUNKED("\r\nhello\r\n"), .stage = ST_BODY,
	  .why = "size" },
	{ "signed size", CHUNKED("+5\r\nhello\r\n"), .stage = ST_BODY,
	  .why = "size" },
	{ "size overflow", CHUNKED("1000000000000000\r\n"), .stage = ST_BODY,
	  .why = "too large" },
	{ "size far overflow", CHUNKED("ffffffffffffffffffff1\r\n"),
	  .stage = ST_BODY, .why = "too large" },
	{ "blank then line end", CHUNKED("5 \r\nhello\r\n"), .stage = ST_BODY,
	  .why = "extension" },
	{ "bare CR in size line", CHUNKED("5\rhello\r\n"), .stage = ST_BODY,
	  .why = "CR" },
	{ "empty extension name", CHUNKED("5;\r\nhello\r\n"), .stage = ST_BODY,
	  .why = "extension" },
	{ "extension without value", CHUNKED("5;a=\r\nhello\r\n"),
	  .stage = ST_BODY, .why = "extension" },
	{ "open quoted string", CHUNKED("5;a=\"x\r\nhello\r\n"),
	  .stage = ST_BODY, .why = "extension" },
	{ "NUL in extension", CHUNKED("5;a\0\r\nhello\r\n"), .stage = ST_BODY,
	  .why = "extension" },
	{ "trailer obs-fold", CHUNKED("0\r\nA: b\r\n c\r\n\r\n"),
	  .stage = ST_BODY, .why = "trailer" },
	{ "trailer without colon", CHUNKED("0\r\nAb\r\n\r\n"), .stage = ST_BODY,
	  .why = "trailer" },
	{ "trailer bare CR", CHUNKED("0\r\nA: b\rc\r\n\r\n"), .stage = ST_BODY,
	  .why = "trailer" },
	{ "final line bare CR", CHUNKED("0\r\n\rx"), .stage = ST_BODY,
	  .why = "trailer" },
	/* heads, refused */
	{ "HTTP/2.0", IN("HTTP/2.0 200 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "HTTP/1.0" },
	{ "HTTP/1.2", IN("HTTP/1.2 200 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "HTTP/1.0" },
	{ "lowercase version", IN("http/1.1 200 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "HTTP/1.0" },
	{ "status 99", IN("HTTP/1.1 099 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "status" },
	{ "status 600", IN("HTTP/1.1 600 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "status" },
	{ "status 20x", IN("HTTP/1.1 20x OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "status" },
	{ "two-digit status", IN("HTTP/1.1 20 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "status" },
	{ "status then no SP", IN("HTTP/1.1 200OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "status" },
	{ "no SP after version", IN("HTTP/1.1200 OK\r\n\r\n"), .stage = ST_HEAD,
	  .why = "status" },
	{ "two SPs after version", IN("HTTP/1.1  200 OK\r\n\r\n"),
	  .stage = ST_HEAD, .why = "status" },
	{ "CTL in reason", IN("HTTP/1.1 200 O\x01K\r\n\r\n"), .stage = ST_HEAD,
	  .why = "reason" },
	{ "bare CR in reason", IN("HTTP/1.1 200 O\rK\r\n\r\n"),
	  .stage = ST_HEAD, .why = "reason" },
	{ "empty line first", IN("\r\nHTTP/1.1 200 OK\r\n\r\n"),
	  .stage = ST_HEAD, .why = "status" },
	{ "obs-fold", IN("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"),
	  .stage = ST_HEAD, .why = "obs-fold", .status = 200 },
	{ "obs-fold with HTAB", IN("HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n"),
	  .stage = ST_HEAD, .why = "obs-fold", .status = 200 },
	{ "space before colon", IN("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"),
	  .stage = ST_HEAD, .why = "colon", .status = 200 },
	{ "empty name", IN("HTTP/1.1 200 OK\r\n: x\r\n\r\n"), .stage = ST_HEAD,
	  .why = "empty", .status = 200 },
	{ "no colon", IN("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), .stage = ST_HEAD,
	  .why = "colon", .status = 200 },
	{ "bad name", IN("HTTP/1.1 200 OK\r\nA(b): x\r\n\r\n"), .stage = ST_HEAD,
	  .why = "name", .status = 200 },
	{ "NUL in value", IN("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n"),
	  .stage = ST_HEAD, .why = "value", .status = 200 },
	{ "bare CR in value", IN("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"),
	  .stage = ST_HEAD, .why = "value", .status = 200 },
	{ "CR CR LF", IN("HTTP/1.1 200 OK\r\nA: b\r\r\n\r\n"),
	  .stage = ST_HEAD, .why = "value", .status = 200 },
	{ "CTL in value", IN("HTTP/1.1 200 OK\r\nA: b\x1b[0m\r\n\r\n"),
	  .stage = ST_HEAD, .why = "value", .status = 200 },
	{ "DEL in value", IN("HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n"),
	  .stage = ST_HEAD, .why = "value", .status = 200 },
	{ "head cut by EOF", IN("HTTP/1.1 200 OK\r\nA: b\r\n"),
	  .stage = ST_SHORT },
	/* framing, refused */
	{ "CL and TE", IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n"),
	  .stage = ST_INIT, .why = "both", .status = 200, .n = 2 },
	{ "CL and TE on 304", IN("HTTP/1.1 304 OK\r\nTransfer-Encoding: chunked\r\n"
				 "Content-Length: 5\r\n\r\n"),
	  .stage = ST_INIT, .why = "both", .status = 304, .n = 2 },
	{ "differing lengths", IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
				  "Content-Length: 6\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 2 },
	{ "differing lengths in a list", IN("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "empty list element", IN("HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "length not digits", IN("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "signed length", IN("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "empty length", IN("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "length overflow", IN("HTTP/1.1 200 OK\r\nContent-Length: "
				"18446744073709551617\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "length over 2^62", IN("HTTP/1.1 200 OK\r\nContent-Length: "
				 "4611686018427387905\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 200, .n = 1 },
	{ "malformed length on 204", IN("HTTP/1.1 204 OK\r\nContent-Length: x\r\n\r\n"),
	  .stage = ST_INIT, .why = "content-length", .status = 204, .n = 1 },
	{ "TE in HTTP/1.0", IN("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  .stage = ST_INIT, .why = "HTTP/1.0", .status = 200, .n = 1 },
	{ "empty TE", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n"),
	  .stage = ST_INIT, .why = "empty", .status = 200, .n = 1 },
	{ "chunked with a parameter", IN("HTTP/1.1 200 OK\r\n"
		"Transfer-Encoding: chunked;x=1\r\n\r\n"),
	  .stage = ST_INIT, .why = "transfer-encoding", .status = 200, .n = 1 },
	{ "coding not a token", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"),
	  .stage = ST_INIT, .why = "transfer-encoding", .status = 200, .n = 1 },
	{ "two words as a coding", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chun ked\r\n\r\n"),
	  .stage = ST_INIT, .why = "transfer-encoding", .status = 200, .n = 1 },
};

static void check_case(const struct resp_case *c, const struct outcome *o)
{
	bool ok = o->stage == c->stage && o->payload_len == c->payload_len &&
		  memcmp(o->payload, c->payload ? c->payload : "",
			 c->payload_len) == 0 && o->rest == c->rest;

	if (c->stage == ST_OK || c->stage == ST_EOF || c->stage == ST_BODY)
		ok = ok && o->status == c->status && o->n == c->n &&
		     o->keep_alive == c->keep_alive &&
		     o->framing == (int)c->framing;
	if (c->stage == ST_INIT)      /* a refused head records no status */
		ok = ok && o->status == c->status;
	if (c->stage == ST_INIT)
		ok = ok && o->n == c->n;
	if (c->why && (!o->why || !strcasestr(o->why, c->why)))
		ok = false;
	if (!ok) {
		print_error("%s: stage %d (why %s) status %d n %zu keep %d "
			    "framing %d payload %zu [%.*s] rest %zu\n", c->what,
			    o->stage, o->why ? o->why : "-", o->status, o->n,
			    o->keep_alive, o->framing, o->payload_len,
			    (int)o->payload_len, o->payload, o->rest);
		fail();
	}
}

static void test_responses_whole(void **state)
{
	static struct outcome o;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(resp_cases); i++) {
		run(resp_cases[i].in, resp_cases[i].len, NULL, 0, 0,
		    resp_cases[i].head_request, false, &o);
		check_case(&resp_cases[i], &o);
		run(resp_cases[i].in, resp_cases[i].len, NULL, 0, 0,
		    resp_cases[i].head_request, true, &o);
		check_case(&resp_cases[i], &o);
	}
}

/* Every case cut in two at every offset, in 1-byte and 3-byte pieces,
 * decoded in place or not: the outcome of the whole read, each time. */
static void test_responses_split(void **state)
{
	static struct outcome whole, part;
	const struct resp_case *c;
	char how[64];
	size_t i, k;

	(void)state;
	for (i = 0; i < ARRAY_LEN(resp_cases); i++) {
		c = &resp_cases[i];
		run(c->in, c->len, NULL, 0, 0, c->head_request, false, &whole);
		for (k = 0; k <= c->len; k++) {
			run(c->in, c->len, &k, 1, 0, c->head_request, k & 1,
			    &part);
			snprintf(how, sizeof(how), "cut at %zu", k);
			assert_same(&whole, &part, c->what, how);
		}
		run(c->in, c->len, NULL, 0, 1, c->head_request, true, &part);
		assert_same(&whole, &part, c->what, "1-byte pieces in place");
		run(c->in, c->len, NULL, 0, 1, c->head_request, false, &part);
		assert_same(&whole, &part, c->what, "1-byte pieces");
		run(c->in, c->len, NULL, 0, 3, c->head_request, true, &part);
		assert_same(&whole, &part, c->what, "3-byte pieces");
	}
}

/* ---- h1_head_end ---- */

struct end_case {
	const char *s;
	size_t len;
	ssize_t want;
};

static void test_head_end(void **state)
{
	static const struct end_case cases[] = {
		{ "HTTP/1.1 200 OK\r\n\r\nbody", 23, 19 },
		{ "HTTP/1.1 200 OK\n\nbody", 21, 17 },
		{ "HTTP/1.1 200 OK\r\n\nbody", 22, 18 },
		{ "HTTP/1.1 200 OK\n\r\nbody", 22, 18 },
		{ "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25, 25 },
		{ "HTTP/1.1 200 OK\r\n\r", 18, 0 },
		{ "HTTP/1.1 200 OK\r\n", 17, 0 },
		{ "HTTP/1.1 200 OK\r\n\rx\r\n", 21, 0 },
		{ "HTTP/1.1 200 OK\r\r\n", 18, 0 },
		{ "", 0, 0 },
		{ "\n\n", 2, 2 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		if (h1_head_end(cases[i].s, cases[i].len) != cases[i].want) {
			print_error("case %zu: got %zd want %zd\n", i,
				    h1_head_end(cases[i].s, cases[i].len),
				    cases[i].want);
			fail();
		}
	}
}

/* A head reaching H1_HEAD_MAX without its end is refused; one ending
 * right at the limit is not. */
static void test_head_too_large(void **state)
{
	static char buf[H1_HEAD_MAX + 16];
	static struct h1_head h;
	const char *why = NULL;

	(void)state;
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 20);
	assert_int_equal(h1_head_end(buf, H1_HEAD_MAX - 1), 0);
	assert_int_equal(h1_head_end(buf, H1_HEAD_MAX), -EMSGSIZE);
	assert_int_equal(h1_head_end(buf, sizeof(buf)), -EMSGSIZE);
	memcpy(buf + H1_HEAD_MAX - 4, "\r\n\r\n", 4);
	assert_int_equal(h1_head_end(buf, sizeof(buf)), H1_HEAD_MAX);
	assert_int_equal(h1_parse_head(buf, H1_HEAD_MAX, &h, &why), 0);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.f[0].value_len, H1_HEAD_MAX - 24);
	memcpy(buf + H1_HEAD_MAX - 4, "a\r\n\r\n", 5);
	assert_int_equal(h1_head_end(buf, sizeof(buf)), -EMSGSIZE);
}

/* ---- h1_parse_head ---- */

/* A head of `n` fields "F<i>: v<i>". */
static size_t many_fields(char *buf, size_t cap, size_t n)
{
	size_t len = (size_t)snprintf(buf, cap, "HTTP/1.1 200 OK\r\n"), i;

	for (i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len,
					"F%zu: v%zu\r\n", i, i);
	len += (size_t)snprintf(buf + len, cap - len, "\r\n");
	return len;
}

static void test_fields_max(void **state)
{
	static char buf[4096];
	static struct h1_head h;
	const char *why = NULL;
	size_t len;

	(void)state;
	len = many_fields(buf, sizeof(buf), H1_FIELDS_MAX);
	assert_int_equal(h1_head_end(buf, len), len);
	assert_int_equal(h1_parse_head(buf, len, &h, &why), 0);
	assert_int_equal(h.n, H1_FIELDS_MAX);
	assert_int_equal(h.f[99].name_len, 3);
	assert_memory_equal(h.f[99].name, "F99", 3);
	assert_memory_equal(h.f[99].value, "v99", 3);
	len = many_fields(buf, sizeof(buf), H1_FIELDS_MAX + 1);
	assert_int_equal(h1_parse_head(buf, len, &h, &why), -EINVAL);
	assert_non_null(strstr(why, "too many"));
}

/* Names and values as received, OWS trimmed, inner blanks and obs-text
 * kept, nothing NUL-ended. */
static void test_parse_fields(void **state)
{
	static const char head[] = "HTTP/1.0 404 Not \xff Found\r\n"
		"X-A: \t v a l \t \r\nX-b:\r\nX-C:\xe9\x80\r\n\r\n";
	static struct h1_head h;
	const char *why = NULL;

	(void)state;
	assert_int_equal(h1_parse_head(head, sizeof(head) - 1, &h, &why), 0);
	assert_int_equal(h.status, 404);
	assert_int_equal(h.minor, 0);
	assert_false(h.keep_alive);
	assert_int_equal(h.n, 3);
	assert_int_equal(h.f[0].name_len, 3);
	assert_memory_equal(h.f[0].name, "X-A", 3);
	assert_int_equal(h.f[0].value_len, 5);
	assert_memory_equal(h.f[0].value, "v a l", 5);
	assert_int_equal(h.f[1].value_len, 0);
	assert_int_equal(h.f[2].value_len, 2);
	assert_memory_equal(h.f[2].value, "\xe9\x80", 2);
	/* The length given is the head: bytes past it are not looked at,
	 * and a head without its empty line is refused. */
	assert_int_equal(h1_parse_head(head, sizeof(head) - 3, &h, &why),
			 -EINVAL);
	assert_non_null(strstr(why, "truncated"));
}

struct keep_case {
	const char *head;
	bool want;
};

static void test_keep_alive(void **state)
{
	static const struct keep_case cases[] = {
		{ "HTTP/1.1 200 OK\r\n\r\n", true },
		{ "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false },
		{ "HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\n\r\n", false },
		{ "HTTP/1.1 200 OK\r\nConnection: x\r\nconnection: close\r\n\r\n", false },
		{ "HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n", true },
		{ "HTTP/1.1 200 OK\r\nX-Connection: close\r\n\r\n", true },
		{ "HTTP/1.0 200 OK\r\n\r\n", false },
		{ "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n", true },
		{ "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n", false },
		{ "HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n\r\n", false },
	};
	static struct h1_head h;
	const char *why = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		assert_int_equal(h1_parse_head(cases[i].head,
					       strlen(cases[i].head), &h, &why), 0);
		if (h.keep_alive != cases[i].want) {
			print_error("%s: keep_alive %d\n", cases[i].head,
				    h.keep_alive);
			fail();
		}
	}
}

static void test_is_interim(void **state)
{
	(void)state;
	assert_true(h1_is_interim(100));
	assert_true(h1_is_interim(103));
	assert_true(h1_is_interim(199));
	assert_false(h1_is_interim(101));
	assert_false(h1_is_interim(200));
	assert_false(h1_is_interim(99));
}

/* ---- bodies, beyond the table ---- */

static void init_body(struct h1_body *b, const char *head, bool head_req)
{
	static struct h1_head h;
	const char *why = NULL;

	assert_int_equal(h1_parse_head(head, strlen(head), &h, &why), 0);
	assert_int_equal(h1_body_init(b, &h, head_req, &why), 0);
}

/* A Content-Length body counts down across calls and stops at its end. */
static void test_length_countdown(void **state)
{
	struct h1_body b;
	char out[16];
	const char *why = NULL;
	size_t out_len;

	(void)state;
	init_body(&b, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", false);
	assert_int_equal(b.framing, H1_LENGTH);
	assert_int_equal(h1_body_decode(&b, "abcd", 4, out, &out_len, &why), 4);
	assert_int_equal(out_len, 4);
	assert_int_equal(b.left, 3);
	assert_false(b.done);
	assert_int_equal(h1_body_eof(&b), -EPIPE);
	assert_int_equal(h1_body_decode(&b, "", 0, out, &out_len, &why), 0);
	assert_int_equal(h1_body_decode(&b, "efgHIJ", 6, out, &out_len, &why), 3);
	assert_int_equal(out_len, 3);
	assert_memory_equal(out, "efg", 3);
	assert_true(b.done);
	assert_int_equal(h1_body_decode(&b, "HIJ", 3, out, &out_len, &why), 0);
	assert_int_equal(out_len, 0);
	assert_int_equal(h1_body_eof(&b), 0);
}

static void test_until_close(void **state)
{
	static struct h1_head h;
	struct h1_body b;
	char out[16];
	const char *why = NULL, *head = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
	size_t out_len;

	(void)state;
	assert_int_equal(h1_parse_head(head, strlen(head), &h, &why), 0);
	assert_true(h.keep_alive);
	assert_int_equal(h1_body_init(&b, &h, false, &why), 0);
	assert_int_equal(b.framing, H1_UNTIL_CLOSE);
	assert_false(h.keep_alive);
	assert_int_equal(h1_body_decode(&b, "abc", 3, out, &out_len, &why), 3);
	assert_false(b.done);
	assert_int_equal(h1_body_eof(&b), 0);
	assert_true(b.done);
	assert_int_equal(h1_body_eof(&b), 0);
}

/* Chunked data decoded over its own input: the payload ends up at the
 * start of the buffer, what follows the body where it was. */
static void test_in_place(void **state)
{
	char buf[] = "3;x=y\r\nabc\r\n4\r\ndefg\r\n0\r\nT: 1\r\n\r\nNEXT";
	struct h1_body b;
	const char *why = NULL;
	size_t out_len;

	(void)state;
	init_body(&b, TE_CHUNKED, false);
	assert_int_equal(h1_body_decode(&b, buf, sizeof(buf) - 1, buf,
					&out_len, &why), sizeof(buf) - 5);
	assert_true(b.done);
	assert_int_equal(out_len, 7);
	assert_memory_equal(buf, "abcdefg", 7);
	assert_memory_equal(buf + sizeof(buf) - 5, "NEXT", 4);
}

/* A size line of SIZE_LINE_MAX bytes passes, one byte more does not. */
static void test_size_line_max(void **state)
{
	static char buf[4200];
	struct h1_body b;
	const char *why = NULL;
	size_t out_len;

	(void)state;
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "1;", 2);
	memcpy(buf + 4094, "\r\nx\r\n0\r\n\r\n", 10);
	init_body(&b, TE_CHUNKED, false);
	assert_int_equal(h1_body_decode(&b, buf, 4104, buf, &out_len, &why),
			 4104);
	assert_true(b.done);
	memcpy(buf, "1;", 2);                 /* decoded over in place */
	memcpy(buf + 4094, "a\r\nx\r\n0\r\n\r\n", 11);
	init_body(&b, TE_CHUNKED, false);
	assert_int_equal(h1_body_decode(&b, buf, 4105, buf, &out_len, &why),
			 -EINVAL);
	assert_non_null(strstr(why, "too long"));
	/* And the decoder stays refused. */
	assert_int_equal(h1_body_decode(&b, "0\r\n\r\n", 5, buf, &out_len,
					&why), -EINVAL);
}

/* Trailers up to H1_HEAD_MAX bytes pass; beyond, refused. */
static void test_trailers_max(void **state)
{
	static char buf[H1_HEAD_MAX + 64];
	struct h1_body b;
	const char *why = NULL;
	size_t out_len, len;

	(void)state;
	memset(buf, 'v', sizeof(buf));
	memcpy(buf, "0\r\nX: ", 6);
	len = 3 + H1_HEAD_MAX;           /* "0\r\n" then the trailer section */
	memcpy(buf + len - 4, "\r\n\r\n", 4);
	init_body(&b, TE_CHUNKED, false);
	assert_int_equal(h1_body_decode(&b, buf, len, buf, &out_len, &why),
			 len);
	assert_true(b.done);
	memcpy(buf + len - 4, "v\r\n\r\n", 5);
	init_body(&b, TE_CHUNKED, false);
	assert_int_equal(h1_body_decode(&b, buf, len + 1, buf, &out_len, &why),
			 -EINVAL);
	assert_non_null(strstr(why, "too large"));
}

static void test_no_body_decode(void **state)
{
	struct h1_body b;
	char out[4];
	const char *why = NULL;
	size_t out_len = 9;

	(void)state;
	init_body(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true);
	assert_int_equal(b.framing, H1_NO_BODY);
	assert_true(b.done);
	assert_int_equal(h1_body_decode(&b, "0\r\n\r\n", 5, out, &out_len, &why), 0);
	assert_int_equal(out_len, 0);
	assert_int_equal(h1_body_eof(&b), 0);
}

/* ---- request heads ---- */

static void test_writer(void **state)
{
	static const char target[] = "/p\xc3\xa9?q=\x80\xff";
	static const char want[] = "GET /p\xc3\xa9?q=\x80\xff HTTP/1.1\r\n"
		"Host: example.com\r\nX-Empty: \r\nContent-Length: 0\r\n"
		"X-Max: 18446744073709551615\r\nX-Ten: 10\r\n\r\n";
	char buf[256];
	struct h1_writer w = { buf, sizeof(buf), 0, false };

	(void)state;
	h1_put_request_line(&w, "GET", target, sizeof(target) - 1);
	h1_put_field(&w, "Host", 4, "example.com", 11);
	h1_put_field(&w, "X-Empty", 7, "", 0);
	h1_put_field_u64(&w, "Content-Length", 14, 0);
	h1_put_field_u64(&w, "X-Max", 5, UINT64_MAX);
	h1_put_field_u64(&w, "X-Ten", 5, 10);
	h1_put_end(&w);
	assert_false(w.full);
	assert_int_equal(w.len, sizeof(want) - 1);
	assert_memory_equal(buf, want, sizeof(want) - 1);
}

/* Exactly fitting is fine; one byte over sets full, writes nothing past
 * cap, and nothing later is appended. */
static void test_writer_full(void **state)
{
	char buf[32];
	struct h1_writer w;

	(void)state;
	memset(buf, '#', sizeof(buf));
	w = (struct h1_writer){ buf, 27, 0, false };
	h1_put_request_line(&w, "GET", "/", 1);
	h1_put_field(&w, "A", 1, "b", 1);
	assert_int_equal(w.len, 22);
	h1_put_field_u64(&w, "C", 1, 5);
	assert_true(w.full);
	assert_int_equal(w.len, 22);
	assert_memory_equal(buf + 22, "#####", 5);
	h1_put_end(&w);                       /* would fit: refused */
	assert_int_equal(w.len, 22);
	assert_memory_equal(buf + 22, "#####", 5);

	memset(buf, '#', sizeof(buf));
	w = (struct h1_writer){ buf, 24, 0, false };
	h1_put_request_line(&w, "GET", "/", 1);
	h1_put_field(&w, "A", 1, "b", 1);
	h1_put_end(&w);
	assert_false(w.full);
	assert_int_equal(w.len, 24);
	assert_memory_equal(buf, "GET / HTTP/1.1\r\nA: b\r\n\r\n", 24);
	assert_int_equal(buf[24], '#');
	h1_put_request_line(&w, "", "", 0);
	assert_true(w.full);
	assert_int_equal(w.len, 24);
	assert_int_equal(buf[24], '#');

	w = (struct h1_writer){ buf, 0, 0, false };
	h1_put_end(&w);
	assert_true(w.full);
	assert_int_equal(w.len, 0);
}

struct chunk_case {
	uint64_t n;
	const char *want;
};

static void test_chunk_line(void **state)
{
	static const struct chunk_case cases[] = {
		{ 0, "0\r\n\r\n" },
		{ 1, "1\r\n" },
		{ 15, "f\r\n" },
		{ 16, "10\r\n" },
		{ 255, "ff\r\n" },
		{ 4096, "1000\r\n" },
		{ 0xabcdef, "abcdef\r\n" },
		{ UINT64_C(1) << 60, "1000000000000000\r\n" },
		{ UINT64_MAX, "ffffffffffffffff\r\n" },
	};
	char buf[H1_CHUNK_LINE_MAX + 1];
	size_t i, n;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		memset(buf, '#', sizeof(buf));
		n = h1_chunk_line(buf, cases[i].n);
		assert_int_equal(n, strlen(cases[i].want));
		assert_memory_equal(buf, cases[i].want, n);
		assert_int_equal(buf[n], '#');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_responses_whole),
		cmocka_unit_test(test_responses_split),
		cmocka_unit_test(test_head_end),
		cmocka_unit_test(test_head_too_large),
		cmocka_unit_test(test_fields_max),
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_is_interim),
		cmocka_unit_test(test_length_countdown),
		cmocka_unit_test(test_until_close),
		cmocka_unit_test(test_in_place),
		cmocka_unit_test(test_size_line_max),
		cmocka_unit_test(test_trailers_max),
		cmocka_unit_test(test_no_body_decode),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_writer_full),
		cmocka_unit_test(test_chunk_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
