/* pool.c - one route's servers for one worker: round robin or least request, passive ejection, in-flight counts and the retry budget. */
#include <stdlib.h>
#include <string.h>

#include "config_route.h"
#include "health.h"
#include "invariant.h"
#include "log.h"
#include "pool.h"

#define NS_PER_MS 1000000LL

struct pool_server {
	int inflight;           /* attempts picked and not yet ended */
	int failures;           /* consecutive; a response head ends a run */
	bool ejected;           /* counted once in the gauge while set */
	bool trial;             /* its trial attempt runs */
	int64_t ejected_until;  /* monotonic ns, when ejected */
	int64_t eject_ms;       /* length of the current (or next) ejection */
};

struct pool {
	const struct config_route *r;
	size_t cursor;          /* round robin: where the next search starts */
	uint64_t rng;           /* xorshift64 state, never 0 */
	int exchanges;          /* in flight */
	int retries;            /* of them, retrying */
	struct pool_waiter *wait_head, *wait_tail; /* for a retry slot, FIFO */
	struct pool_server s[];
};

/* Distinct pools get distinct streams; least_request needs spread, not
 * secrecy, so no syscall. */
static uint64_t pool_seed(const struct pool *p)
{
	static uint64_t counter;
	uint64_t z = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);

	z = z * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)p;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z ? z : 1;
}

static uint64_t pool_rand(struct pool *p)
{
	uint64_t x = p->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	p->rng = x;
	return x;
}

/* The server as log lines name it: its origin without the scheme. */
static const char *server_name(const struct pool *p, int i)
{
	const char *o = p->r->servers[i].origin;
	const char *sep = strstr(o, "://");

	return sep ? sep + 3 : o;
}

/* Carry over the passive state of the server of old with i's origin.
 * Not its in-flight attempts nor a trial: those end on old. */
static void pool_adopt(struct pool *p, int i, const struct pool *old)
{
	const char *origin = p->r->servers[i].origin;
	size_t j;

	for (j = 0; j < old->r->nservers; j++) {
		if (strcmp(old->r->servers[j].origin, origin) != 0)
			continue;
		p->s[i].failures = old->s[j].failures;
		if (old->s[j].ejected) {
			p->s[i].ejected = true;
			p->s[i].ejected_until = old->s[j].ejected_until;
			p->s[i].eject_ms = old->s[j].eject_ms;
			health_ejected_add(p->r->servers[i].slot, 1);
		}
		return;
	}
}

struct pool *pool_new(const struct config_route *r, const struct pool *old)
{
	struct pool *p;
	size_t i;

	p = calloc(1, sizeof(*p) + r->nservers * sizeof(p->s[0]));
	if (!p)
		return NULL;
	p->r = r;
	p->rng = pool_seed(p);
	for (i = 0; i < r->nservers; i++) {
		p->s[i].eject_ms = r->eject_ms;
		/* eject_after = 0 turned passive health off: nothing to keep */
		if (old && r->eject_after > 0)
			pool_adopt(p, (int)i, old);
	}
	return p;
}

void pool_free(struct pool *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->r->nservers; i++) {
		if (p->s[i].ejected)
			health_ejected_add(p->r->servers[i].slot, -1);
	}
	free(p);
}

static bool pool_usable(const struct pool *p, int i, int64_t now)
{
	const struct pool_server *s = &p->s[i];

	if (!health_up(p->r->servers[i].slot))
		return false;
	return !s->ejected || (now >= s->ejected_until && !s->trial);
}

/* The first non-empty of the preference order of pool.h, as a mask. */
static uint64_t pool_candidates(const struct pool *p, uint64_t tried,
				int64_t now)
{
	size_t n = p->r->nservers;
	uint64_t all = n >= 64 ? ~0ULL : (1ULL << n) - 1;
	uint64_t usable = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (pool_usable(p, (int)i, now))
			usable |= 1ULL << i;
	}
	if (usable & ~tried)
		return usable & ~tried;
	if (usable)
		return usable;
	if (all & ~tried)
		return all & ~tried;
	return all;
}

static int pick_round_robin(struct pool *p, uint64_t set)
{
	size_t n = p->r->nservers;
	size_t k, i;

	for (k = 0; k < n; k++) {
		i = (p->cursor + k) % n;
		if (set & (1ULL << i)) {
			p->cursor = (i + 1) % n;
			return (int)i;
		}
	}
	return 0;       /* set is never empty */
}

/* The index of the k-th (from 0) bit set in set. */
static int nth_bit(uint64_t set, int k)
{
	while (k-- > 0)
		set &= set - 1;
	return __builtin_ctzll(set);
}

static int pick_least_request(struct pool *p, uint64_t set)
{
	int n = __builtin_popcountll(set);
	int a, b;

	if (n == 1)
		return nth_bit(set, 0);
	a = nth_bit(set, (int)(pool_rand(p) % (uint64_t)n));
	b = nth_bit(set & ~(1ULL << a), (int)(pool_rand(p) % (uint64_t)(n - 1)));
	return p->s[b].inflight < p->s[a].inflight ? b : a;
}

