/* otlp.c - sampled request spans exported as OTLP/HTTP JSON, from a bounded queue, on a thread of their own. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "context.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define POST_TIMEOUT_MS 5000L
#define CONNECT_TIMEOUT_MS 2000L
#define POLL_MAX_MS 1000        /* libcurl's own timers shorten it */
#define GRACE_MAX_MS (24LL * 3600 * 1000)
#define BODY_START (64 * 1024)  /* grows to fit a batch */
#define NO_STOP INT64_MAX

/* The waits before the second, third and fourth try of a failed POST. */
static const int64_t backoff_ms[] = { 100, 400, 1600 };
#define TRIES ((int)(sizeof(backoff_ms) / sizeof(backoff_ms[0])) + 1)

struct queued {
	struct otlp_span s;
	int64_t at_ns;            /* when it was queued (monotonic) */
};

/* A growable byte buffer; once an append fails, oom sticks and the rest
 * are no-ops, so an encoder checks once at the end. */
struct jbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

enum post { POST_OK, POST_RETRY, POST_GIVE_UP, POST_STOPPED };

struct otlp {
	/* lock guards ring, head, count and closed.  wake tells the thread
	 * of a first span, a full batch, or a stop. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct queued *ring;      /* OTLP_QUEUE_MAX, preallocated */
	size_t head, count;
	bool closed;              /* stopped: submits are dropped */
	/* When the thread must be done (monotonic), NO_STOP until otlp_stop:
	 * written under lock, read without it by the POST in flight. */
	_Atomic int64_t stop_at;
	bool running;             /* the thread is to be joined (main thread) */
	pthread_t thread;
	_Atomic uint64_t exported, dropped, failed_posts;
	/* The thread's own, after otlp_new. */
	char *endpoint, *service;
	struct otlp_span *batch;  /* OTLP_BATCH_MAX */
	struct jbuf body;
	CURLM *multi;             /* one easy at a time: a poll stop can wake */
	CURL *easy;
	struct curl_slist *headers;
	bool failing;             /* the last batch was given up (logged once) */
	long last_status;         /* of the last try: 0 = no answer */
	CURLcode last_rc;
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void drop(struct otlp *o, uint64_t n)
{
	count(&o->dropped, n);
	metrics_trace_spans(METRICS_SPAN_DROPPED, n);
}

/* ---- the JSON encoding ---- */

static bool jb_reserve(struct jbuf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : BODY_START;
	char *p;

	if (b->oom)
		return false;
	if (b->len + n <= b->cap)
		return true;
	while (cap < b->len + n)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
	if (!jb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void jb_puts(struct jbuf *b, const char *s)
{
	jb_put(b, s, strlen(s));
}

static bool utf8_tail(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0.  s is
 * NUL-ended: a NUL is no continuation byte, so it never reads past it. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return utf8_tail(s[1]) ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		lo = c == 0xe0 ? 0xa0 : lo;
		hi = c == 0xed ? 0x9f : hi;
		return s[1] >= lo && s[1] <= hi && utf8_tail(s[2]) ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		lo = c == 0xf0 ? 0x90 : lo;
		hi = c == 0xf4 ? 0x8f : hi;
		return s[1] >= lo && s[1] <= hi && utf8_tail(s[2]) &&
		       utf8_tail(s[3]) ? 4 : 0;
	}
	return 0;
}

/* s as a JSON string: quotes and backslashes escaped, control bytes as
 * \u00XX, and each byte that starts no well-formed UTF-8 sequence as
 * U+FFFD, so the body is valid JSON in valid UTF-8 whatever the client
 * sent.  NULL is written as "". */
static bool json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The body of s as a JSON string (no quotes): runs of plain ASCII are
 * copied at once, the rest escaped or checked one sequence at a time. */
static void jb_str_body(struct jbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	const unsigned char *run;
	char esc[8];
	size_t n;

	while (*p) {
		for (run = p; json_plain(*p); p++)
			;
		if (p > run)
			jb_put(b, (const char *)run, (size_t)(p - run));
		if (!*p)
			break;
		n = utf8_len(p);
		if (n == 0) {
			jb_puts(b, "\\ufffd");
			n = 1;
		} else if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			jb_put(b, esc, 2);
		} else if (*p < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			jb_put(b, esc, 6);
		} else {
			jb_put(b, (const char *)p, n);
		}
		p += n;
	}
}

static void jb_str(struct jbuf *b, const char *s)
{
	jb_put(b, "\"", 1);
	jb_str_body(b, s);
	jb_put(b, "\"", 1);
}

/* id as a quoted lowercase hex string (the OTLP JSON form of ids). */
static void jb_hex(struct jbuf *b, const uint8_t *id, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char out[2 * 16 + 2];
	size_t i;

	out[0] = '"';
	for (i = 0; i < n && i < 16; i++) {
		out[1 + 2 * i] = digits[id[i] >> 4];
		out[2 + 2 * i] = digits[id[i] & 0xf];
	}
	out[1 + 2 * i] = '"';
	jb_put(b, out, 2 + 2 * i);
}

/* v as a quoted decimal: the proto3 JSON form of 64-bit integers. */
static void jb_i64(struct jbuf *b, int64_t v)
{
	char num[24];
	char *p = num + sizeof(num);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	*--p = '"';
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	*--p = '"';
	jb_put(b, p, (size_t)(num + sizeof(num) - p));
}

static void attr_str(struct jbuf *b, const char *sep, const char *key,
		     const char *v)
{
	/* The keys are this file's literals: nothing to escape. */
	jb_puts(b, sep);
	jb_puts(b, "{\"key\":\"");
	jb_puts(b, key);
	jb_puts(b, "\",\"value\":{\"stringValue\":");
	jb_str(b, v);
	jb_puts(b, "}}");
}

static void attr_int(struct jbuf *b, const char *key, int64_t v)
{
	jb_puts(b, ",{\"key\":\"");
	jb_puts(b, key);
	jb_puts(b, "\",\"value\":{\"intValue\":");
	jb_i64(b, v);
	jb_puts(b, "}}");
}

/* The attributes of s, the optional ones only when they say something. */
static void span_attributes(struct jbuf *b, const struct otlp_span *s)
{
	jb_puts(b, ",\"attributes\":[");
	attr_str(b, "", "http.request.method", s->method);
	attr_str(b, ",", "url.path", s->path);
	attr_int(b, "http.response.status_code", s->status);
	if (s->upstream_status)
		attr_int(b, "ctxproxy.upstream_status", s->upstream_status);
	if (s->route[0])
		attr_str(b, ",", "http.route", s->route);
	if (s->cause)
		attr_str(b, ",", "ctxproxy.cause", s->cause);
	if (s->phase)
		attr_str(b, ",", "ctxproxy.phase", s->phase);
	if (s->propagation_ns >= 0)
		attr_int(b, "ctxproxy.propagation_us", s->propagation_ns / 1000);
	if (s->attempts)
		attr_int(b, "ctxproxy.attempts", s->attempts);
	jb_puts(b, "]");
}

/* One Span object: server kind, named "METHOD route" (or "METHOD"). */
static void span_encode(struct jbuf *b, const struct otlp_span *s)
{
	jb_puts(b, "{\"traceId\":");
	jb_hex(b, s->trace_id, sizeof(s->trace_id));
	jb_puts(b, ",\"spanId\":");
	jb_hex(b, s->span_id, sizeof(s->span_id));
	if (s->has_parent) {
		jb_puts(b, ",\"parentSpanId\":");
		jb_hex(b, s->parent_id, sizeof(s->parent_id));
	}
	jb_puts(b, ",\"name\":\"");
	jb_str_body(b, s->method);
	if (s->route[0]) {
		jb_put(b, " ", 1);
		jb_str_body(b, s->route);
	}
	jb_put(b, "\"", 1);
	/* kind 2: SPAN_KIND_SERVER */
	jb_puts(b, ",\"kind\":2,\"startTimeUnixNano\":");
	jb_i64(b, s->start_unix_ns);
	jb_puts(b, ",\"endTimeUnixNano\":");
	jb_i64(b, s->end_unix_ns);
	span_attributes(b, s);
	if (s->error)  /* STATUS_CODE_ERROR; unset (0) is left out */
		jb_puts(b, ",\"status\":{\"code\":2}");
	jb_puts(b, "}");
}

/* The ExportTraceServiceRequest of batch[0..n) in o->body.  Returns 0 or
 * -ENOMEM. */
static int batch_encode(struct otlp *o, size_t n)
{
	struct jbuf *b = &o->body;
	size_t i;

	b->len = 0;
	b->oom = false;
	jb_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
	attr_str(b, "", "service.name", o->service);
	jb_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"ctxproxy\"},"
		"\"spans\":[");
	for (i = 0; i < n; i++) {
		if (i)
			jb_put(b, ",", 1);
		span_encode(b, &o->batch[i]);
	}
	jb_puts(b, "]}]}]}");
	return b->oom ? -ENOMEM : 0;
}

