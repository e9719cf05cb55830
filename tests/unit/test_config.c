/* test_config.c - unit tests for loading and validating the config file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define LISTEN "listen = \"127.0.0.1:8080\";\n"
#define ROUTE_A "routes = ( { name = \"a\"; prefix = \"/\"; upstream = \"http://127.0.0.1:9000\"; } );\n"

struct result {
	struct config *cfg;
	char *errs;     /* everything written to the error stream */
};

static struct result load(const char *text)
{
	struct result res = { NULL, NULL };
	size_t len = 0;
	FILE *f = open_memstream(&res.errs, &len);

	assert_non_null(f);
	res.cfg = config_load_string("t.conf", text, f);
	fclose(f);
	return res;
}

static void result_free(struct result *res)
{
	config_free(res->cfg);
	free(res->errs);
}

static struct config *load_ok(const char *text)
{
	struct result res = load(text);

	if (!res.cfg || res.errs[0])
		print_error("unexpected errors:\n%s", res.errs);
	free(res.errs);
	assert_non_null(res.cfg);
	return res.cfg;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Fails unless loading text is refused with each of the given messages
 * (NULL-terminated) and nothing else. */
static void expect_errors(const char *text, ...)
{
	struct result res = load(text);
	const char *want;
	int n = 0;
	va_list ap;

	va_start(ap, text);
	for (want = va_arg(ap, const char *); want; want = va_arg(ap, const char *)) {
		n++;
		if (!strstr(res.errs, want)) {
			print_error("missing \"%s\" in:\n%s", want, res.errs);
			fail();
		}
	}
	va_end(ap);
	if (res.cfg || count_lines(res.errs) != n) {
		print_error("want %d errors, got:\n%s", n, res.errs);
		fail();
	}
	result_free(&res);
}

static void test_minimal_defaults(void **state)
{
	struct config *cfg = load_ok(LISTEN ROUTE_A);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const struct config_route *r;

	(void)state;
	assert_string_equal(cfg->path, "t.conf");
	assert_int_equal(cfg->nlisten, 1);
	assert_string_equal(cfg->listen[0].host, "127.0.0.1");
	assert_int_equal(cfg->listen[0].port, 8080);
	assert_false(cfg->listen[0].ipv6);
	assert_null(cfg->admin);
	assert_false(cfg->admin_show_query);
	assert_int_equal(cfg->workers, ncpu > 256 ? 256 : ncpu);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->client_header_timeout_ms, 10000);
	assert_int_equal(cfg->client_idle_timeout_ms, 60000);
	assert_int_equal(cfg->max_body_bytes, 104857600);
	assert_int_equal(cfg->shutdown_grace_ms, 10000);
	assert_string_equal(cfg->access_log, "-");
	assert_string_equal(cfg->access_log_format, "logfmt");
	assert_string_equal(cfg->deadline_header, "X-Request-Timeout-Ms");
	assert_int_equal(cfg->defaults.connect_timeout_ms, 1000);
	assert_int_equal(cfg->defaults.timeout_ms, 30000);
	assert_int_equal(cfg->defaults.header_timeout_ms, 0);
	assert_int_equal(cfg->defaults.idle_timeout_ms, 0);
	assert_int_equal(cfg->nroutes, 1);
	r = &cfg->routes[0];
	assert_string_equal(r->name, "a");
	assert_string_equal(r->prefix, "/");
	assert_null(r->host);
	assert_int_equal(r->nservers, 1);
	assert_string_equal(r->servers[0].url, "http://127.0.0.1:9000");
	assert_string_equal(r->servers[0].origin, "http://127.0.0.1:9000");
	assert_string_equal(r->servers[0].host, "127.0.0.1:9000");
	assert_int_equal(r->servers[0].slot, 0);
	assert_string_equal(r->upstream_base, "");
	assert_false(r->strip_prefix);
	assert_true(r->preserve_host);
	assert_true(r->websocket);
	assert_int_equal(r->tunnel_idle_timeout_ms, 0);
	assert_int_equal(r->tunnel_max_ms, 0);
	assert_int_equal(r->t.connect_timeout_ms, 1000);
	assert_int_equal(r->t.timeout_ms, 30000);
	assert_int_equal(r->balance, CONFIG_BALANCE_ROUND_ROBIN);
	assert_int_equal(r->retries, 1);
	assert_int_equal(r->retry_on, CONFIG_RETRY_CONNECT | CONFIG_RETRY_RESET);
	assert_int_equal(r->retry_on, CONFIG_RETRY_DEFAULT);
	assert_int_equal(r->per_try_timeout_ms, 0);
	assert_int_equal(r->eject_after, 5);
	assert_int_equal(r->eject_ms, 10000);
	assert_false(r->health.on);
	assert_null(r->health.path);
	assert_int_equal(r->health.interval_ms, 2000);
	assert_int_equal(r->health.timeout_ms, 1000);
	assert_int_equal(r->health.rise, 2);
	assert_int_equal(r->health.fall, 3);
	assert_int_equal(r->line, 2);
	config_free(cfg);
}

