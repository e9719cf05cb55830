/* context.c - cancellation contexts: refcounted tree, watches, deadline heap. */

/*
 * Not thread-safe by design: a tree belongs to one event-loop thread and
 * nothing here locks or uses atomics (see context.h).
 *
 * Ownership: a child holds one reference on its parent, so a node is only
 * ever freed once it has no children left.  The parent's list of children
 * holds only the live ones and owns nothing; a node leaves it when it is
 * cancelled or freed.  Watches are embedded in caller structs and are
 * never owned either.
 *
 * Deadlines: every node stores its effective deadline.  Only live nodes
 * whose deadline is strictly earlier than their parent's ("own" deadline)
 * sit in the root's min-heap; any other deadline is reached first by the
 * ancestor that set it, whose cancellation then flows down with its cause.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "context.h"
#include "invariant.h"

#define HEAP_NONE SIZE_MAX
#define HEAP_MIN_CAP 16

struct ctx {
	ctx_t *parent;
	ctx_t *root;
	size_t refs;

	/* Live children of this node, and this node's links among its
	 * siblings while it is itself live. */
	ctx_t *child_head, *child_tail;
	ctx_t *sib_prev, *sib_next;

	ctx_watch_t *watch_head, *watch_tail;

	int64_t deadline;        /* effective, or CTX_NO_DEADLINE */
	int64_t cancelled_at;
	ctx_cause_t cause;
	ctx_cause_t expiry_cause; /* used only with an own deadline */
	bool own_deadline;
	size_t heap_idx;         /* HEAP_NONE when not in the root's heap */

	/* Root only: live nodes with an own deadline, ordered by deadline. */
	ctx_t **heap;
	size_t heap_len, heap_cap;
};

int64_t ctx_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *ctx_cause_name(ctx_cause_t cause)
{
	static const char *const names[CTX_CAUSE__COUNT] = {
		[CTX_CAUSE_NONE] = "none",
		[CTX_CAUSE_COMPLETED] = "completed",
		[CTX_CAUSE_CLIENT_DISCONNECT] = "client_disconnect",
		[CTX_CAUSE_DEADLINE_EXCEEDED] = "deadline_exceeded",
		[CTX_CAUSE_CONNECT_TIMEOUT] = "connect_timeout",
		[CTX_CAUSE_HEADER_TIMEOUT] = "header_timeout",
		[CTX_CAUSE_IDLE_TIMEOUT] = "idle_timeout",
		[CTX_CAUSE_UPSTREAM_ERROR] = "upstream_error",
		[CTX_CAUSE_SHUTDOWN] = "shutdown",
	};

	/* Compare as unsigned: an out-of-range enum may be negative. */
	if ((unsigned)cause >= CTX_CAUSE__COUNT)
		return "unknown";
	return names[cause];
}

static bool cause_valid(ctx_cause_t cause)
{
	return cause != CTX_CAUSE_NONE && (unsigned)cause < CTX_CAUSE__COUNT;
}

/* ---- deadline heap (lives in the root) ---- */

static void heap_set(ctx_t *root, size_t i, ctx_t *c)
{
	root->heap[i] = c;
	c->heap_idx = i;
}

static void heap_sift_up(ctx_t *root, size_t i)
{
	ctx_t *c = root->heap[i];

	while (i > 0) {
		size_t up = (i - 1) / 2;

		if (root->heap[up]->deadline <= c->deadline)
			break;
		heap_set(root, i, root->heap[up]);
		i = up;
	}
	heap_set(root, i, c);
}

static void heap_sift_down(ctx_t *root, size_t i)
{
	ctx_t *c = root->heap[i];
	size_t n = root->heap_len;

	for (;;) {
		size_t kid = 2 * i + 1;

		if (kid >= n)
			break;
		if (kid + 1 < n &&
		    root->heap[kid + 1]->deadline < root->heap[kid]->deadline)
			kid++;
		if (c->deadline <= root->heap[kid]->deadline)
			break;
		heap_set(root, i, root->heap[kid]);
		i = kid;
	}
	heap_set(root, i, c);
}

