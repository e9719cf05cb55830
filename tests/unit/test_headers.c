/* test_headers.c - unit tests for the header field rules of headers.h. */
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

#include "headers.h"
#include "trace.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A field from two string literals, lengths included, so that a NUL
 * written inside a literal is part of the name or value. */
#define FL(n, v) { (n), sizeof(n) - 1, (v), sizeof(v) - 1 }
#define FIELDS_MAX 24

/* Fields up to the first one whose name is NULL. */
static size_t fields_count(const struct headers_field *f, size_t max)
{
	size_t n = 0;

	while (n < max && f[n].name)
		n++;
	return n;
}

/* Whether the reason names what was wrong: it holds `word`. */
static void assert_why(const char *why, const char *word, const char *what)
{
	if (!why) {
		print_error("%s: *why not set\n", what);
		fail();
	}
	if (word && !strcasestr(why, word)) {
		print_error("%s: why \"%s\" does not mention \"%s\"\n", what,
			    why, word);
		fail();
	}
}

/* ---- headers_is_token ---- */

struct token_case {
	const char *s;
	size_t n;
	bool want;
};

static void test_is_token(void **state)
{
	static const struct token_case cases[] = {
		{ "a", 1, true },
		{ "Content-Type", 12, true },
		{ "!#$%&'*+-.^_`|~09azAZ", 21, true },
		{ "ab c", 2, true },          /* only n bytes are read */
		{ "", 0, false },
		{ "a b", 3, false },
		{ "a\tb", 3, false },
		{ "a:b", 3, false },
		{ "a\0b", 3, false },
		{ "\0", 1, false },
		{ "a\x7f", 2, false },
		{ "caf\xc3\xa9", 5, false },
		{ "a\x80", 2, false },
		{ "a\r", 2, false },
		{ "a\n", 2, false },
		{ "(a)", 3, false },
		{ "a,b", 3, false },
		{ "a/b", 3, false },
		{ "a;b", 3, false },
		{ "a<b>", 4, false },
		{ "a=b", 3, false },
		{ "a?b", 3, false },
		{ "a@b", 3, false },
		{ "[a]", 3, false },
		{ "a\\b", 3, false },
		{ "{a}", 3, false },
		{ "\"a\"", 3, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		if (headers_is_token(cases[i].s, cases[i].n) != cases[i].want) {
			print_error("case %zu (\"%.*s\"): want %d\n", i,
				    (int)cases[i].n, cases[i].s, cases[i].want);
			fail();
		}
	}
}

/* ---- the hop-by-hop set and the comma lists ---- */

/* A lone field (no Connection beside it) is forwarded unless hop-by-hop. */
static bool hop_by_hop(const char *name)
{
	struct headers_field f = { name, strlen(name), "", 0 };

	return !headers_response_forwarded(&f, &f, 1);
}

static void test_hop_by_hop(void **state)
{
	static const char *const hop[] = {
		"Connection", "keep-alive", "PROXY-CONNECTION", "TE",
		"Trailer", "transfer-encoding", "Upgrade",
		"Proxy-Authorization", "proxy-authenticate", "Content-Length",
		"CoNnEcTiOn", "te",
	};
	static const char *const end_to_end[] = {
		"Host", "Content-Type", "Trailers", "Connections",
		"X-Connection", "Keep-Alive2", "T", "", "Upgrade-Insecure-Requests",
		"Proxy-Authorization-X", "Content-Length ", "Accept", "Via",
		"Expect",
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(hop); i++)
		if (!hop_by_hop(hop[i])) {
			print_error("%s should be hop-by-hop\n", hop[i]);
			fail();
		}
	for (i = 0; i < ARRAY_LEN(end_to_end); i++)
		if (hop_by_hop(end_to_end[i])) {
			print_error("\"%s\" is not hop-by-hop\n", end_to_end[i]);
			fail();
		}
}

struct list_case {
	const char *list;
	const char *name;
	bool want;
};

static void test_list_has(void **state)
{
	static const struct list_case cases[] = {
		{ "close", "close", true },
		{ "close", "CLOSE", true },
		{ "keep-alive, X-Foo", "x-foo", true },
		{ "keep-alive,X-Foo", "X-FOO", true },
		{ " \tX-Foo\t, close", "x-foo", true },
		{ "a,,b", "b", true },
		{ "a, b ,c", "b", true },
		{ "X-Foobar", "X-Foo", false },
		{ "X-Fo", "X-Foo", false },
		{ "X-Foo-Bar", "X-Foo", false },
		{ "AX-Foo", "X-Foo", false },
		{ "", "X-Foo", false },
		{ " , ", "close", false },
		{ "keep-alive", "close", false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		if (headers_list_has_n(cases[i].list, strlen(cases[i].list),
				       cases[i].name, strlen(cases[i].name)) !=
		    cases[i].want) {
			print_error("list \"%s\" has \"%s\": want %d\n",
				    cases[i].list, cases[i].name, cases[i].want);
			fail();
		}
	}
}

/* The lengths bound the scan: bytes past them (here a NUL and more list)
 * are not read, and a name with a NUL inside compares whole. */
static void test_list_has_n(void **state)
{
	static const char list[] = "keep-alive, close\0, upgrade";

	(void)state;
	assert_true(headers_list_has_n(list, 17, "close", 5));
	assert_true(headers_list_has_n(list, 17, "KEEP-ALIVE", 10));
	assert_false(headers_list_has_n(list, 16, "close", 5));
	assert_false(headers_list_has_n(list, 17, "upgrade", 7));
	assert_true(headers_list_has_n(list, sizeof(list) - 1, "upgrade", 7));
	assert_false(headers_list_has_n(list, 17, "close\0x", 7));
	assert_false(headers_list_has_n(list, 17, "clos", 4));
	assert_false(headers_list_has_n("", 0, "close", 5));
	assert_false(headers_list_has_n(list, 0, "keep-alive", 10));
}

/* ---- headers_check_request ---- */

struct req_case {
	const char *what;
	const char *version;
	struct headers_field f[FIELDS_MAX];
	int rc;
	const char *why;              /* a word the reason must hold */
	long long length;             /* expected framing when accepted */
	bool chunked;
};

#define V11 "HTTP/1.1"
#define V10 "HTTP/1.0"
#define HOST FL("Host", "h")

static void check_request_case(const struct req_case *c)
{
	struct headers_framing fr = { 12345, true };
	const char *why = NULL;
	size_t n = fields_count(c->f, FIELDS_MAX);
	int rc = headers_check_request(c->version, c->f, n, &fr, &why);

	if (rc != c->rc) {
		print_error("%s: rc %d, want %d (why %s)\n", c->what, rc, c->rc,
			    why ? why : "-");
		fail();
	}
	if (rc < 0) {
		assert_why(why, c->why, c->what);
		return;
	}
	if (fr.content_length != c->length || fr.chunked != c->chunked) {
		print_error("%s: framing %lld/%d, want %lld/%d\n", c->what,
			    fr.content_length, fr.chunked, c->length,
			    c->chunked);
		fail();
	}
}

static void test_check_request_valid(void **state)
{
	static const struct req_case cases[] = {
		{ "no body", V11, { HOST }, 0, NULL, -1, false },
		{ "content-length", V11, { HOST, FL("Content-Length", "5") },
		  0, NULL, 5, false },
		{ "zero length", V11, { FL("content-length", "0"), HOST },
		  0, NULL, 0, false },
		{ "leading zeros", V11, { HOST, FL("Content-Length", "007") },
		  0, NULL, 7, false },
		{ "18 digits", V11,
		  { HOST, FL("Content-Length", "999999999999999999") },
		  0, NULL, 999999999999999999LL, false },
		{ "two equal lengths", V11, { HOST, FL("Content-Length", "5"),
		  FL("CONTENT-LENGTH", "5") }, 0, NULL, 5, false },
		{ "chunked", V11, { HOST, FL("Transfer-Encoding", "chunked") },
		  0, NULL, -1, true },
		{ "Chunked", V11, { HOST, FL("transfer-encoding", "Chunked") },
		  0, NULL, -1, true },
		{ "CHUNKED", V11, { HOST, FL("TRANSFER-ENCODING", "CHUNKED") },
		  0, NULL, -1, true },
		{ "1.0 without host", V10, { FL("Accept", "*/*") }, 0, NULL,
		  -1, false },
		{ "1.0 no fields", V10, { { NULL, 0, NULL, 0 } }, 0, NULL, -1,
		  false },
		{ "1.0 with host", V10, { HOST }, 0, NULL, -1, false },
		{ "lower-case host", V11, { FL("hOST", "h") }, 0, NULL, -1,
		  false },
		{ "every tchar", V11, { HOST, FL("!#$%&'*+-.^_`|~09azAZ", "x") },
		  0, NULL, -1, false },
		{ "tab, obs-text and empty values", V11,
		  { HOST, FL("X-A", "a\tb"), FL("X-B", "caf\xc3\xa9"),
		    FL("X-C", "") }, 0, NULL, -1, false },
		{ "empty host", V11, { FL("Host", "") }, 0, NULL, -1, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++)
		check_request_case(&cases[i]);
}

static void test_check_request_bad_names(void **state)
{
	static const struct req_case cases[] = {
		{ "space inside", V11, { HOST, FL("Bad Name", "x") }, -EINVAL,
		  "name", 0, false },
		{ "trailing space", V11,
		  { HOST, FL("Transfer-Encoding ", "chunked") }, -EINVAL,
		  "name", 0, false },
		{ "leading space", V11, { HOST, FL(" X-A", "x") }, -EINVAL,
		  "name", 0, false },
		{ "empty name", V11, { HOST, FL("", "x") }, -EINVAL, "name", 0,
		  false },
		{ "empty name first", V11, { FL("", "x"), HOST }, -EINVAL,
		  "name", 0, false },
		{ "NUL in name", V11, { HOST, FL("X\0A", "x") }, -EINVAL,
		  "name", 0, false },
		{ "colon in name", V11, { HOST, FL("X:A", "x") }, -EINVAL,
		  "name", 0, false },
		{ "non-ASCII name", V11, { HOST, FL("X-\xc3\xa9", "x") },
		  -EINVAL, "name", 0, false },
		{ "tab in name", V11, { HOST, FL("X-A\t", "x") }, -EINVAL,
		  "name", 0, false },
		{ "CR in name", V11, { HOST, FL("X-A\r", "x") }, -EINVAL,
		  "name", 0, false },
		{ "bad name on 1.0", V10, { FL("a b", "x") }, -EINVAL, "name",
		  0, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++)
		check_request_case(&cases[i]);
}

static void test_check_request_bad_values(void **state)
{
	static const struct req_case cases[] = {
		{ "CR inside", V11, { HOST, FL("X-A", "a\rb") }, -EINVAL,
		  "value", 0, false },
		{ "CR at the end", V11, { HOST, FL("X-A", "a\r") }, -EINVAL,
		  "value", 0, false },
		{ "LF inside", V11, { HOST, FL("X-A", "a\nb") }, -EINVAL,
		  "value", 0, false },
		{ "CR LF injection", V11,
		  { HOST, FL("X-A", "a\r\nX-Injected: 1") }, -EINVAL, "value", 0,
		  false },
		{ "NUL inside", V11, { HOST, FL("X-A", "a\0b") }, -EINVAL,
		  "value", 0, false },
		{ "NUL alone", V11, { HOST, FL("X-A", "\0") }, -EINVAL, "value",
		  0, false },
		{ "NUL in host", V11, { FL("Host", "h\0evil") }, -EINVAL,
		  "value", 0, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++)
		check_request_case(&cases[i]);
}

static void test_check_request_bad_framing(void **state)
{
	static const struct req_case cases[] = {
		{ "CL then TE", V11, { HOST, FL("Content-Length", "5"),
		  FL("Transfer-Encoding", "chunked") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "TE then CL", V11, { HOST, FL("Transfer-Encoding", "chunked"),
		  FL("Content-Length", "5") }, -EINVAL, "content-length", 0,
		  false },
		{ "two different CLs", V11, { HOST, FL("Content-Length", "5"),
		  FL("Content-Length", "6") }, -EINVAL, "content-length", 0,
		  false },
		{ "CL 0 then 1", V11, { HOST, FL("Content-Length", "0"),
		  FL("Content-Length", "1") }, -EINVAL, "content-length", 0,
		  false },
		{ "CL +5", V11, { HOST, FL("Content-Length", "+5") }, -EINVAL,
		  "content-length", 0, false },
		{ "CL -1", V11, { HOST, FL("Content-Length", "-1") }, -EINVAL,
		  "content-length", 0, false },
		{ "CL list", V11, { HOST, FL("Content-Length", "5, 5") },
		  -EINVAL, "content-length", 0, false },
		{ "CL leading space", V11, { HOST, FL("Content-Length", " 5") },
		  -EINVAL, "content-length", 0, false },
		{ "CL trailing space", V11, { HOST, FL("Content-Length", "5 ") },
		  -EINVAL, "content-length", 0, false },
		{ "CL hex", V11, { HOST, FL("Content-Length", "0x10") },
		  -EINVAL, "content-length", 0, false },
		{ "CL exponent", V11, { HOST, FL("Content-Length", "1e3") },
		  -EINVAL, "content-length", 0, false },
		{ "CL 19 digits", V11,
		  { HOST, FL("Content-Length", "1234567890123456789") },
		  -EINVAL, "content-length", 0, false },
		{ "CL 30 digits", V11,
		  { HOST, FL("Content-Length", "000000000000000000000000000001") },
		  -EINVAL, "content-length", 0, false },
		{ "CL empty", V11, { HOST, FL("Content-Length", "") }, -EINVAL,
		  "content-length", 0, false },
		{ "CL then empty CL", V11, { HOST, FL("Content-Length", "5"),
		  FL("Content-Length", "") }, -EINVAL, "content-length", 0,
		  false },
		{ "TE gzip, chunked", V11,
		  { HOST, FL("Transfer-Encoding", "gzip, chunked") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "TE chunked, gzip", V11,
		  { HOST, FL("Transfer-Encoding", "chunked, gzip") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "TE chunked, identity", V11,
		  { HOST, FL("Transfer-Encoding", "chunked, identity") },
		  -EINVAL, "transfer-encoding", 0, false },
		{ "TE identity", V11,
		  { HOST, FL("Transfer-Encoding", "identity") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "TE empty", V11, { HOST, FL("Transfer-Encoding", "") },
		  -EINVAL, "transfer-encoding", 0, false },
		{ "TE with space", V11,
		  { HOST, FL("Transfer-Encoding", "chunked ") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "TE chunked prefix", V11,
		  { HOST, FL("Transfer-Encoding", "chunke") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "two TE fields", V11, { HOST,
		  FL("Transfer-Encoding", "chunked"),
		  FL("Transfer-Encoding", "chunked") }, -EINVAL,
		  "transfer-encoding", 0, false },
		{ "TE gzip then chunked", V11, { HOST,
		  FL("Transfer-Encoding", "gzip"),
		  FL("Transfer-Encoding", "chunked") }, -EINVAL,
		  "transfer-encoding", 0, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++)
		check_request_case(&cases[i]);
}

static void test_check_request_host(void **state)
{
	static const struct req_case cases[] = {
		{ "missing host", V11, { FL("Accept", "*/*") }, -EINVAL, "host",
		  0, false },
		{ "no fields at all", V11, { { NULL, 0, NULL, 0 } }, -EINVAL,
		  "host", 0, false },
		{ "two hosts", V11, { HOST, FL("Host", "h") }, -EINVAL, "host",
		  0, false },
		{ "two hosts, mixed case", V11, { FL("host", "a"),
		  FL("X-A", "b"), FL("HOST", "c") }, -EINVAL, "host", 0,
		  false },
		{ "two hosts on 1.0", V10, { HOST, HOST }, -EINVAL, "host", 0,
		  false },
		/* Found by the fuzzer once the rule existed: RFC 9112 §6.1. */
		{ "chunked on 1.0", V10, { FL("Transfer-Encoding", "Chunked") },
		  -EINVAL, "transfer-encoding", 0, false },
		{ "Host with a space is no Host", V11, { FL("Host ", "h") },
		  -EINVAL, NULL, 0, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++)
		check_request_case(&cases[i]);
}

/* ---- headers_check_target ---- */

static void test_check_target(void **state)
{
	static const char *const good[] = {
		"/", "/a", "/a/b/", "/a/b?x=../y", "/a?/../", "/a#/../x",
		"/a/.b", "/a/..b", "/a/...", "/a/b.", "/a/b..", "/.well-known/x",
		"/a/%2e%2e%2e", "/a/%2ex", "/a/x%2e", "/a/%2", "/a/.%2",
		"/%41", "/caf\xc3\xa9", "//", "/a//b",
	};
	static const char *const bad[] = {
		"/../a", "/a/..", "/a/../", "/a/./b", "/.", "/./", "/..",
		"/%2e%2E/x", "/%2E", "/a/%2e", "/a/.%2E/", "/a/%2e./b",
		"/a/%2E%2e?q", "/a/..?x=1", "/a/.#f",
		"x", "", "a/b", "http://h/", "*", "?x", "#x",
		"/a\x01", "/a\tb", "/a b", "/a\x7f", "/a\r", "/a\n",
		"/a b/../c", " /",
	};
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(good); i++) {
		why = NULL;
		if (headers_check_target(good[i], &why) != 0) {
			print_error("target \"%s\" refused: %s\n", good[i], why);
			fail();
		}
	}
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		why = NULL;
		if (headers_check_target(bad[i], &why) != -EINVAL) {
			print_error("target \"%s\" accepted\n", bad[i]);
			fail();
		}
		assert_why(why, NULL, bad[i]);
	}
}

/* ---- headers_check_layout ---- */

/* A head as libmicrohttpd 0.9.75 leaves it, and its fields. */
struct layout {
	const char *buf;
	size_t len;
	const char *from;
	struct headers_field f[FIELDS_MAX];
	size_t n;
	const char *cur;
};

/* Point `from` just past the request line's version. */
static void layout_init(struct layout *l, const char *buf, size_t len)
{
	const char *v = memmem(buf, len, "HTTP/1.", 7);

	assert_non_null(v);
	l->buf = buf;
	l->len = len;
	l->from = v + 8;
	l->cur = l->from;
	l->n = 0;
}

/* Where the next `s` lies in the buffer, from the cursor on. */
static const char *layout_find(struct layout *l, const char *s)
{
	const char *p = memmem(l->cur, (size_t)(l->buf + l->len - l->cur), s,
			       strlen(s));

	assert_non_null(p);
	l->cur = p + strlen(s);
	return p;
}

/* The next field, found in order; value NULL means an empty value whose
 * pointer is elsewhere (a static ""). */
static void layout_add(struct layout *l, const char *name,
		       const char *value)
{
	struct headers_field *f = &l->f[l->n++];

	f->name = layout_find(l, name);
	f->name_len = strlen(name);
	f->value = value ? layout_find(l, value) : "";
	f->value_len = value ? strlen(value) : 0;
}

static int layout_check(const struct layout *l, const char **why)
{
	*why = NULL;
	return headers_check_layout(l->from, l->buf + l->len, l->f, l->n,
				    why);
}

static void assert_layout(const struct layout *l, int want)
{
	const char *why;
	int rc = layout_check(l, &why);

	assert_int_equal(rc, want);
	if (rc < 0)
		assert_why(why, NULL, "layout");
}

#define LAYOUT(l, lit) layout_init((l), (lit), sizeof(lit) - 1)

static void test_layout_valid(void **state)
{
	struct layout l;

	(void)state;
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0X-B\0 c\0\0\0\0");
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	assert_layout(&l, 0);

	/* LF-only line ends. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0Host\0a\0X-B\0\tc\0\0");
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	assert_layout(&l, 0);

	/* OWS around a value and inside it. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 \t a b \t\0\0\0\0");
	layout_add(&l, "Host", "a b");
	assert_layout(&l, 0);

	/* An empty value whose pointer is elsewhere, then one inside. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0X-E\0\0\0Host\0 a\0\0X-F\0 \0\0\0\0");
	layout_add(&l, "X-E", NULL);
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-F", NULL);
	assert_layout(&l, 0);

	/* No field at all (HTTP/1.0). */
	LAYOUT(&l, "GET\0/x\0HTTP/1.0\0\0\0\0");
	assert_layout(&l, 0);

	/* The whole head ends exactly at the last value. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a");
	layout_add(&l, "Host", "a");
	assert_layout(&l, 0);
}

static void test_layout_garbage(void **state)
{
	struct layout l;

	(void)state;
	/* A dropped ": x" line between two fields. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0\0 x\0\0X-B\0 c\0\0\0\0");
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	assert_layout(&l, -EINVAL);

	/* The same as the first line. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0\0 x\0\0Host\0 a\0\0\0\0");
	layout_add(&l, "Host", "a");
	assert_layout(&l, -EINVAL);

	/* A line without a colon, dropped. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0junk\0\0X-B\0 c\0\0\0\0");
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	assert_layout(&l, -EINVAL);

	/* Garbage after the last field. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0X-B\0 c\0\0junk\0\0");
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	assert_layout(&l, -EINVAL);

	/* A single stray byte after the last field. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0\0\0x");
	layout_add(&l, "Host", "a");
	assert_layout(&l, -EINVAL);
}

static void test_layout_cut_value(void **state)
{
	struct layout l;

	(void)state;
	/* "X-A: a\0b": libmicrohttpd's value is "a"; "b" is left over. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 h\0\0X-A\0 a\0b\0\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X-A", "a");
	assert_layout(&l, -EINVAL);

	/* A cut name: "X\0A: b" seen as a field "X" (value "b"). */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 h\0\0X\0A\0 b\0\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X", "b");
	assert_layout(&l, -EINVAL);
}

static void test_layout_outside(void **state)
{
	static const char folded[] = "c d";
	static const char head[] =
		"GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0X-B\0 c\0\0 d\0\0\0\0";
	struct layout l;

	(void)state;
	/* An obs-fold: the joined value was copied out of the head. */
	LAYOUT(&l, head);
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	l.f[1].value = folded;
	l.f[1].value_len = 3;
	assert_layout(&l, -EINVAL);

	/* A field pointing into the request line, before `from`. */
	LAYOUT(&l, head);
	layout_add(&l, "Host", "a");
	l.f[0].name = head;           /* "GET" */
	l.f[0].name_len = 3;
	assert_layout(&l, -EINVAL);

	/* A value running past the end of the head. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 abc");
	layout_add(&l, "Host", "abc");
	l.len -= 1;                   /* end now cuts the value */
	assert_layout(&l, -EINVAL);

	/* A name wholly past the end. */
	LAYOUT(&l, head);
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	l.len = (size_t)(l.f[1].name - l.buf);
	assert_layout(&l, -EINVAL);
}

static void test_layout_order(void **state)
{
	struct layout l;
	struct headers_field tmp;

	(void)state;
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0X-B\0 c\0\0\0\0");
	layout_add(&l, "Host", "a");
	layout_add(&l, "X-B", "c");
	tmp = l.f[0];
	l.f[0] = l.f[1];
	l.f[1] = tmp;
	assert_layout(&l, -EINVAL);

	/* The same field twice. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0\0\0");
	layout_add(&l, "Host", "a");
	l.f[1] = l.f[0];
	l.n = 2;
	assert_layout(&l, -EINVAL);

	/* A value before its own name. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 a\0\0\0\0");
	layout_add(&l, "Host", "a");
	l.f[0].value = l.f[0].name;
	l.f[0].value_len = 1;
	l.f[0].name = l.f[0].name + 6;    /* "a" */
	l.f[0].name_len = 1;
	assert_layout(&l, -EINVAL);
}

/* A NUL the client sent next to a separator: one NUL more in a gap than
 * the colon, CR and LF libmicrohttpd zeroed there (SPEC §6). */
static void test_layout_extra_nul(void **state)
{
	struct layout l;

	(void)state;
	/* "X-A: a\0\r\n" between two fields. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 h\0\0X-A\0 a\0\0\0X-B\0 c\0\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X-A", "a");
	layout_add(&l, "X-B", "c");
	assert_layout(&l, -EINVAL);

	/* The same on the last field. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 h\0\0X-A\0 a\0\0\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X-A", "a");
	assert_layout(&l, -EINVAL);

	/* "X-A: \0\r\n": an empty value, then one NUL too many. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 h\0\0X-A\0 \0\0\0X-B\0 c\0\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X-A", NULL);
	layout_add(&l, "X-B", "c");
	assert_layout(&l, -EINVAL);

	/* Two NULs between name and value ("X-A:\0 b" seen as value "b"). */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0Host\0 h\0\0X-A\0\0 b\0\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X-A", "b");
	assert_layout(&l, -EINVAL);

	/* A NUL ending the request line, before the first field. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0\0Host\0 h\0\0\0\0");
	layout_add(&l, "Host", "h");
	assert_layout(&l, -EINVAL);

	/* A NUL on the empty line that ends the head. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.0\0\0\0\0\0");
	assert_layout(&l, -EINVAL);
}

/* Every legitimate gap at its widest still passes. */
static void test_layout_widest_gaps(void **state)
{
	struct layout l;

	(void)state;
	/* Empty values (colon, blanks, CR LF) in the middle and at the end. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0\0X-E\0\0\0Host\0\t h \0\0X-F\0 \t\0\0\0\0");
	layout_add(&l, "X-E", NULL);
	layout_add(&l, "Host", "h ");
	layout_add(&l, "X-F", NULL);
	assert_layout(&l, 0);

	/* Mixed line ends: LF after the request line, CR LF after fields. */
	LAYOUT(&l, "GET\0/x\0HTTP/1.1\0Host\0h\0\0X-A\0b\0\0\0");
	layout_add(&l, "Host", "h");
	layout_add(&l, "X-A", "b");
	assert_layout(&l, 0);
}

/* ---- headers_check_line_layout ---- */

struct line_case {
	const char *what;
	const char *buf;              /* the request line as left in place */
	size_t target_at, version_at; /* offsets into buf */
	size_t target_len;            /* as the URI callback saw it */
	int rc;
};

static void test_line_layout(void **state)
{
	static const struct line_case cases[] = {
		{ "clean", "GET\0/x\0HTTP/1.1", 4, 7, 2, 0 },
		{ "long method", "OPTIONS\0/a?b=c\0HTTP/1.0", 8, 15, 6, 0 },
		{ "NUL in target", "GET\0/x\0/../y\0HTTP/1.1", 4, 13, 2,
		  -EINVAL },
		{ "NUL in method", "GE\0T\0/x\0HTTP/1.1", 5, 8, 2, -EINVAL },
		{ "target longer than seen", "GET\0/x\0HTTP/1.1", 4, 7, 3,
		  -EINVAL },
		{ "two separators", "GET\0\0/x\0HTTP/1.1", 5, 8, 2, -EINVAL },
	};
	const struct line_case *c;
	const char *why;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		c = &cases[i];
		why = NULL;
		rc = headers_check_line_layout(c->buf, c->buf + c->target_at,
					       c->target_len,
					       c->buf + c->version_at, &why);
		if (rc != c->rc) {
			print_error("%s: rc %d, want %d\n", c->what, rc, c->rc);
			fail();
		}
		if (rc < 0)
			assert_why(why, NULL, c->what);
	}
}

/* ---- headers_rewrite_request ---- */

#define REC_MAX 48

struct rec {
	char name[REC_MAX][256];
	char value[REC_MAX][TRACE_STATE_MAX + 1];
	size_t n;
	size_t fail_at;               /* call number that fails, 0 = none */
	int fail_rc;
	size_t calls;
};

static int rec_emit(void *arg, const char *name, size_t name_len,
		    const char *value, size_t value_len)
{
	struct rec *r = arg;

	r->calls++;
	if (r->fail_at && r->calls == r->fail_at)
		return r->fail_rc;
	assert_true(r->n < REC_MAX);
	assert_true(name_len < sizeof(r->name[0]));
	assert_true(value_len < sizeof(r->value[0]));
	memcpy(r->name[r->n], name, name_len);
	r->name[r->n][name_len] = '\0';
	memcpy(r->value[r->n], value, value_len);
	r->value[r->n][value_len] = '\0';
	r->n++;
	return 0;
}

/* Index of the first emitted field named `name` (any case), or -1. */
static int rec_index(const struct rec *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (strcasecmp(r->name[i], name) == 0)
			return (int)i;
	return -1;
}

static size_t rec_count(const struct rec *r, const char *name)
{
	size_t i, k = 0;

	for (i = 0; i < r->n; i++)
		if (strcasecmp(r->name[i], name) == 0)
			k++;
	return k;
}

/* The one emitted value of `name`; fails unless there is exactly one. */
static const char *rec_value(const struct rec *r, const char *name)
{
	int i = rec_index(r, name);

	if (i < 0 || rec_count(r, name) != 1) {
		print_error("%s emitted %zu times\n", name, rec_count(r, name));
		fail();
	}
	return r->value[i];
}

static void assert_absent(const struct rec *r, const char *name)
{
	if (rec_index(r, name) >= 0) {
		print_error("%s was emitted: \"%s\"\n", name,
			    r->value[rec_index(r, name)]);
		fail();
	}
}

static const struct headers_upstream upstream_default = {
	.host = "front.example",
	.preserve_host = true,
	.upstream_host = "up.internal:9001",
	.client_ip = "10.0.0.1",
	.request_id = "rid-1",
	.deadline_header = "X-Request-Timeout-Ms",
};

static struct rec *rewrite(const struct headers_field *f,
			   const struct headers_upstream *u)
{
	static struct rec r;

	memset(&r, 0, sizeof(r));
	assert_int_equal(headers_rewrite_request(f, fields_count(f, FIELDS_MAX),
						 u, rec_emit, &r), 0);
	return &r;
}

static void test_rewrite_drops(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "front.example"), FL("Accept", "*/*"),
		FL("Connection", "close, X-Foo"), FL("X-Foo", "secret"),
		FL("X-A", "1"), FL("Keep-Alive", "timeout=5"),
		FL("TE", "trailers"), FL("Transfer-Encoding", "chunked"),
		FL("Content-Length", "5"), FL("Expect", "100-continue"),
		FL("Upgrade", "h2c"), FL("Trailer", "X-T"),
		FL("Proxy-Connection", "keep-alive"),
		FL("Proxy-Authorization", "Basic eA=="),
		FL("Proxy-Authenticate", "Basic"),
		FL("X-Request-Id", "client-id"),
		FL("X-Forwarded-Proto", "https"),
		FL("X-Forwarded-Host", "evil"), FL("Via", "1.0 other"),
		FL("x-request-timeout-ms", "99999"), FL("X-B", "2"),
		FL("x-a", "3"),
	};
	static const char *const kept[][2] = {
		{ "Accept", "*/*" }, { "X-A", "1" }, { "X-B", "2" },
		{ "x-a", "3" },
	};
	struct rec *r = rewrite(in, &upstream_default);
	size_t i;

	(void)state;
	assert_true(r->n >= ARRAY_LEN(kept));
	for (i = 0; i < ARRAY_LEN(kept); i++) {
		assert_string_equal(r->name[i], kept[i][0]);
		assert_string_equal(r->value[i], kept[i][1]);
	}
	assert_absent(r, "X-Foo");
	assert_absent(r, "Connection");
	assert_absent(r, "Keep-Alive");
	assert_absent(r, "TE");
	assert_absent(r, "Transfer-Encoding");
	assert_absent(r, "Content-Length");
	assert_absent(r, "Upgrade");
	assert_absent(r, "Trailer");
	assert_absent(r, "Proxy-Connection");
	assert_absent(r, "Proxy-Authorization");
	assert_absent(r, "Proxy-Authenticate");
	assert_absent(r, "X-Request-Timeout-Ms");
	assert_absent(r, "Expect");
	assert_string_equal(rec_value(r, "Accept"), "*/*");
	assert_string_equal(rec_value(r, "X-Request-Id"), "rid-1");
	assert_string_equal(rec_value(r, "X-Forwarded-Proto"), "http");
	assert_string_equal(rec_value(r, "X-Forwarded-Host"), "front.example");
	assert_string_equal(rec_value(r, "Via"), "1.1 ctxproxy");
	assert_string_equal(rec_value(r, "Host"), "front.example");
	assert_string_equal(rec_value(r, "X-Forwarded-For"), "10.0.0.1");
}

static void test_rewrite_own_order(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), FL("X-Z", "z"),
	};
	static const char *const order[] = {
		"Host", "X-Request-Id", "X-Forwarded-For", "X-Forwarded-Proto",
		"X-Forwarded-Host", "Via",
	};
	struct headers_upstream u = upstream_default;
	struct rec *r;
	size_t i;

	(void)state;
	u.host = "h";
	r = rewrite(in, &u);
	assert_string_equal(r->name[0], "X-Z");
	for (i = 0; i < ARRAY_LEN(order); i++)
		assert_true(rec_index(r, order[i]) >= 0);
	for (i = 1; i < ARRAY_LEN(order); i++)
		assert_true(rec_index(r, order[i - 1]) <
			    rec_index(r, order[i]));
	assert_int_equal(rec_count(r, "Host"), 1);
}

/* Connection may name the proxy's own fields: the client's copies go, the
 * proxy's stay. */
static void test_rewrite_connection_spares_own(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"),
		FL("Connection", "X-Request-Id, Via, X-Forwarded-For, "
				 "X-Forwarded-Proto, X-Forwarded-Host, Host, "
				 "Expect, Accept"),
		FL("X-Request-Id", "client"), FL("Via", "1.0 other"),
		FL("Accept", "text/html"),
	};
	struct headers_upstream u = upstream_default;
	struct rec *r;

	(void)state;
	u.host = "h";
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "X-Request-Id"), "rid-1");
	assert_string_equal(rec_value(r, "Via"), "1.1 ctxproxy");
	assert_string_equal(rec_value(r, "X-Forwarded-For"), "10.0.0.1");
	assert_string_equal(rec_value(r, "X-Forwarded-Proto"), "http");
	assert_string_equal(rec_value(r, "X-Forwarded-Host"), "h");
	assert_string_equal(rec_value(r, "Host"), "h");
	/* The client's Accept was named, so dropped, and nothing replaces it. */
	assert_absent(r, "Accept");
}

static void test_rewrite_connection_case(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), FL("connection", "KEEP-ALIVE,x-secret"),
		FL("X-SECRET", "s"), FL("X-Public", "p"),
	};
	struct rec *r = rewrite(in, &upstream_default);

	(void)state;
	assert_absent(r, "X-Secret");
	assert_string_equal(rec_value(r, "X-Public"), "p");
}

/* The proxy writes the head itself: no empty Accept or Expect to switch
 * a library's defaults off, the client's Accept as it was. */
static void test_rewrite_accept(void **state)
{
	static const struct headers_field none[FIELDS_MAX] = {
		FL("Host", "h"),
	};
	static const struct headers_field some[FIELDS_MAX] = {
		FL("Host", "h"), FL("accept", "text/plain"),
	};
	static const struct headers_field empty[FIELDS_MAX] = {
		FL("Host", "h"), FL("Accept", ""),
	};
	struct rec *r;

	(void)state;
	r = rewrite(none, &upstream_default);
	assert_absent(r, "Accept");
	assert_absent(r, "Expect");
	r = rewrite(some, &upstream_default);
	assert_string_equal(rec_value(r, "Accept"), "text/plain");
	assert_absent(r, "Expect");
	r = rewrite(empty, &upstream_default);
	assert_string_equal(rec_value(r, "Accept"), "");
}

static void test_rewrite_host(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "client.example"), FL("X-A", "1"),
	};
	struct headers_upstream u = upstream_default;
	struct rec *r;

	(void)state;
	u.host = "client.example";
	u.preserve_host = false;
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "Host"), "up.internal:9001");
	assert_string_equal(rec_value(r, "X-Forwarded-Host"), "client.example");

	u.preserve_host = true;
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "Host"), "client.example");

	/* No host (HTTP/1.0): the upstream's Host, no X-Forwarded-Host. */
	u.host = NULL;
	r = rewrite(in + 1, &u);
	assert_string_equal(rec_value(r, "Host"), "up.internal:9001");
	assert_absent(r, "X-Forwarded-Host");
	assert_string_equal(rec_value(r, "X-Request-Id"), "rid-1");
}