static void test_every_key(void **state)
{
	struct config *cfg = load_ok(
		"listen = \"0.0.0.0:80\";\n"
		"admin = \"127.0.0.1:9901\"; admin_show_query = true;\n"
		"workers = 3;\n"
		"max_connections = 50;\n"
		"client_header_timeout_ms = 1100;\n"
		"client_idle_timeout_ms = 1200;\n"
		"max_body_bytes = 0;\n"
		"shutdown_grace_ms = 0;\n"
		"access_log = \"/var/log/ctxproxy.log\";\n"
		"access_log_format = \"json\";\n"
		"deadline_header = \"X-Budget\";\n"
		"defaults = { connect_timeout_ms = 11; timeout_ms = 12;\n"
		"  header_timeout_ms = 13; idle_timeout_ms = 14; };\n"
		"routes = ( { name = \"r-1.x_y\"; prefix = \"/api/\";\n"
		"  host = \"API.Example.com\"; upstream = \"http://Up.Example:81/base/\";\n"
		"  strip_prefix = true; preserve_host = false;\n"
		"  connect_timeout_ms = 21; timeout_ms = 22;\n"
		"  header_timeout_ms = 23; idle_timeout_ms = 24;\n"
		"  websocket = false; tunnel_idle_timeout_ms = 25;\n"
		"  tunnel_max_ms = 26; } );\n");
	const struct config_route *r = &cfg->routes[0];

	(void)state;
	assert_string_equal(cfg->listen[0].host, "0.0.0.0");
	assert_string_equal(cfg->admin, "127.0.0.1:9901");
	assert_true(cfg->admin_show_query);
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->max_connections, 50);
	assert_int_equal(cfg->client_header_timeout_ms, 1100);
	assert_int_equal(cfg->client_idle_timeout_ms, 1200);
	assert_int_equal(cfg->max_body_bytes, 0);
	assert_int_equal(cfg->shutdown_grace_ms, 0);
	assert_string_equal(cfg->access_log, "/var/log/ctxproxy.log");
	assert_string_equal(cfg->access_log_format, "json");
	assert_string_equal(cfg->deadline_header, "X-Budget");
	assert_int_equal(cfg->defaults.connect_timeout_ms, 11);
	assert_int_equal(cfg->defaults.timeout_ms, 12);
	assert_int_equal(cfg->defaults.header_timeout_ms, 13);
	assert_int_equal(cfg->defaults.idle_timeout_ms, 14);
	assert_string_equal(r->name, "r-1.x_y");
	assert_string_equal(r->prefix, "/api/");
	assert_string_equal(r->host, "api.example.com");
	assert_string_equal(r->servers[0].url, "http://Up.Example:81/base/");
	assert_int_equal(r->nservers, 1);
	assert_string_equal(r->servers[0].origin, "http://up.example:81");
	assert_string_equal(r->servers[0].host, "up.example:81");
	assert_string_equal(r->upstream_base, "/base");
	assert_true(r->strip_prefix);
	assert_false(r->preserve_host);
	assert_int_equal(r->t.connect_timeout_ms, 21);
	assert_int_equal(r->t.timeout_ms, 22);
	assert_int_equal(r->t.header_timeout_ms, 23);
	assert_int_equal(r->t.idle_timeout_ms, 24);
	assert_false(r->websocket);
	assert_int_equal(r->tunnel_idle_timeout_ms, 25);
	assert_int_equal(r->tunnel_max_ms, 26);
	assert_int_equal(r->line, 14);
	config_free(cfg);
}

static void test_listen_list_and_ipv6(void **state)
{
	struct config *cfg = load_ok(
		"listen = ( \"10.1.2.3:80\", \"[::1]:8443\", \"*:0\", \":9\", \"[::]:8080\" );\n"
		ROUTE_A);

	(void)state;
	assert_int_equal(cfg->nlisten, 5);
	assert_string_equal(cfg->listen[0].host, "10.1.2.3");
	assert_int_equal(cfg->listen[0].port, 80);
	assert_string_equal(cfg->listen[1].host, "::1");
	assert_int_equal(cfg->listen[1].port, 8443);
	assert_true(cfg->listen[1].ipv6);
	assert_string_equal(cfg->listen[2].host, "");
	assert_int_equal(cfg->listen[2].port, 0);
	assert_false(cfg->listen[2].ipv6);
	assert_string_equal(cfg->listen[3].host, "");
	assert_int_equal(cfg->listen[3].port, 9);
	assert_string_equal(cfg->listen[4].host, "::");
	assert_true(cfg->listen[4].ipv6);
	config_free(cfg);

	cfg = load_ok("listen = [ \"[::1]:1\", \"127.0.0.1:2\" ];\n" ROUTE_A);
	assert_int_equal(cfg->nlisten, 2);
	assert_true(cfg->listen[0].ipv6);
	assert_int_equal(cfg->listen[1].port, 2);
	config_free(cfg);
}

static void test_listen_errors(void **state)
{
	(void)state;
	expect_errors(
		"listen = (\n"
		"  \"localhost:80\",\n"
		"  \"1.2.3.4\",\n"
		"  \"1.2.3.4:65536\",\n"
		"  \"::1:80\",\n"
		"  \"[zz]:80\",\n"
		"  \"1.2.3.4:8x\",\n"
		"  80,\n"
		"  \"[::1]\" );\n" ROUTE_A,
		"t.conf:2: invalid listen address 'localhost:80': not a numeric IPv4 address",
		"t.conf:3: invalid listen address '1.2.3.4': expected HOST:PORT",
		"t.conf:4: invalid listen address '1.2.3.4:65536': port must be a number from 0 to 65535",
		"t.conf:5: invalid listen address '::1:80': IPv6 addresses must be in brackets",
		"t.conf:6: invalid listen address '[zz]:80': not a numeric IPv6 address",
		"t.conf:7: invalid listen address '1.2.3.4:8x': port must be",
		"t.conf:8: 'listen' addresses must be strings",
		"t.conf:9: invalid listen address '[::1]': expected [IPv6]:PORT",
		NULL);
	expect_errors("listen = ();\n" ROUTE_A,
		      "t.conf:1: 'listen' must name at least one address", NULL);
	expect_errors("listen = 8080;\n" ROUTE_A,
		      "t.conf:1: 'listen' must be a string or a list of strings", NULL);
	expect_errors("listen = ( \"*:80\", \"0.0.0.0:80\" );\n" ROUTE_A,
		      "t.conf:1: duplicate listen address", NULL);
	expect_errors(ROUTE_A,
		      "t.conf:0: missing required key 'listen'", NULL);
}

/* "listen = ( "127.0.0.1:P0", ... )" with n addresses, after a comment. */
static char *listen_list(int n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int i;

	assert_non_null(f);
	fprintf(f, "# many listeners\nlisten = (\n");
	for (i = 0; i < n; i++)
		fprintf(f, "  \"127.0.0.1:%d\"%s\n", 20000 + i, i + 1 < n ? "," : "");
	fprintf(f, ");\n%s", ROUTE_A);
	fclose(f);
	return text;
}

/* Every limit is the configuration's: what front.c cannot serve (one MHD
 * daemon per address, CONFIG_LISTEN_MAX of them) is refused here, with
 * the line, instead of being accepted and left unanswered. */
