/* admin_events.c - GET /events on the admin listener: the live view as Server-Sent Events. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <microhttpd.h>

#include "admin_events.h"
#include "admin_watch.h"
#include "context.h"

#define NS_PER_MS 1000000LL
#define SUMMARY_NS (1000 * NS_PER_MS)  /* between two summaries */
#define PEEK_NS (250 * NS_PER_MS)      /* between two looks at the socket */
#define FRESH_MS 1000                  /* the first summary waits as long */
#define FRESH_AGE_MS 250               /* or not at all for one this young */
#define BLOCK 16384                    /* what MHD asks the reader for */

/* One open stream, on its connection's thread alone. */
struct stream {
	struct admin_watch *hub;
	uint64_t cursor;                /* the hub's seq sent up to */
	int64_t opened_ms;              /* wall clock: older ones are no news */
	int64_t summary_at;             /* the next summary is due (monotonic) */
	int fd;                         /* the client's socket */
	char *buf;                      /* encoded, handed to MHD from off */
	size_t len, off;
};

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The page went away: a FIN or a reset on its socket.  A stream's client
 * sends nothing after its request, so this is the only thing to see. */
static bool peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) > 0 &&
	       (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void emit_cancel(void *arg, const char *json, size_t len)
{
	FILE *out = arg;

	fputs("event: cancellation\ndata: ", out);
	fwrite(json, 1, len, out);
	fputs("\n\n", out);
}

static int emit_summary(struct stream *st, FILE *out)
{
	size_t len;
	char *json = admin_watch_summary(st->hub, &len);

	if (!json)
		return -ENOMEM;
	fputs("event: summary\ndata: ", out);
	fwrite(json, 1, len, out);
	fputs("\n\n", out);
	free(json);
	return 0;
}

/* Block until there is something to send (cancellations, or a summary
 * that is due) and encode it into st->buf; between, look at the socket
 * every PEEK_NS.  0, -ESHUTDOWN, -EPIPE (the page went away), -ENOMEM. */
static int stream_fill(struct stream *st)
{
	int64_t until, now;
	FILE *out;
	int rc = 0;

	free(st->buf);
	st->buf = NULL;
	st->len = st->off = 0;
	out = open_memstream(&st->buf, &st->len);
	if (!out)
		return -ENOMEM;
	while (rc == 0 && ftell(out) == 0) {
		now = ctx_now_ns();
		until = st->summary_at < now + PEEK_NS ? st->summary_at :
							 now + PEEK_NS;
		rc = admin_watch_next(st->hub, &st->cursor, st->opened_ms,
				      until, emit_cancel, out);
		if (rc < 0)
			break;
		rc = 0;
		now = ctx_now_ns();
		if (now >= st->summary_at) {
			st->summary_at = now + SUMMARY_NS;
			rc = emit_summary(st, out);
		}
		if (rc == 0 && ftell(out) == 0 && peer_gone(st->fd))
			rc = -EPIPE;
	}
	if (fclose(out) != 0 && rc == 0)
		rc = -ENOMEM;
	return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	size_t n;
	int rc;

	(void)pos;
	if (st->off == st->len) {
		rc = stream_fill(st);
		if (rc == -ESHUTDOWN)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (rc < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = st->len - st->off < max ? st->len - st->off : max;
	memcpy(buf, st->buf + st->off, n);
	st->off += n;
	return (ssize_t)n;
}

/* MHD lets go of the response: the connection is closed or closing. */
static void stream_free(void *cls)
{
	struct stream *st = cls;

	admin_watch_stream_close(st->hub);
	free(st->buf);
	free(st);
}

struct MHD_Response *admin_events_response(struct admin_watch *hub,
					   struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct MHD_Response *r;
	struct stream *st;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st || !ci) {
		free(st);
		errno = ENOMEM;
		return NULL;
	}
	rc = admin_watch_stream_open(hub, &st->cursor);
	if (rc < 0) {
		free(st);
		errno = -rc;
		return NULL;
	}
	st->hub = hub;
	st->fd = ci->connect_fd;
	st->opened_ms = wall_ms();
	/* The first summary shows the state as the page opens, as fresh as
	 * any later one. */
	admin_watch_fresh(hub, FRESH_AGE_MS, FRESH_MS);
	st->buf = strdup("retry: 2000\n\n");
	st->len = st->buf ? strlen(st->buf) : 0;
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK,
					      stream_read, st, stream_free);
	if (!r) {
		stream_free(st);
		errno = ENOMEM;
		return NULL;
	}
	MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
	return r;
}
