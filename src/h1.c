/* h1.c - HTTP/1.1 on the wire (RFC 9112): response heads and body framing parsed, request heads written; no I/O. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "h1.h"

#define SIZE_LINE_MAX 4096                     /* bytes of one chunk size line */
#define CHUNK_SIZE_LIMIT (UINT64_C(1) << 60)   /* a chunk must be smaller */
#define LENGTH_LIMIT (UINT64_C(1) << 62)       /* a Content-Length must not be larger */

static int fail(const char **why, const char *reason)
{
	*why = reason;
	return -EINVAL;
}

static bool is_blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* A reason-phrase or field-value byte: HTAB, SP, VCHAR or obs-text. */
static bool is_text(unsigned char c)
{
	return c == '\t' || (c >= ' ' && c != 0x7f);
}

static bool is_tchar(unsigned char c)
{
	char ch = (char)c;

	return headers_is_token(&ch, 1);
}

static bool name_is(const struct headers_field *f, const char *name,
		    size_t n)
{
	return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* [*p, *p + *n) without its leading and trailing blanks. */
static void trim(const char **p, size_t *n)
{
	while (*n && is_blank((unsigned char)**p)) {
		(*p)++;
		(*n)--;
	}
	while (*n && is_blank((unsigned char)(*p)[*n - 1]))
		(*n)--;
}

/* ---- response heads ---- */

ssize_t h1_head_end(const char *buf, size_t len)
{
	size_t n = len < H1_HEAD_MAX ? len : H1_HEAD_MAX, rest;
	const char *p = buf, *end = buf + n, *lf;

	/* Every line ends in LF (CR before it is optional), so the head
	 * ends at an LF followed by LF or CR LF: the empty line. */
	for (;;) {
		lf = memchr(p, '\n', (size_t)(end - p));
		if (!lf)
			break;
		rest = (size_t)(end - lf - 1);
		if (rest >= 1 && lf[1] == '\n')
			return lf + 2 - buf;
		if (rest >= 2 && lf[1] == '\r' && lf[2] == '\n')
			return lf + 3 - buf;
		p = lf + 1;
	}
	return len >= H1_HEAD_MAX ? -EMSGSIZE : 0;
}

/* The next line of [*p, end) without its LF and the CR before it; a CR
 * anywhere else stays in the line, where the byte checks refuse it. */
static bool next_line(const char **p, const char *end, const char **line,
		      size_t *n)
{
	const char *lf = memchr(*p, '\n', (size_t)(end - *p));
	size_t k;

	if (!lf)
		return false;
	k = (size_t)(lf - *p);
	if (k && lf[-1] == '\r')
		k--;
	*line = *p;
	*n = k;
	*p = lf + 1;
	return true;
}

/* "HTTP/1.x" SP 3DIGIT [SP reason] */
static int parse_status(const char *s, size_t n, struct h1_head *h,
			const char **why)
{
	size_t i;

	if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 ||
	    (s[7] != '0' && s[7] != '1'))
		return fail(why, "bad status line: not HTTP/1.0 or HTTP/1.1");
	if (s[8] != ' ' || s[9] < '1' || s[9] > '5' || s[10] < '0' ||
	    s[10] > '9' || s[11] < '0' || s[11] > '9' ||
	    (n > 12 && s[12] != ' '))
		return fail(why, "bad status line: status code");
	for (i = 13; i < n; i++)
		if (!is_text((unsigned char)s[i]))
			return fail(why, "bad status line: control byte in reason");
	h->minor = s[7] - '0';
	h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	return 0;
}

/* name ":" OWS value OWS */
static int parse_field(const char *s, size_t n, struct headers_field *f,
		       const char **why)
{
	const char *colon, *v;
	size_t name_len, vn, i;

	if (is_blank((unsigned char)s[0]))
		return fail(why, "obs-fold in field line");
	colon = memchr(s, ':', n);
	if (!colon)
		return fail(why, "field line without colon");
	name_len = (size_t)(colon - s);
	if (!name_len)
		return fail(why, "empty field name");
	/* RFC 9112 §5.1: whitespace before the colon must be refused. */
	if (is_blank((unsigned char)s[name_len - 1]))
		return fail(why, "whitespace before colon");
	if (!headers_is_token(s, name_len))
		return fail(why, "bad field name");
	v = colon + 1;
	vn = n - name_len - 1;
	trim(&v, &vn);
	for (i = 0; i < vn; i++)
		if (!is_text((unsigned char)v[i]))
			return fail(why, "control byte in field value");
	f->name = s;
	f->name_len = name_len;
	f->value = v;
	f->value_len = vn;
	return 0;
}

/* RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with keep-alive. */
static bool keep_alive(const struct h1_head *h)
{
	bool close = false, keep = false;
	size_t i;

	for (i = 0; i < h->n; i++) {
		if (!name_is(&h->f[i], "connection", 10))
			continue;
		close |= headers_list_has_n(h->f[i].value, h->f[i].value_len,
					    "close", 5);
		keep |= headers_list_has_n(h->f[i].value, h->f[i].value_len,
					   "keep-alive", 10);
	}
	return !close && (h->minor == 1 || keep);
}

int h1_parse_head(const char *buf, size_t len, struct h1_head *h,
		  const char **why)
{
	const char *p = buf, *end = buf + len, *line;
	size_t n;

	h->n = 0;
	h->keep_alive = false;
	if (!next_line(&p, end, &line, &n))
		return fail(why, "truncated head");
	if (parse_status(line, n, h, why) < 0)
		return -EINVAL;
	for (;;) {
		if (!next_line(&p, end, &line, &n))
			return fail(why, "truncated head");
		if (n == 0)
			break;
		if (h->n == H1_FIELDS_MAX)
			return fail(why, "too many fields");
		if (parse_field(line, n, &h->f[h->n], why) < 0)
			return -EINVAL;
		h->n++;
	}
	if (p != end)
		return fail(why, "bytes after the head");
	h->keep_alive = keep_alive(h);
	return 0;
}

bool h1_is_interim(int status)
{
	return status >= 100 && status < 200 && status != 101;
}

/* ---- response framing ---- */

/* A walk over the comma list [p, end). */
struct list_walk {
	const char *p, *end;
	bool over;
};

/* The next element of the list, blanks trimmed (maybe empty); false once
 * the list is used up. */
static bool list_next(struct list_walk *w, const char **e, size_t *en)
{
	const char *comma;

	if (w->over)
		return false;
	comma = memchr(w->p, ',', (size_t)(w->end - w->p));
	*e = w->p;
	*en = (size_t)((comma ? comma : w->end) - w->p);
	w->over = !comma;
	if (comma)
		w->p = comma + 1;
	trim(e, en);
	return true;
}

/* Content-Length = 1*DIGIT; a list of equal values ("5, 5") is the same
 * length (RFC 9110 §8.6). */
static bool add_length(const struct headers_field *f, uint64_t *len,
		       bool *seen)
{
	struct list_walk w = { f->value, f->value + f->value_len, false };
	const char *e;
	uint64_t x;
	size_t en, i;

	while (list_next(&w, &e, &en)) {
		if (!en)
			return false;
		x = 0;
		for (i = 0; i < en; i++) {
			if (e[i] < '0' || e[i] > '9')
				return false;
			/* Checked before it grows, so x never wraps. */
			if (x > (LENGTH_LIMIT - (uint64_t)(e[i] - '0')) / 10)
				return false;
			x = x * 10 + (uint64_t)(e[i] - '0');
		}
		if (*seen && x != *len)
			return false;
		*len = x;
		*seen = true;
	}
	return true;
}

/* transfer-coding = token *( OWS ";" OWS parameter ): each coding named
 * by a token; *chunked says whether the last one (so far) is chunked.
 * Empty list elements are ignored (RFC 9110 §5.6.1). */
static bool add_codings(const struct headers_field *f, bool *chunked,
			bool *any)
{
	struct list_walk w = { f->value, f->value + f->value_len, false };
	const char *e;
	size_t en, k;

	while (list_next(&w, &e, &en)) {
		if (!en)
			continue;
		k = 0;
		while (k < en && e[k] != ';' && !is_blank((unsigned char)e[k]))
			k++;
		if (!headers_is_token(e, k))
			return false;
		*chunked = k == 7 && strncasecmp(e, "chunked", 7) == 0;
		while (k < en && is_blank((unsigned char)e[k]))
			k++;
		if (k < en && e[k] != ';')
			return false;
		/* chunked takes no parameters: one would be a guess. */
		if (*chunked && k < en)
			return false;
		*any = true;
	}
	return true;
}