static void test_listen_limit(void **state)
{
	char *text = listen_list(CONFIG_LISTEN_MAX);
	struct config *cfg = load_ok(text);

	(void)state;
	assert_int_equal(cfg->nlisten, CONFIG_LISTEN_MAX);
	config_free(cfg);
	free(text);
	text = listen_list(CONFIG_LISTEN_MAX + 1);
	expect_errors(text, "t.conf:2: 'listen' names more than 16 addresses",
		      NULL);
	free(text);
}

static void test_admin(void **state)
{
	(void)state;
	expect_errors(LISTEN "admin = \"localhost:9901\";\n" ROUTE_A,
		      "t.conf:2: invalid admin address 'localhost:9901': not a numeric IPv4 address",
		      NULL);
	expect_errors(LISTEN "admin = \"127.0.0.1:8080\";\n" ROUTE_A,
		      "t.conf:2: the admin address is also a listen address", NULL);
	expect_errors(LISTEN "admin = 9901;\n" ROUTE_A,
		      "t.conf:2: 'admin' must be a string", NULL);
	expect_errors(LISTEN "admin_show_query = 1;\n" ROUTE_A,
		      "t.conf:2: 'admin_show_query' must be true or false", NULL);
}

static void test_defaults_inheritance(void **state)
{
	struct config *cfg = load_ok(
		LISTEN
		"routes = (\n"
		"  { name = \"fast\"; prefix = \"/f/\"; upstream = \"http://h:1\";\n"
		"    timeout_ms = 100; idle_timeout_ms = 7; },\n"
		"  { name = \"plain\"; prefix = \"/\"; upstream = \"http://h:2\"; }\n"
		");\n"
		/* defaults after routes still apply to them */
		"defaults = { connect_timeout_ms = 200; timeout_ms = 5000L;\n"
		"  header_timeout_ms = 300; };\n");

	(void)state;
	assert_int_equal(cfg->routes[0].t.connect_timeout_ms, 200);
	assert_int_equal(cfg->routes[0].t.timeout_ms, 100);
	assert_int_equal(cfg->routes[0].t.header_timeout_ms, 300);
	assert_int_equal(cfg->routes[0].t.idle_timeout_ms, 7);
	assert_int_equal(cfg->routes[1].t.connect_timeout_ms, 200);
	assert_int_equal(cfg->routes[1].t.timeout_ms, 5000);
	assert_int_equal(cfg->routes[1].t.header_timeout_ms, 300);
	assert_int_equal(cfg->routes[1].t.idle_timeout_ms, 0);
	assert_int_equal(cfg->routes[0].line, 3);
	assert_int_equal(cfg->routes[1].line, 5);
	config_free(cfg);
}

static void test_int64_values(void **state)
{
	struct config *cfg = load_ok(LISTEN
		"max_body_bytes = 5000000000L;\n"
		"shutdown_grace_ms = 30000L;\n"
		"max_connections = 0x10;\n" ROUTE_A);

	(void)state;
	assert_int_equal(cfg->max_body_bytes, 5000000000LL);
	assert_int_equal(cfg->shutdown_grace_ms, 30000);
	assert_int_equal(cfg->max_connections, 16);
	config_free(cfg);
	/* libconfig 1.5 would silently truncate these; floats are not ints */
	expect_errors(LISTEN
		"max_body_bytes = 5000000000;  # 4.7 GB\n"
		"workers = 0x100000002;\n"
		"timeout = \"9999999999\"; /* 9999999999 */ x1 = 2.5e12;\n" ROUTE_A,
		"t.conf:2: integer 5000000000 does not fit in 32 bits; write it with an L suffix (5000000000L)",
		"t.conf:3: integer 0x100000002 does not fit in 32 bits",
		"t.conf:4: unknown key 'timeout'",
		"t.conf:4: unknown key 'x1'",
		NULL);
}

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"foo = 1;\n"
		"defaults = { timeout_ms = 5; bar = 2; };\n"
		"routes = ( { name = \"a\"; prefix = \"/\";\n"
		"  upstream = \"http://h\"; timeout = 5; } );\n",
		"t.conf:2: unknown key 'foo'",
		"t.conf:3: unknown key 'bar' in defaults",
		"t.conf:5: unknown key 'timeout' in route",
		NULL);
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"workers = \"2\";\n"
		"max_body_bytes = 1.5;\n"
		"access_log = true;\n"
		"defaults = ( 1 );\n"
		"routes = ( { name = 5; prefix = \"/\"; upstream = \"http://h\";\n"
		"  strip_prefix = 1; preserve_host = \"no\"; timeout_ms = \"5\"; },\n"
		"  \"x\" );\n",
		"t.conf:2: 'workers' must be an integer",
		"t.conf:3: 'max_body_bytes' must be an integer",
		"t.conf:4: 'access_log' must be a string",
		"t.conf:5: 'defaults' must be a group",
		"t.conf:6: 'name' must be a string",
		"t.conf:7: 'strip_prefix' must be true or false",
		"t.conf:7: 'preserve_host' must be true or false",
		"t.conf:7: 'timeout_ms' must be an integer",
		"t.conf:8: each route must be a group",
		NULL);
	expect_errors(LISTEN "routes = { a = 1; };\n",
		      "t.conf:2: 'routes' must be a list", NULL);
}

