/* test_log.c - unit tests pinning the access log's logfmt and JSON lines. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define LINE_MAX_BYTES 16384     /* log.c's LOG_LINE_MAX */
#define TS_SHAPE "dddd-dd-ddTdd:dd:dd.dddZ"
#define LOGFMT_HEAD "ts="        /* then the timestamp */
#define JSON_HEAD "{\"ts\":\""   /* then the timestamp and a quote */

/* The whole file at path, NUL-terminated.  The caller frees. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Check that s starts with an RFC 3339 UTC timestamp with milliseconds. */
static void assert_ts(const char *s)
{
	size_t i;

	for (i = 0; TS_SHAPE[i]; i++) {
		if (TS_SHAPE[i] == 'd')
			assert_in_range(s[i], '0', '9');
		else
			assert_int_equal(s[i], TS_SHAPE[i]);
	}
}

/* Log a through log_access(NULL, ...) in format to a fresh file, and return
 * its one line without the timestamp or the newline: from " type=access"
 * (logfmt) or ",\"type\"" (JSON) on.  The caller frees. */
static char *access_line(const char *format, const struct log_access *a)
{
	char path[] = "/tmp/test_log.XXXXXX";
	int json = strcmp(format, "json") == 0;
	const char *head = json ? JSON_HEAD : LOGFMT_HEAD;
	size_t skip = strlen(head) + strlen(TS_SHAPE) + (size_t)json;
	char *file, *rest;
	size_t n;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open_access(path, format), 0);
	log_access(NULL, a);
	log_close();
	file = slurp(path);
	unlink(path);
	n = strlen(file);
	assert_true(n > skip);
	assert_int_equal(file[n - 1], '\n');
	file[n - 1] = '\0';
	assert_null(strchr(file, '\n'));
	assert_memory_equal(file, head, strlen(head));
	assert_ts(file + strlen(head));
	if (json)
		assert_int_equal(file[skip - 1], '"');
	rest = strdup(file + skip);
	assert_non_null(rest);
	free(file);
	return rest;
}

/* Check both formats of a's line against the wanted tails. */
static void check(const struct log_access *a, const char *logfmt,
		  const char *json)
{
	char *got = access_line("logfmt", a);

	assert_string_equal(got, logfmt);
	free(got);
	got = access_line("json", a);
	assert_string_equal(got, json);
	free(got);
}

/* A completed request, as front.c logs one. */
static struct log_access plain(void)
{
	struct log_access a = { 0 };

	a.id = "0123456789abcdef0123456789abcdef";
	a.client = "127.0.0.1:40000";
	a.method = "GET";
	a.path = "/api/items?page=2";
	a.route = "api";
	a.status = 200;
	a.upstream_status = 200;
	a.bytes_in = 0;
	a.bytes_out = 1234;
	a.duration_ns = 1234567;
	a.cause = "completed";
	a.phase = "done";
	return a;
}

#define PLAIN_LOGFMT_HEAD " type=access id=0123456789abcdef0123456789abcdef" \
	" client=127.0.0.1:40000 method=GET"
#define PLAIN_JSON_HEAD ",\"type\":\"access\"," \
	"\"id\":\"0123456789abcdef0123456789abcdef\"," \
	"\"client\":\"127.0.0.1:40000\",\"method\":\"GET\""

static void test_plain(void **state)
{
	struct log_access a = plain();

	(void)state;
	check(&a, PLAIN_LOGFMT_HEAD " path=\"/api/items?page=2\" route=api"
	      " status=200 upstream_status=200 bytes_in=0 bytes_out=1234"
	      " duration_ms=1.235 cause=completed phase=done",
	      PLAIN_JSON_HEAD ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":200,\"upstream_status\":200,\"bytes_in\":0,"
	      "\"bytes_out\":1234,\"duration_ms\":1.235,\"cause\":\"completed\","
	      "\"phase\":\"done\"}");
}

