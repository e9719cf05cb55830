/* test_route.c - unit tests for route matching and upstream URL building. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

#define LISTEN "listen = \"127.0.0.1:8080\";\n"

struct fixture {
	struct config *cfg;
	struct route_table *rt;
};

static struct fixture setup(const char *routes)
{
	struct fixture fx;
	char text[4096];

	snprintf(text, sizeof(text), LISTEN "routes = (\n%s\n);\n", routes);
	fx.cfg = config_load_string("t.conf", text, stderr);
	assert_non_null(fx.cfg);
	fx.rt = route_table_new(fx.cfg);
	assert_non_null(fx.rt);
	return fx;
}

static void teardown(struct fixture *fx)
{
	route_table_free(fx->rt);
	config_free(fx->cfg);
}

/* The matched route's name, or "-" for no match. */
static const char *match(const struct fixture *fx, const char *host,
			 const char *path)
{
	const struct config_route *r = route_match(fx->rt, host, path);

	return r ? r->name : "-";
}

#define R(name, prefix, extra) \
	"{ name = \"" name "\"; prefix = \"" prefix "\"; upstream = \"http://u\"; " extra " },\n"

static void test_longest_prefix(void **state)
{
	struct fixture fx = setup(
		R("root", "/", "")
		R("api", "/api/", "")
		R("apiv2", "/api/v2/", "")
		R("apix", "/api", "")
		"{ name = \"last\"; prefix = \"/static\"; upstream = \"http://u\"; }");

	(void)state;
	assert_string_equal(match(&fx, NULL, "/"), "root");
	assert_string_equal(match(&fx, NULL, "/other"), "root");
	assert_string_equal(match(&fx, NULL, "/api/x"), "api");
	assert_string_equal(match(&fx, NULL, "/api/v2/x"), "apiv2");
	assert_string_equal(match(&fx, NULL, "/api/v2"), "api");
	assert_string_equal(match(&fx, NULL, "/api"), "apix");
	assert_string_equal(match(&fx, NULL, "/apis"), "apix");
	assert_string_equal(match(&fx, NULL, "/static/a.css"), "last");
	teardown(&fx);
}

static void test_host_specific_wins_at_equal_length(void **state)
{
	struct fixture fx = setup(
		R("any", "/api/", "")
		R("ex", "/api/", "host = \"api.example.com\";")
		R("other", "/api/", "host = \"other.example.com\";")
		R("ex-dup", "/api/x", "host = \"api.example.com\";")
		"{ name = \"ex2\"; prefix = \"/api/x\"; host = \"www.example.com\"; upstream = \"http://u\"; }");

	(void)state;
	assert_string_equal(match(&fx, "api.example.com", "/api/1"), "ex");
	assert_string_equal(match(&fx, "other.example.com", "/api/1"), "other");
	assert_string_equal(match(&fx, "unknown.example.com", "/api/1"), "any");
	assert_string_equal(match(&fx, NULL, "/api/1"), "any");
	assert_string_equal(match(&fx, "", "/api/1"), "any");
	assert_string_equal(match(&fx, "www.example.com", "/api/x1"), "ex2");
	teardown(&fx);
}

static void test_longer_hostless_beats_shorter_host(void **state)
{
	struct fixture fx = setup(
		R("host-root", "/", "host = \"a.example\";")
		"{ name = \"any-api\"; prefix = \"/api/\"; upstream = \"http://u\"; }");

	(void)state;
	assert_string_equal(match(&fx, "a.example", "/api/x"), "any-api");
	assert_string_equal(match(&fx, "a.example", "/x"), "host-root");
	assert_string_equal(match(&fx, "b.example", "/x"), "-");
	teardown(&fx);
}

static void test_host_case_port_ipv6(void **state)
{
	struct fixture fx = setup(
		R("name", "/", "host = \"Api.Example.com\";")
		R("v6", "/", "host = \"[::1]\";")
		"{ name = \"v4\"; prefix = \"/\"; host = \"127.0.0.1\"; upstream = \"http://u\"; }");

	(void)state;
	assert_string_equal(match(&fx, "api.example.com", "/"), "name");
	assert_string_equal(match(&fx, "API.EXAMPLE.COM", "/"), "name");
	assert_string_equal(match(&fx, "api.example.com:8080", "/"), "name");
	assert_string_equal(match(&fx, "api.example.co", "/"), "-");
	assert_string_equal(match(&fx, "api.example.com.evil", "/"), "-");
	assert_string_equal(match(&fx, "[::1]:8080", "/"), "v6");
	assert_string_equal(match(&fx, "[::1]", "/"), "v6");
	assert_string_equal(match(&fx, "[::2]:8080", "/"), "-");
	assert_string_equal(match(&fx, "127.0.0.1:80", "/x"), "v4");
	teardown(&fx);
}

static void test_no_match(void **state)
{
	struct fixture fx = setup(
		"{ name = \"api\"; prefix = \"/api/\"; upstream = \"http://u\"; }");

	(void)state;
	assert_null(route_match(fx.rt, NULL, "/"));
	assert_null(route_match(fx.rt, "h", "/ap"));
	assert_null(route_match(fx.rt, "h", "/API/"));
	assert_null(route_match(fx.rt, "h", NULL));
	assert_non_null(route_match(fx.rt, NULL, "/api/"));
	teardown(&fx);
}

