/* test_pool.c - unit tests for one worker's server pool (pool.c): balancing, passive ejection and its trials, reload, retry budget. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "health.h"
#include "log.h"
#include "pool.h"

#define MS 1000000LL               /* ns */
#define T0 (1000000 * MS)          /* any monotonic time */
#define NSLOTS 16

/* ---- health and log, as pool.c sees them ---- */

static bool slot_down[NSLOTS];
static int gauge[NSLOTS];          /* sum of health_ejected_add deltas */
static int gauge_calls;

bool health_up(int slot)
{
	assert_in_range(slot, 0, NSLOTS - 1);
	return !slot_down[slot];
}

void health_ejected_add(int slot, int delta)
{
	assert_in_range(slot, 0, NSLOTS - 1);
	assert_true(delta == 1 || delta == -1);
	gauge[slot] += delta;
	gauge_calls++;
}

static int log_count;
static enum log_level log_level_seen;
static char log_text[512];         /* "msg | tail" of the last line */

void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
{
	va_list ap;
	int n;

	log_count++;
	log_level_seen = level;
	n = snprintf(log_text, sizeof(log_text), "%s | ", msg);
	va_start(ap, fmt);
	vsnprintf(log_text + n, sizeof(log_text) - (size_t)n, fmt, ap);
	va_end(ap);
}

/* ---- routes built by hand ---- */

struct fixture {
	struct config_route r;
	struct config_server s[4];
	char origin[4][32];
};

/* A route "api" over n servers http://10.0.0.<ip[i]>:80 in slot ip[i]. */
static void route_init(struct fixture *f, size_t n, const int *ip,
		       enum config_balance balance, int eject_after,
		       int64_t eject_ms)
{
	size_t i;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < n; i++) {
		snprintf(f->origin[i], sizeof(f->origin[i]),
			 "http://10.0.0.%d:80", ip[i]);
		f->s[i].origin = f->origin[i];
		f->s[i].slot = ip[i];
	}
	f->r.name = (char *)"api";
	f->r.servers = f->s;
	f->r.nservers = n;
	f->r.balance = balance;
	f->r.retries = 1;
	f->r.retry_on = CONFIG_RETRY_DEFAULT;
	f->r.eject_after = eject_after;
	f->r.eject_ms = eject_ms;
}

static const int ip123[] = { 1, 2, 3 };

static struct pool *new_pool(const struct config_route *r,
			     const struct pool *old)
{
	struct pool *p = pool_new(r, old);

	assert_non_null(p);
	return p;
}

/* One attempt that ends at once with o; returns the server. */
static int attempt(struct pool *p, uint64_t tried, enum retry_outcome o,
		   int64_t now)
{
	int i = pool_pick(p, tried, now);

	pool_end(p, i, o, now);
	return i;
}

/* n failed attempts on server i (every other one tried), ending at now. */
static void fail_on(struct pool *p, size_t nservers, int i, int n,
		    int64_t now)
{
	uint64_t others = ((1ULL << nservers) - 1) & ~(1ULL << i);

	while (n-- > 0) {
		assert_int_equal(pool_pick(p, others, now), i);
		pool_end(p, i, RETRY_OUT_CONNECT_FAILURE, now);
	}
}

static int reset_mocks(void **state)
{
	(void)state;
	memset(slot_down, 0, sizeof(slot_down));
	memset(gauge, 0, sizeof(gauge));
	gauge_calls = 0;
	log_count = 0;
	log_text[0] = '\0';
	return 0;
}

/* ---- balancing ---- */

static void test_round_robin_order(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 9; k++)
		assert_int_equal(attempt(p, 0, RETRY_OUT_OK, T0), k % 3);
	pool_free(p);
}

static void test_round_robin_skips_down(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	slot_down[2] = true;                    /* server 1 */
	for (k = 0; k < 6; k++)
		assert_int_equal(attempt(p, 0, RETRY_OUT_OK, T0), k % 2 ? 2 : 0);
	pool_free(p);
}

