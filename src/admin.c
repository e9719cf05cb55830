/* admin.c - the admin listener: /metrics, /healthz, and the live view of contexts (/, /requests, /cancellations, /events). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "admin.h"
#include "admin_events.h"
#include "admin_page.h"
#include "admin_watch.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

#define JSON_TYPE "application/json"
#define FRESH_MS 1000          /* a JSON reader waits for a snapshot */
#define LIMIT_DEFAULT 100

struct admin {
	struct MHD_Daemon *d;
	struct admin_watch *hub;
	struct admin_page *page;
	atomic_int draining;
};

/* Every answer: nothing cached (each is the state of one moment), no
 * sniffing a JSON body into a document. */
static enum MHD_Result admin_queue(struct MHD_Connection *c, unsigned status,
				   struct MHD_Response *r)
{
	enum MHD_Result rc;

	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result admin_reply(struct MHD_Connection *c, unsigned status,
				   const char *type, char *body, size_t len,
				   enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r;

	r = MHD_create_response_from_buffer(len, body, mode);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	return admin_queue(c, status, r);
}

/* A constant one-line text/plain answer. */
static enum MHD_Result admin_text(struct MHD_Connection *c, unsigned status,
				  const char *line)
{
	return admin_reply(c, status, "text/plain", (char *)line, strlen(line),
			   MHD_RESPMEM_PERSISTENT);
}

/* A body the caller wrote to a memstream (over *buf, *len), or 500 when
 * rc < 0 or the stream failed. */
static enum MHD_Result admin_stream_reply(struct MHD_Connection *c,
					  FILE *out, char **buf, size_t *len,
					  int rc, const char *type)
{
	if (fclose(out) != 0 && rc == 0)
		rc = -ENOMEM;
	if (rc < 0) {
		free(*buf);
		return admin_text(c, 500, "cannot answer now\n");
	}
	return admin_reply(c, 200, type, *buf, *len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result admin_metrics(struct admin *a, struct MHD_Connection *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	int rc;

	if (!out)
		return MHD_NO;
	rc = metrics_write(out, atomic_load(&a->draining));
	if (rc == 0)
		rc = health_write_metrics(out);
	fprintf(out, "# HELP ctxproxy_admin_streams Live-view event streams "
		"(GET /events) open on the admin listener.\n"
		"# TYPE ctxproxy_admin_streams gauge\n"
		"ctxproxy_admin_streams %ld\n", admin_watch_streams(a->hub));
	return admin_stream_reply(c, out, &buf, &len, rc,
				  "text/plain; version=0.0.4");
}

static enum MHD_Result admin_requests(struct admin *a, struct MHD_Connection *c)
{
	size_t len;
	char *json;

	admin_watch_fresh(a->hub, 0, FRESH_MS);
	json = admin_watch_summary(a->hub, &len);
	if (!json)
		return admin_text(c, 500, "out of memory\n");
	return admin_reply(c, 200, JSON_TYPE, json, len, MHD_RESPMEM_MUST_FREE);
}

/* ?limit=N: a decimal number, capped at the history kept; absent:
 * LIMIT_DEFAULT.  -EINVAL for anything else. */
static int parse_limit(struct MHD_Connection *c, size_t *limit)
{
	const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						    "limit");
	size_t i, v = 0;

	*limit = LIMIT_DEFAULT;
	if (!s)
		return 0;
	if (!*s)
		return -EINVAL;
	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v <= ADMIN_WATCH_HISTORY)
			v = v * 10 + (size_t)(s[i] - '0');
	}
	*limit = v < ADMIN_WATCH_HISTORY ? v : ADMIN_WATCH_HISTORY;
	return 0;
}

static enum MHD_Result admin_cancellations(struct admin *a,
					   struct MHD_Connection *c)
{
	char *buf = NULL;
	size_t len = 0, limit;
	FILE *out;

	if (parse_limit(c, &limit) < 0)
		return admin_text(c, 400, "limit must be a decimal number\n");
	out = open_memstream(&buf, &len);
	if (!out)
		return MHD_NO;
	admin_watch_fresh(a->hub, 0, FRESH_MS);
	admin_watch_cancellations(a->hub, limit, out);
	return admin_stream_reply(c, out, &buf, &len, 0, JSON_TYPE);
}

static enum MHD_Result admin_page(struct admin *a, struct MHD_Connection *c)
{
	struct MHD_Response *r;
	const char *html;
	size_t len;

