/* config.c - read a libconfig file and validate it into a struct config. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "headers.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Keeps now + timeout far from int64 nanosecond overflow (~24.8 days). */
#define TIMEOUT_MAX_MS ((int64_t)INT32_MAX)
/* A config file is small; this only stops `-c /dev/zero` eating memory. */
#define FILE_MAX_BYTES ((size_t)16 << 20)
/* libconfig's own nesting limit */
#define INCLUDE_DEPTH_MAX 10

struct loader {
	const char *name;       /* FILE in messages when libconfig has none */
	FILE *err;
	int nerr;
	struct config *cfg;
	const config_setting_t *routes;  /* parsed after defaults, wherever it is */
	bool unreadable;        /* an @include that would make libconfig exit() */
};

enum key_kind { KEY_INT, KEY_INT64, KEY_BOOL, KEY_STRING, KEY_CUSTOM };

struct key {
	const char *name;
	enum key_kind kind;
	size_t off;             /* where the value lands in the target object */
	int64_t min, max;       /* integers only */
	/* KEY_STRING: validates (and may normalise) the stored copy;
	 * KEY_CUSTOM: does the whole job. */
	void (*check)(struct loader *ld, const config_setting_t *s, void *obj);
	bool required;
};

static void vreport(struct loader *ld, const char *file, unsigned line,
		    const char *fmt, va_list ap)
{
	ld->nerr++;
	if (!ld->err)
		return;
	fprintf(ld->err, "%s:%u: ", file ? file : ld->name, line);
	vfprintf(ld->err, fmt, ap);
	fputc('\n', ld->err);
}

__attribute__((format(printf, 4, 5)))
static void report(struct loader *ld, const char *file, unsigned line,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, file, line, fmt, ap);
	va_end(ap);
}

/* Blames a setting: its own file (it may come from an @include) and line. */
__attribute__((format(printf, 3, 4)))
static void complain(struct loader *ld, const config_setting_t *s,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, config_setting_source_file(s),
		config_setting_source_line(s), fmt, ap);
	va_end(ap);
}

static char *dup_or_complain(struct loader *ld, const config_setting_t *s,
			     const char *str)
{
	char *copy = strdup(str);

	if (!copy)
		complain(ld, s, "out of memory");
	return copy;
}

/* ---- syntax helpers shared by listen, admin, upstream and host ---- */

/* Exactly 1-5 digits, so "080" is fine but "+80" and "8 0" are not. */
static bool parse_port(const char *s, size_t len, int min, int *port)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > 65535)
		return false;
	*port = (int)v;
	return true;
}

static bool is_ipv6(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

static bool is_hostname_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static bool is_hostname(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!is_hostname_char(s[i]))
			return false;
	return len > 0;
}

/* "IPv4:port", "[IPv6]:port", "*:port" or ":port"; NULL or the reason. */
const char *config_parse_addr(const char *s, struct config_addr *a)
{
	const char *colon = strrchr(s, ':');
	size_t hlen;
	struct in_addr v4;

	memset(a, 0, sizeof(*a));
	if (!colon)
		return "expected HOST:PORT";
	hlen = (size_t)(colon - s);
	if (s[0] == '[' && !memchr(s, ']', hlen))
		return "expected [IPv6]:PORT";
	if (!parse_port(colon + 1, strlen(colon + 1), 0, &a->port))
		return "port must be a number from 0 to 65535";
	if (s[0] == '[') {
		if (hlen < 2 || s[hlen - 1] != ']' || !is_ipv6(s + 1, hlen - 2))
			return "not a numeric IPv6 address in brackets";
		memcpy(a->host, s + 1, hlen - 2);
		a->ipv6 = true;
		return NULL;
	}
	if (hlen == 0 || (hlen == 1 && s[0] == '*'))
		return NULL;
	if (memchr(s, ':', hlen))
		return "IPv6 addresses must be in brackets, e.g. [::1]:8080";
	if (hlen >= sizeof(a->host))
		return "not a numeric IPv4 address";
	memcpy(a->host, s, hlen);
	if (inet_pton(AF_INET, a->host, &v4) != 1)
		return "not a numeric IPv4 address (host names are not resolved)";
	return NULL;
}

