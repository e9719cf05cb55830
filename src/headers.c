/* headers.c - HTTP header field rules shared by both hops. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "headers.h"
#include "trace.h"

/* A field name with its length, so most comparisons end at the length. */
struct fname {
	const char *s;
	size_t len;
};
#define FN(lit) { lit, sizeof(lit) - 1 }

static const struct fname hop_fields[] = {
	FN("connection"), FN("keep-alive"), FN("proxy-connection"), FN("te"),
	FN("trailer"), FN("transfer-encoding"), FN("upgrade"),
	FN("proxy-authorization"), FN("proxy-authenticate"),
	FN("content-length"),
};

static bool field_is_hop(const struct headers_field *f);

/* The one comma-list scanner (contract in headers.h). */
bool headers_list_has_n(const char *v, size_t n, const char *name,
			size_t name_len)
{
	size_t i = 0, tok;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		tok = i;
		while (i < n && v[i] != ' ' && v[i] != '\t' && v[i] != ',')
			i++;
		if (i - tok == name_len &&
		    strncasecmp(v + tok, name, name_len) == 0)
			return true;
	}
	return false;
}

/* RFC 9110 tchar, one lookup a byte: every field name of every request
 * passes through here. */
static const bool tchar[256] = {
	['0' ... '9'] = true, ['a' ... 'z'] = true, ['A' ... 'Z'] = true,
	['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true,
	['\''] = true, ['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true,
	['^'] = true, ['_'] = true, ['`'] = true, ['|'] = true, ['~'] = true,
};

bool headers_is_token(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (!tchar[(unsigned char)s[i]])
			return false;
	return true;
}

static bool name_is_n(const struct headers_field *f, const char *name,
		      size_t len)
{
	return f->name_len == len && strncasecmp(f->name, name, len) == 0;
}

#define NAME_IS(f, lit) name_is_n((f), lit, sizeof(lit) - 1)

/* Parse a Content-Length value: digits only (no sign, no list), at most
 * 18 of them so it cannot overflow. */
static bool parse_length(const char *v, size_t n, long long *out)
{
	long long x = 0;
	size_t i;

	if (n == 0 || n > 18)
		return false;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (v[i] - '0');
	}
	*out = x;
	return true;
}

static int field_check(const struct headers_field *f, const char **why)
{
	if (!headers_is_token(f->name, f->name_len)) {
		*why = "bad header name";
		return -EINVAL;
	}
	if (memchr(f->value, '\r', f->value_len) ||
	    memchr(f->value, '\n', f->value_len) ||
	    memchr(f->value, '\0', f->value_len)) {
		*why = "bad header value";
		return -EINVAL;
	}
	return 0;
}

/* Content-Length and Transfer-Encoding: one framing, unambiguous. */
static int framing_add(const struct headers_field *f,
		       struct headers_framing *fr, int *nte, const char **why)
{
	long long len;

	if (NAME_IS(f, "content-length")) {
		if (!parse_length(f->value, f->value_len, &len) ||
		    (fr->content_length >= 0 && fr->content_length != len)) {
			*why = "bad content-length";
			return -EINVAL;
		}
		fr->content_length = len;
	} else if (NAME_IS(f, "transfer-encoding")) {
		(*nte)++;
		if (f->value_len != 7 ||
		    strncasecmp(f->value, "chunked", 7) != 0) {
			*why = "unsupported transfer-encoding";
			return -EINVAL;
		}
		fr->chunked = true;
	}
	return 0;
}

int headers_check_request(const char *version, const struct headers_field *f,
			  size_t n, struct headers_framing *fr, const char **why)
{
	int nhost = 0, nte = 0;
	size_t i;

	fr->content_length = -1;
	fr->chunked = false;
	for (i = 0; i < n; i++) {
		if (field_check(&f[i], why) < 0 ||
		    framing_add(&f[i], fr, &nte, why) < 0)
			return -EINVAL;
		if (NAME_IS(&f[i], "host"))
			nhost++;
	}
	if (nte > 1) {
		*why = "repeated transfer-encoding";
		return -EINVAL;
	}
	if (fr->chunked && fr->content_length >= 0) {
		*why = "both content-length and transfer-encoding";
		return -EINVAL;
	}
	/* RFC 9112 §6.1: HTTP/1.0 has no transfer codings: faulty framing. */
	if (nte && version && strcmp(version, "HTTP/1.0") == 0) {
		*why = "transfer-encoding in HTTP/1.0";
		return -EINVAL;
	}
	if (nhost > 1 || (nhost == 0 && version &&
			  strcmp(version, "HTTP/1.0") != 0)) {
		*why = nhost ? "repeated host" : "missing host";
		return -EINVAL;
	}
	return 0;
}

/* A path segment that is "." or "..", literally or as %2e. */
static bool segment_is_dots(const char *s, size_t n)
{
	size_t dots = 0, i = 0;

	while (i < n) {
		if (s[i] == '.') {
			i++;
		} else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
			   (s[i + 2] == 'e' || s[i + 2] == 'E')) {
			i += 3;
		} else {
			return false;
		}
		dots++;
	}
	return dots == 1 || dots == 2;
}

