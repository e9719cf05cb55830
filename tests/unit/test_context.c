/* test_context.c - unit tests for the cancellation contexts (context.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "context.h"

/* ---- helpers ---- */

/* Records what a watch saw; seq orders calls across watches. */
struct probe {
	int calls;
	ctx_t *seen;
	ctx_cause_t cause;
	int seq;
};

static int seq_counter;

static void probe_cb(ctx_t *ctx, void *arg)
{
	struct probe *p = arg;

	p->calls++;
	p->seen = ctx;
	p->cause = ctx_cause(ctx);
	p->seq = ++seq_counter;
}

static ctx_t *new_root(void)
{
	ctx_t *root = ctx_background_new();

	assert_non_null(root);
	return root;
}

static ctx_t *new_child(ctx_t *parent)
{
	ctx_t *c = ctx_with_cancel(parent);

	assert_non_null(c);
	return c;
}

static ctx_t *new_deadline(ctx_t *parent, int64_t d, ctx_cause_t cause)
{
	ctx_t *c = ctx_with_deadline(parent, d, cause);

	assert_non_null(c);
	return c;
}

/* ---- names, background, refs ---- */

static void test_cause_names(void **state)
{
	(void)state;
	assert_string_equal(ctx_cause_name(CTX_CAUSE_NONE), "none");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_COMPLETED), "completed");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_CLIENT_DISCONNECT),
			    "client_disconnect");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_DEADLINE_EXCEEDED),
			    "deadline_exceeded");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_CONNECT_TIMEOUT),
			    "connect_timeout");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_HEADER_TIMEOUT),
			    "header_timeout");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_IDLE_TIMEOUT),
			    "idle_timeout");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_UPSTREAM_ERROR),
			    "upstream_error");
	assert_string_equal(ctx_cause_name(CTX_CAUSE_SHUTDOWN), "shutdown");
	assert_string_equal(ctx_cause_name(CTX_CAUSE__COUNT), "unknown");
	assert_string_equal(ctx_cause_name((ctx_cause_t)-1), "unknown");
}

static void test_background_never_cancelled_by_itself(void **state)
{
	ctx_t *root = new_root();

	(void)state;
	assert_false(ctx_is_cancelled(root));
	assert_int_equal(ctx_cause(root), CTX_CAUSE_NONE);
	assert_true(ctx_deadline(root) == CTX_NO_DEADLINE);
	assert_true(ctx_remaining_ns(root, 0) == CTX_NO_DEADLINE);
	assert_true(ctx_cancelled_at(root) == 0);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	assert_int_equal(ctx_expire(root, INT64_MAX - 1), 0);
	assert_int_equal(ctx_expire(root, INT64_MAX), 0);
	assert_false(ctx_is_cancelled(root));
	assert_int_equal(ctx_cancel(root, CTX_CAUSE_SHUTDOWN), 0);
	assert_int_equal(ctx_cause(root), CTX_CAUSE_SHUTDOWN);
	ctx_unref(root);
}

static void test_ref_unref(void **state)
{
	ctx_t *root = new_root();
	ctx_t *c = new_child(root);

	(void)state;
	assert_ptr_equal(ctx_ref(c), c);
	assert_null(ctx_ref(NULL));
	ctx_unref(NULL);
	ctx_unref(c);
	/* Still referenced once: usable. */
	assert_false(ctx_is_cancelled(c));
	assert_int_equal(ctx_cancel(c, CTX_CAUSE_COMPLETED), 0);
	ctx_unref(c);
	ctx_unref(root);
}

static void test_null_parent(void **state)
{
	(void)state;
	errno = 0;
	assert_null(ctx_with_cancel(NULL));
	assert_int_equal(errno, EINVAL);
	assert_null(ctx_with_deadline(NULL, 5, CTX_CAUSE_DEADLINE_EXCEEDED));
	assert_null(ctx_with_timeout(NULL, 5));
}

/* ---- cancellation ---- */

static void test_cascade_parent_cause(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(a);
	ctx_t *c = new_child(b);
	ctx_t *b2 = new_child(a);

	(void)state;
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_CLIENT_DISCONNECT), 0);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_CLIENT_DISCONNECT);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_CLIENT_DISCONNECT);
	assert_int_equal(ctx_cause(c), CTX_CAUSE_CLIENT_DISCONNECT);
	assert_int_equal(ctx_cause(b2), CTX_CAUSE_CLIENT_DISCONNECT);
	assert_false(ctx_is_cancelled(root));
	ctx_unref(c);
	ctx_unref(b);
	ctx_unref(b2);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_cancel_never_upward(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(a);
	ctx_t *sib = new_child(a);

	(void)state;
	assert_int_equal(ctx_cancel(b, CTX_CAUSE_UPSTREAM_ERROR), 0);
	assert_true(ctx_is_cancelled(b));
	assert_false(ctx_is_cancelled(a));
	assert_false(ctx_is_cancelled(sib));
	assert_false(ctx_is_cancelled(root));
	ctx_unref(b);
	ctx_unref(sib);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_first_cause_wins(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(a);

	(void)state;
	assert_int_equal(ctx_cancel(b, CTX_CAUSE_UPSTREAM_ERROR), 0);
	assert_int_equal(ctx_cancel(b, CTX_CAUSE_SHUTDOWN), -EALREADY);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), -EALREADY);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_COMPLETED);
	/* The parent's later cancellation does not overwrite the child's. */
	assert_int_equal(ctx_cause(b), CTX_CAUSE_UPSTREAM_ERROR);
	ctx_unref(b);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_cancel_invalid(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);

	(void)state;
	assert_int_equal(ctx_cancel(NULL, CTX_CAUSE_COMPLETED), -EINVAL);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_NONE), -EINVAL);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE__COUNT), -EINVAL);
	assert_int_equal(ctx_cancel(a, (ctx_cause_t)-3), -EINVAL);
	assert_false(ctx_is_cancelled(a));
	errno = 0;
	assert_null(ctx_with_deadline(a, 10, CTX_CAUSE_NONE));
	assert_int_equal(errno, EINVAL);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_child_of_cancelled_born_cancelled(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b, *d;
	int64_t before;

	(void)state;
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_IDLE_TIMEOUT), 0);
	before = ctx_now_ns();
	b = new_child(a);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_IDLE_TIMEOUT);
	assert_true(ctx_cancelled_at(b) >= before);
	assert_true(ctx_cancelled_at(b) <= ctx_now_ns());
	d = new_deadline(a, 100, CTX_CAUSE_CONNECT_TIMEOUT);
	assert_int_equal(ctx_cause(d), CTX_CAUSE_IDLE_TIMEOUT);
	assert_true(ctx_deadline(d) == 100);
	/* Born cancelled: no deadline left to track. */
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	assert_int_equal(ctx_expire(root, 1000), 0);
	assert_int_equal(ctx_cause(d), CTX_CAUSE_IDLE_TIMEOUT);
	ctx_unref(b);
	ctx_unref(d);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_cancel_root_cascades(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 100, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *b = new_deadline(a, 50, CTX_CAUSE_HEADER_TIMEOUT);

	(void)state;
	assert_int_equal(ctx_cancel(root, CTX_CAUSE_SHUTDOWN), 0);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_SHUTDOWN);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_SHUTDOWN);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	assert_int_equal(ctx_expire(root, 1000), 0);
	ctx_unref(root);
	ctx_unref(a);
	ctx_unref(b);
}