/* Compares the binary addresses, so "*:80" and "0.0.0.0:80" collide. */
static bool addr_same(const struct config_addr *a, const struct config_addr *b)
{
	unsigned char ba[16] = { 0 }, bb[16] = { 0 };
	int af = a->ipv6 ? AF_INET6 : AF_INET;

	if (a->ipv6 != b->ipv6 || a->port != b->port || a->port == 0)
		return false;
	if (a->host[0] && inet_pton(af, a->host, ba) != 1)
		return false;
	if (b->host[0] && inet_pton(af, b->host, bb) != 1)
		return false;
	return memcmp(ba, bb, sizeof(ba)) == 0;
}

/* Rejects what would need escaping or could split a request line. */
static bool is_plain_path(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '?' ||
		    *s == '#')
			return false;
	return true;
}

/* ---- per-key checks ---- */

static void check_addr_string(struct loader *ld, const config_setting_t *s,
			      const char *what)
{
	struct config_addr a;
	const char *v = config_setting_get_string(s);
	const char *why = config_parse_addr(v, &a);

	if (why)
		complain(ld, s, "invalid %s address '%s': %s", what, v, why);
}

static void check_admin(struct loader *ld, const config_setting_t *s, void *obj)
{
	(void)obj;
	check_addr_string(ld, s, "admin");
}

static void listen_one(struct loader *ld, const config_setting_t *s,
		       struct config_addr *a)
{
	const char *why;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		complain(ld, s, "'listen' addresses must be strings");
		return;
	}
	why = config_parse_addr(config_setting_get_string(s), a);
	if (why) {
		complain(ld, s, "invalid listen address '%s': %s",
			 config_setting_get_string(s), why);
		/* port 0 keeps the half-parsed entry out of the clash check */
		memset(a, 0, sizeof(*a));
	}
}

static void parse_listen(struct loader *ld, const config_setting_t *s, void *obj)
{
	struct config *cfg = obj;
	int type = config_setting_type(s);
	unsigned n = 1, i;
	const char *why = NULL;

	if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY)
		n = (unsigned)config_setting_length(s);
	else if (type != CONFIG_TYPE_STRING)
		why = "'listen' must be a string or a list of strings";
	if (!why && n == 0)
		why = "'listen' must name at least one address";
	if (!why && n > CONFIG_LISTEN_MAX)
		why = "'listen' names more than " STR(CONFIG_LISTEN_MAX)
			" addresses";
	if (!why) {
		cfg->listen = calloc(n, sizeof(*cfg->listen));
		if (!cfg->listen)
			why = "out of memory";
	}
	if (why) {
		complain(ld, s, "%s", why);
		return;
	}
	cfg->nlisten = n;
	if (type == CONFIG_TYPE_STRING) {
		listen_one(ld, s, &cfg->listen[0]);
		return;
	}
	for (i = 0; i < n; i++)
		listen_one(ld, config_setting_get_elem(s, i), &cfg->listen[i]);
}

static void check_access_log(struct loader *ld, const config_setting_t *s,
			     void *obj)
{
	(void)obj;
	if (!*config_setting_get_string(s))
		complain(ld, s, "'access_log' must be \"-\", \"off\" or a file path");
}

static void check_log_format(struct loader *ld, const config_setting_t *s,
			     void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	if (strcmp(v, "logfmt") != 0 && strcmp(v, "json") != 0)
		complain(ld, s, "'access_log_format' must be \"logfmt\" or \"json\", not '%s'", v);
}

static void check_deadline_header(struct loader *ld, const config_setting_t *s,
				  void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	if (*v && !headers_is_token(v, strlen(v))) {
		complain(ld, s, "'deadline_header' must be a header name "
			 "(letters, digits and !#$%%&'*+-.^_`|~) or \"\" to disable, not '%s'", v);
		return;
	}
	/* A budget in a field the proxy writes or strips itself would be
	 * dropped, or would overwrite what the upstream relies on. */
	if (headers_proxy_managed(v))
		complain(ld, s, "'deadline_header' cannot be '%s': "
			 "ctxproxy manages that header itself", v);
}

static void check_name(struct loader *ld, const config_setting_t *s, void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	/* names end up unquoted in logfmt lines and metric labels */
	if (!is_hostname(v, strlen(v)))
		complain(ld, s, "route name '%s' must be non-empty and use only "
			 "letters, digits, '-', '_' and '.'", v);
}

static void check_prefix(struct loader *ld, const config_setting_t *s,
			 void *obj)
{
	const char *v = config_setting_get_string(s);

	(void)obj;
	if (v[0] != '/')
		complain(ld, s, "'prefix' must start with \"/\", not '%s'", v);
	else if (!is_plain_path(v))
		complain(ld, s, "'prefix' must not contain spaces, control characters, '?' or '#'");
}