static void test_rewrite_xff(void **state)
{
	static const struct headers_field two[FIELDS_MAX] = {
		FL("Host", "h"), FL("X-Forwarded-For", "a"), FL("X-A", "1"),
		FL("x-forwarded-for", "b"),
	};
	static const struct headers_field one_list[FIELDS_MAX] = {
		FL("Host", "h"), FL("X-Forwarded-For", "1.2.3.4, 5.6.7.8"),
	};
	static const struct headers_field with_empty[FIELDS_MAX] = {
		FL("Host", "h"), FL("X-Forwarded-For", ""),
		FL("X-Forwarded-For", "b"),
	};
	struct rec *r;

	(void)state;
	r = rewrite(two, &upstream_default);
	assert_string_equal(rec_value(r, "X-Forwarded-For"), "a, b, 10.0.0.1");
	r = rewrite(one_list, &upstream_default);
	assert_string_equal(rec_value(r, "X-Forwarded-For"),
			    "1.2.3.4, 5.6.7.8, 10.0.0.1");
	r = rewrite(with_empty, &upstream_default);
	assert_string_equal(rec_value(r, "X-Forwarded-For"), "b, 10.0.0.1");
}

static void test_rewrite_deadline_header(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), FL("X-Deadline", "100"),
	};
	struct headers_upstream u = upstream_default;
	struct rec *r;

	(void)state;
	u.deadline_header = "x-DEADLINE";
	r = rewrite(in, &u);
	assert_absent(r, "X-Deadline");
	/* With no deadline header configured the field is the client's. */
	u.deadline_header = "";
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "X-Deadline"), "100");
	u.deadline_header = NULL;
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "X-Deadline"), "100");
}

