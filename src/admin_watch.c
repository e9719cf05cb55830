/* admin_watch.c - the live view's hub: while someone watches, one thread snapshots every worker and keeps the merged history. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_json.h"
#include "admin_watch.h"
#include "config.h"
#include "context.h"
#include "metrics.h"
#include "watch.h"

#define NS_PER_MS 1000000LL
#define TICK_NS (250 * NS_PER_MS)    /* between snapshots while watched */
#define GAP_NS (50 * NS_PER_MS)      /* between snapshots a reader asked for */
#define LINGER_NS (5000 * NS_PER_MS) /* a JSON reader counts as watching */
#define ANSWER_MS 300                /* a worker slower than this is left out */

/* One cancellation kept, its JSON made once for every reader. */
struct hist {
	uint64_t seq;
	int64_t unix_ms;
	char *json;
	size_t len;
};

struct admin_watch {
	pthread_mutex_t lock;
	pthread_cond_t wake;              /* the hub's thread waits here */
	pthread_cond_t news;              /* readers: a snapshot is in, or stop */
	pthread_t thread;
	bool running;
	bool stopping;
	struct admin_source src;          /* src.watch NULL: no workers */
	unsigned attached;                /* attach count: cursors start over */
	long streams;
	int64_t json_at;                  /* the last admin_watch_fresh */
	uint64_t started, finished;       /* snapshots */
	uint64_t want;                    /* a reader waits for snapshot #want */
	int64_t taken_at;                 /* when the last one started */
	int64_t shown_at;                 /* when the one published started */
	char *summary;
	size_t summary_len;
	uint64_t head;                    /* seq of the newest kept */
	struct hist ring[ADMIN_WATCH_HISTORY];  /* seq s at ring[s % size] */
	/* the hub thread's alone: */
	unsigned cursors_of;              /* the attach since[] belongs to */
	uint64_t since[CONFIG_WORKERS_MAX];     /* per worker: the last seq seen */
};

/* What one snapshot brings, made off the lock. */
struct take {
	int64_t taken_at;                 /* when it started */
	char *summary;
	size_t summary_len;
	struct hist *fresh;               /* oldest first, seq not yet given */
	size_t nfresh;
};

static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t at_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(at_ns / 1000000000),
			       .tv_nsec = (long)(at_ns % 1000000000) };

	pthread_cond_timedwait(c, m, &ts);
}

/* The summary of what the snapshot shows (s NULL: nothing yet), malloc'd
 * into t.  Returns 0 or -ENOMEM. */
static int encode_summary(struct watch_snap *s, int nworkers, bool complete,
			  struct take *t)
{
	uint64_t totals[CTX_CAUSE__COUNT] = { 0 };
	size_t per_worker[CONFIG_WORKERS_MAX];
	struct admin_json_summary sum = { .complete = complete,
					  .per_worker = per_worker,
					  .totals = totals };
	FILE *out = open_memstream(&t->summary, &t->summary_len);
	int i;

