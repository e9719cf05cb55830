/* request_tunnel.c - a request that upgrades (SPEC §10): the decision, the 101 to the client, the tunnel between its socket and the backend's connection, and the tunnel's end. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <microhttpd.h>

#include "config.h"
#include "fetch.h"
#include "log.h"
#include "metrics.h"
#include "request_life.h"
#include "tunnel.h"
#include "upstream.h"

/* What a request holds while it is a tunnel. */
struct req_tunnel {
	struct req *r;                    /* a reference, until the end */
	struct tunnel *t;
	struct uconn *uc;                 /* the backend's connection */
	struct uconn_user user;           /* its events, for the tunnel */
	struct MHD_UpgradeResponseHandle *urh;
	struct tunnel_report rep;         /* once ended */
};

void req_upgrade_check(struct req *r, const char *version, int64_t body_len,
		       const struct headers_field *f, size_t n)
{
	if (!r->route->websocket || body_len > 0 ||
	    body_len == FETCH_BODY_CHUNKED ||
	    strcmp(version, MHD_HTTP_VERSION_1_1) != 0 ||
	    !headers_wants_websocket(f, n))
		return;
	if (r->tls) {
		/* libmicrohttpd 0.9.75 relays an upgraded TLS connection
		 * through 4-byte buffers and loses hang-ups (DESIGN.md). */
		r->err_status = 501;
		r->err_msg = "websocket upgrade is not supported on TLS "
			"listeners";
		return;
	}
	r->upgrade = true;
}

/* ---- the backend's connection as a tunnel end ---- */

static ssize_t up_recv(void *io, void *buf, size_t len)
{
	struct req_tunnel *rt = io;

	return uconn_recv(rt->uc, buf, len);
}

static ssize_t up_send(void *io, const void *buf, size_t len)
{
	struct req_tunnel *rt = io;
	struct iovec v = { (void *)buf, len };

	return uconn_send(rt->uc, &v, 1);
}

/* A FIN to the backend is counted as the request path counts its own:
 * the worker then yields once, so a backend on this machine hears of it
 * before the worker goes on with the rest of its batch. */
static void up_shutdown_write(void *io)
{
	struct req_tunnel *rt = io;

	uconn_shutdown_write(rt->uc);
	upstream_fin(rt->r->env->up);
}

static void up_abort(void *io)
{
	struct req_tunnel *rt = io;

	uconn_shutdown(rt->uc);
	upstream_fin(rt->r->env->up);
}

static const struct tunnel_end_ops up_ops = {
	.recv = up_recv,
	.send = up_send,
	.shutdown_write = up_shutdown_write,
	.abort = up_abort,
};

#define RT_OF(u) ((struct req_tunnel *)((char *)(u) - \
					offsetof(struct req_tunnel, user)))

static void up_ready(struct uconn_user *u, uint32_t events)
{
	struct req_tunnel *rt = RT_OF(u);

	if (rt->t)
		tunnel_ready(rt->t, TUNNEL_UPSTREAM, events);
}

static char *tun_buf_get(void *arg)
{
	return upstream_buf_get(arg);
}

static void tun_buf_put(void *arg, char *buf)
{
	upstream_buf_put(arg, buf);
}

/* ---- the end ---- */

/* The figures of the access line: bytes each way, and for an end that
 * was not the backend's own, from the moment the proxy learnt of it (a
 * client's hang-up, a reset, a cancel) to the other side's close. */
static void rt_account(struct req_tunnel *rt)
{
	const struct tunnel_report *rep = &rt->rep;
	struct req *r = rt->r;
	int first = rep->first;

	r->bytes_in = rep->bytes[TUNNEL_CLIENT];
	r->bytes_out = rep->bytes[TUNNEL_UPSTREAM];
	if (ctx_cause(r->ctx) == CTX_CAUSE_COMPLETED)
		return;
	if (first == TUNNEL_CLIENT || first == TUNNEL_UPSTREAM) {
		r->tun_end_ns = rep->eof_at[first];
		r->tun_close_ns = rep->closed_at[!first];
	} else {
		r->tun_end_ns = rep->cancelled_at;
		r->tun_close_ns = rep->closed_at[TUNNEL_UPSTREAM];
	}
}

/* Both connections close (libmicrohttpd closes the client's), the request
 * context takes the tunnel's cause, and the request is logged.  rt goes,
 * and with it the tunnel's reference to the request. */