/* SPEC §11: with trace context on, the client's traceparent and
 * tracestate give way to the proxy's traceparent and the joined
 * tracestate (dropped over 512 bytes); off, both go on untouched. */
static void test_rewrite_trace(void **state)
{
	static char big[TRACE_STATE_MAX];
	static const char tp[] =
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), FL("TraceParent", "00-aa-bb-01"),
		FL("tracestate", "a=1"), FL("Tracestate", "b=2"),
	};
	struct headers_upstream u = upstream_default;
	const struct headers_field *first;
	struct rec *r;

	(void)state;
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "traceparent"), "00-aa-bb-01");
	assert_int_equal(rec_count(r, "tracestate"), 2);
	u.traceparent = tp;
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "traceparent"), tp);
	assert_absent(r, "tracestate");
	u.tracestate = true;
	r = rewrite(in, &u);
	assert_string_equal(rec_value(r, "traceparent"), tp);
	assert_string_equal(rec_value(r, "tracestate"), "a=1,b=2");
	/* 512 bytes in all pass; 513 are dropped. */
	memset(big, 'x', sizeof(big));
	in[3] = (struct headers_field){ "tracestate", 10, big,
					TRACE_STATE_MAX - 4 };
	r = rewrite(in, &u);
	assert_int_equal(strlen(rec_value(r, "tracestate")), TRACE_STATE_MAX);
	in[3].value_len++;
	r = rewrite(in, &u);
	assert_absent(r, "tracestate");
	assert_int_equal(headers_count(in, 4, "traceparent", &first), 1);
	assert_ptr_equal(first, &in[1]);
	assert_int_equal(headers_count(in, 4, "tracestate", &first), 2);
	assert_int_equal(headers_count(in, 4, "via", &first), 0);
	assert_null(first);
}

