/* test_metrics.c - unit tests for server slots and the attempt and retry counters in the Prometheus text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define MAX_SERVERS_PER_ROUTE 4

/* A hand-made config: config.c is not what is under test. */
struct fixture {
	struct config cfg;
	struct config_route routes[2];
	struct config_server servers[2][MAX_SERVERS_PER_ROUTE];
};

/* Route i of f is `name` with the given origins (NULL-terminated). */
static void set_route(struct fixture *f, size_t i, const char *name,
		      const char *const *origins)
{
	struct config_route *r = &f->routes[i];
	size_t j;

	memset(r, 0, sizeof(*r));
	r->name = (char *)name;
	r->servers = f->servers[i];
	for (j = 0; origins[j]; j++) {
		assert_true(j < MAX_SERVERS_PER_ROUTE);
		memset(&r->servers[j], 0, sizeof(r->servers[j]));
		r->servers[j].origin = (char *)origins[j];
	}
	r->nservers = j;
	f->cfg.routes = f->routes;
	if (f->cfg.nroutes < i + 1)
		f->cfg.nroutes = i + 1;
}

/* metrics_write's text.  The caller frees. */
static char *scrape(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	assert_int_equal(metrics_write(out, 0), 0);
	assert_int_equal(fclose(out), 0);
	return buf;
}

/* The value on the line that starts with `series ` in text, or -1. */
static long long value_of(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
		p += n;
	}
	return -1;
}

static void test_server_slots_stay(void **state)
{
	static const char *const a1[] = { "http://127.0.0.1:9001",
					  "http://127.0.0.1:9002", NULL };
	static const char *const a2[] = { "http://127.0.0.1:9002",
					  "http://127.0.0.1:9003",
					  "http://127.0.0.1:9001", NULL };
	static const char *const b[] = { "http://127.0.0.1:9001", NULL };
	struct fixture f = { 0 };
	int s1, s2, s3, sb;

	(void)state;
	set_route(&f, 0, "slots-a", a1);
	assert_int_equal(metrics_assign_slots(&f.cfg), 0);
	s1 = f.servers[0][0].slot;
	s2 = f.servers[0][1].slot;
	assert_true(s1 > 0 && s2 > 0 && s1 != s2);

	/* A reload: the same (route, origin) keeps its slot wherever it is
	 * listed; a new origin and the same origin on another route get new
	 * ones. */
	memset(&f, 0, sizeof(f));
	set_route(&f, 0, "slots-a", a2);
	set_route(&f, 1, "slots-b", b);
	assert_int_equal(metrics_assign_slots(&f.cfg), 0);
	assert_int_equal(f.servers[0][0].slot, s2);
	assert_int_equal(f.servers[0][2].slot, s1);
	s3 = f.servers[0][1].slot;
	sb = f.servers[1][0].slot;
	assert_true(s3 > 0 && s3 != s1 && s3 != s2);
	assert_true(sb > 0 && sb != s1 && sb != s2 && sb != s3);

	assert_string_equal(metrics_server_name(s1), "127.0.0.1:9001");
	assert_string_equal(metrics_server_route(s1), "slots-a");
	assert_string_equal(metrics_server_name(s3), "127.0.0.1:9003");
	assert_string_equal(metrics_server_name(sb), "127.0.0.1:9001");
	assert_string_equal(metrics_server_route(sb), "slots-b");
	assert_null(metrics_server_name(0));
	assert_null(metrics_server_route(0));
	assert_null(metrics_server_name(-1));
	assert_null(metrics_server_name(METRICS_MAX_SERVERS));
	/* Not given yet: the last test is the one that fills the slots. */
	assert_null(metrics_server_name(METRICS_MAX_SERVERS - 1));
}

static void test_https_origin_name(void **state)
{
	static const char *const o[] = { "https://example.test:8443", NULL };
	struct fixture f = { 0 };

	(void)state;
	set_route(&f, 0, "slots-tls", o);
	assert_int_equal(metrics_assign_slots(&f.cfg), 0);
	assert_string_equal(metrics_server_name(f.servers[0][0].slot),
			    "example.test:8443");
}

/* Two workers count; the scrape shows their sums with the right labels,
 * and nothing for what never happened. */
