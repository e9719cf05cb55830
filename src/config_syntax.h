/* config_syntax.h - the syntax of what a config names: listen addresses, host names, paths, upstream URLs. */
#ifndef CTXPROXY_CONFIG_SYNTAX_H
#define CTXPROXY_CONFIG_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>

/* A listen address: "127.0.0.1:8080", "[::1]:8080", "*:8080" or ":8080"
 * (all IPv4 addresses).  Port 0 asks the kernel for a free port. */
struct config_addr {
	char host[64];   /* numeric IPv4/IPv6 without brackets; "" = any IPv4 */
	int port;        /* 0..65535 */
	bool ipv6;
};

/* Parse "IPv4:port", "[IPv6]:port", "*:port" or ":port" into *a.  Returns
 * NULL, or a static string saying what is wrong. */
const char *config_parse_addr(const char *s, struct config_addr *a);

/* s[0, len) is a numeric IPv6 address (no brackets). */
bool config_is_ipv6(const char *s, size_t len);

/* s[0, len) is a host name: letters, digits, '-', '.', '_'; not empty. */
bool config_is_hostname(const char *s, size_t len);

/* No space, control byte, '?' or '#': nothing that would need escaping
 * or could split a request line. */
bool config_is_plain_path(const char *s);

/* A plain path and, after the first '?', an optional query: no space,
 * control byte or '#' anywhere. */
bool config_is_plain_target(const char *s);

/* The same address and port, compared in binary ("*:80" and
 * "0.0.0.0:80" are the same); port 0 never clashes. */
bool config_addr_same(const struct config_addr *a,
		      const struct config_addr *b);

/* An upstream URL "http[s]://host[:port][/base]", split: *origin
 * "http[s]://host:port" (host in lower case, the port explicit: 80 or 443
 * by default), *base "" or "/base" (no trailing slash), *host_field the
 * Host field for it ("host[:port]", without the scheme's default port).  Each is allocated (the caller frees them, also on
 * failure).  NULL, or a static string saying what is wrong. */
const char *config_split_upstream(const char *url, char **origin,
				  char **base, char **host_field);

#endif