static void check_host(struct loader *ld, const config_setting_t *s, void *obj)
{
	struct config_route *r = obj;
	char *h = r->host;
	size_t len = strlen(h), i;

	for (i = 0; i < len; i++)
		if (h[i] >= 'A' && h[i] <= 'Z')
			h[i] = (char)(h[i] - 'A' + 'a');
	if (len == 0)
		complain(ld, s, "'host' must not be empty (leave it out to match any host)");
	else if (h[0] == '[' && h[len - 1] == ']' && is_ipv6(h + 1, len - 2))
		return;
	else if (strchr(h, ':'))
		complain(ld, s, "'host' must not include a port (ports are ignored when matching); "
			 "write IPv6 addresses in brackets");
	else if (!is_hostname(h, len))
		complain(ld, s, "'host' '%s' is not a valid host name", h);
}

/* ---- upstream URL ---- */

static char *make_origin(const char *host, size_t hlen, int port)
{
	size_t cap = hlen + sizeof("http://:65535");
	char *o = malloc(cap);
	size_t i;

	if (!o)
		return NULL;
	snprintf(o, cap, "http://%.*s:%d", (int)hlen, host, port);
	/* host names are case-insensitive: one spelling per upstream */
	for (i = 0; o[i]; i++)
		if (o[i] >= 'A' && o[i] <= 'Z')
			o[i] = (char)(o[i] - 'A' + 'a');
	return o;
}

/* Splits "host[:port]" (auth, alen bytes); NULL or the reason. */
static const char *split_authority(const char *auth, size_t alen,
				   size_t *hlen, int *port)
{
	const char *end = auth + alen, *hend;

	if (alen && auth[0] == '[') {
		hend = memchr(auth, ']', alen);
		if (!hend || !is_ipv6(auth + 1, (size_t)(hend - auth - 1)))
			return "host is not a valid IPv6 address in brackets";
		hend++;
	} else {
		hend = memchr(auth, ':', alen);
		if (!hend)
			hend = end;
		if (hend == auth)
			return "missing host";
		if (!is_hostname(auth, (size_t)(hend - auth)))
			return "host contains invalid characters";
	}
	*hlen = (size_t)(hend - auth);
	*port = 80;
	if (hend == end)
		return NULL;
	if (*hend != ':' || !parse_port(hend + 1, (size_t)(end - hend - 1), 1, port))
		return "port must be a number from 1 to 65535";
	return NULL;
}

static const char *split_upstream(const char *url, struct config_route *r)
{
	const char *auth = url + 7, *path;
	size_t alen, hlen, plen;
	int port;
	const char *why;

	if (strncasecmp(url, "https://", 8) == 0)
		return "upstream TLS (https://) is not supported; use http://";
	if (strncasecmp(url, "http://", 7) != 0)
		return strstr(url, "://") ? "only http:// upstreams are supported"
					  : "must start with http://";
	if (strpbrk(auth, "?#"))
		return "must not contain a query or fragment";
	alen = strcspn(auth, "/");
	if (memchr(auth, '@', alen))
		return "must not contain user information (user@)";
	why = split_authority(auth, alen, &hlen, &port);
	if (why)
		return why;
	path = auth + alen;
	if (!is_plain_path(path))
		return "path must not contain spaces or control characters";
	plen = strlen(path);
	while (plen && path[plen - 1] == '/')
		plen--;
	r->upstream_origin = make_origin(auth, hlen, port);
	r->upstream_base = strndup(path, plen);
	if (!r->upstream_origin || !r->upstream_base)
		return "out of memory";
	/* As a client writes Host: the port only when it is not 80. */
	r->upstream_host = port == 80 ? strndup(r->upstream_origin + 7, hlen) :
		strdup(r->upstream_origin + 7);
	if (!r->upstream_host)
		return "out of memory";
	return NULL;
}

static void check_upstream(struct loader *ld, const config_setting_t *s,
			   void *obj)
{
	struct config_route *r = obj;
	const char *why = split_upstream(r->upstream, r);

	if (why)
		complain(ld, s, "invalid upstream '%s': %s", r->upstream, why);
}

/* ---- the key tables ---- */