static void test_ranges(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"workers = 0;\n"
		"max_connections = 0;\n"
		"client_header_timeout_ms = 0;\n"
		"client_idle_timeout_ms = -5;\n"
		"max_body_bytes = -1;\n"
		"shutdown_grace_ms = -1;\n"
		"defaults = { connect_timeout_ms = 0; timeout_ms = 0;\n"
		"  header_timeout_ms = -1; idle_timeout_ms = 3000000000L; };\n"
		ROUTE_A,
		"t.conf:2: 'workers' must be between 1 and 256",
		"t.conf:3: 'max_connections' must be between 1 and 2147483647",
		"t.conf:4: 'client_header_timeout_ms' must be between 1 and",
		"t.conf:5: 'client_idle_timeout_ms' must be between 1 and",
		"t.conf:6: 'max_body_bytes' must be at least 0",
		"t.conf:7: 'shutdown_grace_ms' must be between 0 and",
		"t.conf:8: 'connect_timeout_ms' must be between 1 and",
		"t.conf:8: 'timeout_ms' must be between 1 and",
		"t.conf:9: 'header_timeout_ms' must be between 0 and",
		"t.conf:9: 'idle_timeout_ms' must be between 0 and 2147483647",
		NULL);
	expect_errors(LISTEN "workers = 257;\n" ROUTE_A,
		      "t.conf:2: 'workers' must be between 1 and 256", NULL);
	expect_errors(LISTEN "trace_sample_percent = 101;\n"
		      "trace_context = 1;\n"
		      "otlp_endpoint = \"udp://127.0.0.1:4318\";\n"
		      "routes = ( { name = \"r\"; prefix = \"/\"; upstream = \"http://h\";\n"
		      "  tunnel_max_ms = -1; tunnel_idle_timeout_ms = 1.5; } );\n",
		      "t.conf:2: 'trace_sample_percent' must be between 0 and 100",
		      "t.conf:3: 'trace_context' must be true or false",
		      "t.conf:4: 'otlp_endpoint' only http:// and https:// upstreams are supported",
		      "t.conf:6: 'tunnel_max_ms' must be between 0 and",
		      "t.conf:6: 'tunnel_idle_timeout_ms' must be an integer",
		      NULL);
	expect_errors(LISTEN "log_level = \"verbose\";\n" ROUTE_A,
		      "t.conf:2: 'log_level' must be \"debug\", \"info\", \"warn\" or \"error\"",
		      NULL);
}

static void test_trace_keys(void **state)
{
	struct config *cfg = load_ok(LISTEN ROUTE_A);

	(void)state;
	assert_true(cfg->trace_context);
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->trace_sample_percent, 0);
	assert_null(cfg->otlp_endpoint);
	config_free(cfg);
	cfg = load_ok(LISTEN "trace_context = false;\n"
		      "trace_sample_percent = 100;\n"
		      "log_level = \"warn\";\n"
		      "otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\";\n"
		      ROUTE_A);
	assert_false(cfg->trace_context);
	assert_int_equal(cfg->trace_sample_percent, 100);
	assert_int_equal(cfg->log_level, LOG_WARN);
	assert_string_equal(cfg->otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
	config_free(cfg);
}

/* One route per line so each message's line names its URL. */
#define UP(n, url) "{ name = \"r" #n "\"; prefix = \"/" #n "\"; upstream = \"" url "\"; },\n"

static void test_bad_upstreams(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		UP(3, "https://")
		UP(4, "http://")
		UP(5, "http://h:0")
		UP(6, "http://h:65536")
		UP(7, "http://h:8x")
		UP(8, "http://h/p?q=1")
		UP(9, "127.0.0.1:9000")
		UP(10, "ftp://h")
		UP(11, "http://user@h")
		UP(12, "http://[::1")
		UP(13, "http://h:")
		UP(14, "http://:80")
		UP(15, "http://h/a#frag")
		UP(16, "http://h h")
		"{ name = \"ok\"; prefix = \"/\"; upstream = \"http://h\"; }\n"
		");\n",
		"t.conf:3: invalid upstream 'https://': missing host",
		"t.conf:4: invalid upstream 'http://': missing host",
		"t.conf:5: invalid upstream 'http://h:0': port must be a number from 1 to 65535",
		"t.conf:6: invalid upstream 'http://h:65536': port must be",
		"t.conf:7: invalid upstream 'http://h:8x': port must be",
		"t.conf:8: invalid upstream 'http://h/p?q=1': must not contain a query or fragment",
		"t.conf:9: invalid upstream '127.0.0.1:9000': must start with http:// or https://",
		"t.conf:10: invalid upstream 'ftp://h': only http:// and https:// upstreams are supported",
		"t.conf:11: invalid upstream 'http://user@h': must not contain user information",
		"t.conf:12: invalid upstream 'http://[::1': host is not a valid IPv6 address",
		"t.conf:13: invalid upstream 'http://h:': port must be",
		"t.conf:14: invalid upstream 'http://:80': missing host",
		"t.conf:15: invalid upstream 'http://h/a#frag': must not contain a query",
		"t.conf:16: invalid upstream 'http://h h': host contains invalid characters",
		NULL);
}

static void test_good_upstreams(void **state)
{
	struct config *cfg = load_ok(LISTEN
		"routes = (\n"
		UP(1, "http://[::1]/")
		UP(2, "http://10.0.0.1:81/a/b")
		UP(3, "HTTP://h//")
		"{ name = \"ok\"; prefix = \"/\"; upstream = \"http://[2001:DB8::1]:8080/x\"; }\n"
		");\n");

	(void)state;
	assert_string_equal(cfg->routes[0].servers[0].origin, "http://[::1]:80");
	assert_string_equal(cfg->routes[0].upstream_base, "");
	assert_string_equal(cfg->routes[1].servers[0].origin, "http://10.0.0.1:81");
	assert_string_equal(cfg->routes[1].upstream_base, "/a/b");
	assert_string_equal(cfg->routes[2].servers[0].origin, "http://h:80");
	assert_string_equal(cfg->routes[2].upstream_base, "");
	assert_string_equal(cfg->routes[3].servers[0].origin, "http://[2001:db8::1]:8080");
	assert_string_equal(cfg->routes[3].upstream_base, "/x");
	config_free(cfg);
}