static void test_attempts_and_retries_summed(void **state)
{
	static const char *const o[] = { "http://127.0.0.1:9101",
					 "http://127.0.0.1:9102", NULL };
	struct metrics_worker *w1 = metrics_worker_new();
	struct metrics_worker *w2 = metrics_worker_new();
	struct fixture f = { 0 };
	int s1, s2, route;
	char *text;

	(void)state;
	assert_non_null(w1);
	assert_non_null(w2);
	set_route(&f, 0, "sums", o);
	assert_int_equal(metrics_assign_slots(&f.cfg), 0);
	s1 = f.servers[0][0].slot;
	s2 = f.servers[0][1].slot;
	route = f.routes[0].metrics_slot;

	metrics_attempt(w1, s1, RETRY_OUT_OK);
	metrics_attempt(w1, s1, RETRY_OUT_OK);
	metrics_attempt(w2, s1, RETRY_OUT_OK);
	metrics_attempt(w2, s1, RETRY_OUT_RESET);
	metrics_attempt(w1, s2, RETRY_OUT_STATUS_5XX);
	metrics_attempt(w2, s2, RETRY_OUT_CONNECT_FAILURE);
	metrics_attempt(w2, s2, RETRY_OUT_TIMEOUT);
	/* Not counted: a cancelled attempt, slot 0, a slot out of range. */
	metrics_attempt(w1, s1, RETRY_OUT_CANCELLED);
	metrics_attempt(w1, 0, RETRY_OUT_OK);
	metrics_attempt(w1, METRICS_MAX_SERVERS, RETRY_OUT_OK);
	metrics_retry(w1, route, RETRY_502);
	metrics_retry(w2, route, RETRY_502);
	metrics_retry(w2, route, RETRY_CONNECT_FAILURE);

	text = scrape();
	assert_non_null(strstr(text, "# HELP ctxproxy_upstream_attempts_total "));
	assert_non_null(strstr(text, "# TYPE ctxproxy_upstream_attempts_total counter\n"));
	assert_non_null(strstr(text, "# HELP ctxproxy_retries_total "));
	assert_non_null(strstr(text, "# TYPE ctxproxy_retries_total counter\n"));
	assert_int_equal(value_of(text, "ctxproxy_upstream_attempts_total{route=\"sums\","
				  "server=\"127.0.0.1:9101\",outcome=\"ok\"}"), 3);
	assert_int_equal(value_of(text, "ctxproxy_upstream_attempts_total{route=\"sums\","
				  "server=\"127.0.0.1:9101\",outcome=\"reset\"}"), 1);
	assert_int_equal(value_of(text, "ctxproxy_upstream_attempts_total{route=\"sums\","
				  "server=\"127.0.0.1:9102\",outcome=\"status_5xx\"}"), 1);
	assert_int_equal(value_of(text, "ctxproxy_upstream_attempts_total{route=\"sums\","
				  "server=\"127.0.0.1:9102\",outcome=\"connect_failure\"}"), 1);
	assert_int_equal(value_of(text, "ctxproxy_upstream_attempts_total{route=\"sums\","
				  "server=\"127.0.0.1:9102\",outcome=\"timeout\"}"), 1);
	assert_int_equal(value_of(text, "ctxproxy_upstream_attempts_total{route=\"sums\","
				  "server=\"127.0.0.1:9102\",outcome=\"ok\"}"), -1);
	assert_null(strstr(text, "outcome=\"cancelled\""));
	assert_int_equal(value_of(text, "ctxproxy_retries_total{route=\"sums\","
				  "reason=\"502\"}"), 2);
	assert_int_equal(value_of(text, "ctxproxy_retries_total{route=\"sums\","
				  "reason=\"connect_failure\"}"), 1);
	assert_int_equal(value_of(text, "ctxproxy_retries_total{route=\"sums\","
				  "reason=\"reset\"}"), -1);
	free(text);
	metrics_worker_free(w2);
	metrics_worker_free(w1);
}

/* Last: it uses up the server slots. */
static void test_server_slots_run_out(void **state)
{
	size_t n = METRICS_MAX_SERVERS + 8, i;
	struct config_server *sv = calloc(n, sizeof(*sv));
	char (*origins)[32] = calloc(n, sizeof(*origins));
	struct config_route r = { 0 };
	struct config cfg = { 0 };
	struct metrics_worker *w = metrics_worker_new();
	char *text;

	(void)state;
	assert_non_null(sv);
	assert_non_null(origins);
	assert_non_null(w);
	for (i = 0; i < n; i++) {
		snprintf(origins[i], sizeof(origins[i]), "http://10.9.%zu.%zu:80",
			 i / 250, i % 250);
		sv[i].origin = origins[i];
	}
	r.name = (char *)"many";
	r.servers = sv;
	r.nservers = n;
	cfg.routes = &r;
	cfg.nroutes = 1;
	assert_int_equal(metrics_assign_slots(&cfg), -ENOSPC);
	assert_true(sv[0].slot > 0);
	assert_int_equal(sv[n - 1].slot, 0);
	assert_non_null(metrics_server_name(METRICS_MAX_SERVERS - 1));
	/* An uncounted server costs nothing and breaks nothing. */
	metrics_attempt(w, sv[n - 1].slot, RETRY_OUT_OK);
	metrics_attempt(w, METRICS_MAX_SERVERS - 1, RETRY_OUT_TIMEOUT);
	text = scrape();
	assert_non_null(strstr(text, "outcome=\"timeout\"} 1\n"));
	free(text);
	metrics_worker_free(w);
	free(origins);
	free(sv);
}

/* Tunnels: the gauge sums opens minus ends over workers; ends count by
 * cause, every cause listed. */
