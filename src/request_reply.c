/* request_reply.c - a request's answers: ctxproxy's own errors, and the upstream's response streamed to the client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "fetch.h"
#include "log.h"
#include "request_life.h"

#define REQ_BLOCK_SIZE (16 * 1024)
/* What libmicrohttpd adds to a response head (status line, Date,
 * Content-Length or Transfer-Encoding, Connection, X-Request-Id), and the
 * part of the connection's memory it keeps for itself (measured: a
 * request and a response head together fit up to ~15 KiB of 16). */
#define REQ_REPLY_OVERHEAD 256
#define REQ_CONN_SLACK 1024

enum MHD_Result req_reply(struct req *r, int status, const char *msg,
			  bool close)
{
	struct MHD_Response *resp;
	char body[128];
	int n;
	enum MHD_Result rc;

	ASSERT(!r->responded);
	n = snprintf(body, sizeof(body), "%s\n", msg);
	resp = MHD_create_response_from_buffer((size_t)n, body,
					       MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	if (close)
		MHD_add_response_header(resp, "Connection", "close");
	rc = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	r->status = status;
	r->bytes_out = (uint64_t)n;
	req_set_phase(r, PH_DONE);
	return rc;
}

static ssize_t req_read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct req *r = cls;
	ssize_t n;

	(void)pos;
	n = fetch_recv(req_fetch(r), buf, max);
	if (n > 0) {
		r->bytes_out += (uint64_t)n;
		return n;
	}
	if (n == FETCH_RECV_END)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n == FETCH_RECV_ABORTED || ctx_is_cancelled(r->ctx) ||
	    !req_suspend(r))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return 0;
}

static void req_body_free(void *cls)
{
	req_unref(cls);
}

static bool status_is_bodyless(int status)
{
	return status < 200 || status == 204 || status == 304;
}

/* When the whole body is in already (the common small response), hand it
 * over as a buffer: MHD then sends head and body in one system call, and
 * keeps no reader (whose 16 KiB block it would allocate and clear). */
static struct MHD_Response *req_whole_body(struct req *r, int64_t len)
{
	struct MHD_Response *resp;
	const char *body;
	size_t have;

	struct fetch *f = req_fetch(r);

	if (!fetch_ended(f) || !fetch_ok(f) || strcmp(r->method, "HEAD") == 0)
		return NULL;
	body = fetch_peek(f, &have);
	if (len >= 0 && (uint64_t)len != have)
		return NULL;
	resp = MHD_create_response_from_buffer(have, (void *)body,
					       MHD_RESPMEM_MUST_COPY);
	if (resp)
		r->bytes_out = have;
	return resp;
}

/* The response for the client: the whole body at once, or a reader. */
static struct MHD_Response *req_response(struct req *r, int64_t len)
{
	struct MHD_Response *resp = req_whole_body(r, len);

	if (resp)
		return resp;
	/* libmicrohttpd 0.9.75 ends a HEAD response of unknown length with a
	 * chunk terminator, which the client would take for the start of its
	 * next response: say Content-Length: 0 instead. */
	if (len < 0 && strcmp(r->method, "HEAD") == 0)
		return MHD_create_response_from_buffer(0, (void *)"",
						       MHD_RESPMEM_PERSISTENT);
	resp = MHD_create_response_from_callback(len >= 0 ? (uint64_t)len :
						 MHD_SIZE_UNKNOWN,
						 REQ_BLOCK_SIZE, req_read_body,
						 r, req_body_free);
	if (resp)
		r->refs++;
	return resp;
}

/* libmicrohttpd builds the response head in the connection's memory,
 * which also holds the request's head: one that does not fit would close
 * the client's connection without a word, so it is a 502 instead. */
static bool req_head_fits(struct req *r)
{
	const union MHD_ConnectionInfo *ci;
	size_t need = fetch_header_bytes(req_fetch(r)) + REQ_REPLY_OVERHEAD;

	ci = MHD_get_connection_info(r->conn,
				     MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (ci)
		need += ci->header_size;
	return need <= REQ_CONN_MEMORY - REQ_CONN_SLACK;
}

enum MHD_Result req_reply_stream(struct req *r)
{
	struct MHD_Response *resp;
	struct fetch *f = req_fetch(r);
	int status = fetch_status(f);
	int64_t len = fetch_content_length(f);
	const char *name, *value;
	enum MHD_Result rc;
	size_t i;

	ASSERT(!r->responded);
	if (!req_head_fits(r)) {
		log_msg(LOG_WARN, "upstream response head too large for the "
			"client connection", "id=%s", r->id);
		ctx_cancel(r->child, CTX_CAUSE_UPSTREAM_ERROR);
		return req_reply(r, 502, "upstream response head too large",
				 false);
	}
	if (status_is_bodyless(status))
		len = 0;
	/* A 101 comes only to an upgrade request: the tunnel follows it. */
	resp = status == 101 ? req_upgrade_response() : req_response(r, len);
	if (!resp)
		return MHD_NO;
	for (i = 0; i < fetch_header_count(f); i++) {
		fetch_header(f, i, &name, &value);
		MHD_add_response_header(resp, name, value);
	}
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	rc = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	r->status = status;
	req_set_phase(r, PH_STREAMING);
	return rc;
}

/* The fetch ended before a response head: say why. */
enum MHD_Result req_reply_failure(struct req *r)
{
	switch (ctx_cause(r->child)) {
	case CTX_CAUSE_CONNECT_TIMEOUT:
		return req_reply(r, 504, "upstream connect timeout", false);
	case CTX_CAUSE_HEADER_TIMEOUT:
		return req_reply(r, 504, "upstream header timeout", false);
	case CTX_CAUSE_DEADLINE_EXCEEDED:
		return req_reply(r, 504, "upstream timeout", false);
	case CTX_CAUSE_SHUTDOWN:
		return req_reply(r, 503, "shutting down", true);
	default:
		return req_reply(r, 502, "upstream unavailable", false);
	}
}