int pool_pick(struct pool *p, uint64_t tried, int64_t now)
{
	uint64_t set = pool_candidates(p, tried, now);
	struct pool_server *s;
	int i;

	if (p->r->balance == CONFIG_BALANCE_LEAST_REQUEST)
		i = pick_least_request(p, set);
	else
		i = pick_round_robin(p, set);
	s = &p->s[i];
	/* an ejection that is over: this attempt is its one trial */
	if (s->ejected && now >= s->ejected_until && !s->trial)
		s->trial = true;
	s->inflight++;
	return i;
}

/* Eject server i for its current length, or (after a failed trial) for
 * twice that; the gauge counts a server once however often it goes. */
static void pool_eject(struct pool *p, int i, int64_t now)
{
	struct pool_server *s = &p->s[i];

	if (s->ejected) {
		s->eject_ms *= 2;
		if (s->eject_ms > CONFIG_EJECT_MAX_MS)
			s->eject_ms = CONFIG_EJECT_MAX_MS;
	} else {
		s->ejected = true;
		health_ejected_add(p->r->servers[i].slot, 1);
	}
	s->trial = false;
	s->ejected_until = now + s->eject_ms * NS_PER_MS;
	log_msg(LOG_WARN, "upstream server ejected",
		"route=%s server=%s failures=%d for_ms=%lld", p->r->name,
		server_name(p, i), s->failures, (long long)s->eject_ms);
}

static void pool_restore(struct pool *p, int i)
{
	struct pool_server *s = &p->s[i];

	s->ejected = false;
	s->trial = false;
	s->ejected_until = 0;
	s->eject_ms = p->r->eject_ms;
	health_ejected_add(p->r->servers[i].slot, -1);
	log_msg(LOG_INFO, "upstream server restored", "route=%s server=%s",
		p->r->name, server_name(p, i));
}

/* While a trial runs, the first attempt on the server to end is taken as
 * its result: pool_end cannot tell attempts apart. */
bool pool_end(struct pool *p, int i, enum retry_outcome o, int64_t now)
{
	pool_done(p, i);
	return pool_verdict(p, i, o, now);
}

void pool_done(struct pool *p, int i)
{
	ASSERT(i >= 0 && (size_t)i < p->r->nservers);
	if (p->s[i].inflight > 0)
		p->s[i].inflight--;
}

bool pool_verdict(struct pool *p, int i, enum retry_outcome o, int64_t now)
{
	struct pool_server *s;

	ASSERT(i >= 0 && (size_t)i < p->r->nservers);
	s = &p->s[i];
	switch (o) {
	case RETRY_OUT_OK:
	case RETRY_OUT_STATUS_5XX:
		s->failures = 0;
		if (s->ejected && s->trial)
			pool_restore(p, i);
		return false;
	case RETRY_OUT_CONNECT_FAILURE:
	case RETRY_OUT_RESET:
	case RETRY_OUT_TIMEOUT:
		break;
	default:        /* cancelled: the server is not to blame */
		s->trial = false;
		return false;
	}
	s->failures++;
	if (p->r->eject_after <= 0)
		return false;
	/* an attempt begun before the ejection changes nothing */
	if (s->ejected ? !s->trial : s->failures < p->r->eject_after)
		return false;
	pool_eject(p, i, now);
	return true;
}

static void pool_grant(struct pool *p);

void pool_exchange_begin(struct pool *p)
{
	p->exchanges++;
	pool_grant(p);                   /* the budget grew with it */
}

void pool_retry_begin(struct pool *p)
{
	p->retries++;
}

static bool pool_retry_room(const struct pool *p)
{
	int cap = p->exchanges * 20 / 100;

	return p->retries < (cap > 3 ? cap : 3);
}

/* Freed slots go to the waiters, oldest first; each is taken for it
 * before it hears, so no newcomer can take it in between. */
static void pool_grant(struct pool *p)
{
	struct pool_waiter *w;

	while (p->wait_head && pool_retry_room(p)) {
		w = p->wait_head;
		pool_retry_unwait(p, w);
		p->retries++;
		w->granted(w);
	}
}

void pool_exchange_end(struct pool *p, bool retried)
{
	if (p->exchanges > 0)
		p->exchanges--;
	if (retried && p->retries > 0)
		p->retries--;
	pool_grant(p);
}

bool pool_retry_allowed(const struct pool *p)
{
	return !p->wait_head && pool_retry_room(p);
}

void pool_retry_wait(struct pool *p, struct pool_waiter *w)
{
	if (w->queued)
		return;
	w->queued = true;
	w->next = NULL;
	w->prev = p->wait_tail;
	if (p->wait_tail)
		p->wait_tail->next = w;
	else
		p->wait_head = w;
	p->wait_tail = w;
}

void pool_retry_unwait(struct pool *p, struct pool_waiter *w)
{
	if (!w->queued)
		return;
	w->queued = false;
	if (w->prev)
		w->prev->next = w->next;
	else
		p->wait_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		p->wait_tail = w->prev;
	w->prev = w->next = NULL;
}

int pool_failures(const struct pool *p, int i)
{
	return p->s[i].failures;
}

int64_t pool_ejected_until(const struct pool *p, int i)
{
	return p->s[i].ejected ? p->s[i].ejected_until : 0;
}
