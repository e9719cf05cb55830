/* health.h - whether upstream servers are up: the state every worker reads, and the active checks, run on a thread of their own. */
#ifndef CTXPROXY_HEALTH_H
#define CTXPROXY_HEALTH_H

#include <stdbool.h>
#include <stdio.h>

struct config;

/*
 * The state is kept per server slot (config_server.slot, given by
 * metrics_assign_slots(): one per route name and server for the life of
 * the process), so a reload keeps the state of the servers that stay
 * without copying anything.
 *
 * Threading: health_up() and health_ejected_add() may be called from any
 * thread (relaxed atomics; the request path only loads).  The rest is for
 * the main thread.
 */

/* Whether the active checks say server `slot` is up: true for a server
 * without checks, or until `fall` checks failed in a row (a server starts
 * up).  Any thread. */
bool health_up(int slot);

/* A worker ejected server `slot` (+1) or ended its ejection (-1).  The
 * up gauge shows 0 while any worker has it ejected.  Any thread. */
void health_ejected_add(int slot, int delta);

/* Start the checking thread (idle until health_set_config).  Returns 0 or
 * a negative errno. */
int health_start(void);

/* The servers of cfg (slots assigned) are the ones to check and to list
 * in the up gauge from now on.  Copies what it needs: cfg may be freed
 * after.  A server whose route has no `health` block is up for the
 * active checks; one that stays keeps its rise/fall state.  Returns 0 or
 * -ENOMEM (the previous set stays). */
int health_set_config(const struct config *cfg);

/* Stop and join the thread, drop the set.  A no-op when not started. */
void health_stop(void);

/* Write ctxproxy_upstream_server_up{route,server} (1 or 0) for every
 * server of the current set, in Prometheus text.  Any thread.  Returns 0
 * or -errno. */
int health_write_metrics(FILE *out);

#endif
