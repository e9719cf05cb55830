/* log.c - error log lines, and buffered access-log lines in logfmt or JSON. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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

void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	char buf[LOG_LINE_MAX];
	size_t off;
	va_list ap;
	int n;

	off = (size_t)snprintf(buf, sizeof(buf), "ts=");
	off += fmt_time(buf + off, sizeof(buf) - off);
	appendf(buf, sizeof(buf), &off, " type=log level=%s", names[level]);
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

/* The logfmt line, without its newline. */
static size_t fmt_logfmt(char *buf, size_t len, const struct log_access *a)
{
	size_t off;

	off = (size_t)snprintf(buf, len, "ts=");
	off += fmt_time(buf + off, len - off);
	appendf(buf, len, &off, " type=access");
	append_kv(buf, len, &off, "id", a->id);
	append_kv(buf, len, &off, "client", a->client);
	append_kv(buf, len, &off, "method", a->method);
	append_kv(buf, len, &off, "path", a->path);
	append_kv(buf, len, &off, "route", a->route);
	appendf(buf, len, &off, " status=%d upstream_status=%d bytes_in=%llu"
		" bytes_out=%llu duration_ms=%.3f", a->status, a->upstream_status,
		(unsigned long long)a->bytes_in,
		(unsigned long long)a->bytes_out, (double)a->duration_ns / 1e6);
	append_kv(buf, len, &off, "cause", a->cause);
	append_kv(buf, len, &off, "phase", a->phase);
	if (a->cancel_ns)
		appendf(buf, len, &off, " cancel_us=%lld",
			(long long)(a->cancel_ns / 1000));
	if (a->upstream_close_ns)
		appendf(buf, len, &off, " upstream_close_us=%lld",
			(long long)(a->upstream_close_ns / 1000));
	if (a->cancel_ns && a->upstream_close_ns)
		appendf(buf, len, &off, " propagation_us=%lld",
			(long long)((a->upstream_close_ns - a->cancel_ns) / 1000));
	return off;
}

/* A JSON string value: quotes, escapes, control bytes as \u00XX. */
static void json_str(char *buf, size_t len, size_t *off, const char *key,
		     const char *v)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(v ? v : "-");

	appendf(buf, len, off, ",\"%s\":\"", key);
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

static size_t fmt_json(char *buf, size_t len, const struct log_access *a)
{
	char ts[40];
	size_t off;

	fmt_time(ts, sizeof(ts));
	off = (size_t)snprintf(buf, len, "{\"ts\":\"%s\",\"type\":\"access\"", ts);
	json_str(buf, len, &off, "id", a->id);
	json_str(buf, len, &off, "client", a->client);
	json_str(buf, len, &off, "method", a->method);
	json_str(buf, len, &off, "path", a->path);
	json_str(buf, len, &off, "route", a->route);
	appendf(buf, len, &off, ",\"status\":%d,\"upstream_status\":%d,"
		"\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f",
		a->status, a->upstream_status, (unsigned long long)a->bytes_in,
		(unsigned long long)a->bytes_out, (double)a->duration_ns / 1e6);
	json_str(buf, len, &off, "cause", a->cause);
	json_str(buf, len, &off, "phase", a->phase);
	if (a->cancel_ns)
		appendf(buf, len, &off, ",\"cancel_us\":%lld",
			(long long)(a->cancel_ns / 1000));
	if (a->upstream_close_ns)
		appendf(buf, len, &off, ",\"upstream_close_us\":%lld",
			(long long)(a->upstream_close_ns / 1000));
	if (a->cancel_ns && a->upstream_close_ns)
		appendf(buf, len, &off, ",\"propagation_us\":%lld",
			(long long)((a->upstream_close_ns - a->cancel_ns) / 1000));
	put_char(buf, len, &off, '}');
	return off;
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
	if (atomic_load_explicit(&access_json, memory_order_relaxed))
		n = fmt_json(line, sizeof(line) - 1, a);
	else
		n = fmt_logfmt(line, sizeof(line) - 1, a);
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