static void test_cancelled_at(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	int64_t before, after;

	(void)state;
	assert_true(ctx_cancelled_at(a) == 0);
	before = ctx_now_ns();
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	after = ctx_now_ns();
	assert_true(ctx_cancelled_at(a) >= before);
	assert_true(ctx_cancelled_at(a) <= after);
	assert_true(before > 0);
	ctx_unref(a);
	ctx_unref(root);
}

/* ---- deadlines ---- */

static void test_deadline_clamped_to_parent(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 1000, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *b = new_deadline(a, 5000, CTX_CAUSE_CONNECT_TIMEOUT);
	ctx_t *eq = new_deadline(a, 1000, CTX_CAUSE_HEADER_TIMEOUT);
	ctx_t *none = new_child(b);

	(void)state;
	assert_true(ctx_deadline(b) == 1000);
	assert_true(ctx_deadline(eq) == 1000);
	assert_true(ctx_deadline(none) == 1000);
	assert_true(ctx_next_deadline(root) == 1000);
	/* The inherited deadline expires with the ancestor's cause. */
	assert_int_equal(ctx_expire(root, 999), 0);
	assert_int_equal(ctx_expire(root, 1000), 4);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_int_equal(ctx_cause(eq), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_int_equal(ctx_cause(none), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	ctx_unref(none);
	ctx_unref(eq);
	ctx_unref(b);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_earlier_child_deadline_kept(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 5000, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *b = new_deadline(a, 1000, CTX_CAUSE_CONNECT_TIMEOUT);
	ctx_t *c = new_child(b);

	(void)state;
	assert_true(ctx_deadline(a) == 5000);
	assert_true(ctx_deadline(b) == 1000);
	assert_true(ctx_deadline(c) == 1000);
	assert_true(ctx_next_deadline(root) == 1000);
	assert_int_equal(ctx_expire(root, 1000), 2);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_CONNECT_TIMEOUT);
	assert_int_equal(ctx_cause(c), CTX_CAUSE_CONNECT_TIMEOUT);
	assert_false(ctx_is_cancelled(a));
	assert_true(ctx_next_deadline(root) == 5000);
	ctx_unref(c);
	ctx_unref(b);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_next_deadline_updates(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 300, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *b = new_deadline(root, 100, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *c = new_deadline(root, 200, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *d = new_deadline(a, 150, CTX_CAUSE_DEADLINE_EXCEEDED);

	(void)state;
	assert_true(ctx_next_deadline(root) == 100);
	assert_int_equal(ctx_cancel(b, CTX_CAUSE_COMPLETED), 0);
	assert_true(ctx_next_deadline(root) == 150);
	/* Dropping the last reference of a live context untracks it. */
	ctx_unref(d);
	assert_true(ctx_next_deadline(root) == 200);
	ctx_unref(c);
	assert_true(ctx_next_deadline(root) == 300);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	ctx_unref(a);
	ctx_unref(b);
	ctx_unref(root);
}

static void test_expire_causes_and_count(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 100, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *b = new_deadline(root, 200, CTX_CAUSE_CONNECT_TIMEOUT);
	ctx_t *c = new_deadline(root, 300, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *bd = new_child(b);
	ctx_t *bdd = new_child(bd);
	ctx_t *nod = new_child(root);

	(void)state;
	assert_int_equal(ctx_expire(root, 99), 0);
	assert_false(ctx_is_cancelled(a));
	assert_int_equal(ctx_expire(root, 100), 1);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_false(ctx_is_cancelled(b));
	assert_int_equal(ctx_expire(root, 100), 0);
	assert_int_equal(ctx_expire(root, 250), 3);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_CONNECT_TIMEOUT);
	assert_int_equal(ctx_cause(bd), CTX_CAUSE_CONNECT_TIMEOUT);
	assert_int_equal(ctx_cause(bdd), CTX_CAUSE_CONNECT_TIMEOUT);
	assert_false(ctx_is_cancelled(c));
	assert_true(ctx_next_deadline(root) == 300);
	assert_int_equal(ctx_expire(root, INT64_MAX - 1), 1);
	assert_int_equal(ctx_cause(c), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_false(ctx_is_cancelled(nod));
	assert_false(ctx_is_cancelled(root));
	assert_int_equal(ctx_expire(NULL, 5), -EINVAL);
	ctx_unref(bdd);
	ctx_unref(bd);
	ctx_unref(nod);
	ctx_unref(a);
	ctx_unref(b);
	ctx_unref(c);
	ctx_unref(root);
}

static void test_expire_many_order(void **state)
{
	enum { N = 64 };
	ctx_t *root = new_root();
	ctx_t *c[N];
	int i;

	(void)state;
	/* A scrambled insertion order exercises the heap. */
	for (i = 0; i < N; i++)
		c[i] = new_deadline(root, 1000 + (i * 37) % N,
				    CTX_CAUSE_IDLE_TIMEOUT);
	for (i = 0; i < N; i++) {
		assert_true(ctx_next_deadline(root) == 1000 + i);
		assert_int_equal(ctx_expire(root, 1000 + i), 1);
	}
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	for (i = 0; i < N; i++) {
		assert_int_equal(ctx_cause(c[i]), CTX_CAUSE_IDLE_TIMEOUT);
		ctx_unref(c[i]);
	}
	ctx_unref(root);
}

static void test_remaining_ns(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 1000, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *n = new_child(root);

	(void)state;
	assert_true(ctx_remaining_ns(a, 400) == 600);
	assert_true(ctx_remaining_ns(a, 1000) == 0);
	assert_true(ctx_remaining_ns(a, 2000) == 0);
	assert_true(ctx_remaining_ns(n, 2000) == CTX_NO_DEADLINE);
	assert_true(ctx_remaining_ns(a, INT64_MIN) < CTX_NO_DEADLINE);
	assert_true(ctx_remaining_ns(a, INT64_MIN) > 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_true(ctx_remaining_ns(a, 400) == 0);
	ctx_unref(a);
	ctx_unref(n);
	ctx_unref(root);
}

static void test_with_timeout(void **state)
{
	ctx_t *root = new_root();
	int64_t before = ctx_now_ns();
	ctx_t *a = ctx_with_timeout(root, 1000000000);
	int64_t after = ctx_now_ns();
	ctx_t *big = ctx_with_timeout(root, INT64_MAX);

	(void)state;
	assert_non_null(a);
	assert_non_null(big);
	assert_true(ctx_deadline(a) >= before + 1000000000);
	assert_true(ctx_deadline(a) <= after + 1000000000);
	assert_true(ctx_deadline(big) == CTX_NO_DEADLINE);
	assert_true(ctx_next_deadline(root) == ctx_deadline(a));
	assert_int_equal(ctx_expire(root, ctx_deadline(a)), 1);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_false(ctx_is_cancelled(big));
	ctx_unref(a);
	ctx_unref(big);
	ctx_unref(root);
}

/* ---- watches ---- */

static void test_watch_runs_once(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_watch_t w = { 0 };
	struct probe p = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(a, &w, probe_cb, &p), 0);
	assert_int_equal(p.calls, 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_HEADER_TIMEOUT), 0);
	assert_int_equal(p.calls, 1);
	assert_ptr_equal(p.seen, a);
	/* The cause is already visible inside the callback. */
	assert_int_equal(p.cause, CTX_CAUSE_HEADER_TIMEOUT);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_SHUTDOWN), -EALREADY);
	assert_int_equal(ctx_cancel(root, CTX_CAUSE_SHUTDOWN), 0);
	assert_int_equal(p.calls, 1);
	assert_false(ctx_unwatch(&w));
	ctx_unref(a);
	ctx_unref(root);
}

static void test_watch_after_cancel(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_watch_t w = { 0 };
	struct probe p = { 0 };

	(void)state;
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(ctx_watch(a, &w, probe_cb, &p), -ECANCELED);
	assert_int_equal(p.calls, 0);
	assert_false(ctx_unwatch(&w));
	assert_int_equal(ctx_watch(NULL, &w, probe_cb, &p), -EINVAL);
	assert_int_equal(ctx_watch(root, NULL, probe_cb, &p), -EINVAL);
	assert_int_equal(ctx_watch(root, &w, NULL, &p), -EINVAL);
	ctx_unref(a);
	ctx_unref(root);
}

static void test_unwatch(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_watch_t w = { 0 }, kept = { 0 };
	struct probe p = { 0 }, pk = { 0 };

	(void)state;
	assert_false(ctx_unwatch(&w));
	assert_false(ctx_unwatch(NULL));
	assert_int_equal(ctx_watch(a, &w, probe_cb, &p), 0);
	assert_int_equal(ctx_watch(a, &kept, probe_cb, &pk), 0);
	assert_true(ctx_unwatch(&w));
	assert_false(ctx_unwatch(&w));
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(p.calls, 0);
	assert_int_equal(pk.calls, 1);
	assert_false(ctx_unwatch(&kept));
	ctx_unref(a);
	ctx_unref(root);
}

static void test_watch_ebusy(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(root);
	ctx_watch_t w = { 0 };
	struct probe p = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(a, &w, probe_cb, &p), 0);
	assert_int_equal(ctx_watch(b, &w, probe_cb, &p), -EBUSY);
	assert_int_equal(ctx_watch(a, &w, probe_cb, &p), -EBUSY);
	assert_true(ctx_unwatch(&w));
	assert_int_equal(ctx_watch(b, &w, probe_cb, &p), 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(p.calls, 0);
	assert_int_equal(ctx_cancel(b, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(p.calls, 1);
	assert_ptr_equal(p.seen, b);
	ctx_unref(a);
	ctx_unref(b);
	ctx_unref(root);
}

static void test_watch_parent_first(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(a);
	ctx_t *c = new_child(b);
	ctx_watch_t wa = { 0 }, wb = { 0 }, wc = { 0 };
	struct probe pa = { 0 }, pb = { 0 }, pc = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(c, &wc, probe_cb, &pc), 0);
	assert_int_equal(ctx_watch(b, &wb, probe_cb, &pb), 0);
	assert_int_equal(ctx_watch(a, &wa, probe_cb, &pa), 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_CLIENT_DISCONNECT), 0);
	assert_int_equal(pa.calls + pb.calls + pc.calls, 3);
	assert_true(pa.seq < pb.seq);
	assert_true(pb.seq < pc.seq);
	assert_int_equal(pc.cause, CTX_CAUSE_CLIENT_DISCONNECT);
	ctx_unref(c);
	ctx_unref(b);
	ctx_unref(a);
	ctx_unref(root);
}

/* A watch may move itself elsewhere: it is unregistered before it runs. */
struct rewatch {
	ctx_watch_t w;
	ctx_t *next;
	bool unwatch_ret;
	int watch_ret;
	struct probe p;
};

static void rewatch_cb(ctx_t *ctx, void *arg)
{
	struct rewatch *r = arg;

	(void)ctx;
	r->unwatch_ret = ctx_unwatch(&r->w);
	r->watch_ret = ctx_watch(r->next, &r->w, probe_cb, &r->p);
}

static void test_watch_reregisters_itself(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(root);
	struct rewatch r = { .next = b };

	(void)state;
	assert_int_equal(ctx_watch(a, &r.w, rewatch_cb, &r), 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_COMPLETED), 0);
	assert_false(r.unwatch_ret);
	assert_int_equal(r.watch_ret, 0);
	assert_int_equal(ctx_cancel(b, CTX_CAUSE_SHUTDOWN), 0);
	assert_int_equal(r.p.calls, 1);
	assert_int_equal(r.p.cause, CTX_CAUSE_SHUTDOWN);
	ctx_unref(a);
	ctx_unref(b);
	ctx_unref(root);
}

/* ---- re-entrant callbacks ---- */

struct canceller {
	ctx_t *target;
	ctx_cause_t cause;
	int ret;
};

static void cancel_cb(ctx_t *ctx, void *arg)
{
	struct canceller *k = arg;

	(void)ctx;
	k->ret = ctx_cancel(k->target, k->cause);
}

static void test_cb_cancels_sibling(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_child(root);
	ctx_t *a = new_child(p);
	ctx_t *b = new_child(p);
	ctx_t *bc = new_child(b);
	ctx_watch_t wa = { 0 }, wb = { 0 }, wbc = { 0 };
	struct canceller k = { .target = b, .cause = CTX_CAUSE_UPSTREAM_ERROR };
	struct probe pb = { 0 }, pbc = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(a, &wa, cancel_cb, &k), 0);
	assert_int_equal(ctx_watch(b, &wb, probe_cb, &pb), 0);
	assert_int_equal(ctx_watch(bc, &wbc, probe_cb, &pbc), 0);
	/* Sibling order is not part of the contract: if the cascade reaches
	 * a first, its watch cancels b its own way, else b is already done. */
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(ctx_cause(a), CTX_CAUSE_COMPLETED);
	if (k.ret == 0) {
		assert_int_equal(ctx_cause(b), CTX_CAUSE_UPSTREAM_ERROR);
	} else {
		assert_int_equal(k.ret, -EALREADY);
		assert_int_equal(ctx_cause(b), CTX_CAUSE_COMPLETED);
	}
	assert_int_equal(ctx_cause(bc), ctx_cause(b));
	assert_int_equal(pb.calls, 1);
	assert_int_equal(pbc.calls, 1);
	assert_false(ctx_is_cancelled(root));
	ctx_unref(bc);
	ctx_unref(b);
	ctx_unref(a);
	ctx_unref(p);
	ctx_unref(root);
}

static void test_cb_cancels_sibling_directly(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_child(root);
	ctx_t *b = new_child(root);
	ctx_watch_t wa = { 0 }, wb = { 0 };
	struct canceller k = { .target = b, .cause = CTX_CAUSE_SHUTDOWN };
	struct probe pb = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(a, &wa, cancel_cb, &k), 0);
	assert_int_equal(ctx_watch(b, &wb, probe_cb, &pb), 0);
	assert_int_equal(ctx_cancel(a, CTX_CAUSE_CLIENT_DISCONNECT), 0);
	assert_int_equal(k.ret, 0);
	assert_int_equal(ctx_cause(b), CTX_CAUSE_SHUTDOWN);
	assert_int_equal(pb.calls, 1);
	assert_false(ctx_is_cancelled(root));
	ctx_unref(a);
	ctx_unref(b);
	ctx_unref(root);
}

