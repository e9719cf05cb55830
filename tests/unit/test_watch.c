/* test_watch.c - unit tests for the cancellation rings and the reference-counted snapshots of the live view. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "watch.h"

/* The Makefile links this test with -Wl,--wrap=malloc,--wrap=realloc,
 * --wrap=free: watch.c's row allocations can be made to fail, and the
 * free of one pointer (a snapshot) seen. */
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
void __real_free(void *p);
void __wrap_free(void *p);

static long alloc_budget = -1;          /* successes left; -1: no limit */
static const void *watched;
static int watched_frees;

/* Only the thread running the tests changes the budget, while no worker
 * thread allocates. */
static bool alloc_fails(void)
{
	if (alloc_budget == 0)
		return true;
	if (alloc_budget > 0)
		alloc_budget--;
	return false;
}

void *__wrap_malloc(size_t n)
{
	return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
	return alloc_fails() ? NULL : __real_realloc(p, n);
}

void __wrap_free(void *p)
{
	if (p && p == watched)
		watched_frees++;
	__real_free(p);
}

static struct watch_req req_row(int worker, const char *id, int64_t age_us)
{
	struct watch_req r = { .worker = worker, .age_us = age_us,
			       .budget_left_us = -1, .phase = "awaiting_headers" };

	snprintf(r.id, sizeof(r.id), "%s", id);
	snprintf(r.method, sizeof(r.method), "GET");
	snprintf(r.path, sizeof(r.path), "/slow");
	return r;
}

/* n cancellations "c1".."cN" (worker and seq left to the ring). */
static void push_n(struct watch_ring *ring, int n)
{
	struct watch_cancel c = { .cause = "client_disconnect",
				  .phase = "awaiting_headers", .status = 499,
				  .propagation_us = -1 };
	int i;

	for (i = 1; i <= n; i++) {
		snprintf(c.id, sizeof(c.id), "c%d", i);
		c.worker = -7;            /* the ring's own number wins */
		c.seq = 999;
		watch_ring_push(ring, &c);
	}
}

/* The cancellations worker 0's ring of `pushed` shows for `since`:
 * checks they run without a gap from `first` to `pushed`. */
static void expect_since(int pushed, uint64_t since, uint64_t first)
{
	struct watch_ring *ring = watch_ring_new(0);
	struct watch_snap *s = watch_snap_new(1, &since);
	const struct watch_cancel *c;
	char id[40];
	size_t n, i;

	assert_non_null(ring);
	assert_non_null(s);
	push_n(ring, pushed);
	watch_snap_ref(s);
	watch_snap_add_ring(s, ring);
	watch_snap_done(s, 0);
	assert_true(watch_snap_wait(s, 0));
	c = watch_snap_cancels(s, &n);
	assert_int_equal(n, (uint64_t)pushed + 1 - first);
	for (i = 0; i < n; i++) {
		assert_int_equal(c[i].seq, first + i);
		assert_int_equal(c[i].worker, 0);
		snprintf(id, sizeof(id), "c%llu", (unsigned long long)(first + i));
		assert_string_equal(c[i].id, id);
	}
	assert_int_equal(watch_snap_lost(s), 0);
	watch_snap_unref(s);
	watch_ring_free(ring);
}

static void test_ring_keeps_the_last(void **state)
{
	(void)state;
	expect_since(0, 0, 1);
	expect_since(5, 0, 1);
	expect_since(WATCH_RING, 0, 1);
	/* wrapped: the oldest overwritten, the seqs still without a gap */
	expect_since(WATCH_RING + 10, 0, 11);
	expect_since(3 * WATCH_RING + 1, 0, 2 * WATCH_RING + 2);
	watch_ring_free(NULL);
}

