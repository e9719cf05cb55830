/* main.c - command line, start-up, signals and graceful stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>

#include "admin.h"
#include "admin_watch.h"
#include "config.h"
#include "gen.h"
#include "context.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "tls.h"
#include "worker.h"

#define CTXPROXY_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/ctxproxy/ctxproxy.conf"
#define LISTEN_BACKLOG 4096

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ctxproxy [-c FILE] [-t] [-V] [-h]\n"
		"  -c, --config FILE   configuration (default %s)\n"
		"  -t, --check-config  validate FILE and exit\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          this help\n", DEFAULT_CONFIG);
}

struct options {
	const char *config;
	int check;
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->config = DEFAULT_CONFIG;
	for (;;) {
		c = getopt_long(argc, argv, "c:tVh", longs, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'c': o->config = optarg; break;
		case 't': o->check = 1; break;
		case 'V': printf("ctxproxy %s\n", CTXPROXY_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 1;
	}
	return -1;
}

static socklen_t addr_fill(const struct config_addr *a, int port,
			   struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (a->ipv6) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, a->host, &in6->sin6_addr);
		return sizeof(*in6);
	}
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	if (a->host[0])
		inet_pton(AF_INET, a->host, &in->sin_addr);
	else
		in->sin_addr.s_addr = htonl(INADDR_ANY);
	return sizeof(*in);
}

/* One listening socket on a (with *port; 0 = learn it from the kernel),
 * shared between workers through SO_REUSEPORT.  Returns fd or -errno. */
