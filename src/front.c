/* front.c - the client side: libmicrohttpd daemons, client connections and configuration generations. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "config.h"
#include "front.h"
#include "gen.h"
#include "invariant.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "request.h"
#include "tls.h"


/* Per client connection, from accept to close: its hang-up watch, the
 * clock on its request head, and what its requests see of it. */
struct fconn {
	struct front *fr;
	struct req_conn rc;
	struct loop_io hup;               /* EPOLLRDHUP | EPOLLET, accept to close */
	char *uri;                        /* rc.uri's buffer */
	size_t cap;
	int fd;
	ctx_t *head_timer;                /* client_header_timeout_ms */
	ctx_watch_t head_watch;
	/* TLS listeners only: the session (MHD's, gone before NOTIFY_CLOSED),
	 * the certificate set it was accepted under, held until close so a
	 * reload never frees what a handshake uses, and how it went. */
	gnutls_session_t session;
	struct tls_set *tls;
	bool tls_up;                      /* the client's Finished arrived */
	bool head_expired;                /* the head clock closed it */
};

struct front {
	struct front_env fenv;
	struct req_env env;               /* what every request shares */
	struct req_gen *old;              /* replaced, still used by requests */
	struct MHD_Daemon *d[CONFIG_LISTEN_MAX];
	struct loop_io dio[CONFIG_LISTEN_MAX];
	int nd;
};

static struct fconn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static int conn_fd(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

/* ---- configuration generations ---- */

/* Free the replaced generations no request uses any more (requests only
 * count down, so this runs from the loop, not from the request path). */
static void front_sweep_gens(struct front *fr)
{
	struct req_gen **pp = &fr->old, *g;

	while (*pp) {
		g = *pp;
		if (g->live > 0) {
			pp = &g->next;
			continue;
		}
		*pp = g->next;
		req_gen_free(g);
	}
}

int front_set_gen(struct front *fr, struct gen *g)
{
	struct req_gen *old = fr->env.gen;
	struct req_gen *rg = req_gen_new(g, old);

	if (!rg)
		return -ENOMEM;
	fr->env.gen = rg;
	if (old) {
		old->next = fr->old;
		fr->old = old;
		front_sweep_gens(fr);
	}
	return 0;
}

/* ---- the connection: hang-up watch and the clock on its head ---- */

/* MHD stops watching a suspended socket, and reads it only while it waits
 * for request bytes, so each connection carries its own edge-triggered
 * EPOLLRDHUP watch from accept to close (no epoll_ctl per request). */
static void conn_on_hup(struct loop_io *io, uint32_t events)
{
	struct fconn *fc = io->data;

	if (!(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		return;
	fc->rc.peer_gone = true;
	req_on_hangup(&fc->rc);
}

/* The head did not arrive in time (libmicrohttpd only bounds silence, so a
 * trickle would go on forever): answer 408 on the socket ourselves, since
 * MHD has written nothing for this request, and shut it so MHD closes. */
static void conn_on_head_timeout(ctx_t *t, void *arg)
{
	static const char body[] = "request head timeout\n";
	struct fconn *fc = arg;
	struct log_access a = { 0 };
	char resp[256], id[33];
	int n;

	if (ctx_cause(t) != CTX_CAUSE_DEADLINE_EXCEEDED)
		return;
	fc->head_expired = true;
	if (fc->session && !fc->tls_up) {
		/* the handshake itself was too slow: nothing to answer in */
		shutdown(fc->fd, SHUT_RDWR);
		return;
	}
	req_new_id(&fc->fr->env, id);
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 408 Request Timeout\r\n"
		     "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
		     "X-Request-Id: %s\r\nConnection: close\r\n\r\n%s",
		     sizeof(body) - 1, id, body);
	/* MHD has sent nothing on this connection since its last response,
	 * so the answer may go through the TLS session directly. */
	if (fc->session ? gnutls_record_send(fc->session, resp, (size_t)n) < 0 :
	    send(fc->fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		n = 0;
	shutdown(fc->fd, SHUT_RDWR);
	a.id = id;
	a.client = fc->rc.client;
	a.tls = fc->rc.tls;
	a.method = "-";
	a.path = "-";
	a.status = 408;
	a.bytes_out = n ? sizeof(body) - 1 : 0;
	a.cause = "client_header_timeout";
	a.phase = "reading_head";
	log_access(fc->fr->env.log, &a);
	metrics_request_done(fc->fr->env.metrics, 0, 408, CTX_CAUSE_COMPLETED,
			     -1, -1);
}

static void conn_head_arm(struct fconn *fc)
{
	const struct config *cfg = fc->fr->env.gen->g->cfg;

	if (fc->head_timer || fc->fd < 0)
		return;
	ctx_timer_start(&fc->head_timer, &fc->head_watch, fc->fr->env.root,
			ctx_now_ns() + cfg->client_header_timeout_ms * 1000000,
			CTX_CAUSE_DEADLINE_EXCEEDED, conn_on_head_timeout, fc);
}

/* The request line of a new request is in: keep its raw target (MHD
 * unescapes its own copy and drops the query), and start the clock on
 * the rest of its head when this is not the connection's first request
 * (whose clock started at accept). */
static void *front_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct fconn *fc = conn_of(c);
	size_t n = strlen(uri) + 1;
	char *p;

	(void)cls;
	if (!fc)
		return NULL;
	conn_head_arm(fc);
	if (n > fc->cap) {
		p = realloc(fc->uri, n);
		if (!p)
			return NULL;
		fc->uri = p;
		fc->cap = n;
	}
	memcpy(fc->uri, uri, n);
	fc->rc.uri = fc->uri;
	fc->rc.uri_raw = uri;
	return NULL;                      /* the request is made later */
}

static void conn_client_addr(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	char ip[INET6_ADDRSTRLEN] = "?";

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sa = ci ? ci->client_addr : NULL;
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%d", ip, ntohs(in->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%d", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "-");
	}
}

/* ---- TLS: certificates by SNI, and how each handshake went ---- */

/* GnuTLS asks for the certificate once it has the ClientHello: pick it by
 * SNI from the set the connection was accepted under.  MHD made the
 * session's pointer its connection. */
static int front_tls_cert(gnutls_session_t session,
			  const gnutls_datum_t *req_ca_dn, int nreqs,
			  const gnutls_pk_algorithm_t *pk_algos, int npk,
			  gnutls_pcert_st **pcert, unsigned int *npcert,
			  gnutls_privkey_t *key)
{
	struct MHD_Connection *c = gnutls_session_get_ptr(session);
	struct fconn *fc = c ? conn_of(c) : NULL;
	char name[256];
	size_t len = sizeof(name);
	unsigned int type;

	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)npk;
	if (!fc || !fc->tls)
		return -1;
	if (gnutls_server_name_get(session, name, &len, &type, 0) < 0 ||
	    type != GNUTLS_NAME_DNS || len >= sizeof(name))
		name[0] = '\0';
	tls_set_pick(fc->tls, name, pcert, npcert, key);
	return 0;
}

