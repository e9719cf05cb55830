/* test_trace.c - W3C traceparent: the table of valid and invalid values, joining, new traces and sampling, the value written. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "trace.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

struct parse_case {
	const char *v;
	bool ok;
	const char *why;
};

static const struct parse_case cases[] = {
	{ GOOD, true, "the W3C example" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, "not sampled" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", true, "unknown flags kept" },
	{ "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, "a later version" },
	{ "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", true, "a later version, more fields" },
	{ "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, "the last version" },
	{ "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, "version ff" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", false, "version 00 with a fifth field" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, "version 00, a byte more" },
	{ "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, "a later version, no dash after the flags" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false, "short flags" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false, "short trace id" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b-01", false, "fields shifted" },
	{ "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, "upper-case trace id" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", false, "upper-case parent id" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", false, "upper-case flags" },
	{ "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, "upper-case version" },
	{ "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, "all-zero trace id" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, "all-zero parent id" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", false, "not hex" },
	{ "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, "wrong separator" },
	{ "00-4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7-01", false, "space for a dash" },
	{ " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, "leading blank" },
	{ "", false, "empty" },
	{ "00", false, "version alone" },
};

static void test_parse_table(void **state)
{
	struct trace t;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&t, 0, sizeof(t));
		rc = trace_parse(cases[i].v, strlen(cases[i].v), &t);
		if ((rc == 0) != cases[i].ok)
			fail_msg("%s: \"%s\" gave %d", cases[i].why, cases[i].v, rc);
	}
}

static void test_parse_fields(void **state)
{
	static const uint8_t tid[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3,
		0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
	static const uint8_t pid[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9,
		0x02, 0xb7 };
	struct trace t;

	(void)state;
	memset(&t, 0, sizeof(t));
	assert_int_equal(trace_parse(GOOD, strlen(GOOD), &t), 0);
	assert_memory_equal(t.trace_id, tid, 16);
	assert_memory_equal(t.parent_id, pid, 8);
	assert_int_equal(t.flags, 1);
	/* Only the given length is read: a valid prefix is not enough. */
	assert_int_equal(trace_parse(GOOD, 54, &t), -EINVAL);
}

/* A counter as the random source: predictable ids. */
static uint64_t counter(void *arg)
{
	uint64_t *c = arg;

	return ++*c * 0x9e3779b97f4a7c15ULL;
}

static uint64_t zeros_then_counter(void *arg)
{
	uint64_t *c = arg;

	if (*c < 3) {
		++*c;
		return 0;
	}
	return counter(arg);
}

static void test_join_keeps_trace_and_flags(void **state)
{
	char out[TRACE_PARENT_LEN + 1];
	uint64_t c = 0;
	struct trace t;

	(void)state;
	trace_begin(&t, GOOD, strlen(GOOD), 1, 0, counter, &c);
	assert_true(t.joined);
	trace_format(&t, out);
	assert_int_equal(strlen(out), TRACE_PARENT_LEN);
	assert_memory_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
	assert_string_equal(out + 52, "-01");
	/* A new span id of this hop, not the caller's. */
	assert_memory_not_equal(out + 36, "00f067aa0ba902b7", 16);
	/* A later version is written as 00. */
	trace_begin(&t, cases[3].v, strlen(cases[3].v), 1, 0, counter, &c);
	trace_format(&t, out);
	assert_memory_equal(out, "00-4bf9", 7);
}

static void test_new_trace(void **state)
{
	char out[TRACE_PARENT_LEN + 1], id[TRACE_ID_HEX];
	uint64_t c = 0;
	struct trace t, u;

	(void)state;
	/* No header, an invalid one, or two of them: a new trace. */
	trace_begin(&t, NULL, 0, 0, 0, counter, &c);
	assert_false(t.joined);
	assert_int_equal(t.flags, 0);
	trace_begin(&u, cases[6].v, strlen(cases[6].v), 1, 0, counter, &c);
	assert_false(u.joined);
	assert_memory_not_equal(t.trace_id, u.trace_id, 16);
	trace_begin(&u, GOOD, strlen(GOOD), 2, 0, counter, &c);
	assert_false(u.joined);
	trace_hex(u.trace_id, 16, id);
	assert_string_not_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736");
	trace_format(&u, out);
	assert_int_equal(trace_parse(out, strlen(out), &t), 0);
	/* A random source that starts with zeros never gives a zero id. */
	c = 0;
	trace_begin(&t, NULL, 0, 0, 0, zeros_then_counter, &c);
	trace_format(&t, out);
	assert_int_equal(trace_parse(out, strlen(out), &u), 0);
}

static void test_sampling(void **state)
{
	uint64_t c = 0;
	struct trace t;
	int i, sampled = 0;

	(void)state;
	for (i = 0; i < 1000; i++) {
		trace_begin(&t, NULL, 0, 0, 0, counter, &c);
		sampled += t.flags & 1;
	}
	assert_int_equal(sampled, 0);
	for (i = 0; i < 1000; i++) {
		trace_begin(&t, NULL, 0, 0, 100, counter, &c);
		sampled += t.flags & 1;
	}
	assert_int_equal(sampled, 1000);
	sampled = 0;
	for (i = 0; i < 10000; i++) {
		trace_begin(&t, NULL, 0, 0, 25, counter, &c);
		sampled += t.flags & 1;
	}
	assert_in_range(sampled, 2000, 3000);
	/* A joined trace keeps the caller's decision. */
	trace_begin(&t, cases[1].v, strlen(cases[1].v), 1, 100, counter, &c);
	assert_int_equal(t.flags, 0);
}

static void test_state_limit(void **state)
{
	(void)state;
	assert_true(trace_state_ok(0));
	assert_true(trace_state_ok(TRACE_STATE_MAX));
	assert_false(trace_state_ok(TRACE_STATE_MAX + 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_join_keeps_trace_and_flags),
		cmocka_unit_test(test_new_trace),
		cmocka_unit_test(test_sampling),
		cmocka_unit_test(test_state_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
