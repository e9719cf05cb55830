/* h1.h - HTTP/1.1 on the wire (RFC 9112): response heads and body framing parsed, request heads written; no I/O. */
#ifndef CTXPROXY_H1_H
#define CTXPROXY_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "headers.h"

/*
 * Pure functions over caller-owned bytes: nothing here reads a socket,
 * allocates, or keeps a pointer past the call except where said.  Strict
 * where a proxy must be (RFC 9112: what is ambiguous is refused, and the
 * proxy answers 502), lenient only where the RFC allows a recipient to be
 * (a bare LF ends a line).
 */

#define H1_HEAD_MAX (64 * 1024)      /* a longer response head is refused */
#define H1_FIELDS_MAX 100            /* more response fields are refused */

/* ---- response heads ---- */

/* A parsed response head.  Names and values point into the buffer given
 * to h1_parse_head (which must outlive the head) and are NOT NUL-ended:
 * use the lengths.  Values have their leading and trailing blanks (SP,
 * HTAB) removed. */
struct h1_head {
	int status;                      /* 100..599 */
	int minor;                       /* 0 or 1: HTTP/1.minor */
	bool keep_alive;                 /* another request may follow on the
					    connection (1.1 without "close",
					    1.0 with "keep-alive") */
	size_t n;
	struct headers_field f[H1_FIELDS_MAX];
};

/* Where the head at the start of buf[0, len) ends: the offset just past
 * the empty line that closes it (CRLF CRLF, or bare LFs), 0 when more
 * bytes are needed, or -EMSGSIZE when no end lies within the first
 * H1_HEAD_MAX bytes. */
ssize_t h1_head_end(const char *buf, size_t len);

/* Parse the head buf[0, len), len as returned by h1_head_end.  Returns 0,
 * or -EINVAL with *why a short static reason: a status line that is not
 * "HTTP/1.0" or "HTTP/1.1", SP, three digits (100..599), then SP and a
 * reason or nothing; a field line with obs-fold (starts with SP or HTAB),
 * a name that is not a token, no colon, or a CR, NUL or other control
 * byte but HTAB in its value; more than H1_FIELDS_MAX fields. */
int h1_parse_head(const char *buf, size_t len, struct h1_head *h,
		  const char **why);

/* A 1xx other than 101: an interim response to skip (its head only). */
bool h1_is_interim(int status);

/* ---- response bodies ---- */

enum h1_framing {
	H1_NO_BODY,                      /* HEAD, 1xx, 204, 304 */
	H1_LENGTH,                       /* Content-Length bytes */
	H1_CHUNKED,                      /* Transfer-Encoding ends in chunked */
	H1_UNTIL_CLOSE,                  /* the body ends at EOF */
};

/* The body decoder's state: plain data, embeddable (no allocation). */
struct h1_body {
	enum h1_framing framing;
	int64_t length;                  /* the Content-Length announced, also
					    for HEAD and 304; -1 for none */
	uint64_t left;                   /* bytes of the length or chunk left */
	int state;                       /* private: where in the chunking */
	size_t line;                     /* private: bytes of a size line or
					    trailer section seen */
	bool done;
};

/* Decide how the body of final response h to a request (head_request:
 * the method was HEAD) is framed, RFC 9112 §6.3: none for HEAD, 1xx, 204
 * and 304; chunked when Transfer-Encoding's last coding is "chunked";
 * until close for another Transfer-Encoding; Content-Length; else until
 * close.  A body until close clears h->keep_alive.  Refuses (-EINVAL,
 * *why) what a proxy must not guess at: Content-Length together with
 * Transfer-Encoding, Content-Lengths that differ or are not plain digits
 * (or exceed 2^62; a list of equal values "5, 5" is one length),
 * Transfer-Encoding in an HTTP/1.0 response, or one with no coding, a
 * coding that is not a token, or "chunked" with parameters.  These checks
 * hold for every response, also those without a body. */
int h1_body_init(struct h1_body *b, struct h1_head *h, bool head_request,
		 const char **why);

/* Decode body bytes in[0, len): the payload goes to out (which may be in
 * itself, or any buffer of at least len bytes), *out_len says how much.
 * Returns how many input bytes were consumed: fewer than len only once
 * the body is done (what follows belongs to no response).  Chunked: chunk
 * sizes in hex (no overflow), chunk extensions skipped (at most 4 KiB per
 * size line), trailer fields read and dropped (at most H1_HEAD_MAX
 * bytes); a malformed size line or missing CRLF after the data is -EINVAL
 * with *why set.  Any split of the input across calls gives the same
 * payload and result.  On -EINVAL *out_len still counts the payload
 * written before the fault (to be thrown away with the response), and
 * every later call fails too. */
ssize_t h1_body_decode(struct h1_body *b, const char *in, size_t len,
		       char *out, size_t *out_len, const char **why);

/* The connection reached EOF: 0 when that ends the body (until close, or
 * already done), -EPIPE when the body was cut short. */
int h1_body_eof(struct h1_body *b);

/* ---- request heads ---- */

/* A request head being written into a caller's buffer: each call appends
 * or, when it does not fit, sets `full` and leaves len as it was.  Once
 * full, no later call appends (not even a line that would fit), so the
 * buffer never holds a head with a line missing from its middle. */
struct h1_writer {
	char *buf;
	size_t cap, len;
	bool full;
};

/* "METHOD SP target SP HTTP/1.1 CRLF": the target byte for byte. */
void h1_put_request_line(struct h1_writer *w, const char *method,
			 const char *target, size_t target_len);

/* "name: value CRLF" (an empty value gives "name: CRLF"). */
void h1_put_field(struct h1_writer *w, const char *name, size_t name_len,
		  const char *value, size_t value_len);

/* "name: N CRLF" with N in decimal. */
void h1_put_field_u64(struct h1_writer *w, const char *name, size_t name_len,
		      uint64_t n);

/* The empty line that ends the head. */
void h1_put_end(struct h1_writer *w);

/* The size line of a request-body chunk of n bytes ("%x CRLF", n > 0:
 * lowercase hex, no leading zeros) or the last chunk with an empty
 * trailer section ("0 CRLF CRLF", n == 0) into buf (at least
 * H1_CHUNK_LINE_MAX bytes).  Returns its length.  The CRLF that follows
 * each chunk's data is the caller's to write. */
#define H1_CHUNK_LINE_MAX 24
size_t h1_chunk_line(char *buf, uint64_t n);

#endif