/* Trace context on: the trace and this hop's span follow the id. */
static void test_trace_ids(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
	a.span_id = "00f067aa0ba902b7";
	check(&a, " type=access id=0123456789abcdef0123456789abcdef"
	      " trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
	      " span_id=00f067aa0ba902b7 client=127.0.0.1:40000 method=GET"
	      " path=\"/api/items?page=2\" route=api"
	      " status=200 upstream_status=200 bytes_in=0 bytes_out=1234"
	      " duration_ms=1.235 cause=completed phase=done",
	      ",\"type\":\"access\","
	      "\"id\":\"0123456789abcdef0123456789abcdef\","
	      "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
	      "\"span_id\":\"00f067aa0ba902b7\","
	      "\"client\":\"127.0.0.1:40000\",\"method\":\"GET\""
	      ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":200,\"upstream_status\":200,\"bytes_in\":0,"
	      "\"bytes_out\":1234,\"duration_ms\":1.235,\"cause\":\"completed\","
	      "\"phase\":\"done\"}");
}

/* A request that went upstream: its attempts and the last server. */
static void test_attempts_and_upstream_addr(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.attempts = 2;
	a.upstream_addr = "127.0.0.1:9002";
	check(&a, PLAIN_LOGFMT_HEAD " path=\"/api/items?page=2\" route=api"
	      " status=200 upstream_status=200 attempts=2"
	      " upstream_addr=127.0.0.1:9002 bytes_in=0 bytes_out=1234"
	      " duration_ms=1.235 cause=completed phase=done",
	      PLAIN_JSON_HEAD ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":200,\"upstream_status\":200,\"attempts\":2,"
	      "\"upstream_addr\":\"127.0.0.1:9002\",\"bytes_in\":0,"
	      "\"bytes_out\":1234,\"duration_ms\":1.235,\"cause\":\"completed\","
	      "\"phase\":\"done\"}");
}

/* A cancelled request: both stamps, so the _us fields and propagation_us. */
static void test_cancel_and_upstream_close(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.status = 499;
	a.upstream_status = 0;
	a.bytes_in = UINT64_MAX;
	a.bytes_out = 0;
	a.duration_ns = 2500000000;
	a.cause = "client_disconnect";
	a.phase = "awaiting_headers";
	a.cancel_ns = 5000123456;
	a.upstream_close_ns = 5000456789;
	check(&a, PLAIN_LOGFMT_HEAD " path=\"/api/items?page=2\" route=api"
	      " status=499 upstream_status=0 bytes_in=18446744073709551615"
	      " bytes_out=0 duration_ms=2500.000 cause=client_disconnect"
	      " phase=awaiting_headers cancel_us=5000123"
	      " upstream_close_us=5000456 propagation_us=333",
	      PLAIN_JSON_HEAD ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":499,\"upstream_status\":0,"
	      "\"bytes_in\":18446744073709551615,\"bytes_out\":0,"
	      "\"duration_ms\":2500.000,\"cause\":\"client_disconnect\","
	      "\"phase\":\"awaiting_headers\",\"cancel_us\":5000123,"
	      "\"upstream_close_us\":5000456,\"propagation_us\":333}");
}

static void test_only_cancel(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.status = 504;
	a.cause = "deadline_exceeded";
	a.phase = "streaming";
	a.cancel_ns = 7000999;
	check(&a, PLAIN_LOGFMT_HEAD " path=\"/api/items?page=2\" route=api"
	      " status=504 upstream_status=200 bytes_in=0 bytes_out=1234"
	      " duration_ms=1.235 cause=deadline_exceeded phase=streaming"
	      " cancel_us=7000",
	      PLAIN_JSON_HEAD ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":504,\"upstream_status\":200,\"bytes_in\":0,"
	      "\"bytes_out\":1234,\"duration_ms\":1.235,"
	      "\"cause\":\"deadline_exceeded\",\"phase\":\"streaming\","
	      "\"cancel_us\":7000}");
}

/* No cancel stamp: no propagation_us either. */
static void test_only_upstream_close(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.upstream_close_ns = 42000;
	check(&a, PLAIN_LOGFMT_HEAD " path=\"/api/items?page=2\" route=api"
	      " status=200 upstream_status=200 bytes_in=0 bytes_out=1234"
	      " duration_ms=1.235 cause=completed phase=done"
	      " upstream_close_us=42",
	      PLAIN_JSON_HEAD ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":200,\"upstream_status\":200,\"bytes_in\":0,"
	      "\"bytes_out\":1234,\"duration_ms\":1.235,\"cause\":\"completed\","
	      "\"phase\":\"done\",\"upstream_close_us\":42}");
}

