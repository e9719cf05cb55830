/* test_retry.c - unit tests for the retry decision and the names of reasons and outcomes (retry.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "retry.h"

/* Facts under which every condition holds: each test breaks one. */
static struct retry_in all_hold(void)
{
	struct retry_in in = {
		.reason = RETRY_RESET,
		.retry_on = CONFIG_RETRY_DEFAULT,
		.responded = false,
		.idempotent = true,
		.body_held = true,
		.attempts = 1,
		.retries = 1,
		.budget_left = true,
		.retry_budget = true,
	};

	return in;
}

static void test_all_hold(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	assert_true(retry_decide(&in));
}

static void test_reason_not_listed(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.retry_on = CONFIG_RETRY_CONNECT;
	assert_false(retry_decide(&in));
	in.retry_on = CONFIG_RETRY_RESET;
	assert_true(retry_decide(&in));
	in.reason = RETRY_TIMEOUT;
	assert_false(retry_decide(&in));
	in.retry_on = CONFIG_RETRY_TIMEOUT;
	assert_true(retry_decide(&in));
	in.reason = RETRY_503;
	in.retry_on = CONFIG_RETRY_502 | CONFIG_RETRY_504;
	assert_false(retry_decide(&in));
	in.retry_on |= CONFIG_RETRY_503;
	assert_true(retry_decide(&in));
}

/* The reason bits are the CONFIG_RETRY_* bits, one for one. */
static void test_reason_bits_match_config(void **state)
{
	(void)state;
	assert_int_equal(1u << RETRY_CONNECT_FAILURE, CONFIG_RETRY_CONNECT);
	assert_int_equal(1u << RETRY_RESET, CONFIG_RETRY_RESET);
	assert_int_equal(1u << RETRY_TIMEOUT, CONFIG_RETRY_TIMEOUT);
	assert_int_equal(1u << RETRY_502, CONFIG_RETRY_502);
	assert_int_equal(1u << RETRY_503, CONFIG_RETRY_503);
	assert_int_equal(1u << RETRY_504, CONFIG_RETRY_504);
}

static void test_responded(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.responded = true;
	assert_false(retry_decide(&in));
}

static void test_not_idempotent(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.idempotent = false;
	assert_false(retry_decide(&in));
}

/* Nothing was sent: a POST may go again, but only on a connect failure. */
static void test_not_idempotent_connect_failure(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.idempotent = false;
	in.reason = RETRY_CONNECT_FAILURE;
	assert_true(retry_decide(&in));
	in.retry_on = CONFIG_RETRY_RESET;
	assert_false(retry_decide(&in));
}

static void test_body_not_held(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.body_held = false;
	assert_false(retry_decide(&in));
}

static void test_attempts_used_up(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.attempts = 2;
	assert_false(retry_decide(&in));
	in.retries = 2;
	assert_true(retry_decide(&in));
	in.attempts = 3;
	assert_false(retry_decide(&in));
	in.retries = 0;
	in.attempts = 1;
	assert_false(retry_decide(&in));
}

static void test_no_budget_left(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.budget_left = false;
	assert_false(retry_decide(&in));
}

static void test_no_retry_budget(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.retry_budget = false;
	assert_false(retry_decide(&in));
}

static void test_reason_out_of_range(void **state)
{
	struct retry_in in = all_hold();

	(void)state;
	in.retry_on = ~0u;
	in.reason = RETRY_REASON__COUNT;
	assert_false(retry_decide(&in));
	in.reason = (enum retry_reason)40;
	assert_false(retry_decide(&in));
}

static void test_reason_of_status(void **state)
{
	(void)state;
	assert_int_equal(retry_reason_of_status(502), RETRY_502);
	assert_int_equal(retry_reason_of_status(503), RETRY_503);
	assert_int_equal(retry_reason_of_status(504), RETRY_504);
	assert_int_equal(retry_reason_of_status(500), -1);
	assert_int_equal(retry_reason_of_status(501), -1);
	assert_int_equal(retry_reason_of_status(505), -1);
	assert_int_equal(retry_reason_of_status(200), -1);
	assert_int_equal(retry_reason_of_status(0), -1);
}

