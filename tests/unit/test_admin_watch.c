/* test_admin_watch.c - unit tests for the live view's hub: snapshots only while watched, merged history, cursors, streams and stop (admin_watch.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_watch.h"
#include "context.h"
#include "watch.h"

#define NWORKERS 2
#define MAX_REQS 8

/* The workers, as the fake source shows them: it answers at once, on the
 * hub's thread (a worker would on its own).  The lock orders the test's
 * changes with the hub's looks. */
static struct fake {
	pthread_mutex_t lock;
	struct watch_ring *ring[NWORKERS];
	struct watch_req reqs[NWORKERS][MAX_REQS];
	int nreqs[NWORKERS];
	int busy[NWORKERS];             /* answers -EBUSY */
	int asked;                      /* snapshots handed to worker 0 */
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int fake_watch(void *arg, int worker, struct watch_snap *s)
{
	int i, rc = 0;

	(void)arg;
	pthread_mutex_lock(&fake.lock);
	if (worker == 0)
		fake.asked++;
	if (fake.busy[worker]) {
		rc = -EBUSY;
		goto out;
	}
	watch_snap_ref(s);
	for (i = 0; i < fake.nreqs[worker]; i++)
		watch_snap_add_req(s, &fake.reqs[worker][i]);
	watch_snap_add_ring(s, fake.ring[worker]);
	watch_snap_done(s, worker);
out:
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static void add_req(int worker, const char *id, int64_t age_us)
{
	struct watch_req *r;

	pthread_mutex_lock(&fake.lock);
	r = &fake.reqs[worker][fake.nreqs[worker]++];
	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", id);
	snprintf(r->method, sizeof(r->method), "GET");
	snprintf(r->path, sizeof(r->path), "/hang");
	r->phase = "awaiting_headers";
	r->worker = worker;
	r->attempts = 1;
	r->age_us = age_us;
	r->budget_left_us = -1;
	pthread_mutex_unlock(&fake.lock);
}

static void cancel(int worker, const char *id, int64_t unix_ms)
{
	struct watch_cancel c = { .unix_ms = unix_ms, .cause = "client_disconnect",
				  .phase = "awaiting_headers", .status = 499,
				  .propagation_us = 40 };

	snprintf(c.id, sizeof(c.id), "%s", id);
	pthread_mutex_lock(&fake.lock);
	watch_ring_push(fake.ring[worker], &c);
	pthread_mutex_unlock(&fake.lock);
}

static int asked(void)
{
	int n;

	pthread_mutex_lock(&fake.lock);
	n = fake.asked;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

static int setup(void **state)
{
	struct admin_watch *h = admin_watch_new();
	int i;

	memset(fake.nreqs, 0, sizeof(fake.nreqs));
	memset(fake.busy, 0, sizeof(fake.busy));
	fake.asked = 0;
	for (i = 0; i < NWORKERS; i++) {
		fake.ring[i] = watch_ring_new(i);
		assert_non_null(fake.ring[i]);
	}
	assert_non_null(h);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	int i;

	admin_watch_free(*state);
	for (i = 0; i < NWORKERS; i++)
		watch_ring_free(fake.ring[i]);
	return 0;
}

static void attach(struct admin_watch *h)
{
	struct admin_source src = { .nworkers = NWORKERS, .watch = fake_watch };

	assert_int_equal(admin_watch_attach(h, &src), 0);
}

static char *summary(struct admin_watch *h)
{
	size_t len;
	char *s = admin_watch_summary(h, &len);

	assert_non_null(s);
	assert_int_equal(strlen(s), len);
	return s;
}

static char *cancellations(struct admin_watch *h, size_t limit)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	admin_watch_cancellations(h, limit, out);
	assert_int_equal(fclose(out), 0);
	return buf;
}

static int count(const char *s, const char *what)
{
	int n = 0;

	for (s = strstr(s, what); s; s = strstr(s + 1, what))
		n++;
	return n;
}

/* Before any source, and while nobody watches: nothing is asked. */
static void test_idle(void **state)
{
	struct admin_watch *h = *state;
	struct timespec tick = { 0, 300 * 1000000 };  /* more than a tick */
	char *s;

	admin_watch_fresh(h, 0, 5000);         /* no source: at once */
	s = summary(h);
	assert_non_null(strstr(s, "{\"complete\":false,\"workers\":[],"
				  "\"requests\":[],\"totals\":{"));
	free(s);
	attach(h);
	nanosleep(&tick, NULL);
	assert_int_equal(asked(), 0);
}

static void test_requests_oldest_first(void **state)
{
	struct admin_watch *h = *state;
	char *s;

	add_req(0, "young", 1000);
	add_req(1, "old", 9000000);
	add_req(1, "middle", 500000);
	attach(h);
	admin_watch_fresh(h, 0, 5000);
	assert_int_equal(asked(), 1);
	s = summary(h);
	assert_non_null(strstr(s, "\"complete\":true,\"workers\":[1,2]"));
	assert_true(strstr(s, "\"old\"") < strstr(s, "\"middle\""));
	assert_true(strstr(s, "\"middle\"") < strstr(s, "\"young\""));
	free(s);
}

/* A worker that cannot take the snapshot is not waited for: partial. */
static void test_busy_worker_partial(void **state)
{
	struct admin_watch *h = *state;
	int64_t t0;
	char *s;

	fake.busy[1] = 1;
	add_req(0, "r0", 1000);
	attach(h);
	t0 = ctx_now_ns();
	admin_watch_fresh(h, 0, 5000);
	assert_true(ctx_now_ns() - t0 < 250 * 1000000LL);
	s = summary(h);
	assert_non_null(strstr(s, "\"complete\":false,\"workers\":[1,null]"));
	free(s);
}

/* Cancellations merged across workers by time, newest first, each once;
 * the cursors bring only the new ones next time. */
static void test_history_merged_once(void **state)
{
	struct admin_watch *h = *state;
	char *s;

	cancel(0, "a", 1000);
	cancel(1, "b", 2000);
	cancel(0, "c", 3000);
	attach(h);
	admin_watch_fresh(h, 0, 5000);
	s = cancellations(h, 100);
	assert_true(strstr(s, "\"seq\":3,") && strstr(s, "\"id\":\"c\""));
	assert_true(strstr(s, "\"id\":\"c\"") < strstr(s, "\"id\":\"b\""));
	assert_true(strstr(s, "\"id\":\"b\"") < strstr(s, "\"id\":\"a\""));
	assert_true(strstr(s, "\"seq\":3") < strstr(s, "\"seq\":1"));
	free(s);
	cancel(1, "d", 4000);
	admin_watch_fresh(h, 0, 5000);
	s = cancellations(h, 100);
	assert_int_equal(count(s, "\"seq\":"), 4);
	assert_non_null(strstr(s, "{\"cancellations\":[{\"seq\":4,"));
	free(s);
	s = cancellations(h, 1);
	assert_int_equal(count(s, "\"seq\":"), 1);
	free(s);
	s = cancellations(h, 0);
	assert_string_equal(s, "{\"cancellations\":[]}");
	free(s);
}

/* At most ADMIN_WATCH_HISTORY kept, the newest. */
static void test_history_capped(void **state)
{
	struct admin_watch *h = *state;
	char id[16];
	int i, n = ADMIN_WATCH_HISTORY + 100;
	char *s;

	attach(h);
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "x%d", i);
		cancel(i % NWORKERS, id, 1000 + i);
		if (i % 200 == 199)     /* within each worker's ring */
			admin_watch_fresh(h, 0, 5000);
	}
	admin_watch_fresh(h, 0, 5000);
	s = cancellations(h, 100000);
	assert_int_equal(count(s, "\"seq\":"), ADMIN_WATCH_HISTORY);
	snprintf(id, sizeof(id), "\"x%d\"", n - 1);
	assert_non_null(strstr(s, id));
	assert_null(strstr(s, "\"x99\""));
	free(s);
}