static void test_upstream_list(void **state)
{
	struct config *cfg = load_ok(LISTEN
		"routes = (\n"
		"  { name = \"l\"; prefix = \"/l/\";\n"
		"    upstream = ( \"http://10.0.0.1:81/api/\", \"http://B.example/api\" ); },\n"
		"  { name = \"a\"; prefix = \"/a/\";\n"
		"    upstream = [ \"http://a:1\", \"http://a:2\", \"http://[::1]:3\" ]; },\n"
		"  { name = \"one\"; prefix = \"/\"; upstream = ( \"http://h:9\" ); }\n"
		");\n");
	const struct config_route *r = &cfg->routes[0];

	(void)state;
	assert_int_equal(r->nservers, 2);
	assert_string_equal(r->servers[0].url, "http://10.0.0.1:81/api/");
	assert_string_equal(r->servers[0].origin, "http://10.0.0.1:81");
	assert_string_equal(r->servers[0].host, "10.0.0.1:81");
	assert_string_equal(r->servers[1].url, "http://B.example/api");
	assert_string_equal(r->servers[1].origin, "http://b.example:80");
	assert_string_equal(r->servers[1].host, "b.example");
	assert_string_equal(r->upstream_base, "/api");
	r = &cfg->routes[1];
	assert_int_equal(r->nservers, 3);
	assert_string_equal(r->servers[0].origin, "http://a:1");
	assert_string_equal(r->servers[1].origin, "http://a:2");
	assert_string_equal(r->servers[2].origin, "http://[::1]:3");
	assert_string_equal(r->servers[2].host, "[::1]:3");
	assert_string_equal(r->upstream_base, "");
	r = &cfg->routes[2];
	assert_int_equal(r->nservers, 1);
	assert_string_equal(r->servers[0].host, "h:9");
	config_free(cfg);
}

/* "routes = ( { ...; upstream = ( "http://h:20000", ... ) } )" */
static char *upstream_list(int n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int i;

	assert_non_null(f);
	fprintf(f, LISTEN "routes = ( { name = \"r\"; prefix = \"/\";\n  upstream = (");
	for (i = 0; i < n; i++)
		fprintf(f, "%s\"http://h:%d\"", i ? ", " : " ", 20000 + i);
	fprintf(f, " ); } );\n");
	fclose(f);
	return text;
}

static void test_upstream_limit(void **state)
{
	char *text = upstream_list(CONFIG_SERVERS_MAX);
	struct config *cfg = load_ok(text);

	(void)state;
	assert_int_equal(cfg->routes[0].nservers, CONFIG_SERVERS_MAX);
	assert_string_equal(cfg->routes[0].servers[CONFIG_SERVERS_MAX - 1].origin,
			    "http://h:20063");
	config_free(cfg);
	free(text);
	text = upstream_list(CONFIG_SERVERS_MAX + 1);
	expect_errors(text, "t.conf:3: 'upstream' names more than 64 servers",
		      NULL);
	free(text);
}

#define R(n, rest) "{ name = \"r" #n "\"; prefix = \"/" #n "\"; " rest " },\n"

static void test_upstream_list_errors(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		R(3, "upstream = ( );")
		R(4, "upstream = ( \"http://a/x\", \"http://b/y/\" );")
		R(5, "upstream = ( \"http://a/x\", \"http://b\" );")
		R(6, "upstream = ( \"http://a:80\", \"http://b\", \"http://A\" );")
		R(7, "upstream = ( \"http://a\", 5 );")
		R(8, "upstream = 5;")
		R(9, "upstream = ( \"http://a\", \"https://b/x\" );")
		R(10, "upstream = ( \"http://a:1\",\n  \"http://a:1\" );")
		"{ name = \"ok\"; prefix = \"/\"; upstream = [ ]; }\n"
		");\n",
		"t.conf:3: 'upstream' must name at least one server",
		"t.conf:4: every server of 'upstream' must have the same base path: '/x' and '/y'",
		"t.conf:5: every server of 'upstream' must have the same base path: '/x' and '/'",
		"t.conf:6: 'upstream' names the same server twice: 'http://a:80' and 'http://A'",
		"t.conf:7: 'upstream' servers must be strings",
		"t.conf:8: 'upstream' must be a string or a list of strings",
		"t.conf:9: every server of 'upstream' must have the same base path: '/' and '/x'",
		"t.conf:11: 'upstream' names the same server twice: 'http://a:1' and 'http://a:1'",
		"t.conf:12: 'upstream' must name at least one server",
		NULL);
}

static void test_every_upstream_key(void **state)
{
	struct config *cfg = load_ok(LISTEN
		"routes = (\n"
		"  { name = \"all\"; prefix = \"/a/\"; upstream = ( \"http://a\", \"http://b\" );\n"
		"    balance = \"least_request\"; retries = 16;\n"
		"    retry_on = ( \"connect_failure\", \"reset\", \"timeout\", \"502\", \"503\", \"504\" );\n"
		"    per_try_timeout_ms = 250; eject_after = 0; eject_ms = 300000;\n"
		"    health = { path = \"/healthz?full=1\"; interval_ms = 500; timeout_ms = 100;\n"
		"               rise = 1; fall = 100; }; },\n"
		"  { name = \"none\"; prefix = \"/n/\"; upstream = \"http://a\";\n"
		"    balance = \"round_robin\"; retries = 0; retry_on = ( );\n"
		"    eject_after = 1000; eject_ms = 1; health = { path = \"/\"; }; },\n"
		"  { name = \"arr\"; prefix = \"/r/\"; upstream = \"http://a\";\n"
		"    retry_on = [ \"503\", \"timeout\" ]; },\n"
		"  { name = \"one\"; prefix = \"/\"; upstream = \"http://a\"; retry_on = \"504\"; }\n"
		");\n");
	const struct config_route *r = &cfg->routes[0];

	(void)state;
	assert_int_equal(r->balance, CONFIG_BALANCE_LEAST_REQUEST);
	assert_int_equal(r->retries, 16);
	assert_int_equal(r->retry_on, CONFIG_RETRY_CONNECT | CONFIG_RETRY_RESET |
			 CONFIG_RETRY_TIMEOUT | CONFIG_RETRY_502 |
			 CONFIG_RETRY_503 | CONFIG_RETRY_504);
	assert_int_equal(r->per_try_timeout_ms, 250);
	assert_int_equal(r->eject_after, 0);
	assert_int_equal(r->eject_ms, 300000);
	assert_true(r->health.on);
	assert_string_equal(r->health.path, "/healthz?full=1");
	assert_int_equal(r->health.interval_ms, 500);
	assert_int_equal(r->health.timeout_ms, 100);
	assert_int_equal(r->health.rise, 1);
	assert_int_equal(r->health.fall, 100);
	r = &cfg->routes[1];
	assert_int_equal(r->balance, CONFIG_BALANCE_ROUND_ROBIN);
	assert_int_equal(r->retries, 0);
	assert_int_equal(r->retry_on, 0);
	assert_int_equal(r->eject_after, 1000);
	assert_int_equal(r->eject_ms, 1);
	assert_true(r->health.on);
	assert_string_equal(r->health.path, "/");
	assert_int_equal(r->health.interval_ms, 2000);
	assert_int_equal(r->health.timeout_ms, 1000);
	assert_int_equal(r->health.rise, 2);
	assert_int_equal(r->health.fall, 3);
	assert_int_equal(cfg->routes[2].retry_on,
			 CONFIG_RETRY_503 | CONFIG_RETRY_TIMEOUT);
	assert_int_equal(cfg->routes[3].retry_on, CONFIG_RETRY_504);
	assert_false(cfg->routes[3].health.on);
	config_free(cfg);
}