#define TIMEOUT_KEYS(type, m)                                                \
	{ "connect_timeout_ms", KEY_INT64, offsetof(type, m.connect_timeout_ms), \
	  1, TIMEOUT_MAX_MS, NULL, false },                                   \
	{ "timeout_ms", KEY_INT64, offsetof(type, m.timeout_ms),               \
	  1, TIMEOUT_MAX_MS, NULL, false },                                   \
	{ "header_timeout_ms", KEY_INT64, offsetof(type, m.header_timeout_ms), \
	  0, TIMEOUT_MAX_MS, NULL, false },                                   \
	{ "idle_timeout_ms", KEY_INT64, offsetof(type, m.idle_timeout_ms),     \
	  0, TIMEOUT_MAX_MS, NULL, false }

static const struct key default_keys[] = {
	TIMEOUT_KEYS(struct config, defaults),
};

static const struct key route_keys[] = {
	{ "name", KEY_STRING, offsetof(struct config_route, name), 0, 0,
	  check_name, true },
	{ "prefix", KEY_STRING, offsetof(struct config_route, prefix), 0, 0,
	  check_prefix, true },
	{ "host", KEY_STRING, offsetof(struct config_route, host), 0, 0,
	  check_host, false },
	{ "upstream", KEY_STRING, offsetof(struct config_route, upstream), 0, 0,
	  check_upstream, true },
	{ "strip_prefix", KEY_BOOL, offsetof(struct config_route, strip_prefix),
	  0, 0, NULL, false },
	{ "preserve_host", KEY_BOOL, offsetof(struct config_route, preserve_host),
	  0, 0, NULL, false },
	TIMEOUT_KEYS(struct config_route, t),
};

static void parse_defaults(struct loader *ld, const config_setting_t *s,
			   void *obj);

static void remember_routes(struct loader *ld, const config_setting_t *s,
			    void *obj)
{
	(void)obj;
	ld->routes = s;
}

#define TOP(n, kind, field, min, max, check, req) \
	{ n, kind, offsetof(struct config, field), min, max, check, req }

static const struct key top_keys[] = {
	TOP("listen", KEY_CUSTOM, listen, 0, 0, parse_listen, true),
	TOP("admin", KEY_STRING, admin, 0, 0, check_admin, false),
	TOP("workers", KEY_INT, workers, 1, CONFIG_WORKERS_MAX, NULL, false),
	TOP("max_connections", KEY_INT64, max_connections, 1, INT32_MAX, NULL, false),
	TOP("client_header_timeout_ms", KEY_INT64, client_header_timeout_ms,
	    1, TIMEOUT_MAX_MS, NULL, false),
	TOP("client_idle_timeout_ms", KEY_INT64, client_idle_timeout_ms,
	    1, TIMEOUT_MAX_MS, NULL, false),
	TOP("max_body_bytes", KEY_INT64, max_body_bytes, 0, INT64_MAX, NULL, false),
	TOP("shutdown_grace_ms", KEY_INT64, shutdown_grace_ms,
	    0, TIMEOUT_MAX_MS, NULL, false),
	TOP("access_log", KEY_STRING, access_log, 0, 0, check_access_log, false),
	TOP("access_log_format", KEY_STRING, access_log_format, 0, 0,
	    check_log_format, false),
	TOP("deadline_header", KEY_STRING, deadline_header, 0, 0,
	    check_deadline_header, false),
	TOP("upstream_keepalive", KEY_INT, upstream_keepalive, 0,
	    CONFIG_KEEPALIVE_MAX, NULL, false),
	TOP("upstream_keepalive_timeout_ms", KEY_INT64,
	    upstream_keepalive_timeout_ms, 1, TIMEOUT_MAX_MS, NULL, false),
	TOP("defaults", KEY_CUSTOM, defaults, 0, 0, parse_defaults, false),
	TOP("routes", KEY_CUSTOM, routes, 0, 0, remember_routes, true),
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

/* ---- applying a table to a group ---- */

static bool get_int(struct loader *ld, const config_setting_t *s,
		    const struct key *k, int64_t *v)
{
	int type = config_setting_type(s);

	if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
		complain(ld, s, "'%s' must be an integer", k->name);
		return false;
	}
	*v = config_setting_get_int64(s);
	if (*v >= k->min && *v <= k->max)
		return true;
	if (k->max == INT64_MAX)
		complain(ld, s, "'%s' must be at least %" PRId64, k->name, k->min);
	else
		complain(ld, s, "'%s' must be between %" PRId64 " and %" PRId64,
			 k->name, k->min, k->max);
	return false;
}

