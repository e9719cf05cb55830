/* worker.c - one event-loop thread: its MHD daemons, upstream connections and contexts. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "context.h"
#include "front.h"
#include "log.h"
#include "metrics.h"
#include "loop.h"
#include "upstream.h"
#include "watch.h"
#include "worker.h"

enum worker_cmd {
	WORKER_RUN,
	WORKER_DRAIN,
	WORKER_CANCEL,
	WORKER_EXIT,
};

struct worker {
	int id;
	pthread_t thread;
	struct loop *loop;
	struct upstream *up;
	ctx_t *root;
	struct front *front;
	struct metrics_worker *metrics;
	struct log_buf *log;
	struct watch_ring *watch;       /* its last cancellations */
	atomic_int cmd;                 /* highest command sent so far */
	_Atomic(struct gen *) next_gen; /* handed over by worker_set_gen */
	_Atomic(struct watch_snap *) snap; /* handed over by worker_watch */
	atomic_ulong beats;             /* wake-ups served, for the watchdog */
	int done_cmd;                   /* highest command carried out */
	bool exit;
};

/* Fill the snapshot the admin side asked for, and let go of it. */
static void worker_answer(struct worker *w, struct watch_snap *s)
{
	front_watch(w->front, s);
	watch_snap_add_ring(s, w->watch);
	watch_snap_done(s, w->id);
}

/* Carry out, on the worker's thread, what the main (or admin) thread
 * asked. */
