/* test_otlp.c - unit tests for the span exporter against a collector in the test: the JSON, batching, drops, retries, stop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "context.h"
#include "metrics.h"
#include "otlp.h"

#define STEP_MS 10
#define WAIT_MAX_MS 20000        /* bounded waits: generous, never hoped */
#define MAX_BODIES 64
#define BODY_MAX (16 << 20)
#define NS_PER_MS 1000000LL

/* ---- a tiny OTLP collector: one request per connection ---- */

struct collector {
	int fd, port;
	atomic_int status;       /* the answer */
	atomic_int fail_first;   /* this many get `status`, then 200 */
	atomic_bool silent;      /* read, never answer (until stopped) */
	atomic_bool stop;
	atomic_int posts;        /* requests read whole */
	atomic_int bad_heads;    /* not "POST /v1/traces" with JSON type */
	pthread_mutex_t lock;
	char *bodies[MAX_BODIES];
	int nbodies;
	pthread_t thread;
};

/* Read from c into buf until `want` bytes are there (or the head's end
 * when want is 0).  Returns the bytes read, -1 on EOF or 5 s of quiet. */
static ssize_t read_some(int c, char *buf, size_t cap, size_t have,
			 size_t want)
{
	struct pollfd p = { .fd = c, .events = POLLIN };
	ssize_t n;

	while (want ? have < want : !memmem(buf, have, "\r\n\r\n", 4)) {
		if (have == cap || poll(&p, 1, 5000) != 1)
			return -1;
		n = read(c, buf + have, cap - have);
		if (n <= 0)
			return -1;
		have += (size_t)n;
	}
	return (ssize_t)have;
}

/* The body of the request on c (NUL-ended, the caller frees), or NULL. */
static char *read_request(struct collector *k, int c)
{
	char *buf = malloc(BODY_MAX + 1), *end, *cl, *body;
	ssize_t have = read_some(c, buf, BODY_MAX, 0, 0);
	size_t head, len;

	if (have < 0)
		goto free_buf;
	buf[have] = '\0';
	end = strstr(buf, "\r\n\r\n");
	head = (size_t)(end - buf) + 4;
	*end = '\0';
	if (strncmp(buf, "POST /v1/traces ", 16) != 0 ||
	    !strcasestr(buf, "\r\nContent-Type: application/json"))
		atomic_fetch_add(&k->bad_heads, 1);
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (!cl)
		goto free_buf;
	len = strtoul(cl + 17, NULL, 10);
	if (len > BODY_MAX - head ||
	    read_some(c, buf, BODY_MAX, (size_t)have, head + len) < 0)
		goto free_buf;
	body = malloc(len + 1);
	memcpy(body, buf + head, len);
	body[len] = '\0';
	free(buf);
	return body;
free_buf:
	free(buf);
	return NULL;
}

static void collector_answer(struct collector *k, int c)
{
	char *body = read_request(k, c), reply[128];
	int n, status;

	if (!body)
		return;
	pthread_mutex_lock(&k->lock);
	if (k->nbodies < MAX_BODIES)
		k->bodies[k->nbodies++] = body;
	else
		free(body);
	pthread_mutex_unlock(&k->lock);
	n = atomic_fetch_add(&k->posts, 1);
	while (atomic_load(&k->silent) && !atomic_load(&k->stop))
		poll(NULL, 0, STEP_MS);
	status = n < atomic_load(&k->fail_first) ? atomic_load(&k->status) : 200;
	n = snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\nContent-Length: 2"
		     "\r\nConnection: close\r\n\r\n{}", status);
	/* The exporter may have left (a stop): no SIGPIPE. */
	if (send(c, reply, (size_t)n, MSG_NOSIGNAL) != n)
		fprintf(stderr, "collector: answer not sent\n");
}

static void *collector_main(void *arg)
{
	struct collector *k = arg;
	struct pollfd p = { .fd = k->fd, .events = POLLIN };
	int c;

	while (!atomic_load(&k->stop)) {
		if (poll(&p, 1, STEP_MS) != 1)
			continue;
		c = accept(k->fd, NULL, NULL);
		if (c < 0)
			continue;
		collector_answer(k, c);
		close(c);
	}
	return NULL;
}