static void test_outcome_of(void **state)
{
	(void)state;
	assert_int_equal(retry_outcome_of(RETRY_CONNECT_FAILURE),
			 RETRY_OUT_CONNECT_FAILURE);
	assert_int_equal(retry_outcome_of(RETRY_RESET), RETRY_OUT_RESET);
	assert_int_equal(retry_outcome_of(RETRY_TIMEOUT), RETRY_OUT_TIMEOUT);
	assert_int_equal(retry_outcome_of(RETRY_502), RETRY_OUT_STATUS_5XX);
	assert_int_equal(retry_outcome_of(RETRY_503), RETRY_OUT_STATUS_5XX);
	assert_int_equal(retry_outcome_of(RETRY_504), RETRY_OUT_STATUS_5XX);
}

static void test_reason_names(void **state)
{
	(void)state;
	assert_string_equal(retry_reason_name(RETRY_CONNECT_FAILURE),
			    "connect_failure");
	assert_string_equal(retry_reason_name(RETRY_RESET), "reset");
	assert_string_equal(retry_reason_name(RETRY_TIMEOUT), "timeout");
	assert_string_equal(retry_reason_name(RETRY_502), "502");
	assert_string_equal(retry_reason_name(RETRY_503), "503");
	assert_string_equal(retry_reason_name(RETRY_504), "504");
	assert_null(retry_reason_name(RETRY_REASON__COUNT));
	assert_null(retry_reason_name(-1));
}

static void test_outcome_names(void **state)
{
	(void)state;
	assert_string_equal(retry_outcome_name(RETRY_OUT_OK), "ok");
	assert_string_equal(retry_outcome_name(RETRY_OUT_CONNECT_FAILURE),
			    "connect_failure");
	assert_string_equal(retry_outcome_name(RETRY_OUT_RESET), "reset");
	assert_string_equal(retry_outcome_name(RETRY_OUT_TIMEOUT), "timeout");
	assert_string_equal(retry_outcome_name(RETRY_OUT_STATUS_5XX),
			    "status_5xx");
	assert_string_equal(retry_outcome_name(RETRY_OUT_CANCELLED),
			    "cancelled");
	assert_null(retry_outcome_name(RETRY_OUT_CANCELLED + 1));
	assert_null(retry_outcome_name(-1));
}

static void test_idempotent_methods(void **state)
{
	(void)state;
	assert_true(retry_idempotent("GET"));
	assert_true(retry_idempotent("HEAD"));
	assert_true(retry_idempotent("OPTIONS"));
	assert_true(retry_idempotent("PUT"));
	assert_true(retry_idempotent("DELETE"));
	assert_true(retry_idempotent("TRACE"));
	assert_false(retry_idempotent("POST"));
	assert_false(retry_idempotent("PATCH"));
	assert_false(retry_idempotent("CONNECT"));
	assert_false(retry_idempotent("get"));         /* methods are case-sensitive */
	assert_false(retry_idempotent("GETX"));
	assert_false(retry_idempotent("GE"));
	assert_false(retry_idempotent(""));
	assert_false(retry_idempotent(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_hold),
		cmocka_unit_test(test_reason_not_listed),
		cmocka_unit_test(test_reason_bits_match_config),
		cmocka_unit_test(test_responded),
		cmocka_unit_test(test_not_idempotent),
		cmocka_unit_test(test_not_idempotent_connect_failure),
		cmocka_unit_test(test_body_not_held),
		cmocka_unit_test(test_attempts_used_up),
		cmocka_unit_test(test_no_budget_left),
		cmocka_unit_test(test_no_retry_budget),
		cmocka_unit_test(test_reason_out_of_range),
		cmocka_unit_test(test_reason_of_status),
		cmocka_unit_test(test_outcome_of),
		cmocka_unit_test(test_reason_names),
		cmocka_unit_test(test_outcome_names),
		cmocka_unit_test(test_idempotent_methods),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