	html = admin_page_html(a->page, &len);
	r = MHD_create_response_from_buffer(len, (void *)html,
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
	MHD_add_response_header(r, "Content-Security-Policy",
				admin_page_csp(a->page));
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	return admin_queue(c, 200, r);
}

static enum MHD_Result admin_events(struct admin *a, struct MHD_Connection *c,
				    const char *method)
{
	struct MHD_Response *r;

	if (strcmp(method, "HEAD") == 0)
		return admin_reply(c, 200, "text/event-stream; charset=utf-8",
				   "", 0, MHD_RESPMEM_PERSISTENT);
	r = admin_events_response(a->hub, c);
	if (r)
		return admin_queue(c, 200, r);
	if (errno == EBUSY)
		return admin_text(c, 503, "too many event streams\n");
	if (errno == ESHUTDOWN)
		return admin_text(c, 503, "stopping\n");
	return MHD_NO;
}

static enum MHD_Result admin_route(struct admin *a, struct MHD_Connection *c,
				   const char *url, const char *method)
{
	if (strcmp(url, "/metrics") == 0)
		return admin_metrics(a, c);
	if (strcmp(url, "/healthz") == 0)
		return atomic_load(&a->draining) ?
		       admin_text(c, 503, "draining\n") :
		       admin_text(c, 200, "ok\n");
	if (strcmp(url, "/") == 0)
		return admin_page(a, c);
	if (strcmp(url, "/requests") == 0)
		return admin_requests(a, c);
	if (strcmp(url, "/cancellations") == 0)
		return admin_cancellations(a, c);
	if (strcmp(url, "/events") == 0)
		return admin_events(a, c, method);
	return admin_text(c, 404, "not found\n");
}

static enum MHD_Result admin_on_request(void *cls, struct MHD_Connection *c,
					const char *url, const char *method,
					const char *version,
					const char *upload_data,
					size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;
	struct MHD_Response *r;

	(void)version;
	(void)upload_data;
	if (!*con_cls) {
		*con_cls = a;           /* answer on the second call: keep-alive */
		return MHD_YES;
	}
	if (*upload_data_size)
		return MHD_NO;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		r = MHD_create_response_from_buffer(19, "method not allowed\n",
						    MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, "Content-Type", "text/plain");
		MHD_add_response_header(r, "Allow", "GET, HEAD");
		return admin_queue(c, 405, r);
	}
	return admin_route(a, c, url, method);
}

/* A thread per connection: an event stream's reader blocks until there is
 * news (MHD allows it in this mode only), and a JSON request may wait for
 * a snapshot.  poll, as epoll does not go with it.  The 10 s timeout is
 * inactivity: a stream sends a summary every second.  MHD_USE_ITC: a
 * connection's thread that ends wakes the listening thread, which closes
 * its socket then (without it the socket stayed open until the next
 * accept: one descriptor per scrape, held). */
static struct MHD_Daemon *admin_daemon(struct admin *a, int fd)
{
	return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
				MHD_USE_ITC,
				0, NULL, NULL, admin_on_request, a,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, 64u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
}

struct admin *admin_start(int fd)
{
	struct admin *a = calloc(1, sizeof(*a));

	if (!a)
		goto fail;
	a->page = admin_page_new();
	if (!a->page)
		goto free_a;
	a->hub = admin_watch_new();
	if (!a->hub)
		goto free_page;
	a->d = admin_daemon(a, fd);
	if (!a->d)
		goto free_hub;
	return a;
free_hub:
	admin_watch_free(a->hub);
free_page:
	admin_page_free(a->page);
free_a:
	free(a);
fail:
	log_msg(LOG_ERROR, "cannot start the admin listener", NULL);
	return NULL;
}

void admin_attach(struct admin *a, const struct admin_source *src)
{
	if (a && admin_watch_attach(a->hub, src) < 0)
		log_msg(LOG_WARN, "the live view cannot show the workers", NULL);
}

void admin_detach(struct admin *a)
{
	if (a)
		admin_watch_detach(a->hub);
}

void admin_set_draining(struct admin *a)
{
	if (a)
		atomic_store(&a->draining, 1);
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	/* First the streams' readers, which MHD's stop would wait for. */
	admin_watch_stop(a->hub);
	MHD_stop_daemon(a->d);
	admin_watch_free(a->hub);
	admin_page_free(a->page);
	free(a);
}