/* A socket bound to 127.0.0.1 on a port of the kernel's choice. */
static int bind_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A collector answering `status` to the first fail_first requests, 200
 * after. */
static struct collector *collector_start(int status, int fail_first)
{
	struct collector *k = calloc(1, sizeof(*k));

	assert_non_null(k);
	k->fd = bind_any(&k->port);
	assert_int_equal(listen(k->fd, 64), 0);
	atomic_store(&k->status, status);
	atomic_store(&k->fail_first, fail_first);
	pthread_mutex_init(&k->lock, NULL);
	assert_int_equal(pthread_create(&k->thread, NULL, collector_main, k), 0);
	return k;
}

static void collector_stop(struct collector *k)
{
	int i;

	atomic_store(&k->stop, true);
	pthread_join(k->thread, NULL);
	close(k->fd);
	for (i = 0; i < k->nbodies; i++)
		free(k->bodies[i]);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

/* Body i, once it arrived (bounded wait); NULL if it never did. */
static const char *body_at(struct collector *k, int i)
{
	const char *b = NULL;
	int waited;

	for (waited = 0; waited < WAIT_MAX_MS; waited += STEP_MS) {
		pthread_mutex_lock(&k->lock);
		b = i < k->nbodies ? k->bodies[i] : NULL;
		pthread_mutex_unlock(&k->lock);
		if (b)
			return b;
		poll(NULL, 0, STEP_MS);
	}
	return NULL;
}

/* A port nothing listens on: bound, then let go. */
static int free_port(void)
{
	int port, fd = bind_any(&port);

	close(fd);
	return port;
}

static struct otlp *exporter(int port)
{
	char url[64];
	struct otlp *o;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", port);
	o = otlp_new(url, "ctxproxy-test");
	assert_non_null(o);
	return o;
}

static struct otlp_stats stats_of(struct otlp *o)
{
	struct otlp_stats s;

	otlp_stats(o, &s);
	return s;
}

/* Wait (bounded) until o has exported + dropped at least n spans. */
static bool wait_settled(struct otlp *o, uint64_t n)
{
	struct otlp_stats s;
	int waited;

	for (waited = 0; waited < WAIT_MAX_MS; waited += STEP_MS) {
		s = stats_of(o);
		if (s.exported + s.dropped >= n)
			return true;
		poll(NULL, 0, STEP_MS);
	}
	return false;
}

static int64_t ms_since(int64_t t0)
{
	return (ctx_now_ns() - t0) / NS_PER_MS;
}

/* ---- a strict JSON checker (RFC 8259, UTF-8 by RFC 3629) ---- */

static const char *json_value(const char *p, int depth);

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* One UTF-8 sequence at p: its length, 0 if ill-formed. */
static size_t utf8_ok(const unsigned char *p)
{
	int n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 :
		*p >= 0xe0 && *p <= 0xef ? 3 : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
	unsigned cp = n == 2 ? *p & 0x1f : n == 3 ? *p & 0x0f : *p & 0x07;
	int i;

	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return (size_t)n;
}

static const char *json_string(const char *p)
{
	size_t n;

	if (*p++ != '"')
		return NULL;
	while (*p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				if (strspn(p + 1, "0123456789abcdefABCDEF") < 4)
					return NULL;
				p += 5;
			} else if (*p && strchr("\"\\/bfnrt", *p)) {
				p++;
			} else {
				return NULL;
			}
			continue;
		}
		n = utf8_ok((const unsigned char *)p);
		if (!n)
			return NULL;
		p += n;
	}
	return p + 1;
}

static const char *json_number(const char *p)
{
	const char *s = p;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		p += strspn(p, "0123456789");
	else
		return NULL;
	if (*p == '.' && p[1] >= '0' && p[1] <= '9')
		p += 1 + strspn(p + 1, "0123456789");
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '+' || *p == '-';
		if (*p < '0' || *p > '9')
			return NULL;
		p += strspn(p, "0123456789");
	}
	return p > s ? p : NULL;
}

