/* curlmux.c - libcurl's multi interface driven by a worker's loop: its sockets in the epoll set, its timer, and the end of each transfer. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "context.h"
#include "curlmux.h"
#include "loop.h"

/* A socket libcurl uses while it connects, in the worker's epoll set as
 * long as libcurl wants events from it. */
struct csock {
	struct loop_io io;
	struct curlmux *m;
	uint32_t events;                 /* what epoll watches now */
	bool added;                      /* in the epoll set */
	bool taken;                      /* ours now: libcurl must not close it */
	bool quiet;                      /* a TLS connection's: in its uconn's
					    registration, libcurl's wishes
					    ignored */
};

struct curlmux {
	struct loop *loop;
	CURLM *multi;
	curlmux_done_fn done;
	int64_t timer_at;                /* libcurl's, or CTX_NO_DEADLINE */
	struct csock **socks;            /* by descriptor */
	size_t nsocks;
};

static void curlmux_check_done(struct curlmux *m);


static int csock_watch(struct csock *cs, uint32_t events)
{
	int rc;

	if (cs->added && cs->events == events)
		return 0;
	if (!events) {
		rc = cs->added ? loop_del(cs->m->loop, &cs->io) : 0;
		cs->added = false;
		return rc;
	}
	rc = cs->added ? loop_mod(cs->m->loop, &cs->io, events) :
		loop_add(cs->m->loop, &cs->io, events);
	if (rc == 0) {
		cs->added = true;
		cs->events = events;
	}
	return rc;
}

static void csock_drop(struct curlmux *m, struct csock *cs)
{
	csock_watch(cs, 0);
	m->socks[cs->io.fd] = NULL;
	free(cs);
}

static struct csock *csock_of(const struct curlmux *m, curl_socket_t s)
{
	return s >= 0 && (size_t)s < m->nsocks ? m->socks[s] : NULL;
}

static void csock_on_io(struct loop_io *io, uint32_t events)
{
	struct curlmux *m = ((struct csock *)io)->m;
	int mask = 0, running;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
		mask |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		mask |= CURL_CSELECT_OUT;
	if (events & EPOLLERR)
		mask |= CURL_CSELECT_ERR;
	curl_multi_socket_action(m->multi, io->fd, mask, &running);
	curlmux_check_done(m);
}

/* The table slot for s, growing the table as needed. */
static struct csock **csock_slot(struct curlmux *m, curl_socket_t s)
{
	struct csock **t;
	size_t n;

	if ((size_t)s < m->nsocks)
		return &m->socks[s];
	n = m->nsocks ? m->nsocks : 64;
	while (n <= (size_t)s)
		n *= 2;
	t = realloc(m->socks, n * sizeof(*t));
	if (!t)
		return NULL;
	memset(t + m->nsocks, 0, (n - m->nsocks) * sizeof(*t));
	m->socks = t;
	m->nsocks = n;
	return &m->socks[s];
}

static struct csock *csock_new(struct curlmux *m, curl_socket_t s)
{
	struct csock **slot = csock_slot(m, s), *cs;

	if (!slot)
		return NULL;
	free(*slot);                     /* a stale entry: its file is gone */
	cs = calloc(1, sizeof(*cs));
	*slot = cs;
	if (!cs)
		return NULL;
	cs->io.fd = s;
	cs->io.fn = csock_on_io;
	cs->m = m;
	return cs;
}

static int mux_on_socket(CURL *easy, curl_socket_t s, int what,
			      void *userp, void *socketp)
{
	struct curlmux *m = userp;
	struct csock *cs = csock_of(m, s);
	uint32_t ev = 0;

	(void)easy;
	(void)socketp;
	if (cs && (cs->taken || cs->quiet))
		return 0;
	if (what == CURL_POLL_REMOVE)
		return cs ? csock_watch(cs, 0) : 0;
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (!cs)
		cs = csock_new(m, s);   /* e.g. the resolver's */
	if (!cs)
		return -1;
	return csock_watch(cs, ev) < 0 ? -1 : 0;
}

static curl_socket_t mux_on_open(void *clientp, curlsocktype purpose,
				      struct curl_sockaddr *a)
{
	struct curlmux *m = clientp;
	curl_socket_t s;

	(void)purpose;
	s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (s < 0)
		return CURL_SOCKET_BAD;
	if (!csock_new(m, s)) {
		close(s);
		return CURL_SOCKET_BAD;
	}
	return s;
}

/* libcurl closes a socket: forget it first (its number will be reused),
 * and leave it open when it has been taken over. */
static int mux_on_close(void *clientp, curl_socket_t s)
{
	struct curlmux *m = clientp;
	struct csock *cs = csock_of(m, s);
	bool taken = cs && cs->taken;

	if (cs)
		csock_drop(m, cs);
	return taken ? 0 : close(s);
}

static int mux_on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
	struct curlmux *m = userp;

	(void)multi;
	if (timeout_ms < 0)
		m->timer_at = CTX_NO_DEADLINE;
	else
		m->timer_at = ctx_now_ns() + (int64_t)timeout_ms * 1000000;
	return 0;
}

static void curlmux_check_done(struct curlmux *m)
{
	CURLMsg *msg;
	int left;

	for (;;) {
		msg = curl_multi_info_read(m->multi, &left);
		if (!msg)
			break;
		if (msg->msg == CURLMSG_DONE)
			m->done(msg->easy_handle, msg->data.result);
	}
}

int curlmux_add(struct curlmux *m, CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, mux_on_open);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, m);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, mux_on_close);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, m);
	return curl_multi_add_handle(m->multi, easy) == CURLM_OK ? 0 : -ENOMEM;
}

void curlmux_remove(struct curlmux *m, CURL *easy)
{
	curl_multi_remove_handle(m->multi, easy);
}

/* Marked taken first, so neither libcurl's removal nor its cleanup closes
 * it; forgotten after (libcurl may not have closed it at all). */
void curlmux_take_over(struct curlmux *m, CURL *easy, curl_socket_t s)
{
	struct csock *cs = csock_of(m, s);

	if (cs)
		cs->taken = true;
	curl_multi_remove_handle(m->multi, easy);
	curl_easy_cleanup(easy);
	cs = csock_of(m, s);
	if (cs)
		csock_drop(m, cs);
}

void curlmux_quiet(struct curlmux *m, curl_socket_t s)
{
	struct csock *cs = csock_of(m, s);

	if (cs) {
		csock_watch(cs, 0);
		cs->quiet = true;
	}
}

int64_t curlmux_next_timer(const struct curlmux *m)
{
	return m->timer_at;
}

void curlmux_on_timer(struct curlmux *m, int64_t now)
{
	int running;

	if (m->timer_at > now)
		return;
	m->timer_at = CTX_NO_DEADLINE;
	curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	curlmux_check_done(m);
}

struct curlmux *curlmux_new(struct loop *loop, curlmux_done_fn done)
{
	struct curlmux *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->loop = loop;
	m->done = done;
	m->timer_at = CTX_NO_DEADLINE;
	m->multi = curl_multi_init();
	if (!m->multi) {
		free(m);
		return NULL;
	}
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, mux_on_socket);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, mux_on_timer_set);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	return m;
}

void curlmux_free(struct curlmux *m)
{
	size_t i;

	if (!m)
		return;
	curl_multi_cleanup(m->multi);
	for (i = 0; i < m->nsocks; i++)
		free(m->socks[i]);
	free(m->socks);
	free(m);
}
