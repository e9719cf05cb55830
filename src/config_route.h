/* config_route.h - one route of the configuration: its servers, timeouts, retry and health settings (the struct; config.c loads it). */
#ifndef CTXPROXY_CONFIG_ROUTE_H
#define CTXPROXY_CONFIG_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits config_load enforces on a route. */
#define CONFIG_SERVERS_MAX 64     /* upstream servers per route (a bit mask) */
#define CONFIG_RETRIES_MAX 16     /* extra attempts per request */
#define CONFIG_EJECT_MAX_MS 300000 /* the longest ejection (doubling stops) */

/* Per-route timeouts in milliseconds; `defaults` fills what a route omits. */
struct config_timeouts {
	int64_t connect_timeout_ms; /* > 0 */
	int64_t timeout_ms;         /* > 0: the fetch's whole budget */
	int64_t header_timeout_ms;  /* >= 0, 0 = only timeout_ms bounds it */
	int64_t idle_timeout_ms;    /* >= 0, 0 = none */
};

/* What a failed attempt may be retried on (SPEC §8 `retry_on`). */
enum config_retry_on {
	CONFIG_RETRY_CONNECT = 1u << 0,  /* "connect_failure" */
	CONFIG_RETRY_RESET = 1u << 1,    /* "reset" */
	CONFIG_RETRY_TIMEOUT = 1u << 2,  /* "timeout" */
	CONFIG_RETRY_502 = 1u << 3,      /* "502" */
	CONFIG_RETRY_503 = 1u << 4,      /* "503" */
	CONFIG_RETRY_504 = 1u << 5,      /* "504" */
};
#define CONFIG_RETRY_DEFAULT (CONFIG_RETRY_CONNECT | CONFIG_RETRY_RESET)

enum config_balance { CONFIG_BALANCE_ROUND_ROBIN, CONFIG_BALANCE_LEAST_REQUEST };

/* One server of a route's upstream list. */
struct config_server {
	char *url;              /* as written */
	char *origin;           /* "http[s]://host:port", no trailing slash */
	char *host;             /* "host[:port]" for the Host field (no :80
				   for http, no :443 for https) */
	bool tls;               /* https:// */
	char *pool_key;         /* names its idle connections: the origin,
				   and for https the route's TLS settings too,
				   so connections made with other ones are
				   never shared */
	int slot;               /* set by metrics_assign_slots(): (route name,
				   origin) for the life of the process; 0 = none */
};

/* Active health checks (`health` block); on = false when absent. */
struct config_health {
	bool on;
	char *path;             /* "/..." plain path */
	int64_t interval_ms;    /* default 2000 */
	int64_t timeout_ms;     /* default 1000 */
	int rise, fall;         /* default 2, 3 */
};

/* TLS to a route's https:// servers (SPEC §9 route keys).  Relative
 * file names are resolved against the config file's directory at load. */
struct config_upstream_tls {
	bool verify;            /* tls_verify, default true */
	char *ca;               /* tls_ca: PEM file; NULL = the system store */
	char *client_cert;      /* tls_client_cert: PEM; NULL = none */
	char *client_key;       /* tls_client_key: set with client_cert */
	char *server_name;      /* tls_server_name: SNI and the verified
				   name; NULL = the URL's host */
};

struct config_route {
	char *name;
	char *prefix;           /* starts with "/" */
	char *host;             /* lower-case, no port; NULL = any host */
	struct config_server *servers; /* 1 .. CONFIG_SERVERS_MAX, in order */
	size_t nservers;
	char *upstream_base;    /* "" or "/base" (never a trailing slash),
				   the same for every server */
	bool strip_prefix;      /* default false */
	bool preserve_host;     /* default true */
	bool websocket;         /* Upgrade: websocket tunnels; default true */
	int64_t tunnel_idle_timeout_ms; /* silence both ways ends a tunnel;
					   0 = off (default) */
	int64_t tunnel_max_ms;  /* a tunnel's lifetime; 0 = off (default) */
	struct config_timeouts t;
	enum config_balance balance;   /* default round robin */
	int retries;                   /* 0 .. CONFIG_RETRIES_MAX, default 1 */
	unsigned retry_on;             /* CONFIG_RETRY_* bits, default
					  CONFIG_RETRY_DEFAULT */
	int64_t per_try_timeout_ms;    /* 0 = what is left of timeout_ms */
	int eject_after;               /* 0 = off, default 5 */
	int64_t eject_ms;              /* 1 .. CONFIG_EJECT_MAX_MS, default 10000 */
	struct config_health health;
	struct config_upstream_tls tls;
	int line;               /* where the route starts in the file */
	int metrics_slot;       /* set by metrics_assign_slots(); 0 = none */
};

#endif
