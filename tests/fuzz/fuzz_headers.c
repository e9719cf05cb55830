/* fuzz_headers.c - libFuzzer target: src/headers.c against independent oracles. */
/*
 * Input: byte 0 holds flags (see FL_*), byte 1 picks where a layout
 * mutation lands and which emit call fails; the rest is lines split on LF.
 * The first line is the request target, each further one "name:value"
 * (split at the first ':').  Inside a line, \n \r \0 \t \c and \\ stand
 * for LF, CR, NUL, tab, ':' and '\', so any byte can reach a name or a
 * value; names and values are passed with explicit lengths.  A failed
 * check calls abort(), which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "headers.h"

#define MAX_FIELDS 64

enum {
	FL_HTTP10 = 1 << 0,       /* version HTTP/1.0, else HTTP/1.1 */
	FL_NO_PRESERVE = 1 << 1,  /* preserve_host = false */
	FL_NO_DEADLINE = 1 << 2,  /* deadline_header = "" */
	FL_LF_ONLY = 1 << 3,      /* layout: LF line ends, else CRLF */
	FL_NO_OWS = 1 << 4,       /* layout: no space after the colon */
	FL_EMPTY_ELSEWHERE = 1 << 5, /* layout: empty values point to "" */
	FL_GARBAGE = 1 << 6,      /* layout: one stray 'x' in a gap */
	FL_EXTRA_NUL = 1 << 7,    /* layout: one NUL more in a gap */
};

static const char *const hop_names[] = {
	"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "proxy-authorization",
	"proxy-authenticate", "content-length",
};

struct input {
	unsigned flags;
	unsigned char pick;           /* which gap gets the stray byte */
	char *text;                   /* decoded pieces, each NUL-terminated */
	const char *target;
	size_t target_len;            /* decoded, NULs included */
	struct headers_field f[MAX_FIELDS];
	size_t n;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- small independent oracles ---- */

static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && memchr("!#$%&'*+-.^_`|~", c, 15) != NULL;
}

static bool oracle_token(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return n > 0;
}

static bool has_ctl(const char *s, size_t n)
{
	return memchr(s, '\r', n) || memchr(s, '\n', n) || memchr(s, '\0', n);
}

static bool same_name(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

static bool oracle_hop(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(hop_names) / sizeof(hop_names[0]); i++)
		if (same_name(s, n, hop_names[i]))
			return true;
	return false;
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* ---- input decoding ---- */

static char unescape(char c)
{
	switch (c) {
	case 'n': return '\n';
	case 'r': return '\r';
	case '0': return '\0';
	case 't': return '\t';
	case 'c': return ':';
	default: return c;
	}
}

/* Decode [s, s + n) to *out (NUL-terminated); returns the decoded length. */
static size_t decode(const char *s, size_t n, char **out)
{
	char *d = *out;
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			d[k++] = unescape(s[++i]);
		else
			d[k++] = s[i];
	}
	d[k] = '\0';
	*out = d + k + 1;
	return k;
}

static void add_field(struct input *in, const char *line, size_t len,
		      char **out)
{
	const char *colon = memchr(line, ':', len);
	size_t nlen = colon ? (size_t)(colon - line) : len;
	struct headers_field *f = &in->f[in->n++];

	f->name = *out;
	f->name_len = decode(line, nlen, out);
	f->value = *out;
	f->value_len = colon ? decode(colon + 1, len - nlen - 1, out) :
			       decode("", 0, out);
}

static bool parse(struct input *in, const uint8_t *data, size_t size)
{
	const char *p = (const char *)data + 2, *end = (const char *)data + size;
	const char *nl;
	char *out;

	if (size < 2)
		return false;
	in->flags = data[0];
	in->pick = data[1];
	in->n = 0;
	in->text = malloc(2 * size + 2);
	if (!in->text)
		return false;
	out = in->text;
	nl = memchr(p, '\n', (size_t)(end - p));
	in->target = out;
	in->target_len = decode(p, nl ? (size_t)(nl - p) : (size_t)(end - p),
				&out);
	while (nl && in->n < MAX_FIELDS) {
		p = nl + 1;
		nl = memchr(p, '\n', (size_t)(end - p));
		add_field(in, p, nl ? (size_t)(nl - p) : (size_t)(end - p), &out);
	}
	return true;
}

/* ---- headers_check_target ---- */