struct unreffer {
	ctx_t *victim;
};

static void unref_cb(ctx_t *ctx, void *arg)
{
	struct unreffer *u = arg;

	(void)ctx;
	ctx_unref(u->victim);
	u->victim = NULL;
}

static void test_cb_unrefs_last_ref_of_child(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_deadline(root, 100, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_t *c1 = new_deadline(p, 50, CTX_CAUSE_CONNECT_TIMEOUT);
	ctx_t *c2 = new_child(p);
	ctx_t *c3 = new_child(p);
	ctx_watch_t wp = { 0 }, w2 = { 0 }, w3 = { 0 };
	struct unreffer u = { .victim = c2 };
	struct probe p2 = { 0 }, p3 = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(p, &wp, unref_cb, &u), 0);
	assert_int_equal(ctx_watch(c2, &w2, probe_cb, &p2), 0);
	assert_int_equal(ctx_watch(c3, &w3, probe_cb, &p3), 0);
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_CLIENT_DISCONNECT), 0);
	assert_null(u.victim);
	assert_int_equal(p2.calls, 0);
	assert_int_equal(p3.calls, 1);
	assert_int_equal(ctx_cause(c1), CTX_CAUSE_CLIENT_DISCONNECT);
	assert_int_equal(ctx_cause(c3), CTX_CAUSE_CLIENT_DISCONNECT);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	ctx_unref(c1);
	ctx_unref(c3);
	ctx_unref(p);
	ctx_unref(root);
}

