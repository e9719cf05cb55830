/* config.c - read a libconfig file and validate it into a struct config. */
#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_syntax.h"
#include "log.h"
#include "config_keys.h"
#include "config_text.h"
#include "config_upstream.h"
#include "headers.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- per-key checks ---- */

static void check_addr_string(struct config_loader *ld,
			      const config_setting_t *s, const char *what)
{
	struct config_addr a;
	const char *v = config_setting_get_string(s);
	const char *why = config_parse_addr(v, &a);

	if (why)
		config_complain(ld, s, "invalid %s address '%s': %s", what, v, why);
}

static void check_admin(struct config_loader *ld,
			const config_setting_t *s, void *obj)
{
	(void)obj;
	check_addr_string(ld, s, "admin");
}

static void listen_one(struct config_loader *ld, const config_setting_t *s,
		       const char *key, struct config_addr *a)
{
	const char *why;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'%s' addresses must be strings", key);
		return;
	}
	why = config_parse_addr(config_setting_get_string(s), a);
	if (why) {
		config_complain(ld, s, "invalid %s address '%s': %s", key,
				config_setting_get_string(s), why);
		/* port 0 keeps the half-parsed entry out of the clash check */
		memset(a, 0, sizeof(*a));
	}
}

/* Append the addresses of s (`key`: "listen" or "tls_listen") to
 * cfg->listen; returns how many. */
static size_t listen_append(struct config_loader *ld,
			    const config_setting_t *s, const char *key)
{
	struct config *cfg = ld->cfg;
	struct config_addr *all;
	int type = config_setting_type(s);
	unsigned n = 1, i;

	if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY)
		n = (unsigned)config_setting_length(s);
	else if (type != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'%s' must be a string or a list of strings", key);
		return 0;
	}
	if (n == 0) {
		config_complain(ld, s, "'%s' must name at least one address", key);
		return 0;
	}
	if (cfg->nlisten + n > CONFIG_LISTEN_MAX) {
		if (cfg->nlisten)
			config_complain(ld, s, "'listen' and 'tls_listen' together "
					"name more than " STR(CONFIG_LISTEN_MAX)
					" addresses");
		else
			config_complain(ld, s, "'%s' names more than "
					STR(CONFIG_LISTEN_MAX) " addresses", key);
		return 0;
	}
	all = realloc(cfg->listen, (cfg->nlisten + n) * sizeof(*all));
	if (!all) {
		config_complain(ld, s, "out of memory");
		return 0;
	}
	cfg->listen = all;
	all += cfg->nlisten;
	memset(all, 0, n * sizeof(*all));
	cfg->nlisten += n;
	if (type == CONFIG_TYPE_STRING)
		listen_one(ld, s, key, &all[0]);
	else
		for (i = 0; i < n; i++)
			listen_one(ld, config_setting_get_elem(s, i), key, &all[i]);
	return n;
}

static void parse_listen(struct config_loader *ld,
			 const config_setting_t *s, void *obj)
{
	(void)obj;
	listen_append(ld, s, "listen");
}

/* tls_listen is appended after listen, whatever the order in the file,
 * by parse_tls (listen's TLS addresses are the tail of cfg->listen). */
static void accept_later(struct config_loader *ld,
			 const config_setting_t *s, void *obj)
{
	(void)ld;
	(void)s;
	(void)obj;
}

static void tls_cert_one(struct config_loader *ld, const config_setting_t *g,
			 struct config_tls_cert *c)
{
	const char *file = config_setting_source_file(g);
	const char *cert = NULL, *key = NULL;
	char where[512];

	snprintf(where, sizeof(where), "%s:%u", file ? file : ld->name,
		 config_setting_source_line(g));
	c->where = config_dup_or_complain(ld, g, where);
	if (!config_setting_is_group(g) || config_setting_length(g) != 2 ||
	    !config_setting_lookup_string(g, "cert", &cert) ||
	    !config_setting_lookup_string(g, "key", &key)) {
		config_complain(ld, g, "each tls_certificates entry must be "
				"{ cert = \"PATH\"; key = \"PATH\"; }");
		return;
	}
	if (!*cert || !*key) {
		config_complain(ld, g, "'cert' and 'key' must not be empty");
		return;
	}
	c->cert = config_dup_or_complain(ld, g, cert);
	c->key = config_dup_or_complain(ld, g, key);
}