/* Members or elements up to `close`; objects want "key": first. */
static const char *json_list(const char *p, char close, bool object,
			     int depth)
{
	p = json_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			p = json_string(json_ws(p));
			if (!p || *(p = json_ws(p)) != ':')
				return NULL;
			p++;
		}
		p = json_value(p, depth + 1);
		if (!p)
			return NULL;
		p = json_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *p, int depth)
{
	if (depth > 64)
		return NULL;
	p = json_ws(p);
	if (*p == '{')
		return json_list(p, '}', true, depth);
	if (*p == '[')
		return json_list(p, ']', false, depth);
	if (*p == '"')
		return json_string(p);
	if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
		return p + 4;
	if (!strncmp(p, "false", 5))
		return p + 5;
	return json_number(p);
}

static bool json_valid(const char *s)
{
	const char *end = json_value(s, 0);

	return end && *json_ws(end) == '\0';
}

static int occurrences(const char *s, const char *what)
{
	int n = 0;

	while ((s = strstr(s, what)) != NULL) {
		n++;
		s += strlen(what);
	}
	return n;
}

/* ---- spans ---- */

static void span_fill(struct otlp_span *s, int i)
{
	int j;

	memset(s, 0, sizeof(*s));
	for (j = 0; j < 16; j++)
		s->trace_id[j] = (uint8_t)(0xa0 + j);
	for (j = 0; j < 8; j++)
		s->span_id[j] = (uint8_t)(i >> (j % 4 * 8));
	s->span_id[7] = 0x5e;
	s->start_unix_ns = 1700000000000000000LL + i;
	s->end_unix_ns = s->start_unix_ns + 2500000;
	snprintf(s->method, sizeof(s->method), "GET");
	snprintf(s->path, sizeof(s->path), "/items/%d?q=1", i);
	s->status = 200;
	s->cause = "completed";
	s->propagation_ns = -1;
}

/* The fields of one span arrive where OTLP JSON puts them. */
static void test_fields(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;
	const char *b;

	(void)state;
	span_fill(&s, 1);
	s.has_parent = true;
	memcpy(s.parent_id, "\x01\x23\x45\x67\x89\xab\xcd\xef", 8);
	snprintf(s.route, sizeof(s.route), "api");
	s.status = 499;
	s.upstream_status = 504;
	s.attempts = 3;
	s.cause = "client_disconnect";
	s.phase = "upstream_wait";
	s.propagation_ns = 1234567;
	s.error = true;
	assert_int_equal(otlp_submit(o, &s), 0);
	otlp_stop(o, 10000);
	assert_int_equal(stats_of(o).exported, 1);
	assert_int_equal(stats_of(o).failed_posts, 0);
	b = body_at(k, 0);
	assert_non_null(b);
	assert_true(json_valid(b));
	assert_int_equal(atomic_load(&k->bad_heads), 0);
	assert_non_null(strstr(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":"
			       "[{\"key\":\"service.name\",\"value\":{\"stringValue\":"
			       "\"ctxproxy-test\"}}]},\"scopeSpans\":[{\"scope\":"
			       "{\"name\":\"ctxproxy\"},\"spans\":[{"));
	assert_non_null(strstr(b, "\"traceId\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\""));
	assert_non_null(strstr(b, "\"spanId\":\"010000000100005e\""));
	assert_non_null(strstr(b, "\"parentSpanId\":\"0123456789abcdef\""));
	assert_non_null(strstr(b, "\"name\":\"GET api\",\"kind\":2,"));
	assert_non_null(strstr(b, "\"startTimeUnixNano\":\"1700000000000000001\","
			       "\"endTimeUnixNano\":\"1700000000002500001\""));
	assert_non_null(strstr(b, "{\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"GET\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"url.path\",\"value\":{\"stringValue\":\"/items/1?q=1\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"499\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"ctxproxy.upstream_status\",\"value\":{\"intValue\":\"504\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"http.route\",\"value\":{\"stringValue\":\"api\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"ctxproxy.cause\",\"value\":{\"stringValue\":\"client_disconnect\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"ctxproxy.phase\",\"value\":{\"stringValue\":\"upstream_wait\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"ctxproxy.propagation_us\",\"value\":{\"intValue\":\"1234\"}}"));
	assert_non_null(strstr(b, "{\"key\":\"ctxproxy.attempts\",\"value\":{\"intValue\":\"3\"}}"));
	assert_non_null(strstr(b, "\"status\":{\"code\":2}}]}]}]}"));
	otlp_free(o);
	collector_stop(k);
}

/* A plain span: what is not set is left out (no parent, route, upstream
 * status, phase, propagation, attempts, error status). */
