/* admin_page.h - GET / on the admin listener: the live page, one self-contained document, and the CSP that lets exactly its own script and style run. */
#ifndef CTXPROXY_ADMIN_PAGE_H
#define CTXPROXY_ADMIN_PAGE_H

#include <stddef.h>

struct admin_page;

/* The page assembled and its Content-Security-Policy made: the SHA-256 of
 * its one inline script and one inline style (script-src, style-src), the
 * same origin for /events and /cancellations (connect-src), nothing else.
 * NULL with errno set on failure.  admin_page_free(NULL) is a no-op. */
struct admin_page *admin_page_new(void);
void admin_page_free(struct admin_page *p);

/* The document (text/html; charset=utf-8) and the value of its
 * Content-Security-Policy header; they live as long as p.  Any thread. */
const char *admin_page_html(const struct admin_page *p, size_t *len);
const char *admin_page_csp(const struct admin_page *p);

#endif