/* The client's Finished is the end of a handshake the server accepted
 * (MHD enables no resumption, so the client always finishes last or, in
 * TLS 1.2, just before the server's own Finished). */
static int front_tls_hook(gnutls_session_t session, unsigned int htype,
			  unsigned int when, unsigned int incoming,
			  const gnutls_datum_t *msg)
{
	struct MHD_Connection *c = gnutls_session_get_ptr(session);
	struct fconn *fc = c ? conn_of(c) : NULL;

	(void)when;
	(void)msg;
	if (!fc || fc->tls_up || htype != GNUTLS_HANDSHAKE_FINISHED || !incoming)
		return 0;
	fc->tls_up = true;
	fc->rc.tls = tls_version_name(gnutls_protocol_get_version(session));
	metrics_tls_handshake(METRICS_TLS_OK);
	return 0;
}

static void conn_tls_open(struct fconn *fc, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!ci || !ci->tls_session)
		return;
	fc->session = ci->tls_session;
	fc->tls = tls_set_ref(fc->fr->env.gen->g->tls);
	fc->rc.tls = "?";                 /* until the handshake says */
	gnutls_handshake_set_hook_function(fc->session,
					   GNUTLS_HANDSHAKE_FINISHED,
					   GNUTLS_HOOK_POST, front_tls_hook);
}

/* A handshake that never finished: the head clock ran out, or the client
 * left or spoke something else (plain HTTP, a refused version). */
