/* test_tunnel.c - unit tests for the byte relay: socketpairs, a real loop and contexts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "context.h"
#include "loop.h"
#include "tunnel.h"

#define WAIT_MS 10000        /* bound of every wait: a failure, not a hang */
#define BULK (4 << 20)       /* bytes each way in the bulk test */
#define MANY 500

/* One tunnel and the two test-side peers: cpeer plays the client, upeer
 * the backend; cend and uend are the tunnel's ends. */
struct pair {
	int cpeer, cend, uend, upeer;
	ctx_t *ctx;
	struct tunnel *t;
	struct tunnel_report rep;
	int reports;
};

static struct loop *the_loop;
static ctx_t *root;
static int bufs_live, bufs_max;
static bool in_owner_call;   /* set around every tunnel_* call we make */

static char *test_buf_get(void *arg)
{
	(void)arg;
	if (++bufs_live > bufs_max)
		bufs_max = bufs_live;
	return malloc(TUNNEL_BUF_SIZE);
}

static void test_buf_put(void *arg, char *buf)
{
	(void)arg;
	bufs_live--;
	free(buf);
}

static void on_done(struct tunnel *t, const struct tunnel_report *r,
		    void *arg)
{
	struct pair *p = arg;

	assert_false(in_owner_call);
	assert_ptr_equal(t, p->t);
	p->rep = *r;
	p->reports++;
	tunnel_free(t);
	p->t = NULL;
}

static const struct tunnel_conf no_timeouts = { 0, 0 };

static void sockpair(int *a, int *b)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
				    SOCK_CLOEXEC, 0, sv), 0);
	*a = sv[0];
	*b = sv[1];
}

/* Make a pair's sockets and tunnel (not started); extra goes with the
 * client end. */
static void pair_open(struct pair *p, const struct tunnel_conf *conf,
		      const char *extra)
{
	struct tunnel_end c = { .reg = TUNNEL_REG_ADD };
	struct tunnel_end u = { .reg = TUNNEL_REG_ADD };
	struct tunnel_owner o = {
		.root = root, .done = on_done, .arg = p,
		.buf_get = test_buf_get, .buf_put = test_buf_put,
	};

	memset(p, 0, sizeof(*p));
	sockpair(&p->cpeer, &p->cend);
	sockpair(&p->uend, &p->upeer);
	c.fd = p->cend;
	u.fd = p->uend;
	if (extra) {
		c.extra = extra;
		c.extra_len = strlen(extra);
	}
	p->ctx = ctx_with_cancel(root);
	assert_non_null(p->ctx);
	p->t = tunnel_new(the_loop, p->ctx, conf, &c, &u, &o);
	assert_non_null(p->t);
}

static void pair_start(struct pair *p)
{
	in_owner_call = true;
	assert_int_equal(tunnel_start(p->t), 0);
	in_owner_call = false;
	assert_int_equal(p->reports, 0);
}

static void pair_close(struct pair *p)
{
	in_owner_call = true;
	tunnel_free(p->t);
	in_owner_call = false;
	p->t = NULL;
	ctx_unref(p->ctx);
	close(p->cpeer);
	close(p->cend);
	close(p->uend);
	close(p->upeer);
}

static int64_t ms_since(int64_t t0)
{
	return (ctx_now_ns() - t0) / 1000000;
}

/* One loop turn of at most 5 ms, then the deadlines. */
static void turn(void)
{
	int64_t next = ctx_next_deadline(root), now = ctx_now_ns();
	int ms = 5;

	if (next != CTX_NO_DEADLINE && next - now < 5000000)
		ms = next <= now ? 0 : (int)((next - now) / 1000000) + 1;
	loop_run_once(the_loop, ms);
	ctx_expire(root, ctx_now_ns());
}

/* Turn until p has reported (bounded). */
static void wait_report(struct pair *p)
{
	int64_t t0 = ctx_now_ns();

	while (p->reports == 0) {
		assert_true(ms_since(t0) < WAIT_MS);
		turn();
	}
	assert_int_equal(p->reports, 1);
}