static void rt_close(struct req_tunnel *rt)
{
	struct req *r = rt->r;

	tunnel_free(rt->t);
	uconn_close(rt->uc);
	if (rt->urh) {
		MHD_upgrade_action(rt->urh, MHD_UPGRADE_ACTION_CLOSE);
		r->env->need_run = true;
	}
	ctx_cancel(r->ctx, rt->rep.cause != CTX_CAUSE_NONE ? rt->rep.cause :
		   CTX_CAUSE_UPSTREAM_ERROR);
	rt_account(rt);
	metrics_tunnel_done(r->env->metrics, ctx_cause(r->ctx));
	req_set_phase(r, PH_DONE);
	r->tun = NULL;
	free(rt);
	req_log(r);
	req_unref(r);
}

static void rt_done(struct tunnel *t, const struct tunnel_report *rep,
		    void *arg)
{
	struct req_tunnel *rt = arg;

	(void)t;
	rt->rep = *rep;
	rt_close(rt);
}

void req_tunnel_end_now(struct req *r)
{
	struct req_tunnel *rt = r->tun;

	if (!rt)
		return;
	rt->rep.cause = ctx_is_cancelled(r->ctx) ? ctx_cause(r->ctx) :
		CTX_CAUSE_SHUTDOWN;
	rt_close(rt);
}

void req_tunnels_end_now(struct req_env *env)
{
	struct req *r, *next;

	for (r = env->live; r; r = next) {
		next = r->next;
		req_tunnel_end_now(r);
	}
}

/* ---- the start: libmicrohttpd hands over the client's socket ---- */

static int rt_start(struct req *r, struct req_tunnel *rt, int sock,
		    const char *extra_in, size_t extra_in_size)
{
	struct fetch *f = req_fetch(r);
	const char *extra;
	struct tunnel_conf conf = {
		.idle_ms = r->route->tunnel_idle_timeout_ms,
		.max_ms = r->route->tunnel_max_ms,
	};
	struct tunnel_end c = { .fd = sock, .reg = TUNNEL_REG_MOD,
				.extra = extra_in, .extra_len = extra_in_size };
	struct tunnel_end u = { .fd = -1, .reg = TUNNEL_REG_EXTERNAL,
				.ops = &up_ops };
	struct tunnel_owner o = {
		.root = r->env->root, .done = rt_done, .arg = rt,
		.buf_get = tun_buf_get, .buf_put = tun_buf_put,
		.buf_arg = r->env->up,
	};

	if (!r->rc || r->rc->fd_taken || !f)
		return -EINVAL;
	rt->uc = fetch_take_conn(f, &extra, &u.extra_len);
	if (!rt->uc)
		return -ENOTCONN;
	u.extra = extra;
	u.io = rt;
	rt->user.ready = up_ready;
	uconn_set_user(rt->uc, &rt->user);
	/* The exchange is over: its deadline (timeout_ms) bounded it up to
	 * the 101 only. */
	ctx_cancel(r->child, CTX_CAUSE_COMPLETED);
	rt->t = tunnel_new(r->env->loop, r->ctx, &conf, &c, &u, &o);
	if (!rt->t)
		return -ENOMEM;
	fetch_trim(f);                    /* the extra bytes are copied */
	/* The front's hang-up watch holds the socket in the loop: the tunnel
	 * takes its registration over (and removes it at its end). */
	r->rc->fd_taken = true;
	return tunnel_start(rt->t);
}

static void req_upgraded(void *cls, struct MHD_Connection *c, void *con_cls,
			 const char *extra_in, size_t extra_in_size,
			 MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct req *r = con_cls;
	struct req_tunnel *rt;
	int rc = -ENOMEM;

	(void)cls;
	(void)c;
	rt = r && !r->tun ? calloc(1, sizeof(*rt)) : NULL;
	if (rt) {
		rt->r = r;
		rt->urh = urh;
		rt->rep.first = -1;       /* no report yet: no side ended it */
		r->refs++;
		r->tun = rt;
		r->tunneled = true;
		req_set_phase(r, PH_TUNNEL);
		metrics_tunnel_open(r->env->metrics);
		rc = rt_start(r, rt, sock, extra_in, extra_in_size);
	}
	if (rc == 0)
		return;
	log_msg(LOG_WARN, "cannot start a tunnel", "id=%s err=%d",
		r ? r->id : "-", rc);
	if (!rt) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		return;
	}
	rt->rep.cause = CTX_CAUSE_UPSTREAM_ERROR;
	rt_close(rt);
}

/* ---- the 101 ---- */

struct MHD_Response *req_upgrade_response(void)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_for_upgrade(req_upgraded, NULL);
	if (resp)
		MHD_add_response_header(resp, "Upgrade", "websocket");
	return resp;
}
