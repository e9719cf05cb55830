/* route.c - pick the route for a request and build its upstream target. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "route.h"

struct route_entry {
	const struct config_route *r;
	size_t prefix_len;
	size_t host_len;        /* 0 = any host */
};

/* Sorted so that the first entry that matches is the winner. */
struct route_table {
	size_t n;
	struct route_entry e[];
};

static int entry_cmp(const void *pa, const void *pb)
{
	const struct route_entry *a = pa, *b = pb;

	if (a->prefix_len != b->prefix_len)
		return a->prefix_len > b->prefix_len ? -1 : 1;
	if (!a->r->host != !b->r->host)
		return a->r->host ? -1 : 1;
	/* the routes sit in one array in file order: qsort is not stable */
	return a->r < b->r ? -1 : a->r > b->r;
}

struct route_table *route_table_new(const struct config *cfg)
{
	struct route_table *rt;
	size_t i;

	rt = malloc(sizeof(*rt) + cfg->nroutes * sizeof(rt->e[0]));
	if (!rt)
		return NULL;
	rt->n = cfg->nroutes;
	for (i = 0; i < rt->n; i++) {
		const struct config_route *r = &cfg->routes[i];

		rt->e[i].r = r;
		rt->e[i].prefix_len = strlen(r->prefix);
		rt->e[i].host_len = r->host ? strlen(r->host) : 0;
	}
	qsort(rt->e, rt->n, sizeof(rt->e[0]), entry_cmp);
	return rt;
}

void route_table_free(struct route_table *rt)
{
	free(rt);
}

/* Length of the Host header without its ":port"; "[::1]:80" -> "[::1]". */
static size_t host_len_without_port(const char *host)
{
	const char *end;

	if (host[0] == '[') {
		end = strchr(host, ']');
		return end ? (size_t)(end - host) + 1 : strlen(host);
	}
	return strcspn(host, ":");
}

const struct config_route *route_match(const struct route_table *rt,
				       const char *host, const char *path)
{
	size_t hlen = host ? host_len_without_port(host) : 0;
	size_t i;

	if (!path)
		return NULL;
	for (i = 0; i < rt->n; i++) {
		const struct route_entry *e = &rt->e[i];

		if (e->host_len && (e->host_len != hlen ||
				    strncasecmp(e->r->host, host, hlen) != 0))
			continue;
		if (strncmp(path, e->r->prefix, e->prefix_len) == 0)
			return e->r;
	}
	return NULL;
}

int route_upstream_target(const struct config_route *r, const char *path,
			  const char *query, char *buf, size_t len)
{
	size_t plen = strlen(r->prefix);
	const char *rest = path;
	const char *part[5];
	size_t part_len[5], total = 0, i, room, n;

	if (r->strip_prefix && strncmp(path, r->prefix, plen) == 0)
		rest = path + plen;
	if (!query)
		query = "";
	part[0] = r->upstream_base;
	part[1] = rest[0] == '/' ? "" : "/";
	part[2] = rest;
	part[3] = query[0] ? "?" : "";
	part[4] = query;
	for (i = 0; i < 5; i++) {
		part_len[i] = strlen(part[i]);
		total += part_len[i];
	}
	/* Like snprintf: what fits, NUL-terminated, even when not all does. */
	for (i = 0, room = len; i < 5 && room > 1; i++) {
		n = part_len[i] < room - 1 ? part_len[i] : room - 1;
		memcpy(buf, part[i], n);
		buf += n;
		room -= n;
	}
	if (room)
		*buf = '\0';
	if (total >= len || total > INT_MAX)
		return -ENOSPC;
	return (int)total;
}