/* Read exactly len bytes from fd, turning the loop meanwhile. */
static void read_all(int fd, char *buf, size_t len)
{
	int64_t t0 = ctx_now_ns();
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		assert_true(ms_since(t0) < WAIT_MS);
		n = recv(fd, buf + got, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		assert_true(n < 0 && errno == EAGAIN);
		turn();
	}
}

/* Turn until fd reads EOF (after any bytes, discarded). */
static void wait_eof(int fd)
{
	int64_t t0 = ctx_now_ns();
	char b[4096];
	ssize_t n;

	for (;;) {
		assert_true(ms_since(t0) < WAIT_MS);
		n = recv(fd, b, sizeof(b), 0);
		if (n == 0)
			return;
		if (n < 0)
			assert_int_equal(errno, EAGAIN);
		if (n < 0)
			turn();
	}
}

/* EOF right now, without turning the loop: the close already left. */
static void assert_eof_now(int fd)
{
	char b[4096];
	ssize_t n;

	do
		n = recv(fd, b, sizeof(b), 0);
	while (n > 0);
	assert_int_equal(n, 0);
}

static void send_str(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL),
			 (ssize_t)strlen(s));
}

/* ---- bytes both ways ---- */

static uint8_t pattern(size_t i, unsigned seed)
{
	return (uint8_t)(((i * 2654435761u) >> 11) ^ (i >> 17) ^ seed);
}

/* One peer's side of the bulk test: sends its BULK bytes, checks the
 * other's byte by byte. */
struct stream {
	int fd;
	unsigned tx_seed, rx_seed;
	size_t tx, rx;
	bool shut, eof;
};

static void stream_step(struct stream *s)
{
	static char b[32768];
	size_t i, len;
	ssize_t n;

	while (s->tx < BULK) {
		len = BULK - s->tx < sizeof(b) ? BULK - s->tx : sizeof(b);
		for (i = 0; i < len; i++)
			b[i] = (char)pattern(s->tx + i, s->tx_seed);
		n = send(s->fd, b, len, MSG_NOSIGNAL);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		s->tx += (size_t)n;
	}
	/* Either side's EOF ends the tunnel: close once all came in. */
	if (s->tx == BULK && s->rx == BULK && !s->shut) {
		assert_int_equal(shutdown(s->fd, SHUT_WR), 0);
		s->shut = true;
	}
	while (!s->eof) {
		n = recv(s->fd, b, sizeof(b), 0);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		s->eof = n == 0;
		for (i = 0; i < (size_t)n; i++)
			assert_int_equal((uint8_t)b[i],
					 pattern(s->rx + i, s->rx_seed));
		s->rx += (size_t)n;
	}
}

static void test_bulk_both_ways(void **state)
{
	struct pair p;
	struct stream c = { .tx_seed = 1, .rx_seed = 2 };
	struct stream u = { .tx_seed = 2, .rx_seed = 1 };
	int64_t t0;

	(void)state;
	pair_open(&p, &no_timeouts, NULL);
	c.fd = p.cpeer;
	u.fd = p.upeer;
	pair_start(&p);
	t0 = ctx_now_ns();
	while (!(c.eof && u.eof)) {
		assert_true(ms_since(t0) < WAIT_MS);
		stream_step(&c);
		stream_step(&u);
		turn();
	}
	wait_report(&p);
	assert_int_equal(c.rx, BULK);
	assert_int_equal(u.rx, BULK);
	assert_int_equal(p.rep.why, TUNNEL_END_CLOSED);
	assert_int_equal(p.rep.bytes[TUNNEL_CLIENT], BULK);
	assert_int_equal(p.rep.bytes[TUNNEL_UPSTREAM], BULK);
	assert_true(bufs_max <= 2);
	assert_int_equal(bufs_live, 0);
	pair_close(&p);
}

/* ---- backpressure ---- */

