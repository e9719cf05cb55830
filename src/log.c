/* log.c - error log lines, and buffered access-log lines in logfmt or JSON. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 16384
#define LOG_PATH_MAX 2048          /* longer targets are cut, marked "..." */

/* The access log's descriptor never changes while workers run: reopening
 * dup2()s the new file onto it, and "off" only clears access_on. */
static int access_fd = -1;
static atomic_int access_on;
static atomic_int access_json;
static char *access_path;        /* NULL for stderr */

struct log_buf {
	char data[LOG_BUF_FLUSH_BYTES + LOG_LINE_MAX];
	size_t len;
	int64_t first_ns;            /* when the oldest buffered line came */
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_target(const char *where)
{
	if (!where || strcmp(where, "-") == 0)
		return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	return open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open_access(const char *where, const char *format)
{
	bool off = where && strcmp(where, "off") == 0;
	char *path = NULL;
	int fd = -1;

	if (!off) {
		fd = open_target(where);
		if (fd < 0)
			return -errno;
		if (where && strcmp(where, "-") != 0)
			path = strdup(where);
	}
	if (access_fd < 0) {
		access_fd = fd;
	} else if (fd >= 0) {
		dup2(fd, access_fd);   /* in-flight writes finish on the old file */
		close(fd);
	}
	free(access_path);
	access_path = path;
	atomic_store(&access_json, format && strcmp(format, "json") == 0);
	atomic_store(&access_on, !off);
	return 0;
}

int log_reopen(void)
{
	int fd;

	if (!access_path || access_fd < 0)
		return 0;
	fd = open_target(access_path);
	if (fd < 0)
		return -errno;
	dup2(fd, access_fd);
	close(fd);
	return 0;
}

void log_close(void)
{
	if (access_fd >= 0)
		close(access_fd);
	access_fd = -1;
	atomic_store(&access_on, 0);
	free(access_path);
	access_path = NULL;
}

struct log_buf *log_buf_new(void)
{
	return calloc(1, sizeof(struct log_buf));
}

static void write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;         /* a full disk loses lines, not requests */
		p += w;
		n -= (size_t)w;
	}
}

void log_buf_flush(struct log_buf *b)
{
	if (!b || !b->len)
		return;
	if (access_fd >= 0)
		write_all(access_fd, b->data, b->len);
	b->len = 0;
}

void log_buf_free(struct log_buf *b)
{
	log_buf_flush(b);
	free(b);
}

int64_t log_buf_deadline(const struct log_buf *b)
{
	return b && b->len ? b->first_ns + LOG_BUF_FLUSH_NS : INT64_MAX;
}

/* RFC 3339 UTC with milliseconds: the wall clock, for humans. */
static size_t fmt_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return n < len ? n : len - 1;
}

static bool needs_quotes(const char *v)
{
	if (!*v)
		return true;
	for (; *v; v++)
		if ((unsigned char)*v <= ' ' || *v == '"' || *v == '=' ||
		    *v == '\\' || (unsigned char)*v == 0x7f)
			return true;
	return false;
}

static void put_char(char *buf, size_t len, size_t *off, char c)
{
	if (*off + 1 < len)
		buf[(*off)++] = c;
	buf[*off < len ? *off : len - 1] = '\0';
}

/* Append value as a logfmt value, quoted and escaped when it holds spaces,
 * quotes, '=' or control bytes; truncated silently at len. */
static void log_fmt_value(char *buf, size_t len, size_t *off,
			  const char *value)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *v = (const unsigned char *)(value ? value : "-");
	bool quote = needs_quotes((const char *)v);

	if (quote)
		put_char(buf, len, off, '"');
	for (; *v; v++) {
		if (*v == '"' || *v == '\\') {
			put_char(buf, len, off, '\\');
			put_char(buf, len, off, (char)*v);
		} else if (*v < ' ' || *v == 0x7f) {
			put_char(buf, len, off, '\\');
			put_char(buf, len, off, 'x');
			put_char(buf, len, off, hex[*v >> 4]);
			put_char(buf, len, off, hex[*v & 15]);
		} else {
			put_char(buf, len, off, (char)*v);
		}
	}
	if (quote)
		put_char(buf, len, off, '"');
}