static void parse_tls_certs(struct config_loader *ld,
			    const config_setting_t *s, void *obj)
{
	struct config *cfg = obj;
	unsigned n, i;

	if (!config_setting_is_list(s)) {
		config_complain(ld, s, "'tls_certificates' must be a list: "
				"( { cert = \"PATH\"; key = \"PATH\"; }, ... )");
		return;
	}
	n = (unsigned)config_setting_length(s);
	if (n == 0) {
		config_complain(ld, s, "'tls_certificates' must name at least one certificate");
		return;
	}
	cfg->tls_certs = calloc(n, sizeof(*cfg->tls_certs));
	if (!cfg->tls_certs) {
		config_complain(ld, s, "out of memory");
		return;
	}
	cfg->ntls_certs = n;
	for (i = 0; i < n; i++)
		tls_cert_one(ld, config_setting_get_elem(s, i), &cfg->tls_certs[i]);
}

static void parse_tls_min(struct config_loader *ld,
			  const config_setting_t *s, void *obj)
{
	struct config *cfg = obj;
	const char *v = config_setting_get_string(s);

	if (config_setting_type(s) == CONFIG_TYPE_STRING && !strcmp(v, "1.2"))
		cfg->tls_min_version = 12;
	else if (config_setting_type(s) == CONFIG_TYPE_STRING && !strcmp(v, "1.3"))
		cfg->tls_min_version = 13;
	else
		config_complain(ld, s, "'tls_min_version' must be \"1.2\" or \"1.3\"");
}

static void check_access_log(struct config_loader *ld,
			     const config_setting_t *s, void *obj)
{
	(void)obj;
	if (!*config_setting_get_string(s))
		config_complain(ld, s, "'access_log' must be \"-\", \"off\" or a file path");
}

static void parse_log_level(struct config_loader *ld,
			    const config_setting_t *s, void *obj)
{
	const char *v = config_setting_get_string(s);
	enum log_level l;

	if (!v || log_level_parse(v, &l) < 0) {
		config_complain(ld, s, "'log_level' must be \"debug\", \"info\", "
				"\"warn\" or \"error\"");
		return;
	}
	((struct config *)obj)->log_level = (int)l;
}

static void check_log_format(struct config_loader *ld,
			     const config_setting_t *s, void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	if (strcmp(v, "logfmt") != 0 && strcmp(v, "json") != 0)
		config_complain(ld, s, "'access_log_format' must be \"logfmt\" or \"json\", not '%s'", v);
}

static void check_otlp_endpoint(struct config_loader *ld,
			       const config_setting_t *s, void *obj)
{
	const char *v = config_setting_get_string(s);
	char *origin = NULL, *base = NULL, *host = NULL;
	const char *why = config_split_upstream(v, &origin, &base, &host);

	(void)obj;
	if (why)
		config_complain(ld, s, "'otlp_endpoint' %s: '%s'", why, v);
	free(origin);
	free(base);
	free(host);
}

static void check_deadline_header(struct config_loader *ld,
				  const config_setting_t *s, void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	if (*v && !headers_is_token(v, strlen(v))) {
		config_complain(ld, s, "'deadline_header' must be a header name "
				"(letters, digits and !#$%%&'*+-.^_`|~) or \"\" to disable, not '%s'", v);
		return;
	}
	/* A budget in a field the proxy writes or strips itself would be
	 * dropped, or would overwrite what the upstream relies on. */
	if (headers_proxy_managed(v))
		config_complain(ld, s, "'deadline_header' cannot be '%s': "
				"ctxproxy manages that header itself", v);
}

static void check_name(struct config_loader *ld,
		       const config_setting_t *s, void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	/* names end up unquoted in logfmt lines and metric labels */
	if (!config_is_hostname(v, strlen(v)))
		config_complain(ld, s, "route name '%s' must be non-empty and use only "
				"letters, digits, '-', '_' and '.'", v);
}

static void check_prefix(struct config_loader *ld, const config_setting_t *s,
			 void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	if (v[0] != '/')
		config_complain(ld, s, "'prefix' must start with \"/\", not '%s'", v);
	else if (!config_is_plain_path(v))
		config_complain(ld, s, "'prefix' must not contain spaces, control characters, '?' or '#'");
}