	if (!out)
		return -ENOMEM;
	if (s) {
		sum.nworkers = nworkers;
		watch_snap_counts(s, per_worker);
		for (i = 0; i < nworkers; i++)
			if (!watch_snap_answered(s, i))
				per_worker[i] = ADMIN_JSON_NO_ANSWER;
		sum.reqs = watch_snap_reqs(s, &sum.nreqs);
	}
	metrics_totals_by_cause(totals);
	admin_json_summary(out, &sum);
	if (fclose(out) != 0) {
		free(t->summary);
		t->summary = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Across workers, by when they were recorded. */
static int cancel_older_first(const void *pa, const void *pb)
{
	const struct watch_cancel *a = *(const struct watch_cancel *const *)pa;
	const struct watch_cancel *b = *(const struct watch_cancel *const *)pb;

	if (a->unix_ms != b->unix_ms)
		return a->unix_ms < b->unix_ms ? -1 : 1;
	if (a->worker != b->worker)
		return a->worker < b->worker ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* One entry's JSON, numbered seq.  Returns 0 or -ENOMEM. */
static int encode_cancel(const struct watch_cancel *c, uint64_t seq,
			 struct hist *e)
{
	FILE *out = open_memstream(&e->json, &e->len);

	if (!out)
		return -ENOMEM;
	admin_json_cancel(out, c, seq);
	if (fclose(out) != 0) {
		free(e->json);
		return -ENOMEM;
	}
	e->seq = seq;
	e->unix_ms = c->unix_ms;
	return 0;
}

/* The snapshot's cancellations (each new: the workers give only those
 * after our cursors) merged by time and encoded into t; the cursors move
 * past them.  Hub thread.  An entry without memory is dropped. */
static void take_cancels(struct admin_watch *h, struct watch_snap *s,
			 struct take *t)
{
	const struct watch_cancel *all = NULL, **order;
	size_t n, i;

	all = watch_snap_cancels(s, &n);
	if (!n)
		return;
	order = malloc(n * sizeof(*order));
	t->fresh = calloc(n, sizeof(*t->fresh));
	if (order && t->fresh) {
		for (i = 0; i < n; i++)
			order[i] = &all[i];
		qsort(order, n, sizeof(*order), cancel_older_first);
		for (i = 0; i < n; i++)
			if (encode_cancel(order[i], h->head + 1 + t->nfresh,
					  &t->fresh[t->nfresh]) == 0)
				t->nfresh++;
	}
	for (i = 0; i < n; i++)
		if (all[i].worker >= 0 && all[i].worker < CONFIG_WORKERS_MAX &&
		    all[i].seq > h->since[all[i].worker])
			h->since[all[i].worker] = all[i].seq;
	free(order);
}

/* Under lock: a snapshot handed to every worker (one that cannot take it
 * is not waited for), or NULL on ENOMEM. */
static struct watch_snap *hub_ask(struct admin_watch *h)
{
	struct watch_snap *s;
	int i;

	if (h->cursors_of != h->attached) {
		memset(h->since, 0, sizeof(h->since));
		h->cursors_of = h->attached;
	}
	s = watch_snap_new(h->src.nworkers, h->since);
	if (!s)
		return NULL;
	for (i = 0; i < h->src.nworkers; i++)
		if (h->src.watch(h->src.arg, i, s) < 0)
			watch_snap_skip(s, i);
	return s;
}

/* Under lock: what t brought becomes what readers see; they are woken. */
static void hub_publish(struct admin_watch *h, struct take *t)
{
	struct hist *slot;
	size_t i;

	for (i = 0; i < t->nfresh; i++) {
		slot = &h->ring[++h->head % ADMIN_WATCH_HISTORY];
		free(slot->json);
		*slot = t->fresh[i];
	}
	if (t->summary) {
		free(h->summary);
		h->summary = t->summary;
		h->summary_len = t->summary_len;
	}
	free(t->fresh);
	h->shown_at = t->taken_at;
	h->finished++;
	pthread_cond_broadcast(&h->news);
}

/* Under lock, entered and left so: one snapshot asked, waited for off the
 * lock (bounded), encoded and published. */
static void hub_snapshot(struct admin_watch *h)
{
	struct take t = { 0 };
	struct watch_snap *s;
	int nworkers = h->src.nworkers;
	bool complete;

	h->started++;
	h->taken_at = ctx_now_ns();
	s = hub_ask(h);
	t.taken_at = h->taken_at;
	pthread_mutex_unlock(&h->lock);
	if (s) {
		complete = watch_snap_wait(s, ANSWER_MS) &&
			   watch_snap_lost(s) == 0;
		encode_summary(s, nworkers, complete, &t);
		take_cancels(h, s, &t);
		watch_snap_unref(s);
	}
	pthread_mutex_lock(&h->lock);
	hub_publish(h, &t);
}

static bool hub_watched(const struct admin_watch *h, int64_t now)
{
	return h->src.watch &&
	       (h->streams > 0 || h->json_at + LINGER_NS > now ||
		h->want > h->started);
}

/* Nothing at all while nobody watches: the thread sleeps untimed. */
static void *hub_main(void *arg)
{
	struct admin_watch *h = arg;
	int64_t now, due;

	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		now = ctx_now_ns();
		if (!hub_watched(h, now)) {
			pthread_cond_wait(&h->wake, &h->lock);
			continue;
		}
		due = h->taken_at + (h->want > h->started ? GAP_NS : TICK_NS);
		if (now < due)
			wait_until(&h->wake, &h->lock, due);
		else
			hub_snapshot(h);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* A condition variable timed on CLOCK_MONOTONIC, the clock of
 * ctx_now_ns.  Returns 0 or -errno. */
static int cond_init(pthread_cond_t *c)
{
	pthread_condattr_t attr;
	int rc = pthread_condattr_init(&attr);

	if (rc == 0) {
		rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		if (rc == 0)
			rc = pthread_cond_init(c, &attr);
		pthread_condattr_destroy(&attr);
	}
	return -rc;
}

static int sync_init(struct admin_watch *h)
{
	int rc = cond_init(&h->wake);

	if (rc < 0)
		return rc;
	rc = cond_init(&h->news);
	if (rc < 0) {
		pthread_cond_destroy(&h->wake);
		return rc;
	}
	pthread_mutex_init(&h->lock, NULL);
	return 0;
}

static void sync_destroy(struct admin_watch *h)
{
	pthread_cond_destroy(&h->news);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
}

struct admin_watch *admin_watch_new(void)
{
	struct admin_watch *h = calloc(1, sizeof(*h));
	struct take t = { 0 };
	int rc;

	if (!h)
		return NULL;
	h->json_at = INT64_MIN / 2;
	rc = encode_summary(NULL, 0, false, &t);
	if (rc < 0)
		goto free_h;
	h->summary = t.summary;
	h->summary_len = t.summary_len;
	rc = sync_init(h);
	if (rc < 0)
		goto free_summary;
	rc = -pthread_create(&h->thread, NULL, hub_main, h);
	if (rc < 0)
		goto destroy_sync;
	h->running = true;
	return h;
destroy_sync:
	sync_destroy(h);
free_summary:
	free(h->summary);
free_h:
	free(h);
	errno = -rc;
	return NULL;
}

void admin_watch_stop(struct admin_watch *h)
{
	pthread_mutex_lock(&h->lock);
	h->stopping = true;
	pthread_cond_broadcast(&h->wake);
	pthread_cond_broadcast(&h->news);
	pthread_mutex_unlock(&h->lock);
	if (h->running) {
		pthread_join(h->thread, NULL);
		h->running = false;
	}
}

void admin_watch_free(struct admin_watch *h)
{
	size_t i;

	if (!h)
		return;
	admin_watch_stop(h);
	for (i = 0; i < ADMIN_WATCH_HISTORY; i++)
		free(h->ring[i].json);
	free(h->summary);
	sync_destroy(h);
	free(h);
}

int admin_watch_attach(struct admin_watch *h, const struct admin_source *src)
{
	if (!src->watch || src->nworkers < 0 ||
	    src->nworkers > CONFIG_WORKERS_MAX)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	h->src = *src;
	h->attached++;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void admin_watch_detach(struct admin_watch *h)
{
	pthread_mutex_lock(&h->lock);
	memset(&h->src, 0, sizeof(h->src));
	pthread_cond_broadcast(&h->news);
	pthread_mutex_unlock(&h->lock);
}

void admin_watch_fresh(struct admin_watch *h, int max_age_ms, int timeout_ms)
{
	int64_t now = ctx_now_ns(), until = now + timeout_ms * NS_PER_MS;
	uint64_t target;

	pthread_mutex_lock(&h->lock);
	if (!h->src.watch || h->stopping) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	h->json_at = now;
	if (h->finished && h->shown_at >= now - max_age_ms * NS_PER_MS) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	target = h->started + 1;
	if (h->want < target)
		h->want = target;
	pthread_cond_signal(&h->wake);
	while (!h->stopping && h->src.watch && h->finished < target &&
	       ctx_now_ns() < until)
		wait_until(&h->news, &h->lock, until);
	pthread_mutex_unlock(&h->lock);
}

char *admin_watch_summary(struct admin_watch *h, size_t *len)
{
	char *copy;

	pthread_mutex_lock(&h->lock);
	copy = malloc(h->summary_len + 1);
	if (copy) {
		memcpy(copy, h->summary, h->summary_len + 1);
		*len = h->summary_len;
	}
	pthread_mutex_unlock(&h->lock);
	return copy;
}

/* Under lock: the oldest seq still kept, at most n back from the newest. */
static uint64_t oldest_kept(const struct admin_watch *h, uint64_t n)
{
	if (n > ADMIN_WATCH_HISTORY)
		n = ADMIN_WATCH_HISTORY;
	return h->head > n ? h->head - n + 1 : 1;
}

void admin_watch_cancellations(struct admin_watch *h, size_t limit, FILE *out)
{
	const struct hist *e;
	uint64_t seq, last;

	fputs("{\"cancellations\":[", out);
	pthread_mutex_lock(&h->lock);
	last = oldest_kept(h, limit);
	for (seq = h->head; seq >= last && seq > 0; seq--) {
		e = &h->ring[seq % ADMIN_WATCH_HISTORY];
		if (seq != h->head)
			fputc(',', out);
		fwrite(e->json, 1, e->len, out);
	}
	pthread_mutex_unlock(&h->lock);
	fputs("]}", out);
}

int admin_watch_stream_open(struct admin_watch *h, uint64_t *cursor)
{
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	if (h->stopping)
		rc = -ESHUTDOWN;
	else if (h->streams >= ADMIN_WATCH_STREAMS_MAX)
		rc = -EBUSY;
	if (rc == 0) {
		h->streams++;
		*cursor = h->head;
		pthread_cond_signal(&h->wake);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

void admin_watch_stream_close(struct admin_watch *h)
{
	pthread_mutex_lock(&h->lock);
	h->streams--;
	pthread_mutex_unlock(&h->lock);
}

long admin_watch_streams(struct admin_watch *h)
{
	long n;

	pthread_mutex_lock(&h->lock);
	n = h->streams;
	pthread_mutex_unlock(&h->lock);
	return n;
}

int admin_watch_next(struct admin_watch *h, uint64_t *cursor,
		     int64_t since_unix_ms, int64_t until_ns,
		     void (*emit)(void *arg, const char *json, size_t len),
		     void *arg)
{
	const struct hist *e;
	uint64_t seq;
	int n = 0;

	pthread_mutex_lock(&h->lock);
	while (!h->stopping && h->head == *cursor && ctx_now_ns() < until_ns)
		wait_until(&h->news, &h->lock, until_ns);
	if (h->stopping) {
		pthread_mutex_unlock(&h->lock);
		return -ESHUTDOWN;
	}
	seq = oldest_kept(h, h->head - *cursor);
	for (; seq <= h->head; seq++) {
		e = &h->ring[seq % ADMIN_WATCH_HISTORY];
		if (e->unix_ms >= since_unix_ms) {
			emit(arg, e->json, e->len);
			n++;
		}
	}
	*cursor = h->head;
	pthread_mutex_unlock(&h->lock);
	return n;
}