static void appendf(char *buf, size_t len, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void appendf(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= len - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off += (size_t)n < len - *off ? (size_t)n : len - *off - 1;
}

/* Append key=value with logfmt quoting of the value. */
static void append_kv(char *buf, size_t len, size_t *off, const char *key,
		      const char *value)
{
	appendf(buf, len, off, " %s=", key);
	log_fmt_value(buf, len, off, value);
}

static void write_line(int fd, char *buf, size_t off, size_t len)
{
	ssize_t n;

	if (off >= len - 1)
		off = len - 2;
	buf[off++] = '\n';
	do {
		n = write(fd, buf, off);
	} while (n < 0 && errno == EINTR);
}

static const char *const level_names[] = { "debug", "info", "warn", "error" };
static atomic_int min_level = LOG_INFO;

void log_set_level(enum log_level min)
{
	atomic_store_explicit(&min_level, (int)min, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load_explicit(&min_level,
						  memory_order_relaxed);
}

int log_level_parse(const char *name, enum log_level *out)
{
	int i;

	for (i = LOG_DEBUG; i <= LOG_ERROR; i++)
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	return -EINVAL;
}

void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
{
	char buf[LOG_LINE_MAX];
	size_t off;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	off = (size_t)snprintf(buf, sizeof(buf), "ts=");
	off += fmt_time(buf + off, sizeof(buf) - off);
	appendf(buf, sizeof(buf), &off, " type=log level=%s", level_names[level]);
	append_kv(buf, sizeof(buf), &off, "msg", msg);
	if (fmt && *fmt && off < sizeof(buf) - 2) {
		buf[off++] = ' ';
		va_start(ap, fmt);
		n = vsnprintf(buf + off, sizeof(buf) - off, fmt, ap);
		va_end(ap);
		if (n > 0)
			off += (size_t)n < sizeof(buf) - off ? (size_t)n :
				sizeof(buf) - off - 1;
	}
	write_line(STDERR_FILENO, buf, off, sizeof(buf));
}

/* Append v as a JSON string: quotes and backslashes escaped, control bytes
 * and bytes >= 0x7f as \u00XX, so any target (UTF-8 or not) leaves the line
 * valid JSON. */
static void json_value(char *buf, size_t len, size_t *off, const char *v)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)v;

	put_char(buf, len, off, '"');
	for (; *p; p++) {
		if (*p == '"' || *p == '\\') {
			put_char(buf, len, off, '\\');
			put_char(buf, len, off, (char)*p);
		} else if (*p < 0x20 || *p >= 0x7f) {
			appendf(buf, len, off, "\\u00%c%c", hex[*p >> 4],
				hex[*p & 15]);
		} else {
			put_char(buf, len, off, (char)*p);
		}
	}
	put_char(buf, len, off, '"');
}

/* What the access-log formats differ in: the punctuation around the line
 * and its keys, and how a string value is quoted.  Numbers print the same
 * in both. */
struct access_format {
	const char *open, *close;         /* around the line */
	const char *sep;                  /* before every key but the first */
	const char *key_open, *key_close; /* around a key */
	void (*str)(char *buf, size_t len, size_t *off, const char *value);
};

static const struct access_format logfmt_format = {
	.open = "", .close = "", .sep = " ",
	.key_open = "", .key_close = "=", .str = log_fmt_value,
};

static const struct access_format json_format = {
	.open = "{", .close = "}", .sep = ",",
	.key_open = "\"", .key_close = "\":", .str = json_value,
};

/* How a field's member of struct log_access is read and printed. */
enum field_kind {
	KIND_STR,         /* const char *, NULL printed as "-" */
	KIND_INT,         /* int */
	KIND_U64,         /* uint64_t */
	KIND_MS,          /* int64_t ns, printed as ms with 3 decimals */
	KIND_US,          /* int64_t ns, printed as whole us */
	KIND_SPAN_US,     /* int64_t ns from member off to member off2, as us */
};

/* One access-log field after ts and type: a new field is one row in
 * access_fields (and its member in struct log_access). */