struct got {
	int n;
	char last[512];
};

static void collect(void *arg, const char *json, size_t len)
{
	struct got *g = arg;

	g->n++;
	snprintf(g->last, sizeof(g->last), "%.*s", (int)len, json);
}

/* A stream gets each new cancellation once, not those recorded before it
 * opened, and the time it waits for is bounded. */
static void test_stream(void **state)
{
	struct admin_watch *h = *state;
	struct got g = { 0 };
	uint64_t cursor;
	int64_t t0;

	attach(h);
	cancel(0, "before", 1000);
	assert_int_equal(admin_watch_stream_open(h, &cursor), 0);
	assert_int_equal(admin_watch_streams(h), 1);
	cancel(1, "after", 5000);
	t0 = ctx_now_ns();
	while (g.n == 0 && ctx_now_ns() - t0 < 5000 * 1000000LL)
		assert_true(admin_watch_next(h, &cursor, 2000,
					     t0 + 5000 * 1000000LL,
					     collect, &g) >= 0);
	assert_int_equal(g.n, 1);
	assert_non_null(strstr(g.last, "\"id\":\"after\""));
	t0 = ctx_now_ns();
	assert_int_equal(admin_watch_next(h, &cursor, 2000,
					  t0 + 100 * 1000000LL, collect, &g), 0);
	assert_true(ctx_now_ns() - t0 >= 100 * 1000000LL);
	assert_int_equal(g.n, 1);
	admin_watch_stream_close(h);
	assert_int_equal(admin_watch_streams(h), 0);
}

