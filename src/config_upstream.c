/* config_upstream.c - a route's upstream servers and how they are picked, retried, ejected and health-checked (SPEC §8 keys). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_syntax.h"
#include "config_upstream.h"

/* ---- upstream: one server or a list of them ---- */

/* What a base path looks like in a message: "" is the root. */
static const char *shown_base(const char *base)
{
	return *base ? base : "/";
}

/* Splits element s into srv; the first good server sets the route's
 * base path and the others must share it. */
static void server_one(struct config_loader *ld, const config_setting_t *s,
		       struct config_route *r, struct config_server *srv)
{
	char *base = NULL;
	const char *why;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'upstream' servers must be strings");
		return;
	}
	srv->url = config_dup_or_complain(ld, s, config_setting_get_string(s));
	if (!srv->url)
		return;
	why = config_split_upstream(srv->url, &srv->origin, &base, &srv->host);
	srv->tls = srv->origin && strncmp(srv->origin, "https://", 8) == 0;
	if (why) {
		config_complain(ld, s, "invalid upstream '%s': %s", srv->url, why);
		/* no origin: the duplicate check skips this one */
		free(srv->origin);
		srv->origin = NULL;
		free(base);
		return;
	}
	if (!r->upstream_base) {
		r->upstream_base = base;
		return;
	}
	/* one target per request: route.c builds it before a server is picked */
	if (strcmp(base, r->upstream_base) != 0)
		config_complain(ld, s, "every server of 'upstream' must have the "
				"same base path: '%s' and '%s'",
				shown_base(r->upstream_base), shown_base(base));
	free(base);
}

/* Origins are normalised (lower-case host, explicit port), so
 * "http://H" and "http://h:80" are caught too. */
static void check_duplicate_servers(struct config_loader *ld,
				    const config_setting_t *list,
				    const struct config_route *r)
{
	const struct config_server *sv = r->servers;
	size_t i, j;

	for (i = 1; i < r->nservers; i++) {
		for (j = 0; j < i; j++) {
			if (!sv[i].origin || !sv[j].origin ||
			    strcmp(sv[i].origin, sv[j].origin) != 0)
				continue;
			config_complain(ld, config_setting_get_elem(list, (unsigned)i),
					"'upstream' names the same server twice: "
					"'%s' and '%s'", sv[j].url, sv[i].url);
			break;
		}
	}
}

void config_parse_upstream(struct config_loader *ld, const config_setting_t *s,
			   void *obj)
{
	struct config_route *r = obj;
	int type = config_setting_type(s);
	unsigned n = 1, i;

	if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY) {
		n = (unsigned)config_setting_length(s);
	} else if (type != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'upstream' must be a string or a list of strings");
		return;
	}
	if (n == 0) {
		config_complain(ld, s, "'upstream' must name at least one server");
		return;
	}
	if (n > CONFIG_SERVERS_MAX) {
		config_complain(ld, s, "'upstream' names more than %d servers",
				CONFIG_SERVERS_MAX);
		return;
	}
	r->servers = calloc(n, sizeof(*r->servers));
	if (!r->servers) {
		config_complain(ld, s, "out of memory");
		return;
	}
	r->nservers = n;
	if (type == CONFIG_TYPE_STRING) {
		server_one(ld, s, r, &r->servers[0]);
		return;
	}
	for (i = 0; i < n; i++)
		server_one(ld, config_setting_get_elem(s, i), r, &r->servers[i]);
	check_duplicate_servers(ld, s, r);
}

/* ---- balance and retry_on ---- */

void config_parse_balance(struct config_loader *ld, const config_setting_t *s,
			  void *obj)
{
	struct config_route *r = obj;
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'balance' must be a string");
		return;
	}
	v = config_setting_get_string(s);
	if (strcmp(v, "round_robin") == 0)
		r->balance = CONFIG_BALANCE_ROUND_ROBIN;
	else if (strcmp(v, "least_request") == 0)
		r->balance = CONFIG_BALANCE_LEAST_REQUEST;
	else
		config_complain(ld, s, "'balance' must be \"round_robin\" or "
				"\"least_request\", not '%s'", v);
}

