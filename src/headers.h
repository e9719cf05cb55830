/* headers.h - HTTP header field rules shared by both hops. */
#ifndef CTXPROXY_HEADERS_H
#define CTXPROXY_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

/* The hop-by-hop set of RFC 9110 §7.6.1 (Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Authorization, Proxy-Authenticate) plus Content-Length, whose
 * framing each side redoes, is never forwarded in either direction; see
 * headers_response_forwarded and headers_rewrite_request. */

/* True when the comma-separated token list list[0, list_len) (a
 * Connection value; not NUL-ended, as the fields of a parsed head are)
 * names name[0, name_len): elements are split at commas, SP and HTAB, and
 * compared case-insensitively. */
bool headers_list_has_n(const char *list, size_t list_len, const char *name,
			size_t name_len);

/* True for the fields the proxy writes or strips itself in an upstream
 * request: the hop-by-hop set, Host, Expect, X-Request-Id,
 * X-Forwarded-For/-Proto/-Host and Via.  Case-insensitive. */
bool headers_proxy_managed(const char *name);



/* One request header field as received, lengths included (a value may hold
 * bytes a C string cannot show, such as NUL). */
struct headers_field {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/* True when the request fields f[0, n) ask to upgrade to a WebSocket
 * (SPEC §10): a Connection field lists "upgrade" and an Upgrade field
 * lists "websocket", both case-insensitive. */
bool headers_wants_websocket(const struct headers_field *f, size_t n);

/* How the request body is framed, once the head has been checked. */
struct headers_framing {
	long long content_length;   /* -1 when absent */
	bool chunked;               /* Transfer-Encoding: chunked */
};

/* Check a request head against RFC 9112's musts that libmicrohttpd 0.9.75
 * does not enforce: header names are tokens; values hold no CR, LF or NUL;
 * not both Content-Length and Transfer-Encoding; Content-Lengths are
 * digits and all equal; Transfer-Encoding is exactly "chunked", and only
 * on HTTP/1.1; HTTP/1.1 has exactly one Host.  `version` is "HTTP/1.1" or "HTTP/1.0".  Returns 0
 * and fills *fr, or -EINVAL with *why set to a short static reason. */
int headers_check_request(const char *version, const struct headers_field *f,
			  size_t n, struct headers_framing *fr, const char **why);

/* Check a raw request target: origin-form ("/..."), no control bytes or
 * spaces, and no "." or ".." path segment, also when spelled with %2e.
 * Returns 0 or -EINVAL with *why set. */
int headers_check_target(const char *target, const char **why);

/* True when s (of length n) is a non-empty RFC 9110 token. */
bool headers_is_token(const char *s, size_t n);

/* libmicrohttpd 0.9.75 parses a request head in place, replacing each
 * colon, CR and LF with NUL; what it cannot parse it drops (an empty
 * name), cuts (a value with a NUL) or copies elsewhere (an obs-fold), all
 * silently.  Given the head's bytes [from, end) after the request line and
 * its fields in arrival order, check that every field lies inside it, in
 * order, and that only blanks and the NULs MHD wrote over separators (one
 * per colon, CR and LF) lie between them.
 * Returns 0 or -EINVAL with *why set. */
int headers_check_layout(const char *from, const char *end,
			 const struct headers_field *f, size_t n,
			 const char **why);

/* The request line as MHD left it: method, target and version in one
 * buffer, each followed by exactly one separator.  A NUL inside the method
 * or target (which MHD's C strings silently cut) breaks that.  target_len
 * is the length of the target as received (strlen of a copy taken before
 * MHD parsed the query).  Returns 0 or -EINVAL with *why set. */
int headers_check_line_layout(const char *method, const char *target,
			      size_t target_len, const char *version,
			      const char **why);

/* What the proxy itself puts in an upstream request head. */
struct headers_upstream {
	const char *host;            /* the client's Host, NULL when none */
	bool preserve_host;          /* send the client's Host upstream */
	const char *upstream_host;   /* Host otherwise: the upstream's host[:port] */
	const char *client_ip;       /* appended to X-Forwarded-For */
	const char *request_id;      /* X-Request-Id */
	const char *deadline_header; /* the client's copy is dropped; "" = none */
	bool https;                  /* the client came over TLS: X-Forwarded-Proto */
	/* NULL: the client's traceparent and tracestate go on untouched
	 * (trace_context = false).  Else the client's are dropped and this
	 * traceparent goes instead, with the client's tracestate fields
	 * (joined with ",") when tracestate is set and they fit in
	 * TRACE_STATE_MAX bytes. */
	const char *traceparent;
	bool tracestate;
};

/* How many fields of f[0, n) are named name (lower case), and the first
 * of them in *first (NULL when none). */
size_t headers_count(const struct headers_field *f, size_t n,
		     const char *name, const struct headers_field **first);

/* Called once per field of the upstream head, in order. */
typedef int (*headers_emit_fn)(void *arg, const char *name, size_t name_len,
			       const char *value, size_t value_len);

/* Emit the upstream request's fields: the client's end-to-end fields, in
 * order, without the hop-by-hop ones, those its Connection names, the
 * framing, Expect, Host, the deadline header and everything the proxy sets
 * itself; then the proxy's own: Host (the client's when preserved and
 * present, else upstream_host), X-Request-Id, X-Forwarded-For (the
 * client's list joined, then client_ip), X-Forwarded-Proto,
 * X-Forwarded-Host and Via.  Returns 0 or the first negative value emit
 * returned. */
int headers_rewrite_request(const struct headers_field *in, size_t n,
			    const struct headers_upstream *u,
			    headers_emit_fn emit, void *arg);

/* True when response field f, one of the response's fields all[0, n), may
 * be forwarded to the client: not hop-by-hop, and not named by any of the
 * response's Connection fields.  (The response's framing is h1.c's.) */
bool headers_response_forwarded(const struct headers_field *f,
				const struct headers_field *all, size_t n);

#endif
