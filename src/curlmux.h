/* curlmux.h - libcurl's multi interface driven by a worker's loop: its sockets in the epoll set, its timer, and the end of each transfer. */
#ifndef CTXPROXY_CURLMUX_H
#define CTXPROXY_CURLMUX_H

#include <stdint.h>

#include <curl/curl.h>

struct loop;
struct curlmux;

/*
 * Threading: a mux, its handles and its sockets belong to one loop's
 * thread.  The mux tracks every socket its handles open (it opens them
 * itself, through CURLOPT_OPENSOCKETFUNCTION) and watches them in the
 * loop while libcurl wants events; an owner may take a connected socket
 * over (it then stays open when libcurl lets go of it) or keep libcurl's
 * handle and watch the socket itself.
 */

/* A transfer ended: easy (still in the mux) and libcurl's result.  Never
 * called from inside curlmux_add. */
typedef void (*curlmux_done_fn)(CURL *easy, CURLcode rc);

/* A mux for loop's thread.  NULL on ENOMEM. */
struct curlmux *curlmux_new(struct loop *loop, curlmux_done_fn done);

/* Every handle must be removed and cleaned up first.  curlmux_free(NULL)
 * is a no-op. */
void curlmux_free(struct curlmux *m);

/* Make easy's sockets the mux's to open and close, then add it.  0 or
 * -ENOMEM. */
int curlmux_add(struct curlmux *m, CURL *easy);

/* Take easy out (a CONNECT_ONLY handle's socket is then closed, unless
 * taken over). */
void curlmux_remove(struct curlmux *m, CURL *easy);

/* easy is connected: its socket s becomes the caller's.  The handle is
 * removed and cleaned up, s stays open and is no longer watched. */
void curlmux_take_over(struct curlmux *m, CURL *easy, curl_socket_t s);

/* easy is connected and stays (a TLS connection's state is the
 * handle's): s is no longer watched for libcurl, the caller watches it;
 * libcurl still closes it when the handle goes. */
void curlmux_quiet(struct curlmux *m, curl_socket_t s);

/* When libcurl's timer is due (monotonic ns), or CTX_NO_DEADLINE; run it
 * (and report what ended) when it is. */
int64_t curlmux_next_timer(const struct curlmux *m);
void curlmux_on_timer(struct curlmux *m, int64_t now);

#endif
