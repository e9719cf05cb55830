/* test_upstream.c - unit tests for the request-head lines handed to libcurl. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

/* Line i of h, as libcurl will read it. */
static const char *line_of(const struct fetch_head *h, size_t i)
{
	return h->buf + (i ? h->end[i - 1] : 0);
}

static struct fetch_head *head_new(void)
{
	struct fetch_head *h = malloc(sizeof(*h));

	assert_non_null(h);
	fetch_head_init(h);
	return h;
}

static void test_lines(void **state)
{
	struct fetch_head *h = head_new();

	(void)state;
	assert_int_equal(fetch_head_add(h, "Host", 4, "example.com", 11), 0);
	assert_int_equal(fetch_head_add(h, "X-Empty", 7, "", 0), 0);
	assert_int_equal(fetch_head_drop(h, "Accept", 6), 0);
	assert_int_equal(fetch_head_add(h, "X-Cut", 3, "value", 2), 0);
	assert_int_equal(h->n, 4);
	assert_string_equal(line_of(h, 0), "Host: example.com");
	assert_string_equal(line_of(h, 1), "X-Empty;");   /* sent, empty */
	assert_string_equal(line_of(h, 2), "Accept:");    /* curl's own dropped */
	assert_string_equal(line_of(h, 3), "X-C: va");
	assert_int_equal(h->len, h->end[3]);
	free(h);
}

static void test_full_by_bytes(void **state)
{
	struct fetch_head *h = head_new();
	char *big = malloc(FETCH_HEAD_BYTES);
	size_t len = FETCH_HEAD_BYTES - 1 - 3;  /* "X: " + value + NUL fills it */

	(void)state;
	assert_non_null(big);
	memset(big, 'v', FETCH_HEAD_BYTES);
	assert_int_equal(fetch_head_add(h, "X", 1, big, len + 1), -ENOSPC);
	assert_int_equal(h->n, 0);
	assert_int_equal(h->len, 0);
	assert_int_equal(fetch_head_add(h, "X", 1, big, len), 0);
	assert_int_equal(h->len, FETCH_HEAD_BYTES);
	assert_int_equal(fetch_head_drop(h, "Y", 1), -ENOSPC);
	assert_int_equal(h->n, 1);
	free(big);
	free(h);
}

static void test_full_by_lines(void **state)
{
	struct fetch_head *h = head_new();
	size_t i;

	(void)state;
	for (i = 0; i < FETCH_HEAD_LINES; i++)
		assert_int_equal(fetch_head_add(h, "A", 1, "b", 1), 0);
	assert_int_equal(fetch_head_add(h, "A", 1, "b", 1), -ENOSPC);
	assert_int_equal(h->n, FETCH_HEAD_LINES);
	assert_string_equal(line_of(h, FETCH_HEAD_LINES - 1), "A: b");
	fetch_head_init(h);
	assert_int_equal(h->n, 0);
	assert_int_equal(h->len, 0);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_full_by_bytes),
		cmocka_unit_test(test_full_by_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
