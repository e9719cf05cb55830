/* worker.h - one event-loop thread: its MHD daemons, curl multi and contexts. */
#ifndef CTXPROXY_WORKER_H
#define CTXPROXY_WORKER_H

#include "config.h"
#include "route.h"

struct worker;

/* Create worker `id` serving the given listening sockets (one per
 * cfg->listen entry, owned by the worker from now on) and start its
 * thread.  cfg and routes must outlive it.  NULL on failure (logged). */
struct worker *worker_start(int id, const struct config *cfg,
			    const struct route_table *routes,
			    const int *listen_fds);

/* From the main thread: stop accepting and answer 503 to new requests. */
void worker_drain(struct worker *w);

/* From the main thread: cancel everything in flight with cause shutdown. */
void worker_cancel_all(struct worker *w);

/* Requests in flight (any thread, approximate). */
long worker_inflight(const struct worker *w);

/* Ask the thread to finish (after cancel_all), join it and free it.
 * worker_stop(NULL) is a no-op. */
void worker_stop(struct worker *w);

#endif