int headers_check_target(const char *target, const char **why)
{
	const char *p, *seg;
	size_t len;

	if (!target || target[0] != '/') {
		*why = "bad request target";
		return -EINVAL;
	}
	for (p = target; *p; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f) {
			*why = "bad request target";
			return -EINVAL;
		}
	}
	len = strcspn(target, "?#");
	for (seg = target + 1; seg <= target + len; ) {
		p = memchr(seg, '/', (size_t)(target + len - seg));
		if (!p)
			p = target + len;
		if (segment_is_dots(seg, (size_t)(p - seg))) {
			*why = "dot-segment in path";
			return -EINVAL;
		}
		seg = p + 1;
	}
	return 0;
}

/* Only blanks, and at most max_nul NULs: the separators MHD wrote over
 * (a colon, CR and LF).  One NUL more is a NUL the client sent. */
static bool gap_ok(const char *p, const char *end, int max_nul)
{
	for (; p < end; p++) {
		if (*p == '\0' && --max_nul < 0)
			return false;
		if (*p != '\0' && *p != ' ' && *p != '\t')
			return false;
	}
	return true;
}

/* [s, s + n) must start at or after *p and end by `end`, with only a gap
 * of separators between *p and s; *p then moves past it. */
static bool span_next(const char **p, const char *end, const char *s,
		      size_t n, int max_nul)
{
	if (s < *p || s > end || n > (size_t)(end - s) ||
	    !gap_ok(*p, s, max_nul))
		return false;
	*p = s + n;
	return true;
}

int headers_check_layout(const char *from, const char *end,
			 const struct headers_field *f, size_t n,
			 const char **why)
{
	const char *p = from;
	int eol = 2;                      /* CR LF ahead of the next name */
	size_t i;

	for (i = 0; i < n; i++) {
		if (!span_next(&p, end, f[i].name, f[i].name_len, eol))
			goto bad;
		eol = 2;
		/* An empty value may live anywhere (a static ""): its colon
		 * then joins the next gap. */
		if (!f[i].value_len)
			eol = 3;
		else if (!span_next(&p, end, f[i].value, f[i].value_len, 1))
			goto bad;
	}
	if (gap_ok(p, end, eol + 2))      /* and the empty line's CR LF */
		return 0;
bad:
	*why = "malformed header block";
	return -EINVAL;
}

int headers_check_line_layout(const char *method, const char *target,
			      size_t target_len, const char *version,
			      const char **why)
{
	if (method + strlen(method) + 1 != target ||
	    target + target_len + 1 != version) {
		*why = "malformed request line";
		return -EINVAL;
	}
	return 0;
}

/* Fields the proxy sets itself, so never copied from the client. */
static const struct fname own_fields[] = {
	FN("host"), FN("expect"), FN("x-request-id"), FN("x-forwarded-for"),
	FN("x-forwarded-proto"), FN("x-forwarded-host"), FN("via"),
};

static bool field_in(const struct headers_field *f, const struct fname *set,
		     size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (name_is_n(f, set[i].s, set[i].len))
			return true;
	return false;
}

/* Is f named by any of the client's Connection fields? */
static bool field_named_in(const struct headers_field *f,
			   const struct headers_field *in, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (NAME_IS(&in[i], "connection") &&
		    headers_list_has_n(in[i].value, in[i].value_len, f->name,
				       f->name_len))
			return true;
	return false;
}

static bool field_is_hop(const struct headers_field *f)
{
	return field_in(f, hop_fields, sizeof(hop_fields) / sizeof(hop_fields[0]));
}

static bool field_managed(const struct headers_field *f)
{
	return field_is_hop(f) || field_in(f, own_fields, sizeof(own_fields) /
					   sizeof(own_fields[0]));
}

bool headers_proxy_managed(const char *name)
{
	struct headers_field f = { name, strlen(name), "", 0 };

	return field_managed(&f);
}

/* has_conn: the client sent a Connection field (most do not, and then
 * no field needs the lists searched). */
static bool field_forwarded(const struct headers_field *f,
			    const struct headers_upstream *u, size_t dl_len,
			    const struct headers_field *in, size_t n,
			    bool has_conn)
{
	if (field_managed(f))
		return false;
	if (dl_len && name_is_n(f, u->deadline_header, dl_len))
		return false;
	if (u->traceparent &&
	    (NAME_IS(f, "traceparent") || NAME_IS(f, "tracestate")))
		return false;
	return !has_conn || !field_named_in(f, in, n);
}