/* Grow before the node exists, so that a failure leaves nothing to undo. */
static int heap_reserve(ctx_t *root)
{
	ctx_t **grown;
	size_t cap;

	if (root->heap_len < root->heap_cap)
		return 0;
	cap = root->heap_cap ? root->heap_cap * 2 : HEAP_MIN_CAP;
	if (cap > SIZE_MAX / sizeof(*grown))
		return -ENOMEM;
	grown = realloc(root->heap, cap * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	root->heap = grown;
	root->heap_cap = cap;
	return 0;
}

static void heap_insert(ctx_t *root, ctx_t *c)
{
	size_t i = root->heap_len++;

	heap_set(root, i, c);
	heap_sift_up(root, i);
}

static void heap_remove(ctx_t *c)
{
	ctx_t *root = c->root;
	size_t i = c->heap_idx;
	ctx_t *last;

	if (i == HEAP_NONE)
		return;
	c->heap_idx = HEAP_NONE;
	last = root->heap[--root->heap_len];
	if (last == c)
		return;
	heap_set(root, i, last);
	/* The moved node may belong above or below its new slot. */
	if (i > 0 && root->heap[(i - 1) / 2]->deadline > last->deadline)
		heap_sift_up(root, i);
	else
		heap_sift_down(root, i);
}

/* ---- children and watches ---- */

static void child_link(ctx_t *parent, ctx_t *c)
{
	c->sib_prev = parent->child_tail;
	c->sib_next = NULL;
	if (parent->child_tail)
		parent->child_tail->sib_next = c;
	else
		parent->child_head = c;
	parent->child_tail = c;
}

/* Only live nodes are linked; unlinking twice is harmless. */
static void child_unlink(ctx_t *c)
{
	ctx_t *parent = c->parent;

	if (!parent || c->cause != CTX_CAUSE_NONE)
		return;
	if (c->sib_prev)
		c->sib_prev->sib_next = c->sib_next;
	else
		parent->child_head = c->sib_next;
	if (c->sib_next)
		c->sib_next->sib_prev = c->sib_prev;
	else
		parent->child_tail = c->sib_prev;
	c->sib_prev = NULL;
	c->sib_next = NULL;
}

static void watch_unlink(ctx_watch_t *w)
{
	ctx_t *c = w->ctx;

	if (w->prev)
		w->prev->next = w->next;
	else
		c->watch_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		c->watch_tail = w->prev;
	w->prev = NULL;
	w->next = NULL;
	w->ctx = NULL;
}

/* Pop one watch at a time: a callback may unwatch or re-register any
 * watch, so no pointer into the list may be kept across a call. */
static void run_watches(ctx_t *c)
{
	while (c->watch_head) {
		ctx_watch_t *w = c->watch_head;
		ctx_done_fn fn = w->fn;
		void *arg = w->arg;

		watch_unlink(w);
		fn(c, arg);
	}
}

static void drop_watches(ctx_t *c)
{
	while (c->watch_head)
		watch_unlink(c->watch_head);
}

/* ---- creation and lifetime ---- */

ctx_t *ctx_background_new(void)
{
	ctx_t *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->root = c;
	c->refs = 1;
	c->deadline = CTX_NO_DEADLINE;
	c->heap_idx = HEAP_NONE;
	return c;
}

ctx_t *ctx_with_cancel(ctx_t *parent)
{
	return ctx_with_deadline(parent, CTX_NO_DEADLINE,
				 CTX_CAUSE_DEADLINE_EXCEEDED);
}

/* A child of a cancelled parent is never linked nor put in the heap: it
 * is already in its final state. */
static void attach(ctx_t *parent, ctx_t *c)
{
	if (parent->cause != CTX_CAUSE_NONE) {
		c->cause = parent->cause;
		c->cancelled_at = ctx_now_ns();
		return;
	}
	child_link(parent, c);
	if (c->own_deadline)
		heap_insert(c->root, c);
}

ctx_t *ctx_with_deadline(ctx_t *parent, int64_t deadline_ns, ctx_cause_t cause)
{
	ctx_t *c;
	bool own;

	if (!parent || !cause_valid(cause)) {
		errno = EINVAL;
		return NULL;
	}
	own = deadline_ns < parent->deadline;
	if (own && parent->cause == CTX_CAUSE_NONE &&
	    heap_reserve(parent->root) < 0) {
		errno = ENOMEM;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->parent = ctx_ref(parent);
	c->root = parent->root;
	c->refs = 1;
	c->deadline = own ? deadline_ns : parent->deadline;
	c->own_deadline = own;
	c->expiry_cause = cause;
	c->heap_idx = HEAP_NONE;
	attach(parent, c);
	return c;
}

ctx_t *ctx_with_timeout(ctx_t *parent, int64_t timeout_ns)
{
	int64_t deadline;

	/* An unrepresentable deadline is as good as none. */
	if (__builtin_add_overflow(ctx_now_ns(), timeout_ns, &deadline))
		deadline = timeout_ns > 0 ? CTX_NO_DEADLINE : INT64_MIN;
	return ctx_with_deadline(parent, deadline, CTX_CAUSE_DEADLINE_EXCEEDED);
}

ctx_t *ctx_ref(ctx_t *ctx)
{
	if (ctx)
		ctx->refs++;
	return ctx;
}

/* Live children hold references, so a node being freed has none. */
static void ctx_free(ctx_t *c)
{
	ASSERT(c->refs == 0 && !c->child_head && !c->child_tail);
	heap_remove(c);
	child_unlink(c);
	drop_watches(c);
	free(c->heap);
	free(c);
}

void ctx_unref(ctx_t *ctx)
{
	/* Iterate rather than recurse: freeing a node may free a long chain
	 * of ancestors kept alive only by it. */
	while (ctx) {
		ctx_t *parent = ctx->parent;

		ASSERT(ctx->refs > 0);           /* never dropped twice */
		ctx->refs--;
		if (ctx->refs > 0)
			return;
		ctx_free(ctx);
		ctx = parent;
	}
}

/* ---- cancellation ---- */

/* Make c cancelled and run its watches; the caller holds a reference. */
static void cancel_one(ctx_t *c, ctx_cause_t cause)
{
	ASSERT(c->cause == CTX_CAUSE_NONE);      /* the first cause wins */
	heap_remove(c);
	child_unlink(c);
	c->cause = cause;
	c->cancelled_at = ctx_now_ns();
	run_watches(c);
}

/*
 * Pre-order walk without recursion.  Cancelled nodes leave their parent's
 * list and a cancelled node gains no live children, so "the first live
 * child" always makes progress whatever the callbacks do.  A reference is
 * held on every node of the current path, so callbacks dropping the last
 * user reference cannot free it under us.  Returns how many nodes this
 * walk cancelled.
 */
static int cancel_tree(ctx_t *top, ctx_cause_t cause)
{
	ctx_t *cur = ctx_ref(top);
	int n = 1;

	cancel_one(top, cause);
	for (;;) {
		ctx_t *child = cur->child_head;

		if (child) {
			cur = ctx_ref(child);
			cancel_one(cur, cause);
			n++;
			continue;
		}
		if (cur == top)
			break;
		child = cur;
		cur = cur->parent;
		ctx_unref(child);
	}
	ctx_unref(top);
	return n;
}

int ctx_cancel(ctx_t *ctx, ctx_cause_t cause)
{
	if (!ctx || !cause_valid(cause))
		return -EINVAL;
	if (ctx->cause != CTX_CAUSE_NONE)
		return -EALREADY;
	cancel_tree(ctx, cause);
	return 0;
}

ctx_cause_t ctx_cause(const ctx_t *ctx)
{
	return ctx ? ctx->cause : CTX_CAUSE_NONE;
}

bool ctx_is_cancelled(const ctx_t *ctx)
{
	return ctx_cause(ctx) != CTX_CAUSE_NONE;
}

int64_t ctx_cancelled_at(const ctx_t *ctx)
{
	return ctx ? ctx->cancelled_at : 0;
}

int64_t ctx_deadline(const ctx_t *ctx)
{
	return ctx ? ctx->deadline : CTX_NO_DEADLINE;
}

int64_t ctx_remaining_ns(const ctx_t *ctx, int64_t now)
{
	int64_t left;

	if (!ctx)
		return CTX_NO_DEADLINE;
	if (ctx->cause != CTX_CAUSE_NONE)
		return 0;
	if (ctx->deadline == CTX_NO_DEADLINE)
		return CTX_NO_DEADLINE;
	if (ctx->deadline <= now)
		return 0;
	/* A far-past `now` must not make a real deadline look like none. */
	if (__builtin_sub_overflow(ctx->deadline, now, &left) ||
	    left == CTX_NO_DEADLINE)
		return CTX_NO_DEADLINE - 1;
	return left;
}

/* ---- watches ---- */

int ctx_watch(ctx_t *ctx, ctx_watch_t *w, ctx_done_fn fn, void *arg)
{
	if (!ctx || !w || !fn)
		return -EINVAL;
	if (w->ctx)
		return -EBUSY;
	if (ctx->cause != CTX_CAUSE_NONE)
		return -ECANCELED;
	w->fn = fn;
	w->arg = arg;
	w->ctx = ctx;
	w->next = NULL;
	w->prev = ctx->watch_tail;
	if (ctx->watch_tail)
		ctx->watch_tail->next = w;
	else
		ctx->watch_head = w;
	ctx->watch_tail = w;
	return 0;
}

bool ctx_unwatch(ctx_watch_t *w)
{
	if (!w || !w->ctx)
		return false;
	watch_unlink(w);
	return true;
}

int ctx_timer_start(ctx_t **t, ctx_watch_t *w, ctx_t *parent, int64_t at,
		    ctx_cause_t cause, ctx_done_fn fn, void *arg)
{
	int rc;

	ctx_timer_stop(t, w);
	*t = ctx_with_deadline(parent, at, cause);
	if (!*t)
		return -ENOMEM;
	rc = ctx_watch(*t, w, fn, arg);
	if (rc < 0)
		ctx_timer_stop(t, w);
	return rc;
}

void ctx_timer_stop(ctx_t **t, ctx_watch_t *w)
{
	if (!*t)
		return;
	ctx_unwatch(w);
	ctx_cancel(*t, CTX_CAUSE_COMPLETED);
	ctx_unref(*t);
	*t = NULL;
}

/* ---- the loop's deadline interface ---- */

int64_t ctx_next_deadline(const ctx_t *root)
{
	if (!root || root->root->heap_len == 0)
		return CTX_NO_DEADLINE;
	return root->root->heap[0]->deadline;
}

/*
 * Descendants reached through the cascade count too: their effective
 * deadline is the expired ancestor's, so they are expired contexts as well.
 * Callbacks may add already-expired contexts; the loop picks them up.
 */
int ctx_expire(ctx_t *root, int64_t now)
{
	int n = 0;

	if (!root)
		return -EINVAL;
	/* A callback might drop the caller's reference on the root. */
	root = ctx_ref(root->root);
	while (root->heap_len && root->heap[0]->deadline <= now) {
		ctx_t *c = root->heap[0];

		n += cancel_tree(c, c->expiry_cause);
	}
	ctx_unref(root);
	return n;
}
