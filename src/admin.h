/* admin.h - the admin listener: /metrics, /healthz, and the live view of contexts (/, /requests, /cancellations, /events). */
#ifndef CTXPROXY_ADMIN_H
#define CTXPROXY_ADMIN_H

struct admin;
struct admin_source;

/* Serve on the listening socket fd (taken over) from threads of its own
 * (one per connection, at most 64), off the request path.  NULL on
 * failure (logged). */
struct admin *admin_start(int fd);

/* Show the workers of src in the live view (src is copied), or stop
 * asking them: once admin_detach returns they are never asked again, so
 * they may be stopped.  Main thread; admin_*(NULL, ...) are no-ops. */
void admin_attach(struct admin *a, const struct admin_source *src);
void admin_detach(struct admin *a);

/* From now on /healthz answers 503 (any thread). */
void admin_set_draining(struct admin *a);

/* End the event streams, stop the threads and close the socket.
 * admin_stop(NULL) is a no-op. */
void admin_stop(struct admin *a);

#endif