struct access_field {
	const char *key;
	enum field_kind kind;
	size_t off;       /* the member's offset in struct log_access */
	size_t off2;      /* KIND_SPAN_US: the later time's member */
	bool optional;    /* left out while its member (a span's either) is 0 */
};

/* offsetof(struct log_access, m), which fails to build unless m is a t:
 * comparing distinct pointer types is an error under -Werror, so a row's
 * kind can't disagree with its member's type and read it wrongly. */
#define MEMBER(m, t) (offsetof(struct log_access, m) + \
	0 * sizeof((t *)0 == &((struct log_access *)0)->m))

#define STR_FIELD(m) .kind = KIND_STR, .off = MEMBER(m, const char *)
#define INT_FIELD(m) .kind = KIND_INT, .off = MEMBER(m, int)
#define U64_FIELD(m) .kind = KIND_U64, .off = MEMBER(m, uint64_t)
#define MS_FIELD(m) .kind = KIND_MS, .off = MEMBER(m, int64_t)
#define US_FIELD(m) .kind = KIND_US, .off = MEMBER(m, int64_t)
#define SPAN_US_FIELD(from, to) .kind = KIND_SPAN_US, \
	.off = MEMBER(from, int64_t), .off2 = MEMBER(to, int64_t)

/* The access line's fields, in the order they are printed. */
static const struct access_field access_fields[] = {
	{ "id", STR_FIELD(id) },
	{ "trace_id", STR_FIELD(trace_id), .optional = true },
	{ "span_id", STR_FIELD(span_id), .optional = true },
	{ "client", STR_FIELD(client) },
	{ "tls", STR_FIELD(tls), .optional = true },
	{ "method", STR_FIELD(method) },
	{ "path", STR_FIELD(path) },
	{ "route", STR_FIELD(route) },
	{ "status", INT_FIELD(status) },
	{ "upstream_status", INT_FIELD(upstream_status) },
	{ "attempts", INT_FIELD(attempts), .optional = true },
	{ "upstream_addr", STR_FIELD(upstream_addr), .optional = true },
	{ "bytes_in", U64_FIELD(bytes_in) },
	{ "bytes_out", U64_FIELD(bytes_out) },
	{ "duration_ms", MS_FIELD(duration_ns) },
	{ "cause", STR_FIELD(cause) },
	{ "phase", STR_FIELD(phase) },
	{ "cancel_us", US_FIELD(cancel_ns), .optional = true },
	{ "upstream_close_us", US_FIELD(upstream_close_ns), .optional = true },
	{ "propagation_us", SPAN_US_FIELD(cancel_ns, upstream_close_ns),
	  .optional = true },
};

/* The member of a at off, as the field's kind says it is. */
static const char *get_str(const struct log_access *a, size_t off)
{
	return *(const char *const *)((const char *)a + off);
}

static int get_int(const struct log_access *a, size_t off)
{
	return *(const int *)((const char *)a + off);
}

static uint64_t get_u64(const struct log_access *a, size_t off)
{
	return *(const uint64_t *)((const char *)a + off);
}

static int64_t get_i64(const struct log_access *a, size_t off)
{
	return *(const int64_t *)((const char *)a + off);
}

/* Whether f goes into a's line. */
static bool field_present(const struct access_field *f,
			  const struct log_access *a)
{
	if (!f->optional)
		return true;
	switch (f->kind) {
	case KIND_STR:
		return get_str(a, f->off) != NULL;
	case KIND_INT:
		return get_int(a, f->off) != 0;
	case KIND_U64:
		return get_u64(a, f->off) != 0;
	case KIND_MS:
	case KIND_US:
		return get_i64(a, f->off) != 0;
	case KIND_SPAN_US:
		return get_i64(a, f->off) != 0 && get_i64(a, f->off2) != 0;
	}
	return true;
}

/* An access line being built: buf[len], off of it used. */
struct access_line {
	char *buf;
	size_t len, off;
	const struct access_format *fmt;
	bool keyed;       /* a key is out, so the next one needs fmt->sep */
};

/* Append s as is, truncated silently at len as appendf does.  Not through
 * appendf: a vsnprintf per key made the access line twice as slow. */