static int listen_on(const struct config_addr *a, int *port, int reuseport)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_fill(a, *port, &ss);
	int fd, one = 1, err;

	fd = socket(a->ipv6 ? AF_INET6 : AF_INET,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (a->ipv6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail;
	*port = ntohs(a->ipv6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
		      ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* fds[w * nlisten + i]: worker w's socket for listen address i. */
static int open_listeners(const struct config *cfg, int *fds)
{
	int port, fd;
	size_t i;
	int w;

	for (i = 0; i < cfg->nlisten; i++) {
		port = cfg->listen[i].port;
		for (w = 0; w < cfg->workers; w++) {
			fd = listen_on(&cfg->listen[i], &port, 1);
			if (fd < 0) {
				log_msg(LOG_ERROR, "cannot listen", "addr=%s%s%s:%d error=\"%s\"",
					cfg->listen[i].ipv6 ? "[" : "", cfg->listen[i].host,
					cfg->listen[i].ipv6 ? "]" : "", port, strerror(-fd));
				return fd;
			}
			fds[(size_t)w * cfg->nlisten + i] = fd;
		}
		log_msg(LOG_INFO, "listening", "addr=%s%s%s:%d%s",
			cfg->listen[i].ipv6 ? "[" : "",
			cfg->listen[i].host[0] ? cfg->listen[i].host : "0.0.0.0",
			cfg->listen[i].ipv6 ? "]" : "", port,
			i >= cfg->nlisten - cfg->nlisten_tls ? " tls=1" : "");
	}
	return 0;
}

/* The admin listener, when configured: its own socket (no SO_REUSEPORT, so
 * a second daemon cannot share it silently) and thread. */
static int start_admin(const struct config *cfg, struct admin **out)
{
	struct config_addr a;
	int port, fd;

	*out = NULL;
	if (!cfg->admin)
		return 0;
	if (config_parse_addr(cfg->admin, &a))
		return -EINVAL;
	port = a.port;
	fd = listen_on(&a, &port, 0);
	if (fd < 0) {
		log_msg(LOG_ERROR, "cannot listen", "addr=%s error=\"%s\"",
			cfg->admin, strerror(-fd));
		return fd;
	}
	*out = admin_start(fd);
	if (!*out) {
		close(fd);
		return -EIO;
	}
	log_msg(LOG_INFO, "admin listening", "addr=%s%s%s:%d",
		a.ipv6 ? "[" : "", a.host[0] ? a.host : "0.0.0.0",
		a.ipv6 ? "]" : "", port);
	return 0;
}

/* The running daemon, as the main thread sees it. */
struct daemon {
	const char *path;
	struct gen *gen;                  /* the configuration in force */
	struct worker *ws[CONFIG_WORKERS_MAX];
	int n;
	struct admin *admin;
	uint64_t watchdog_usec;           /* 0 = no systemd watchdog */
	struct otlp *otlp;                /* otlp_endpoint's exporter, or NULL */
};

static long total_inflight(struct daemon *d)
{
	long sum = 0;
	int i;

	for (i = 0; i < d->n; i++)
		sum += worker_inflight(d->ws[i]);
	return sum;
}

/* Wait (bounded by ms) until no request is in flight. */
static void wait_idle(struct daemon *d, int64_t ms)
{
	int64_t until = ctx_now_ns() + ms * 1000000;
	struct timespec tick = { 0, 5 * 1000000 };

	while (total_inflight(d) > 0 && ctx_now_ns() < until)
		nanosleep(&tick, NULL);
}

/* The live view's way to worker i (struct admin_source): a snapshot
 * posted to the worker's loop. */
static int watch_worker(void *arg, int i, struct watch_snap *s)
{
	struct daemon *d = arg;

	return worker_watch(d->ws[i], s);
}

static void stop_workers(struct daemon *d, int64_t grace_ms)
{
	int i;

	admin_set_draining(d->admin);
	for (i = 0; i < d->n; i++)
		worker_drain(d->ws[i]);
	wait_idle(d, grace_ms);
	for (i = 0; i < d->n; i++)
		worker_cancel_all(d->ws[i]);
	wait_idle(d, 2000);
	admin_detach(d->admin);
	for (i = 0; i < d->n; i++)
		worker_stop(d->ws[i]);
	d->n = 0;
}

static bool str_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Settings bound to the sockets and libmicrohttpd daemons made at start. */
static bool needs_restart(const struct config *a, const struct config *b)
{
	size_t i;

	if (a->nlisten != b->nlisten || a->nlisten_tls != b->nlisten_tls ||
	    a->tls_min_version != b->tls_min_version ||
	    a->workers != b->workers ||
	    str_differ(a->admin, b->admin) ||
	    str_differ(a->otlp_endpoint, b->otlp_endpoint) ||
	    a->max_connections != b->max_connections ||
	    a->client_idle_timeout_ms != b->client_idle_timeout_ms)
		return true;
	for (i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i].host, b->listen[i].host) != 0 ||
		    a->listen[i].port != b->listen[i].port ||
		    a->listen[i].ipv6 != b->listen[i].ipv6)
			return true;
	return false;
}

/* SIGHUP: parse and check the file off the request path; on success every
 * worker switches to it for new requests; on failure nothing changes. */
static void reload(struct daemon *d)
{
	struct config *cfg;
	struct tls_set *tls = NULL;
	struct gen *g;
	int i;

	sd_notify(0, "RELOADING=1");
	cfg = config_load(d->path, stderr);
	if (cfg && cfg->ntls_certs) {
		tls = tls_set_load(cfg, stderr);
		if (!tls) {
			config_free(cfg);
			cfg = NULL;
		}
	}
	if (!cfg) {
		log_msg(LOG_ERROR, "reload failed: the running configuration stays",
			"path=%s", d->path);
		goto ready;
	}
	if (needs_restart(d->gen->cfg, cfg))
		log_msg(LOG_WARN, "listen, tls_listen, tls_min_version, admin, "
			"workers, max_connections, client_idle_timeout_ms "
			"and otlp_endpoint changes need a restart", NULL);
	if (metrics_assign_slots(cfg) < 0)
		log_msg(LOG_WARN, "too many route names or servers: some share "
			"metrics, some servers have no health state", NULL);
	if (log_open_access(cfg->access_log, cfg->access_log_format) < 0)
		log_msg(LOG_ERROR, "cannot open the new access log: the old stays",
			"path=%s", cfg->access_log);
	g = gen_new(cfg, tls);
	if (!g)
		goto ready;
	for (i = 0; i < d->n; i++)
		worker_set_gen(d->ws[i], g);
	gen_unref(d->gen);
	d->gen = g;
	if (health_set_config(g->cfg) < 0)
		log_msg(LOG_ERROR, "cannot update the health checks: the "
			"previous servers stay checked", NULL);
	/* Said at the level the reload began with: a move to "warn" still
	 * shows that it took effect. */
	log_msg(LOG_INFO, "reloaded", "routes=%zu", g->cfg->nroutes);
	log_set_level((enum log_level)g->cfg->log_level);
ready:
	sd_notify(0, "READY=1");
}

/* Tell systemd we live only when every worker answered the last wake-up. */
static void watchdog_tick(struct daemon *d, uint64_t *beats)
{
	uint64_t now = 0;
	int i;

	for (i = 0; i < d->n; i++)
		now += worker_beats(d->ws[i]);
	if (now >= *beats + (uint64_t)d->n)
		sd_notify(0, "WATCHDOG=1");
	*beats = now;
	for (i = 0; i < d->n; i++)
		worker_ping(d->ws[i]);
}

/* Signals are blocked in every thread; the main thread takes them here. */
static void serve_signals(struct daemon *d, sigset_t *set)
{
	struct timespec period = { 1, 0 };
	uint64_t beats = 0;
	int sig;

	if (d->watchdog_usec) {
		period.tv_sec = (time_t)(d->watchdog_usec / 2000000);
		period.tv_nsec = (long)(d->watchdog_usec / 2 % 1000000) * 1000;
		/* systemd counts from READY=1: ping now, so the first tick
		 * (half a period later) can already send WATCHDOG=1. */
		for (int i = 0; i < d->n; i++)
			worker_ping(d->ws[i]);
	}
	for (;;) {
		sig = sigtimedwait(set, NULL, &period);
		if (d->watchdog_usec)
			watchdog_tick(d, &beats);
		if (sig == SIGTERM || sig == SIGINT) {
			log_msg(LOG_INFO, "stopping", "signal=%s",
				sig == SIGTERM ? "TERM" : "INT");
			sd_notify(0, "STOPPING=1");
			return;
		}
		if (sig == SIGHUP)
			reload(d);
		if (sig == SIGUSR1 && log_reopen() < 0)
			log_msg(LOG_ERROR, "cannot reopen the access log", NULL);
		else if (sig == SIGUSR1)
			log_msg(LOG_INFO, "access log reopened", NULL);
	}
}

static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Each connection costs a client and an upstream descriptor: raise the soft
 * RLIMIT_NOFILE to what max_connections needs, up to the hard limit. */
static void raise_nofile(const struct config *cfg)
{
	rlim_t need = (rlim_t)cfg->max_connections * 2 + 64 +
		      (rlim_t)cfg->workers * (cfg->nlisten + 8);
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < need)
		log_msg(LOG_WARN, "open-file limit too low for max_connections",
			"limit=%llu needed=%llu",
			(unsigned long long)rl.rlim_cur, (unsigned long long)need);
	else
		log_msg(LOG_INFO, "raised the open-file limit", "limit=%llu",
			(unsigned long long)rl.rlim_cur);
}

