/* config.h - the daemon's configuration: libconfig file to validated struct. */
#ifndef CTXPROXY_CONFIG_H
#define CTXPROXY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config_route.h"
#include "config_syntax.h"

/* Limits the configuration owns: config_load refuses more, so every part
 * of the daemon may size its tables by them. */
#define CONFIG_LISTEN_MAX 16      /* listen addresses (one daemon each per worker) */
#define CONFIG_WORKERS_MAX 256    /* worker threads */
#define CONFIG_KEEPALIVE_MAX 100000 /* idle upstream connections per server */

/* One tls_certificates entry: file names made absolute against the
 * configuration file's directory when relative (as @include resolves). */
struct config_tls_cert {
	char *cert;                     /* PEM: the certificate, then its chain */
	char *key;                      /* PEM: its private key, unencrypted */
	char *where;                    /* "FILE:LINE" of the entry, for messages */
};

struct config {
	char *path;                     /* the file it came from */
	/* listen then tls_listen addresses, 1 .. CONFIG_LISTEN_MAX in all:
	 * the last nlisten_tls of them are TLS listeners. */
	struct config_addr *listen;
	size_t nlisten;
	size_t nlisten_tls;
	struct config_tls_cert *tls_certs; /* 1.. when nlisten_tls > 0, else none */
	size_t ntls_certs;
	int tls_min_version;            /* 12 (default) or 13 */
	char *admin;                    /* NULL when absent */
	bool admin_show_query;          /* the live view shows query strings;
					   default false: paths only */
	int workers;                    /* 1 .. CONFIG_WORKERS_MAX; default: CPUs */
	int64_t max_connections;        /* default 10000 */
	int64_t client_header_timeout_ms; /* default 10000 */
	int64_t client_idle_timeout_ms;   /* default 60000 */
	int64_t max_body_bytes;         /* default 100 MiB; 0 = no body allowed */
	int64_t shutdown_grace_ms;      /* default 10000 */
	char *access_log;               /* "-" (stderr), "off" or a path */
	char *access_log_format;        /* "logfmt" or "json" */
	int log_level;                  /* enum log_level: debug .. error;
					   default info */
	char *deadline_header;          /* "" disables; default X-Request-Timeout-Ms */
	int upstream_keepalive;         /* idle connections kept per worker and
					   upstream server; default 256, 0 = none */
	int64_t upstream_keepalive_timeout_ms; /* default 60000 */
	bool trace_context;             /* W3C traceparent joined; default true */
	int trace_sample_percent;       /* new traces sampled, 0..100; default 0 */
	char *otlp_endpoint;            /* "http[s]://host:port/path"; NULL = none */
	struct config_timeouts defaults;
	struct config_route *routes;
	size_t nroutes;
};

/* Parse and validate the file at path.  Every problem found is written to
 * err as "FILE:LINE: message\n" (LINE 0 when there is none); returns NULL
 * if there was any, else a config the caller frees with config_free(). */
struct config *config_load(const char *path, FILE *err);

/* Same, from text in memory; `name` is used in messages as FILE. */
struct config *config_load_string(const char *name, const char *text, FILE *err);

/* config_free(NULL) is a no-op. */
void config_free(struct config *cfg);

#endif