static void append_raw(char *buf, size_t len, size_t *off, const char *s)
{
	size_t n = strlen(s);

	if (*off >= len - 1)
		return;
	if (n > len - 1 - *off)
		n = len - 1 - *off;
	memcpy(buf + *off, s, n);
	*off += n;
	buf[*off] = '\0';
}

static void put_key(struct access_line *l, const char *key)
{
	if (l->keyed)
		append_raw(l->buf, l->len, &l->off, l->fmt->sep);
	append_raw(l->buf, l->len, &l->off, l->fmt->key_open);
	append_raw(l->buf, l->len, &l->off, key);
	append_raw(l->buf, l->len, &l->off, l->fmt->key_close);
	l->keyed = true;
}

/* Append v as a string value of the line's format, NULL as "-". */
static void put_string(struct access_line *l, const char *v)
{
	l->fmt->str(l->buf, l->len, &l->off, v ? v : "-");
}

/* Append f, read from a: its key, then its value as its kind prints it. */
static void put_field(struct access_line *l, const struct access_field *f,
		      const struct log_access *a)
{
	char *buf = l->buf;
	size_t len = l->len;

	put_key(l, f->key);
	switch (f->kind) {
	case KIND_STR:
		put_string(l, get_str(a, f->off));
		break;
	case KIND_INT:
		appendf(buf, len, &l->off, "%d", get_int(a, f->off));
		break;
	case KIND_U64:
		appendf(buf, len, &l->off, "%llu",
			(unsigned long long)get_u64(a, f->off));
		break;
	case KIND_MS:
		appendf(buf, len, &l->off, "%.3f",
			(double)get_i64(a, f->off) / 1e6);
		break;
	case KIND_US:
		appendf(buf, len, &l->off, "%lld",
			(long long)(get_i64(a, f->off) / 1000));
		break;
	case KIND_SPAN_US:
		appendf(buf, len, &l->off, "%lld", (long long)
			((get_i64(a, f->off2) - get_i64(a, f->off)) / 1000));
		break;
	}
}

/* a's access line in fmt, without its newline; truncated silently at len.
 * ts and type, from the clock and a constant, head every line; neither
 * needs quoting or escaping. */
static size_t fmt_access(char *buf, size_t len, const struct log_access *a,
			 const struct access_format *fmt)
{
	struct access_line l = { .buf = buf, .len = len, .fmt = fmt };
	char ts[40];
	size_t i;

	fmt_time(ts, sizeof(ts));
	append_raw(buf, len, &l.off, fmt->open);
	put_key(&l, "ts");
	put_string(&l, ts);
	put_key(&l, "type");
	put_string(&l, "access");
	for (i = 0; i < sizeof(access_fields) / sizeof(access_fields[0]); i++)
		if (field_present(&access_fields[i], a))
			put_field(&l, &access_fields[i], a);
	append_raw(buf, len, &l.off, fmt->close);
	return l.off;
}

/* A target longer than LOG_PATH_MAX is logged cut, so that even fully
 * escaped the line stays whole (and valid JSON). */
static const char *log_path(const char *path, char *buf, size_t len)
{
	if (!path || strlen(path) < len - 4)
		return path;
	memcpy(buf, path, len - 4);
	memcpy(buf + len - 4, "...", 4);
	return buf;
}

void log_access(struct log_buf *b, const struct log_access *a_in)
{
	char line[LOG_LINE_MAX], path[LOG_PATH_MAX];
	struct log_access cut = *a_in;
	const struct log_access *a = &cut;
	size_t n;

	cut.path = log_path(a_in->path, path, sizeof(path));

	if (!atomic_load_explicit(&access_on, memory_order_acquire))
		return;
	n = fmt_access(line, sizeof(line) - 1, a,
		       atomic_load_explicit(&access_json, memory_order_relaxed) ?
		       &json_format : &logfmt_format);
	line[n++] = '\n';
	if (!b) {
		write_all(access_fd, line, n);
		return;
	}
	if (!b->len)
		b->first_ns = mono_ns();
	memcpy(b->data + b->len, line, n);
	b->len += n;
	if (b->len >= LOG_BUF_FLUSH_BYTES)
		log_buf_flush(b);
}