static void test_optional_left_out(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;
	const char *b;

	(void)state;
	span_fill(&s, 2);
	assert_int_equal(otlp_submit(o, &s), 0);
	otlp_stop(o, 10000);
	b = body_at(k, 0);
	assert_non_null(b);
	assert_true(json_valid(b));
	assert_non_null(strstr(b, "\"name\":\"GET\",\"kind\":2,"));
	assert_non_null(strstr(b, "\"stringValue\":\"completed\""));
	assert_null(strstr(b, "parentSpanId"));
	assert_null(strstr(b, "http.route"));
	assert_null(strstr(b, "upstream_status"));
	assert_null(strstr(b, "ctxproxy.phase"));
	assert_null(strstr(b, "propagation_us"));
	assert_null(strstr(b, "attempts"));
	assert_null(strstr(b, "\"status\""));
	otlp_free(o);
	collector_stop(k);
}

/* A scrape's value of a global counter. */
static long long metric(const char *series)
{
	char *buf = NULL, *p;
	size_t len = 0, n = strlen(series);
	FILE *out = open_memstream(&buf, &len);
	long long v = -1;

	assert_non_null(out);
	assert_int_equal(metrics_write(out, 0), 0);
	assert_int_equal(fclose(out), 0);
	for (p = buf; (p = strstr(p, series)) != NULL; p += n)
		if ((p == buf || p[-1] == '\n') && p[n] == ' ')
			v = strtoll(p + n + 1, NULL, 10);
	free(buf);
	return v;
}

/* 600 spans at once: a full batch of 512 goes at once, the other 88 when
 * the oldest has waited 1 s. */
static void test_batching(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	long long before = metric("ctxproxy_trace_spans_exported_total");
	struct otlp_span s;
	const char *b;
	int i;

	(void)state;
	for (i = 0; i < 600; i++) {
		span_fill(&s, i);
		assert_int_equal(otlp_submit(o, &s), 0);
	}
	b = body_at(k, 0);
	assert_non_null(b);
	assert_true(json_valid(b));
	assert_int_equal(occurrences(b, "\"spanId\":"), 512);
	b = body_at(k, 1);
	assert_non_null(b);
	assert_true(json_valid(b));
	assert_int_equal(occurrences(b, "\"spanId\":"), 88);
	assert_non_null(strstr(b, "\"url.path\",\"value\":{\"stringValue\":\"/items/599?q=1\"}"));
	assert_true(wait_settled(o, 600));
	assert_int_equal(stats_of(o).exported, 600);
	assert_int_equal(metric("ctxproxy_trace_spans_exported_total") - before,
			 600);
	otlp_free(o);
	assert_int_equal(atomic_load(&k->posts), 2);
	collector_stop(k);
}

/* A lone span waits for company about 1 s, not for ever. */
static void test_age_flush(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;
	int64_t t0, ms;

	(void)state;
	span_fill(&s, 7);
	t0 = ctx_now_ns();
	assert_int_equal(otlp_submit(o, &s), 0);
	assert_non_null(body_at(k, 0));
	ms = ms_since(t0);
	assert_true(ms >= 950);
	assert_true(ms < 6000);
	assert_true(wait_settled(o, 1));
	assert_int_equal(stats_of(o).exported, 1);
	otlp_free(o);
	collector_stop(k);
}

/* While the thread waits on a collector that does not answer, the queue
 * fills: each span over is refused with -ENOSPC and counted; every span
 * is exported or dropped in the end. */
static void test_queue_full(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	long long before = metric("ctxproxy_trace_spans_dropped_total");
	int i, refused = 0, total = OTLP_QUEUE_MAX + OTLP_BATCH_MAX + 100;
	struct otlp_span s;
	int rc;

	(void)state;
	atomic_store(&k->silent, true);
	span_fill(&s, 1);
	for (i = 0; i < total; i++) {
		rc = otlp_submit(o, &s);
		assert_true(rc == 0 || rc == -ENOSPC);
		refused += rc == -ENOSPC;
	}
	/* The thread took at most one batch (its POST hangs). */
	assert_true(refused >= 100 && refused <= OTLP_BATCH_MAX + 100);
	assert_int_equal(stats_of(o).dropped, refused);
	assert_int_equal(otlp_submit(o, &s), -ENOSPC);
	otlp_stop(o, 0);
	assert_int_equal(stats_of(o).exported, 0);
	assert_int_equal(stats_of(o).dropped, total + 1);
	assert_int_equal(metric("ctxproxy_trace_spans_dropped_total") - before,
			 total + 1);
	/* Stopped: nothing more is taken. */
	assert_int_equal(otlp_submit(o, &s), -ENOSPC);
	assert_int_equal(stats_of(o).dropped, total + 2);
	otlp_free(o);
	collector_stop(k);
}