int h1_body_init(struct h1_body *b, struct h1_head *h, bool head_request,
		 const char **why)
{
	uint64_t len = 0;
	bool has_len = false, has_te = false, chunked = false, any = false;
	size_t i;

	memset(b, 0, sizeof(*b));
	for (i = 0; i < h->n; i++) {
		if (name_is(&h->f[i], "content-length", 14)) {
			if (!add_length(&h->f[i], &len, &has_len))
				return fail(why, "bad content-length");
		} else if (name_is(&h->f[i], "transfer-encoding", 17)) {
			has_te = true;
			if (!add_codings(&h->f[i], &chunked, &any))
				return fail(why, "bad transfer-encoding");
		}
	}
	/* Checked for every response, bodiless or not: such a head is
	 * broken, and what follows it cannot be trusted either. */
	if (has_te && has_len)
		return fail(why, "both content-length and transfer-encoding");
	if (has_te && !any)
		return fail(why, "empty transfer-encoding");
	if (has_te && h->minor == 0)
		return fail(why, "transfer-encoding in HTTP/1.0");
	b->length = has_len ? (int64_t)len : -1;
	if (head_request || h->status < 200 || h->status == 204 ||
	    h->status == 304) {
		b->framing = H1_NO_BODY;
		b->done = true;
	} else if (has_te) {
		b->framing = chunked ? H1_CHUNKED : H1_UNTIL_CLOSE;
	} else if (has_len) {
		b->framing = H1_LENGTH;
		b->left = len;
		b->done = len == 0;
	} else {
		b->framing = H1_UNTIL_CLOSE;
	}
	if (b->framing == H1_UNTIL_CLOSE)
		h->keep_alive = false;
	return 0;
}

/* ---- response bodies ---- */

/* Where a chunked body is (struct h1_body.state). */
enum {
	CS_SIZE0,          /* start of a size line: a hex digit must come */
	CS_SIZE,           /* hex digits, then BWS, ";" or the line end */
	CS_BWS,            /* blanks after the size or a value: ";" next */
	CS_NAME0,          /* after ";": BWS, then an extension name */
	CS_NAME,           /* in it: "=", ";", BWS or the line end next */
	CS_NAME_BWS,       /* blanks after a name: "=" or ";" next */
	CS_VAL0,           /* after "=": BWS, then a token or a quote */
	CS_VAL,            /* in a token value */
	CS_QS,             /* in a quoted-string value */
	CS_QP,             /* after a backslash in it */
	CS_QEND,           /* after its closing quote */
	CS_SIZE_LF,        /* the size line's CR seen: LF next */
	CS_DATA,           /* chunk data, b->left bytes of it */
	CS_DATA_CR,        /* after the data: CR LF or LF */
	CS_DATA_LF,        /* its CR seen: LF next */
	CS_TR0,            /* start of a trailer line or the final empty one */
	CS_TR_NAME,        /* in a trailer field name */
	CS_TR_VALUE,       /* in a trailer field value */
	CS_TR_LF,          /* a trailer line's CR seen: LF next */
	CS_END_LF,         /* the final empty line's CR seen: LF next */
	CS_FAILED,         /* refused: nothing more is decoded */
};

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The size line ended: the chunk's data, or the trailers after the last. */
static void size_line_done(struct h1_body *b)
{
	b->state = b->left ? CS_DATA : CS_TR0;
	b->line = 0;
}

/* A byte where the line may end or a new extension or BWS may start: the
 * next state, or -1 when c is none of those. */
static int ext_boundary(struct h1_body *b, unsigned char c, int blank_state)
{
	if (c == '\r')
		return CS_SIZE_LF;
	if (c == '\n') {
		size_line_done(b);
		return b->state;
	}
	if (c == ';')
		return CS_NAME0;
	if (is_blank(c))
		return blank_state;
	return -1;
}

/* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val
 * = token / quoted-string: checked, not kept. */