/* The callback of a cascaded child drops the last user reference of the
 * very node being cancelled, and of the cancelled parent. */
static void test_cb_unrefs_own_ctx(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_child(root);
	ctx_t *c = new_child(p);
	ctx_t *g = new_child(c);
	ctx_watch_t wc = { 0 }, wp = { 0 }, wg = { 0 };
	struct unreffer uc = { .victim = c }, up = { .victim = p };
	struct probe pg = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(c, &wc, unref_cb, &uc), 0);
	assert_int_equal(ctx_watch(p, &wp, unref_cb, &up), 0);
	assert_int_equal(ctx_watch(g, &wg, probe_cb, &pg), 0);
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(pg.calls, 1);
	assert_int_equal(ctx_cause(g), CTX_CAUSE_COMPLETED);
	ctx_unref(g);
	ctx_unref(root);
}

struct creator {
	ctx_t *child;
	ctx_t *dchild;
};

static void create_cb(ctx_t *ctx, void *arg)
{
	struct creator *k = arg;

	k->child = ctx_with_cancel(ctx);
	k->dchild = ctx_with_deadline(ctx, 1, CTX_CAUSE_CONNECT_TIMEOUT);
}

static void test_cb_creates_child(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_child(root);
	ctx_watch_t w = { 0 };
	struct creator k = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(p, &w, create_cb, &k), 0);
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_IDLE_TIMEOUT), 0);
	assert_non_null(k.child);
	assert_non_null(k.dchild);
	assert_int_equal(ctx_cause(k.child), CTX_CAUSE_IDLE_TIMEOUT);
	assert_int_equal(ctx_cause(k.dchild), CTX_CAUSE_IDLE_TIMEOUT);
	assert_true(ctx_cancelled_at(k.child) != 0);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	ctx_unref(p);
	ctx_unref(k.child);
	ctx_unref(k.dchild);
	ctx_unref(root);
}

