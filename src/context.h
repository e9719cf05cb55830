/* context.h - cancellation contexts: Go's context.Context for C, HTTP-free. */
#ifndef CTXPROXY_CONTEXT_H
#define CTXPROXY_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A context is a refcounted node in a tree rooted at a background context.
 * It may carry a deadline (CLOCK_MONOTONIC nanoseconds) that is never later
 * than its parent's, and once cancelled it stays cancelled with the first
 * cause given.  Cancelling a node cancels its whole subtree, parent first.
 * Watches (like Go's AfterFunc) run once, synchronously, on cancellation.
 *
 * Threading: a tree belongs to one thread (one event loop).  Nothing here
 * locks; other threads must ask the owning loop to cancel (e.g. eventfd).
 * Callbacks may re-enter the module freely: cancel other contexts, create
 * children (of the cancelled node too: they are born cancelled), drop
 * references, add or remove watches.
 */

typedef struct ctx ctx_t;

typedef enum ctx_cause {
	CTX_CAUSE_NONE = 0,          /* not cancelled */
	CTX_CAUSE_COMPLETED,         /* the owner finished normally */
	CTX_CAUSE_CLIENT_DISCONNECT, /* the client's socket closed or reset */
	CTX_CAUSE_DEADLINE_EXCEEDED, /* the deadline passed */
	CTX_CAUSE_CONNECT_TIMEOUT,   /* upstream connect took too long */
	CTX_CAUSE_HEADER_TIMEOUT,    /* upstream response head took too long */
	CTX_CAUSE_IDLE_TIMEOUT,      /* upstream body stayed silent too long */
	CTX_CAUSE_UPSTREAM_ERROR,    /* the upstream transfer failed */
	CTX_CAUSE_SHUTDOWN,          /* the daemon is stopping */
	CTX_CAUSE__COUNT
} ctx_cause_t;

#define CTX_NO_DEADLINE INT64_MAX

typedef void (*ctx_done_fn)(ctx_t *ctx, void *arg);

/* A watch is embedded in the caller's own struct (no allocation).  Its
 * fields are private to the module; zero-initialise it before first use. */
typedef struct ctx_watch {
	struct ctx_watch *prev, *next;
	ctx_t *ctx;           /* NULL when not registered */
	ctx_done_fn fn;
	void *arg;
} ctx_watch_t;

/* CLOCK_MONOTONIC now, in nanoseconds. */
int64_t ctx_now_ns(void);

/* The stable lower-case name of a cause ("client_disconnect", ...). */
const char *ctx_cause_name(ctx_cause_t cause);

/* A new root: never cancelled except by ctx_cancel, no deadline.  It owns
 * the deadline heap of every context below it.  Returns NULL on ENOMEM.
 * The caller owns one reference. */
ctx_t *ctx_background_new(void);

/* A child of parent that is cancelled with parent, or by ctx_cancel.  If
 * parent is already cancelled the child is born cancelled with its cause.
 * The child holds a reference on parent; the caller owns one on the child.
 * Returns NULL on ENOMEM. */
ctx_t *ctx_with_cancel(ctx_t *parent);

/* Like ctx_with_cancel, with a deadline: min(deadline_ns, parent's).  When
 * the root's ctx_expire() passes it, the child is cancelled with `cause`
 * (CTX_CAUSE_DEADLINE_EXCEEDED for ordinary deadlines; a phase watcher may
 * pass its own).  A deadline inherited from an ancestor expires with the
 * ancestor's cause, as the ancestor's cancellation flows down. */
ctx_t *ctx_with_deadline(ctx_t *parent, int64_t deadline_ns, ctx_cause_t cause);

/* ctx_with_deadline(parent, now + timeout_ns, CTX_CAUSE_DEADLINE_EXCEEDED). */
ctx_t *ctx_with_timeout(ctx_t *parent, int64_t timeout_ns);

/* Reference counting.  ctx_ref returns its argument.  Dropping the last
 * reference of a live context detaches it from its parent without running
 * its watches (they are unregistered); ctx_unref(NULL) is a no-op. */
ctx_t *ctx_ref(ctx_t *ctx);
void ctx_unref(ctx_t *ctx);

/* Cancel ctx and its subtree with cause (not CTX_CAUSE_NONE).  The first
 * cause wins: returns 0 if this call cancelled it, -EALREADY if it already
 * was, -EINVAL for a bad argument.  Watches run before this returns. */
int ctx_cancel(ctx_t *ctx, ctx_cause_t cause);

/* CTX_CAUSE_NONE while live, else the first cause. */
ctx_cause_t ctx_cause(const ctx_t *ctx);
bool ctx_is_cancelled(const ctx_t *ctx);

/* When ctx was cancelled (ctx_now_ns() at the time), or 0 while live. */
int64_t ctx_cancelled_at(const ctx_t *ctx);

/* The effective deadline, or CTX_NO_DEADLINE. */
int64_t ctx_deadline(const ctx_t *ctx);

/* Nanoseconds left before the deadline at `now` (0 when passed or
 * cancelled), or CTX_NO_DEADLINE when there is none. */
int64_t ctx_remaining_ns(const ctx_t *ctx, int64_t now);

/* Register w to run fn(ctx, arg) once when ctx is cancelled.  Returns 0, or
 * -ECANCELED without registering (and without calling fn) when ctx is
 * already cancelled, or -EBUSY when w is still registered elsewhere. */
int ctx_watch(ctx_t *ctx, ctx_watch_t *w, ctx_done_fn fn, void *arg);

/* Unregister w.  Returns true if it was registered (fn will not run), false
 * if it already ran or was never registered.  Safe on a zeroed watch. */
bool ctx_unwatch(ctx_watch_t *w);

/* A one-shot timer made of a context.  Stops the timer already in *t, then
 * makes *t a child of parent with deadline `at` (monotonic ns) and `cause`,
 * watched through w: fn(*t, arg) runs once when it expires or parent is
 * cancelled.  Returns 0, -ENOMEM, or -ECANCELED when parent is already
 * cancelled (fn is not called); on failure *t is NULL.  The caller owns *t
 * and w until ctx_timer_stop(). */
int ctx_timer_start(ctx_t **t, ctx_watch_t *w, ctx_t *parent, int64_t at,
		    ctx_cause_t cause, ctx_done_fn fn, void *arg);

/* Stop the timer in *t, if any: fn will not run from now on, the context
 * is cancelled (completed) and released, and *t becomes NULL. */
void ctx_timer_stop(ctx_t **t, ctx_watch_t *w);

/* For the loop owning root: the earliest deadline of any live context in
 * its tree, or CTX_NO_DEADLINE. */
int64_t ctx_next_deadline(const ctx_t *root);

/* Cancel every live context of root's tree whose deadline is <= now, each
 * with its own cause.  Returns how many were cancelled by this call. */
int ctx_expire(ctx_t *root, int64_t now);

#endif
