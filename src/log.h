/* log.h - error log lines, and buffered access-log lines in logfmt or JSON. */
#ifndef CTXPROXY_LOG_H
#define CTXPROXY_LOG_H

#include <stdbool.h>

#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* One finished request, as the access log shows it. */
struct log_access {
	const char *id;
	const char *trace_id;     /* W3C trace id, 32 hex; NULL = tracing off */
	const char *span_id;      /* this hop's span id, 16 hex; NULL = off */
	const char *client;       /* "ip:port" */
	const char *tls;          /* TLS version ("1.3"), NULL = plain */
	const char *method;
	const char *path;         /* raw request target */
	const char *route;        /* NULL = no route */
	int status;               /* sent to the client; 499 = client left */
	int upstream_status;      /* 0 = none */
	int attempts;             /* upstream attempts made (0 = none) */
	const char *upstream_addr;/* "IP:PORT" of the last attempt, NULL = none */
	uint64_t bytes_in;        /* request body bytes received */
	uint64_t bytes_out;       /* response body bytes sent */
	int64_t duration_ns;
	const char *cause;        /* context cause name */
	const char *phase;        /* where the request was when cancelled */
	int64_t cancel_ns;        /* monotonic time of the cancel, 0 = n/a */
	int64_t upstream_close_ns;/* monotonic time upstream was closed, 0 = n/a */
};

enum log_format { LOG_FORMAT_LOGFMT, LOG_FORMAT_JSON };

/* A worker's access-log buffer: lines are appended on the worker's thread
 * and written by size or age, so a slow disk costs one write(2) per
 * LOG_BUF_FLUSH_BYTES instead of one per request. */
struct log_buf;

#define LOG_BUF_FLUSH_BYTES (32 * 1024)
#define LOG_BUF_FLUSH_NS (100 * 1000000LL)

/* Open (or, when already open, switch to) the access log: "-" = stderr,
 * "off" = none, else a path opened for append; format "json" or anything
 * else for logfmt.  The file is swapped under the writers with dup2(2), so
 * workers never see a closed descriptor.  Main thread.  Returns 0 or
 * -errno (the old target stays). */
int log_open_access(const char *where, const char *format);

/* Reopen the current access-log path (SIGUSR1, after logrotate moved it).
 * Returns 0 or -errno. */
int log_reopen(void);

/* Close what log_open_access opened, after the workers stopped. */
void log_close(void);

/* A buffer for one worker.  NULL on ENOMEM. */
struct log_buf *log_buf_new(void);

/* Flush and free.  log_buf_free(NULL) is a no-op. */
void log_buf_free(struct log_buf *b);

/* Write out what is buffered. */
void log_buf_flush(struct log_buf *b);

/* When the oldest buffered line must be written (CLOCK_MONOTONIC ns), or
 * INT64_MAX when empty. */
int64_t log_buf_deadline(const struct log_buf *b);

/* Add one access-log line to b (the owner thread), flushing when full; with
 * b NULL the line is written at once.  Thread-safe for distinct buffers. */
void log_access(struct log_buf *b, const struct log_access *a);

/* Write "ts=... type=log level=L msg=\"...\"" plus the formatted tail (which
 * must itself be logfmt pairs or empty) to stderr.  Thread-safe: one
 * write(2) per line. */
void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The error log's threshold (`log_level`): log_msg prints nothing below
 * it.  LOG_INFO until set.  Any thread (a relaxed atomic). */
void log_set_level(enum log_level min);
bool log_enabled(enum log_level level);

/* "debug", "info", "warn" or "error" to its level: 0, or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);

#endif