static void check_host(struct config_loader *ld,
		       const config_setting_t *s, void *obj)
{
	struct config_route *r = obj;
	char *h = r->host;
	size_t len = strlen(h), i;

	for (i = 0; i < len; i++)
		if (h[i] >= 'A' && h[i] <= 'Z')
			h[i] = (char)(h[i] - 'A' + 'a');
	if (len == 0)
		config_complain(ld, s, "'host' must not be empty (leave it out to match any host)");
	else if (h[0] == '[' && h[len - 1] == ']' && config_is_ipv6(h + 1, len - 2))
		return;
	else if (strchr(h, ':'))
		config_complain(ld, s, "'host' must not include a port (ports are ignored when matching); "
				"write IPv6 addresses in brackets");
	else if (!config_is_hostname(h, len))
		config_complain(ld, s, "'host' '%s' is not a valid host name", h);
}

/* ---- the key tables ---- */

#define TIMEOUT_KEY(n, type, m, min)                                         \
	{ n, CONFIG_KEY_INT64, offsetof(type, m), min, CONFIG_TIMEOUT_MAX_MS, \
	  NULL, false }
#define TIMEOUT_KEYS(type, m)                                                \
	TIMEOUT_KEY("connect_timeout_ms", type, m.connect_timeout_ms, 1),    \
	TIMEOUT_KEY("timeout_ms", type, m.timeout_ms, 1),                    \
	TIMEOUT_KEY("header_timeout_ms", type, m.header_timeout_ms, 0),      \
	TIMEOUT_KEY("idle_timeout_ms", type, m.idle_timeout_ms, 0)

static const struct config_key default_keys[] = {
	TIMEOUT_KEYS(struct config, defaults),
};

#define ROUTE CONFIG_ROUTE_KEY

static const struct config_key route_keys[] = {
	ROUTE("name", CONFIG_KEY_STRING, name, 0, 0, check_name, true),
	ROUTE("prefix", CONFIG_KEY_STRING, prefix, 0, 0, check_prefix, true),
	ROUTE("host", CONFIG_KEY_STRING, host, 0, 0, check_host, false),
	ROUTE("strip_prefix", CONFIG_KEY_BOOL, strip_prefix, 0, 0, NULL, false),
	ROUTE("preserve_host", CONFIG_KEY_BOOL, preserve_host, 0, 0, NULL, false),
	ROUTE("websocket", CONFIG_KEY_BOOL, websocket, 0, 0, NULL, false),
	ROUTE("tunnel_idle_timeout_ms", CONFIG_KEY_INT64, tunnel_idle_timeout_ms,
	      0, CONFIG_TIMEOUT_MAX_MS, NULL, false),
	ROUTE("tunnel_max_ms", CONFIG_KEY_INT64, tunnel_max_ms, 0,
	      CONFIG_TIMEOUT_MAX_MS, NULL, false),
	TIMEOUT_KEYS(struct config_route, t),
	CONFIG_UPSTREAM_KEYS,
};

static void parse_defaults(struct config_loader *ld, const config_setting_t *s,
			   void *obj);

static void remember_routes(struct config_loader *ld, const config_setting_t *s,
			    void *obj)
{
	(void)obj;
	ld->routes = s;
}

#define TOP(n, kind, field, min, max, check, req) \
	{ n, kind, offsetof(struct config, field), min, max, check, req }