static int emit_str(headers_emit_fn emit, void *arg, const char *name,
		    const char *value)
{
	return emit(arg, name, strlen(name), value, strlen(value));
}

/* X-Forwarded-For: every client copy joined with ", ", then client_ip. */
static int emit_xff(const struct headers_field *in, size_t n,
		    const char *client_ip, headers_emit_fn emit, void *arg)
{
	size_t i, len = strlen(client_ip) + 1, off = 0;
	char *buf;
	int rc;

	for (i = 0; i < n; i++)
		if (NAME_IS(&in[i], "x-forwarded-for"))
			len += in[i].value_len + 2;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (!NAME_IS(&in[i], "x-forwarded-for") || !in[i].value_len)
			continue;
		memcpy(buf + off, in[i].value, in[i].value_len);
		off += in[i].value_len;
		memcpy(buf + off, ", ", 2);
		off += 2;
	}
	memcpy(buf + off, client_ip, strlen(client_ip) + 1);
	rc = emit_str(emit, arg, "X-Forwarded-For", buf);
	free(buf);
	return rc;
}

/* The client's tracestate fields joined with "," (RFC 9110 §5.3), or
 * nothing when that is empty or longer than TRACE_STATE_MAX. */
static int emit_tracestate(const struct headers_field *in, size_t n,
			   headers_emit_fn emit, void *arg)
{
	char buf[TRACE_STATE_MAX];
	size_t i, len = 0;

	for (i = 0; i < n; i++) {
		if (!NAME_IS(&in[i], "tracestate") || !in[i].value_len)
			continue;
		if (len + !!len + in[i].value_len > sizeof(buf))
			return 0;
		if (len)
			buf[len++] = ',';
		memcpy(buf + len, in[i].value, in[i].value_len);
		len += in[i].value_len;
	}
	return len ? emit(arg, "tracestate", 10, buf, len) : 0;
}

static int emit_own(const struct headers_field *in, size_t n,
		    const struct headers_upstream *u, headers_emit_fn emit,
		    void *arg)
{
	const char *host = u->host && u->preserve_host ? u->host :
		u->upstream_host;
	int rc = 0;

	if (host)
		rc = emit_str(emit, arg, "Host", host);
	if (!rc)
		rc = emit_str(emit, arg, "X-Request-Id", u->request_id);
	if (!rc)
		rc = emit_xff(in, n, u->client_ip, emit, arg);
	if (!rc)
		rc = emit_str(emit, arg, "X-Forwarded-Proto",
			      u->https ? "https" : "http");
	if (!rc && u->host)
		rc = emit_str(emit, arg, "X-Forwarded-Host", u->host);
	if (!rc)
		rc = emit_str(emit, arg, "Via", "1.1 ctxproxy");
	if (!rc && u->traceparent)
		rc = emit_str(emit, arg, "traceparent", u->traceparent);
	if (!rc && u->traceparent && u->tracestate)
		rc = emit_tracestate(in, n, emit, arg);
	return rc;
}

int headers_rewrite_request(const struct headers_field *in, size_t n,
			    const struct headers_upstream *u,
			    headers_emit_fn emit, void *arg)
{
	size_t dl_len = u->deadline_header ? strlen(u->deadline_header) : 0;
	bool has_conn = false;
	size_t i;
	int rc;

	for (i = 0; i < n && !has_conn; i++)
		has_conn = NAME_IS(&in[i], "connection");
	for (i = 0; i < n; i++) {
		if (!field_forwarded(&in[i], u, dl_len, in, n, has_conn))
			continue;
		rc = emit(arg, in[i].name, in[i].name_len, in[i].value,
			  in[i].value_len);
		if (rc < 0)
			return rc;
	}
	return emit_own(in, n, u, emit, arg);
}

size_t headers_count(const struct headers_field *f, size_t n,
		     const char *name, const struct headers_field **first)
{
	size_t i, count = 0, len = strlen(name);

	*first = NULL;
	for (i = 0; i < n; i++) {
		if (!name_is_n(&f[i], name, len))
			continue;
		if (!count++)
			*first = &f[i];
	}
	return count;
}

bool headers_response_forwarded(const struct headers_field *f,
				const struct headers_field *all, size_t n)
{
	return !field_is_hop(f) && !field_named_in(f, all, n);
}

/* Whether a field named name (case-insensitive) lists token. */
static bool field_lists(const struct headers_field *f, size_t n,
			const char *name, const char *token)
{
	size_t i, len = strlen(name);

	for (i = 0; i < n; i++)
		if (name_is_n(&f[i], name, len) &&
		    headers_list_has_n(f[i].value, f[i].value_len, token,
				       strlen(token)))
			return true;
	return false;
}

bool headers_wants_websocket(const struct headers_field *f, size_t n)
{
	return field_lists(f, n, "Connection", "upgrade") &&
		field_lists(f, n, "Upgrade", "websocket");
}