static void apply_string(struct loader *ld, const config_setting_t *s,
			 const struct key *k, void *obj)
{
	char **field = (char **)((char *)obj + k->off);

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		complain(ld, s, "'%s' must be a string", k->name);
		return;
	}
	free(*field);
	*field = dup_or_complain(ld, s, config_setting_get_string(s));
	if (*field && k->check)
		k->check(ld, s, obj);
}

static void apply_key(struct loader *ld, const config_setting_t *s,
		      const struct key *k, void *obj)
{
	char *field = (char *)obj + k->off;
	int64_t v;

	switch (k->kind) {
	case KEY_INT:
	case KEY_INT64:
		if (!get_int(ld, s, k, &v))
			return;
		if (k->kind == KEY_INT)
			*(int *)field = (int)v;
		else
			*(int64_t *)field = v;
		return;
	case KEY_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			complain(ld, s, "'%s' must be true or false", k->name);
		else
			*(bool *)field = config_setting_get_bool(s);
		return;
	case KEY_STRING:
		apply_string(ld, s, k, obj);
		return;
	case KEY_CUSTOM:
		k->check(ld, s, obj);
		return;
	}
}

/* Applies every member of group g; returns a bit per table entry seen. */
static uint64_t apply_group(struct loader *ld, const config_setting_t *g,
			    const struct key *keys, size_t nkeys, void *obj,
			    const char *where)
{
	uint64_t seen = 0;
	int i, n = config_setting_length(g);
	size_t k;

	for (i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);

		for (k = 0; k < nkeys; k++)
			if (strcmp(keys[k].name, name) == 0)
				break;
		if (k == nkeys) {
			complain(ld, s, "unknown key '%s'%s", name, where);
			continue;
		}
		seen |= UINT64_C(1) << k;
		apply_key(ld, s, &keys[k], obj);
	}
	return seen;
}

static void parse_defaults(struct loader *ld, const config_setting_t *s,
			   void *obj)
{
	if (!config_setting_is_group(s))
		complain(ld, s, "'defaults' must be a group { ... }");
	else
		apply_group(ld, s, default_keys, NKEYS(default_keys), obj,
			    " in defaults");
}

/* ---- routes ---- */

static void parse_route(struct loader *ld, const config_setting_t *g,
			struct config_route *r)
{
	uint64_t seen;
	size_t k;

	r->line = (int)config_setting_source_line(g);
	r->t = ld->cfg->defaults;
	r->preserve_host = true;
	if (!config_setting_is_group(g)) {
		complain(ld, g, "each route must be a group { name = ...; ... }");
		return;
	}
	seen = apply_group(ld, g, route_keys, NKEYS(route_keys), r, " in route");
	for (k = 0; k < NKEYS(route_keys); k++) {
		if (!route_keys[k].required || (seen & (UINT64_C(1) << k)))
			continue;
		if (r->name)
			complain(ld, g, "route '%s' is missing required key '%s'",
				 r->name, route_keys[k].name);
		else
			complain(ld, g, "route is missing required key '%s'",
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
static void check_route_clashes(struct loader *ld, const config_setting_t *list)
{
	const struct config_route *rs = ld->cfg->routes;
	size_t i, j;

	for (i = 1; i < ld->cfg->nroutes; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);

		for (j = 0; j < i; j++) {
			if (rs[i].name && rs[j].name && strcmp(rs[i].name, rs[j].name) == 0) {
				complain(ld, s, "duplicate route name '%s' (lines %d and %d)",
					 rs[i].name, rs[j].line, rs[i].line);
				break;
			}
			if (rs[i].prefix && rs[j].prefix && !strcmp(rs[i].prefix, rs[j].prefix) &&
			    same_host(rs[i].host, rs[j].host)) {
				complain(ld, s, "route '%s' has the same prefix and host as "
					 "the route at line %d and could never match",
					 rs[i].name ? rs[i].name : "?", rs[j].line);
				break;
			}
		}
	}
}

static void parse_routes(struct loader *ld, const config_setting_t *list)
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
		complain(ld, list, "%s", why);
		return;
	}
	cfg->nroutes = n;
	for (i = 0; i < n; i++)
		parse_route(ld, config_setting_get_elem(list, i), &cfg->routes[i]);
	check_route_clashes(ld, list);
}

/* ---- whole-file checks ---- */