static void test_retry_and_balance_errors(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		R(3, "upstream = \"http://h\"; retry_on = ( \"reset\",\n  \"5xx\" );")
		R(5, "upstream = \"http://h\"; retry_on = ( 503 );")
		R(6, "upstream = \"http://h\"; retry_on = 5;")
		R(7, "upstream = \"http://h\"; balance = \"random\";")
		R(8, "upstream = \"http://h\"; balance = 1;")
		R(9, "upstream = \"http://h\"; retries = 17;")
		R(10, "upstream = \"http://h\"; retries = -1;")
		R(11, "upstream = \"http://h\"; per_try_timeout_ms = -1;")
		R(12, "upstream = \"http://h\"; eject_after = 1001;")
		R(13, "upstream = \"http://h\"; eject_ms = 0;")
		"{ name = \"ok\"; prefix = \"/\"; upstream = \"http://h\"; eject_ms = 300001; }\n"
		");\n",
		"t.conf:4: unknown 'retry_on' value '5xx' (allowed: connect_failure, reset, timeout, 502, 503, 504)",
		"t.conf:5: 'retry_on' values must be strings (write \"503\", not 503)",
		"t.conf:6: 'retry_on' must be a list of strings",
		"t.conf:7: 'balance' must be \"round_robin\" or \"least_request\", not 'random'",
		"t.conf:8: 'balance' must be a string",
		"t.conf:9: 'retries' must be between 0 and 16",
		"t.conf:10: 'retries' must be between 0 and 16",
		"t.conf:11: 'per_try_timeout_ms' must be between 0 and 2147483647",
		"t.conf:12: 'eject_after' must be between 0 and 1000",
		"t.conf:13: 'eject_ms' must be between 1 and 300000",
		"t.conf:14: 'eject_ms' must be between 1 and 300000",
		NULL);
}

static void test_health_errors(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		R(3, "upstream = \"http://h\"; health = { interval_ms = 5; };")
		R(4, "upstream = \"http://h\"; health = { path = \"healthz\"; };")
		R(5, "upstream = \"http://h\"; health = { path = \"/a b\"; };")
		R(6, "upstream = \"http://h\"; health = { path = \"/a#b\"; };")
		R(7, "upstream = \"http://h\"; health = { path = \"/\"; port = 1; };")
		R(8, "upstream = \"http://h\"; health = \"/healthz\";")
		R(9, "upstream = \"http://h\"; health = { path = \"/\";\n"
		     "  interval_ms = 0; timeout_ms = 0; rise = 0; fall = 101; };")
		"{ name = \"ok\"; prefix = \"/\"; upstream = \"http://h\";\n"
		"  health = { path = 5; }; }\n"
		");\n",
		"t.conf:3: 'health' is missing required key 'path'",
		"t.conf:4: health 'path' must start with \"/\", not 'healthz'",
		"t.conf:5: health 'path' must not contain spaces, control characters or '#'",
		"t.conf:6: health 'path' must not contain spaces",
		"t.conf:7: unknown key 'port' in health",
		"t.conf:8: 'health' must be a group { path = \"/healthz\"; ... }",
		"t.conf:10: 'interval_ms' must be between 1 and 2147483647",
		"t.conf:10: 'timeout_ms' must be between 1 and 2147483647",
		"t.conf:10: 'rise' must be between 1 and 100",
		"t.conf:10: 'fall' must be between 1 and 100",
		"t.conf:12: 'path' must be a string",
		NULL);
}

static void test_route_required_keys(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		"  { name = \"np\";\n"
		"    upstream = \"http://h\"; },\n"
		"  { name = \"nu\"; prefix = \"/u\"; },\n"
		"  { prefix = \"/n\"; upstream = \"http://h\"; },\n"
		"  { name = \"bad\"; prefix = \"api/\"; upstream = \"http://h\"; },\n"
		"  { name = \"sp\"; prefix = \"/a b\"; upstream = \"http://h\"; }\n"
		");\n",
		"t.conf:3: route 'np' is missing required key 'prefix'",
		"t.conf:5: route 'nu' is missing required key 'upstream'",
		"t.conf:6: route is missing required key 'name'",
		"t.conf:7: 'prefix' must start with \"/\", not 'api/'",
		"t.conf:8: 'prefix' must not contain spaces",
		NULL);
	expect_errors(LISTEN "routes = ();\n",
		      "t.conf:2: at least one route is required", NULL);
	expect_errors(LISTEN,
		      "t.conf:0: missing required key 'routes'", NULL);
}