struct adder {
	ctx_watch_t w;
	struct probe p;
	int ret;
};

static void add_cb(ctx_t *ctx, void *arg)
{
	struct adder *k = arg;

	k->ret = ctx_watch(ctx, &k->w, probe_cb, &k->p);
}

static void test_cb_adds_watch_to_same_ctx(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_child(root);
	ctx_watch_t w = { 0 };
	struct adder k = { .ret = 1 };

	(void)state;
	assert_int_equal(ctx_watch(p, &w, add_cb, &k), 0);
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(k.ret, -ECANCELED);
	assert_int_equal(k.p.calls, 0);
	assert_false(ctx_unwatch(&k.w));
	ctx_unref(p);
	ctx_unref(root);
}

struct unwatcher {
	ctx_watch_t w;
	ctx_watch_t *other;
	bool ret;
	int calls;
};

static void unwatch_cb(ctx_t *ctx, void *arg)
{
	struct unwatcher *k = arg;

	(void)ctx;
	k->calls++;
	k->ret = ctx_unwatch(k->other);
}

static void test_cb_unwatches_other(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_child(root);
	struct unwatcher x = { 0 }, y = { 0 };

	(void)state;
	x.other = &y.w;
	y.other = &x.w;
	assert_int_equal(ctx_watch(p, &x.w, unwatch_cb, &x), 0);
	assert_int_equal(ctx_watch(p, &y.w, unwatch_cb, &y), 0);
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_COMPLETED), 0);
	/* Whichever runs first removes the other, which never runs. */
	assert_int_equal(x.calls + y.calls, 1);
	assert_true(x.calls ? x.ret : y.ret);
	assert_false(ctx_unwatch(&x.w));
	assert_false(ctx_unwatch(&y.w));
	ctx_unref(p);
	ctx_unref(root);
}

/* A callback during ctx_expire adds an already expired context. */
struct late {
	ctx_t *parent;
	ctx_t *made;
};

static void late_cb(ctx_t *ctx, void *arg)
{
	struct late *k = arg;

	(void)ctx;
	k->made = ctx_with_deadline(k->parent, 10, CTX_CAUSE_HEADER_TIMEOUT);
}

static void test_expire_cb_adds_expired(void **state)
{
	ctx_t *root = new_root();
	ctx_t *a = new_deadline(root, 100, CTX_CAUSE_DEADLINE_EXCEEDED);
	ctx_watch_t w = { 0 };
	struct late k = { .parent = root };

	(void)state;
	assert_int_equal(ctx_watch(a, &w, late_cb, &k), 0);
	assert_int_equal(ctx_expire(root, 200), 2);
	assert_non_null(k.made);
	assert_int_equal(ctx_cause(k.made), CTX_CAUSE_HEADER_TIMEOUT);
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	ctx_unref(k.made);
	ctx_unref(a);
	ctx_unref(root);
}

/* ---- lifetime ---- */

