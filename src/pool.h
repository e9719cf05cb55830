/* pool.h - one route's servers as one worker sees them: the balancer, passive health (ejection), in-flight counts and the retry budget. */
#ifndef CTXPROXY_POOL_H
#define CTXPROXY_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "retry.h"

struct config_route;
struct pool;

/*
 * Threading: a pool belongs to one worker thread; nothing here locks.
 * Active health is read from health_up() (shared); ejections are the
 * worker's own and are published with health_ejected_add() for the gauge.
 *
 * Passive health: `eject_after` consecutive failures (connect_failure,
 * reset, timeout; any response head ends a run) eject a server for
 * eject_ms, doubled on each consecutive ejection up to
 * CONFIG_EJECT_MAX_MS.  When the time is over the server gets one trial
 * attempt (no other while it runs): a response head restores it (and the
 * ejection time goes back to eject_ms), a failure ejects it again.
 */

/* A pool over r's servers (r must outlive it).  When old is given (the
 * same route in the generation being replaced) the state of every server
 * with the same origin is carried over: failures, ejection, its clock.
 * NULL on ENOMEM. */
struct pool *pool_new(const struct config_route *r, const struct pool *old);

/* Ends the ejections it holds in the gauge.  pool_free(NULL) is a no-op. */
void pool_free(struct pool *p);

/* Choose the server for an attempt (an index into r->servers) at now
 * (monotonic ns).  tried has bit i set for servers this exchange tried
 * already.  The first non-empty of: usable and untried, usable, untried,
 * all -- usable meaning up (health_up) and not ejected (or due for its
 * trial, which this pick then takes).  Round robin takes the next in
 * turn; least_request the one with fewer attempts in flight of two
 * random picks.  Counts an attempt in flight on the server: pool_end()
 * must follow. */
int pool_pick(struct pool *p, uint64_t tried, int64_t now);

/* The attempt on server i ended with `o` at now: in-flight count, passive
 * health.  A failure that ejects the server logs it.  Returns true when
 * this call ejected the server. */
bool pool_end(struct pool *p, int i, enum retry_outcome o, int64_t now);

/* The same in two steps, for an attempt that outlives its verdict: the
 * server is judged when the response head arrives (pool_verdict, which
 * returns what pool_end does), but stays busy, for least_request, until
 * the response is over (pool_done). */
bool pool_verdict(struct pool *p, int i, enum retry_outcome o, int64_t now);
void pool_done(struct pool *p, int i);

/* Exchanges in flight on this route (this worker), and those of them
 * retrying: an exchange begins, becomes a retry at most once, and ends
 * (which may grant a waiter its slot). */
void pool_exchange_begin(struct pool *p);
void pool_retry_begin(struct pool *p);
void pool_exchange_end(struct pool *p, bool retried);

/* Whether one more exchange may start retrying now: none waits for a
 * slot and retries in flight are below max(3, 20 % of exchanges in
 * flight). */
bool pool_retry_allowed(const struct pool *p);

/* An exchange waiting for a retry slot (embedded in it, zeroed).  A burst
 * of failures (a server dying with many requests on it) would otherwise
 * turn every request over the budget into an error at once: instead the
 * excess waits, within its own deadline, and the budget still bounds how
 * many retries run at a time.  granted() runs (from pool_exchange_end,
 * which ended a retrying exchange) once the slot is the waiter's: it is
 * counted as pool_retry_begin() would. */
struct pool_waiter {
	void (*granted)(struct pool_waiter *w);
	struct pool_waiter *prev, *next;
	bool queued;
};

/* Queue w (a no-op when queued), or take it out (a no-op when not). */
void pool_retry_wait(struct pool *p, struct pool_waiter *w);
void pool_retry_unwait(struct pool *p, struct pool_waiter *w);

/* Introspection for tests and the admin page: server i's consecutive
 * failures, and when its ejection ends (0 = not ejected). */
int pool_failures(const struct pool *p, int i);
int64_t pool_ejected_until(const struct pool *p, int i);

#endif