static int ext_step(struct h1_body *b, unsigned char c)
{
	switch (b->state) {
	case CS_BWS:
		return c == ';' ? CS_NAME0 : is_blank(c) ? CS_BWS : -1;
	case CS_NAME0:
		return is_blank(c) ? CS_NAME0 : is_tchar(c) ? CS_NAME : -1;
	case CS_NAME:
		if (is_tchar(c))
			return CS_NAME;
		return c == '=' ? CS_VAL0 : ext_boundary(b, c, CS_NAME_BWS);
	case CS_NAME_BWS:
		if (c == '=')
			return CS_VAL0;
		return c == ';' ? CS_NAME0 : is_blank(c) ? CS_NAME_BWS : -1;
	case CS_VAL0:
		if (c == '"')
			return CS_QS;
		return is_blank(c) ? CS_VAL0 : is_tchar(c) ? CS_VAL : -1;
	case CS_VAL:
		return is_tchar(c) ? CS_VAL : ext_boundary(b, c, CS_BWS);
	case CS_QS:
		if (c == '"')
			return CS_QEND;
		return c == '\\' ? CS_QP : is_text(c) ? CS_QS : -1;
	case CS_QP:
		return is_text(c) ? CS_QS : -1;
	case CS_QEND:
		return ext_boundary(b, c, CS_BWS);
	}
	return -1;
}

/* One byte of a size line: chunk-size [ chunk-ext ] CRLF. */
static int size_step(struct h1_body *b, unsigned char c, const char **why)
{
	int d = hex_value(c), next;

	if (++b->line > SIZE_LINE_MAX)
		return fail(why, "chunk size line too long");
	if (b->state == CS_SIZE0 || (b->state == CS_SIZE && d >= 0)) {
		if (d < 0)
			return fail(why, "bad chunk size");
		/* The next digit would reach CHUNK_SIZE_LIMIT. */
		if (b->left >= CHUNK_SIZE_LIMIT >> 4)
			return fail(why, "chunk size too large");
		b->left = b->left << 4 | (uint64_t)d;
		b->state = CS_SIZE;
		return 0;
	}
	if (b->state == CS_SIZE_LF) {
		if (c != '\n')
			return fail(why, "bare CR in chunk size line");
		size_line_done(b);
		return 0;
	}
	next = b->state == CS_SIZE ? ext_boundary(b, c, CS_BWS) : ext_step(b, c);
	if (next < 0)
		return fail(why, "bad chunk extension");
	b->state = next;
	return 0;
}

/* One byte of the trailer section: field lines, dropped, then an empty
 * line. */
static int trailer_step(struct h1_body *b, unsigned char c, const char **why)
{
	bool ok;

	if (++b->line > H1_HEAD_MAX)
		return fail(why, "trailer section too large");
	switch (b->state) {
	case CS_TR0:
		ok = c == '\n' || c == '\r' || is_tchar(c);
		b->state = c == '\n' ? CS_TR0 : c == '\r' ? CS_END_LF : CS_TR_NAME;
		b->done = c == '\n';
		break;
	case CS_TR_NAME:
		ok = c == ':' || is_tchar(c);
		b->state = c == ':' ? CS_TR_VALUE : CS_TR_NAME;
		break;
	case CS_TR_VALUE:
		ok = c == '\n' || c == '\r' || is_text(c);
		b->state = c == '\n' ? CS_TR0 : c == '\r' ? CS_TR_LF : CS_TR_VALUE;
		break;
	default:                /* CS_TR_LF, CS_END_LF */
		ok = c == '\n';
		b->done = b->state == CS_END_LF;
		b->state = CS_TR0;
		break;
	}
	return ok ? 0 : fail(why, "bad trailer section");
}

/* One byte of a chunked body outside chunk data. */
static int chunk_step(struct h1_body *b, unsigned char c, const char **why)
{
	switch (b->state) {
	case CS_DATA_CR:
		if (c != '\r' && c != '\n')
			return fail(why, "no CRLF after chunk data");
		b->state = c == '\r' ? CS_DATA_LF : CS_SIZE0;
		return 0;
	case CS_DATA_LF:
		if (c != '\n')
			return fail(why, "no CRLF after chunk data");
		b->state = CS_SIZE0;
		return 0;
	case CS_TR0:
	case CS_TR_NAME:
	case CS_TR_VALUE:
	case CS_TR_LF:
	case CS_END_LF:
		return trailer_step(b, c, why);
	case CS_FAILED:
		return fail(why, "chunked body already refused");
	default:
		return size_step(b, c, why);
	}
}