static void test_round_robin_skips_ejected(void **state)
{
	struct fixture f;
	struct pool *p;
	int k, i, last = -1;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 1, 1000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 1, T0);
	assert_int_not_equal(pool_ejected_until(p, 1), 0);
	/* the others take turns */
	for (k = 0; k < 6; k++) {
		i = attempt(p, 0, RETRY_OUT_OK, T0 + 10 * MS);
		assert_true(i == 0 || i == 2);
		assert_int_not_equal(i, last);
		last = i;
	}
	pool_free(p);
}

/* Every server down: all are used, never a refusal for that alone. */
static void test_all_down_still_picks(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	slot_down[1] = slot_down[2] = slot_down[3] = true;
	for (k = 0; k < 6; k++)
		assert_int_equal(attempt(p, 0, RETRY_OUT_OK, T0), k % 3);
	/* and untried ones come first among them */
	for (k = 0; k < 6; k++)
		assert_int_equal(attempt(p, 1 << 0 | 1 << 2, RETRY_OUT_OK, T0), 1);
	pool_free(p);
}

static void test_tried_mask(void **state)
{
	struct fixture f;
	struct pool *p;
	int k, i;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 6; k++)
		assert_int_not_equal(attempt(p, 1 << 0, RETRY_OUT_OK, T0), 0);
	/* every usable one tried: a tried usable one beats an untried down one */
	slot_down[2] = true;
	for (k = 0; k < 6; k++) {
		i = attempt(p, 1 << 0 | 1 << 2, RETRY_OUT_OK, T0);
		assert_true(i == 0 || i == 2);
	}
	/* all tried: any usable one */
	for (k = 0; k < 6; k++) {
		i = attempt(p, 7, RETRY_OUT_OK, T0);
		assert_true(i == 0 || i == 2);
	}
	pool_free(p);
}

/* Two distinct picks of two servers are both: always the idle one. */
static void test_least_request_two_servers(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 2, ip123, CONFIG_BALANCE_LEAST_REQUEST, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 5; k++)
		assert_int_equal(pool_pick(p, 1 << 1, T0), 0);
	for (k = 0; k < 100; k++)
		assert_int_equal(attempt(p, 0, RETRY_OUT_OK, T0), 1);
	pool_free(p);
}

static void test_least_request_three_servers(void **state)
{
	struct fixture f;
	struct pool *p;
	int k, i, seen[3] = { 0 };

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_LEAST_REQUEST, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 5; k++)
		assert_int_equal(pool_pick(p, 1 << 1 | 1 << 2, T0), 0);
	for (k = 0; k < 100; k++) {
		i = attempt(p, 0, RETRY_OUT_OK, T0);
		assert_in_range(i, 0, 2);
		seen[i]++;
	}
	assert_int_equal(seen[0], 0);
	/* ties go to the first of two random picks: both idle ones get some
	 * (all 100 on one has odds 2^-99) */
	assert_true(seen[1] > 0 && seen[2] > 0);
	/* one candidate: that one */
	for (k = 0; k < 10; k++)
		assert_int_equal(attempt(p, 1 << 1 | 1 << 2, RETRY_OUT_OK, T0), 0);
	pool_free(p);
}

/* pool_end without a pick leaves the count at 0, not below. */
static void test_inflight_never_below_zero(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 2, ip123, CONFIG_BALANCE_LEAST_REQUEST, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 3; k++)
		pool_end(p, 0, RETRY_OUT_OK, T0);
	assert_int_equal(pool_pick(p, 1 << 1, T0), 0);
	assert_int_equal(pool_pick(p, 1 << 1, T0), 0);
	/* server 0 has 2 in flight (it would be -1 had the count gone below) */
	for (k = 0; k < 20; k++)
		assert_int_equal(attempt(p, 0, RETRY_OUT_OK, T0), 1);
	pool_free(p);
}

/* ---- passive health ---- */

