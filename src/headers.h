/* headers.h - HTTP header field rules shared by both hops. */
#ifndef CTXPROXY_HEADERS_H
#define CTXPROXY_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

/* True for the fields a proxy must not forward as they are: the hop-by-hop
 * set of RFC 9110 §7.6.1 (Connection, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization,
 * Proxy-Authenticate) plus Content-Length, whose framing each side redoes.
 * Case-insensitive. */
bool headers_hop_by_hop(const char *name);

/* True when the comma-separated token list `list` (a Connection value)
 * names `name`, case-insensitively. */
bool headers_list_has(const char *list, const char *name);

#endif