static void test_since_filters(void **state)
{
	(void)state;
	expect_since(20, 15, 16);
	expect_since(20, 19, 20);
	expect_since(20, 20, 21);                 /* nothing new */
	expect_since(20, 100, 1);                 /* from before a restart */
	expect_since(300, 10, 300 - WATCH_RING + 1);  /* older than kept */
	expect_since(300, 299, 300);
	expect_since(300, 300 - WATCH_RING, 300 - WATCH_RING + 1);
}

static void test_rings_by_worker(void **state)
{
	struct watch_ring *r0 = watch_ring_new(0), *r1 = watch_ring_new(1);
	uint64_t since[2] = { 1, 0 };
	struct watch_snap *s = watch_snap_new(2, since);
	const struct watch_cancel *c;
	size_t n;

	(void)state;
	push_n(r0, 3);
	push_n(r1, 2);
	watch_snap_ref(s);
	watch_snap_ref(s);
	/* worker 1 answers first: the rows still come by worker */
	watch_snap_add_ring(s, r1);
	watch_snap_done(s, 1);
	watch_snap_add_ring(s, r0);
	watch_snap_done(s, 0);
	assert_true(watch_snap_wait(s, 1000));
	c = watch_snap_cancels(s, &n);
	assert_int_equal(n, 4);
	assert_int_equal(c[0].worker, 0);
	assert_int_equal(c[0].seq, 2);
	assert_int_equal(c[1].seq, 3);
	assert_int_equal(c[2].worker, 1);
	assert_int_equal(c[2].seq, 1);
	assert_string_equal(c[3].cause, "client_disconnect");
	assert_int_equal(c[3].status, 499);
	watch_snap_unref(s);
	watch_ring_free(r0);
	watch_ring_free(r1);
}

static void test_requests_oldest_first(void **state)
{
	struct watch_snap *s = watch_snap_new(2, NULL);
	struct watch_req r;
	const struct watch_req *v;
	size_t n, counts[2];

	(void)state;
	watch_snap_ref(s);
	watch_snap_ref(s);
	r = req_row(0, "a", 5);
	watch_snap_add_req(s, &r);
	r = req_row(0, "b", 50);
	watch_snap_add_req(s, &r);
	r = req_row(1, "c", 20);
	watch_snap_add_req(s, &r);
	r = req_row(1, "d", 100);
	watch_snap_add_req(s, &r);
	r = req_row(1, "e", 1);
	watch_snap_add_req(s, &r);
	v = watch_snap_reqs(s, &n);
	assert_int_equal(n, 0);                   /* nothing before the wait */
	watch_snap_done(s, 0);
	watch_snap_done(s, 1);
	assert_true(watch_snap_wait(s, 1000));
	v = watch_snap_reqs(s, &n);
	assert_int_equal(n, 5);
	assert_string_equal(v[0].id, "d");
	assert_string_equal(v[1].id, "b");
	assert_string_equal(v[2].id, "c");
	assert_string_equal(v[3].id, "a");
	assert_string_equal(v[4].id, "e");
	assert_string_equal(v[4].path, "/slow");
	watch_snap_counts(s, counts);
	assert_int_equal(counts[0], 2);
	assert_int_equal(counts[1], 3);
	assert_true(watch_snap_answered(s, 0));
	assert_true(watch_snap_answered(s, 1));
	assert_false(watch_snap_answered(s, 2));
	assert_int_equal(watch_snap_lost(s), 0);
	assert_true(watch_snap_wait(s, 0));       /* again: the same answer */
	watch_snap_unref(s);
}

/* A worker on a thread of its own: waits for `go` (bounded) unless it
 * is NULL, then adds `nreqs` requests and says it is done. */
struct worker_arg {
	struct watch_snap *s;
	int id, nreqs;
	sem_t *go;
	int go_rc;
};

