/* test_admin_json.c - unit tests for the live view's JSON: string escaping of any bytes, requests, cancellations, summary (admin_json.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "admin_json.h"
#include "context.h"
#include "watch.h"

/* What one writer call put out, as a NUL-terminated string (the test's to
 * free). */
struct sink {
	FILE *out;
	char *buf;
	size_t len;
};

static void sink_open(struct sink *s)
{
	s->buf = NULL;
	s->len = 0;
	s->out = open_memstream(&s->buf, &s->len);
	assert_non_null(s->out);
}

static char *sink_close(struct sink *s)
{
	assert_int_equal(fclose(s->out), 0);
	return s->buf;
}

/* admin_json_string(s, n) as a string. */
static char *escaped(const char *s, size_t n)
{
	struct sink k;

	sink_open(&k);
	admin_json_string(k.out, s, n);
	return sink_close(&k);
}

#define assert_escapes(in, n, want) do {                 \
		char *got_ = escaped((in), (n));         \
		assert_string_equal(got_, (want));       \
		free(got_);                              \
	} while (0)

static void test_plain_and_quotes(void **state)
{
	(void)state;
	assert_escapes("/api/x", SIZE_MAX, "\"/api/x\"");
	assert_escapes("", SIZE_MAX, "\"\"");
	assert_escapes("a\"b\\c/", SIZE_MAX, "\"a\\\"b\\\\c/\"");
	assert_escapes(NULL, 4, "null");
}

static void test_control_bytes(void **state)
{
	(void)state;
	assert_escapes("\x01\n\t\r\x1f\x7f.", SIZE_MAX,
		       "\"\\u0001\\u000a\\u0009\\u000d\\u001f\\u007f.\"");
}

