/* admin.c - the admin listener: GET /metrics (Prometheus) and GET /healthz. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "admin.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

struct admin {
	struct MHD_Daemon *d;
	atomic_int draining;
};

static enum MHD_Result admin_reply(struct MHD_Connection *c, unsigned status,
				   const char *type, char *body, size_t len,
				   enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	r = MHD_create_response_from_buffer(len, body, mode);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
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
	fclose(out);
	if (rc < 0) {
		free(buf);
		return admin_reply(c, 500, "text/plain", "metrics failed\n", 15,
				   MHD_RESPMEM_PERSISTENT);
	}
	return admin_reply(c, 200, "text/plain; version=0.0.4", buf, len,
			   MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result admin_on_request(void *cls, struct MHD_Connection *c,
					const char *url, const char *method,
					const char *version,
					const char *upload_data,
					size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;

	(void)version;
	(void)upload_data;
	if (!*con_cls) {
		*con_cls = a;           /* answer on the second call: keep-alive */
		return MHD_YES;
	}
	if (*upload_data_size)
		return MHD_NO;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return admin_reply(c, 405, "text/plain", "method not allowed\n",
				   19, MHD_RESPMEM_PERSISTENT);
	if (strcmp(url, "/metrics") == 0)
		return admin_metrics(a, c);
	if (strcmp(url, "/healthz") == 0) {
		if (atomic_load(&a->draining))
			return admin_reply(c, 503, "text/plain", "draining\n", 9,
					   MHD_RESPMEM_PERSISTENT);
		return admin_reply(c, 200, "text/plain", "ok\n", 3,
				   MHD_RESPMEM_PERSISTENT);
	}
	return admin_reply(c, 404, "text/plain", "not found\n", 10,
			   MHD_RESPMEM_PERSISTENT);
}

struct admin *admin_start(int fd)
{
	struct admin *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
				0, NULL, NULL, admin_on_request, a,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, 64u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
	if (!a->d) {
		log_msg(LOG_ERROR, "cannot start the admin listener", NULL);
		free(a);
		return NULL;
	}
	return a;
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
	MHD_stop_daemon(a->d);
	free(a);
}