static const struct config_key top_keys[] = {
	TOP("listen", CONFIG_KEY_CUSTOM, listen, 0, 0, parse_listen, false),
	TOP("tls_listen", CONFIG_KEY_CUSTOM, listen, 0, 0, accept_later, false),
	TOP("tls_certificates", CONFIG_KEY_CUSTOM, tls_certs, 0, 0,
	    parse_tls_certs, false),
	TOP("tls_min_version", CONFIG_KEY_CUSTOM, tls_min_version, 0, 0,
	    parse_tls_min, false),
	TOP("admin", CONFIG_KEY_STRING, admin, 0, 0, check_admin, false),
	TOP("admin_show_query", CONFIG_KEY_BOOL, admin_show_query, 0, 0, NULL,
	    false),
	TOP("workers", CONFIG_KEY_INT, workers, 1, CONFIG_WORKERS_MAX, NULL, false),
	TOP("max_connections", CONFIG_KEY_INT64, max_connections, 1, INT32_MAX,
	    NULL, false),
	TOP("client_header_timeout_ms", CONFIG_KEY_INT64, client_header_timeout_ms,
	    1, CONFIG_TIMEOUT_MAX_MS, NULL, false),
	TOP("client_idle_timeout_ms", CONFIG_KEY_INT64, client_idle_timeout_ms,
	    1, CONFIG_TIMEOUT_MAX_MS, NULL, false),
	TOP("max_body_bytes", CONFIG_KEY_INT64, max_body_bytes, 0, INT64_MAX,
	    NULL, false),
	TOP("shutdown_grace_ms", CONFIG_KEY_INT64, shutdown_grace_ms,
	    0, CONFIG_TIMEOUT_MAX_MS, NULL, false),
	TOP("access_log", CONFIG_KEY_STRING, access_log, 0, 0, check_access_log,
	    false),
	TOP("access_log_format", CONFIG_KEY_STRING, access_log_format, 0, 0,
	    check_log_format, false),
	TOP("log_level", CONFIG_KEY_CUSTOM, log_level, 0, 0, parse_log_level,
	    false),
	TOP("deadline_header", CONFIG_KEY_STRING, deadline_header, 0, 0,
	    check_deadline_header, false),
	TOP("upstream_keepalive", CONFIG_KEY_INT, upstream_keepalive, 0,
	    CONFIG_KEEPALIVE_MAX, NULL, false),
	TOP("upstream_keepalive_timeout_ms", CONFIG_KEY_INT64,
	    upstream_keepalive_timeout_ms, 1, CONFIG_TIMEOUT_MAX_MS, NULL, false),
	TOP("trace_context", CONFIG_KEY_BOOL, trace_context, 0, 0, NULL, false),
	TOP("trace_sample_percent", CONFIG_KEY_INT, trace_sample_percent, 0, 100,
	    NULL, false),
	TOP("otlp_endpoint", CONFIG_KEY_STRING, otlp_endpoint, 0, 0,
	    check_otlp_endpoint, false),
	TOP("defaults", CONFIG_KEY_CUSTOM, defaults, 0, 0, parse_defaults, false),
	TOP("routes", CONFIG_KEY_CUSTOM, routes, 0, 0, remember_routes, true),
};

static void parse_defaults(struct config_loader *ld, const config_setting_t *s,
			   void *obj)
{
	if (!config_setting_is_group(s))
		config_complain(ld, s, "'defaults' must be a group { ... }");
	else
		config_apply_group(ld, s, default_keys, CONFIG_NKEYS(default_keys), obj,
			    " in defaults");
}

/* ---- routes ---- */

static void parse_route(struct config_loader *ld, const config_setting_t *g,
			struct config_route *r)
{
	uint64_t seen;
	size_t k;

	r->line = (int)config_setting_source_line(g);
	r->t = ld->cfg->defaults;
	r->preserve_host = true;
	r->websocket = true;
	config_upstream_defaults(r);
	if (!config_setting_is_group(g)) {
		config_complain(ld, g, "each route must be a group { name = ...; ... }");
		return;
	}
	seen = config_apply_group(ld, g, route_keys, CONFIG_NKEYS(route_keys), r,
				  " in route");
	config_upstream_finish(ld, g, r);
	for (k = 0; k < CONFIG_NKEYS(route_keys); k++) {
		if (!route_keys[k].required || (seen & (UINT64_C(1) << k)))
			continue;
		if (r->name)
			config_complain(ld, g, "route '%s' is missing required key '%s'",
					r->name, route_keys[k].name);
		else
			config_complain(ld, g, "route is missing required key '%s'",
					route_keys[k].name);
	}
}

static bool same_host(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Quadratic, but route lists are short and this runs once per load. */
static void check_route_clashes(struct config_loader *ld,
				const config_setting_t *list)
{
	const struct config_route *rs = ld->cfg->routes;
	size_t i, j;

	for (i = 1; i < ld->cfg->nroutes; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);

		for (j = 0; j < i; j++) {
			if (rs[i].name && rs[j].name && strcmp(rs[i].name, rs[j].name) == 0) {
				config_complain(ld, s, "duplicate route name '%s' (lines %d and %d)",
						rs[i].name, rs[j].line, rs[i].line);
				break;
			}
			if (rs[i].prefix && rs[j].prefix && !strcmp(rs[i].prefix, rs[j].prefix) &&
			    same_host(rs[i].host, rs[j].host)) {
				config_complain(ld, s, "route '%s' has the same prefix and host as "
						"the route at line %d and could never match",
						rs[i].name ? rs[i].name : "?", rs[j].line);
				break;
			}
		}
	}
}