/* otlp_endpoint's exporter, bound at start (its thread blocks every
 * signal itself).  0, or -1 with the reason logged. */
static int start_exporter(struct daemon *d)
{
	const char *url = d->gen->cfg->otlp_endpoint;

	if (!url)
		return 0;
	d->otlp = otlp_new(url, "ctxproxy");
	if (!d->otlp) {
		log_msg(LOG_ERROR, "cannot start the span exporter",
			"endpoint=%s err=%d", url, errno);
		return -1;
	}
	return 0;
}

/* The spans of the last requests go out in what is left of the grace
 * (at least OTLP_STOP_MIN_MS: a stop without grace still sends a batch
 * to a collector that answers at once). */
#define OTLP_STOP_MIN_MS 100
static void stop_exporter(struct daemon *d, int64_t grace_ms, int64_t t_stop)
{
	int64_t left = grace_ms - (ctx_now_ns() - t_stop) / 1000000;

	otlp_stop(d->otlp, left > OTLP_STOP_MIN_MS ? left : OTLP_STOP_MIN_MS);
}

static int run(struct daemon *d)
{
	const struct config *cfg = d->gen->cfg;
	struct admin_source src = { .watch = watch_worker, .arg = d };
	int *fds, rc = 2;
	int64_t t_stop;
	sigset_t set;

	/* First, so every thread started later inherits the mask and a
	 * signal can only ever reach serve_signals(). */
	block_signals(&set);
	raise_nofile(cfg);
	fds = calloc((size_t)cfg->workers * cfg->nlisten, sizeof(int));
	if (!fds || open_listeners(cfg, fds) < 0 ||
	    start_admin(cfg, &d->admin) < 0)
		goto free_fds;
	for (d->n = 0; d->n < cfg->workers; d->n++) {
		d->ws[d->n] = worker_start(d->n, d->gen,
					   fds + (size_t)d->n * cfg->nlisten,
					   d->otlp);
		if (!d->ws[d->n])
			goto stop;
	}
	src.nworkers = d->n;
	admin_attach(d->admin, &src);
	if (sd_watchdog_enabled(0, &d->watchdog_usec) <= 0)
		d->watchdog_usec = 0;
	log_msg(LOG_INFO, "started", "workers=%d", cfg->workers);
	sd_notify(0, "READY=1");
	serve_signals(d, &set);
	rc = 0;
stop:
	t_stop = ctx_now_ns();
	stop_workers(d, rc == 0 ? d->gen->cfg->shutdown_grace_ms : 0);
	stop_exporter(d, rc == 0 ? d->gen->cfg->shutdown_grace_ms : 0, t_stop);
	if (rc == 0)
		log_msg(LOG_INFO, "stopped", NULL);
free_fds:
	admin_stop(d->admin);
	free(fds);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct daemon d = { 0 };
	struct config *cfg;
	struct tls_set *tls = NULL;
	int rc;

	rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	/* Per-request buffers come and go; glibc would hand the freed top of a
	 * thread's heap back to the kernel and fault it in again each time. */
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	cfg = config_load(o.config, stderr);
	if (!cfg)
		return 1;
	log_set_level((enum log_level)cfg->log_level);
	if (cfg->ntls_certs) {
		tls = tls_set_load(cfg, stderr);
		if (!tls) {
			config_free(cfg);
			return 1;
		}
	}
	if (metrics_assign_slots(cfg) < 0)
		log_msg(LOG_WARN, "too many route names or servers: some share "
			"metrics, some servers have no health state", NULL);
	if (o.check) {
		printf("%s: ok\n", o.config);
		tls_set_unref(tls);
		config_free(cfg);
		return 0;
	}
	if (log_open_access(cfg->access_log, cfg->access_log_format) < 0) {
		log_msg(LOG_ERROR, "cannot open the access log", "path=%s",
			cfg->access_log);
		tls_set_unref(tls);
		config_free(cfg);
		return 2;
	}
	d.path = o.config;
	d.gen = gen_new(cfg, tls);
	if (!d.gen)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* The checking thread blocks every signal itself: starting it before
	 * run() masks them leaves SIGTERM to the main thread all the same. */
	if (health_start() < 0 || health_set_config(d.gen->cfg) < 0) {
		log_msg(LOG_ERROR, "cannot start the health checks", NULL);
		rc = 2;
	} else if (start_exporter(&d) < 0) {
		rc = 2;
	} else {
		rc = run(&d);
	}
	otlp_free(d.otlp);
	health_stop();
	curl_global_cleanup();
	log_close();
	gen_unref(d.gen);
	return rc;
}