/* Write to fd until the socket takes no more; returns the bytes. */
static size_t fill(int fd, unsigned seed, size_t at)
{
	char b[16384];
	size_t i, sent = 0;
	ssize_t n;

	for (;;) {
		for (i = 0; i < sizeof(b); i++)
			b[i] = (char)pattern(at + sent + i, seed);
		n = send(fd, b, sizeof(b), MSG_NOSIGNAL);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			return sent;
		}
		sent += (size_t)n;
	}
}

static void test_backpressure(void **state)
{
	struct pair p;
	size_t written = 0, got = 0, n_now, i;
	uint64_t relayed;
	char b[16384];
	ssize_t n;
	int quiet = 0;
	int64_t t0 = ctx_now_ns();

	(void)state;
	pair_open(&p, &no_timeouts, NULL);
	pair_start(&p);
	bufs_max = bufs_live;
	/* The backend reads nothing: write until neither the client's socket
	 * nor the tunnel takes more for 20 turns. */
	while (quiet < 20) {
		assert_true(ms_since(t0) < WAIT_MS);
		n_now = fill(p.cpeer, 3, written);
		written += n_now;
		quiet = n_now ? 0 : quiet + 1;
		turn();
	}
	relayed = tunnel_bytes(p.t, TUNNEL_CLIENT);
	for (i = 0; i < 20; i++)
		turn();
	/* Stopped: the client's send side is full and stays so. */
	assert_int_equal(tunnel_bytes(p.t, TUNNEL_CLIENT), relayed);
	assert_int_equal(fill(p.cpeer, 3, written), 0);
	assert_true(bufs_max <= 1);
	/* What was written but not relayed sits in the client's socket
	 * buffers and at most one tunnel buffer. */
	assert_true(written > relayed);
	print_message("backpressure: %zu written, %llu relayed, %d buffer(s)\n",
		      written, (unsigned long long)relayed, bufs_live);
	/* Now the backend reads: everything arrives, in order. */
	shutdown(p.cpeer, SHUT_WR);
	while (got < written) {
		assert_true(ms_since(t0) < WAIT_MS);
		n = recv(p.upeer, b, sizeof(b), 0);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			turn();
			continue;
		}
		assert_true(n > 0);
		for (i = 0; i < (size_t)n; i++)
			assert_int_equal((uint8_t)b[i], pattern(got + i, 3));
		got += (size_t)n;
	}
	wait_eof(p.upeer);
	assert_true(bufs_max <= 1);
	pair_close(&p);
}

/* ---- extra bytes, half-close ---- */

static void test_extra_first(void **state)
{
	struct pair p;
	char b[11] = "";

	(void)state;
	pair_open(&p, &no_timeouts, "HELLO ");
	send_str(p.cpeer, "WORLD");
	pair_start(&p);
	read_all(p.upeer, b, 11);
	assert_memory_equal(b, "HELLO WORLD", 11);
	assert_int_equal(tunnel_bytes(p.t, TUNNEL_CLIENT), 11);
	pair_close(&p);
}

/* `first` half-closes: what it sent arrives, then both sides are shut
 * (SPEC §10: either side closing ends the tunnel, as nginx does). */
static void half_close(int first)
{
	struct pair p;
	int a, z;
	char b[3];

	pair_open(&p, &no_timeouts, NULL);
	pair_start(&p);
	a = first == TUNNEL_CLIENT ? p.cpeer : p.upeer;
	z = first == TUNNEL_CLIENT ? p.upeer : p.cpeer;
	send_str(a, "abc");
	assert_int_equal(shutdown(a, SHUT_WR), 0);
	read_all(z, b, 3);
	assert_memory_equal(b, "abc", 3);
	wait_eof(z);
	wait_report(&p);
	assert_eof_now(a);
	assert_int_equal(p.rep.why, TUNNEL_END_CLOSED);
	assert_int_equal(p.rep.first, first);
	assert_int_equal(p.rep.cause, first == TUNNEL_CLIENT
				   ? CTX_CAUSE_CLIENT_DISCONNECT
				   : CTX_CAUSE_COMPLETED);
	assert_int_equal(p.rep.bytes[first], 3);
	assert_int_equal(p.rep.bytes[!first], 0);
	/* The FIN went on after the EOF came, to both sides at once. */
	assert_true(p.rep.eof_at[first] <= p.rep.closed_at[!first]);
	assert_int_equal(p.rep.closed_at[first], p.rep.closed_at[!first]);
	assert_int_equal(p.rep.eof_at[!first], 0);
	pair_close(&p);
}