static ssize_t chunked_decode(struct h1_body *b, const char *in, size_t len,
			      char *out, size_t *out_len, const char **why)
{
	size_t i = 0, o = 0, n;

	while (i < len && !b->done) {
		if (b->state == CS_DATA) {
			n = len - i < b->left ? len - i : (size_t)b->left;
			if (out + o != in + i)
				memmove(out + o, in + i, n);
			i += n;
			o += n;
			b->left -= n;
			if (!b->left)
				b->state = CS_DATA_CR;
			continue;
		}
		if (chunk_step(b, (unsigned char)in[i], why) < 0) {
			b->state = CS_FAILED;
			*out_len = o;
			return -EINVAL;
		}
		i++;
	}
	*out_len = o;
	return (ssize_t)i;
}

ssize_t h1_body_decode(struct h1_body *b, const char *in, size_t len,
		       char *out, size_t *out_len, const char **why)
{
	size_t n = len;

	*out_len = 0;
	if (b->done)
		return 0;
	switch (b->framing) {
	case H1_CHUNKED:
		return chunked_decode(b, in, len, out, out_len, why);
	case H1_NO_BODY:
		b->done = true;
		return 0;
	case H1_LENGTH:
		if (b->left < n)
			n = (size_t)b->left;
		b->left -= n;
		b->done = b->left == 0;
		break;
	case H1_UNTIL_CLOSE:
		break;
	}
	if (out != in)
		memmove(out, in, n);
	*out_len = n;
	return (ssize_t)n;
}

int h1_body_eof(struct h1_body *b)
{
	if (b->framing == H1_UNTIL_CLOSE)
		b->done = true;
	return b->done ? 0 : -EPIPE;
}

/* ---- request heads ---- */

/* Room for n more bytes?  Once a put did not fit nothing more is added,
 * so a head is never written with a line missing from its middle. */
static bool room(struct h1_writer *w, size_t n)
{
	if (!w->full && w->len <= w->cap && n <= w->cap - w->len)
		return true;
	w->full = true;
	return false;
}

static void put(struct h1_writer *w, const char *s, size_t n)
{
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

void h1_put_request_line(struct h1_writer *w, const char *method,
			 const char *target, size_t target_len)
{
	size_t m = strlen(method);

	if (target_len > SIZE_MAX / 2 || !room(w, m + 1 + target_len + 11))
		return;
	put(w, method, m);
	put(w, " ", 1);
	put(w, target, target_len);
	put(w, " HTTP/1.1\r\n", 11);
}

void h1_put_field(struct h1_writer *w, const char *name, size_t name_len,
		  const char *value, size_t value_len)
{
	if (name_len > SIZE_MAX / 4 || value_len > SIZE_MAX / 4 ||
	    !room(w, name_len + 2 + value_len + 2))
		return;
	put(w, name, name_len);
	put(w, ": ", 2);
	put(w, value, value_len);
	put(w, "\r\n", 2);
}

/* n in decimal at the end of buf[20] (UINT64_MAX has 20 digits); returns
 * where the digits start.  By hand: this is on every request's path. */
static char *u64_digits(char buf[20], uint64_t n)
{
	char *p = buf + 20;

	do {
		*--p = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	return p;
}

void h1_put_field_u64(struct h1_writer *w, const char *name, size_t name_len,
		      uint64_t n)
{
	char digits[20];
	char *p = u64_digits(digits, n);

	h1_put_field(w, name, name_len, p, (size_t)(digits + 20 - p));
}

void h1_put_end(struct h1_writer *w)
{
	if (room(w, 2))
		put(w, "\r\n", 2);
}

size_t h1_chunk_line(char *buf, uint64_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;
	int shift = 60;

	if (n == 0) {
		memcpy(buf, "0\r\n\r\n", 5);
		return 5;
	}
	while (!(n >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		buf[k++] = hex[(n >> shift) & 0xf];
	buf[k++] = '\r';
	buf[k++] = '\n';
	return k;
}