static void *worker_thread(void *p)
{
	struct worker_arg *a = p;
	struct watch_ring *ring = watch_ring_new(a->id);
	struct watch_req r;
	struct timespec until;
	char id[40];
	int i;

	if (a->go) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 10;
		a->go_rc = sem_timedwait(a->go, &until);
	}
	push_n(ring, 3);
	for (i = 0; i < a->nreqs; i++) {
		snprintf(id, sizeof(id), "w%d-%d", a->id, i);
		r = req_row(a->id, id, i);
		watch_snap_add_req(a->s, &r);
	}
	watch_snap_add_ring(a->s, ring);
	watch_snap_done(a->s, a->id);
	watch_ring_free(ring);
	return NULL;
}

static void test_wait_wakes_on_done(void **state)
{
	struct watch_snap *s = watch_snap_new(1, NULL);
	struct worker_arg a = { .s = s, .id = 0, .nreqs = 3 };
	pthread_t t;
	size_t n;

	(void)state;
	watch_snap_ref(s);
	assert_int_equal(pthread_create(&t, NULL, worker_thread, &a), 0);
	assert_true(watch_snap_wait(s, 10000));
	pthread_join(t, NULL);
	watch_snap_reqs(s, &n);
	assert_int_equal(n, 3);
	watch_snap_cancels(s, &n);
	assert_int_equal(n, 3);
	watch_snap_unref(s);
}

/* Worker 1 answers after the admin side gave up and dropped its
 * reference: its rows go into memory that is still there (the sanitizers
 * would say otherwise), are not shown, and its done frees the snapshot. */
static void test_late_worker(void **state)
{
	struct watch_snap *s = watch_snap_new(2, NULL);
	sem_t go;
	struct worker_arg late = { .s = s, .id = 1, .nreqs = 1000, .go = &go };
	struct watch_req r = req_row(0, "early", 7);
	pthread_t t;
	size_t n, counts[2];

	(void)state;
	assert_int_equal(sem_init(&go, 0, 0), 0);
	watch_snap_ref(s);                        /* worker 0's */
	watch_snap_ref(s);                        /* worker 1's */
	assert_int_equal(pthread_create(&t, NULL, worker_thread, &late), 0);
	watch_snap_add_req(s, &r);
	watch_snap_done(s, 0);
	assert_false(watch_snap_wait(s, 50));
	watch_snap_reqs(s, &n);
	assert_int_equal(n, 1);
	watch_snap_counts(s, counts);
	assert_int_equal(counts[0], 1);
	assert_int_equal(counts[1], 0);
	assert_false(watch_snap_answered(s, 1));
	watched = s;
	watched_frees = 0;
	watch_snap_unref(s);                      /* the admin side is gone */
	assert_int_equal(watched_frees, 0);
	assert_int_equal(sem_post(&go), 0);
	pthread_join(t, NULL);
	assert_int_equal(late.go_rc, 0);
	assert_int_equal(watched_frees, 1);       /* the late done freed it */
	watched = NULL;
	sem_destroy(&go);
}

static void test_refcounts(void **state)
{
	struct watch_snap *s = watch_snap_new(1, NULL);
	struct watch_req r = req_row(0, "x", 1);

	(void)state;
	watched = s;
	watched_frees = 0;
	watch_snap_ref(s);
	watch_snap_ref(s);
	watch_snap_unref(s);
	watch_snap_unref(s);
	assert_int_equal(watched_frees, 0);
	watch_snap_ref(s);                        /* the worker's */
	watch_snap_unref(s);                      /* the admin side leaves */
	assert_int_equal(watched_frees, 0);
	watch_snap_add_req(s, &r);
	watch_snap_done(s, 0);                    /* the last reference */
	assert_int_equal(watched_frees, 1);
	watched = NULL;
	watch_snap_unref(NULL);
}

/* Nobody answers: the wait ends at its timeout; a done after it does not
 * change what the snapshot shows. */