static void test_streams_bounded(void **state)
{
	struct admin_watch *h = *state;
	uint64_t cursor;
	int i;

	for (i = 0; i < ADMIN_WATCH_STREAMS_MAX; i++)
		assert_int_equal(admin_watch_stream_open(h, &cursor), 0);
	assert_int_equal(admin_watch_stream_open(h, &cursor), -EBUSY);
	for (i = 0; i < ADMIN_WATCH_STREAMS_MAX; i++)
		admin_watch_stream_close(h);
	assert_int_equal(admin_watch_streams(h), 0);
}

static void *stop_later(void *arg)
{
	struct timespec t = { 0, 100 * 1000000 };

	nanosleep(&t, NULL);
	admin_watch_stop(arg);
	return NULL;
}

/* Stop wakes a waiting stream, and nothing waits after it. */
static void test_stop_wakes_streams(void **state)
{
	struct admin_watch *h = *state;
	struct got g = { 0 };
	uint64_t cursor;
	pthread_t t;
	int64_t t0 = ctx_now_ns();

	attach(h);
	assert_int_equal(admin_watch_stream_open(h, &cursor), 0);
	assert_int_equal(pthread_create(&t, NULL, stop_later, h), 0);
	assert_int_equal(admin_watch_next(h, &cursor, 0,
					  t0 + 10000 * 1000000LL, collect, &g),
			 -ESHUTDOWN);
	assert_true(ctx_now_ns() - t0 < 5000 * 1000000LL);
	pthread_join(t, NULL);
	admin_watch_stream_close(h);
	assert_int_equal(admin_watch_stream_open(h, &cursor), -ESHUTDOWN);
	t0 = ctx_now_ns();
	admin_watch_fresh(h, 0, 5000);
	assert_true(ctx_now_ns() - t0 < 1000 * 1000000LL);
}

/* Once detached, the source is never called again. */
static void test_detach(void **state)
{
	struct admin_watch *h = *state;
	struct timespec tick = { 0, 300 * 1000000 };
	uint64_t cursor;
	int n;

	attach(h);
	assert_int_equal(admin_watch_stream_open(h, &cursor), 0);
	admin_watch_fresh(h, 0, 5000);
	admin_watch_detach(h);
	n = asked();
	assert_true(n >= 1);
	nanosleep(&tick, NULL);
	assert_int_equal(asked(), n);
	admin_watch_stream_close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_oldest_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_worker_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_merged_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streams_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_wakes_streams, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
