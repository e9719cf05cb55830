/* admin_json.c - the live view as JSON: requests in flight, cancellations and the summary, any bytes escaped. */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "admin_json.h"
#include "context.h"
#include "watch.h"

/* The length of the valid UTF-8 sequence at p (n bytes left), or 0: a
 * stray continuation byte, a truncated sequence, an overlong form, a
 * surrogate or a code point above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	uint32_t cp;
	size_t len, i;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void admin_json_string(FILE *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, len;

	if (!s) {
		fputs("null", out);
		return;
	}
	n = strnlen(s, n);
	fputc('"', out);
	while (i < n) {
		if (p[i] == '"' || p[i] == '\\') {
			fputc('\\', out);
			fputc(p[i++], out);
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			fprintf(out, "\\u%04x", p[i++]);
		} else {
			len = utf8_seq(p + i, n - i);
			if (len)
				fwrite(p + i, 1, len, out);
			else
				fputs("\\ufffd", out);
			i += len ? len : 1;
		}
	}
	fputc('"', out);
}

void admin_json_time(FILE *out, int64_t unix_ms)
{
	time_t secs = (time_t)(unix_ms / 1000);
	struct tm tm;

	if (unix_ms < 0 || !gmtime_r(&secs, &tm)) {
		fputs("null", out);
		return;
	}
	fprintf(out, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, (int)(unix_ms % 1000));
}

/* ,"key":"value" for a fixed-size string field. */
static void field_str(FILE *out, const char *key, const char *s, size_t n)
{
	fprintf(out, ",\"%s\":", key);
	admin_json_string(out, s, n);
}

/* A route name, null when there is none (yet). */
static void field_route(FILE *out, const char *route, size_t n)
{
	if (route[0])
		field_str(out, "route", route, n);
	else
		fputs(",\"route\":null", out);
}

void admin_json_request(FILE *out, const struct watch_req *r)
{
	fputs("{\"id\":", out);
	admin_json_string(out, r->id, sizeof(r->id));
	field_str(out, "method", r->method, sizeof(r->method));
	field_str(out, "path", r->path, sizeof(r->path));
	field_route(out, r->route, sizeof(r->route));
	field_str(out, "phase", r->phase, SIZE_MAX);
	fprintf(out, ",\"age_ms\":%" PRId64, r->age_us / 1000);
	if (r->budget_left_us == -1)
		fputs(",\"budget_left_ms\":null", out);
	else    /* a deadline just passed, its cancellation on its way */
		fprintf(out, ",\"budget_left_ms\":%" PRId64,
			r->budget_left_us > 0 ? r->budget_left_us / 1000 : 0);
	fprintf(out, ",\"attempts\":%d,\"worker\":%d}", r->attempts, r->worker);
}

void admin_json_cancel(FILE *out, const struct watch_cancel *c, uint64_t seq)
{
	fprintf(out, "{\"seq\":%" PRIu64 ",\"time\":", seq);
	admin_json_time(out, c->unix_ms);
	fprintf(out, ",\"unix_ms\":%" PRId64, c->unix_ms);
	field_str(out, "id", c->id, sizeof(c->id));
	field_str(out, "method", c->method, sizeof(c->method));
	field_str(out, "path", c->path, sizeof(c->path));
	field_route(out, c->route, sizeof(c->route));
	field_str(out, "cause", c->cause, SIZE_MAX);
	field_str(out, "phase", c->phase, SIZE_MAX);
	fprintf(out, ",\"status\":%d", c->status);
	if (c->propagation_us < 0)
		fputs(",\"propagation_us\":null", out);
	else
		fprintf(out, ",\"propagation_us\":%" PRId64, c->propagation_us);
	fprintf(out, ",\"worker\":%d}", c->worker);
}

/* Counts by cause name, of the causes a cancellation has. */
static void json_totals(FILE *out, const uint64_t *totals)
{
	const char *sep = "";
	int cause;

	fputc('{', out);
	for (cause = CTX_CAUSE_CLIENT_DISCONNECT; cause < CTX_CAUSE__COUNT;
	     cause++) {
		fprintf(out, "%s\"%s\":%" PRIu64, sep,
			ctx_cause_name((ctx_cause_t)cause), totals[cause]);
		sep = ",";
	}
	fputc('}', out);
}

void admin_json_summary(FILE *out, const struct admin_json_summary *s)
{
	size_t i;
	int w;

	fprintf(out, "{\"complete\":%s,\"workers\":[",
		s->complete ? "true" : "false");
	for (w = 0; w < s->nworkers; w++) {
		if (w)
			fputc(',', out);
		if (s->per_worker[w] == ADMIN_JSON_NO_ANSWER)
			fputs("null", out);
		else
			fprintf(out, "%zu", s->per_worker[w]);
	}
	fputs("],\"requests\":[", out);
	for (i = 0; i < s->nreqs; i++) {
		if (i)
			fputc(',', out);
		admin_json_request(out, &s->reqs[i]);
	}
	fputs("],\"totals\":", out);
	json_totals(out, s->totals);
	fputc('}', out);
}
