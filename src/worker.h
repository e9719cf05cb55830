/* worker.h - one event-loop thread: its MHD daemons, upstream connections and contexts. */
#ifndef CTXPROXY_WORKER_H
#define CTXPROXY_WORKER_H

#include "gen.h"

struct otlp;
struct watch_snap;
struct worker;

/* Create worker `id` serving the given listening sockets (one per
 * g->cfg->listen entry, owned by the worker from now on) and start its
 * thread.  The worker takes its own reference on g.  NULL on failure
 * (logged). */
struct worker *worker_start(int id, struct gen *g, const int *listen_fds,
			    struct otlp *otlp);

/* From the main thread: use g (a reference is taken) for new requests. */
void worker_set_gen(struct worker *w, struct gen *g);

/* From the main thread: stop accepting and answer 503 to new requests. */
void worker_drain(struct worker *w);

/* From the main thread: cancel everything in flight with cause shutdown. */
void worker_cancel_all(struct worker *w);

/* Liveness for the systemd watchdog: worker_ping() wakes the loop, which
 * counts the wake-up in worker_beats() when it is alive (any thread). */
void worker_ping(struct worker *w);
unsigned long worker_beats(const struct worker *w);

/* Requests in flight (any thread, approximate). */
long worker_inflight(const struct worker *w);

/* From the admin side's thread: have the worker fill s on its own thread
 * (its requests in flight, then its cancellations after s's since[id],
 * then watch_snap_done(s, id)), taking a reference to s for it.  One
 * snapshot at a time per worker: -EBUSY while the previous one is not yet
 * taken up (a stuck worker), and s is then told not to wait for this one
 * (watch_snap_skip; the caller has nothing to undo).  A worker that stops
 * first skips s and lets go of it.  Not during or after worker_stop(w). */
int worker_watch(struct worker *w, struct watch_snap *s);

/* Ask the thread to finish (after cancel_all), join it and free it.
 * worker_stop(NULL) is a no-op. */
void worker_stop(struct worker *w);

#endif
