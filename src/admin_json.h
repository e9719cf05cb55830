/* admin_json.h - the live view as JSON: requests in flight, cancellations and the summary, any bytes escaped. */
#ifndef CTXPROXY_ADMIN_JSON_H
#define CTXPROXY_ADMIN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct watch_req;
struct watch_cancel;

/*
 * Everything here writes to a stdio stream (an open_memstream, say) and
 * returns nothing: the caller checks the stream once, at fclose/ferror.
 * Pure functions of their arguments: any thread.
 */

/* The first n bytes of s (fewer when a NUL comes first) as a JSON string,
 * quotes included: '"' and '\\' escaped, control bytes and DEL as \u00XX,
 * valid UTF-8 as is, every byte that is not part of valid UTF-8 (overlong
 * forms and surrogates included) as U+FFFD.  s NULL: null. */
void admin_json_string(FILE *out, const char *s, size_t n);

/* unix_ms as ISO-8601 UTC with milliseconds, quoted:
 * "2026-12-01T22:01:02.345Z". */
void admin_json_time(FILE *out, int64_t unix_ms);

/* One request in flight: {"id","method","path","route" (null: none),
 * "phase","age_ms","budget_left_ms" (null: no deadline; never below 0),
 * "attempts","worker"}. */
void admin_json_request(FILE *out, const struct watch_req *r);

/* One cancellation, numbered seq by the caller: {"seq","time","unix_ms",
 * "id","method","path","route","cause","phase","status","propagation_us"
 * (null: n/a),"worker"}. */
void admin_json_cancel(FILE *out, const struct watch_cancel *c,
		       uint64_t seq);

#define ADMIN_JSON_NO_ANSWER SIZE_MAX

/* The summary (GET /requests, the SSE summary event):
 * {"complete","workers":[per_worker...],"requests":[reqs...],
 *  "totals":{cause:count,...}}: reqs in the order given (oldest first);
 * totals[cause] for every cause but none and completed (those of
 * ctxproxy_cancellations_total). */
struct admin_json_summary {
	bool complete;
	int nworkers;
	const size_t *per_worker;       /* nworkers counts; ADMIN_JSON_NO_ANSWER:
					   the worker did not answer (null) */
	const struct watch_req *reqs;
	size_t nreqs;
	const uint64_t *totals;         /* CTX_CAUSE__COUNT counts */
};
void admin_json_summary(FILE *out, const struct admin_json_summary *s);

#endif
