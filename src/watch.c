/* watch.c - the live view of contexts: per-worker cancellation rings and the reference-counted snapshots the workers fill on their own threads. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "watch.h"

struct watch_ring {
	int worker;
	uint64_t last;                    /* seq of the newest entry; 0: none */
	struct watch_cancel e[WATCH_RING];  /* seq s at e[(s - 1) % WATCH_RING] */
};

struct watch_ring *watch_ring_new(int worker)
{
	struct watch_ring *ring = calloc(1, sizeof(*ring));

	if (ring)
		ring->worker = worker;
	return ring;
}

void watch_ring_free(struct watch_ring *ring)
{
	free(ring);
}

void watch_ring_push(struct watch_ring *ring, const struct watch_cancel *c)
{
	struct watch_cancel *e = &ring->e[ring->last % WATCH_RING];

	*e = *c;
	e->seq = ++ring->last;
	e->worker = ring->worker;
}

/* ---- snapshots ---- */

/* What one worker adds, on its own thread, until it says it is done: no
 * other thread reads these rows before then (the lock orders the two). */
struct snap_part {
	struct watch_req *reqs;
	size_t nreqs, cap;
	struct watch_cancel *cancels;
	size_t ncancels;
	size_t inflight;                  /* requests added, kept or lost */
	size_t lost;
	uint64_t since;
	/* under the snapshot's lock: */
	bool waiting;                     /* neither done nor skipped yet */
	bool shown;                       /* done before the wait fixed the view;
					     never changes after that */
};

struct watch_snap {
	atomic_int refs;
	pthread_mutex_t lock;
	pthread_cond_t cond;              /* on CLOCK_MONOTONIC */
	int nworkers;
	int waiting;                      /* parts still waiting */
	bool fixed;                       /* the first wait chose the parts shown */
	bool all;                         /* ... and every worker was among them */
	atomic_size_t stray;              /* rows for no worker of the snapshot */
	/* the view, made by the first wait: */
	struct watch_req *reqs;
	size_t nreqs;
	struct watch_cancel *cancels;
	size_t ncancels;
	size_t lost;
	struct snap_part part[];
};

struct watch_snap *watch_snap_new(int nworkers, const uint64_t *since)
{
	struct watch_snap *s;
	pthread_condattr_t ca;
	int i;

	if (nworkers < 0)
		return NULL;
	s = calloc(1, sizeof(*s) + (size_t)nworkers * sizeof(s->part[0]));
	if (!s)
		return NULL;
	if (pthread_condattr_init(&ca) != 0)
		goto free_s;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&s->cond, &ca) != 0)
		goto destroy_attr;
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->refs, 1);
	atomic_init(&s->stray, 0);
	s->nworkers = nworkers;
	s->waiting = nworkers;
	for (i = 0; i < nworkers; i++) {
		s->part[i].waiting = true;
		s->part[i].since = since ? since[i] : 0;
	}
	return s;
destroy_attr:
	pthread_condattr_destroy(&ca);
free_s:
	free(s);
	return NULL;
}