static void conn_tls_close(struct fconn *fc)
{
	if (fc->session && !fc->tls_up)
		metrics_tls_handshake(fc->head_expired ? METRICS_TLS_TIMEOUT :
				      METRICS_TLS_FAILED);
	tls_set_unref(fc->tls);
}

static struct fconn *conn_open(struct front *fr, struct MHD_Connection *c)
{
	struct fconn *fc = calloc(1, sizeof(*fc));

	if (!fc)
		return NULL;
	fc->fr = fr;
	fc->fd = conn_fd(c);
	conn_tls_open(fc, c);
	conn_client_addr(c, fc->rc.client, sizeof(fc->rc.client));
	conn_head_arm(fc);
	fc->hup.fd = fc->fd;
	fc->hup.fn = conn_on_hup;
	fc->hup.data = fc;
	if (fc->fd < 0 || loop_add(fr->fenv.loop, &fc->hup,
				   EPOLLRDHUP | EPOLLET) < 0)
		fc->hup.fd = -1;
	return fc;
}

/* MHD closes the socket right after this. */
static void conn_close(struct fconn *fc)
{
	if (fc->hup.fd >= 0 && !fc->rc.fd_taken)
		loop_del(fc->fr->fenv.loop, &fc->hup);
	req_conn_closed(&fc->rc);
	ctx_timer_stop(&fc->head_timer, &fc->head_watch);
	conn_tls_close(fc);
	free(fc->uri);
	free(fc);
}

static void front_on_connection(void *cls, struct MHD_Connection *c,
				void **socket_context,
				enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = conn_open(cls, c);
		metrics_connections_add(1);
		return;
	}
	if (*socket_context)
		conn_close(*socket_context);
	*socket_context = NULL;
	metrics_connections_add(-1);
}

/* ---- the request side, reached through req_* ---- */

static enum MHD_Result front_on_request(void *cls, struct MHD_Connection *c,
					const char *url, const char *method,
					const char *version,
					const char *upload_data,
					size_t *upload_data_size, void **con_cls)
{
	struct front *fr = cls;
	struct fconn *fc = conn_of(c);

	(void)url;
	if (!*con_cls && fc)              /* the whole head is in */
		ctx_timer_stop(&fc->head_timer, &fc->head_watch);
	return req_access(&fr->env, fc ? &fc->rc : NULL, c, method, version,
			  upload_data, upload_data_size, con_cls) == MHD_YES ?
		MHD_YES : MHD_NO;
}

static void front_on_completed(void *cls, struct MHD_Connection *c,
			       void **con_cls,
			       enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;

	(void)cls;
	(void)c;
	if (!r)
		return;
	*con_cls = NULL;
	req_end(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? REQ_END_OK :
		toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ?
		REQ_END_SHUTDOWN : REQ_END_ABORTED);
}

static enum MHD_Result front_accept(void *cls, const struct sockaddr *addr,
				    socklen_t addrlen)
{
	struct front *fr = cls;

	(void)addr;
	(void)addrlen;
	return fr->env.draining ? MHD_NO : MHD_YES;
}

static void front_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	/* Per connection (a client that left, a refused request): debug. */
	if (!log_enabled(LOG_DEBUG))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_msg(LOG_DEBUG, msg, "src=mhd");
}

/* ---- daemons ---- */

static void front_on_daemon_io(struct loop_io *io, uint32_t events)
{
	struct front *fr = io->data;

	(void)events;
	fr->env.need_run = true;
}

/* A TLS listener takes its certificate from front_tls_cert() alone; the
 * handshake is bounded by the head clock like the head itself. */