static void test_half_close_client(void **state)
{
	(void)state;
	half_close(TUNNEL_CLIENT);
}

static void test_half_close_upstream(void **state)
{
	(void)state;
	half_close(TUNNEL_UPSTREAM);
}

/* ---- resets and cancellation ---- */

/* A unix socket closed with unread bytes resets its peer (ECONNRESET):
 * side `who` is reset; the other peer must see its EOF at once. */
static void reset(int who)
{
	struct pair p;
	int gone, other;
	char b[1];

	pair_open(&p, &no_timeouts, NULL);
	pair_start(&p);
	gone = who == TUNNEL_CLIENT ? p.cpeer : p.upeer;
	other = who == TUNNEL_CLIENT ? p.upeer : p.cpeer;
	send_str(other, "x");
	read_all(gone, b, 1);
	send_str(other, "unread");
	while (tunnel_bytes(p.t, !who) < 7)
		turn();
	close(gone);
	wait_report(&p);
	assert_eof_now(other);
	assert_int_equal(p.rep.why, TUNNEL_END_ERROR);
	assert_int_equal(p.rep.first, who);
	assert_true(p.rep.err == -ECONNRESET || p.rep.err == -EPIPE);
	assert_int_equal(p.rep.cause, who == TUNNEL_CLIENT
				   ? CTX_CAUSE_CLIENT_DISCONNECT
				   : CTX_CAUSE_UPSTREAM_ERROR);
	if (who == TUNNEL_CLIENT)
		p.cpeer = dup(p.cend);  /* pair_close closes it again */
	else
		p.upeer = dup(p.uend);
	pair_close(&p);
}

static void test_reset_client(void **state)
{
	(void)state;
	reset(TUNNEL_CLIENT);
}

static void test_reset_upstream(void **state)
{
	(void)state;
	reset(TUNNEL_UPSTREAM);
}

static void test_cancel_closes_both(void **state)
{
	struct pair p;
	char b[2];

	(void)state;
	pair_open(&p, &no_timeouts, NULL);
	pair_start(&p);
	send_str(p.cpeer, "hi");
	read_all(p.upeer, b, 2);
	assert_int_equal(ctx_cancel(p.ctx, CTX_CAUSE_SHUTDOWN), 0);
	/* Both closes left inside ctx_cancel; the report comes later. */
	assert_eof_now(p.cpeer);
	assert_eof_now(p.upeer);
	assert_int_equal(p.reports, 0);
	wait_report(&p);
	assert_int_equal(p.rep.why, TUNNEL_END_CANCELLED);
	assert_int_equal(p.rep.cause, CTX_CAUSE_SHUTDOWN);
	assert_int_equal(p.rep.first, -1);
	assert_int_equal(p.rep.bytes[TUNNEL_CLIENT], 2);
	assert_true(p.rep.closed_at[TUNNEL_CLIENT] > 0);
	assert_true(p.rep.closed_at[TUNNEL_UPSTREAM] > 0);
	assert_true(p.rep.closed_at[TUNNEL_CLIENT] <= p.rep.ended_at);
	/* The cancel is the context's, before either side closed. */
	assert_int_equal(p.rep.cancelled_at, ctx_cancelled_at(p.ctx));
	assert_true(p.rep.cancelled_at <= p.rep.closed_at[TUNNEL_UPSTREAM]);
	pair_close(&p);
}