static void test_first_in_file_wins_tie(void **state)
{
	struct config cfg;
	struct config_route routes[3];
	struct route_table *rt;

	(void)state;
	/* the loader refuses exact duplicates, but the table must not care */
	memset(&cfg, 0, sizeof(cfg));
	memset(routes, 0, sizeof(routes));
	routes[0] = (struct config_route){ .name = "one", .prefix = "/a" };
	routes[1] = (struct config_route){ .name = "two", .prefix = "/a" };
	routes[2] = (struct config_route){ .name = "three", .prefix = "/a" };
	cfg.routes = routes;
	cfg.nroutes = 3;
	rt = route_table_new(&cfg);
	assert_non_null(rt);
	assert_string_equal(route_match(rt, NULL, "/a")->name, "one");
	route_table_free(rt);
}

static void url(const char *route, const char *path, const char *query,
		const char *want)
{
	struct fixture fx = setup(route);
	const char *origin = fx.cfg->routes[0].servers[0].origin;
	char buf[256], whole[512];
	int n = route_upstream_target(&fx.cfg->routes[0], path, query, buf,
				      sizeof(buf));

	snprintf(whole, sizeof(whole), "%s%s", origin, buf);
	assert_int_equal(n, (int)(strlen(want) - strlen(origin)));
	assert_string_equal(whole, want);
	teardown(&fx);
}

#define U(prefix, upstream, strip) \
	"{ name = \"r\"; prefix = \"" prefix "\"; upstream = \"" upstream "\"; strip_prefix = " strip "; }"

static void test_strip_prefix(void **state)
{
	(void)state;
	url(U("/api/", "http://u:1", "true"), "/api/x", NULL, "http://u:1/x");
	url(U("/api/", "http://u:1", "true"), "/api/", NULL, "http://u:1/");
	url(U("/api/", "http://u:1", "true"), "/api/a/b/", NULL, "http://u:1/a/b/");
	url(U("/api", "http://u:1", "true"), "/api/x", NULL, "http://u:1/x");
	url(U("/api", "http://u:1", "true"), "/api", NULL, "http://u:1/");
	url(U("/api", "http://u:1", "true"), "/apix", NULL, "http://u:1/x");
	url(U("/", "http://u:1", "true"), "/x/y", NULL, "http://u:1/x/y");
	url(U("/", "http://u:1", "true"), "/", NULL, "http://u:1/");
	url(U("/api/", "http://u:1", "false"), "/api/x", NULL, "http://u:1/api/x");
}

static void test_base_path(void **state)
{
	(void)state;
	url(U("/api/", "http://u/b", "true"), "/api/x", NULL, "http://u:80/b/x");
	url(U("/api/", "http://u/b/", "true"), "/api/", NULL, "http://u:80/b/");
	url(U("/api", "http://u/b/c", "true"), "/api", NULL, "http://u:80/b/c/");
	url(U("/api/", "http://u/b", "false"), "/api/x", NULL, "http://u:80/b/api/x");
	url(U("/", "http://[::1]:9/", "false"), "/p", NULL, "http://[::1]:9/p");
}

static void test_query(void **state)
{
	(void)state;
	url(U("/api/", "http://u:1", "true"), "/api/x", "a=1&b=%20", "http://u:1/x?a=1&b=%20");
	url(U("/api/", "http://u:1", "true"), "/api/x", "", "http://u:1/x");
	url(U("/api/", "http://u:1/b", "false"), "/api/", "q", "http://u:1/b/api/?q");
}

/* Bytes >= 0x80 stay raw: libcurl's URL parser percent-encoded them. */
static void test_raw_bytes(void **state)
{
	(void)state;
	url(U("/raw", "http://u:1", "false"), "/raw\xc3\xa9\xff/x", "k=\xfe",
	    "http://u:1/raw\xc3\xa9\xff/x?k=\xfe");
	url(U("/raw/", "http://u:1/b", "true"), "/raw/\x80", NULL,
	    "http://u:1/b/\x80");
}

static void test_enospc(void **state)
{
	struct fixture fx = setup(U("/api/", "http://u:1/b", "true"));
	const struct config_route *r = &fx.cfg->routes[0];
	const char *want = "/b/x?q=1";
	char buf[64];
	size_t len = strlen(want);

	(void)state;
	memset(buf, 'Z', sizeof(buf));
	assert_int_equal(route_upstream_target(r, "/api/x", "q=1", buf, len), -ENOSPC);
	assert_int_equal(buf[len - 1], '\0');
	assert_int_equal(route_upstream_target(r, "/api/x", "q=1", buf, 1), -ENOSPC);
	assert_int_equal(buf[0], '\0');
	assert_int_equal(route_upstream_target(r, "/api/x", "q=1", NULL, 0), -ENOSPC);
	assert_int_equal(route_upstream_target(r, "/api/x", "q=1", buf, len + 1), (int)len);
	assert_string_equal(buf, want);
	teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_longest_prefix),
		cmocka_unit_test(test_host_specific_wins_at_equal_length),
		cmocka_unit_test(test_longer_hostless_beats_shorter_host),
		cmocka_unit_test(test_host_case_port_ipv6),
		cmocka_unit_test(test_no_match),
		cmocka_unit_test(test_first_in_file_wins_tie),
		cmocka_unit_test(test_strip_prefix),
		cmocka_unit_test(test_base_path),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_raw_bytes),
		cmocka_unit_test(test_enospc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
