/* fuzz_trace.c - libFuzzer target for src/trace.c: any traceparent is refused or read, and what is read is written back and read the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t fixed(void *arg)
{
	(void)arg;
	return 0x0123456789abcdefULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[TRACE_PARENT_LEN + 1];
	struct trace t, u;

	memset(&t, 0, sizeof(t));
	if (trace_parse((const char *)data, size, &t) != 0)
		return 0;
	/* Read: joining keeps the trace id and flags, and the value written
	 * is a valid version 00 value with them. */
	trace_begin(&u, (const char *)data, size, 1, 0, fixed, NULL);
	if (!u.joined || memcmp(u.trace_id, t.trace_id, 16) != 0 ||
	    u.flags != t.flags)
		abort();
	trace_format(&u, out);
	memset(&t, 0, sizeof(t));
	if (trace_parse(out, strlen(out), &t) != 0 ||
	    memcmp(u.trace_id, t.trace_id, 16) != 0 ||
	    memcmp(u.span_id, t.parent_id, 8) != 0)
		abort();
	return 0;
}