static void test_unref_live_child_detaches(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_child(root);
	ctx_t *c = new_deadline(p, 100, CTX_CAUSE_CONNECT_TIMEOUT);
	ctx_t *keep = new_child(p);
	ctx_watch_t w = { 0 };
	struct probe pr = { 0 };

	(void)state;
	assert_int_equal(ctx_watch(c, &w, probe_cb, &pr), 0);
	ctx_unref(c);
	/* The watch was unregistered without running. */
	assert_false(ctx_unwatch(&w));
	assert_true(ctx_next_deadline(root) == CTX_NO_DEADLINE);
	assert_int_equal(ctx_cancel(p, CTX_CAUSE_COMPLETED), 0);
	assert_int_equal(pr.calls, 0);
	assert_int_equal(ctx_cause(keep), CTX_CAUSE_COMPLETED);
	ctx_unref(keep);
	ctx_unref(p);
	ctx_unref(root);
}

static void test_parent_kept_alive_by_child(void **state)
{
	ctx_t *root = new_root();
	ctx_t *p = new_deadline(root, 100, CTX_CAUSE_IDLE_TIMEOUT);
	ctx_t *c = new_child(p);
	ctx_t *g = new_child(c);
	ctx_watch_t w = { 0 };
	struct probe pr = { 0 };

	(void)state;
	ctx_unref(p);
	ctx_unref(c);
	ctx_unref(root);
	/* Still live and tracked: only the caller's references went away. */
	assert_int_equal(ctx_watch(g, &w, probe_cb, &pr), 0);
	assert_true(ctx_deadline(g) == 100);
	assert_false(ctx_is_cancelled(g));
	/* root cannot be named any more; reach the heap through g. */
	assert_true(ctx_next_deadline(g) == 100);
	assert_int_equal(ctx_expire(g, 100), 3);
	assert_int_equal(pr.calls, 1);
	assert_int_equal(ctx_cause(g), CTX_CAUSE_IDLE_TIMEOUT);
	ctx_unref(g);
}

/* ---- randomized stress against a reference model ---- */

#define ST_OPS 20000
#define ST_POOL 200
#define ST_NODES (ST_OPS + 1)
#define ST_WATCHES 2

struct mnode;

struct mwatch {
	ctx_watch_t w;
	struct mnode *owner;
	int calls;
	int want_calls;
	bool want_registered;
};

struct mnode {
	ctx_t *ctx;             /* valid while alive */
	int parent;             /* model index, -1 for the root */
	int refs;               /* pool reference + alive children */
	int alive_pos;          /* index in st.alive while alive */
	bool alive, cancelled, own;
	ctx_cause_t cause, expiry;
	int64_t deadline;
	struct mwatch mw[ST_WATCHES];
};

struct stress {
	struct mnode *n;
	int count;
	int *alive;
	int nalive;
	int pool[ST_POOL];
	uint64_t rng;
	int64_t now;
};

static uint64_t st_rand(struct stress *st)
{
	st->rng ^= st->rng << 13;
	st->rng ^= st->rng >> 7;
	st->rng ^= st->rng << 17;
	return st->rng;
}

static int st_pick(struct stress *st, int n)
{
	return (int)(st_rand(st) % (uint64_t)n);
}

static void st_watch_cb(ctx_t *ctx, void *arg)
{
	struct mwatch *mw = arg;

	mw->calls++;
	assert_ptr_equal(ctx, mw->owner->ctx);
	assert_true(ctx_is_cancelled(ctx));
}

static int st_add(struct stress *st, ctx_t *ctx, int parent)
{
	int i = st->count++;
	struct mnode *m = &st->n[i];
	int k;

	assert_true(i < ST_NODES);
	m->ctx = ctx;
	m->parent = parent;
	m->refs = 1;
	m->alive = true;
	m->alive_pos = st->nalive;
	st->alive[st->nalive++] = i;
	for (k = 0; k < ST_WATCHES; k++)
		m->mw[k].owner = m;
	return i;
}

static bool st_is_ancestor(struct stress *st, int anc, int i)
{
	for (i = st->n[i].parent; i >= 0; i = st->n[i].parent)
		if (i == anc)
			return true;
	return false;
}

static void st_mark_cancelled(struct mnode *m, ctx_cause_t cause)
{
	int k;

	m->cancelled = true;
	m->cause = cause;
	for (k = 0; k < ST_WATCHES; k++) {
		if (m->mw[k].want_registered) {
			m->mw[k].want_registered = false;
			m->mw[k].want_calls++;
		}
	}
}

/* Model of a cancellation: i and its live descendants.  Returns count. */
static int st_model_cancel(struct stress *st, int i, ctx_cause_t cause)
{
	int n = 1, a;

	st_mark_cancelled(&st->n[i], cause);
	for (a = 0; a < st->nalive; a++) {
		int j = st->alive[a];

		if (st->n[j].cancelled || !st_is_ancestor(st, i, j))
			continue;
		st_mark_cancelled(&st->n[j], cause);
		n++;
	}
	return n;
}

static void st_model_unref(struct stress *st, int i)
{
	while (i >= 0) {
		struct mnode *m = &st->n[i];
		int last, k;

		m->refs--;
		if (m->refs > 0)
			return;
		st->nalive--;
		last = st->alive[st->nalive];
		st->alive[m->alive_pos] = last;
		st->n[last].alive_pos = m->alive_pos;
		m->alive = false;
		m->ctx = NULL;
		for (k = 0; k < ST_WATCHES; k++)
			m->mw[k].want_registered = false;
		i = m->parent;
	}
}

static int st_model_expire(struct stress *st, int64_t now)
{
	int n = 0;

	for (;;) {
		int best = -1, a;

		for (a = 0; a < st->nalive; a++) {
			struct mnode *m = &st->n[st->alive[a]];

			if (m->cancelled || !m->own || m->deadline > now)
				continue;
			if (best < 0 || m->deadline < st->n[best].deadline)
				best = st->alive[a];
		}
		if (best < 0)
			return n;
		n += st_model_cancel(st, best, st->n[best].expiry);
	}
}

