/* trace.h - W3C Trace Context for one hop (SPEC §11): the incoming traceparent read, this hop's span made, the outgoing one written; no I/O. */
#ifndef CTXPROXY_TRACE_H
#define CTXPROXY_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_PARENT_LEN 55       /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACE_STATE_MAX 512       /* a longer tracestate is dropped */
#define TRACE_ID_HEX 33           /* 32 hex digits and the NUL */
#define TRACE_SPAN_HEX 17         /* 16 hex digits and the NUL */

/* A request's place in its trace.  Plain data. */
struct trace {
	uint8_t trace_id[16];
	uint8_t parent_id[8];     /* the caller's span when joined, else 0 */
	uint8_t span_id[8];       /* this hop's */
	uint8_t flags;            /* bit 0: sampled */
	bool joined;              /* from a valid incoming traceparent */
};

/* A source of random 64-bit words (the worker's generator). */
typedef uint64_t (*trace_rand_fn)(void *arg);

/* Read the traceparent value v[0, n) into t's trace_id, parent_id and
 * flags.  Valid: version 00 exactly "00-" + 32 lower-case hex (not all
 * zero) + "-" + 16 lower-case hex (not all zero) + "-" + 2 lower-case hex;
 * a higher version (01..fe) the same four fields, then nothing or "-" and
 * more; version ff never.  Returns 0, or -EINVAL (t unchanged). */
int trace_parse(const char *v, size_t n, struct trace *t);

/* Begin this hop's span: join the incoming traceparent tp[0, tp_len)
 * when there is exactly one (count: how many the request had) and it is
 * valid; else a new trace, sampled for sample_percent (0..100) of them.
 * The span id (and a new trace id) come from rnd; ids are never all
 * zero. */
void trace_begin(struct trace *t, const char *tp, size_t tp_len, int count,
		 int sample_percent, trace_rand_fn rnd, void *arg);

/* The outgoing traceparent: "00-<trace id>-<span id>-<flags>", NUL-ended
 * in out. */
void trace_format(const struct trace *t, char out[TRACE_PARENT_LEN + 1]);

/* Lower-case hex of id[0, n), NUL-ended: out has 2 * n + 1 bytes. */
void trace_hex(const uint8_t *id, size_t n, char *out);

/* Whether a tracestate value of len bytes is passed on (SPEC §11: at most
 * TRACE_STATE_MAX bytes, else dropped). */
bool trace_state_ok(size_t len);

#endif
