/* admin_watch.h - the live view's hub: while someone watches, one thread snapshots every worker and keeps the merged history. */
#ifndef CTXPROXY_ADMIN_WATCH_H
#define CTXPROXY_ADMIN_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct watch_snap;
struct admin_watch;

/* Where the workers are (main owns them).  watch(arg, i, s) hands
 * snapshot s to worker i, which answers on its own thread; 0, or a
 * negative errno when worker i cannot take it now (its previous one not
 * yet taken: -EBUSY).  Called on the hub's thread, under the hub's lock:
 * it must not block or call back into the hub. */
struct admin_source {
	int nworkers;
	int (*watch)(void *arg, int worker, struct watch_snap *s);
	void *arg;
};

/* Cancellations the hub keeps (newest first to readers), and SSE streams
 * it serves at once. */
#define ADMIN_WATCH_HISTORY 1024
#define ADMIN_WATCH_STREAMS_MAX 48

/* The hub, its thread started and idle (no source yet).  NULL with errno
 * set on failure. */
struct admin_watch *admin_watch_new(void);

/* Stop the thread and wake every reader, who get no more waits (stream
 * calls fail with -ESHUTDOWN, admin_watch_fresh returns at once); the hub
 * stays readable until admin_watch_free.  Idempotent; not from a reader's
 * own callback. */
void admin_watch_stop(struct admin_watch *h);

/* Stop if still running and free.  No reader may be left: stop, then end
 * whatever serves the readers, then free.  admin_watch_free(NULL) is a
 * no-op. */
void admin_watch_free(struct admin_watch *h);

/* Take the workers from src (copied; nworkers at most CONFIG_WORKERS_MAX),
 * or give them back: once admin_watch_detach returns the hub never calls
 * the source again, so the workers may go.  Any thread but the hub's. */
int admin_watch_attach(struct admin_watch *h, const struct admin_source *src);
void admin_watch_detach(struct admin_watch *h);

/* A reader wants what is true now: the hub keeps snapshotting for a few
 * seconds from this call, and the call waits (at most timeout_ms) for a
 * snapshot begun after it, unless the latest began at most max_age_ms
 * ago.  Returns at once without a source or once stopped. */
void admin_watch_fresh(struct admin_watch *h, int max_age_ms, int timeout_ms);

/* The latest summary (admin_json_summary), a malloc'd NUL-terminated copy
 * of *len bytes; NULL on ENOMEM. */
char *admin_watch_summary(struct admin_watch *h, size_t *len);

/* {"cancellations":[...]}: the newest `limit` (at most
 * ADMIN_WATCH_HISTORY) kept, newest first. */
void admin_watch_cancellations(struct admin_watch *h, size_t limit, FILE *out);

/* A stream opens: counted (and watching) until admin_watch_stream_close;
 * *cursor is where its cancellations begin.  -EBUSY at
 * ADMIN_WATCH_STREAMS_MAX, -ESHUTDOWN once stopped. */
int admin_watch_stream_open(struct admin_watch *h, uint64_t *cursor);
void admin_watch_stream_close(struct admin_watch *h);

/* Streams open now (the ctxproxy_admin_streams gauge).  Any thread. */
long admin_watch_streams(struct admin_watch *h);

/* A stream waits, until until_ns (CLOCK_MONOTONIC) at most, for
 * cancellations after *cursor, and hands each (its JSON, admin_json_cancel)
 * to emit, oldest first, under the hub's lock (emit must only copy), those
 * recorded before since_unix_ms skipped; *cursor moves past them.  Returns
 * how many were emitted (0: the time came, or only skipped ones), or
 * -ESHUTDOWN once stopped.  A stream that fell more than
 * ADMIN_WATCH_HISTORY behind misses the oldest. */
int admin_watch_next(struct admin_watch *h, uint64_t *cursor,
		     int64_t since_unix_ms, int64_t until_ns,
		     void (*emit)(void *arg, const char *json, size_t len),
		     void *arg);

#endif
