/* watch.h - the live view of contexts: each worker's requests in flight and its recent cancellations, read off the request path. */
#ifndef CTXPROXY_WATCH_H
#define CTXPROXY_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A request in flight, as a snapshot shows it.  Strings are copies,
 * truncated to their buffers; the query string is cut off unless the
 * config's admin_show_query is true. */
struct watch_req {
	char id[40];
	char method[16];
	char path[256];
	char route[64];          /* "" = no route (yet) */
	const char *phase;       /* static: req_phase_name() */
	int worker;
	int attempts;            /* upstream attempts so far (0 = none yet) */
	int64_t age_us;          /* since the request's head arrived */
	int64_t budget_left_us;  /* until its context's deadline; -1 = none */
};

/* A cancellation, recorded once, when its request ends (its access line). */
struct watch_cancel {
	uint64_t seq;            /* per worker, from 1, no gaps */
	int64_t unix_ms;         /* wall clock when it was recorded */
	char id[40];
	char method[16];
	char path[256];          /* query cut off unless admin_show_query */
	char route[64];
	const char *cause;       /* static: ctx_cause_name() */
	const char *phase;       /* static: where it was cancelled */
	int status;              /* what the client got (499: it left) */
	int worker;
	int64_t propagation_us;  /* cancel -> upstream socket closed; -1 = n/a */
};

/* How many cancellations a worker keeps for the page. */
#define WATCH_RING 256

/* A worker's ring of its last WATCH_RING cancellations.  Written by the
 * worker's thread only, read there too (inside a snapshot): no lock. */
struct watch_ring;

/* NULL on ENOMEM.  watch_ring_free(NULL) is a no-op. */
struct watch_ring *watch_ring_new(int worker);
void watch_ring_free(struct watch_ring *ring);

/* Record one cancellation (worker thread).  c->seq and c->worker are set
 * here; the oldest entry is overwritten when the ring is full. */
void watch_ring_push(struct watch_ring *ring, const struct watch_cancel *c);

/* One snapshot of every worker, asked for by the admin thread and filled
 * by each worker on its own thread (its loop runs the request), so the
 * request path takes no lock and pays nothing while nobody looks.
 * Reference counted: the admin side and each worker still to answer hold
 * one, so a worker that answers after the admin side gave up writes into
 * memory that is still there. */
struct watch_snap;

/* A snapshot for nworkers workers wanting the cancellations after since[i]
 * of worker i (since may be NULL: all kept; a since[i] beyond the worker's
 * newest seq, as a page kept from before a restart has, also means all
 * kept).  One reference, the caller's.  NULL on ENOMEM. */
struct watch_snap *watch_snap_new(int nworkers, const uint64_t *since);
void watch_snap_ref(struct watch_snap *s);
/* watch_snap_unref(NULL) is a no-op; the last reference frees it. */
void watch_snap_unref(struct watch_snap *s);

/* Worker side (its thread), inside the wake-up that carries the snapshot:
 * add one request (to worker r->worker's rows) / this worker's
 * cancellations after since[worker], then say the worker is done (which
 * drops the worker's reference: call it once, then leave s alone).  A row
 * that does not fit (ENOMEM, or a worker outside 0..nworkers-1) is counted
 * in watch_snap_lost().  Rows added after the admin side's wait gave up
 * are not shown, only freed. */
void watch_snap_add_req(struct watch_snap *s, const struct watch_req *r);
void watch_snap_add_ring(struct watch_snap *s, const struct watch_ring *ring);
void watch_snap_done(struct watch_snap *s, int worker);

/* Worker `worker` will not answer (it could not be asked, or it stops with
 * the snapshot unanswered): the wait stops waiting for it.  Takes and
 * drops no reference; a no-op once the worker is done.  Any thread. */
void watch_snap_skip(struct watch_snap *s, int worker);

/* Admin side: wait until every worker is done or skipped, or timeout_ms
 * passes (0: do not wait); true when all answered.  The first wait fixes
 * what the snapshot shows (the workers done by then); a later one returns
 * the same answer at once.  One thread waits and reads; not a worker's. */
bool watch_snap_wait(struct watch_snap *s, int timeout_ms);

/* What the snapshot holds once waited for (or as far as it got; before
 * the wait: nothing): requests oldest first (largest age_us), then
 * cancellations by worker, oldest first within each.  The arrays belong
 * to the snapshot. */
const struct watch_req *watch_snap_reqs(const struct watch_snap *s, size_t *n);
const struct watch_cancel *watch_snap_cancels(const struct watch_snap *s,
					      size_t *n);
/* Requests in flight per worker (per_worker[nworkers]; 0 for a worker
 * that did not answer, and counting rows lost), and rows lost to ENOMEM. */
void watch_snap_counts(const struct watch_snap *s, size_t *per_worker);
size_t watch_snap_lost(const struct watch_snap *s);
/* Whether worker `worker`'s rows are in the snapshot (it answered in
 * time). */
bool watch_snap_answered(const struct watch_snap *s, int worker);

#endif