static void parse_routes(struct config_loader *ld, const config_setting_t *list)
{
	struct config *cfg = ld->cfg;
	unsigned i, n = 0;
	const char *why = NULL;

	if (!config_setting_is_list(list))
		why = "'routes' must be a list: ( { ... }, { ... } )";
	else
		n = (unsigned)config_setting_length(list);
	if (!why && n == 0)
		why = "at least one route is required";
	if (!why) {
		cfg->routes = calloc(n, sizeof(*cfg->routes));
		if (!cfg->routes)
			why = "out of memory";
	}
	if (why) {
		config_complain(ld, list, "%s", why);
		return;
	}
	cfg->nroutes = n;
	for (i = 0; i < n; i++)
		parse_route(ld, config_setting_get_elem(list, i), &cfg->routes[i]);
	check_route_clashes(ld, list);
}

/* ---- whole-file checks ---- */

/* Element i of a listen key (the key itself when it is one string). */
static const config_setting_t *listen_setting(const config_setting_t *s,
					      size_t i)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return s;
	return config_setting_get_elem(s, (unsigned)i);
}

/* tls_listen after listen; the keys that only make sense together. */
static void parse_tls(struct config_loader *ld, const config_setting_t *root)
{
	const config_setting_t *tl = config_setting_get_member(root, "tls_listen");
	const config_setting_t *tc = config_setting_get_member(root, "tls_certificates");
	const config_setting_t *tm = config_setting_get_member(root, "tls_min_version");

	if (tl)
		ld->cfg->nlisten_tls = listen_append(ld, tl, "tls_listen");
	if (!tl && !config_setting_get_member(root, "listen"))
		config_report(ld, NULL, 0, "missing required key 'listen' "
			      "(or 'tls_listen')");
	if (tl && !tc)
		config_complain(ld, tl, "'tls_listen' needs 'tls_certificates'");
	if (!tl && tc)
		config_complain(ld, tc, "'tls_certificates' is set but there "
				"is no 'tls_listen'");
	if (!tl && tm)
		config_complain(ld, tm, "'tls_min_version' is set but there "
				"is no 'tls_listen'");
}

static void check_listen_clashes(struct config_loader *ld,
				 const config_setting_t *root)
{
	const struct config *cfg = ld->cfg;
	const config_setting_t *ls = config_setting_get_member(root, "listen");
	const config_setting_t *ts = config_setting_get_member(root, "tls_listen");
	size_t nplain = cfg->nlisten - cfg->nlisten_tls;
	const config_setting_t *as = config_setting_get_member(root, "admin");
	struct config_addr admin;
	size_t i, j;

	for (i = 1; i < cfg->nlisten; i++)
		for (j = 0; j < i; j++)
			if (config_addr_same(&cfg->listen[i], &cfg->listen[j]))
				config_complain(ld, listen_setting(i < nplain ? ls : ts,
						i < nplain ? i : i - nplain),
						"duplicate listen address");
	if (!cfg->admin || config_parse_addr(cfg->admin, &admin))
		return;
	for (i = 0; i < cfg->nlisten; i++) {
		if (config_addr_same(&admin, &cfg->listen[i])) {
			config_complain(ld, as, "the admin address is also a listen address");
			return;
		}
	}
}

static void parse_root(struct config_loader *ld, const config_setting_t *root)
{
	uint64_t seen;
	size_t k;

	seen = config_apply_group(ld, root, top_keys, CONFIG_NKEYS(top_keys), ld->cfg, "");
	for (k = 0; k < CONFIG_NKEYS(top_keys); k++)
		if (top_keys[k].required && !(seen & (UINT64_C(1) << k)))
			config_report(ld, NULL, 0, "missing required key '%s'", top_keys[k].name);
	parse_tls(ld, root);
	if (ld->routes)
		parse_routes(ld, ld->routes);
	if (ld->cfg->nlisten > 1 || ld->cfg->admin)
		check_listen_clashes(ld, root);
}

/* ---- entry points ---- */

