/* loop.c - a thin epoll event loop: fd handlers and a cross-thread wake-up. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "invariant.h"
#include "loop.h"

#define LOOP_MAX_EVENTS 256

struct loop {
	int epfd;
	/* The batch being dispatched.  A handler removed meanwhile has its
	 * events still ahead in it cleared (its memory may be freed or reused
	 * by then); every other event is delivered, however many handlers go:
	 * edge-triggered watches would not report a dropped event again. */
	struct epoll_event *batch;
	int batch_n, batch_i;
	struct loop_io wake_io;
	void (*wake_fn)(void *arg);
	void *wake_arg;
};

static void loop_on_wake(struct loop_io *io, uint32_t events)
{
	struct loop *loop = io->data;
	uint64_t v;

	(void)events;
	/* Drain before calling, so a wake sent during the call is not lost. */
	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (loop->wake_fn)
		loop->wake_fn(loop->wake_arg);
}

struct loop *loop_new(void)
{
	struct loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		goto free_loop;
	loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wake_io.fd < 0)
		goto close_epoll;
	loop->wake_io.fn = loop_on_wake;
	loop->wake_io.data = loop;
	if (loop_add(loop, &loop->wake_io, EPOLLIN) < 0)
		goto close_eventfd;
	return loop;

close_eventfd:
	close(loop->wake_io.fd);
close_epoll:
	close(loop->epfd);
free_loop:
	free(loop);
	return NULL;
}

void loop_free(struct loop *loop)
{
	if (!loop)
		return;
	close(loop->wake_io.fd);
	close(loop->epfd);
	free(loop);
}

static int loop_ctl(struct loop *loop, int op, struct loop_io *io,
		    uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	if (epoll_ctl(loop->epfd, op, io->fd, &ev) < 0)
		return -errno;
	return 0;
}

/* A handler is added once and removed once: EEXIST or ENOENT from epoll
 * means its owner lost track of it (and would free it while added). */
int loop_add(struct loop *loop, struct loop_io *io, uint32_t events)
{
	int rc;

	ASSERT(io->fn && io->fd >= 0);
	rc = loop_ctl(loop, EPOLL_CTL_ADD, io, events);
	ASSERT(rc != -EEXIST);
	return rc;
}

int loop_mod(struct loop *loop, struct loop_io *io, uint32_t events)
{
	return loop_ctl(loop, EPOLL_CTL_MOD, io, events);
}

int loop_del(struct loop *loop, struct loop_io *io)
{
	int i, rc;

	for (i = loop->batch_i + 1; i < loop->batch_n; i++)
		if (loop->batch[i].data.ptr == io)
			loop->batch[i].data.ptr = NULL;
	rc = loop_ctl(loop, EPOLL_CTL_DEL, io, 0);
	ASSERT(rc != -ENOENT);
	return rc;
}

int loop_run_once(struct loop *loop, int timeout_ms)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	struct loop_io *io;
	int i, n;

	n = epoll_wait(loop->epfd, evs, LOOP_MAX_EVENTS, timeout_ms);
	if (n < 0)
		return -errno;
	loop->batch = evs;
	loop->batch_n = n;
	for (i = 0; i < n; i++) {
		loop->batch_i = i;
		io = evs[i].data.ptr;
		if (io)
			io->fn(io, evs[i].events);
	}
	loop->batch = NULL;
	loop->batch_n = 0;
	loop->batch_i = 0;
	return n;
}

void loop_wake(struct loop *loop)
{
	uint64_t one = 1;
	ssize_t r;

	r = write(loop->wake_io.fd, &one, sizeof(one));
	(void)r; /* a full counter already means "woken" */
}

void loop_set_wake(struct loop *loop, void (*fn)(void *arg), void *arg)
{
	loop->wake_fn = fn;
	loop->wake_arg = arg;
}
