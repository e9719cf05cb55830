/* headers.c - HTTP header field rules shared by both hops. */
#include <string.h>
#include <strings.h>

#include "headers.h"

static const char *const hop_fields[] = {
	"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "proxy-authorization",
	"proxy-authenticate", "content-length",
};

bool headers_hop_by_hop(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(hop_fields) / sizeof(hop_fields[0]); i++)
		if (strcasecmp(name, hop_fields[i]) == 0)
			return true;
	return false;
}

bool headers_list_has(const char *list, const char *name)
{
	size_t n = strlen(name), tok;
	const char *p = list;

	while (p && *p) {
		p += strspn(p, " \t,");
		tok = strcspn(p, " \t,");
		if (tok == n && strncasecmp(p, name, n) == 0)
			return true;
		p += tok;
	}
	return false;
}
