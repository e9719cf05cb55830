/* config_upstream.h - a route's upstream servers and how they are picked, retried, ejected and health-checked (SPEC §8 keys). */
#ifndef CTXPROXY_CONFIG_UPSTREAM_H
#define CTXPROXY_CONFIG_UPSTREAM_H

#include <stddef.h>

#include "config_route.h"
#include "config_keys.h"

/* CONFIG_KEY_CUSTOM parsers of route keys: obj is the struct
 * config_route; each problem goes to ld with the setting's line. */
void config_parse_upstream(struct config_loader *ld, const config_setting_t *s,
			   void *obj);
void config_parse_balance(struct config_loader *ld, const config_setting_t *s,
			  void *obj);
void config_parse_retry_on(struct config_loader *ld, const config_setting_t *s,
			   void *obj);
void config_parse_health(struct config_loader *ld, const config_setting_t *s,
			 void *obj);

/* CONFIG_KEY_STRING checks of the TLS keys: a file is resolved against
 * the config file's directory and must be readable; a server name must
 * be a host name. */
void config_check_tls_ca(struct config_loader *ld, const config_setting_t *s,
			 void *obj);
void config_check_tls_cert(struct config_loader *ld, const config_setting_t *s,
			   void *obj);
void config_check_tls_key(struct config_loader *ld, const config_setting_t *s,
			  void *obj);
void config_check_tls_name(struct config_loader *ld, const config_setting_t *s,
			   void *obj);

/* A struct config_key entry for a field of struct config_route. */
#define CONFIG_ROUTE_KEY(n, kind, field, min, max, fn, req) \
	{ n, kind, offsetof(struct config_route, field), min, max, fn, req }

/* The route keys this module owns, as struct config_key entries for the
 * route table. */
#define CONFIG_UPSTREAM_KEYS                                                  \
	CONFIG_ROUTE_KEY("upstream", CONFIG_KEY_CUSTOM, servers, 0, 0,       \
			  config_parse_upstream, true),                       \
	CONFIG_ROUTE_KEY("balance", CONFIG_KEY_CUSTOM, balance, 0, 0,        \
			  config_parse_balance, false),                       \
	CONFIG_ROUTE_KEY("retries", CONFIG_KEY_INT, retries, 0,              \
			  CONFIG_RETRIES_MAX, NULL, false),                   \
	CONFIG_ROUTE_KEY("retry_on", CONFIG_KEY_CUSTOM, retry_on, 0, 0,      \
			  config_parse_retry_on, false),                      \
	CONFIG_ROUTE_KEY("per_try_timeout_ms", CONFIG_KEY_INT64,             \
			  per_try_timeout_ms, 0, CONFIG_TIMEOUT_MAX_MS, NULL, \
			  false),                                             \
	CONFIG_ROUTE_KEY("eject_after", CONFIG_KEY_INT, eject_after, 0,      \
			  1000, NULL, false),                                 \
	CONFIG_ROUTE_KEY("eject_ms", CONFIG_KEY_INT64, eject_ms, 1,          \
			  CONFIG_EJECT_MAX_MS, NULL, false),                  \
	CONFIG_ROUTE_KEY("health", CONFIG_KEY_CUSTOM, health, 0, 0,          \
			  config_parse_health, false),                        \
	CONFIG_ROUTE_KEY("tls_verify", CONFIG_KEY_BOOL, tls.verify, 0, 0,    \
			  NULL, false),                                       \
	CONFIG_ROUTE_KEY("tls_ca", CONFIG_KEY_STRING, tls.ca, 0, 0,          \
			  config_check_tls_ca, false),                        \
	CONFIG_ROUTE_KEY("tls_client_cert", CONFIG_KEY_STRING,               \
			  tls.client_cert, 0, 0, config_check_tls_cert, false), \
	CONFIG_ROUTE_KEY("tls_client_key", CONFIG_KEY_STRING,                \
			  tls.client_key, 0, 0, config_check_tls_key, false), \
	CONFIG_ROUTE_KEY("tls_server_name", CONFIG_KEY_STRING,               \
			  tls.server_name, 0, 0, config_check_tls_name, false)

/* Sets what this module's keys default to, before the route's own keys
 * are applied. */
void config_upstream_defaults(struct config_route *r);

/* After the route's keys: checks what involves several of them (a client
 * certificate needs its key) and sets each server's pool_key.  g is the
 * route's group, for the messages. */
void config_upstream_finish(struct config_loader *ld,
			    const config_setting_t *g, struct config_route *r);

/* Frees what this module's keys allocated in r (servers, upstream_base,
 * health.path, tls); r is left for its owner to free. */
void config_upstream_free(struct config_route *r);

#endif