static const struct {
	const char *name;
	unsigned bit;
} retry_conditions[] = {
	{ "connect_failure", CONFIG_RETRY_CONNECT },
	{ "reset", CONFIG_RETRY_RESET },
	{ "timeout", CONFIG_RETRY_TIMEOUT },
	{ "502", CONFIG_RETRY_502 },
	{ "503", CONFIG_RETRY_503 },
	{ "504", CONFIG_RETRY_504 },
};

#define RETRY_ON_ALLOWED "connect_failure, reset, timeout, 502, 503, 504"

/* The CONFIG_RETRY_* bit element s names, or 0 after complaining. */
static unsigned retry_condition(struct config_loader *ld,
				const config_setting_t *s)
{
	const char *v;
	size_t i;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'retry_on' values must be strings "
				"(write \"503\", not 503)");
		return 0;
	}
	v = config_setting_get_string(s);
	for (i = 0; i < CONFIG_NKEYS(retry_conditions); i++)
		if (strcmp(v, retry_conditions[i].name) == 0)
			return retry_conditions[i].bit;
	config_complain(ld, s, "unknown 'retry_on' value '%s' (allowed: "
			RETRY_ON_ALLOWED ")", v);
	return 0;
}

/* A list, an array or a lone string; ( ) retries on nothing. */
void config_parse_retry_on(struct config_loader *ld, const config_setting_t *s,
			   void *obj)
{
	struct config_route *r = obj;
	int type = config_setting_type(s);
	unsigned i, n;

	r->retry_on = 0;
	if (type == CONFIG_TYPE_STRING) {
		r->retry_on = retry_condition(ld, s);
		return;
	}
	if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY) {
		config_complain(ld, s, "'retry_on' must be a list of strings: "
				"( \"connect_failure\", \"reset\" )");
		return;
	}
	n = (unsigned)config_setting_length(s);
	for (i = 0; i < n; i++)
		r->retry_on |= retry_condition(ld, config_setting_get_elem(s, i));
}

/* ---- health ---- */

static void check_health_path(struct config_loader *ld,
			      const config_setting_t *s, void *obj)
{
	const struct config_health *h = obj;

	if (h->path[0] != '/')
		config_complain(ld, s, "health 'path' must start with \"/\", "
				"not '%s'", h->path);
	else if (!config_is_plain_target(h->path))
		config_complain(ld, s, "health 'path' must not contain spaces, "
				"control characters or '#'");
}

#define HEALTH_KEY_(n, kind, field, min, max, fn, req) \
	{ n, kind, offsetof(struct config_health, field), min, max, fn, req }

static const struct config_key health_keys[] = {
	HEALTH_KEY_("path", CONFIG_KEY_STRING, path, 0, 0, check_health_path,
		    true),
	HEALTH_KEY_("interval_ms", CONFIG_KEY_INT64, interval_ms, 1,
		    CONFIG_TIMEOUT_MAX_MS, NULL, false),
	HEALTH_KEY_("timeout_ms", CONFIG_KEY_INT64, timeout_ms, 1,
		    CONFIG_TIMEOUT_MAX_MS, NULL, false),
	HEALTH_KEY_("rise", CONFIG_KEY_INT, rise, 1, 100, NULL, false),
	HEALTH_KEY_("fall", CONFIG_KEY_INT, fall, 1, 100, NULL, false),
};

void config_parse_health(struct config_loader *ld, const config_setting_t *s,
			 void *obj)
{
	struct config_route *r = obj;
	uint64_t seen;

	if (!config_setting_is_group(s)) {
		config_complain(ld, s, "'health' must be a group "
				"{ path = \"/healthz\"; ... }");
		return;
	}
	r->health.on = true;
	seen = config_apply_group(ld, s, health_keys, CONFIG_NKEYS(health_keys),
				  &r->health, " in health");
	/* path is health_keys[0] */
	if (!(seen & 1))
		config_complain(ld, s, "'health' is missing required key 'path'");
}

/* ---- TLS to https:// servers ---- */

/* *path made absolute against the config file's directory (as @include
 * paths are), then opened: a typo shows at load, not at the first
 * request.  Complains and returns false when it cannot be read. */