static void test_ejection_after_eject_after(void **state)
{
	struct fixture f;
	struct pool *p;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 3, 1000);
	p = new_pool(&f.r, NULL);
	assert_int_equal(pool_pick(p, 5, T0), 1);
	assert_false(pool_end(p, 1, RETRY_OUT_CONNECT_FAILURE, T0));
	assert_int_equal(pool_pick(p, 5, T0), 1);
	assert_false(pool_end(p, 1, RETRY_OUT_RESET, T0));
	assert_int_equal(pool_failures(p, 1), 2);
	assert_int_equal(pool_ejected_until(p, 1), 0);
	assert_int_equal(gauge_calls, 0);
	assert_int_equal(log_count, 0);
	assert_int_equal(pool_pick(p, 5, T0), 1);
	assert_true(pool_end(p, 1, RETRY_OUT_TIMEOUT, T0 + 5 * MS));
	assert_int_equal(pool_ejected_until(p, 1), T0 + 5 * MS + 1000 * MS);
	assert_int_equal(gauge[2], 1);
	assert_int_equal(gauge_calls, 1);
	assert_int_equal(log_count, 1);
	assert_int_equal(log_level_seen, LOG_WARN);
	assert_string_equal(log_text, "upstream server ejected | route=api "
			    "server=10.0.0.2:80 failures=3 for_ms=1000");
	pool_free(p);
	assert_int_equal(gauge[2], 0);
}

/* Ejected: no pick before its time; then exactly one trial at a time. */
static void test_one_trial_when_time_is_over(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 2, 1000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 2, T0);
	for (k = 0; k < 10; k++) {
		assert_int_not_equal(attempt(p, 0, RETRY_OUT_OK,
					     T0 + 999 * MS), 1);
		assert_int_not_equal(attempt(p, 5, RETRY_OUT_OK,
					     T0 + 999 * MS), 1);
	}
	assert_int_equal(pool_pick(p, 5, T0 + 1000 * MS), 1);     /* the trial */
	for (k = 0; k < 10; k++) {
		assert_int_not_equal(attempt(p, 5, RETRY_OUT_OK,
					     T0 + 1000 * MS), 1);
		assert_int_not_equal(attempt(p, 0, RETRY_OUT_OK,
					     T0 + 2000 * MS), 1);
	}
	assert_int_equal(gauge[2], 1);
	pool_free(p);
}

static void test_failed_trial_doubles(void **state)
{
	struct fixture f;
	struct pool *p;
	int64_t t = T0;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 2, 1000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 2, t);
	t += 1000 * MS;
	assert_int_equal(pool_pick(p, 5, t), 1);
	assert_true(pool_end(p, 1, RETRY_OUT_RESET, t + 3 * MS));
	assert_int_equal(pool_ejected_until(p, 1), t + 3 * MS + 2000 * MS);
	assert_int_equal(gauge[2], 1);          /* counted once */
	assert_int_equal(gauge_calls, 1);
	assert_int_equal(log_count, 2);
	assert_string_equal(log_text, "upstream server ejected | route=api "
			    "server=10.0.0.2:80 failures=3 for_ms=2000");
	/* and its next trial comes after the doubled time only */
	assert_int_not_equal(attempt(p, 5, RETRY_OUT_OK, t + 2002 * MS), 1);
	assert_int_equal(pool_pick(p, 5, t + 2003 * MS), 1);
	pool_free(p);
	assert_int_equal(gauge[2], 0);
}

static void test_doubling_capped(void **state)
{
	static const int64_t want[] = { 100000, 200000, 300000, 300000 };
	struct fixture f;
	struct pool *p;
	int64_t t = T0;
	size_t k;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 1, 100000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 1, t);
	assert_int_equal(pool_ejected_until(p, 1) - t, want[0] * MS);
	for (k = 1; k < sizeof(want) / sizeof(want[0]); k++) {
		t = pool_ejected_until(p, 1);
		fail_on(p, 3, 1, 1, t);
		assert_int_equal(pool_ejected_until(p, 1) - t, want[k] * MS);
	}
	assert_int_equal(want[3], CONFIG_EJECT_MAX_MS);
	assert_int_equal(gauge[2], 1);
	pool_free(p);
}

