/* log.h - error log and access log lines in logfmt, one write(2) per line. */
#ifndef CTXPROXY_LOG_H
#define CTXPROXY_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* One finished request, as the access log shows it. */
struct log_access {
	const char *id;
	const char *client;       /* "ip:port" */
	const char *method;
	const char *path;         /* raw request target */
	const char *route;        /* NULL = no route */
	int status;               /* sent to the client; 499 = client left */
	int upstream_status;      /* 0 = none */
	uint64_t bytes_in;        /* request body bytes received */
	uint64_t bytes_out;       /* response body bytes sent */
	int64_t duration_ns;
	const char *cause;        /* context cause name */
	const char *phase;        /* where the request was when cancelled */
	int64_t cancel_ns;        /* monotonic time of the cancel, 0 = n/a */
	int64_t upstream_close_ns;/* monotonic time upstream was closed, 0 = n/a */
};

/* Open the access log: "-" = stderr, "off" = none, else a path opened for
 * append.  Call once before the workers start.  Returns 0 or -errno. */
int log_open_access(const char *where);

/* Close what log_open_access opened. */
void log_close(void);

/* Write "ts=... type=log level=L msg=\"...\"" plus the formatted tail (which
 * must itself be logfmt pairs or empty) to stderr.  Thread-safe: one
 * write(2) per line. */
void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write one access-log line.  Thread-safe. */
void log_access(const struct log_access *a);

/* Append `value` to buf at *off as a logfmt value, quoting and escaping
 * when it holds spaces, quotes, '=' or control bytes.  Truncates silently
 * at len; never overflows. */
void log_fmt_value(char *buf, size_t len, size_t *off, const char *value);

#endif