static bool tls_file(struct config_loader *ld, const config_setting_t *s,
		     char **path, const char *key)
{
	struct stat st;
	int fd, err;

	if (!**path) {
		config_complain(ld, s, "'%s' must not be empty", key);
		return false;
	}
	if (ld->dir && config_path_under(path, ld->dir) < 0) {
		config_complain(ld, s, "out of memory");
		return false;
	}
	fd = open(*path, O_RDONLY | O_CLOEXEC);
	err = fd < 0 ? errno : fstat(fd, &st) < 0 ? errno :
		S_ISREG(st.st_mode) ? 0 : EISDIR;
	if (fd >= 0)
		close(fd);
	if (err)
		config_complain(ld, s, "'%s': cannot read '%s': %s", key, *path,
				strerror(err));
	return err == 0;
}

void config_check_tls_ca(struct config_loader *ld, const config_setting_t *s,
			 void *obj)
{
	tls_file(ld, s, &((struct config_route *)obj)->tls.ca, "tls_ca");
}

void config_check_tls_cert(struct config_loader *ld, const config_setting_t *s,
			   void *obj)
{
	tls_file(ld, s, &((struct config_route *)obj)->tls.client_cert,
		 "tls_client_cert");
}

void config_check_tls_key(struct config_loader *ld, const config_setting_t *s,
			  void *obj)
{
	tls_file(ld, s, &((struct config_route *)obj)->tls.client_key,
		 "tls_client_key");
}

void config_check_tls_name(struct config_loader *ld, const config_setting_t *s,
			   void *obj)
{
	const char *v = ((struct config_route *)obj)->tls.server_name;

	if (!*v || !config_is_hostname(v, strlen(v)))
		config_complain(ld, s, "'tls_server_name' must be a host name, "
				"not '%s'", v);
}

/* The https pool key: the origin and every setting the handshake uses,
 * one a line. */
static char *tls_pool_key(const struct config_server *sv,
			  const struct config_upstream_tls *t)
{
	const char *ca = t->ca ? t->ca : "", *cert = t->client_cert ?
		t->client_cert : "", *key = t->client_key ? t->client_key : "",
		*name = t->server_name ? t->server_name : "";
	size_t n = strlen(sv->origin) + strlen(ca) + strlen(cert) +
		strlen(key) + strlen(name) + 16;
	char *k = malloc(n);

	if (k)
		snprintf(k, n, "%s\n%d\n%s\n%s\n%s\n%s", sv->origin,
			 t->verify ? 1 : 0, ca, cert, key, name);
	return k;
}

void config_upstream_finish(struct config_loader *ld,
			    const config_setting_t *g, struct config_route *r)
{
	const struct config_upstream_tls *t = &r->tls;
	struct config_server *sv;
	size_t i;

	if (!t->client_cert != !t->client_key)
		config_complain(ld, config_setting_get_member(g, t->client_cert ?
			"tls_client_cert" : "tls_client_key"),
			"'tls_client_cert' and 'tls_client_key' go together: "
			"set both or neither");
	for (i = 0; i < r->nservers; i++) {
		sv = &r->servers[i];
		if (!sv->origin)
			continue;
		sv->pool_key = sv->tls ? tls_pool_key(sv, t) : strdup(sv->origin);
		if (!sv->pool_key)
			config_complain(ld, g, "out of memory");
	}
}

/* ---- defaults and freeing ---- */

void config_upstream_defaults(struct config_route *r)
{
	r->balance = CONFIG_BALANCE_ROUND_ROBIN;
	r->retries = 1;
	r->retry_on = CONFIG_RETRY_DEFAULT;
	r->per_try_timeout_ms = 0;
	r->eject_after = 5;
	r->eject_ms = 10000;
	r->health.on = false;
	r->health.interval_ms = 2000;
	r->health.timeout_ms = 1000;
	r->health.rise = 2;
	r->health.fall = 3;
	r->tls.verify = true;
}

void config_upstream_free(struct config_route *r)
{
	size_t i;

	for (i = 0; i < r->nservers; i++) {
		free(r->servers[i].url);
		free(r->servers[i].origin);
		free(r->servers[i].host);
		free(r->servers[i].pool_key);
	}
	free(r->servers);
	free(r->upstream_base);
	free(r->health.path);
	free(r->tls.ca);
	free(r->tls.client_cert);
	free(r->tls.client_key);
	free(r->tls.server_name);
}
