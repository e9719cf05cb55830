/* test_loop.c - unit tests for the epoll loop: removal during a batch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

#define LIVE 200     /* readable, edge-triggered */
#define IDLE 300     /* never readable: only removed */

struct watch {
	struct loop_io io;
	int wfd;
	int calls;
	bool removed;
};

static struct loop *the_loop;
static struct watch live[LIVE], idle[IDLE];
static int next_idle;

static void watch_open(struct watch *w, loop_io_fn fn, bool readable)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	w->io.fd = p[0];
	w->io.fn = fn;
	w->io.data = w;
	w->wfd = p[1];
	w->calls = 0;
	w->removed = false;
	if (readable)
		assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(loop_add(the_loop, &w->io, EPOLLIN | EPOLLET), 0);
}

static void watch_close(struct watch *w)
{
	if (!w->removed)
		loop_del(the_loop, &w->io);
	close(w->io.fd);
	close(w->wfd);
}

static void on_idle(struct loop_io *io, uint32_t events)
{
	(void)io;
	(void)events;
	fail_msg("an idle pipe fired");
}

/* Each live event removes two idle watches: a batch of up to 256 events
 * removes far more than 256 handlers. */
static void on_live_removing(struct loop_io *io, uint32_t events)
{
	struct watch *w = io->data;
	int k;

	(void)events;
	w->calls++;
	for (k = 0; k < 2 && next_idle < IDLE; k++) {
		assert_int_equal(loop_del(the_loop, &idle[next_idle].io), 0);
		idle[next_idle++].removed = true;
	}
}

static void test_many_removals_lose_no_event(void **state)
{
	int i, total = 0, passes;

	(void)state;
	the_loop = loop_new();
	assert_non_null(the_loop);
	next_idle = 0;
	for (i = 0; i < IDLE; i++)
		watch_open(&idle[i], on_idle, false);
	for (i = 0; i < LIVE; i++)
		watch_open(&live[i], on_live_removing, true);
	for (passes = 0; passes < 5; passes++)
		if (loop_run_once(the_loop, 0) <= 0)
			break;
	for (i = 0; i < LIVE; i++) {
		assert_int_equal(live[i].calls, 1);  /* edge: never again */
		total += live[i].calls;
	}
	assert_int_equal(total, LIVE);
	assert_true(next_idle > 256);
	for (i = 0; i < LIVE; i++)
		watch_close(&live[i]);
	for (i = 0; i < IDLE; i++)
		watch_close(&idle[i]);
	loop_free(the_loop);
}

/* Two readable watches; whichever runs first removes the other, whose
 * event is then already in the batch and must not be delivered. */
static void on_pair(struct loop_io *io, uint32_t events)
{
	struct watch *w = io->data;
	struct watch *other = w == &live[0] ? &live[1] : &live[0];

	(void)events;
	assert_false(w->removed);
	w->calls++;
	if (!other->removed) {
		assert_int_equal(loop_del(the_loop, &other->io), 0);
		other->removed = true;
	}
}

static void test_removed_handler_not_called(void **state)
{
	(void)state;
	the_loop = loop_new();
	assert_non_null(the_loop);
	watch_open(&live[0], on_pair, true);
	watch_open(&live[1], on_pair, true);
	assert_int_equal(loop_run_once(the_loop, 1000), 2);  /* both fetched */
	assert_int_equal(live[0].calls + live[1].calls, 1);
	watch_close(&live[0]);
	watch_close(&live[1]);
	loop_free(the_loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_removals_lose_no_event),
		cmocka_unit_test(test_removed_handler_not_called),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