static void test_rewrite_emit_error(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), FL("X-A", "1"), FL("X-B", "2"),
	};
	struct rec r;
	size_t at, total;
	int rc;

	(void)state;
	total = rewrite(in, &upstream_default)->calls;
	assert_true(total >= 8);
	/* Fail each call in turn: the error comes back, nothing after it. */
	for (at = 1; at <= total; at++) {
		memset(&r, 0, sizeof(r));
		r.fail_at = at;
		r.fail_rc = -(int)(100 + at);
		rc = headers_rewrite_request(in, 3, &upstream_default, rec_emit,
					     &r);
		assert_int_equal(rc, -(int)(100 + at));
		assert_int_equal(r.calls, at);
	}
}

/* Every Connection field counts (RFC 9110 §7.6.1: a field may be sent as
 * several lines); this was a bug before 4c1705e. */
static void test_rewrite_two_connection_fields(void **state)
{
	static const struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), FL("Connection", "keep-alive"),
		FL("Connection", "X-Secret"), FL("X-Secret", "s"),
	};
	struct rec *r = rewrite(in, &upstream_default);

	(void)state;
	assert_absent(r, "X-Secret");
}

/* A Connection value of 1024 bytes or more still counts (a fixed buffer
 * ignored it before 4c1705e). */