static void check_listen_clashes(struct loader *ld, const config_setting_t *root)
{
	const struct config *cfg = ld->cfg;
	const config_setting_t *ls = config_setting_get_member(root, "listen");
	const config_setting_t *as = config_setting_get_member(root, "admin");
	struct config_addr admin;
	size_t i, j;

	for (i = 1; i < cfg->nlisten; i++)
		for (j = 0; j < i; j++)
			if (addr_same(&cfg->listen[i], &cfg->listen[j]))
				complain(ld, config_setting_get_elem(ls, (unsigned)i),
					 "duplicate listen address");
	if (!cfg->admin || config_parse_addr(cfg->admin, &admin))
		return;
	for (i = 0; i < cfg->nlisten; i++) {
		if (addr_same(&admin, &cfg->listen[i])) {
			complain(ld, as, "the admin address is also a listen address");
			return;
		}
	}
}

static void parse_root(struct loader *ld, const config_setting_t *root)
{
	uint64_t seen;
	size_t k;

	seen = apply_group(ld, root, top_keys, NKEYS(top_keys), ld->cfg, "");
	for (k = 0; k < NKEYS(top_keys); k++)
		if (top_keys[k].required && !(seen & (UINT64_C(1) << k)))
			report(ld, NULL, 0, "missing required key '%s'", top_keys[k].name);
	if (ld->routes)
		parse_routes(ld, ld->routes);
	if (ld->cfg->nlisten > 1 || ld->cfg->admin)
		check_listen_clashes(ld, root);
}

/* ---- reading files ---- */

/* The whole file, NUL-terminated; NULL with *why set on failure. */
static char *slurp(const char *path, const char **why)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL, *bigger;
	size_t len = 0, cap = 0, n;

	if (!f) {
		*why = strerror(errno);
		return NULL;
	}
	do {
		if (cap - len < 2) {
			cap = cap ? cap * 2 : 8192;
			bigger = cap > FILE_MAX_BYTES ? NULL : realloc(buf, cap);
			if (!bigger) {
				*why = "file is too large";
				goto free_buf;
			}
			buf = bigger;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		*why = strerror(errno);
		goto free_buf;
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
free_buf:
	free(buf);
	fclose(f);
	return NULL;
}

/* ---- checks libconfig 1.5 gets wrong, run on the raw text ---- */

static const char *skip_string(const char *p, unsigned *line)
{
	for (p++; *p && *p != '"'; p++) {
		if (*p == '\\' && p[1])
			p++;
		if (*p == '\n')
			(*line)++;
	}
	return *p ? p + 1 : p;
}

static const char *skip_comment(const char *p, unsigned *line)
{
	if (*p == '#' || p[1] == '/')
		return p + strcspn(p, "\n");
	for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
		if (*p == '\n')
			(*line)++;
	return *p ? p + 2 : p;
}

/*
 * libconfig 1.5 stores an integer literal without an L suffix in an int,
 * silently truncating 5000000000 to 705032704; catch it instead.
 */
static const char *check_number(struct loader *ld, const char *file,
				const char *p, unsigned line)
{
	const char *d = (*p == '-' || *p == '+') ? p + 1 : p;
	int base = (d[0] == '0' && (d[1] == 'x' || d[1] == 'X')) ? 16 : 10;
	char *end;
	long long v;

	errno = 0;
	v = strtoll(p, &end, base);
	if (base == 10 && (*end == '.' || *end == 'e' || *end == 'E'))
		return end + strspn(end, "0123456789.eE+-");
	if (*end == 'L')
		return end + strspn(end, "L");
	if (errno == ERANGE || v > INT_MAX || v < INT_MIN)
		report(ld, file, line, "integer %.*s does not fit in 32 bits; "
		       "write it with an L suffix (%.*sL)",
		       (int)(end - p), p, (int)(end - p), p);
	return end > p ? end : p + 1;
}

static void check_int_literals(struct loader *ld, const char *file,
			       const char *p)
{
	unsigned line = 1;

	while (*p) {
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '"') {
			p = skip_string(p, &line);
		} else if (*p == '#' || (*p == '/' && (p[1] == '/' || p[1] == '*'))) {
			p = skip_comment(p, &line);
		} else if ((*p >= '0' && *p <= '9') ||
			   ((*p == '-' || *p == '+') && p[1] >= '0' && p[1] <= '9')) {
			p = check_number(ld, file, p, line);
		} else if (is_hostname_char(*p) || *p == '*') {
			/* a setting name such as a1: its digits are no number */
			while (is_hostname_char(*p) || *p == '*')
				p++;
		} else {
			p++;
		}
	}
}