static void test_wait_times_out(void **state)
{
	struct watch_snap *s = watch_snap_new(1, NULL);
	struct watch_req r = req_row(0, "late", 1);
	struct timespec t0, t1;
	int64_t ms;
	size_t n;

	(void)state;
	watch_snap_ref(s);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_false(watch_snap_wait(s, 100));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 99);
	assert_true(ms < 5000);
	watch_snap_add_req(s, &r);
	watch_snap_done(s, 0);
	assert_false(watch_snap_wait(s, 10000));  /* at once, as before */
	watch_snap_reqs(s, &n);
	assert_int_equal(n, 0);
	assert_false(watch_snap_answered(s, 0));
	watch_snap_unref(s);
}

/* A skipped worker is not waited for, and is not shown. */
static void test_skip(void **state)
{
	struct watch_snap *s = watch_snap_new(3, NULL);
	struct timespec t0, t1;
	size_t counts[3];

	(void)state;
	watch_snap_ref(s);                        /* worker 0's */
	watch_snap_skip(s, 1);                    /* could not be asked */
	watch_snap_skip(s, 1);                    /* twice: still one */
	watch_snap_done(s, 0);
	watch_snap_skip(s, 0);                    /* after done: a no-op */
	watch_snap_ref(s);
	watch_snap_skip(s, 2);                    /* a stopping worker: */
	watch_snap_unref(s);                      /* skip, then drop its ref */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_false(watch_snap_wait(s, 10000));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 5);
	assert_true(watch_snap_answered(s, 0));
	assert_false(watch_snap_answered(s, 1));
	assert_false(watch_snap_answered(s, 2));
	watch_snap_counts(s, counts);
	assert_int_equal(counts[1], 0);
	watch_snap_unref(s);
}

static void test_lost_rows(void **state)
{
	struct watch_snap *s = watch_snap_new(2, NULL);
	struct watch_ring *ring = watch_ring_new(0);
	struct watch_req r;
	const struct watch_req *v;
	size_t n, counts[2];
	int i;

	(void)state;
	watch_snap_ref(s);
	push_n(ring, 10);
	alloc_budget = 1;                       /* the first 64 rows only */
	for (i = 0; i < 100; i++) {
		r = req_row(0, "r", i);
		watch_snap_add_req(s, &r);
	}
	watch_snap_add_ring(s, ring);             /* 10 more lost */
	r = req_row(7, "nobody's", 1);
	watch_snap_add_req(s, &r);                /* 1 more lost */
	alloc_budget = -1;
	watch_snap_done(s, 0);
	watch_snap_skip(s, 1);
	assert_false(watch_snap_wait(s, 0));
	v = watch_snap_reqs(s, &n);
	assert_int_equal(n, 64);
	assert_int_equal(v[0].age_us, 63);
	watch_snap_cancels(s, &n);
	assert_int_equal(n, 0);
	watch_snap_counts(s, counts);
	assert_int_equal(counts[0], 100);         /* in flight, shown or not */
	assert_int_equal(watch_snap_lost(s), 36 + 10 + 1);
	watch_snap_unref(s);

	/* the wait's own copy fails: every row is lost */
	s = watch_snap_new(1, NULL);
	watch_snap_ref(s);
	for (i = 0; i < 3; i++) {
		r = req_row(0, "r", i);
		watch_snap_add_req(s, &r);
	}
	watch_snap_add_ring(s, ring);
	watch_snap_done(s, 0);
	alloc_budget = 0;
	assert_true(watch_snap_wait(s, 0));
	alloc_budget = -1;
	watch_snap_reqs(s, &n);
	assert_int_equal(n, 0);
	assert_int_equal(watch_snap_lost(s), 3 + 10);
	watch_snap_unref(s);
	watch_ring_free(ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_keeps_the_last),
		cmocka_unit_test(test_since_filters),
		cmocka_unit_test(test_rings_by_worker),
		cmocka_unit_test(test_requests_oldest_first),
		cmocka_unit_test(test_wait_wakes_on_done),
		cmocka_unit_test(test_late_worker),
		cmocka_unit_test(test_refcounts),
		cmocka_unit_test(test_wait_times_out),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_lost_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