/* A collector answering `status` each time: the posts made, then the
 * batch is dropped. */
static void check_given_up(int status, int posts)
{
	struct collector *k = collector_start(status, 1000);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;

	span_fill(&s, 3);
	assert_int_equal(otlp_submit(o, &s), 0);
	assert_true(wait_settled(o, 1));
	assert_int_equal(stats_of(o).dropped, 1);
	assert_int_equal(stats_of(o).exported, 0);
	assert_int_equal(stats_of(o).failed_posts, posts);
	assert_int_equal(atomic_load(&k->posts), posts);
	otlp_free(o);
	collector_stop(k);
}

/* 500 and 429 are tried 4 times (backoff 100, 400, 1600 ms); a 400 is
 * not tried again. */
static void test_retry_then_drop(void **state)
{
	(void)state;
	check_given_up(500, 4);
	check_given_up(429, 4);
	check_given_up(400, 1);
}

/* A 503 then a 200: the retry delivers the batch. */
static void test_retry_then_ok(void **state)
{
	struct collector *k = collector_start(503, 1);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;

	(void)state;
	span_fill(&s, 4);
	assert_int_equal(otlp_submit(o, &s), 0);
	assert_true(wait_settled(o, 1));
	assert_int_equal(stats_of(o).exported, 1);
	assert_int_equal(stats_of(o).failed_posts, 1);
	assert_int_equal(atomic_load(&k->posts), 2);
	assert_true(json_valid(body_at(k, 1)));
	assert_string_equal(body_at(k, 0), body_at(k, 1));
	otlp_free(o);
	collector_stop(k);
}

/* No collector: submitting stays a copy (10000 in well under a second
 * even on a loaded machine), while the thread fails its posts. */
static void test_dead_collector_submit_fast(void **state)
{
	struct otlp *o = exporter(free_port());
	struct otlp_span s;
	int64_t t0;
	int i;

	(void)state;
	span_fill(&s, 5);
	for (i = 0; i < OTLP_BATCH_MAX; i++)
		otlp_submit(o, &s);
	t0 = ctx_now_ns();
	for (i = 0; i < 10000; i++)
		otlp_submit(o, &s);
	assert_true(ms_since(t0) < 2000);
	t0 = ctx_now_ns();
	otlp_free(o);
	assert_true(ms_since(t0) < 1000);
}

/* otlp_stop sends what is queued without waiting for the batch's age. */
static void test_stop_flushes(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;
	int64_t t0;
	int i, spans = 0;

	(void)state;
	for (i = 0; i < 1000; i++) {
		span_fill(&s, i);
		assert_int_equal(otlp_submit(o, &s), 0);
	}
	t0 = ctx_now_ns();
	otlp_stop(o, 10000);
	assert_true(ms_since(t0) < 10000);
	assert_int_equal(stats_of(o).exported, 1000);
	assert_int_equal(stats_of(o).dropped, 0);
	for (i = 0; i < atomic_load(&k->posts); i++)
		spans += occurrences(body_at(k, i), "\"spanId\":");
	assert_int_equal(spans, 1000);
	otlp_stop(o, 10000);      /* idempotent */
	otlp_free(o);
	collector_stop(k);
}

/* With the collector down, otlp_stop returns within its grace (the
 * backoffs do not outlast it) and counts what is left. */
static void test_stop_dead_collector(void **state)
{
	struct otlp *o = exporter(free_port());
	struct otlp_span s;
	int64_t t0, ms;
	int i;

	(void)state;
	span_fill(&s, 6);
	for (i = 0; i < 100; i++)
		assert_int_equal(otlp_submit(o, &s), 0);
	t0 = ctx_now_ns();
	otlp_stop(o, 300);
	ms = ms_since(t0);
	assert_true(ms < 300 + 1000);
	assert_int_equal(stats_of(o).dropped, 100);
	assert_int_equal(stats_of(o).exported, 0);
	assert_true(stats_of(o).failed_posts >= 1);
	otlp_free(o);
}