static void test_rewrite_long_connection(void **state)
{
	static char conn[1200];
	struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), { "Connection", 10, conn, 0 },
		FL("X-Secret", "s"),
	};
	struct rec *r;
	size_t len;

	(void)state;
	memset(conn, ' ', sizeof(conn));
	memcpy(conn, "close,", 6);
	len = sizeof(conn) - 1;
	memcpy(conn + len - 8, "X-Secret", 8);
	conn[len] = '\0';
	in[1].value_len = len;
	r = rewrite(in, &upstream_default);
	assert_absent(r, "X-Secret");
}

/* A name of 128 bytes or more is still matched against Connection (a fixed
 * buffer skipped it before 4c1705e). */
static void test_rewrite_long_named_field(void **state)
{
	static char name[160];
	struct headers_field in[FIELDS_MAX] = {
		FL("Host", "h"), { "Connection", 10, name, sizeof(name) - 1 },
		{ name, sizeof(name) - 1, "s", 1 },
	};
	struct rec *r;

	(void)state;
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	r = rewrite(in, &upstream_default);
	assert_int_equal(rec_count(r, name), 0);
}

/* ---- headers_response_forwarded ---- */

struct fwd_case {
	const char *name;
	const char *connection;      /* the response's Connection, or NULL */
	bool want;
};