static void worker_on_wake(void *arg)
{
	struct worker *w = arg;
	int cmd = atomic_load(&w->cmd);
	struct gen *g = atomic_exchange(&w->next_gen, NULL);
	struct watch_snap *s = atomic_exchange(&w->snap, NULL);

	atomic_fetch_add(&w->beats, 1);
	if (s)
		worker_answer(w, s);
	if (g) {
		if (front_set_gen(w->front, g) < 0)
			log_msg(LOG_ERROR, "cannot switch to the new config",
				"worker=%d", w->id);
		gen_unref(g);
	}
	if (cmd >= WORKER_DRAIN && w->done_cmd < WORKER_DRAIN)
		front_drain(w->front);
	if (cmd >= WORKER_CANCEL && w->done_cmd < WORKER_CANCEL)
		ctx_cancel(w->root, CTX_CAUSE_SHUTDOWN);
	if (cmd >= WORKER_EXIT)
		w->exit = true;
	w->done_cmd = cmd;
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* "now" is read after the deadlines: a part that wants to run at once
 * answers with its own "now", which must not round up to a 1 ms sleep. */
static int worker_wait_ms(struct worker *w)
{
	int64_t at, now, ms;

	at = min64(ctx_next_deadline(w->root), upstream_next_timer(w->up));
	at = min64(at, front_next_timeout(w->front));
	at = min64(at, log_buf_deadline(w->log));
	if (at == CTX_NO_DEADLINE)
		return -1;
	now = ctx_now_ns();
	if (at <= now)
		return 0;
	ms = (at - now + 999999) / 1000000;
	return ms > 60000 ? 60000 : (int)ms;
}

/* After waiting: expire deadlines, fire the upstream timer (libcurl's
 * connects, idle connections), then let MHD and the upstream side hand
 * work to each other until both are quiet (bounded). */
static void worker_tick(struct worker *w)
{
	int64_t now = ctx_now_ns();
	int i, n;

	ctx_expire(w->root, now);
	if (log_buf_deadline(w->log) <= now)
		log_buf_flush(w->log);
	if (upstream_next_timer(w->up) <= now)
		upstream_on_timer(w->up);
	for (i = 0; i < 16; i++) {
		n = upstream_dispatch(w->up);
		if (front_next_timeout(w->front) <= ctx_now_ns()) {
			front_run(w->front);
			n++;
		}
		if (!n)
			break;
	}
}

/* A burst of hang-ups: take every one the kernel already holds before any
 * teardown, so each backend gets its FIN as early as possible.  Stops at
 * the first pass that sends no new FIN (bounded). */
static void worker_drain_hangups(struct worker *w)
{
	int seen = upstream_fins(w->up), i;

	for (i = 0; seen && i < 64; i++) {
		if (loop_run_once(w->loop, 0) <= 0 ||
		    upstream_fins(w->up) == seen)
			break;
		seen = upstream_fins(w->up);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int rc;

	while (!w->exit) {
		rc = loop_run_once(w->loop, worker_wait_ms(w));
		if (rc < 0 && rc != -EINTR) {
			log_msg(LOG_ERROR, "event loop failed", "worker=%d", w->id);
			break;
		}
		worker_drain_hangups(w);
		worker_tick(w);
	}
	return NULL;
}

static void worker_free(struct worker *w)
{
	/* A snapshot asked for after the loop's last turn: not answered,
	 * but let go of, so the admin side stops waiting and nothing leaks. */
	struct watch_snap *s = atomic_exchange(&w->snap, NULL);

	if (s) {
		watch_snap_skip(s, w->id);
		watch_snap_unref(s);
	}
	front_free(w->front);
	if (w->up)
		upstream_dispatch(w->up);
	upstream_free(w->up);
	ctx_unref(w->root);
	loop_free(w->loop);
	metrics_worker_free(w->metrics);
	log_buf_free(w->log);
	watch_ring_free(w->watch);      /* after the front: its requests log */
	gen_unref(atomic_load(&w->next_gen));
	free(w);
}

struct worker *worker_start(int id, struct gen *g, const int *listen_fds,
			    struct otlp *otlp)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct front_env env = { 0 };

	if (!w)
		return NULL;
	w->id = id;
	w->loop = loop_new();
	w->root = ctx_background_new();
	w->up = w->loop ? upstream_new(w->loop) : NULL;
	w->metrics = metrics_worker_new();
	w->log = log_buf_new();
	w->watch = watch_ring_new(id);
	if (!w->loop || !w->root || !w->up || !w->metrics || !w->log ||
	    !w->watch)
		goto fail;
	loop_set_wake(w->loop, worker_on_wake, w);
	env.loop = w->loop;
	env.up = w->up;
	env.root = w->root;
	env.gen = g;
	env.listen_fds = listen_fds;
	env.worker_id = id;
	env.metrics = w->metrics;
	env.log = w->log;
	env.otlp = otlp;
	env.watch = w->watch;
	w->front = front_new(&env);
	if (!w->front)
		goto fail;
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		goto fail;
	return w;
fail:
	log_msg(LOG_ERROR, "cannot start worker", "worker=%d", id);
	worker_free(w);
	return NULL;
}

static void worker_send(struct worker *w, int cmd)
{
	atomic_store(&w->cmd, cmd);
	loop_wake(w->loop);
}

void worker_set_gen(struct worker *w, struct gen *g)
{
	struct gen *old = atomic_exchange(&w->next_gen, gen_ref(g));

	gen_unref(old);                 /* a reload the worker had not taken */
	loop_wake(w->loop);
}

void worker_drain(struct worker *w)
{
	worker_send(w, WORKER_DRAIN);
}

void worker_cancel_all(struct worker *w)
{
	worker_send(w, WORKER_CANCEL);
}

void worker_ping(struct worker *w)
{
	loop_wake(w->loop);
}

unsigned long worker_beats(const struct worker *w)
{
	return atomic_load(&w->beats);
}

long worker_inflight(const struct worker *w)
{
	return metrics_inflight(w->metrics);
}

int worker_watch(struct worker *w, struct watch_snap *s)
{
	struct watch_snap *none = NULL;

	watch_snap_ref(s);              /* the worker's, until its done */
	if (!atomic_compare_exchange_strong(&w->snap, &none, s)) {
		watch_snap_skip(s, w->id);
		watch_snap_unref(s);
		return -EBUSY;
	}
	loop_wake(w->loop);
	return 0;
}

void worker_stop(struct worker *w)
{
	if (!w)
		return;
	worker_send(w, WORKER_EXIT);
	pthread_join(w->thread, NULL);
	worker_free(w);
}
