/* fetch_response.h - an upstream response being read: heads parsed, the body decoded in place, the payload handed out; the fetch's life is fetch.c's. */
#ifndef CTXPROXY_FETCH_RESPONSE_H
#define CTXPROXY_FETCH_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "h1.h"

struct upstream;
struct uconn;

/* One direction's bounded byte buffer: bytes live in [off, off + len). */
struct fetch_buf {
	char *data;
	size_t off, len;
};

/* A response as it is read (embedded in its fetch; plain data). */
struct fetch_resp {
	struct fetch_buf buf;            /* the head, then the payload */
	size_t head_scanned;             /* of buf, without a head end */
	struct h1_body body;
	bool head_request;               /* the request was a HEAD */
	bool upgrade;                    /* it asked to upgrade: 101 is final */
	bool upgraded;                   /* ... and got it: buf holds what
					    came after the head */
	bool got_bytes;                  /* any byte of a response came */
	bool head_done;                  /* the final head was taken */
	bool keep_alive;                 /* the connection may serve again */
	bool paused;                     /* buf is full: reading waits */
	int status;
	int64_t content_length;          /* announced; -1 for none */
	int64_t head_ns, last_read_ns;   /* monotonic */
	char *hdr;                       /* kept fields, "name\0value\0" */
	size_t hdr_len, hdr_cap, nhdr;
};

/* What fetch_resp_read() found; the fetch acts on it. */
enum {
	FETCH_RESP_HEAD = 1,             /* the final head was taken */
	FETCH_RESP_BODY = 2,             /* payload bytes were added */
	FETCH_RESP_DONE = 4,             /* the whole response is in */
	FETCH_RESP_REFUSED = 8,          /* malformed: a 502, *why set */
	FETCH_RESP_DIED = 16,            /* EOF or reset before any byte */
	FETCH_RESP_CUT = 32,             /* EOF or reset within the body */
	FETCH_RESP_UPGRADED = 64,        /* a 101 to an upgrade request */
};
#define FETCH_RESP_END (FETCH_RESP_REFUSED | FETCH_RESP_DIED | FETCH_RESP_CUT)

/* Read again once this much of the buffer is free. */
#define FETCH_RESP_RESUME_ROOM (16 * 1024)

/* An empty response to a request (head_request: the method was HEAD;
 * upgrade: it asked to upgrade, so a 101 is its final head). */
void fetch_resp_init(struct fetch_resp *r, bool head_request, bool upgrade);

/* Give the buffer back to up's pool and free the kept fields. */
void fetch_resp_free(struct fetch_resp *r, struct upstream *up);

/* Read and parse what c holds (edge-triggered: until EAGAIN, a full
 * buffer (r->paused) or the end), taking the buffer from up's pool the
 * first time.  Interim 1xx heads are dropped; the final head's kept
 * fields are not hop-by-hop nor named by its Connection.  Returns
 * FETCH_RESP_* bits, *why set with FETCH_RESP_REFUSED. */
unsigned fetch_resp_read(struct fetch_resp *r, struct uconn *c,
			 struct upstream *up, const char **why);

/* Move up to len payload bytes out to buf.  Returns the count. */
size_t fetch_resp_take(struct fetch_resp *r, char *buf, size_t len);

/* Kept field i (i < r->nhdr), as C strings. */
void fetch_resp_header(const struct fetch_resp *r, size_t i,
		       const char **name, const char **value);

/* Move a buffer's bytes to its start. */
void fetch_buf_compact(struct fetch_buf *b);

#endif
