/* test_health.c - unit tests for the active health checks against a server in the test, and the up gauge. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "health.h"
#include "metrics.h"

#define WAIT_STEP_MS 10
#define WAIT_MAX_MS 10000
#define MAX_ROUTES 3

/* A tiny HTTP server: every request gets `status`, no body. */
struct backend {
	int fd;
	int port;
	atomic_int status;
	atomic_int hits;
	atomic_bool stop;
	pthread_t thread;
};

static void backend_answer(struct backend *b, int c)
{
	struct pollfd p = { .fd = c, .events = POLLIN };
	char buf[2048], reply[128];
	size_t got = 0;
	ssize_t n;
	int len;

	/* Up to the end of the head, or 2 s. */
	while (got < sizeof(buf) - 1 && poll(&p, 1, 2000) == 1) {
		n = read(c, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	atomic_fetch_add(&b->hits, 1);
	len = snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\n"
		       "Content-Length: 0\r\nConnection: close\r\n\r\n",
		       atomic_load(&b->status));
	if (write(c, reply, (size_t)len) != len)
		fprintf(stderr, "backend: short write\n");
}

static void *backend_main(void *arg)
{
	struct backend *b = arg;
	struct pollfd p = { .fd = b->fd, .events = POLLIN };
	int c;

	while (!atomic_load(&b->stop)) {
		if (poll(&p, 1, WAIT_STEP_MS) != 1)
			continue;
		c = accept(b->fd, NULL, NULL);
		if (c < 0)
			continue;
		backend_answer(b, c);
		close(c);
	}
	return NULL;
}

/* A socket bound to 127.0.0.1 on a port of the kernel's choice. */
static int bind_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void backend_start(struct backend *b, int status)
{
	memset(b, 0, sizeof(*b));
	b->fd = bind_any(&b->port);
	assert_int_equal(listen(b->fd, 16), 0);
	atomic_store(&b->status, status);
	assert_int_equal(pthread_create(&b->thread, NULL, backend_main, b), 0);
}

static void backend_stop(struct backend *b)
{
	atomic_store(&b->stop, true);
	pthread_join(b->thread, NULL);
	close(b->fd);
}

/* A port nothing listens on: bound, then let go. */
static int free_port(void)
{
	int port, fd = bind_any(&port);

	close(fd);
	return port;
}

/* A hand-made config (config.c is not under test), one server a route. */
struct fixture {
	struct config cfg;
	struct config_route routes[MAX_ROUTES];
	struct config_server servers[MAX_ROUTES];
	char origins[MAX_ROUTES][64];
	char hosts[MAX_ROUTES][64];
};

/* Route i of f: `name` on host:port; health checked when fall > 0
 * (interval 50 ms, timeout 200 ms, rise 2). */
static void set_route(struct fixture *f, size_t i, const char *name,
		      const char *host, int port, int fall)
{
	struct config_route *r = &f->routes[i];

	assert_true(i < MAX_ROUTES);
	memset(r, 0, sizeof(*r));
	memset(&f->servers[i], 0, sizeof(f->servers[i]));
	snprintf(f->origins[i], sizeof(f->origins[i]), "http://%s:%d", host,
		 port);
	snprintf(f->hosts[i], sizeof(f->hosts[i]), "%s:%d", host, port);
	f->servers[i].url = f->origins[i];
	f->servers[i].origin = f->origins[i];
	f->servers[i].host = f->hosts[i];
	r->name = (char *)name;
	r->servers = &f->servers[i];
	r->nservers = 1;
	r->health.on = fall > 0;
	r->health.path = (char *)"/healthz";
	r->health.interval_ms = 50;
	r->health.timeout_ms = 200;
	r->health.rise = 2;
	r->health.fall = fall;
	f->cfg.routes = f->routes;
	if (f->cfg.nroutes < i + 1)
		f->cfg.nroutes = i + 1;
}

/* Slots assigned, then handed to the checks. */
static void apply_config(struct fixture *f)
{
	assert_int_equal(metrics_assign_slots(&f->cfg), 0);
	assert_int_equal(health_set_config(&f->cfg), 0);
}

/* Poll health_up(slot) every 10 ms for up to 10 s until it is `up`. */
static bool wait_up(int slot, bool up)
{
	struct timespec step = { 0, WAIT_STEP_MS * 1000000L };
	int waited;

	for (waited = 0; waited < WAIT_MAX_MS; waited += WAIT_STEP_MS) {
		if (health_up(slot) == up)
			return true;
		nanosleep(&step, NULL);
	}
	return health_up(slot) == up;
}

/* health_write_metrics's text.  The caller frees. */
static char *scrape(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	assert_int_equal(health_write_metrics(out), 0);
	assert_int_equal(fclose(out), 0);
	return buf;
}

/* The gauge of (route, server) in the text, or -1 when not listed. */
static int gauge(const char *route, const char *server)
{
	char series[256], *text = scrape(), *p;
	int v = -1;

	snprintf(series, sizeof(series), "ctxproxy_upstream_server_up{route="
		 "\"%s\",server=\"%s\"} ", route, server);
	p = strstr(text, series);
	if (p)
		v = (int)strtol(p + strlen(series), NULL, 10);
	free(text);
	return v;
}

static void test_not_started(void **state)
{
	char *text;

	(void)state;
	health_stop();
	assert_true(health_up(0));
	assert_true(health_up(-1));
	assert_true(health_up(METRICS_MAX_SERVERS));
	assert_true(health_up(METRICS_MAX_SERVERS - 1));
	health_ejected_add(-1, 1);
	health_ejected_add(METRICS_MAX_SERVERS, 1);
	text = scrape();
	assert_string_equal(text, "# HELP ctxproxy_upstream_server_up 1 when the "
			    "server gets requests: not down by the active checks "
			    "and not ejected by any worker.\n"
			    "# TYPE ctxproxy_upstream_server_up gauge\n");
	free(text);
}

static void test_unchecked_is_up(void **state)
{
	struct fixture f = { 0 };
	int port = free_port();
	char server[64];

	(void)state;
	assert_int_equal(health_start(), 0);
	assert_int_equal(health_start(), -EALREADY);
	set_route(&f, 0, "plain", "127.0.0.1", port, 0);
	apply_config(&f);
	assert_true(health_up(f.servers[0].slot));
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	assert_int_equal(gauge("plain", server), 1);
	health_stop();
	assert_int_equal(gauge("plain", server), -1);
}

static void test_refused_goes_down(void **state)
{
	struct fixture f = { 0 };
	int port = free_port();
	char server[64];

	(void)state;
	assert_int_equal(health_start(), 0);
	set_route(&f, 0, "refused", "127.0.0.1", port, 2);
	f.routes[0].health.timeout_ms = 100;
	apply_config(&f);
	assert_true(wait_up(f.servers[0].slot, false));
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	assert_int_equal(gauge("refused", server), 0);
	health_stop();
}

static void test_unresolvable_goes_down(void **state)
{
	struct fixture f = { 0 };

	(void)state;
	assert_int_equal(health_start(), 0);
	set_route(&f, 0, "nowhere", "no-such-host.invalid", 80, 1);
	apply_config(&f);
	assert_true(wait_up(f.servers[0].slot, false));
	assert_int_equal(gauge("nowhere", "no-such-host.invalid:80"), 0);
	health_stop();
}

/* 200 keeps it up; `fall` 503s in a row take it down; `rise` 200s bring
 * it back; the gauge follows. */
static void test_fall_and_rise(void **state)
{
	struct fixture f = { 0 };
	struct backend b;
	char server[64];
	int slot, hits;

	(void)state;
	backend_start(&b, 200);
	snprintf(server, sizeof(server), "127.0.0.1:%d", b.port);
	assert_int_equal(health_start(), 0);
	set_route(&f, 0, "flappy", "127.0.0.1", b.port, 3);
	apply_config(&f);
	slot = f.servers[0].slot;
	assert_true(health_up(slot));
	assert_int_equal(gauge("flappy", server), 1);

	hits = atomic_load(&b.hits);
	atomic_store(&b.status, 503);
	assert_true(wait_up(slot, false));
	assert_true(atomic_load(&b.hits) - hits >= 3);
	assert_int_equal(gauge("flappy", server), 0);

	hits = atomic_load(&b.hits);
	atomic_store(&b.status, 200);
	assert_true(wait_up(slot, true));
	assert_true(atomic_load(&b.hits) - hits >= 2);
	assert_int_equal(gauge("flappy", server), 1);
	health_stop();
	backend_stop(&b);
}

static void test_ejected_gauge(void **state)
{
	struct fixture f = { 0 };
	int port = free_port(), slot;
	char server[64];

	(void)state;
	set_route(&f, 0, "ejected", "127.0.0.1", port, 0);
	apply_config(&f);
	slot = f.servers[0].slot;
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	assert_int_equal(gauge("ejected", server), 1);
	health_ejected_add(slot, 1);
	health_ejected_add(slot, 1);
	assert_int_equal(gauge("ejected", server), 0);
	/* Ejection is the workers' own business: the active state stays. */
	assert_true(health_up(slot));
	health_ejected_add(slot, -1);
	assert_int_equal(gauge("ejected", server), 0);
	health_ejected_add(slot, -1);
	assert_int_equal(gauge("ejected", server), 1);
	health_stop();
}

/* A server that stays keeps its state; one whose route loses `health`
 * is up at once; one that goes away is no longer listed and starts up if
 * it comes back.  Each change is known to be taken by the thread once a
 * server that only the new set has (a refused port, fall 1) is down. */
static void test_reload(void **state)
{
	struct fixture f = { 0 };
	struct backend b;
	int slot, port1 = free_port(), port2 = free_port();
	char server[64];

	(void)state;
	backend_start(&b, 503);
	snprintf(server, sizeof(server), "127.0.0.1:%d", b.port);
	assert_int_equal(health_start(), 0);
	set_route(&f, 0, "kept", "127.0.0.1", b.port, 1);
	apply_config(&f);
	slot = f.servers[0].slot;
	assert_true(wait_up(slot, false));

	/* Same server, now needing 1000 failures to go down: it stays down
	 * only if its state was kept. */
	set_route(&f, 0, "kept", "127.0.0.1", b.port, 1000);
	f.routes[0].health.rise = 1000;
	set_route(&f, 1, "sync1", "127.0.0.1", port1, 1);
	apply_config(&f);
	assert_int_equal(f.servers[0].slot, slot);
	assert_true(wait_up(f.servers[1].slot, false));
	assert_false(health_up(slot));
	assert_int_equal(gauge("kept", server), 0);

	/* No `health` any more: up at once, and no check of the old set
	 * takes it down again. */
	set_route(&f, 0, "kept", "127.0.0.1", b.port, 0);
	set_route(&f, 1, "sync2", "127.0.0.1", port2, 1);
	apply_config(&f);
	assert_true(health_up(slot));
	assert_true(wait_up(f.servers[1].slot, false));
	assert_true(health_up(slot));
	assert_int_equal(gauge("kept", server), 1);
	health_stop();
	backend_stop(&b);
}

static void test_removed_server(void **state)
{
	struct fixture f = { 0 };
	int slot, port1 = free_port(), port2 = free_port();
	char server[64];

	(void)state;
	assert_int_equal(health_start(), 0);
	set_route(&f, 0, "gone", "127.0.0.1", port1, 1);
	apply_config(&f);
	slot = f.servers[0].slot;
	assert_true(wait_up(slot, false));
	snprintf(server, sizeof(server), "127.0.0.1:%d", port1);
	assert_int_equal(gauge("gone", server), 0);

	set_route(&f, 0, "other", "127.0.0.1", port2, 1);
	apply_config(&f);
	assert_int_equal(gauge("gone", server), -1);
	assert_true(wait_up(f.servers[0].slot, false));
	assert_true(health_up(slot));
	health_stop();
}

static int setup(void **state)
{
	(void)state;
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	health_stop();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_started),
		cmocka_unit_test(test_unchecked_is_up),
		cmocka_unit_test(test_refused_goes_down),
		cmocka_unit_test(test_unresolvable_goes_down),
		cmocka_unit_test(test_fall_and_rise),
		cmocka_unit_test(test_ejected_gauge),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_removed_server),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