static void test_route_names_and_hosts(void **state)
{
	struct config *cfg;

	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		"  { name = \"a\"; prefix = \"/x\"; upstream = \"http://h\"; },\n"
		"  { name = \"b\"; prefix = \"/y\"; upstream = \"http://h\"; },\n"
		"  { name = \"a\"; prefix = \"/z\"; upstream = \"http://h\"; },\n"
		"  { name = \"c\"; prefix = \"/y\"; upstream = \"http://h\"; },\n"
		"  { name = \"d\"; prefix = \"/y\"; host = \"h\"; upstream = \"http://h\"; },\n"
		"  { name = \"\"; prefix = \"/e\"; upstream = \"http://h\"; },\n"
		"  { name = \"a b\"; prefix = \"/f\"; upstream = \"http://h\"; }\n"
		");\n",
		"t.conf:5: duplicate route name 'a' (lines 3 and 5)",
		"t.conf:6: route 'c' has the same prefix and host as the route at line 4",
		"t.conf:8: route name '' must be non-empty",
		"t.conf:9: route name 'a b' must be non-empty",
		NULL);
	expect_errors(LISTEN
		"routes = (\n"
		"  { name = \"a\"; prefix = \"/\"; host = \"\"; upstream = \"http://h\"; },\n"
		"  { name = \"b\"; prefix = \"/\"; host = \"h.com:80\"; upstream = \"http://h\"; },\n"
		"  { name = \"c\"; prefix = \"/\"; host = \"a b\"; upstream = \"http://h\"; },\n"
		"  { name = \"d\"; prefix = \"/\"; host = \"[zz]\"; upstream = \"http://h\"; }\n"
		");\n",
		"t.conf:3: 'host' must not be empty",
		"t.conf:4: 'host' must not include a port",
		"t.conf:5: 'host' 'a b' is not a valid host name",
		"t.conf:6: 'host' '[zz]' is not a valid host name",
		NULL);
	cfg = load_ok(LISTEN
		"routes = ( { name = \"v6\"; prefix = \"/\"; host = \"[::1]\"; upstream = \"http://h\"; },\n"
		"  { name = \"H\"; prefix = \"/\"; host = \"WWW.Example.ORG\"; upstream = \"http://h\"; } );\n");
	assert_string_equal(cfg->routes[0].host, "[::1]");
	assert_string_equal(cfg->routes[1].host, "www.example.org");
	config_free(cfg);
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_errors(LISTEN "workers = ;\n" ROUTE_A,
		      "t.conf:2: syntax error", NULL);
	expect_errors(LISTEN "workers = 1;\nworkers = 2;\n" ROUTE_A,
		      "t.conf:3: duplicate setting name", NULL);
}

static void test_strings(void **state)
{
	struct config *cfg;

	(void)state;
	expect_errors(LISTEN
		"deadline_header = \"X Bad\";\n"
		"access_log_format = \"xml\";\n"
		"access_log = \"\";\n" ROUTE_A,
		"t.conf:2: 'deadline_header' must be a header name",
		"t.conf:3: 'access_log_format' must be \"logfmt\" or \"json\", not 'xml'",
		"t.conf:4: 'access_log' must be \"-\", \"off\" or a file path",
		NULL);
	expect_errors(LISTEN "deadline_header = \"X-T:\";\n" ROUTE_A,
		      "t.conf:2: 'deadline_header' must be", NULL);
	expect_errors(LISTEN "deadline_header = \"host\";\n" ROUTE_A,
		      "t.conf:2: 'deadline_header' cannot be 'host': ctxproxy manages that header itself",
		      NULL);
	cfg = load_ok(LISTEN "deadline_header = \"\";\naccess_log = \"off\";\n" ROUTE_A);
	assert_string_equal(cfg->deadline_header, "");
	assert_string_equal(cfg->access_log, "off");
	config_free(cfg);
}

static void test_many_errors_together(void **state)
{
	(void)state;
	expect_errors(
		"listen = \"nowhere\";\n"
		"workers = -1;\n"
		"colour = \"blue\";\n"
		"routes = ( { name = \"a\"; prefix = \"x\"; upstream = \"ftp://h\"; } );\n",
		"t.conf:1: invalid listen address 'nowhere'",
		"t.conf:2: 'workers' must be between 1 and 256",
		"t.conf:3: unknown key 'colour'",
		"t.conf:4: 'prefix' must start with",
		"t.conf:4: invalid upstream 'ftp://h'",
		NULL);
}

static char *write_temp(char *tmpl, const char *text)
{
	int fd = mkstemps(tmpl, 5);
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return tmpl;
}

/* https servers: port 443 by default (not in the Host field), mixed with
 * http ones, the TLS keys, and pool keys that tell TLS settings apart. */
static void test_https_upstreams(void **state)
{
	char ca[] = "/tmp/ctxproxy-test-XXXXXX.cert";
	char text[1024];
	struct config *cfg;
	const struct config_route *r;

	(void)state;
	write_temp(ca, "not parsed at load\n");
	snprintf(text, sizeof(text), LISTEN
		 "routes = (\n"
		 "{ name = \"a\"; prefix = \"/a/\";\n"
		 "  upstream = ( \"https://H/b\", \"http://h/b\", \"https://h:8443/b\" ); },\n"
		 "{ name = \"b\"; prefix = \"/b/\"; upstream = \"https://h/b\";\n"
		 "  tls_verify = false; tls_ca = \"%s\";\n"
		 "  tls_server_name = \"api.internal\"; }\n"
		 ");\n", ca);
	cfg = load_ok(text);
	r = &cfg->routes[0];
	assert_string_equal(r->servers[0].origin, "https://h:443");
	assert_string_equal(r->servers[0].host, "h");
	assert_true(r->servers[0].tls);
	assert_string_equal(r->servers[1].origin, "http://h:80");
	assert_false(r->servers[1].tls);
	assert_string_equal(r->servers[1].pool_key, "http://h:80");
	assert_string_equal(r->servers[2].host, "h:8443");
	assert_string_equal(r->upstream_base, "/b");
	assert_true(r->tls.verify);
	assert_null(r->tls.ca);
	assert_null(r->tls.server_name);
	assert_non_null(strstr(r->servers[0].pool_key, "https://h:443\n"));
	r = &cfg->routes[1];
	assert_false(r->tls.verify);
	assert_string_equal(r->tls.ca, ca);
	assert_string_equal(r->tls.server_name, "api.internal");
	/* the same origin, other settings: another pool */
	assert_string_not_equal(r->servers[0].pool_key,
				cfg->routes[0].servers[0].pool_key);
	config_free(cfg);
	unlink(ca);
}