static struct MHD_Daemon *front_start_daemon(struct front *fr, int fd,
					     bool tls)
{
	const struct config *cfg = fr->env.gen->g->cfg;
	unsigned int timeout_s = (unsigned int)
		((cfg->client_idle_timeout_ms + 999) / 1000);
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
		MHD_USE_ERROR_LOG;

	struct MHD_OptionItem o[] = {
		{ MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)front_mhd_log, fr },
		{ MHD_OPTION_LISTEN_SOCKET, fd, NULL },
		{ MHD_OPTION_CONNECTION_LIMIT,
		  (intptr_t)(cfg->max_connections + 64), NULL },
		{ MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout_s, NULL },
		{ MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)REQ_CONN_MEMORY,
		  NULL },
		{ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)front_on_completed, fr },
		{ MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)front_on_connection,
		  fr },
		{ MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)front_on_uri, fr },
		/* the TLS listener's two, or the end */
		{ MHD_OPTION_END, 0, NULL },
		{ MHD_OPTION_END, 0, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};
	size_t n = sizeof(o) / sizeof(o[0]) - 3;

	/* Upgrades on plain listeners only: a TLS listener answers them 501
	 * (request_tunnel.c), so MHD's broken TLS relay never runs. */
	if (!tls)
		flags |= MHD_ALLOW_UPGRADE;
	if (tls) {
		flags |= MHD_USE_TLS;
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
			(void *)(intptr_t)front_tls_cert };
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_PRIORITIES, 0,
			(void *)tls_priorities(cfg->tls_min_version) };
	}
	return MHD_start_daemon(flags, 0, front_accept, fr, front_on_request, fr,
				MHD_OPTION_ARRAY, o, MHD_OPTION_END);
}

static int front_add_daemon(struct front *fr, int fd, bool tls)
{
	const union MHD_DaemonInfo *di;
	struct loop_io *io = &fr->dio[fr->nd];

	struct MHD_Daemon *d = front_start_daemon(fr, fd, tls);
	int rc;

	if (!d)
		return -EINVAL;
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	io->fd = di->epoll_fd;
	io->fn = front_on_daemon_io;
	io->data = fr;
	rc = loop_add(fr->fenv.loop, io, EPOLLIN);
	if (rc < 0) {
		MHD_stop_daemon(d);
		return rc;
	}
	fr->d[fr->nd++] = d;
	return 0;
}

struct front *front_new(const struct front_env *env)
{
	struct front *fr = calloc(1, sizeof(*fr));
	size_t i, n = env->gen->cfg->nlisten;
	size_t first_tls = n - env->gen->cfg->nlisten_tls;

	if (!fr)
		return NULL;
	ASSERT(n <= CONFIG_LISTEN_MAX);   /* config_load refuses more */
	fr->fenv = *env;
	fr->env.root = env->root;
	fr->env.loop = env->loop;
	fr->env.up = env->up;
	fr->env.metrics = env->metrics;
	fr->env.log = env->log;
	fr->env.otlp = env->otlp;
	fr->env.watch = env->watch;
	fr->env.worker = env->worker_id;
	req_env_init(&fr->env);
	if (front_set_gen(fr, env->gen) < 0) {
		free(fr);
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (front_add_daemon(fr, env->listen_fds[i], i >= first_tls) < 0)
			goto fail;
	return fr;
fail:
	log_msg(LOG_ERROR, "cannot start the HTTP daemon", "worker=%d",
		env->worker_id);
	front_free(fr);
	return NULL;
}

void front_free(struct front *fr)
{
	int i;

	if (!fr)
		return;
	/* MHD_stop_daemon aborts the process while a connection is suspended. */
	req_cancel_all(&fr->env, CTX_CAUSE_SHUTDOWN);
	req_tunnels_end_now(&fr->env);
	front_run(fr);
	for (i = 0; i < fr->nd; i++) {
		loop_del(fr->fenv.loop, &fr->dio[i]);
		MHD_stop_daemon(fr->d[i]);
	}
	/* Every request is gone now, so are their holds on generations. */
	ASSERT(!fr->env.live);
	front_sweep_gens(fr);
	req_gen_free(fr->env.gen);
	free(fr);
}

int64_t front_next_timeout(struct front *fr)
{
	MHD_UNSIGNED_LONG_LONG ms;
	int64_t best = CTX_NO_DEADLINE, at;
	int i;

	if (fr->env.need_run)
		return ctx_now_ns();
	for (i = 0; i < fr->nd; i++) {
		if (MHD_get_timeout(fr->d[i], &ms) != MHD_YES)
			continue;
		at = ctx_now_ns() + (int64_t)ms * 1000000;
		if (at < best)
			best = at;
	}
	return best;
}

void front_run(struct front *fr)
{
	int i;

	fr->env.need_run = false;
	for (i = 0; i < fr->nd; i++)
		MHD_run(fr->d[i]);
	if (fr->old)
		front_sweep_gens(fr);
}

void front_drain(struct front *fr)
{
	fr->env.draining = true;
}

void front_watch(struct front *fr, struct watch_snap *s)
{
	req_watch(&fr->env, s);
}
