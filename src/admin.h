/* admin.h - the admin listener: GET /metrics (Prometheus) and GET /healthz. */
#ifndef CTXPROXY_ADMIN_H
#define CTXPROXY_ADMIN_H

struct admin;

/* Serve on the listening socket fd (taken over) from a thread of its own,
 * off the request path.  NULL on failure (logged). */
struct admin *admin_start(int fd);

/* From now on /healthz answers 503 (any thread). */
void admin_set_draining(struct admin *a);

/* Stop the thread and close the socket.  admin_stop(NULL) is a no-op. */
void admin_stop(struct admin *a);

#endif