static void test_response_forwarded(void **state)
{
	static const struct fwd_case cases[] = {
		{ "Content-Type", NULL, true },
		{ "Set-Cookie", "close", true },
		{ "X-Request-Id", "keep-alive", true },
		{ "keep-alive", NULL, false },
		{ "Transfer-Encoding", NULL, false },
		{ "content-length", NULL, false },
		{ "Upgrade", NULL, false },
		{ "Trailer", NULL, false },
		{ "TE", NULL, false },
		{ "Proxy-Authenticate", NULL, false },
		{ "Proxy-Authorization", NULL, false },
		{ "Proxy-Connection", NULL, false },
		{ "X-Foo", "close, x-foo", false },
		{ "x-foo", "X-FOO", false },
		{ "X-Foo", "close, X-Foobar", true },
		{ "X-Foo", "", true },
	};
	struct headers_field all[2];
	size_t i, n;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		all[0] = (struct headers_field){ cases[i].name,
			strlen(cases[i].name), "v", 1 };
		n = 1;
		if (cases[i].connection)
			all[n++] = (struct headers_field){ "Connection", 10,
				cases[i].connection,
				strlen(cases[i].connection) };
		if (headers_response_forwarded(&all[0], all, n) !=
		    cases[i].want) {
			print_error("forward %s (Connection %s): want %d\n",
				    cases[i].name,
				    cases[i].connection ? cases[i].connection :
				    "none", cases[i].want);
			fail();
		}
		if (n == 2)
			assert_false(headers_response_forwarded(&all[1], all, n));
	}
}

