/* log.c - error log and access log lines in logfmt, one write(2) per line. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096

static int access_fd = -1;       /* -1 = off */
static bool access_fd_owned;

int log_open_access(const char *where)
{
	int fd;

	if (!where || strcmp(where, "-") == 0) {
		access_fd = STDERR_FILENO;
		return 0;
	}
	if (strcmp(where, "off") == 0) {
		access_fd = -1;
		return 0;
	}
	fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	access_fd = fd;
	access_fd_owned = true;
	return 0;
}

void log_close(void)
{
	if (access_fd_owned)
		close(access_fd);
	access_fd = -1;
	access_fd_owned = false;
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

void log_fmt_value(char *buf, size_t len, size_t *off, const char *value)
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

void log_access(const struct log_access *a)
{
	char buf[LOG_LINE_MAX];
	size_t off, len = sizeof(buf);

	if (access_fd < 0)
		return;
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
	write_line(access_fd, buf, off, len);
}