static void test_tunnels(void **state)
{
	struct metrics_worker *w1 = metrics_worker_new();
	struct metrics_worker *w2 = metrics_worker_new();
	char *text;

	(void)state;
	assert_non_null(w1);
	assert_non_null(w2);
	metrics_tunnel_open(w1);
	metrics_tunnel_open(w1);
	metrics_tunnel_open(w2);
	metrics_tunnel_done(w2, CTX_CAUSE_CLIENT_DISCONNECT);
	metrics_tunnel_open(w2);
	metrics_tunnel_done(w2, CTX_CAUSE_SHUTDOWN);
	metrics_tunnel_done(w1, CTX_CAUSE_CLIENT_DISCONNECT);
	text = scrape();
	assert_non_null(strstr(text, "# TYPE ctxproxy_tunnels_active gauge\n"));
	assert_non_null(strstr(text, "# TYPE ctxproxy_tunnels_total counter\n"));
	assert_int_equal(value_of(text, "ctxproxy_tunnels_active"), 1);
	assert_int_equal(value_of(text, "ctxproxy_tunnels_total{cause=\"client_disconnect\"}"), 2);
	assert_int_equal(value_of(text, "ctxproxy_tunnels_total{cause=\"shutdown\"}"), 1);
	assert_int_equal(value_of(text, "ctxproxy_tunnels_total{cause=\"completed\"}"), 0);
	assert_int_equal(value_of(text, "ctxproxy_tunnels_total{cause=\"idle_timeout\"}"), 0);
	free(text);
	metrics_worker_free(w1);
	metrics_worker_free(w2);
}

/* Totals by cause: what /metrics has, summed over workers and routes;
 * completed = answered and not cancelled.  Other tests' workers are gone
 * by now, so only this one's requests count. */
static void test_totals_by_cause(void **state)
{
	struct metrics_worker *w1 = metrics_worker_new();
	struct metrics_worker *w2 = metrics_worker_new();
	uint64_t t[CTX_CAUSE__COUNT];
	char *text;

	(void)state;
	metrics_totals_by_cause(t);
	assert_int_equal(t[CTX_CAUSE_COMPLETED], 0);
	assert_int_equal(t[CTX_CAUSE_CLIENT_DISCONNECT], 0);
	metrics_request_done(w1, 0, 200, CTX_CAUSE_COMPLETED, -1, -1);
	metrics_request_done(w1, 1, 200, CTX_CAUSE_COMPLETED, -1, -1);
	metrics_request_done(w2, 0, 408, CTX_CAUSE_COMPLETED, -1, -1);
	metrics_request_done(w1, 0, 499, CTX_CAUSE_CLIENT_DISCONNECT, -1, -1);
	metrics_request_done(w2, 0, 499, CTX_CAUSE_CLIENT_DISCONNECT, -1, -1);
	metrics_request_done(w2, 1, 504, CTX_CAUSE_DEADLINE_EXCEEDED, -1, -1);
	metrics_totals_by_cause(t);
	assert_int_equal(t[CTX_CAUSE_NONE], 0);
	assert_int_equal(t[CTX_CAUSE_COMPLETED], 3);
	assert_int_equal(t[CTX_CAUSE_CLIENT_DISCONNECT], 2);
	assert_int_equal(t[CTX_CAUSE_DEADLINE_EXCEEDED], 1);
	assert_int_equal(t[CTX_CAUSE_SHUTDOWN], 0);
	text = scrape();
	assert_int_equal(value_of(text, "ctxproxy_cancellations_total{route=\"-\","
				  "cause=\"client_disconnect\"}"), 2);
	free(text);
	metrics_worker_free(w1);
	metrics_worker_free(w2);
}

/* Trace spans: global counters, each family listed from the start. */
static void test_trace_spans(void **state)
{
	char *text = scrape();

	(void)state;
	assert_non_null(strstr(text, "# TYPE ctxproxy_trace_spans_exported_total counter\n"));
	assert_non_null(strstr(text, "# TYPE ctxproxy_trace_spans_dropped_total counter\n"));
	assert_int_equal(value_of(text, "ctxproxy_trace_spans_exported_total"), 0);
	assert_int_equal(value_of(text, "ctxproxy_trace_spans_dropped_total"), 0);
	free(text);
	metrics_trace_spans(METRICS_SPAN_EXPORTED, 512);
	metrics_trace_spans(METRICS_SPAN_EXPORTED, 88);
	metrics_trace_spans(METRICS_SPAN_DROPPED, 3);
	metrics_trace_spans(METRICS_SPAN_N, 1000);
	text = scrape();
	assert_int_equal(value_of(text, "ctxproxy_trace_spans_exported_total"), 600);
	assert_int_equal(value_of(text, "ctxproxy_trace_spans_dropped_total"), 3);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_slots_stay),
		cmocka_unit_test(test_https_origin_name),
		cmocka_unit_test(test_attempts_and_retries_summed),
		cmocka_unit_test(test_server_slots_run_out),
		cmocka_unit_test(test_tunnels),
		cmocka_unit_test(test_trace_spans),
		cmocka_unit_test(test_totals_by_cause),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