/* SPEC §10: both fields, tokens in lists, any case; nothing less. */
static void test_wants_websocket(void **state)
{
	const struct headers_field yes[] = {
		FL("Host", "a"), FL("connection", "keep-alive, Upgrade"),
		FL("UPGRADE", "WebSocket"),
	};
	const struct headers_field list[] = {
		FL("Upgrade", "h2c, websocket"), FL("Connection", "upgrade"),
	};
	const struct headers_field other[] = {
		FL("Connection", "upgrade"), FL("Upgrade", "h2c"),
	};
	const struct headers_field no_conn[] = {
		FL("Connection", "keep-alive"), FL("Upgrade", "websocket"),
	};
	const struct headers_field prefix[] = {
		FL("Connection", "upgrade"), FL("Upgrade", "websockets"),
	};

	(void)state;
	assert_true(headers_wants_websocket(yes, ARRAY_LEN(yes)));
	assert_true(headers_wants_websocket(list, ARRAY_LEN(list)));
	assert_false(headers_wants_websocket(other, ARRAY_LEN(other)));
	assert_false(headers_wants_websocket(no_conn, ARRAY_LEN(no_conn)));
	assert_false(headers_wants_websocket(prefix, ARRAY_LEN(prefix)));
	assert_false(headers_wants_websocket(yes, 2));
	assert_false(headers_wants_websocket(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_token),
		cmocka_unit_test(test_hop_by_hop),
		cmocka_unit_test(test_list_has),
		cmocka_unit_test(test_list_has_n),
		cmocka_unit_test(test_check_request_valid),
		cmocka_unit_test(test_check_request_bad_names),
		cmocka_unit_test(test_check_request_bad_values),
		cmocka_unit_test(test_check_request_bad_framing),
		cmocka_unit_test(test_check_request_host),
		cmocka_unit_test(test_check_target),
		cmocka_unit_test(test_layout_valid),
		cmocka_unit_test(test_layout_garbage),
		cmocka_unit_test(test_layout_cut_value),
		cmocka_unit_test(test_layout_outside),
		cmocka_unit_test(test_layout_order),
		cmocka_unit_test(test_layout_extra_nul),
		cmocka_unit_test(test_layout_widest_gaps),
		cmocka_unit_test(test_line_layout),
		cmocka_unit_test(test_rewrite_drops),
		cmocka_unit_test(test_rewrite_own_order),
		cmocka_unit_test(test_rewrite_connection_spares_own),
		cmocka_unit_test(test_rewrite_connection_case),
		cmocka_unit_test(test_rewrite_accept),
		cmocka_unit_test(test_rewrite_host),
		cmocka_unit_test(test_rewrite_xff),
		cmocka_unit_test(test_rewrite_deadline_header),
		cmocka_unit_test(test_rewrite_emit_error),
		cmocka_unit_test(test_rewrite_two_connection_fields),
		cmocka_unit_test(test_rewrite_long_connection),
		cmocka_unit_test(test_rewrite_long_named_field),
		cmocka_unit_test(test_response_forwarded),
		cmocka_unit_test(test_wants_websocket),
		cmocka_unit_test(test_rewrite_trace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