/* A collector that takes the POST and never answers: the stop cuts the
 * POST in flight at the end of the grace, not at its 5 s timeout. */
static void test_stop_silent_collector(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;
	int64_t t0, ms;

	(void)state;
	atomic_store(&k->silent, true);
	span_fill(&s, 8);
	assert_int_equal(otlp_submit(o, &s), 0);
	assert_non_null(body_at(k, 0));    /* the POST is in flight */
	t0 = ctx_now_ns();
	otlp_stop(o, 200);
	ms = ms_since(t0);
	assert_true(ms >= 150);
	assert_true(ms < 200 + 1000);
	assert_int_equal(stats_of(o).dropped, 1);
	assert_int_equal(stats_of(o).exported, 0);
	otlp_free(o);
	collector_stop(k);
}

/* Whatever bytes the client sent, the body is valid JSON in valid UTF-8:
 * quotes and backslashes escaped, control bytes as \u00XX, well-formed
 * UTF-8 kept, every other byte U+FFFD. */
static void test_escaping(void **state)
{
	struct collector *k = collector_start(200, 0);
	struct otlp *o = exporter(k->port);
	struct otlp_span s;
	const char *b;

	(void)state;
	span_fill(&s, 9);
	snprintf(s.path, sizeof(s.path), "%s",
		 "/a\"b\\c\x01\n\t\x7f"
		 "\xc3\xa9"            /* e acute: kept */
		 "\xf0\x9f\x98\x80"    /* U+1F600: kept */
		 "\xff"                /* never in UTF-8 */
		 "\xc3("               /* lead without its tail */
		 "\xc0\xaf"            /* overlong '/' */
		 "\xed\xa0\x80"        /* a surrogate */
		 "\xf4\x90\x80\x80"    /* above U+10FFFF */
		 "\xe2\x82");          /* cut short at the end */
	snprintf(s.method, sizeof(s.method), "%s", "GE\"T");
	snprintf(s.route, sizeof(s.route), "%s", "r\\\x80");
	assert_int_equal(otlp_submit(o, &s), 0);
	otlp_stop(o, 10000);
	b = body_at(k, 0);
	assert_non_null(b);
	assert_true(json_valid(b));
	assert_non_null(strstr(b, "{\"key\":\"url.path\",\"value\":{\"stringValue\":"
			       "\"/a\\\"b\\\\c\\u0001\\u000a\\u0009\x7f"
			       "\xc3\xa9\xf0\x9f\x98\x80"
			       "\\ufffd\\ufffd(\\ufffd\\ufffd"
			       "\\ufffd\\ufffd\\ufffd"
			       "\\ufffd\\ufffd\\ufffd\\ufffd"
			       "\\ufffd\\ufffd\"}}"));
	assert_non_null(strstr(b, "\"name\":\"GE\\\"T r\\\\\\ufffd\""));
	otlp_free(o);
	collector_stop(k);
}

/* Bad arguments, and the no-ops. */
static void test_new_invalid(void **state)
{
	(void)state;
	errno = 0;
	assert_null(otlp_new("ftp://127.0.0.1/v1/traces", "x"));
	assert_int_equal(errno, EINVAL);
	assert_null(otlp_new("127.0.0.1:4318", "x"));
	assert_null(otlp_new(NULL, "x"));
	assert_null(otlp_new("http://127.0.0.1:1/v1/traces", NULL));
	otlp_stop(NULL, 0);
	otlp_free(NULL);
}

static int setup(void **state)
{
	(void)state;
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_invalid),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_optional_left_out),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_batching),
		cmocka_unit_test(test_age_flush),
		cmocka_unit_test(test_queue_full),
		cmocka_unit_test(test_retry_then_drop),
		cmocka_unit_test(test_retry_then_ok),
		cmocka_unit_test(test_dead_collector_submit_fast),
		cmocka_unit_test(test_stop_flushes),
		cmocka_unit_test(test_stop_dead_collector),
		cmocka_unit_test(test_stop_silent_collector),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