static void test_trial_success_restores(void **state)
{
	struct fixture f;
	struct pool *p;
	int64_t t = T0;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 2, 1000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 2, t);
	t = pool_ejected_until(p, 1);
	fail_on(p, 3, 1, 1, t);                 /* a failed trial: 2000 ms */
	t = pool_ejected_until(p, 1);
	assert_int_equal(pool_pick(p, 5, t), 1);
	assert_false(pool_end(p, 1, RETRY_OUT_STATUS_5XX, t));   /* a head */
	assert_int_equal(pool_ejected_until(p, 1), 0);
	assert_int_equal(pool_failures(p, 1), 0);
	assert_int_equal(gauge[2], 0);
	assert_int_equal(gauge_calls, 2);
	assert_int_equal(log_level_seen, LOG_INFO);
	assert_string_equal(log_text, "upstream server restored | route=api "
			    "server=10.0.0.2:80");
	/* usable again, and the next ejection is eject_ms long */
	assert_int_equal(attempt(p, 5, RETRY_OUT_OK, t), 1);
	fail_on(p, 3, 1, 1, t);
	assert_int_equal(pool_ejected_until(p, 1), 0);
	fail_on(p, 3, 1, 1, t);
	assert_int_equal(pool_ejected_until(p, 1), t + 1000 * MS);
	assert_int_equal(gauge[2], 1);
	pool_free(p);
	assert_int_equal(gauge[2], 0);
}

static void test_head_resets_failures(void **state)
{
	struct fixture f;
	struct pool *p;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 4, T0);
	assert_int_equal(attempt(p, 5, RETRY_OUT_OK, T0), 1);
	assert_int_equal(pool_failures(p, 1), 0);
	fail_on(p, 3, 1, 4, T0);
	assert_int_equal(attempt(p, 5, RETRY_OUT_STATUS_5XX, T0), 1);
	fail_on(p, 3, 1, 4, T0);
	assert_int_equal(pool_failures(p, 1), 4);
	assert_int_equal(pool_ejected_until(p, 1), 0);
	assert_int_equal(gauge_calls, 0);
	fail_on(p, 3, 1, 1, T0);
	assert_int_not_equal(pool_ejected_until(p, 1), 0);
	pool_free(p);
}

static void test_eject_after_zero_never_ejects(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 0, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 100; k++) {
		assert_int_equal(pool_pick(p, 5, T0), 1);
		assert_false(pool_end(p, 1, RETRY_OUT_TIMEOUT, T0));
	}
	assert_int_equal(pool_ejected_until(p, 1), 0);
	assert_int_equal(gauge_calls, 0);
	assert_int_equal(log_count, 0);
	pool_free(p);
}

static void test_cancelled_changes_nothing(void **state)
{
	struct fixture f;
	struct pool *p;
	int64_t t = T0, until;

	(void)state;
	route_init(&f, 3, ip123, CONFIG_BALANCE_ROUND_ROBIN, 3, 1000);
	p = new_pool(&f.r, NULL);
	fail_on(p, 3, 1, 2, t);
	assert_int_equal(pool_pick(p, 5, t), 1);
	assert_false(pool_end(p, 1, RETRY_OUT_CANCELLED, t));
	assert_int_equal(pool_failures(p, 1), 2);
	fail_on(p, 3, 1, 1, t);                 /* the run went on */
	until = pool_ejected_until(p, 1);
	assert_int_equal(until, t + 1000 * MS);
	/* a cancelled trial: still ejected, same time, no log, no gauge */
	assert_int_equal(pool_pick(p, 5, until), 1);
	assert_int_not_equal(attempt(p, 5, RETRY_OUT_OK, until), 1);
	assert_false(pool_end(p, 1, RETRY_OUT_CANCELLED, until));
	assert_int_equal(pool_ejected_until(p, 1), until);
	assert_int_equal(gauge_calls, 1);
	assert_int_equal(log_count, 1);
	/* and the trial slot is free: another trial may go */
	assert_int_equal(pool_pick(p, 5, until), 1);
	assert_true(pool_end(p, 1, RETRY_OUT_RESET, until));
	assert_int_equal(pool_ejected_until(p, 1), until + 2000 * MS);
	pool_free(p);
}

/* ---- reload ---- */

