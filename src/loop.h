/* loop.h - a thin epoll event loop: fd handlers and a cross-thread wake-up. */
#ifndef CTXPROXY_LOOP_H
#define CTXPROXY_LOOP_H

#include <stdint.h>

struct loop;
struct loop_io;

/* Called on the loop's thread with the epoll events that fired. */
typedef void (*loop_io_fn)(struct loop_io *io, uint32_t events);

/* Embedded in its owner; the loop keeps a pointer to it while added. */
struct loop_io {
	int fd;
	loop_io_fn fn;
	void *data;
};

/* A loop with its own epoll set and eventfd.  NULL on failure (errno). */
struct loop *loop_new(void);

/* loop_free(NULL) is a no-op.  Handlers still added are simply dropped. */
void loop_free(struct loop *loop);

/* Add, change or remove io's fd in the epoll set (loop thread only).
 * Return 0 or -errno.  After loop_del, io gets no further call, even for an
 * event already fetched in the batch being dispatched, so its owner may free
 * it at once; the batch's other events are all still delivered. */
int loop_add(struct loop *loop, struct loop_io *io, uint32_t events);
int loop_mod(struct loop *loop, struct loop_io *io, uint32_t events);
int loop_del(struct loop *loop, struct loop_io *io);

/* Wait up to timeout_ms (-1 = forever) and run the handlers of what fired.
 * Returns the number of events handled, or -errno (-EINTR is harmless). */
int loop_run_once(struct loop *loop, int timeout_ms);

/* From any thread: make the loop's current or next wait return, and call
 * fn(arg) on the loop's thread (fn set by loop_set_wake). */
void loop_wake(struct loop *loop);
void loop_set_wake(struct loop *loop, void (*fn)(void *arg), void *arg);

#endif