/* ---- the POST ---- */

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
	(void)data;
	(void)arg;
	return size * n;
}

/* The options that never change.  Returns 0 or -ENOMEM. */
static int easy_setup(struct otlp *o)
{
	struct curl_slist *h;

	o->easy = curl_easy_init();
	h = curl_slist_append(NULL, "Content-Type: application/json");
	o->headers = h;
	/* A batch is sent at once: no 100-continue round trip. */
	if (h)
		o->headers = curl_slist_append(h, "Expect:");
	if (!o->headers)
		curl_slist_free_all(h);
	if (!o->easy || !o->headers)
		return -ENOMEM;
	curl_easy_setopt(o->easy, CURLOPT_URL, o->endpoint);
	curl_easy_setopt(o->easy, CURLOPT_HTTPHEADER, o->headers);
	curl_easy_setopt(o->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(o->easy, CURLOPT_NOSIGNAL, 1L);
	/* The collector is the one configured, never an environment proxy. */
	curl_easy_setopt(o->easy, CURLOPT_PROXY, "");
	curl_easy_setopt(o->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(o->easy, CURLOPT_TIMEOUT_MS, POST_TIMEOUT_MS);
	curl_easy_setopt(o->easy, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(o->easy, CURLOPT_WRITEFUNCTION, discard);
	return 0;
}

/* How long to poll at now: until the stop's deadline, at most
 * POLL_MAX_MS, at least 1 ms. */
static int poll_ms(int64_t now, int64_t limit)
{
	int64_t ms = (limit - now + NS_PER_MS - 1) / NS_PER_MS;

	if (limit == NO_STOP || ms > POLL_MAX_MS)
		return POLL_MAX_MS;
	return ms < 1 ? 1 : (int)ms;
}

/* Run the easy handle to its end, or until the stop's deadline passes
 * (*aborted).  otlp_stop wakes the poll, so a stop is seen at once. */
static CURLcode transfer(struct otlp *o, bool *aborted)
{
	CURLcode rc = CURLE_FAILED_INIT;
	int running = 1, left;
	int64_t now, limit;
	CURLMsg *msg;

	*aborted = false;
	if (curl_multi_add_handle(o->multi, o->easy) != CURLM_OK)
		return rc;
	for (;;) {
		curl_multi_perform(o->multi, &running);
		if (!running)
			break;
		limit = atomic_load(&o->stop_at);
		now = ctx_now_ns();
		if (now >= limit) {
			*aborted = true;
			break;
		}
		curl_multi_poll(o->multi, NULL, 0, poll_ms(now, limit), NULL);
	}
	while ((msg = curl_multi_info_read(o->multi, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE)
			rc = msg->data.result;
	curl_multi_remove_handle(o->multi, o->easy);
	return rc;
}

/* POST o->body once.  A 2xx is done; no answer (refused, reset, a
 * timeout), a 429 or a 5xx is worth another try; any other status (the
 * collector refuses this body) is not; a stop's deadline ends it. */
static enum post post_once(struct otlp *o)
{
	bool aborted;
	long code = 0;

	curl_easy_setopt(o->easy, CURLOPT_POSTFIELDS, o->body.p);
	curl_easy_setopt(o->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)o->body.len);
	o->last_rc = transfer(o, &aborted);
	if (o->last_rc == CURLE_OK)
		curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &code);
	o->last_status = code;
	if (aborted)
		return POST_STOPPED;
	if (o->last_rc != CURLE_OK || code == 429 || code >= 500)
		return POST_RETRY;
	return code >= 200 && code < 300 ? POST_OK : POST_GIVE_UP;
}

/* Wait ms before another try.  False when a stop's deadline would pass
 * first: the try would not finish, give up now. */
static bool backoff(struct otlp *o, int64_t ms)
{
	int64_t end = ctx_now_ns() + ms * NS_PER_MS, now, limit;

	for (;;) {
		limit = atomic_load(&o->stop_at);
		now = ctx_now_ns();
		if (end >= limit)
			return false;
		if (now >= end)
			return true;
		curl_multi_poll(o->multi, NULL, 0, poll_ms(now, end), NULL);
	}
}

/* The log says when export starts failing and when it works again, not
 * each batch: the counters have the rest. */
static void note(struct otlp *o, bool ok)
{
	if (ok && o->failing)
		log_msg(LOG_INFO, "trace export works again", "endpoint=%s",
			o->endpoint);
	else if (!ok && !o->failing && o->last_rc != CURLE_OK)
		log_msg(LOG_WARN, "trace export failing, spans dropped",
			"endpoint=%s error=\"%s\"", o->endpoint,
			curl_easy_strerror(o->last_rc));
	else if (!ok && !o->failing)
		log_msg(LOG_WARN, "trace export failing, spans dropped",
			"endpoint=%s status=%ld", o->endpoint, o->last_status);
	o->failing = !ok;
}

/* Encode and send batch[0..n), with retries; count where it went. */
static void batch_send(struct otlp *o, size_t n)
{
	enum post r = POST_GIVE_UP;
	int i;

	if (batch_encode(o, n) < 0) {
		drop(o, n);
		return;
	}
	for (i = 0; i < TRIES; i++) {
		r = post_once(o);
		if (r == POST_OK)
			break;
		count(&o->failed_posts, 1);
		if (r != POST_RETRY || i == TRIES - 1 ||
		    !backoff(o, backoff_ms[i]))
			break;
	}
	if (r != POST_STOPPED)   /* otlp_stop tells of those */
		note(o, r == POST_OK);
	if (r != POST_OK) {
		drop(o, n);
		return;
	}
	count(&o->exported, n);
	metrics_trace_spans(METRICS_SPAN_EXPORTED, n);
}

/* ---- the queue and the thread ---- */

static void wait_until(struct otlp *o, int64_t at_ns)
{
	struct timespec ts = { .tv_sec = at_ns / NS_PER_S,
			       .tv_nsec = at_ns % NS_PER_S };

	pthread_cond_timedwait(&o->wake, &o->lock, &ts);
}

/* Under lock: wait until a batch is due and return its size, or 0 when
 * the thread is to end.  Due: OTLP_BATCH_MAX spans, or the oldest has
 * waited OTLP_BATCH_NS; once stopping, whatever is queued, until the
 * deadline. */
static size_t batch_wait(struct otlp *o)
{
	int64_t now, due, limit;

	for (;;) {
		now = ctx_now_ns();
		limit = atomic_load(&o->stop_at);
		if (limit != NO_STOP && (o->count == 0 || now >= limit))
			return 0;
		if (o->count >= OTLP_BATCH_MAX)
			return OTLP_BATCH_MAX;
		due = o->count ? o->ring[o->head].at_ns + OTLP_BATCH_NS : NO_STOP;
		if (limit != NO_STOP || now >= due)
			return o->count;
		if (o->count)
			wait_until(o, due);
		else
			pthread_cond_wait(&o->wake, &o->lock);
	}
}

/* Under lock: move the n oldest spans to batch. */
static void batch_take(struct otlp *o, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		o->batch[i] = o->ring[o->head].s;
		o->head = (o->head + 1) % OTLP_QUEUE_MAX;
	}
	o->count -= n;
}

static void *export_loop(void *arg)
{
	struct otlp *o = arg;
	size_t n;

	pthread_mutex_lock(&o->lock);
	while ((n = batch_wait(o)) > 0) {
		batch_take(o, n);
		pthread_mutex_unlock(&o->lock);
		batch_send(o, n);
		pthread_mutex_lock(&o->lock);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* ---- the API ---- */

int otlp_submit(struct otlp *o, const struct otlp_span *s)
{
	int64_t now = ctx_now_ns();
	struct queued *q;
	bool wake;

	pthread_mutex_lock(&o->lock);
	if (o->closed || o->count == OTLP_QUEUE_MAX) {
		pthread_mutex_unlock(&o->lock);
		drop(o, 1);
		return -ENOSPC;
	}
	q = &o->ring[(o->head + o->count) % OTLP_QUEUE_MAX];
	o->count++;
	/* The thread sleeps without a timer while the queue is empty, and
	 * on the oldest's age until a batch is full. */
	wake = o->count == 1 || o->count == OTLP_BATCH_MAX;
	q->s = *s;
	q->s.method[OTLP_METHOD_MAX - 1] = '\0';
	q->s.route[OTLP_ROUTE_MAX - 1] = '\0';
	q->s.path[OTLP_PATH_MAX - 1] = '\0';
	q->at_ns = now;
	pthread_mutex_unlock(&o->lock);
	if (wake)
		pthread_cond_signal(&o->wake);
	return 0;
}

/* The thread, with every signal blocked: they are the main thread's (and
 * libcurl's resolver threads inherit the mask).  Returns 0 or -errno. */
static int thread_start(struct otlp *o)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&o->thread, NULL, export_loop, o);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	o->running = rc == 0;
	return -rc;
}

/* The lock, and a condition variable timed on CLOCK_MONOTONIC (the clock
 * of ctx_now_ns, which the queue's ages use).  Returns 0 or -errno. */
static int sync_init(struct otlp *o)
{
	pthread_condattr_t attr;
	int rc;

	rc = pthread_condattr_init(&attr);
	if (rc != 0)
		return -rc;
	rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(&o->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (rc != 0)
		return -rc;
	rc = pthread_mutex_init(&o->lock, NULL);
	if (rc != 0)
		pthread_cond_destroy(&o->wake);
	return -rc;
}

static bool is_http_url(const char *s)
{
	return strncasecmp(s, "http://", 7) == 0 ||
	       strncasecmp(s, "https://", 8) == 0;
}

/* Everything but the lock and the thread.  Returns 0 or -errno (what was
 * made is freed by mem_free). */
static int mem_init(struct otlp *o, const char *endpoint,
		    const char *service_name)
{
	o->endpoint = strdup(endpoint);
	o->service = strdup(service_name);
	o->ring = calloc(OTLP_QUEUE_MAX, sizeof(*o->ring));
	o->batch = calloc(OTLP_BATCH_MAX, sizeof(*o->batch));
	o->multi = curl_multi_init();
	if (!o->endpoint || !o->service || !o->ring || !o->batch || !o->multi)
		return -ENOMEM;
	if (!jb_reserve(&o->body, BODY_START))
		return -ENOMEM;
	return easy_setup(o);
}

static void mem_free(struct otlp *o)
{
	curl_easy_cleanup(o->easy);
	curl_slist_free_all(o->headers);
	if (o->multi)
		curl_multi_cleanup(o->multi);
	free(o->body.p);
	free(o->batch);
	free(o->ring);
	free(o->service);
	free(o->endpoint);
}

struct otlp *otlp_new(const char *endpoint, const char *service_name)
{
	struct otlp *o;
	int rc;

	if (!endpoint || !service_name || !is_http_url(endpoint)) {
		errno = EINVAL;
		return NULL;
	}
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	atomic_init(&o->stop_at, NO_STOP);
	rc = mem_init(o, endpoint, service_name);
	if (rc < 0)
		goto free_mem;
	rc = sync_init(o);
	if (rc < 0)
		goto free_mem;
	rc = thread_start(o);
	if (rc < 0)
		goto destroy_sync;
	return o;
destroy_sync:
	pthread_cond_destroy(&o->wake);
	pthread_mutex_destroy(&o->lock);
free_mem:
	mem_free(o);
	free(o);
	errno = -rc;
	return NULL;
}

void otlp_stop(struct otlp *o, int64_t grace_ms)
{
	uint64_t before;
	size_t left;

	if (!o)
		return;
	before = atomic_load(&o->dropped);
	if (grace_ms < 0)
		grace_ms = 0;
	if (grace_ms > GRACE_MAX_MS)
		grace_ms = GRACE_MAX_MS;
	if (o->running) {
		pthread_mutex_lock(&o->lock);
		atomic_store(&o->stop_at, ctx_now_ns() + grace_ms * NS_PER_MS);
		pthread_mutex_unlock(&o->lock);
		pthread_cond_signal(&o->wake);
		/* A POST or a backoff in flight polls the multi. */
		curl_multi_wakeup(o->multi);
		pthread_join(o->thread, NULL);
		o->running = false;
	}
	pthread_mutex_lock(&o->lock);
	o->closed = true;
	left = o->count;
	o->count = 0;
	pthread_mutex_unlock(&o->lock);
	if (left)
		drop(o, left);
	if (atomic_load(&o->dropped) > before)
		log_msg(LOG_WARN, "trace export stopped, spans dropped",
			"endpoint=%s dropped=%" PRIu64, o->endpoint,
			atomic_load(&o->dropped) - before);
}

void otlp_stats(const struct otlp *o, struct otlp_stats *out)
{
	out->exported = atomic_load_explicit(&o->exported, memory_order_relaxed);
	out->dropped = atomic_load_explicit(&o->dropped, memory_order_relaxed);
	out->failed_posts = atomic_load_explicit(&o->failed_posts,
						 memory_order_relaxed);
}

void otlp_free(struct otlp *o)
{
	if (!o)
		return;
	otlp_stop(o, 0);
	pthread_cond_destroy(&o->wake);
	pthread_mutex_destroy(&o->lock);
	mem_free(o);
	free(o);
}