/* A context already cancelled: the tunnel ends at once but still reports
 * from the loop, not from tunnel_start. */
static void test_cancelled_before_start(void **state)
{
	struct pair p;

	(void)state;
	pair_open(&p, &no_timeouts, NULL);
	ctx_cancel(p.ctx, CTX_CAUSE_CLIENT_DISCONNECT);
	pair_start(&p);
	assert_eof_now(p.upeer);
	wait_report(&p);
	assert_int_equal(p.rep.cause, CTX_CAUSE_CLIENT_DISCONNECT);
	pair_close(&p);
}

/* ---- timeouts ---- */

static void test_idle_timeout(void **state)
{
	const struct tunnel_conf conf = { .idle_ms = 60 };
	struct pair p;
	int64_t t0, last = 0;
	char b[1];
	int i;

	(void)state;
	pair_open(&p, &conf, NULL);
	pair_start(&p);
	/* Traffic every 20 ms for 200 ms keeps it alive, either way. */
	t0 = ctx_now_ns();
	for (i = 0; ms_since(t0) < 200; i++) {
		last = ctx_now_ns();
		send_str(i % 2 ? p.cpeer : p.upeer, "k");
		read_all(i % 2 ? p.upeer : p.cpeer, b, 1);
		while (ms_since(t0) < 20 * (i + 1))
			turn();
		assert_int_equal(p.reports, 0);
	}
	wait_report(&p);
	assert_int_equal(p.rep.why, TUNNEL_END_CANCELLED);
	assert_int_equal(p.rep.cause, CTX_CAUSE_IDLE_TIMEOUT);
	assert_true(p.rep.ended_at - last >= 60 * 1000000LL);
	assert_true(p.rep.ended_at - last < 500 * 1000000LL);
	/* The timeout's own cancel comes before both closes. */
	assert_true(p.rep.cancelled_at > 0);
	assert_true(p.rep.cancelled_at <= p.rep.closed_at[TUNNEL_CLIENT]);
	assert_true(p.rep.cancelled_at <= p.rep.closed_at[TUNNEL_UPSTREAM]);
	assert_eof_now(p.cpeer);
	assert_eof_now(p.upeer);
	pair_close(&p);
}

static void test_max_lifetime(void **state)
{
	const struct tunnel_conf conf = { .idle_ms = 30, .max_ms = 100 };
	struct pair p;
	int64_t t0 = ctx_now_ns();
	char b[1];

	(void)state;
	pair_open(&p, &conf, NULL);
	pair_start(&p);
	while (p.reports == 0) {
		assert_true(ms_since(t0) < WAIT_MS);
		send_str(p.cpeer, "k");
		read_all(p.upeer, b, 1);
		turn();
	}
	assert_int_equal(p.rep.cause, CTX_CAUSE_DEADLINE_EXCEEDED);
	assert_true(p.rep.ended_at - p.rep.started_at >= 100 * 1000000LL);
	assert_true(p.rep.ended_at - p.rep.started_at < 600 * 1000000LL);
	assert_true(p.rep.cancelled_at > 0);
	assert_true(p.rep.cancelled_at <= p.rep.closed_at[TUNNEL_UPSTREAM]);
	pair_close(&p);
}

/* ---- registration variants ---- */

static void on_stale(struct loop_io *io, uint32_t events)
{
	(void)io;
	(void)events;
	fail_msg("the replaced watch fired");
}

/* The client fd already sits in the loop (the front's hang-up watch):
 * the tunnel takes it over with loop_mod, and removes it at the end. */
