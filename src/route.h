/* route.h - choosing a route for a request and building its upstream target. */
#ifndef CTXPROXY_ROUTE_H
#define CTXPROXY_ROUTE_H

#include <stddef.h>

#include "config.h"

/*
 * Matching: among routes whose host equals the request's Host (compared
 * case-insensitively, any ":port" ignored, "[v6]" brackets kept) or that
 * have no host, the longest prefix that is a plain string prefix of the
 * path wins; at equal length a host-specific route beats a host-less one;
 * at a full tie the first in the file wins.
 */

struct route_table;

/* Build a table over cfg's routes; cfg must outlive it.  NULL on ENOMEM. */
struct route_table *route_table_new(const struct config *cfg);
void route_table_free(struct route_table *rt);

/* The route for (host, path), or NULL (404).  host may be NULL. */
const struct config_route *route_match(const struct route_table *rt,
                                       const char *host, const char *path);

/* Write the upstream request target for path (the raw request path, no
 * query) and query (raw, without '?', NULL or "" for none) into buf:
 * base + (path with the prefix stripped when strip_prefix; the stripped
 * path always starts with "/") + ("?" query).  Every byte of path and
 * query is copied as it is (bytes >= 0x80 included): the upstream sees the
 * client's target, not a re-encoding of it.  Returns the length written,
 * or -ENOSPC when buf is too small (what fits is still NUL-terminated). */
int route_upstream_target(const struct config_route *r, const char *path,
                          const char *query, char *buf, size_t len);

#endif