static void test_new_pool_carries_same_origins(void **state)
{
	static const int old_ip[] = { 1, 2, 3 }, new_ip[] = { 2, 4, 1 };
	struct fixture fo, fn;
	struct pool *old, *p;
	int64_t until;

	(void)state;
	route_init(&fo, 3, old_ip, CONFIG_BALANCE_ROUND_ROBIN, 2, 1000);
	old = new_pool(&fo.r, NULL);
	fail_on(old, 3, 0, 2, T0);              /* .1 ejected */
	fail_on(old, 3, 1, 1, T0);              /* .2 one failure */
	fail_on(old, 3, 2, 2, T0);              /* .3 ejected, goes away */
	until = pool_ejected_until(old, 0);
	assert_int_equal(gauge[1], 1);
	assert_int_equal(gauge[3], 1);

	route_init(&fn, 3, new_ip, CONFIG_BALANCE_ROUND_ROBIN, 2, 1000);
	p = new_pool(&fn.r, old);
	assert_int_equal(pool_failures(p, 0), 1);          /* .2 */
	assert_int_equal(pool_ejected_until(p, 0), 0);
	assert_int_equal(pool_failures(p, 1), 0);          /* .4, new */
	assert_int_equal(pool_ejected_until(p, 1), 0);
	assert_int_equal(pool_failures(p, 2), 2);          /* .1 */
	assert_int_equal(pool_ejected_until(p, 2), until);
	assert_int_equal(gauge[1], 2);          /* both pools hold it */
	assert_int_equal(gauge[3], 1);
	assert_int_equal(gauge[4], 0);
	pool_free(old);
	assert_int_equal(gauge[1], 1);
	assert_int_equal(gauge[3], 0);
	/* the carried state goes on: .2 is ejected on its next failure */
	fail_on(p, 3, 0, 1, T0);
	assert_int_not_equal(pool_ejected_until(p, 0), 0);
	pool_free(p);
	assert_int_equal(gauge[1], 0);
	assert_int_equal(gauge[2], 0);
}

/* A trial or attempts in flight end on the old pool: the new one does
 * not wait for them. */
static void test_new_pool_not_inflight(void **state)
{
	struct fixture fo, fn;
	struct pool *old, *p;
	int64_t until;
	int k, seen[2] = { 0 };

	(void)state;
	route_init(&fo, 2, ip123, CONFIG_BALANCE_LEAST_REQUEST, 1, 1000);
	old = new_pool(&fo.r, NULL);
	for (k = 0; k < 5; k++)
		assert_int_equal(pool_pick(old, 1 << 1, T0), 0);
	assert_int_equal(pool_pick(old, 1 << 0, T0), 1);
	pool_end(old, 1, RETRY_OUT_RESET, T0);
	until = pool_ejected_until(old, 1);
	assert_int_equal(pool_pick(old, 1 << 0, until), 1);       /* its trial */

	route_init(&fn, 2, ip123, CONFIG_BALANCE_LEAST_REQUEST, 1, 1000);
	p = new_pool(&fn.r, old);
	assert_int_equal(pool_ejected_until(p, 1), until);
	assert_int_equal(pool_pick(p, 1 << 0, until), 1);         /* a trial here */
	assert_false(pool_end(p, 1, RETRY_OUT_OK, until));
	assert_int_equal(pool_ejected_until(p, 1), 0);
	for (k = 0; k < 100; k++)
		seen[attempt(p, 0, RETRY_OUT_OK, until)]++;
	assert_true(seen[0] > 0 && seen[1] > 0);  /* server 0 is idle here */
	pool_free(p);
	pool_free(old);
	assert_int_equal(gauge[2], 0);
}

static void test_free_null(void **state)
{
	(void)state;
	pool_free(NULL);
	assert_int_equal(gauge_calls, 0);
}

/* ---- retry budget ---- */

static void test_retry_budget_floor(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 1, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	pool_exchange_begin(p);
	for (k = 0; k < 3; k++) {
		assert_true(pool_retry_allowed(p));
		pool_retry_begin(p);
	}
	assert_false(pool_retry_allowed(p));
	pool_exchange_begin(p);
	pool_exchange_end(p, true);
	assert_true(pool_retry_allowed(p));
	pool_exchange_end(p, false);
	pool_free(p);
}

static void test_retry_budget_twenty_percent(void **state)
{
	struct fixture f;
	struct pool *p;
	int k;

	(void)state;
	route_init(&f, 1, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 100; k++)
		pool_exchange_begin(p);
	for (k = 0; k < 20; k++) {
		assert_true(pool_retry_allowed(p));
		pool_retry_begin(p);
	}
	assert_false(pool_retry_allowed(p));
	for (k = 0; k < 5; k++)
		pool_exchange_begin(p);
	assert_true(pool_retry_allowed(p));     /* 21 of 105 */
	pool_free(p);
}