void watch_snap_ref(struct watch_snap *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void watch_snap_unref(struct watch_snap *s)
{
	int i;

	if (!s || atomic_fetch_sub_explicit(&s->refs, 1,
					    memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < s->nworkers; i++) {
		free(s->part[i].reqs);
		free(s->part[i].cancels);
	}
	free(s->reqs);
	free(s->cancels);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* The part worker i fills, or NULL (counted as a lost row). */
static struct snap_part *snap_part(struct watch_snap *s, int worker)
{
	if (worker >= 0 && worker < s->nworkers)
		return &s->part[worker];
	atomic_fetch_add_explicit(&s->stray, 1, memory_order_relaxed);
	return NULL;
}

void watch_snap_add_req(struct watch_snap *s, const struct watch_req *r)
{
	struct snap_part *p = snap_part(s, r->worker);
	struct watch_req *grown;
	size_t cap;

	if (!p)
		return;
	p->inflight++;
	if (p->nreqs == p->cap) {
		cap = p->cap ? 2 * p->cap : 64;
		grown = realloc(p->reqs, cap * sizeof(*grown));
		if (!grown) {
			p->lost++;
			return;
		}
		p->reqs = grown;
		p->cap = cap;
	}
	p->reqs[p->nreqs++] = *r;
}

void watch_snap_add_ring(struct watch_snap *s, const struct watch_ring *ring)
{
	struct snap_part *p = snap_part(s, ring->worker);
	struct watch_cancel *grown;
	uint64_t from, seq;
	size_t n;

	if (!p)
		return;
	from = ring->last > WATCH_RING ? ring->last - WATCH_RING + 1 : 1;
	/* A since beyond the newest is from before a restart: all kept. */
	if (p->since <= ring->last && p->since + 1 > from)
		from = p->since + 1;
	if (from > ring->last)
		return;
	n = (size_t)(ring->last - from + 1);
	grown = realloc(p->cancels, (p->ncancels + n) * sizeof(*grown));
	if (!grown) {
		p->lost += n;
		return;
	}
	p->cancels = grown;
	for (seq = from; seq <= ring->last; seq++)
		p->cancels[p->ncancels++] = ring->e[(seq - 1) % WATCH_RING];
}

/* Worker `worker` stops waiting: done (shown unless the view is fixed)
 * or skipped.  The last one wakes the wait. */
static void snap_settle(struct watch_snap *s, int worker, bool done)
{
	struct snap_part *p;

	if (worker < 0 || worker >= s->nworkers)
		return;
	p = &s->part[worker];
	pthread_mutex_lock(&s->lock);
	if (p->waiting) {
		p->waiting = false;
		if (done && !s->fixed)
			p->shown = true;
		if (--s->waiting == 0)
			pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
}

void watch_snap_done(struct watch_snap *s, int worker)
{
	snap_settle(s, worker, true);
	watch_snap_unref(s);
}

void watch_snap_skip(struct watch_snap *s, int worker)
{
	snap_settle(s, worker, false);
}

/* ---- the admin side's view ---- */

/* Oldest first; the same age by worker, then id, so a page does not
 * shuffle its rows between two looks. */
static int req_older_first(const void *pa, const void *pb)
{
	const struct watch_req *a = pa, *b = pb;

	if (a->age_us != b->age_us)
		return a->age_us > b->age_us ? -1 : 1;
	if (a->worker != b->worker)
		return a->worker < b->worker ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* Gather the parts shown (no worker writes them any more) into the view's
 * arrays; rows that do not fit are lost.  The waiting thread only. */
static void snap_gather(struct watch_snap *s)
{
	size_t nr = 0, nc = 0;
	int i;

	s->lost = atomic_load_explicit(&s->stray, memory_order_relaxed);
	for (i = 0; i < s->nworkers; i++) {
		if (s->part[i].shown) {
			s->lost += s->part[i].lost;
			nr += s->part[i].nreqs;
			nc += s->part[i].ncancels;
		}
	}
	s->reqs = nr ? malloc(nr * sizeof(*s->reqs)) : NULL;
	s->cancels = nc ? malloc(nc * sizeof(*s->cancels)) : NULL;
	for (i = 0; i < s->nworkers; i++) {
		struct snap_part *p = &s->part[i];

		if (!p->shown)
			continue;
		if (s->reqs && p->nreqs)
			memcpy(s->reqs + s->nreqs, p->reqs,
			       p->nreqs * sizeof(*p->reqs));
		s->nreqs += s->reqs ? p->nreqs : 0;
		if (s->cancels && p->ncancels)
			memcpy(s->cancels + s->ncancels, p->cancels,
			       p->ncancels * sizeof(*p->cancels));
		s->ncancels += s->cancels ? p->ncancels : 0;
		free(p->reqs);
		free(p->cancels);
		p->reqs = NULL;
		p->cancels = NULL;
	}
	if (nr && !s->reqs)
		s->lost += nr;
	if (nc && !s->cancels)
		s->lost += nc;
	if (s->nreqs > 1)
		qsort(s->reqs, s->nreqs, sizeof(*s->reqs), req_older_first);
}

bool watch_snap_wait(struct watch_snap *s, int timeout_ms)
{
	struct timespec until;
	bool first, all;
	int rc = 0, i;

	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&s->lock);
	while (s->waiting > 0 && !s->fixed && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&s->cond, &s->lock, &until);
	first = !s->fixed;
	if (first) {
		/* From here a late worker's done no longer shows its part, so
		 * the parts shown are the gatherer's alone. */
		s->fixed = true;
		s->all = true;
		for (i = 0; i < s->nworkers; i++)
			if (!s->part[i].shown)
				s->all = false;
	}
	all = s->all;
	pthread_mutex_unlock(&s->lock);
	if (first)
		snap_gather(s);
	return all;
}

const struct watch_req *watch_snap_reqs(const struct watch_snap *s, size_t *n)
{
	*n = s->nreqs;
	return s->reqs;
}

const struct watch_cancel *watch_snap_cancels(const struct watch_snap *s,
					      size_t *n)
{
	*n = s->ncancels;
	return s->cancels;
}

void watch_snap_counts(const struct watch_snap *s, size_t *per_worker)
{
	int i;

	for (i = 0; i < s->nworkers; i++)
		per_worker[i] = s->fixed && s->part[i].shown ?
			s->part[i].inflight : 0;
}

size_t watch_snap_lost(const struct watch_snap *s)
{
	return s->lost;
}

bool watch_snap_answered(const struct watch_snap *s, int worker)
{
	return worker >= 0 && worker < s->nworkers && s->fixed &&
		s->part[worker].shown;
}