/* "." or ".." once every %2e is decoded. */
static bool segment_dots(const char *s, size_t n)
{
	char dec[4];
	size_t i = 0, k = 0;

	while (i < n) {
		if (k == 3)
			return false;
		if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
		    (s[i + 2] == 'e' || s[i + 2] == 'E')) {
			dec[k++] = '.';
			i += 3;
		} else {
			dec[k++] = s[i++];
		}
	}
	return (k == 1 && dec[0] == '.') ||
	       (k == 2 && dec[0] == '.' && dec[1] == '.');
}

static bool oracle_target(const char *t)
{
	size_t i, start = 1, path;

	if (t[0] != '/')
		return false;
	for (i = 0; t[i]; i++)
		if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] == 0x7f)
			return false;
	path = strcspn(t, "?#");
	for (i = 1; i <= path; i++) {
		if (i < path && t[i] != '/')
			continue;
		if (segment_dots(t + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

static void fuzz_target(const struct input *in)
{
	const char *why = NULL;
	int rc = headers_check_target(in->target, &why);

	check(rc == 0 || (rc == -EINVAL && why));
	check((rc == 0) == oracle_target(in->target));
}

/* ---- headers_check_request ---- */

/* Digits only, at most 18 of them (so no overflow). */
static bool oracle_length(const struct headers_field *f, long long *out)
{
	long long x = 0;
	size_t i;

	if (f->value_len == 0 || f->value_len > 18)
		return false;
	for (i = 0; i < f->value_len; i++) {
		if (f->value[i] < '0' || f->value[i] > '9')
			return false;
		x = x * 10 + (f->value[i] - '0');
	}
	*out = x;
	return true;
}

struct oracle_req {
	long long length;
	int nte, nhost;
	bool valid;
};

static void oracle_field(const struct headers_field *f, struct oracle_req *o)
{
	long long len;

	if (!oracle_token(f->name, f->name_len) ||
	    has_ctl(f->value, f->value_len))
		o->valid = false;
	if (same_name(f->name, f->name_len, "host"))
		o->nhost++;
	if (same_name(f->name, f->name_len, "transfer-encoding")) {
		o->nte++;
		if (!same_name(f->value, f->value_len, "chunked"))
			o->valid = false;
	}
	if (!same_name(f->name, f->name_len, "content-length"))
		return;
	if (!oracle_length(f, &len) || (o->length >= 0 && o->length != len))
		o->valid = false;
	else
		o->length = len;
}

static struct oracle_req oracle_request(const struct input *in)
{
	struct oracle_req o = { -1, 0, 0, true };
	size_t i;

	for (i = 0; i < in->n; i++)
		oracle_field(&in->f[i], &o);
	if (o.nte > 1 || (o.nte && o.length >= 0) || o.nhost > 1)
		o.valid = false;
	if (!(in->flags & FL_HTTP10) && o.nhost != 1)
		o.valid = false;
	/* RFC 9112 §6.1: no transfer codings in HTTP/1.0. */
	if ((in->flags & FL_HTTP10) && o.nte)
		o.valid = false;
	return o;
}

static bool fuzz_request(const struct input *in)
{
	const char *version = in->flags & FL_HTTP10 ? "HTTP/1.0" : "HTTP/1.1";
	struct headers_framing fr;
	struct oracle_req o = oracle_request(in);
	const char *why = NULL;
	int rc = headers_check_request(version, in->f, in->n, &fr, &why);

	check(rc == 0 || (rc == -EINVAL && why));
	check((rc == 0) == o.valid);
	if (rc == 0) {
		check(fr.content_length == (o.nte ? -1 : o.length));
		check(fr.chunked == (o.nte == 1));
	}
	return rc == 0;
}

/* ---- headers_rewrite_request ---- */

struct emit_state {
	const struct input *in;
	const struct headers_upstream *u;
	bool validate;
	size_t rid, via, xff, xfp, host, calls, next;
};

/* Whether any Connection field of the input names [s, s + n). */
static bool named_by_connection(const struct input *in, const char *s,
				size_t n)
{
	char name[256];
	size_t i;

	if (n >= sizeof(name))
		return false;
	memcpy(name, s, n);
	name[n] = '\0';
	for (i = 0; i < in->n; i++)
		if (same_name(in->f[i].name, in->f[i].name_len, "connection") &&
		    headers_list_has_n(in->f[i].value, in->f[i].value_len,
				       name, n))
			return true;
	return false;
}

static void count_own(struct emit_state *st, const char *name, size_t n,
		      const char *value, size_t value_len)
{
	if (same_name(name, n, "x-request-id")) {
		st->rid++;
		check(same_name(value, value_len, st->u->request_id));
	}
	st->via += same_name(name, n, "via");
	st->xff += same_name(name, n, "x-forwarded-for");
	st->xfp += same_name(name, n, "x-forwarded-proto");
	if (same_name(name, n, "host")) {
		st->host++;
		check(same_name(value, value_len, st->u->host &&
				st->u->preserve_host ? st->u->host :
				st->u->upstream_host));
	}
}

static const char *const own_names[] = {
	"host", "x-request-id", "x-forwarded-for",
	"x-forwarded-proto", "x-forwarded-host", "via",
};

static bool is_own(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(own_names) / sizeof(own_names[0]); i++)
		if (same_name(name, n, own_names[i]))
			return true;
	return false;
}

/* A client field is passed on as it came: same bytes, in order. */
static void check_client_field(struct emit_state *st, const char *name,
			       size_t name_len)
{
	while (st->next < st->in->n && st->in->f[st->next].name != name)
		st->next++;
	check(st->next < st->in->n);
	check(st->in->f[st->next].name_len == name_len);
	st->next++;
	check(!named_by_connection(st->in, name, name_len));
}

static int emit_check(void *arg, const char *name, size_t name_len,
		      const char *value, size_t value_len)
{
	struct emit_state *st = arg;

	st->calls++;
	if (!st->validate)
		return (st->calls == (size_t)st->in->pick) ? -7 : 0;
	check(oracle_token(name, name_len));
	check(!has_ctl(value, value_len));
	check(!oracle_hop(name, name_len));
	check(!same_name(name, name_len, "x-request-timeout-ms") ||
	      (st->in->flags & FL_NO_DEADLINE));
	count_own(st, name, name_len, value, value_len);
	if (!is_own(name, name_len))
		check_client_field(st, name, name_len);
	return 0;
}

/* The first Host value as a C string (NULL when none). */
static const char *first_host(const struct input *in)
{
	size_t i;

	for (i = 0; i < in->n; i++)
		if (same_name(in->f[i].name, in->f[i].name_len, "host"))
			return in->f[i].value;
	return NULL;
}

static void fuzz_rewrite(const struct input *in, bool valid)
{
	struct headers_upstream u = {
		.host = first_host(in),
		.preserve_host = !(in->flags & FL_NO_PRESERVE),
		.upstream_host = "upstream.test:8080",
		.client_ip = "192.0.2.1",
		.request_id = "fuzz-request-id",
		.deadline_header = in->flags & FL_NO_DEADLINE ? "" :
				   "X-Request-Timeout-Ms",
	};
	struct emit_state st = { in, &u, valid, 0, 0, 0, 0, 0, 0, 0 };
	int rc = headers_rewrite_request(in->f, in->n, &u, emit_check, &st);

	if (!valid) {
		check(rc == 0 || (rc == -7 && st.calls == in->pick));
		return;
	}
	check(rc == 0);
	check(st.rid == 1 && st.via == 1 && st.xff == 1 && st.xfp == 1);
	check(st.host == 1);               /* the client's or the upstream's */
}

/* ---- headers_check_layout ---- */

struct layout {
	char *buf;
	size_t len;
	const char *from;
	struct headers_field f[MAX_FIELDS];
};

static void put(struct layout *l, const char *s, size_t n)
{
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_eol(struct layout *l, unsigned flags)
{
	put(l, "\0\0", flags & FL_LF_ONLY ? 1 : 2);
}

/* A mutation lands in gap `at`: 2i is before field i's name (2n: the
 * end), 2i+1 between field i's name and value. */
static void put_mutation(struct layout *l, unsigned flags, size_t gap,
			 size_t at)
{
	if (gap != at)
		return;
	if (flags & FL_GARBAGE)
		put(l, "x", 1);
	if (flags & FL_EXTRA_NUL)
		put(l, "\0", 1);
}

static void put_field(struct layout *l, const struct input *in, size_t i,
		      size_t gap)
{
	put_mutation(l, in->flags, gap, 2 * i);
	l->f[i].name = l->buf + l->len;
	l->f[i].name_len = in->f[i].name_len;
	put(l, in->f[i].name, in->f[i].name_len);
	put(l, "\0 ", in->flags & FL_NO_OWS ? 1 : 2);
	put_mutation(l, in->flags, gap, 2 * i + 1);
	l->f[i].value = l->buf + l->len;
	l->f[i].value_len = in->f[i].value_len;
	if (!in->f[i].value_len && (in->flags & FL_EMPTY_ELSEWHERE))
		l->f[i].value = "";
	put(l, in->f[i].value, in->f[i].value_len);
	put_eol(l, in->flags);
}

/* The head libmicrohttpd would leave for the input, maybe mutated. */
static void layout_build(struct layout *l, const struct input *in, size_t gap)
{
	size_t i;

	l->len = 0;
	put(l, "GET\0", 4);
	put(l, in->target, strlen(in->target) + 1);
	put(l, "HTTP/1.1", 8);
	l->from = l->buf + l->len;
	put_eol(l, in->flags);
	for (i = 0; i < in->n; i++)
		put_field(l, in, i, gap);
	put_mutation(l, in->flags, gap, 2 * in->n);
	put_eol(l, in->flags);
}

/* A clean layout must pass; a stray byte must not; nor, with CR LF line
 * ends (every gap then at its widest), one NUL more. */
static void fuzz_layout(const struct input *in, size_t input_len)
{
	struct layout l;
	const char *why = NULL;
	bool bad;
	int rc;

	l.buf = malloc(2 * input_len + strlen(in->target) + 64 + 8 * in->n);
	if (!l.buf)
		return;
	layout_build(&l, in, in->pick % (2 * in->n + 1));
	rc = headers_check_layout(l.from, l.buf + l.len, l.f, in->n, &why);
	check(rc == 0 || (rc == -EINVAL && why));
	bad = (in->flags & FL_GARBAGE) ||
	      ((in->flags & FL_EXTRA_NUL) && !(in->flags & FL_LF_ONLY));
	if (bad || !(in->flags & FL_EXTRA_NUL))
		check((rc == 0) == !bad);
	free(l.buf);
}

/* ---- headers_check_line_layout ---- */

/* "GET\0" target "\0HTTP/1.1": only a target without NUL lines up. */
static void fuzz_line_layout(const struct input *in)
{
	size_t len = 4 + in->target_len + 1 + 9;
	char *buf = malloc(len);
	const char *why = NULL;
	int rc;

	if (!buf)
		return;
	memcpy(buf, "GET\0", 4);
	memcpy(buf + 4, in->target, in->target_len);
	memcpy(buf + 4 + in->target_len, "\0HTTP/1.1", 10);
	rc = headers_check_line_layout(buf, buf + 4, strlen(buf + 4),
				       buf + 4 + in->target_len + 1, &why);
	check((rc == 0) == (strlen(in->target) == in->target_len));
	check(rc == 0 || why);
	free(buf);
}

/* ---- headers_response_forwarded, headers_list_has_n, hop-by-hop ---- */

/* [*p, *p + *n) without its leading and trailing spaces and tabs. */
static void trim(const char **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* The domain where a plain comma split is the truth: the name is a token
 * and every list element, OWS trimmed, is a token or empty. */
static bool list_simple(const char *list, const char *name)
{
	const char *p = list, *e;
	size_t n, en;

	if (!oracle_token(name, strlen(name)))
		return false;
	for (;;) {
		n = strcspn(p, ",");
		e = p;
		en = n;
		trim(&e, &en);
		if (en && !oracle_token(e, en))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

static bool oracle_list_has(const char *list, const char *name)
{
	const char *p = list, *e;
	size_t n, en;

	for (;;) {
		n = strcspn(p, ",");
		e = p;
		en = n;
		trim(&e, &en);
		if (same_name(e, en, name))
			return true;
		if (!p[n])
			return false;
		p += n + 1;
	}
}

static void fuzz_lists(const struct input *in)
{
	struct headers_field lone;
	const char *name, *list;
	size_t i;

	for (i = 0; i < in->n; i++) {
		name = in->f[i].name;       /* NUL-terminated copies */
		list = in->f[(i + 1) % in->n].value;
		lone = in->f[i];
		lone.value = "";
		lone.value_len = 0;
		check(headers_response_forwarded(&lone, &lone, 1) ==
		      !oracle_hop(lone.name, lone.name_len));
		check(headers_is_token(in->f[i].name, in->f[i].name_len) ==
		      oracle_token(in->f[i].name, in->f[i].name_len));
		if (headers_response_forwarded(&in->f[i], in->f, in->n))
			check(!oracle_hop(in->f[i].name, in->f[i].name_len));
		if (list_simple(list, name))
			check(headers_list_has_n(list, strlen(list), name,
						 strlen(name)) ==
			      oracle_list_has(list, name));
		else
			(void)headers_list_has_n(list, strlen(list), name,
						 strlen(name));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;
	bool valid;

	if (!parse(&in, data, size))
		return 0;
	fuzz_target(&in);
	valid = fuzz_request(&in);
	fuzz_rewrite(&in, valid);
	fuzz_layout(&in, size);
	fuzz_line_layout(&in);
	fuzz_lists(&in);
	free(in.text);
	return 0;
}