static void st_check_node(struct stress *st, struct mnode *m)
{
	int k;

	assert_int_equal(ctx_is_cancelled(m->ctx), m->cancelled);
	assert_int_equal(ctx_cause(m->ctx), m->cause);
	assert_true(ctx_deadline(m->ctx) == m->deadline);
	assert_int_equal(ctx_cancelled_at(m->ctx) != 0, m->cancelled);
	if (m->parent >= 0 && ctx_is_cancelled(st->n[m->parent].ctx))
		assert_true(ctx_is_cancelled(m->ctx));
	for (k = 0; k < ST_WATCHES; k++) {
		struct mwatch *mw = &m->mw[k];

		assert_true(mw->calls <= 1);
		assert_int_equal(mw->calls, mw->want_calls);
		assert_int_equal(mw->w.ctx != NULL, mw->want_registered);
	}
}

static void st_check(struct stress *st)
{
	int64_t min = CTX_NO_DEADLINE;
	int a;

	for (a = 0; a < st->nalive; a++) {
		struct mnode *m = &st->n[st->alive[a]];

		st_check_node(st, m);
		if (!m->cancelled && m->own && m->deadline < min)
			min = m->deadline;
	}
	assert_true(ctx_next_deadline(st->n[0].ctx) == min);
}

static int st_random_parent(struct stress *st)
{
	int slot = st_pick(st, ST_POOL);

	if (st_pick(st, 10) == 0 || st->pool[slot] < 0)
		return 0;
	return st->pool[slot];
}

static void st_drop_slot(struct stress *st, int slot)
{
	if (st->pool[slot] < 0)
		return;
	ctx_unref(st->n[st->pool[slot]].ctx);
	st_model_unref(st, st->pool[slot]);
	st->pool[slot] = -1;
}

static void st_create(struct stress *st, bool with_deadline)
{
	static const ctx_cause_t causes[] = {
		CTX_CAUSE_DEADLINE_EXCEEDED, CTX_CAUSE_CONNECT_TIMEOUT,
		CTX_CAUSE_HEADER_TIMEOUT, CTX_CAUSE_IDLE_TIMEOUT,
	};
	int slot = st_pick(st, ST_POOL);
	int parent = st_random_parent(st);
	struct mnode *pm = &st->n[parent];
	int64_t d = CTX_NO_DEADLINE;
	ctx_cause_t cause = causes[st_pick(st, 4)];
	ctx_t *c;
	int i;

	if (with_deadline)
		d = st->now - 500 + st_pick(st, 5000);
	if (with_deadline)
		c = ctx_with_deadline(pm->ctx, d, cause);
	else
		c = ctx_with_cancel(pm->ctx);
	assert_non_null(c);
	pm->refs++;
	i = st_add(st, c, parent);
	st->n[i].own = d < pm->deadline;
	st->n[i].deadline = st->n[i].own ? d : pm->deadline;
	st->n[i].expiry = cause;
	if (pm->cancelled) {
		st->n[i].cancelled = true;
		st->n[i].cause = pm->cause;
	}
	st_drop_slot(st, slot);
	st->pool[slot] = i;
}

static void st_cancel(struct stress *st)
{
	int i = st->pool[st_pick(st, ST_POOL)];
	ctx_cause_t cause = 1 + st_pick(st, CTX_CAUSE__COUNT - 1);
	int want;

	if (i < 0)
		return;
	want = st->n[i].cancelled ? -EALREADY : 0;
	assert_int_equal(ctx_cancel(st->n[i].ctx, cause), want);
	if (want == 0)
		st_model_cancel(st, i, cause);
}

static void st_expire(struct stress *st)
{
	int want;

	st->now += st_pick(st, 400);
	want = st_model_expire(st, st->now);
	assert_int_equal(ctx_expire(st->n[0].ctx, st->now), want);
}

static void st_watch(struct stress *st)
{
	int i = st->pool[st_pick(st, ST_POOL)];
	struct mwatch *mw;
	int want;

	if (i < 0)
		return;
	mw = &st->n[i].mw[st_pick(st, ST_WATCHES)];
	if (mw->want_registered)
		want = -EBUSY;
	else
		want = st->n[i].cancelled ? -ECANCELED : 0;
	assert_int_equal(ctx_watch(st->n[i].ctx, &mw->w, st_watch_cb, mw),
			 want);
	if (want == 0)
		mw->want_registered = true;
}

static void st_unwatch(struct stress *st)
{
	int i = st->pool[st_pick(st, ST_POOL)];
	struct mwatch *mw;

	if (i < 0)
		return;
	mw = &st->n[i].mw[st_pick(st, ST_WATCHES)];
	assert_int_equal(ctx_unwatch(&mw->w), mw->want_registered);
	mw->want_registered = false;
}

static void st_step(struct stress *st)
{
	int op = st_pick(st, 100);

	if (op < 25)
		st_create(st, false);
	else if (op < 45)
		st_create(st, true);
	else if (op < 55)
		st_cancel(st);
	else if (op < 67)
		st_drop_slot(st, st_pick(st, ST_POOL));
	else if (op < 77)
		st_expire(st);
	else if (op < 90)
		st_watch(st);
	else
		st_unwatch(st);
}

static void test_stress_random(void **state)
{
	struct stress st = { .rng = 0x9e3779b97f4a7c15ull, .now = 1000000 };
	ctx_t *root = new_root();
	int i;

	(void)state;
	st.n = calloc(ST_NODES, sizeof(*st.n));
	st.alive = calloc(ST_NODES, sizeof(*st.alive));
	assert_non_null(st.n);
	assert_non_null(st.alive);
	st_add(&st, root, -1);
	st.n[0].deadline = CTX_NO_DEADLINE;
	for (i = 0; i < ST_POOL; i++)
		st.pool[i] = -1;
	for (i = 0; i < ST_OPS; i++) {
		st_step(&st);
		st_check(&st);
	}
	for (i = 0; i < ST_POOL; i++) {
		st_drop_slot(&st, (i * 7) % ST_POOL);
		st_check(&st);
	}
	assert_int_equal(st.nalive, 1);
	assert_int_equal(st.n[0].refs, 1);
	ctx_unref(root);
	free(st.n);
	free(st.alive);
}

