/* config_syntax.c - the syntax of what a config names: listen addresses, host names, paths, upstream URLs. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_syntax.h"

/* Exactly 1-5 digits, so "080" is fine but "+80" and "8 0" are not. */
static bool parse_port(const char *s, size_t len, int min, int *port)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > 65535)
		return false;
	*port = (int)v;
	return true;
}

bool config_is_ipv6(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

static bool is_hostname_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

bool config_is_hostname(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!is_hostname_char(s[i]))
			return false;
	return len > 0;
}

/* "IPv4:port", "[IPv6]:port", "*:port" or ":port"; NULL or the reason. */
const char *config_parse_addr(const char *s, struct config_addr *a)
{
	const char *colon = strrchr(s, ':');
	size_t hlen;
	struct in_addr v4;

	memset(a, 0, sizeof(*a));
	if (!colon)
		return "expected HOST:PORT";
	hlen = (size_t)(colon - s);
	if (s[0] == '[' && !memchr(s, ']', hlen))
		return "expected [IPv6]:PORT";
	if (!parse_port(colon + 1, strlen(colon + 1), 0, &a->port))
		return "port must be a number from 0 to 65535";
	if (s[0] == '[') {
		if (hlen < 2 || s[hlen - 1] != ']' || !config_is_ipv6(s + 1, hlen - 2))
			return "not a numeric IPv6 address in brackets";
		memcpy(a->host, s + 1, hlen - 2);
		a->ipv6 = true;
		return NULL;
	}
	if (hlen == 0 || (hlen == 1 && s[0] == '*'))
		return NULL;
	if (memchr(s, ':', hlen))
		return "IPv6 addresses must be in brackets, e.g. [::1]:8080";
	if (hlen >= sizeof(a->host))
		return "not a numeric IPv4 address";
	memcpy(a->host, s, hlen);
	if (inet_pton(AF_INET, a->host, &v4) != 1)
		return "not a numeric IPv4 address (host names are not resolved)";
	return NULL;
}

/* Compares the binary addresses, so "*:80" and "0.0.0.0:80" collide. */
bool config_addr_same(const struct config_addr *a, const struct config_addr *b)
{
	unsigned char ba[16] = { 0 }, bb[16] = { 0 };
	int af = a->ipv6 ? AF_INET6 : AF_INET;

	if (a->ipv6 != b->ipv6 || a->port != b->port || a->port == 0)
		return false;
	if (a->host[0] && inet_pton(af, a->host, ba) != 1)
		return false;
	if (b->host[0] && inet_pton(af, b->host, bb) != 1)
		return false;
	return memcmp(ba, bb, sizeof(ba)) == 0;
}

/* Rejects what would need escaping or could split a request line. */
bool config_is_plain_path(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '?' ||
		    *s == '#')
			return false;
	return true;
}

/* As config_is_plain_path, but a '?' starts a query, where another '?'
 * is fine too. */
bool config_is_plain_target(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '#')
			return false;
	return true;
}

/* ---- upstream URLs ---- */

static char *make_origin(const char *scheme, const char *host, size_t hlen,
			 int port)
{
	size_t cap = strlen(scheme) + hlen + sizeof(":65535");
	char *o = malloc(cap);
	size_t i;

	if (!o)
		return NULL;
	snprintf(o, cap, "%s%.*s:%d", scheme, (int)hlen, host, port);
	/* host names are case-insensitive: one spelling per upstream */
	for (i = 0; o[i]; i++)
		if (o[i] >= 'A' && o[i] <= 'Z')
			o[i] = (char)(o[i] - 'A' + 'a');
	return o;
}

/* Splits "host[:port]" (auth, alen bytes); NULL or the reason. */
static const char *split_authority(const char *auth, size_t alen,
				   size_t *hlen, int *port, int default_port)
{
	const char *end = auth + alen, *hend;

	if (alen && auth[0] == '[') {
		hend = memchr(auth, ']', alen);
		if (!hend || !config_is_ipv6(auth + 1, (size_t)(hend - auth - 1)))
			return "host is not a valid IPv6 address in brackets";
		hend++;
	} else {
		hend = memchr(auth, ':', alen);
		if (!hend)
			hend = end;
		if (hend == auth)
			return "missing host";
		if (!config_is_hostname(auth, (size_t)(hend - auth)))
			return "host contains invalid characters";
	}
	*hlen = (size_t)(hend - auth);
	*port = default_port;
	if (hend == end)
		return NULL;
	if (*hend != ':' || !parse_port(hend + 1, (size_t)(end - hend - 1), 1, port))
		return "port must be a number from 1 to 65535";
	return NULL;
}

const char *config_split_upstream(const char *url, char **origin,
				  char **base, char **host_field)
{
	bool tls = strncasecmp(url, "https://", 8) == 0;
	const char *scheme = tls ? "https://" : "http://";
	const char *auth = url + strlen(scheme), *path;
	int port, default_port = tls ? 443 : 80;
	size_t alen, hlen, plen;
	const char *why;

	if (!tls && strncasecmp(url, "http://", 7) != 0)
		return strstr(url, "://") ?
			"only http:// and https:// upstreams are supported" :
			"must start with http:// or https://";
	if (strpbrk(auth, "?#"))
		return "must not contain a query or fragment";
	alen = strcspn(auth, "/");
	if (memchr(auth, '@', alen))
		return "must not contain user information (user@)";
	why = split_authority(auth, alen, &hlen, &port, default_port);
	if (why)
		return why;
	path = auth + alen;
	if (!config_is_plain_path(path))
		return "path must not contain spaces or control characters";
	plen = strlen(path);
	while (plen && path[plen - 1] == '/')
		plen--;
	*origin = make_origin(scheme, auth, hlen, port);
	*base = strndup(path, plen);
	if (!*origin || !*base)
		return "out of memory";
	/* As a client writes Host: the port only when it is not the
	 * scheme's default. */
	*host_field = port == default_port ?
		strndup(*origin + strlen(scheme), hlen) :
		strdup(*origin + strlen(scheme));
	if (!*host_field)
		return "out of memory";
	return NULL;
}