static void test_valid_utf8_kept(void **state)
{
	(void)state;
	/* é (2 bytes), € (3), U+1F600 (4), U+10FFFF (the last one) */
	assert_escapes("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
		       SIZE_MAX,
		       "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
}

static void test_invalid_utf8_replaced(void **state)
{
	(void)state;
	/* a stray continuation byte, bytes that never start a sequence */
	assert_escapes("a\x80" "b\xff\xfe", SIZE_MAX,
		       "\"a\\ufffdb\\ufffd\\ufffd\"");
	/* overlong "/": two bytes, neither valid */
	assert_escapes("\xc0\xaf", SIZE_MAX, "\"\\ufffd\\ufffd\"");
	/* overlong 3- and 4-byte forms */
	assert_escapes("\xe0\x80\xaf", SIZE_MAX,
		       "\"\\ufffd\\ufffd\\ufffd\"");
	assert_escapes("\xf0\x80\x80\xaf", SIZE_MAX,
		       "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	/* a surrogate, and above U+10FFFF */
	assert_escapes("\xed\xa0\x80", SIZE_MAX, "\"\\ufffd\\ufffd\\ufffd\"");
	assert_escapes("\xf4\x90\x80\x80", SIZE_MAX,
		       "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	/* a sequence cut short by the end, and by an ASCII byte */
	assert_escapes("x\xe2\x82", SIZE_MAX, "\"x\\ufffd\\ufffd\"");
	assert_escapes("\xe2\x82" "a", SIZE_MAX, "\"\\ufffd\\ufffda\"");
}

/* The bound cuts the string, and a sequence the bound splits is not
 * read past it. */
static void test_bound(void **state)
{
	(void)state;
	assert_escapes("abcdef", 3, "\"abc\"");
	assert_escapes("ab\xe2\x82\xac", 4, "\"ab\\ufffd\\ufffd\"");
	assert_escapes("ab\0cd", 5, "\"ab\"");
}

static void test_every_byte_gives_valid_output(void **state)
{
	char in[2] = { 0, 0 };
	char *got;
	int b;

	(void)state;
	for (b = 1; b < 256; b++) {
		in[0] = (char)b;
		got = escaped(in, SIZE_MAX);
		if (b < 0x20 || b == 0x7f)
			assert_int_equal(strncmp(got, "\"\\u00", 5), 0);
		else if (b >= 0x80)
			assert_string_equal(got, "\"\\ufffd\"");
		else if (b == '"' || b == '\\')
			assert_int_equal(strlen(got), 4);
		else
			assert_int_equal(strlen(got), 3);
		free(got);
	}
}

static void test_time(void **state)
{
	struct sink k;
	char *got;

	(void)state;
	sink_open(&k);
	admin_json_time(k.out, 0);
	fputc(' ', k.out);
	admin_json_time(k.out, 1764626462345);
	fputc(' ', k.out);
	admin_json_time(k.out, -5);
	got = sink_close(&k);
	assert_string_equal(got, "\"1970-01-01T00:00:00.000Z\" "
			    "\"2025-12-01T22:01:02.345Z\" null");
	free(got);
}

static struct watch_req a_request(void)
{
	struct watch_req r = {
		.id = "req-1", .method = "GET", .path = "/hang",
		.route = "main", .phase = "awaiting_headers", .worker = 1,
		.attempts = 2, .age_us = 1234567, .budget_left_us = 765432,
	};

	return r;
}

static void test_request(void **state)
{
	struct watch_req r = a_request();
	struct sink k;
	char *got;

	(void)state;
	sink_open(&k);
	admin_json_request(k.out, &r);
	r.route[0] = '\0';
	r.budget_left_us = -1;
	fputc(' ', k.out);
	admin_json_request(k.out, &r);
	r.budget_left_us = -300;        /* passed, not yet cancelled */
	fputc(' ', k.out);
	admin_json_request(k.out, &r);
	got = sink_close(&k);
	assert_string_equal(got,
		"{\"id\":\"req-1\",\"method\":\"GET\",\"path\":\"/hang\","
		"\"route\":\"main\",\"phase\":\"awaiting_headers\","
		"\"age_ms\":1234,\"budget_left_ms\":765,\"attempts\":2,"
		"\"worker\":1} "
		"{\"id\":\"req-1\",\"method\":\"GET\",\"path\":\"/hang\","
		"\"route\":null,\"phase\":\"awaiting_headers\","
		"\"age_ms\":1234,\"budget_left_ms\":null,\"attempts\":2,"
		"\"worker\":1} "
		"{\"id\":\"req-1\",\"method\":\"GET\",\"path\":\"/hang\","
		"\"route\":null,\"phase\":\"awaiting_headers\","
		"\"age_ms\":1234,\"budget_left_ms\":0,\"attempts\":2,"
		"\"worker\":1}");
	free(got);
}

/* A path of 255 bytes with no NUL in the request's buffer after it is
 * still read only within the buffer. */
static void test_request_full_buffers(void **state)
{
	struct watch_req r = a_request();
	struct sink k;
	char *got;

	(void)state;
	memset(r.path, 'p', sizeof(r.path));
	memset(r.id, '"', sizeof(r.id));
	sink_open(&k);
	admin_json_request(k.out, &r);
	got = sink_close(&k);
	assert_non_null(strstr(got, "\"path\":\""));
	assert_int_equal(strspn(strstr(got, "\"path\":\"") + 8, "p"),
			 sizeof(r.path));
	assert_non_null(strstr(got, "\"id\":\"\\\"\\\""));
	free(got);
}

static void test_cancel(void **state)
{
	struct watch_cancel c = {
		.seq = 9, .unix_ms = 1764626462345, .id = "x\x01y",
		.method = "POST", .path = "/up\xffload", .route = "api",
		.cause = "client_disconnect", .phase = "uploading",
		.status = 499, .worker = 0, .propagation_us = 87,
	};
	struct sink k;
	char *got;

	(void)state;
	sink_open(&k);
	admin_json_cancel(k.out, &c, 42);
	c.propagation_us = -1;
	c.route[0] = '\0';
	c.phase = NULL;
	fputc(' ', k.out);
	admin_json_cancel(k.out, &c, 43);
	got = sink_close(&k);
	assert_string_equal(got,
		"{\"seq\":42,\"time\":\"2025-12-01T22:01:02.345Z\","
		"\"unix_ms\":1764626462345,\"id\":\"x\\u0001y\","
		"\"method\":\"POST\",\"path\":\"/up\\ufffdload\","
		"\"route\":\"api\",\"cause\":\"client_disconnect\","
		"\"phase\":\"uploading\",\"status\":499,\"propagation_us\":87,"
		"\"worker\":0} "
		"{\"seq\":43,\"time\":\"2025-12-01T22:01:02.345Z\","
		"\"unix_ms\":1764626462345,\"id\":\"x\\u0001y\","
		"\"method\":\"POST\",\"path\":\"/up\\ufffdload\","
		"\"route\":null,\"cause\":\"client_disconnect\","
		"\"phase\":null,\"status\":499,\"propagation_us\":null,"
		"\"worker\":0}");
	free(got);
}

static void test_summary(void **state)
{
	struct watch_req reqs[2] = { a_request(), a_request() };
	size_t per_worker[3] = { 0, 2, ADMIN_JSON_NO_ANSWER };
	uint64_t totals[CTX_CAUSE__COUNT] = { 0 };
	struct admin_json_summary s = {
		.complete = false, .nworkers = 3, .per_worker = per_worker,
		.reqs = reqs, .nreqs = 2, .totals = totals,
	};
	struct sink k;
	char *got, *want = NULL;
	size_t i;

	(void)state;
	totals[CTX_CAUSE_CLIENT_DISCONNECT] = 5;
	totals[CTX_CAUSE_SHUTDOWN] = 1;
	totals[CTX_CAUSE_COMPLETED] = 1000;     /* not a cancellation */
	reqs[1].worker = 1;
	snprintf(reqs[1].id, sizeof(reqs[1].id), "req-2");
	sink_open(&k);
	admin_json_summary(k.out, &s);
	got = sink_close(&k);
	sink_open(&k);
	fputs("{\"complete\":false,\"workers\":[0,2,null],\"requests\":[", k.out);
	for (i = 0; i < 2; i++) {
		if (i)
			fputc(',', k.out);
		admin_json_request(k.out, &reqs[i]);
	}
	fputs("],\"totals\":{\"client_disconnect\":5,\"deadline_exceeded\":0,"
	      "\"connect_timeout\":0,\"header_timeout\":0,\"idle_timeout\":0,"
	      "\"upstream_error\":0,\"shutdown\":1}}", k.out);
	want = sink_close(&k);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

static void test_summary_empty(void **state)
{
	uint64_t totals[CTX_CAUSE__COUNT] = { 0 };
	struct admin_json_summary s = { .complete = true, .totals = totals };
	struct sink k;
	char *got;

	(void)state;
	sink_open(&k);
	admin_json_summary(k.out, &s);
	got = sink_close(&k);
	assert_string_equal(got,
		"{\"complete\":true,\"workers\":[],\"requests\":[],\"totals\":"
		"{\"client_disconnect\":0,\"deadline_exceeded\":0,"
		"\"connect_timeout\":0,\"header_timeout\":0,\"idle_timeout\":0,"
		"\"upstream_error\":0,\"shutdown\":0}}");
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_quotes),
		cmocka_unit_test(test_control_bytes),
		cmocka_unit_test(test_valid_utf8_kept),
		cmocka_unit_test(test_invalid_utf8_replaced),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_every_byte_gives_valid_output),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_request_full_buffers),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_summary_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