static void test_tls_key_errors(void **state)
{
	(void)state;
	expect_errors(LISTEN
		"routes = (\n"
		R(3, "upstream = \"https://h\"; tls_ca = \"/nonexistent/ca.pem\";")
		R(4, "upstream = \"https://h\"; tls_client_key = \"/tmp\";")
		R(5, "upstream = \"https://h\"; tls_server_name = \"a b\";")
		R(6, "upstream = \"https://h\"; tls_verify = 1;")
		"{ name = \"ok\"; prefix = \"/\"; upstream = \"http://h\"; }\n"
		");\n",
		"t.conf:3: 'tls_ca': cannot read '/nonexistent/ca.pem': No such file",
		"t.conf:4: 'tls_client_key': cannot read '/tmp': Is a directory",
		"t.conf:4: 'tls_client_cert' and 'tls_client_key' go together",
		"t.conf:5: 'tls_server_name' must be a host name, not 'a b'",
		"t.conf:6: 'tls_verify'",
		NULL);
}

static void test_load_file(void **state)
{
	char good[] = "/tmp/ctxproxy-test-XXXXXX.conf";
	char bad[] = "/tmp/ctxproxy-test-XXXXXX.conf";
	char want[128];
	char *errs = NULL;
	size_t len = 0;
	struct config *cfg;
	FILE *f;

	(void)state;
	write_temp(good, LISTEN "workers = 4;\n" ROUTE_A);
	cfg = config_load(good, stderr);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, good);
	assert_int_equal(cfg->workers, 4);
	config_free(cfg);

	write_temp(bad, LISTEN "\n\nworkers = \"x\";\n" ROUTE_A);
	f = open_memstream(&errs, &len);
	assert_null(config_load(bad, f));
	assert_null(config_load("/nonexistent/ctxproxy.conf", f));
	fclose(f);
	snprintf(want, sizeof(want), "%s:4: 'workers' must be an integer\n", bad);
	assert_non_null(strstr(errs, want));
	assert_non_null(strstr(errs, "/nonexistent/ctxproxy.conf:0: cannot read: No such file or directory\n"));
	free(errs);
	unlink(good);
	unlink(bad);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Errors from loading path; asserts the load failed. */
static char *load_file_errors(const char *path)
{
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);

	assert_non_null(f);
	assert_null(config_load(path, f));
	fclose(f);
	return errs;
}

/* @include is resolved next to the including file, whatever the cwd, and
 * the included text gets the same checks as the main file. */
static void test_include(void **state)
{
	char dir[] = "/tmp/ctxproxy-inc-XXXXXX";
	char main_path[160], inc_path[160], sub_path[160], want[256];
	char *errs;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
	snprintf(inc_path, sizeof(inc_path), "%s/routes.conf", dir);
	snprintf(sub_path, sizeof(sub_path), "%s/sub", dir);
	write_text(main_path, LISTEN "@include \"routes.conf\"\n");
	write_text(inc_path, "\n" ROUTE_A "bogus = 1;\nmax_body_bytes = 5000000000;\n");
	errs = load_file_errors(main_path);
	assert_string_equal(errs,
		"routes.conf:4: integer 5000000000 does not fit in 32 bits; "
		"write it with an L suffix (5000000000L)\n"
		"routes.conf:3: unknown key 'bogus'\n");
	free(errs);

	/* libconfig 1.5 would exit() the process on this one */
	assert_int_equal(mkdir(sub_path, 0700), 0);
	write_text(main_path, LISTEN "  @include \"sub\"\n" ROUTE_A);
	errs = load_file_errors(main_path);
	snprintf(want, sizeof(want), "%s:2: @include \"sub\" is not a regular file\n",
		 main_path);
	assert_string_equal(errs, want);
	free(errs);

	errs = load_file_errors(dir);
	snprintf(want, sizeof(want), "%s:0: cannot read: Is a directory\n", dir);
	assert_string_equal(errs, want);
	free(errs);
	unlink(main_path);
	unlink(inc_path);
	rmdir(sub_path);
	rmdir(dir);
}

static void test_shipped_example(void **state)
{
	struct config *cfg = config_load("conf/ctxproxy.conf", stderr);
	const struct config_route *demo = NULL, *shrt = NULL;
	size_t i;

	(void)state;
	assert_non_null(cfg);
	assert_int_equal(cfg->nlisten, 1);
	assert_string_equal(cfg->listen[0].host, "127.0.0.1");
	assert_int_equal(cfg->listen[0].port, 18080);
	assert_int_equal(cfg->workers, 2);
	assert_null(cfg->admin);
	assert_string_equal(cfg->access_log, "-");
	for (i = 0; i < cfg->nroutes; i++) {
		if (!strcmp(cfg->routes[i].name, "demo"))
			demo = &cfg->routes[i];
		if (!strcmp(cfg->routes[i].name, "short"))
			shrt = &cfg->routes[i];
	}
	assert_non_null(demo);
	assert_non_null(shrt);
	assert_string_equal(demo->prefix, "/");
	assert_string_equal(demo->servers[0].origin, "http://127.0.0.1:19001");
	assert_int_equal(demo->t.timeout_ms, 3000);
	assert_string_equal(shrt->prefix, "/short/");
	assert_true(shrt->strip_prefix);
	assert_int_equal(shrt->t.timeout_ms, 500);
	config_free(cfg);
}

static void test_null_err_stream_and_free(void **state)
{
	(void)state;
	assert_null(config_load_string("t.conf", "workers = ;", NULL));
	assert_null(config_load_string("t.conf", LISTEN, NULL));
	config_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_listen_list_and_ipv6),
		cmocka_unit_test(test_listen_errors),
		cmocka_unit_test(test_listen_limit),
		cmocka_unit_test(test_admin),
		cmocka_unit_test(test_defaults_inheritance),
		cmocka_unit_test(test_int64_values),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_trace_keys),
		cmocka_unit_test(test_bad_upstreams),
		cmocka_unit_test(test_good_upstreams),
		cmocka_unit_test(test_upstream_list),
		cmocka_unit_test(test_https_upstreams),
		cmocka_unit_test(test_tls_key_errors),
		cmocka_unit_test(test_upstream_limit),
		cmocka_unit_test(test_upstream_list_errors),
		cmocka_unit_test(test_every_upstream_key),
		cmocka_unit_test(test_retry_and_balance_errors),
		cmocka_unit_test(test_health_errors),
		cmocka_unit_test(test_route_required_keys),
		cmocka_unit_test(test_route_names_and_hosts),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_many_errors_together),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_shipped_example),
		cmocka_unit_test(test_null_err_stream_and_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