static void test_reg_mod(void **state)
{
	struct tunnel_end c = { .reg = TUNNEL_REG_MOD };
	struct tunnel_end u = { .reg = TUNNEL_REG_ADD };
	struct pair p;
	struct loop_io stale = { .fn = on_stale };
	struct tunnel_owner o = { .root = root, .done = on_done, .arg = &p };
	char b[4];

	(void)state;
	pair_open(&p, &no_timeouts, NULL);
	tunnel_free(p.t);
	stale.fd = p.cend;
	assert_int_equal(loop_add(the_loop, &stale,
				  EPOLLIN | EPOLLRDHUP | EPOLLET), 0);
	c.fd = p.cend;
	u.fd = p.uend;
	p.t = tunnel_new(the_loop, p.ctx, &no_timeouts, &c, &u, &o);
	assert_non_null(p.t);
	pair_start(&p);
	send_str(p.cpeer, "ping");
	read_all(p.upeer, b, 4);
	send_str(p.upeer, "pong");
	read_all(p.cpeer, b, 4);
	assert_memory_equal(b, "pong", 4);
	shutdown(p.cpeer, SHUT_WR);
	shutdown(p.upeer, SHUT_WR);
	wait_report(&p);
	/* The fd is out of the loop now: epoll says ENOENT to another del,
	 * as DESIGN.md tells the front to expect. */
	assert_int_equal(loop_mod(the_loop, &stale, EPOLLIN), -ENOENT);
	pair_close(&p);
}

/* Pluggable I/O: the upstream end goes through ops and its events come
 * from the owner's own watch (an upstream connection's way). */
struct ext {
	struct loop_io lio;
	struct pair *p;
	int recvs, sends, shuts, aborts;
	int fd;
};

static ssize_t ext_recv(void *io, void *buf, size_t len)
{
	struct ext *x = io;
	ssize_t n = recv(x->fd, buf, len, 0);

	x->recvs++;
	return n < 0 ? -errno : n;
}

static ssize_t ext_send(void *io, const void *buf, size_t len)
{
	struct ext *x = io;
	ssize_t n = send(x->fd, buf, len, MSG_NOSIGNAL);

	x->sends++;
	return n < 0 ? -errno : n;
}

static void ext_shutdown_write(void *io)
{
	struct ext *x = io;

	x->shuts++;
	shutdown(x->fd, SHUT_WR);
}

static void ext_abort(void *io)
{
	struct ext *x = io;

	x->aborts++;
	shutdown(x->fd, SHUT_RDWR);
}

static const struct tunnel_end_ops ext_ops = {
	ext_recv, ext_send, ext_shutdown_write, ext_abort,
};

static void ext_on_io(struct loop_io *lio, uint32_t events)
{
	struct ext *x = lio->data;

	if (!x->p->t)
		return;
	in_owner_call = true;
	tunnel_ready(x->p->t, TUNNEL_UPSTREAM, events);
	in_owner_call = false;
}

/* An upstream end whose I/O goes through ops and whose fd the owner
 * watches; it ends by a client's half-close, or cancelled (abort). */
static void external_run(bool cancelled)
{
	struct tunnel_end c = { .reg = TUNNEL_REG_ADD };
	struct tunnel_end u = { .reg = TUNNEL_REG_EXTERNAL, .ops = &ext_ops };
	struct pair p;
	struct ext x = { .p = &p };
	struct tunnel_owner o = { .root = root, .done = on_done, .arg = &p };
	char b[5];

	pair_open(&p, &no_timeouts, NULL);
	tunnel_free(p.t);
	x.fd = x.lio.fd = p.uend;
	x.lio.fn = ext_on_io;
	x.lio.data = &x;
	assert_int_equal(loop_add(the_loop, &x.lio, EPOLLIN | EPOLLOUT |
				  EPOLLRDHUP | EPOLLET), 0);
	/* Bytes already waiting before the start are not lost. */
	send_str(p.upeer, "early");
	c.fd = p.cend;
	u.fd = p.uend;
	u.io = &x;
	p.t = tunnel_new(the_loop, p.ctx, &no_timeouts, &c, &u, &o);
	assert_non_null(p.t);
	pair_start(&p);
	read_all(p.cpeer, b, 5);
	assert_memory_equal(b, "early", 5);
	send_str(p.cpeer, "later");
	read_all(p.upeer, b, 5);
	assert_memory_equal(b, "later", 5);
	if (cancelled)
		ctx_cancel(p.ctx, CTX_CAUSE_DEADLINE_EXCEEDED);
	else
		shutdown(p.cpeer, SHUT_WR);
	wait_eof(p.upeer);
	wait_report(&p);
	assert_int_equal(x.shuts, !cancelled);
	assert_int_equal(x.aborts, cancelled);
	assert_true(x.recvs >= 2 && x.sends >= 1);
	assert_int_equal(p.rep.cause, cancelled ? CTX_CAUSE_DEADLINE_EXCEEDED
					: CTX_CAUSE_CLIENT_DISCONNECT);
	loop_del(the_loop, &x.lio);
	pair_close(&p);
}