static struct config *config_new(const char *name)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (!cfg)
		return NULL;
	cfg->workers = ncpu < 1 ? 1 : ncpu > CONFIG_WORKERS_MAX ? CONFIG_WORKERS_MAX : (int)ncpu;
	cfg->max_connections = 10000;
	cfg->client_header_timeout_ms = 10000;
	cfg->client_idle_timeout_ms = 60000;
	cfg->max_body_bytes = 104857600;
	cfg->shutdown_grace_ms = 10000;
	cfg->upstream_keepalive = 256;
	cfg->trace_context = true;
	cfg->tls_min_version = 12;
	cfg->upstream_keepalive_timeout_ms = 60000;
	cfg->defaults.connect_timeout_ms = 1000;
	cfg->defaults.timeout_ms = 30000;
	cfg->path = strdup(name);
	cfg->access_log = strdup("-");
	cfg->access_log_format = strdup("logfmt");
	cfg->log_level = LOG_INFO;
	cfg->deadline_header = strdup("X-Request-Timeout-Ms");
	if (!cfg->path || !cfg->access_log || !cfg->access_log_format ||
	    !cfg->deadline_header) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* A problem config_text_check found, reported like any other. */
static void text_problem(void *arg, const char *file, unsigned line,
			 const char *msg)
{
	config_report(arg, file, line, "%s", msg);
}

static struct config *load_text(struct config_loader *ld, const char *text,
				const char *include_dir)
{
	config_t lc;

	/* libconfig would exit() on an @include of a directory. */
	if (config_text_check(text, include_dir, text_problem, ld))
		return NULL;
	ld->dir = include_dir;
	config_init(&lc);
	if (include_dir)
		config_set_include_dir(&lc, include_dir);
	if (!config_read_string(&lc, text)) {
		config_report(ld, config_error_file(&lc), (unsigned)config_error_line(&lc),
			      "%s", config_error_text(&lc));
		goto destroy_lc;
	}
	ld->cfg = config_new(ld->name);
	if (!ld->cfg) {
		config_report(ld, NULL, 0, "out of memory");
		goto destroy_lc;
	}
	parse_root(ld, config_root_setting(&lc));
	if (ld->nerr) {
		config_free(ld->cfg);
		ld->cfg = NULL;
	}
destroy_lc:
	config_destroy(&lc);
	return ld->cfg;
}

struct config *config_load_string(const char *name, const char *text, FILE *err)
{
	struct config_loader ld = { .name = name, .err = err };

	return load_text(&ld, text, NULL);
}

static int resolve_tls_paths(struct config *cfg, const char *dir)
{
	size_t i;

	for (i = 0; i < cfg->ntls_certs; i++)
		if (config_path_under(&cfg->tls_certs[i].cert, dir) < 0 ||
		    config_path_under(&cfg->tls_certs[i].key, dir) < 0)
			return -ENOMEM;
	return 0;
}

struct config *config_load(const char *path, FILE *err)
{
	struct config_loader ld = { .name = path, .err = err };
	struct config *cfg = NULL;
	const char *why, *slash;
	char *text, *dir;

	/* read it ourselves so the text checks see what libconfig parses */
	text = config_text_read(path, &why);
	if (!text) {
		config_report(&ld, NULL, 0, "cannot read: %s", why);
		return NULL;
	}
	/* @include paths are relative to the file, not to the daemon's cwd */
	slash = strrchr(path, '/');
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
		    : strdup(".");
	if (!dir) {
		config_report(&ld, NULL, 0, "out of memory");
		goto free_text;
	}
	cfg = load_text(&ld, text, dir);
	if (cfg && resolve_tls_paths(cfg, dir) < 0) {
		config_report(&ld, NULL, 0, "out of memory");
		config_free(cfg);
		cfg = NULL;
	}
	free(dir);
free_text:
	free(text);
	return cfg;
}

static void route_free_fields(struct config_route *r)
{
	free(r->name);
	free(r->prefix);
	free(r->host);
	config_upstream_free(r);
}

void config_free(struct config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->nroutes; i++)
		route_free_fields(&cfg->routes[i]);
	free(cfg->routes);
	for (i = 0; i < cfg->ntls_certs; i++) {
		free(cfg->tls_certs[i].cert);
		free(cfg->tls_certs[i].key);
		free(cfg->tls_certs[i].where);
	}
	free(cfg->tls_certs);
	free(cfg->listen);
	free(cfg->admin);
	free(cfg->access_log);
	free(cfg->access_log_format);
	free(cfg->deadline_header);
	free(cfg->otlp_endpoint);
	free(cfg->path);
	free(cfg);
}
