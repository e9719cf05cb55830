/* trace.c - W3C Trace Context for one hop (SPEC §11): the incoming traceparent read, this hop's span made, the outgoing one written; no I/O. */
#include <errno.h>
#include <string.h>

#include "trace.h"

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;                /* upper case is not valid either */
}

/* n bytes from 2 * n lower-case hex digits; false on a bad digit. */
static bool hex_bytes(const char *s, uint8_t *out, size_t n)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		hi = hex_val(s[2 * i]);
		lo = hex_val(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

int trace_parse(const char *v, size_t n, struct trace *t)
{
	uint8_t version, trace_id[16], parent_id[8], flags;

	if (n < TRACE_PARENT_LEN || v[2] != '-' || v[35] != '-' ||
	    v[52] != '-' || !hex_bytes(v, &version, 1) || version == 0xff)
		return -EINVAL;
	/* Version 00 has exactly four fields; a later one may add more. */
	if (n > TRACE_PARENT_LEN && (version == 0 || v[TRACE_PARENT_LEN] != '-'))
		return -EINVAL;
	if (!hex_bytes(v + 3, trace_id, 16) || !hex_bytes(v + 36, parent_id, 8) ||
	    !hex_bytes(v + 53, &flags, 1) || all_zero(trace_id, 16) ||
	    all_zero(parent_id, 8))
		return -EINVAL;
	memcpy(t->trace_id, trace_id, 16);
	memcpy(t->parent_id, parent_id, 8);
	t->flags = flags;
	return 0;
}

/* n random bytes, not all zero. */
static void random_id(uint8_t *out, size_t n, trace_rand_fn rnd, void *arg)
{
	uint64_t w = 0;
	size_t i;

	do {
		for (i = 0; i < n; i++) {
			if (i % 8 == 0)
				w = rnd(arg);
			out[i] = (uint8_t)w;
			w >>= 8;
		}
	} while (all_zero(out, n));
}

void trace_begin(struct trace *t, const char *tp, size_t tp_len, int count,
		 int sample_percent, trace_rand_fn rnd, void *arg)
{
	memset(t, 0, sizeof(*t));
	t->joined = count == 1 && tp && trace_parse(tp, tp_len, t) == 0;
	if (!t->joined) {
		random_id(t->trace_id, sizeof(t->trace_id), rnd, arg);
		if (sample_percent > 0 &&
		    rnd(arg) % 100 < (uint64_t)sample_percent)
			t->flags = 1;
	}
	random_id(t->span_id, sizeof(t->span_id), rnd, arg);
}

void trace_hex(const uint8_t *id, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[2 * n] = '\0';
}

void trace_format(const struct trace *t, char out[TRACE_PARENT_LEN + 1])
{
	memcpy(out, "00-", 3);
	trace_hex(t->trace_id, 16, out + 3);
	out[35] = '-';
	trace_hex(t->span_id, 8, out + 36);
	out[52] = '-';
	trace_hex(&t->flags, 1, out + 53);
}

bool trace_state_ok(size_t len)
{
	return len <= TRACE_STATE_MAX;
}