/* Waiters for a retry slot: granted oldest first as retrying exchanges
 * end, each slot taken for the waiter before it hears. */
static struct pool_waiter *granted[4];
static int ngranted;

static void on_granted(struct pool_waiter *w)
{
	if (ngranted < 4)
		granted[ngranted] = w;
	ngranted++;
}

static void test_retry_waiters_fifo(void **state)
{
	struct fixture f;
	struct pool *p;
	struct pool_waiter w[3];
	int k;

	(void)state;
	memset(w, 0, sizeof(w));
	ngranted = 0;
	route_init(&f, 1, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 6; k++)
		pool_exchange_begin(p);
	for (k = 0; k < 3; k++)
		pool_retry_begin(p);
	assert_false(pool_retry_allowed(p));
	for (k = 0; k < 3; k++) {
		w[k].granted = on_granted;
		pool_retry_wait(p, &w[k]);
	}
	pool_retry_wait(p, &w[0]);               /* queued already: no-op */
	pool_retry_unwait(p, &w[1]);             /* gave up: never granted */
	assert_false(w[1].queued);
	pool_exchange_end(p, true);              /* a slot frees: w[0] */
	assert_int_equal(ngranted, 1);
	assert_ptr_equal(granted[0], &w[0]);
	assert_false(w[0].queued);
	assert_true(w[2].queued);
	assert_false(pool_retry_allowed(p));     /* w[0] holds the slot */
	pool_exchange_end(p, false);             /* no slot freed */
	assert_int_equal(ngranted, 1);
	pool_exchange_end(p, true);              /* w[2] */
	assert_int_equal(ngranted, 2);
	assert_ptr_equal(granted[1], &w[2]);
	assert_false(w[2].queued);
	pool_free(p);
}

/* While one waits, a newcomer does not jump the queue; when the budget
 * grows (more exchanges in flight) the waiter has the room first. */
static void test_retry_waiter_blocks_newcomers(void **state)
{
	struct fixture f;
	struct pool *p;
	struct pool_waiter w = { .granted = on_granted };
	int k;

	(void)state;
	ngranted = 0;
	route_init(&f, 1, ip123, CONFIG_BALANCE_ROUND_ROBIN, 5, 1000);
	p = new_pool(&f.r, NULL);
	for (k = 0; k < 30; k++)
		pool_exchange_begin(p);
	for (k = 0; k < 6; k++)
		pool_retry_begin(p);
	pool_retry_wait(p, &w);
	assert_false(pool_retry_allowed(p));
	for (k = 0; k < 4; k++)
		pool_exchange_begin(p);                /* 34: still 6 */
	assert_int_equal(ngranted, 0);
	pool_exchange_begin(p);                        /* 35: room for 7 */
	assert_int_equal(ngranted, 1);
	assert_ptr_equal(granted[0], &w);
	assert_false(pool_retry_allowed(p));           /* w took it */
	pool_free(p);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup(name, reset_mocks)
	const struct CMUnitTest tests[] = {
		T(test_round_robin_order),
		T(test_round_robin_skips_down),
		T(test_round_robin_skips_ejected),
		T(test_all_down_still_picks),
		T(test_tried_mask),
		T(test_least_request_two_servers),
		T(test_least_request_three_servers),
		T(test_inflight_never_below_zero),
		T(test_ejection_after_eject_after),
		T(test_one_trial_when_time_is_over),
		T(test_failed_trial_doubles),
		T(test_doubling_capped),
		T(test_trial_success_restores),
		T(test_head_resets_failures),
		T(test_eject_after_zero_never_ejects),
		T(test_cancelled_changes_nothing),
		T(test_new_pool_carries_same_origins),
		T(test_new_pool_not_inflight),
		T(test_free_null),
		T(test_retry_budget_floor),
		T(test_retry_budget_twenty_percent),
		T(test_retry_waiters_fifo),
		T(test_retry_waiter_blocks_newcomers),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