/* Upstream closed before the cancel: logged negative, truncated toward 0. */
static void test_negative_propagation(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.cancel_ns = 2000500;
	a.upstream_close_ns = 1000000;
	a.duration_ns = -1500;
	check(&a, PLAIN_LOGFMT_HEAD " path=\"/api/items?page=2\" route=api"
	      " status=200 upstream_status=200 bytes_in=0 bytes_out=1234"
	      " duration_ms=-0.002 cause=completed phase=done"
	      " cancel_us=2000 upstream_close_us=1000 propagation_us=-1000",
	      PLAIN_JSON_HEAD ",\"path\":\"/api/items?page=2\",\"route\":\"api\","
	      "\"status\":200,\"upstream_status\":200,\"bytes_in\":0,"
	      "\"bytes_out\":1234,\"duration_ms\":-0.002,\"cause\":\"completed\","
	      "\"phase\":\"done\",\"cancel_us\":2000,\"upstream_close_us\":1000,"
	      "\"propagation_us\":-1000}");
}

/* NULL strings (route: no route matched) are logged as "-". */
static void test_null_strings(void **state)
{
	struct log_access a = { 0 };

	(void)state;
	a.status = 408;
	check(&a, " type=access id=- client=- method=- path=- route=-"
	      " status=408 upstream_status=0 bytes_in=0 bytes_out=0"
	      " duration_ms=0.000 cause=- phase=-",
	      ",\"type\":\"access\",\"id\":\"-\",\"client\":\"-\","
	      "\"method\":\"-\",\"path\":\"-\",\"route\":\"-\",\"status\":408,"
	      "\"upstream_status\":0,\"bytes_in\":0,\"bytes_out\":0,"
	      "\"duration_ms\":0.000,\"cause\":\"-\",\"phase\":\"-\"}");
}

/* logfmt quotes a value holding a space, quote, '=', backslash or control
 * byte, or an empty one; JSON escapes quotes, backslashes, control bytes
 * and bytes >= 0x7f (as \u00XX). */
static void test_escaping(void **state)
{
	struct log_access a = plain();

	(void)state;
	a.id = "a\"b";
	a.client = "c\\d";
	a.method = "GET X";
	a.path = "/p?q=1&r=\x01\n\t\x7f";
	a.route = "caf\xc3\xa9";
	a.cause = "x\x1fy";
	a.phase = "";
	check(&a, " type=access id=\"a\\\"b\" client=\"c\\\\d\""
	      " method=\"GET X\" path=\"/p?q=1&r=\\x01\\x0a\\x09\\x7f\""
	      " route=caf\xc3\xa9 status=200 upstream_status=200 bytes_in=0"
	      " bytes_out=1234 duration_ms=1.235 cause=\"x\\x1fy\" phase=\"\"",
	      ",\"type\":\"access\",\"id\":\"a\\\"b\",\"client\":\"c\\\\d\","
	      "\"method\":\"GET X\","
	      "\"path\":\"/p?q=1&r=\\u0001\\u000a\\u0009\\u007f\","
	      "\"route\":\"caf\\u00c3\\u00a9\",\"status\":200,"
	      "\"upstream_status\":200,\"bytes_in\":0,\"bytes_out\":1234,"
	      "\"duration_ms\":1.235,\"cause\":\"x\\u001fy\",\"phase\":\"\"}");
}

/* A string of n copies of c.  The caller frees. */
static char *repeat(const char *c, size_t n)
{
	size_t len = strlen(c), i;
	char *s = malloc(len * n + 1);

	assert_non_null(s);
	for (i = 0; i < n; i++)
		memcpy(s + i * len, c, len);
	s[len * n] = '\0';
	return s;
}

/* printf into a new string.  The caller frees. */
static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *strf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	return s;
}

/* Check the plain request with a->path, whose path field is logged as
 * logfmt_path / json_path (without the JSON quotes). */
static void check_path(const struct log_access *a, const char *logfmt_path,
		       const char *json_path)
{
	char *lf = strf("%s path=%s route=api status=200 upstream_status=200"
			" bytes_in=0 bytes_out=1234 duration_ms=1.235"
			" cause=completed phase=done", PLAIN_LOGFMT_HEAD,
			logfmt_path);
	char *js = strf("%s,\"path\":\"%s\",\"route\":\"api\",\"status\":200,"
			"\"upstream_status\":200,\"bytes_in\":0,"
			"\"bytes_out\":1234,\"duration_ms\":1.235,"
			"\"cause\":\"completed\",\"phase\":\"done\"}",
			PLAIN_JSON_HEAD, json_path);

	check(a, lf, js);
	free(lf);
	free(js);
}