static void test_external_ops(void **state)
{
	(void)state;
	external_run(false);
}

static void test_external_abort(void **state)
{
	(void)state;
	external_run(true);
}

/* ---- many tunnels, and what an idle one costs ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	for (e = readdir(d); e; e = readdir(d))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_many(void **state)
{
	const struct tunnel_conf conf = { .idle_ms = 60000, .max_ms = 600000 };
	struct pair *p = calloc(MANY, sizeof(*p));
	int fds = count_fds(), i, done;
	size_t heap0, heap1;
	int64_t t0 = ctx_now_ns();
	char b[1];

	(void)state;
	assert_non_null(p);
	heap0 = mallinfo2().uordblks;
	for (i = 0; i < MANY; i++) {
		pair_open(&p[i], &conf, NULL);
		pair_start(&p[i]);
	}
	for (i = 0; i < 5; i++)
		turn();
	heap1 = mallinfo2().uordblks;
	assert_int_equal(bufs_live, 0);
	/* Each pair also holds its own test context (a ctx_with_cancel). */
	print_message("idle tunnel: %zu heap bytes each, incl. its timer and "
		      "the test's context (mallinfo2)\n",
		      (heap1 - heap0) / MANY);
	for (i = 0; i < MANY; i++) {
		send_str(p[i].cpeer, "x");
		if (i % 3 == 0) {
			shutdown(p[i].cpeer, SHUT_WR);
		} else if (i % 3 == 1) {
			ctx_cancel(p[i].ctx, CTX_CAUSE_SHUTDOWN);
		} else {
			/* The owner drops a live tunnel: both sides close. */
			in_owner_call = true;
			tunnel_free(p[i].t);
			in_owner_call = false;
			p[i].t = NULL;
			assert_eof_now(p[i].upeer);
			p[i].reports = 1;
		}
	}
	for (done = 0; done < MANY;) {
		assert_true(ms_since(t0) < WAIT_MS);
		turn();
		for (done = 0, i = 0; i < MANY; i++)
			done += p[i].reports;
	}
	for (i = 0; i < MANY; i++) {
		if (i % 3 == 0)
			read_all(p[i].upeer, b, 1);
		assert_int_equal(p[i].reports, 1);
		pair_close(&p[i]);
	}
	assert_int_equal(count_fds(), fds);
	assert_int_equal(bufs_live, 0);
	free(p);
}

/* 2 * MANY socketpairs need 4 * MANY descriptors. */
static int setup(void **state)
{
	struct rlimit rl;

	(void)state;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4 * MANY + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	the_loop = loop_new();
	root = ctx_background_new();
	return the_loop && root ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	ctx_unref(root);
	loop_free(the_loop);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk_both_ways),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_extra_first),
		cmocka_unit_test(test_half_close_client),
		cmocka_unit_test(test_half_close_upstream),
		cmocka_unit_test(test_reset_client),
		cmocka_unit_test(test_reset_upstream),
		cmocka_unit_test(test_cancel_closes_both),
		cmocka_unit_test(test_cancelled_before_start),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_max_lifetime),
		cmocka_unit_test(test_reg_mod),
		cmocka_unit_test(test_external_ops),
		cmocka_unit_test(test_external_abort),
		cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