/* The file named by an @include directive at line start p, or NULL. */
static char *include_target(const char *p)
{
	const char *q;

	p += strspn(p, " \t");
	if (strncmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
		return NULL;
	p += 8 + strspn(p + 8, " \t");
	if (*p != '"')
		return NULL;
	q = p + 1 + strcspn(p + 1, "\"\n");
	return *q == '"' ? strndup(p + 1, (size_t)(q - p - 1)) : NULL;
}

static void check_text(struct loader *ld, const char *file, const char *text,
		       const char *dir, int depth);

/*
 * libconfig 1.5 calls exit() when an @include names a directory, which
 * would kill a running daemon on SIGHUP; refuse such files up front.
 * Missing files are left to libconfig, which reports them properly.
 */
static void check_include(struct loader *ld, const char *file, unsigned line,
			  const char *name, const char *dir, int depth)
{
	char path[PATH_MAX];
	struct stat st;
	const char *why;
	char *text;
	int n;

	n = snprintf(path, sizeof(path), "%s%s%s", dir ? dir : "",
		     dir ? "/" : "", name);
	if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) != 0)
		return;
	if (!S_ISREG(st.st_mode)) {
		report(ld, file, line, "@include \"%s\" is not a regular file", name);
		ld->unreadable = true;
		return;
	}
	if (depth >= INCLUDE_DEPTH_MAX)
		return;
	text = slurp(path, &why);
	if (!text)
		return;
	check_text(ld, name, text, dir, depth + 1);
	free(text);
}

static void check_text(struct loader *ld, const char *file, const char *text,
		       const char *dir, int depth)
{
	const char *p = text;
	unsigned line = 1;
	char *name;

	check_int_literals(ld, file, text);
	for (; p; line++) {
		name = include_target(p);
		if (name) {
			check_include(ld, file, line, name, dir, depth);
			free(name);
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
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
	cfg->upstream_keepalive_timeout_ms = 60000;
	cfg->defaults.connect_timeout_ms = 1000;
	cfg->defaults.timeout_ms = 30000;
	cfg->path = strdup(name);
	cfg->access_log = strdup("-");
	cfg->access_log_format = strdup("logfmt");
	cfg->deadline_header = strdup("X-Request-Timeout-Ms");
	if (!cfg->path || !cfg->access_log || !cfg->access_log_format ||
	    !cfg->deadline_header) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static struct config *load_text(struct loader *ld, const char *text,
				const char *include_dir)
{
	config_t lc;

	check_text(ld, NULL, text, include_dir, 0);
	if (ld->unreadable)
		return NULL;
	config_init(&lc);
	if (include_dir)
		config_set_include_dir(&lc, include_dir);
	if (!config_read_string(&lc, text)) {
		report(ld, config_error_file(&lc), (unsigned)config_error_line(&lc),
		       "%s", config_error_text(&lc));
		goto destroy_lc;
	}
	ld->cfg = config_new(ld->name);
	if (!ld->cfg) {
		report(ld, NULL, 0, "out of memory");
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
	struct loader ld = { .name = name, .err = err };

	return load_text(&ld, text, NULL);
}

struct config *config_load(const char *path, FILE *err)
{
	struct loader ld = { .name = path, .err = err };
	struct config *cfg = NULL;
	const char *why, *slash;
	char *text, *dir;

	/* read it ourselves so the text checks see what libconfig parses */
	text = slurp(path, &why);
	if (!text) {
		report(&ld, NULL, 0, "cannot read: %s", why);
		return NULL;
	}
	/* @include paths are relative to the file, not to the daemon's cwd */
	slash = strrchr(path, '/');
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
		    : strdup(".");
	if (!dir) {
		report(&ld, NULL, 0, "out of memory");
		goto free_text;
	}
	cfg = load_text(&ld, text, dir);
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
	free(r->upstream);
	free(r->upstream_origin);
	free(r->upstream_base);
	free(r->upstream_host);
}

void config_free(struct config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->nroutes; i++)
		route_free_fields(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->listen);
	free(cfg->admin);
	free(cfg->access_log);
	free(cfg->access_log_format);
	free(cfg->deadline_header);
	free(cfg->path);
	free(cfg);
}
