/* retry.h - what a failed upstream attempt was, and whether the exchange may try again (SPEC §8). */
#ifndef CTXPROXY_RETRY_H
#define CTXPROXY_RETRY_H

#include <stdbool.h>

/*
 * Pure functions, no state: the exchange gathers the facts, this decides.
 */

/* Why an attempt failed, in the order of the CONFIG_RETRY_* bits of
 * config.h (bit 1 << reason): the `reason` label of
 * ctxproxy_retries_total. */
enum retry_reason {
	RETRY_CONNECT_FAILURE,   /* nothing was sent: refused, unreachable, connect timeout */
	RETRY_RESET,             /* the connection died before the response head */
	RETRY_TIMEOUT,           /* no head in time: header_timeout_ms or per_try_timeout_ms */
	RETRY_502,               /* the server answered 502, 503 or 504 */
	RETRY_503,
	RETRY_504,
	RETRY_REASON__COUNT
};

/* How an attempt ended, as metrics (`outcome` label of
 * ctxproxy_upstream_attempts_total) and passive health see it.  The first
 * RETRY_OUTCOME__COUNTED are counted; CANCELLED (the request went away,
 * so the server is not to blame) is not. */
enum retry_outcome {
	RETRY_OUT_OK,            /* a response head below 500 */
	RETRY_OUT_CONNECT_FAILURE,
	RETRY_OUT_RESET,
	RETRY_OUT_TIMEOUT,
	RETRY_OUT_STATUS_5XX,    /* any 5xx head */
	RETRY_OUT_CANCELLED
};
#define RETRY_OUTCOME__COUNTED RETRY_OUT_CANCELLED

/* The facts about one failed attempt. */
struct retry_in {
	enum retry_reason reason;
	unsigned retry_on;       /* the route's CONFIG_RETRY_* bits */
	bool responded;          /* part of the response went to the client */
	bool idempotent;         /* GET HEAD OPTIONS PUT DELETE TRACE */
	bool body_held;          /* the whole request body is still held (or none) */
	int attempts;            /* attempts made so far, this one included */
	int retries;             /* the route's extra attempts */
	bool budget_left;        /* the exchange is live with time left */
	bool retry_budget;       /* the worker's retries in flight allow one more */
};

/* Whether to make another attempt: every condition of SPEC §8 holds. */
bool retry_decide(const struct retry_in *in);

/* The reason for a response status (502, 503, 504), or -1 for others. */
int retry_reason_of_status(int status);

/* The outcome for a failure reason (502..504 are RETRY_OUT_STATUS_5XX). */
enum retry_outcome retry_outcome_of(enum retry_reason reason);

/* Stable lower-case names: "connect_failure", "reset", "timeout", "502",
 * ...; and "ok", "connect_failure", "reset", "timeout", "status_5xx",
 * "cancelled".  NULL when out of range. */
const char *retry_reason_name(int reason);
const char *retry_outcome_name(int outcome);

/* Whether the method may be sent twice (RFC 9110 §9.2.2). */
bool retry_idempotent(const char *method);

#endif