/* ---- one-shot timers ---- */

static void test_timer_fires_once_with_its_cause(void **state)
{
	ctx_t *root = new_root(), *t = NULL;
	ctx_watch_t w = { 0 };
	struct probe p = { 0 };

	(void)state;
	assert_int_equal(ctx_timer_start(&t, &w, root, 1000,
					 CTX_CAUSE_HEADER_TIMEOUT, probe_cb, &p), 0);
	assert_non_null(t);
	assert_int_equal(ctx_expire(root, 999), 0);
	assert_int_equal(p.calls, 0);
	assert_int_equal(ctx_expire(root, 1000), 1);
	assert_int_equal(p.calls, 1);
	assert_ptr_equal(p.seen, t);
	assert_int_equal(p.cause, CTX_CAUSE_HEADER_TIMEOUT);
	ctx_timer_stop(&t, &w);
	assert_null(t);
	assert_int_equal(p.calls, 1);
	ctx_unref(root);
}

static void test_timer_stop_and_restart(void **state)
{
	ctx_t *root = new_root(), *t = NULL;
	ctx_watch_t w = { 0 };
	struct probe p = { 0 };

	(void)state;
	ctx_timer_stop(&t, &w);                       /* nothing armed: no-op */
	assert_int_equal(ctx_timer_start(&t, &w, root, 1000,
					 CTX_CAUSE_IDLE_TIMEOUT, probe_cb, &p), 0);
	/* Restarting replaces the first timer: only the second fires. */
	assert_int_equal(ctx_timer_start(&t, &w, root, 3000,
					 CTX_CAUSE_HEADER_TIMEOUT, probe_cb, &p), 0);
	assert_int_equal(ctx_next_deadline(root), 3000);
	assert_int_equal(ctx_expire(root, 2000), 0);
	assert_int_equal(p.calls, 0);
	ctx_timer_stop(&t, &w);
	assert_null(t);
	assert_int_equal(ctx_expire(root, 5000), 0);
	assert_int_equal(p.calls, 0);                 /* stopped: never fires */
	ctx_unref(root);
}

static void test_timer_follows_its_parent(void **state)
{
	ctx_t *root = new_root(), *parent = new_child(root), *t = NULL;
	ctx_watch_t w = { 0 };
	struct probe p = { 0 };

	(void)state;
	assert_int_equal(ctx_timer_start(&t, &w, parent, 1000,
					 CTX_CAUSE_IDLE_TIMEOUT, probe_cb, &p), 0);
	ctx_cancel(parent, CTX_CAUSE_CLIENT_DISCONNECT);
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.cause, CTX_CAUSE_CLIENT_DISCONNECT);
	ctx_timer_stop(&t, &w);
	/* On a cancelled parent nothing is armed and fn is not called. */
	assert_int_equal(ctx_timer_start(&t, &w, parent, 1000,
					 CTX_CAUSE_IDLE_TIMEOUT, probe_cb, &p),
			 -ECANCELED);
	assert_null(t);
	assert_int_equal(p.calls, 1);
	ctx_unref(parent);
	ctx_unref(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cause_names),
		cmocka_unit_test(test_background_never_cancelled_by_itself),
		cmocka_unit_test(test_ref_unref),
		cmocka_unit_test(test_null_parent),
		cmocka_unit_test(test_cascade_parent_cause),
		cmocka_unit_test(test_cancel_never_upward),
		cmocka_unit_test(test_first_cause_wins),
		cmocka_unit_test(test_cancel_invalid),
		cmocka_unit_test(test_child_of_cancelled_born_cancelled),
		cmocka_unit_test(test_cancel_root_cascades),
		cmocka_unit_test(test_cancelled_at),
		cmocka_unit_test(test_deadline_clamped_to_parent),
		cmocka_unit_test(test_earlier_child_deadline_kept),
		cmocka_unit_test(test_next_deadline_updates),
		cmocka_unit_test(test_expire_causes_and_count),
		cmocka_unit_test(test_expire_many_order),
		cmocka_unit_test(test_remaining_ns),
		cmocka_unit_test(test_with_timeout),
		cmocka_unit_test(test_watch_runs_once),
		cmocka_unit_test(test_watch_after_cancel),
		cmocka_unit_test(test_unwatch),
		cmocka_unit_test(test_watch_ebusy),
		cmocka_unit_test(test_watch_parent_first),
		cmocka_unit_test(test_watch_reregisters_itself),
		cmocka_unit_test(test_cb_cancels_sibling),
		cmocka_unit_test(test_cb_cancels_sibling_directly),
		cmocka_unit_test(test_cb_unrefs_last_ref_of_child),
		cmocka_unit_test(test_cb_unrefs_own_ctx),
		cmocka_unit_test(test_cb_creates_child),
		cmocka_unit_test(test_cb_adds_watch_to_same_ctx),
		cmocka_unit_test(test_cb_unwatches_other),
		cmocka_unit_test(test_expire_cb_adds_expired),
		cmocka_unit_test(test_unref_live_child_detaches),
		cmocka_unit_test(test_parent_kept_alive_by_child),
		cmocka_unit_test(test_stress_random),
		cmocka_unit_test(test_timer_fires_once_with_its_cause),
		cmocka_unit_test(test_timer_stop_and_restart),
		cmocka_unit_test(test_timer_follows_its_parent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