/* Targets of 2044 bytes or more are cut to their first 2044 and "..."; one
 * byte shorter is logged whole. */
static void test_long_path(void **state)
{
	struct log_access a = plain();
	char *whole = repeat("a", 2043), *cut = repeat("a", 2044);
	char *longer = repeat("b", 3000), *b = repeat("b", 2044);
	char *cut_dots = strf("%s...", cut), *b_dots = strf("%s...", b);

	(void)state;
	a.path = whole;
	check_path(&a, whole, whole);
	a.path = cut;
	check_path(&a, cut_dots, cut_dots);
	a.path = longer;
	check_path(&a, b_dots, b_dots);
	free(whole);
	free(cut);
	free(longer);
	free(b);
	free(cut_dots);
	free(b_dots);
}

/* A cut target escaped in full still leaves the line whole. */
static void test_long_escaped_path(void **state)
{
	struct log_access a = plain();
	char *path = repeat("\x01", 3000);
	char *lf_bytes = repeat("\\x01", 2044);
	char *js_bytes = repeat("\\u0001", 2044);
	char *lf = strf("\"%s...\"", lf_bytes), *js = strf("%s...", js_bytes);

	(void)state;
	a.path = path;
	check_path(&a, lf, js);
	free(path);
	free(lf_bytes);
	free(js_bytes);
	free(lf);
	free(js);
}

/* Log a plain request whose id is lead and then 20000 quotes: too long for
 * the line buffer (16384 with its newline), the line is cut to its first
 * 16382 bytes and ended with '\n'. */
static void check_line_cut(const char *lead)
{
	struct log_access a = plain();
	char *quotes = repeat("\"", 20000), *escaped = repeat("\\\"", 20000);
	char *id = strf("%s%s", lead, quotes);
	char *lf = strf(" type=access id=\"%s%s\" client=", lead, escaped);
	char *js = strf(",\"type\":\"access\",\"id\":\"%s%s\",\"client\":",
			lead, escaped);

	lf[LINE_MAX_BYTES - 2 - strlen(LOGFMT_HEAD) - strlen(TS_SHAPE)] = '\0';
	js[LINE_MAX_BYTES - 2 - strlen(JSON_HEAD) - strlen(TS_SHAPE) - 1] = '\0';
	a.id = id;
	check(&a, lf, js);
	free(quotes);
	free(escaped);
	free(id);
	free(lf);
	free(js);
}

/* Both formats cut once between escapes and once inside one. */
static void test_line_cut(void **state)
{
	(void)state;
	check_line_cut("");
	check_line_cut("x");
}

/* log_level: the names, and the threshold log_msg obeys. */
static void test_level(void **state)
{
	enum log_level l = LOG_ERROR;

	(void)state;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("warn", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_level_parse("Warn", &l), -EINVAL);
	assert_int_equal(log_level_parse("", &l), -EINVAL);
	assert_int_equal(l, LOG_WARN);
	assert_true(log_enabled(LOG_INFO));     /* the default */
	assert_false(log_enabled(LOG_DEBUG));
	log_set_level(LOG_WARN);
	assert_false(log_enabled(LOG_INFO));
	assert_true(log_enabled(LOG_WARN));
	assert_true(log_enabled(LOG_ERROR));
	log_set_level(LOG_DEBUG);
	assert_true(log_enabled(LOG_DEBUG));
	log_set_level(LOG_INFO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_level),
		cmocka_unit_test(test_trace_ids),
		cmocka_unit_test(test_attempts_and_upstream_addr),
		cmocka_unit_test(test_cancel_and_upstream_close),
		cmocka_unit_test(test_only_cancel),
		cmocka_unit_test(test_only_upstream_close),
		cmocka_unit_test(test_negative_propagation),
		cmocka_unit_test(test_null_strings),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_long_path),
		cmocka_unit_test(test_long_escaped_path),
		cmocka_unit_test(test_line_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
